"""nbnet.narrow (the samples in SIMD lanes): every kernel and pass against its NumPy twin, also as
plain Python; the passes in rounds of chunks; the same bits on one or two threads and from the
parallel or the one-thread variant; the chunk widths; which networks take these passes."""

import os
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest

from nbnet import narrow, passes
from nbnet.config import LANE_PAD, NARROW_MAX_INPUTS, NARROW_MAX_WEIGHTS, NARROW_MIN_BATCH, NARROW_ROW_BYTES
from nbnet.network import Network
from nbnet.train import set_threads

from narrow_cases import check_all, check_passes


def test_every_kernel_and_pass_matches_its_numpy_twin():
    """Both dtypes, every activation, output, cost and target form (class ids, a target matrix,
    weighted samples), chunks with padding columns; one test, so one worker compiles them."""
    check_all()


def test_as_plain_python_the_loops_match_their_twins():
    """The loop bodies themselves, run by the Python interpreter (NUMBA_DISABLE_JIT=1)."""
    code = ("from narrow_cases import check_all\n"
            "check_all([(16, 3, 2), (32, 5, 4)], [([4, 5, 3], 2, 'softmax', 'cross-entropy', 21, 'ids'),"
            " ([3, 4, 2], 1, 'identity', 'quadratic', 19, 'weighted')])\nprint('ok')")
    result = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent, capture_output=True, text=True,
                            env=dict(os.environ, NUMBA_DISABLE_JIT="1"), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")


def test_passes_in_rounds_of_chunks():
    """More chunks than buffers: each round's sums are added in chunk order, to the same result."""
    rng = np.random.default_rng(3)
    for dtype in (np.float32, np.float64):
        check_passes(rng, dtype, [4, 6, 3], "relu", "softmax", "cross-entropy", 1500, "ids", n_buffers=2)


@pytest.fixture
def restore_threads():
    yield
    set_threads(None)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two threads")
def test_the_same_bits_on_one_and_two_threads_and_from_either_variant(restore_threads):
    """Chunks are the same whatever runs them, and their sums are added in chunk order (the
    gradient's parallel pass, with float64 class ids as L-BFGS on the digits runs it;
    evaluate and forward_rows run on one thread in either variant)."""
    results = []
    for threads, variant in ((1, "serial"), (1, "parallel"), (2, "parallel")):
        set_threads(threads)
        results.append(check_passes(np.random.default_rng(5), np.float64, [8, 24, 5], "relu", "softmax",
                                    "cross-entropy", 3000, "ids", variant=variant))
    for other in results[1:]:
        for got, want in zip(other, results[0]):
            np.testing.assert_array_equal(got, want)


def test_chunk_widths():
    """A whole number of SIMD registers, at most NARROW_ROW_BYTES, cut in two when two threads
    can share a pass, and never a function of the thread count."""
    small = (np.zeros((100, 4)), np.zeros((3, 100)))
    for dtype in (np.float32, np.float64):
        weights = tuple(W.astype(dtype) for W in small)
        pad, widest = LANE_PAD // np.dtype(dtype).itemsize, NARROW_ROW_BYTES // np.dtype(dtype).itemsize
        assert passes.chunk_width(weights, 5) == pad  # one padded chunk
        assert passes.chunk_width(weights, 112) == -(-112 // pad) * pad  # 112 x 700 multiply-adds: one chunk
        assert passes.chunk_width(weights, 500) == -(-250 // pad) * pad  # 500 x 700: worth two threads, two chunks
        assert passes.chunk_width(weights, 100_000) == widest
    tiny = (np.zeros((2, 3)), np.zeros((1, 2)))
    assert passes.chunk_width(tiny, 200) == 208  # little work: one chunk, 200 float64 samples padded to 16s


def test_which_networks_take_the_narrow_passes():
    assert passes.narrow_pays(Network([64, 30, 10]).weights)
    assert not passes.narrow_pays(Network([784, 100, 10]).weights)
    assert passes.narrow_pays(Network([NARROW_MAX_INPUTS, 10]).weights)
    assert not passes.narrow_pays(Network([NARROW_MAX_INPUTS + 1, 10]).weights)  # (inputs of a neuron in lanes pay)
    at_most = Network([100, 100, NARROW_MAX_WEIGHTS // 100 - 100]).weights
    assert sum(W.size for W in at_most) == NARROW_MAX_WEIGHTS and passes.narrow_pays(at_most)
    assert not passes.narrow_pays(Network([100, 100, NARROW_MAX_WEIGHTS // 100 - 99]).weights)
    # training: minibatches that fill SIMD lanes with samples
    digits, tiny = Network([64, 30, 10]).weights, Network([4, 32, 16, 4]).weights
    assert passes.narrow_pays(digits, NARROW_MIN_BATCH) and not passes.narrow_pays(digits, NARROW_MIN_BATCH - 1)
    assert passes.narrow_pays(tiny, NARROW_MIN_BATCH // 2) and not passes.narrow_pays(tiny, NARROW_MIN_BATCH // 2 - 1)
