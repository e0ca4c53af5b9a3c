"""nbnet sweep: configurations, the Executor interface, the CLI, and a Dask cluster."""

import csv
from concurrent.futures import ThreadPoolExecutor

import pytest
from click.testing import CliRunner

from nbnet.cli import main
from nbnet.options import TrainConfig
from nbnet.sweep import best, grid, jobs, sweep, threads_per_run

from test_data import mirror  # noqa: F401  (a fixture, used by name)
from documents import documented  # noqa: E402


def test_grid_covers_every_combination():
    swept, configs = grid(TrainConfig(epochs=1), {"l2": [0, 5], "lr": [0.1, 0.5, 1.0], "hidden": [(30,)]})
    assert swept == ["l2", "lr"] and len(configs) == 6
    assert {(c.l2, c.lr) for c in configs} == {(a, b) for a in (0, 5) for b in (0.1, 0.5, 1.0)}
    assert all(c.epochs == 1 and c.hidden == (30,) for c in configs)
    assert threads_per_run(4, 2) == 1 and threads_per_run(1, 2) == 2


def test_sweep_runs_on_any_executor():
    base = TrainConfig(epochs=2, train_size=300, validation=100, hidden=(20,))
    runs = jobs(grid(base, {"l2": [0.0, 1000.0]})[1], None, 1)
    with ThreadPoolExecutor(2) as executor:
        results = sweep(runs, executor)
    assert [r["l2"] for r in results] == [0.0, 1000.0]
    assert all(r["held_out"] == "validation" for r in results)
    assert best(results)["l2"] == 0.0  # a huge penalty cannot fit the data


def test_cli_sweep_writes_csv_and_plot(tmp_path):
    result = CliRunner().invoke(main, ["sweep", "--l2", "0", "--l2", "0.5", "--l2", "5", "--l2", "50", "--epochs", "2",
                                       "--train-size", "400", "--csv", str(tmp_path / "s.csv"),
                                       "--plot", str(tmp_path / "s.png")])
    assert result.exit_code == 0, result.output
    with open(tmp_path / "s.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [float(r["l2"]) for r in rows] == [0, 0.5, 5, 50] and all(r["held_out"] == "test" for r in rows)
    assert (tmp_path / "s.png").read_bytes().startswith(b"\x89PNG")
    assert "best (test cost)" in result.output


def test_cli_sweep_on_a_local_dask_cluster(tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        result = CliRunner().invoke(main, ["sweep", "--lr", "0.1", "--lr", "3000", "--epochs", "1", "--train-size", "200",
                                           "--scheduler", cluster.scheduler_address, "--csv", str(tmp_path / "d.csv"),
                                           "--plot", str(tmp_path / "d.png")])
    assert result.exit_code == 0, result.output
    assert "Dask cluster" in result.output
    assert len((tmp_path / "d.csv").read_text().splitlines()) == 3
    # the worker's divergence warning comes back with its result: one line naming the run
    assert result.output.count("diverging") == 1 and "Warning: lr 3000: training is diverging in epoch 1" in result.output



def test_sweep_accepts_every_train_option():
    """Every option of `nbnet train` that describes the run is an option of `nbnet sweep`."""
    train_options = {p.name for p in main.commands["train"].params}
    sweep_options = {p.name for p in main.commands["sweep"].params}
    run_only = {"metrics_path", "save_path", "checkpoint_every", "resume"}  # (--download, --threads: both have them)
    assert train_options - run_only <= sweep_options
    assert "quiet" in sweep_options


def test_sweep_over_a_choice_and_architectures_end_to_end(tmp_path):
    """--activation swept as a choice, --hidden as whole architectures (one of two layers): a
    grid of 2 x 2 runs, a CSV column per swept option, a plot with one line per activation."""
    command = "sweep --activation sigmoid --activation relu --hidden 20 --hidden 16,12 --lr 0.1 --epochs 2 --train-size 300 -q"
    assert "nbnet " + command in documented()  # the README's command
    result = CliRunner().invoke(main, [*command.split(), "--csv", str(tmp_path / "s.csv"),
                                       "--plot", str(tmp_path / "s.png")])
    assert result.exit_code == 0, result.output
    with open(tmp_path / "s.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["hidden"], r["activation"]) for r in rows] == [("20", "sigmoid"), ("20", "relu"), ("16,12", "sigmoid"),
                                                               ("16,12", "relu")]
    assert "lr" not in rows[0] and all(0 <= float(r["held_out_accuracy"]) <= 1 for r in rows)
    assert (tmp_path / "s.png").read_bytes().startswith(b"\x89PNG")
    assert "best (test cost): hidden" in result.output and "sweep:" not in result.output  # --quiet: no notes


def test_cli_sweep_downloads_its_data_and_takes_a_thread_count(tmp_path, mirror, monkeypatch):  # noqa: F811
    """--download fetches (and checks) the IDX files of the swept data set first, as nbnet train's;
    --threads sets each run's thread count; a wrong digest is one line and nothing is run."""
    import hashlib

    from nbnet import data as data_module

    from idx_files import write_mnist

    served, url = mirror
    write_mnist(served, n_train=60, n_test=20, side=28)
    checksums = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in served.iterdir()}
    real = data_module.IDX_SETS["mnist"]
    monkeypatch.setitem(data_module.IDX_SETS, "mnist", data_module.IdxSet(real.title, (url,), checksums,
                                                                          real.class_names))
    args = ["sweep", "--dataset", "mnist", "--download", "--data-dir", str(tmp_path / "mnist"), "--threads", "1",
            "--lr", "0.1", "--lr", "0.5", "--epochs", "1", "--workers", "1", "--csv", str(tmp_path / "s.csv"),
            "--plot", str(tmp_path / "s.png")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "mnist").glob("*.gz"))) == 4 and "1 thread(s) each" in result.output
    assert "best (test cost): lr" in result.output
    monkeypatch.setitem(data_module.IDX_SETS, "mnist", data_module.IdxSet(real.title, (url,),
                                                                          {name: "0" * 64 for name in checksums},
                                                                          real.class_names))
    result = CliRunner().invoke(main, [*args[:5], str(tmp_path / "other"), *args[6:]])
    assert result.exit_code == 1 and "SHA-256 mismatch" in result.output and "best" not in result.output
    too_many = CliRunner().invoke(main, [*args[:6], "--threads", "999", *args[8:]])
    assert too_many.exit_code == 2 and "at most" in too_many.output
