import csv
import hashlib
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from nbnet import data as data_module
from nbnet.cli import main
from nbnet.options import TrainConfig
from nbnet.train import METRIC_COLUMNS

from idx_files import idx_bytes, write_mnist
from test_data import mirror  # noqa: F401  (a fixture, used by name)
from documents import documented  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(result, code, fragment):
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert fragment in result.output


def test_train_on_digits_writes_metrics_and_plot(tmp_path):
    metrics, plot = tmp_path / "m.csv", tmp_path / "out" / "cost.png"
    result = invoke("train", "--epochs", 3, "--metrics", metrics, "--plot", plot, "--hidden", 20, "--hidden", 12)
    assert result.exit_code == 0, result.output
    with open(metrics, newline="") as handle:
        rows = list(csv.reader(handle))
    assert tuple(rows[0]) == METRIC_COLUMNS
    assert [row[0] for row in rows[1:]] == ["1", "2", "3"]
    for row in rows[1:]:
        values = [float(v) for v in row]
        assert 0 <= values[3] <= 1 and 0 <= values[4] <= 1 and values[5] > 0
    assert plot.read_bytes().startswith(PNG)
    assert "[64, 20, 12, 10]" in result.output  # the notes name the network
    assert "Kernels" in result.output  # and tell about compiling / the cache
    lines = [line for line in result.output.splitlines() if line.strip().startswith(("1/3", "2/3", "3/3"))]
    assert len(lines) == 3


def test_the_images_are_released_before_the_plot(tmp_path, monkeypatch):
    """The plot needs only the history: the training and test images must be freed before matplotlib
    loads (on MNIST that keeps its ~40 MB off the run's peak memory)."""
    import weakref
    import nbnet.cli.train as train_cli
    loaded, alive_at_plot = [], []
    load, plot = train_cli.load_any_dataset, train_cli.plot_metrics

    def load_and_watch(*args):
        data = load(*args)
        loaded.extend(weakref.ref(array) for array in (data.X_train, data.X_test))
        return data

    def plot_and_look(*args):
        alive_at_plot.extend(ref() is not None for ref in loaded)
        return plot(*args)

    monkeypatch.setattr(train_cli, "load_any_dataset", load_and_watch)
    monkeypatch.setattr(train_cli, "plot_metrics", plot_and_look)
    result = invoke("train", "--epochs", 1, "-q", "--plot", tmp_path / "p.png")
    assert result.exit_code == 0, result.output
    assert alive_at_plot == [False, False]


def test_ctrl_c_while_the_plot_is_drawn_ends_the_run_as_interrupted(tmp_path, monkeypatch):
    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr("nbnet.cli.train.plot_metrics", interrupted)
    result = invoke("train", "--epochs", 1, "-q", "--plot", tmp_path / "p.png")
    assert result.exit_code == 130 and "Interrupted" in result.output and "Traceback" not in result.output


def test_train_defaults_plot_under_plots(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("train", "--epochs", 1, "--quiet")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "plots" / "digits-cost.png").read_bytes().startswith(PNG)
    assert "Kernels" not in result.output  # --quiet drops the notes, keeps the epoch lines
    assert "1/1" in result.output


def test_train_size_and_threads_and_dtype(tmp_path):
    metrics = tmp_path / "m.csv"
    result = invoke("train", "--epochs", 2, "--train-size", 100, "--threads", 1, "--dtype", "float64", "--hidden", 20,
                    "--hidden", 12, "--l2", 1.0, "--batch-size", 7, "--plot", tmp_path / "p.png", "--metrics", metrics)
    assert result.exit_code == 0, result.output
    assert "100 training" in result.output and "1 thread" in result.output


