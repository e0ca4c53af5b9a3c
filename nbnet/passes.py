"""Calling the compiled passes (the drivers at the end of kernels.py) from Python: the
buffers they write into, and which variant of them a call runs.

Every driver has a parallel variant (NAME: each kernel call runs on several threads when it
has enough work) and a one-thread variant (NAME.serial). Both compute the same numbers; the
one-thread variant is chosen when several threads would not pay, and then the parallel
kernels are never compiled (a cold start saves most of its compile time).
"""

import numba
import numpy as np

from . import kernels, pixels
from .aligned import empty
from .config import EVALUATION_TILE, GATHER_ROWS, PARALLEL_RUN_WORK

# Pixel bytes scaled at a time for an evaluation: one tile (3 MB of float32 MNIST inputs).
BYTES_BLOCK = EVALUATION_TILE


def parallel_pays(weights, samples):
    """True when more than one thread is allowed and a pass over `samples` samples at a time
    (a minibatch; 1 for evaluation) through these weights has PARALLEL_RUN_WORK multiply-adds."""
    return numba.get_num_threads() > 1 and samples * sum(W.size for W in weights) >= PARALLEL_RUN_WORK


def variant(driver, parallel):
    """The parallel or the one-thread variant of a compiled driver."""
    return driver if parallel else driver.serial


def layer_buffers(weights, n_samples):
    """One (n_samples, n_out) array per layer, in the dtype of the weights."""
    return tuple(empty((n_samples, W.shape[0]), W.dtype) for W in weights)


def step_buffers(weights, batch_size, dropout):
    """((zs, activations, deltas), masks, kept) for minibatches of batch_size samples; masks
    and kept are None without dropout."""
    buffers = tuple(layer_buffers(weights, batch_size) for _ in range(3))
    if not dropout:
        return buffers, None, None
    return buffers, layer_buffers(weights, batch_size), layer_buffers(weights, batch_size)


def chunk_buffers(X, y, batch_size):
    """Two buffers for kernels.gathered_batch, each of GATHER_ROWS samples (inputs and their
    targets y) rounded down to whole minibatches (at least one); empty at batch size 1, which
    reads X in place."""
    rows = 0 if batch_size == 1 else batch_size * max(1, GATHER_ROWS // batch_size)
    x_chunks = (empty((rows, X.shape[1]), X.dtype), empty((rows, X.shape[1]), X.dtype))
    y_chunks = (np.empty((rows, *y.shape[1:]), dtype=y.dtype), np.empty((rows, *y.shape[1:]), dtype=y.dtype))
    return x_chunks, y_chunks


def cost_buffers(n_samples, dtype):
    """(J, correct) for kernels.add_costs: per-sample costs and 0/1 correctness."""
    return np.empty(n_samples, dtype=dtype), np.empty(n_samples, dtype=np.int64)


def evaluate(weights, biases, acts, cost, X, y, parallel):
    """(sum of the costs, number classified correctly) over X, y, in tiles (kernels.evaluate_tiles).
    Pixel bytes (uint8 X) are scaled to inputs a block of tiles at a time (nbnet.pixels), and
    give the same figures as their float inputs."""
    totals = np.zeros(2)
    if X.dtype != np.uint8:
        _add_tiles(weights, biases, acts, cost, X, y, parallel, totals)
        return totals[0], int(totals[1])
    block = min(BYTES_BLOCK, X.shape[0])
    inputs, order = empty((block, X.shape[1]), weights[0].dtype), np.arange(X.shape[0])
    for first in range(0, X.shape[0], block):
        x = inputs[:min(block, X.shape[0] - first)]
        pixels.pixel_rows(X, order, first, x)
        _add_tiles(weights, biases, acts, cost, x, y[first:first + x.shape[0]], parallel, totals)
    return totals[0], int(totals[1])


def _add_tiles(weights, biases, acts, cost, X, y, parallel, totals):
    """totals += (sum of the costs, number correct) over X, whole tiles first, then the rest."""
    tile = min(EVALUATION_TILE, X.shape[0])
    whole = X.shape[0] - X.shape[0] % tile
    for first, stop in ((0, whole), (whole, X.shape[0])):
        rows = min(tile, stop - first)
        if rows:
            variant(kernels.evaluate_tiles, parallel)(
                weights, biases, acts, cost, X[first:stop], y[first:stop], layer_buffers(weights, rows),
                layer_buffers(weights, rows), *cost_buffers(rows, X.dtype), totals)
