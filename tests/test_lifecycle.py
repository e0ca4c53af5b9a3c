"""Saving, loading, checkpoints and exact resumption, divergence, atomic writes."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import nbnet.cli.train
import nbnet.train
from nbnet import Network
from nbnet.cli import main
from nbnet.files import OutputError, atomic_write
from nbnet.model_file import ModelError

from interrupts import ctrl_c_in_epoch


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def same_parameters(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a.weights + a.biases, b.weights + b.biases))


def test_save_and_load_round_trip(tmp_path):
    net = Network([6, 5, 4, 3], activation="tanh", output="sigmoid", cost="quadratic", dtype="float64", seed=4)
    net.save(tmp_path / "m.npz", inputs={"dataset": "digits"})
    again = Network.load(tmp_path / "m.npz")
    assert again.sizes == net.sizes and again.activation == "tanh" and again.output == "sigmoid"
    assert again.cost_name == "quadratic" and again.dtype == np.float64
    assert same_parameters(net, again)
    X = np.random.default_rng(0).random((4, 6))
    np.testing.assert_array_equal(net.forward(X), again.forward(X))
    with np.load(tmp_path / "m.npz", allow_pickle=False) as content:  # no pickles inside
        assert json.loads(str(content["metadata"]))["inputs"] == {"dataset": "digits"}


def test_train_save_writes_model_with_history_and_inputs(tmp_path):
    result = invoke("train", "--epochs", 2, "--save", tmp_path / "m.npz", "--plot", tmp_path / "p.png", "-q")
    assert result.exit_code == 0, result.output
    net, metadata = Network.load_with_metadata(tmp_path / "m.npz")
    assert [row["epoch"] for row in metadata["history"]] == [1, 2]
    assert metadata["inputs"]["image_shape"] == [8, 8] and metadata["inputs"]["pixel_max"] == 16.0
    assert metadata["checkpoint"]["epoch"] == 2 and metadata["nbnet_version"] == nbnet.__version__
    from nbnet.data import load_digits
    data = load_digits()
    assert net.accuracy(data.X_test, data.y_test) == pytest.approx(metadata["history"][-1]["test_accuracy"])


def test_interrupted_and_resumed_run_equals_uninterrupted_run(tmp_path, monkeypatch):
    common = ["--epochs", 4, "--batch-size", 7, "--l2", 0.5, "--hidden", 12, "-q"]
    assert invoke("train", *common, "--save", tmp_path / "straight.npz", "--plot", tmp_path / "a.png").exit_code == 0

    ctrl_c_in_epoch(monkeypatch, 3)  # as if Ctrl-C arrived during epoch 3, before its checkpoint
    result = invoke("train", *common, "--save", tmp_path / "run.npz", "--checkpoint-every", 1,
                    "--metrics", tmp_path / "m.csv", "--plot", tmp_path / "b.png")
    assert result.exit_code == 130
    assert "--resume" in result.output
    assert Network.load_with_metadata(tmp_path / "run.npz")[1]["checkpoint"]["epoch"] == 2
    ctrl_c_in_epoch(monkeypatch, None)

    result = invoke("train", "--resume", tmp_path / "run.npz", "--save", tmp_path / "resumed.npz",
                    "--plot", tmp_path / "c.png", "-q")
    assert result.exit_code == 0, result.output
    assert " 3/4" in result.output and " 4/4" in result.output and " 2/4" not in result.output
    straight, resumed = Network.load(tmp_path / "straight.npz"), Network.load(tmp_path / "resumed.npz")
    assert same_parameters(straight, resumed)  # bit for bit
    history = Network.load_with_metadata(tmp_path / "resumed.npz")[1]["history"]
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]


def test_resume_alone_keeps_writing_where_the_run_wrote_and_reads_its_data(tmp_path, monkeypatch):
    """The README's commands as written (data paths aside): a run with --save and
    --checkpoint-every interrupted in epoch 3, then `nbnet train --resume mnist.npz` alone, from
    the same directory and from another one, then evaluate. Nothing is lost: the file ends with
    the final weights of an uninterrupted run, bit for bit, checkpointed at every epoch."""
    from idx_files import write_mnist

    (tmp_path / "data").mkdir()
    write_mnist(tmp_path / "data", n_train=40, n_test=12)
    (tmp_path / "straight").mkdir()
    (tmp_path / "run").mkdir()
    first = ["train", "--dataset", "mnist", "--data-dir", "../data", "--hidden", 100, "--epochs", 10]
    monkeypatch.chdir(tmp_path / "straight")
    assert invoke(*first, "--save", "mnist.npz", "-q").exit_code == 0
    real_report = nbnet.cli.train.Report.__call__

    def interrupt_in_epoch(epoch):
        def report(self, metrics):
            if metrics.epoch == epoch:
                raise KeyboardInterrupt  # Ctrl-C after the epoch's training, before its checkpoint
            return real_report(self, metrics)
        return report

    monkeypatch.chdir(tmp_path / "run")
    monkeypatch.setattr(nbnet.cli.train.Report, "__call__", interrupt_in_epoch(3))
    result = invoke(*first, "--save", "mnist.npz", "--checkpoint-every", 1)
    assert result.exit_code == 130 and "nbnet train --resume mnist.npz" in result.output
    monkeypatch.setattr(nbnet.cli.train.Report, "__call__", interrupt_in_epoch(6))
    assert invoke("train", "--resume", "mnist.npz").exit_code == 130  # the data found where the run found it
    assert Network.load_with_metadata("mnist.npz")[1]["checkpoint"]["epoch"] == 5  # checkpoints went on
    monkeypatch.setattr(nbnet.cli.train.Report, "__call__", real_report)
    monkeypatch.chdir(tmp_path)  # a resumed run writes the same files wherever it is started
    result = invoke("train", "--resume", "run/mnist.npz")
    assert result.exit_code == 0, result.output
    assert " 6/10" in result.output and " 5/10" not in result.output
    straight, resumed = Network.load("straight/mnist.npz"), Network.load("run/mnist.npz")
    assert same_parameters(straight, resumed)  # bit for bit
    assert (tmp_path / "run" / "plots" / "mnist-cost.png").exists() and not (tmp_path / "plots").exists()
    monkeypatch.chdir(tmp_path / "run")
    result = invoke("train", "--resume", "mnist.npz", "--epochs", 12)
    assert result.exit_code == 0 and " 12/12" in result.output, result.output
    assert Network.load_with_metadata("mnist.npz")[1]["checkpoint"]["epoch"] == 12
    result = invoke("evaluate", "mnist.npz", "--plot", "eval.png")
    assert result.exit_code == 0 and "mnist test set (12 images)" in result.output, result.output


def test_resumed_early_stopping_stops_and_keeps_what_the_uninterrupted_run_does(tmp_path, monkeypatch):
    """The best epoch so far (and its weights) travels in the checkpoint: interrupted after the
    best epoch and resumed, the run still stops at the same epoch and keeps the same weights."""
    common = ["--train-size", 300, "--validation", 0.3, "--early-stopping", "--patience", 2, "--epochs", 60,
              "--lr", 1.0, "-q"]
    result = invoke("train", *common, "--save", tmp_path / "straight.npz", "--plot", tmp_path / "a.png")
    assert result.exit_code == 0 and "Stopped early" in result.output, result.output
    rows = Network.load_with_metadata(tmp_path / "straight.npz")[1]["history"]
    stop = rows[-1]["epoch"]
    best = min(rows, key=lambda row: row["validation_cost"])["epoch"]
    assert best == stop - 2 and stop < 60

    ctrl_c_in_epoch(monkeypatch, stop)  # the last checkpoint is then epoch stop - 1, after the best
    result = invoke("train", *common, "--save", tmp_path / "run.npz", "--checkpoint-every", 1,
                    "--metrics", tmp_path / "m.csv", "--plot", tmp_path / "b.png")
    assert result.exit_code == 130
    checkpoint = Network.load_with_metadata(tmp_path / "run.npz")[1]["checkpoint"]
    assert checkpoint["epoch"] == stop - 1 and checkpoint["best_epoch"] == best
    ctrl_c_in_epoch(monkeypatch, None)

    result = invoke("train", "--resume", tmp_path / "run.npz", "--save", tmp_path / "resumed.npz",
                    "--plot", tmp_path / "c.png")
    assert result.exit_code == 0, result.output
    assert f"Stopped early after epoch {stop}" in result.output and f"kept the weights of epoch {best}" in result.output
    assert same_parameters(Network.load(tmp_path / "straight.npz"), Network.load(tmp_path / "resumed.npz"))
    resumed_rows = Network.load_with_metadata(tmp_path / "resumed.npz")[1]["history"]
    assert [row["epoch"] for row in resumed_rows] == [row["epoch"] for row in rows]
    assert [row["epoch"] for row in resumed_rows if row["test_cost"] is not None] == [best]


def test_resume_can_extend_a_finished_run(tmp_path):
    assert invoke("train", "--epochs", 2, "--save", tmp_path / "m.npz", "--plot", tmp_path / "p.png", "-q").exit_code == 0
    result = invoke("train", "--resume", tmp_path / "m.npz", "--epochs", 3, "--save", tmp_path / "m3.npz",
                    "--plot", tmp_path / "p.png", "-q")
    assert result.exit_code == 0 and " 3/3" in result.output
    straight = invoke("train", "--epochs", 3, "--save", tmp_path / "s3.npz", "--plot", tmp_path / "p.png", "-q")
    assert straight.exit_code == 0
    assert same_parameters(Network.load(tmp_path / "m3.npz"), Network.load(tmp_path / "s3.npz"))


def test_resume_refuses_changed_options_and_files_without_checkpoint(tmp_path):
    assert invoke("train", "--epochs", 1, "--save", tmp_path / "m.npz", "--plot", tmp_path / "p.png", "-q").exit_code == 0
    result = invoke("train", "--resume", tmp_path / "m.npz", "--epochs", 2, "--hidden", 50, "--plot", tmp_path / "p.png")
    assert result.exit_code == 2 and "--hidden" in result.output
    result = invoke("train", "--resume", tmp_path / "m.npz", "--epochs", 1, "--plot", tmp_path / "p.png")
    assert result.exit_code == 2 and "already holds 1 epochs" in result.output
    Network([64, 10, 10]).save(tmp_path / "plain.npz")
    result = invoke("train", "--resume", tmp_path / "plain.npz", "--plot", tmp_path / "p.png")
    assert result.exit_code == 1 and "no checkpoint" in result.output
    result = invoke("train", "--epochs", 1, "--checkpoint-every", 1, "--plot", tmp_path / "p.png")
    assert result.exit_code == 2 and "--save" in result.output


def test_a_resumed_run_can_checkpoint_into_the_file_it_resumes(tmp_path, monkeypatch):
    """--checkpoint-every with --resume and no --save: the checkpoints go to the resumed file
    (where the model goes anyway), here one after epoch 2 of a run stopped in epoch 3."""
    model = tmp_path / "m.npz"
    assert invoke("train", "--epochs", 1, "--save", model, "--plot", tmp_path / "p.png", "-q").exit_code == 0
    real_report = nbnet.cli.train.Report.__call__

    def stop_in_epoch_3(self, metrics):
        if metrics.epoch == 3:
            raise KeyboardInterrupt
        return real_report(self, metrics)

    monkeypatch.setattr(nbnet.cli.train.Report, "__call__", stop_in_epoch_3)
    result = invoke("train", "--resume", model, "--epochs", 4, "--checkpoint-every", 1, "-q")
    assert result.exit_code == 130, result.output
    assert Network.load_with_metadata(model)[1]["checkpoint"]["epoch"] == 2


def write_npz(path, **arrays):
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


@pytest.mark.parametrize("case", ["garbage", "empty", "no metadata", "bad json", "other format", "future version",
                                  "wrong shape", "nan weights", "missing array", "int64 weights"])
def test_bad_model_files_are_one_line_errors(tmp_path, case):
    path = tmp_path / "m.npz"
    good = Network([4, 3, 2])
    good.save(path)
    with np.load(path) as content:
        arrays = {name: content[name] for name in content.files}
    metadata = json.loads(str(arrays["metadata"]))
    if case == "garbage":
        path.write_bytes(b"\x00not a zip file" * 10)
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "no metadata":
        write_npz(path, W1=arrays["W1"])
    elif case == "bad json":
        write_npz(path, **dict(arrays, metadata=np.array("{not json")))
    elif case == "other format":
        write_npz(path, **dict(arrays, metadata=np.array(json.dumps(dict(metadata, format="keras")))))
    elif case == "future version":
        write_npz(path, **dict(arrays, metadata=np.array(json.dumps(dict(metadata, format_version=99)))))
    elif case == "wrong shape":
        write_npz(path, **dict(arrays, W1=np.zeros((5, 5), np.float32)))
    elif case == "nan weights":
        write_npz(path, **dict(arrays, b2=np.full(2, np.nan, np.float32)))
    elif case == "missing array":
        write_npz(path, **{k: v for k, v in arrays.items() if k != "W2"})
    elif case == "int64 weights":  # the metadata says float32
        write_npz(path, **dict(arrays, W1=arrays["W1"].astype(np.int64)))
    with pytest.raises(ModelError) as error:
        Network.load_with_metadata(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)
    if case == "future version":
        assert "format 99" in str(error.value)
    result = invoke("evaluate", path)
    assert result.exit_code == 1 and "Traceback" not in result.output and str(path) in result.output


def test_divergence_stops_with_hint_and_keeps_metrics(tmp_path):
    metrics = tmp_path / "m.csv"
    result = invoke("train", "--lr", 10, "--l2", 100000, "--epochs", 3, "--metrics", metrics, "--plot", tmp_path / "p.png",
                    "--save", tmp_path / "model.npz")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "diverged in epoch 1" in result.output and "learning rate" in result.output
    assert metrics.read_text().startswith("epoch,train_cost")
    assert not (tmp_path / "model.npz").exists() and not (tmp_path / "p.png").exists()


def test_guessing_cost_by_hand():
    from nbnet.train import guessing_cost
    y = np.array([0, 3, 9])
    assert guessing_cost(Network([4, 10]), y) == pytest.approx(np.log(10))  # softmax 1/10 each
    assert guessing_cost(Network([4, 10], output="sigmoid"), y) == pytest.approx(10 * np.log(2))
    assert guessing_cost(Network([4, 10], output="sigmoid", cost="quadratic"), y) == pytest.approx(0.5 * 10 * 0.25)
    assert guessing_cost(Network([4, 10], cost="quadratic"), y) == pytest.approx(0.5 * (0.9 ** 2 + 9 * 0.01))


@pytest.mark.parametrize("stop", [False, True])
def test_a_finite_cost_far_above_guessing_warns_once_or_stops(tmp_path, monkeypatch, stop):
    """--lr far too large (the weights blow up in epoch 2 here) gives no NaN, only huge costs:
    one warning line and exit 0, or with --stop-on-divergence the diverged error, exit 1, with
    the checkpoint of epoch 1 kept."""
    real_steps = nbnet.train._train_steps
    calls = []

    def overshooting(net, *args):
        real_steps(net, *args)
        calls.append(1)
        if len(calls) == 100:  # in epoch 2
            net.weights[-1] *= 1e5

    monkeypatch.setattr(nbnet.train, "_train_steps", overshooting)
    result = invoke("train", "--epochs", 4, "--save", tmp_path / "m.npz", "--checkpoint-every", 1,
                    "--plot", tmp_path / "p.png", "-q", *(["--stop-on-divergence"] if stop else []))
    if stop:
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert "diverged in epoch 2: the held-out cost" in result.output and "--lr 0.5" in result.output
        assert Network.load_with_metadata(tmp_path / "m.npz")[1]["checkpoint"]["epoch"] == 1
    else:
        assert result.exit_code == 0, result.output
        assert result.output.count("Warning: training is diverging in epoch 2") == 1 and " 4/4" in result.output


def test_no_divergence_warning_in_ordinary_runs(tmp_path):
    """The quiet side: the README's digits runs, overfitting a small training set included."""
    for args in ([], ["--train-size", 100, "--epochs", 60, "--hidden", 40],  # (small: one-thread kernels)
                 ["--cost", "quadratic", "--output", "sigmoid", "--lr", 3, "--epochs", 10]):
        result = invoke("train", *args, "--plot", tmp_path / "p.png", "-q")
        assert result.exit_code == 0 and "Warning" not in result.output, (args, result.output)