@pytest.mark.parametrize("args,fragment", [
    (["--epochs", "0"], "--epochs"),
    (["--activation", "swish"], "--activation"),
    (["--hidden", "0"], "--hidden"),
    (["--lr", "-1"], "--lr"),
    (["--l2", "-0.5"], "--l2"),
    (["--test-fraction", "1.5"], "--test-fraction"),
    (["--dataset", "cifar"], "--dataset"),
    (["--threads", "999"], "--threads"),
    (["--train-size", "999999"], "--train-size"),
    (["--no-such-option"], "No such option"),
    (["--lr", "nan"], "'nan' is not a finite number"),  # (nan passes every range comparison)
    (["--lr", "inf"], "'inf' is not a finite number"),
    (["--l2", "inf"], "--l2"),
    (["--optimizer", "momentum", "--momentum", "nan"], "--momentum"),
    (["--dropout", "nan"], "--dropout"),
])
def test_bad_options_are_usage_errors(tmp_path, args, fragment):
    result = invoke("train", "--epochs", 1, "--plot", tmp_path / "p.png", *args)
    assert_one_line_error(result, 2, fragment)
    assert not (tmp_path / "p.png").exists()


@pytest.mark.parametrize("name", ["lr", "l2", "momentum", "dropout", "validation", "elastic_sigma"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_train_config_refuses_numbers_that_are_not_finite(name, value):
    """The same check for Python callers (and sweeps, model files): one ValueError naming the
    option, before any training."""
    with pytest.raises(ValueError, match=f"^{name} must be a finite number in "):
        TrainConfig(**{name: value})


def test_missing_mnist_is_a_one_line_error(tmp_path):
    result = invoke("train", "--dataset", "mnist", "--data-dir", tmp_path, "--plot", tmp_path / "p.png")
    assert_one_line_error(result, 1, "not found")
    assert not (tmp_path / "p.png").exists()


def test_corrupt_mnist_is_a_one_line_error(tmp_path):
    write_mnist(tmp_path)
    import gzip
    with gzip.open(tmp_path / "train-labels-idx1-ubyte.gz", "wb") as handle:
        handle.write(idx_bytes([1, 2, 11] + [0] * 27))
    result = invoke("train", "--dataset", "mnist", "--data-dir", tmp_path, "--plot", tmp_path / "p.png")
    assert_one_line_error(result, 1, "label 11")


def test_train_on_small_mnist_files(tmp_path):
    write_mnist(tmp_path, n_train=40, n_test=10)
    result = invoke("train", "--dataset", "mnist", "--data-dir", tmp_path, "--epochs", 2, "--plot", tmp_path / "p.png")
    assert result.exit_code == 0, result.output
    assert "[16, 30, 10]" in result.output


def test_unwritable_plot_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = invoke("train", "--epochs", 1, "--plot", blocker / "p.png")
    assert_one_line_error(result, 1, "cannot write")


def test_plot_command_redraws_from_csv(tmp_path):
    metrics = tmp_path / "m.csv"
    assert invoke("train", "--epochs", 2, "--metrics", metrics, "--plot", tmp_path / "a.png").exit_code == 0
    result = invoke("plot", metrics, "-o", tmp_path / "b.png")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "b.png").read_bytes().startswith(PNG)
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    assert_one_line_error(invoke("plot", tmp_path / "bad.csv", "-o", tmp_path / "c.png"), 1, "not a metrics file")
    assert_one_line_error(invoke("plot", tmp_path / "none.csv", "-o", tmp_path / "c.png"), 1, "cannot read")
    assert not (tmp_path / "c.png").exists()


def test_download_command_through_loopback_mirror(tmp_path, mirror, monkeypatch):  # noqa: F811
    served, url = mirror
    write_mnist(served)
    checksums = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in served.iterdir()}
    monkeypatch.setitem(data_module.IDX_SETS, "mnist", data_module.IdxSet("MNIST", (url,), checksums))
    target = tmp_path / "got"
    result = invoke("download", "mnist", "--data-dir", target, "--mirror", url, "--quiet")
    assert result.exit_code == 0, result.output
    assert len(list(target.glob("*.gz"))) == 4
    checksums["train-images-idx3-ubyte.gz"] = "f" * 64
    result = invoke("download", "mnist", "--data-dir", tmp_path / "bad", "--mirror", url, "--quiet")
    assert_one_line_error(result, 1, "SHA-256 mismatch")
    assert not (tmp_path / "bad" / "train-images-idx3-ubyte.gz").exists()
    # train --download fetches what is missing (from the default mirrors, patched above), then trains
    checksums["train-images-idx3-ubyte.gz"] = hashlib.sha256((served / "train-images-idx3-ubyte.gz").read_bytes()).hexdigest()
    (target / "t10k-labels-idx1-ubyte.gz").unlink()
    result = invoke("train", "--dataset", "mnist", "--download", "--data-dir", target, "--epochs", 1,
                    "--plot", tmp_path / "p.png", "--quiet")
    assert result.exit_code == 0, result.output
    assert (target / "t10k-labels-idx1-ubyte.gz").exists()


