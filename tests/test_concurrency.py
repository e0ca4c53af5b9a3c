"""Four processes started together on one empty kernel cache (a sweep, a cluster, two
terminals): all succeed, and each trains the same weights as a run alone. They compile one
at a time (nbnet.cache.compile_lock): Numba's cache index is read-modify-write, and
concurrent compiles of one function's signatures can drop each other's entries."""

import os
import subprocess
import sys

import numpy as np
from click.testing import CliRunner

from nbnet import Network
from nbnet.cli import main


def test_four_processes_on_one_empty_cache_all_succeed_with_the_same_weights(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    args = ["train", "--epochs", "2", "--hidden", "9", "-q", "--plot", os.devnull]
    children = [subprocess.Popen([sys.executable, "-m", "nbnet", *args, "--save", str(tmp_path / f"m{i}.npz")],
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                for i in range(4)]
    outputs = [child.communicate(timeout=300)[0] for child in children]
    assert [child.returncode for child in children] == [0] * 4, outputs
    alone = CliRunner().invoke(main, [*args, "--save", str(tmp_path / "alone.npz")])  # (this process's cache)
    assert alone.exit_code == 0, alone.output
    reference = Network.load(tmp_path / "alone.npz")
    for i in range(4):
        net = Network.load(tmp_path / f"m{i}.npz")
        assert all(np.array_equal(a, b) for a, b in zip(net.weights + net.biases, reference.weights + reference.biases))
