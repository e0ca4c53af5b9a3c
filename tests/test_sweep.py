"""nbnet sweep: configurations, the Executor interface, the CLI, and a Dask cluster."""

import csv
from concurrent.futures import ThreadPoolExecutor

import pytest
from click.testing import CliRunner

from nbnet.cli import main
from nbnet.sweep import best, combinations, sweep, threads_per_run


def test_combinations_cover_the_grid():
    runs = combinations({"epochs": 1}, {"l2": [0, 5], "lr": [0.1, 0.5, 1.0], "hidden": [30]})
    assert len(runs) == 6 and {(r["l2"], r["lr"]) for r in runs} == {(a, b) for a in (0, 5) for b in (0.1, 0.5, 1.0)}
    assert all(r["epochs"] == 1 and r["hidden"] == 30 for r in runs)
    assert threads_per_run(4, 2) == 1 and threads_per_run(1, 2) == 2


def test_sweep_runs_on_any_executor():
    base = dict(dataset="digits", activation="sigmoid", optimizer="sgd", epochs=2, batch_size=10, seed=0,
                train_size=300, validation=100, threads=1)
    runs = combinations(base, {"l2": [0.0, 1000.0], "lr": [0.5], "hidden": [20]})
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
        result = CliRunner().invoke(main, ["sweep", "--lr", "0.1", "--lr", "1.0", "--epochs", "1", "--train-size", "200",
                                           "--scheduler", cluster.scheduler_address, "--csv", str(tmp_path / "d.csv"),
                                           "--plot", str(tmp_path / "d.png")])
    assert result.exit_code == 0, result.output
    assert "Dask cluster" in result.output
    assert len((tmp_path / "d.csv").read_text().splitlines()) == 3