def test_divergence_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    real_steps = nbnet.train._train_steps
    calls = []

    def poisoned(net, *args):
        real_steps(net, *args)
        calls.append(1)
        if len(calls) == 100:  # in epoch 2 (digits: 72 slices of 2 minibatches per epoch)
            net.weights[0][0, 0] = np.nan

    monkeypatch.setattr(nbnet.train, "_train_steps", poisoned)
    result = invoke("train", "--epochs", 4, "--save", tmp_path / "m.npz", "--checkpoint-every", 1,
                    "--metrics", tmp_path / "m.csv", "--plot", tmp_path / "p.png", "-q")
    assert result.exit_code == 1 and "diverged in epoch 2" in result.output and "last good checkpoint" in result.output
    net, metadata = Network.load_with_metadata(tmp_path / "m.npz")
    assert metadata["checkpoint"]["epoch"] == 1 and net.parameters_finite()
    assert len((tmp_path / "m.csv").read_text().splitlines()) == 2  # header and epoch 1


def test_atomic_write_leaves_old_file_when_interrupted(tmp_path):
    target = tmp_path / "out.npz"
    target.write_bytes(b"old")

    def broken(temporary):
        with open(temporary, "wb") as handle:
            handle.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, broken)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.npz"]
    with pytest.raises(OutputError):
        atomic_write(tmp_path / "out.npz" / "x", lambda t: None)
    Network([3, 2]).save(target)
    assert zipfile.is_zipfile(target)


