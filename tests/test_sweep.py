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


CHECK = """
import sys, numpy as np
from nbnet import Network
from nbnet.optimizers import Optimizer
from nbnet.train import prepare_kernels, set_threads
set_threads(int(sys.argv[1]))
print(prepare_kernels(Network([64, 20, 10]), 10)[1], prepare_kernels(Network([64, 20, 10]), 10, Optimizer("adam"))[1],
      prepare_kernels(Network([784, 100, 10]), 10)[1])
"""


def test_nbnet_compile_and_the_sweep_fill_the_cache_for_later_processes(tmp_path):
    """After `nbnet compile` (and sweep.prepare, which a sweep runs before its workers start),
    a new process with the same cache compiles nothing: it loads what those prepared."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    compiled = subprocess.run([sys.executable, "-m", "nbnet", "compile", "--optimizers", "sgd"], env=env,
                              capture_output=True, text=True, timeout=600)
    assert compiled.returncode == 0, compiled.stderr
    assert "one thread: train, sgd" in compiled.stdout and "parallel: evaluate and predict" in compiled.stdout
    runs = [dict(dataset="digits", hidden=20, activation="sigmoid", batch_size=10, optimizer="adam", threads=1)]
    code = f"from nbnet.sweep import prepare; prepare({runs!r})"  # what nbnet sweep runs before its workers
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, timeout=600)
    for threads in ("1", "2"):  # one-thread and parallel variants (with 2 threads the MNIST-sized net is parallel)
        check = subprocess.run([sys.executable, "-c", CHECK, threads], env=env, capture_output=True, text=True,
                               timeout=600)
        assert check.stdout.split() == ["False", "False", "False"], check.stderr
