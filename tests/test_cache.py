"""The on-disk kernel cache: used across processes, and moved aside when the package is read-only."""

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


def run_python(code, env, cwd, *args):
    result = subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=cwd, capture_output=True, text=True,
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
def test_fresh_and_cached_kernels_on_1_and_2_threads_train_the_same_model(tmp_path):
    """The first run (compiling) and later runs (loading the disk cache) must give the same
    weights bit for bit: compiler choices that reorder sums would break this. So must 1 and 2
    threads: with 2, the network 64-300-20-10 at batch 32 takes the parallel drivers, with 1
    the one-thread drivers (the smaller runs take the one-thread drivers either way)."""
    code = ("import sys, hashlib, numpy as np; from nbnet import Network; from nbnet.data import load_digits;"
            "from nbnet.train import train_epoch, prepare_kernels, set_threads; d = load_digits();"
            "set_threads(int(sys.argv[1])); print(prepare_kernels(Network([64, 30, 10]), 16)[1]);"
            "digests = []\n"
            "for hidden, batch in [((30,), 1), ((30,), 16), ((300, 20), 32)]:\n"
            "    net = Network([64, *hidden, 10], seed=0); X = net.as_inputs(d.X_train); y = net.as_labels(d.y_train, len(X))\n"
            "    train_epoch(net, X, y, np.random.default_rng(0).permutation(len(X)), batch, 0.3, 0.001)\n"
            "    digests.append(hashlib.sha256(b''.join(w.tobytes() for w in net.weights + net.biases)).hexdigest()[:12])\n"
            "print(digests)")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    first = run_python(code, env, tmp_path, "2").split("\n")
    second = run_python(code, env, tmp_path, "2").split("\n")
    one_thread = run_python(code, env, tmp_path, "1").split("\n")
    assert first[0] == "True" and second[0] == "False"  # compiled, then loaded from the cache
    assert first[1] == second[1] == one_thread[1]