def test_fashion_mnist_by_name_downloads_checked_trains_and_names_its_classes(tmp_path, mirror, monkeypatch):  # noqa: F811
    served, url = mirror
    write_mnist(served, side=28)
    # the real digests are what a download checks by default: files that are not Fashion-MNIST fail them
    result = invoke("download", "fashion-mnist", "--data-dir", tmp_path / "real", "--mirror", url, "--quiet")
    assert_one_line_error(result, 1, "SHA-256 mismatch")
    assert list((tmp_path / "real").iterdir()) == []
    checksums = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in served.iterdir()}
    real = data_module.IDX_SETS["fashion-mnist"]
    monkeypatch.setitem(data_module.IDX_SETS, "fashion-mnist", data_module.IdxSet(real.title, (url,), checksums,
                                                                                  real.class_names))
    monkeypatch.setenv("HOME", str(tmp_path))  # default directory: ~/.cache/nbnet/fashion-mnist
    monkeypatch.chdir(tmp_path)
    # the one-thread drivers, which give the same bits (test_kernels.py): the parallel ones for
    # 784-100-10 are compiled by other tests, and here would cost CI 10 s more
    monkeypatch.setattr("nbnet.passes.PARALLEL_RUN_WORK", 10 ** 12)
    readme = documented()
    train = "train --dataset fashion-mnist --download --hidden 100 --epochs 10 --save fashion.npz"
    evaluate = "evaluate fashion.npz --plot fashion.png"
    assert "nbnet " + train in readme and "nbnet " + evaluate in readme  # the README's commands, as written
    result = invoke(*train.split())
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / ".cache" / "nbnet" / "fashion-mnist").glob("*.gz"))) == 4
    result = invoke(*evaluate.split())
    assert result.exit_code == 0, result.output
    assert "on the fashion-mnist test set" in result.output and "Ankle boot: " in result.output
    assert (tmp_path / "fashion.png").read_bytes().startswith(b"\x89PNG")
    image = np.zeros((28, 28))
    image[4:24, 8:20] = 1.0
    np.save("one.npy", image)
    result = invoke("predict", "fashion.npz", "one.npy", "--top-k", 10)  # what a user does next
    assert result.exit_code == 0, result.output
    assert all(name in result.output for name in real.class_names)


def test_the_idx_sets_carry_four_digests_and_ten_names():
    for name, idx_set in data_module.IDX_SETS.items():
        assert sorted(idx_set.sha256) == sorted(stem + ".gz" for stem in data_module.MNIST_FILES.values())
        assert all(len(digest) == 64 and int(digest, 16) >= 0 for digest in idx_set.sha256.values())
        assert idx_set.class_names is None or len(idx_set.class_names) == 10
        assert data_module.N_INPUTS[name] == 784 and name in data_module.INPUTS


def test_python_dash_m_and_console_help():
    result = subprocess.run([sys.executable, "-m", "nbnet", "train", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--batch-size" in result.stdout


def test_the_progress_bar_shows_the_rate_and_goes_when_its_epoch_ends(monkeypatch):
    import io
    import sys

    from nbnet.cli.train import EpochProgressBar

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    bar = EpochProgressBar(epochs=3, batch_size=10)
    for done in (1, 5, 10):
        bar(2, done, 10)
        bar.start -= 1.0  # as if a second went by
    shown = terminal.getvalue()
    assert "epoch 2/3" in shown and "samples/s" in shown and "100%" in shown
    assert shown.endswith("\x1b[1A\x1b[2K")  # the finished bar is erased: the epoch's row takes its place