def test_a_write_removes_what_a_killed_writer_left_and_keeps_a_live_ones(tmp_path):
    """kill -9 before the rename leaves .NAME.PID.XXXX.SUFFIX; the next write of NAME deletes it
    once PID has ended, but not the temporary of a process still writing, nor other files."""
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    dead, live = tmp_path / f".m[1].npz.{ended.pid}.k3j_x.npz", tmp_path / f".m[1].npz.{os.getppid()}.q9zz1.npz"
    other = tmp_path / f".m1.npz.{ended.pid}.k3j_x.npz"  # (another file's, which "m[1]" as a pattern would match)
    for path in (dead, live, other):
        path.write_bytes(b"half")
    atomic_write(tmp_path / "m[1].npz", lambda temporary: Path(temporary).write_bytes(b"new"))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["m[1].npz", live.name, other.name])


def test_format_1_model_files_still_load_and_resume(tmp_path):
    """Files of format 1 (checkpoint options under "options") are read as format 2 (the
    TrainConfig under "config"), and a run saved in one resumes exactly."""
    common = ["--epochs", 3, "--hidden", 12, "--batch-size", 16, "-q", "--plot", tmp_path / "p.png"]
    assert invoke("train", *common, "--save", tmp_path / "straight.npz").exit_code == 0
    assert invoke("train", *common, "--epochs", 2, "--save", tmp_path / "old.npz").exit_code == 0
    with np.load(tmp_path / "old.npz") as content:
        arrays = {name: content[name] for name in content.files}
    metadata = json.loads(str(arrays["metadata"]))
    options = metadata["checkpoint"].pop("config")
    del options["epochs"], options["train_metrics"]  # options format 1 did not store
    metadata.update(format_version=1, checkpoint=dict(metadata["checkpoint"], options=options, epochs=3))
    write_npz(tmp_path / "old.npz", **dict(arrays, metadata=np.array(json.dumps(metadata))))
    net, loaded = Network.load_with_metadata(tmp_path / "old.npz")
    assert loaded["format_version"] == 2 and loaded["checkpoint"]["config"]["hidden"] == [12]
    assert invoke("train", "--resume", tmp_path / "old.npz", "--save", tmp_path / "resumed.npz", "-q",
                  "--plot", tmp_path / "p.png").exit_code == 0
    resumed, straight = Network.load(tmp_path / "resumed.npz"), Network.load(tmp_path / "straight.npz")
    assert all(np.array_equal(a, b) for a, b in zip(resumed.weights + resumed.biases, straight.weights + straight.biases))
