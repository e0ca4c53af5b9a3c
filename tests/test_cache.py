"""The on-disk kernel cache: used across processes, and moved aside when the package is read-only."""

import csv
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numba
import pytest

import nbnet

PACKAGE = Path(nbnet.__file__).parent


def run_python(code, env, cwd):
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_read_only_package_caches_in_user_cache_dir(tmp_path):
    """Numba cannot write next to a read-only package; kernels must still compile, run and be
    cached in the user cache directory (~/.cache/numba via XDG_CACHE_HOME)."""
    copy = tmp_path / "site" / "nbnet"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    # root ignores permission bits, so also make `__pycache__` impossible to create
    (copy / "__pycache__").write_text("blocks the in-tree cache")
    for path in [copy, *copy.rglob("*")]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    cache_home = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update(PYTHONPATH=str(tmp_path / "site"), XDG_CACHE_HOME=str(cache_home))
    code = ("import numpy as np, nbnet; from nbnet import Network;"
            "print(nbnet.__file__); print(Network([3, 4, 2], seed=1).predict(np.ones((2, 3))))")
    try:
        output = run_python(code, env, tmp_path)
        assert str(copy) in output
        cached = list((cache_home / "numba").rglob("kernels.forward*.nbi"))
        assert cached, "no kernel index in the user cache directory"
        assert list(cache_home.rglob("*.nbc"))
    finally:
        for path in [copy, *copy.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two threads")
def test_cached_kernels_in_new_processes_agree_across_thread_counts(tmp_path):
    """Separate processes (kernels loaded from the disk cache) with 1 and 2 threads train the
    same model: identical per-epoch costs, to the last printed digit."""
    rows = {}
    for threads in (1, 2):
        metrics = tmp_path / f"m{threads}.csv"
        subprocess.run([sys.executable, "-m", "nbnet", "train", "--epochs", "3", "--threads", str(threads),
                        "--batch-size", "16", "--metrics", str(metrics), "--plot", str(tmp_path / "p.png"), "-q"],
                       check=True, capture_output=True, timeout=600)
        with open(metrics) as handle:
            rows[threads] = [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]
    assert rows[1] == rows[2]


def test_fresh_compile_and_cached_kernels_train_the_same_model(tmp_path):
    """The first run (compiling) and later runs (loading the disk cache) must give the same
    weights bit for bit: compiler choices that reorder sums would break this."""
    code = ("import hashlib, numpy as np; from nbnet import Network; from nbnet.data import load_digits;"
            "from nbnet.train import train_epoch, prepare_kernels; d = load_digits();"
            "print(prepare_kernels(Network([64, 30, 10]), 16)[1]);"
            "digests = []\n"
            "for hidden, batch in [((30,), 1), ((30,), 16), ((300, 20), 32)]:\n"
            "    net = Network([64, *hidden, 10], seed=0); X = net.as_inputs(d.X_train); y = net.as_labels(d.y_train, len(X))\n"
            "    train_epoch(net, X, y, np.random.default_rng(0).permutation(len(X)), batch, 0.3, 0.001)\n"
            "    digests.append(hashlib.sha256(b''.join(w.tobytes() for w in net.weights + net.biases)).hexdigest()[:12])\n"
            "print(digests)")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    first = run_python(code, env, tmp_path).split("\n")
    second = run_python(code, env, tmp_path).split("\n")
    assert first[0] == "True" and second[0] == "False"  # compiled, then loaded from the cache
    assert first[1] == second[1]
