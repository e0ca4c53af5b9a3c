"""Calling the compiled passes (the drivers at the end of kernels.py and narrow.py) from Python:
which passes suit a network, the buffers they write into, and which variant of them a call runs.

A narrow network (few inputs per layer, few weights) runs nbnet.narrow's passes (the samples in SIMD
lanes), a wide one nbnet.kernels' (the inputs of a neuron in SIMD lanes); so do minibatches too
small to fill SIMD lanes with samples: `narrow_pays`. A training run evaluates through the
passes it trains with, so it compiles one family.
Every driver has a parallel variant (NAME: its work shared among the threads when it has
enough) and a one-thread variant (NAME.serial). Both compute the same numbers; the one-thread
variant is chosen when several threads would not pay, and then the parallel code is never
compiled (a cold start saves most of its compile time).
"""

import numpy as np

from . import kernels, narrow, pixels
from .aligned import empty
from .config import (EVALUATION_TILE, GATHER_ROWS, LANE_PAD, NARROW_CHUNK_BUFFERS, NARROW_MAX_INPUTS, NARROW_MAX_WEIGHTS,
                     NARROW_MIN_BATCH, NARROW_PARALLEL_WORK, NARROW_ROW_BYTES, PARALLEL_RUN_WORK, ROW_PARTS,
                     ROW_PARTS_MAX_SAMPLES, ROW_PARTS_MIN_ROWS, threads_in_use)

# Pixel bytes scaled at a time for an evaluation: one tile (3 MB of float32 MNIST inputs).
BYTES_BLOCK = EVALUATION_TILE


def parallel_pays(weights, samples):
    """True when more than one thread is allowed and a pass over `samples` samples at a time
    (a minibatch; 1 for evaluation) through these weights has PARALLEL_RUN_WORK multiply-adds."""
    return threads_in_use() > 1 and samples * sum(W.size for W in weights) >= PARALLEL_RUN_WORK


def narrow_pays(weights, batch_size=None):
    """True when nbnet.narrow's passes suit the network (at most NARROW_MAX_INPUTS inputs to any layer and
    NARROW_MAX_WEIGHTS weights) and, for training, its minibatches: at least NARROW_MIN_BATCH samples,
    half that when no layer has more than NARROW_MIN_BATCH // 2 inputs (bench/small.py's step
    times: below these, nbnet.kernels' steps are faster)."""
    inputs = max(W.shape[1] for W in weights)
    if inputs > NARROW_MAX_INPUTS or sum(W.size for W in weights) > NARROW_MAX_WEIGHTS:
        return False
    return batch_size is None or batch_size >= (NARROW_MIN_BATCH // 2 if inputs <= NARROW_MIN_BATCH // 2 else
                                                NARROW_MIN_BATCH)


def narrow_steps(weights, batch_size, dropout, track_gradients, kernels):
    """Whether minibatch steps train through nbnet.narrow: narrow_pays for the network and the batch
    size, and nothing asks for what only nbnet.kernels' steps do (dropout, tracked gradients, the
    plain loops of kernels="loops")."""
    return narrow_pays(weights, batch_size) and not dropout and not track_gradients and kernels == "fast"


def narrow_parallel(weights, samples):
    """True when nbnet.narrow's passes over `samples` samples at a time share their chunks among
    the threads: more than one thread is allowed, the samples make more than one chunk, and
    their forward pass has NARROW_PARALLEL_WORK multiply-adds."""
    return (threads_in_use() > 1 and samples > chunk_width(weights, samples)
            and samples * sum(W.size for W in weights) >= NARROW_PARALLEL_WORK)


def evaluation_parallel(weights):
    """Whether evaluating, predicting and full-batch gradients run a driver's parallel variant: when
    the network has PARALLEL_RUN_WORK weights (parallel_pays), so never for a narrow network. A
    property of the network alone, so a run compiles one variant, whatever it evaluates."""
    return parallel_pays(weights, 1)  # (a narrow network evaluates on one thread: its passes are fast)


def steps_parallel(weights, batch_size, narrow_steps):
    """Whether minibatch steps of batch_size samples run their driver's parallel variant, through
    nbnet.narrow (narrow_steps) or nbnet.kernels."""
    return (narrow_parallel if narrow_steps else parallel_pays)(weights, batch_size)


def variant(driver, parallel):
    """The parallel or the one-thread variant of a compiled driver."""
    return driver if parallel else driver.serial


def layer_buffers(weights, n_samples):
    """One (n_samples, n_out) array per layer, in the dtype of the weights."""
    return tuple(empty((n_samples, W.shape[0]), W.dtype) for W in weights)


def row_parts(W_next, delta):
    """kernels.hidden_delta's `parts` for a delta of shape (S, n) fed back through W_next:
    (ROW_PARTS, S, n) when W_next has ROW_PARTS_MIN_ROWS rows or more and S is at most
    ROW_PARTS_MAX_SAMPLES (a minibatch), else empty, (0, S, n)."""
    n_parts = ROW_PARTS if W_next.shape[0] >= ROW_PARTS_MIN_ROWS and delta.shape[0] <= ROW_PARTS_MAX_SAMPLES else 0
    return empty((n_parts, *delta.shape), delta.dtype)


def hidden_delta_in_phases(W_next, delta_next, z, a, act, delta, kernel=kernels.hidden_delta):
    """delta^m by `kernel` (kernels.hidden_delta or one of its variants) from Python, as
    kernels.backpropagate runs it: with the parts a step gives it (row_parts), phase 0, then
    phase 1 when there are parts. Returns the parts."""
    parts = row_parts(W_next, delta)
    for phase in range(2 if parts.shape[0] > 0 else 1):
        kernel(W_next, delta_next, z, a, act, delta, parts, np.int64(phase))
    return parts


def parts_buffers(weights, deltas):
    """row_parts for the delta of each layer (kernels.backpropagate's `parts`); the output
    layer's, never used, is empty."""
    unused = empty((0, *deltas[-1].shape), deltas[-1].dtype)
    return tuple(row_parts(weights[m + 1], deltas[m]) for m in range(len(weights) - 1)) + (unused,)


def step_buffers(weights, batch_size, dropout):
    """((zs, activations, deltas, parts), masks, kept) for minibatches of batch_size samples
    (parts: parts_buffers); masks and kept are None without dropout."""
    zs, activations, deltas = (layer_buffers(weights, batch_size) for _ in range(3))
    buffers = zs, activations, deltas, parts_buffers(weights, deltas)
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


def evaluate(weights, biases, acts, cost, X, y, parallel, narrow_passes=None):
    """(sum of the costs, number classified correctly) over X, y, in tiles (kernels.evaluate_tiles),
    or by nbnet.narrow's evaluate (narrow_passes; None: as narrow_pays says). Pixel bytes (uint8 X)
    are scaled to inputs a block of tiles at a time (nbnet.pixels), and give the same figures as
    their float inputs."""
    totals = np.zeros(2)
    narrow_passes = narrow_pays(weights) if narrow_passes is None else narrow_passes
    add = _add_narrow if narrow_passes else _add_tiles
    if X.dtype != np.uint8:
        add(weights, biases, acts, cost, X, y, parallel, totals)
        return totals[0], int(totals[1])
    block = min(BYTES_BLOCK, X.shape[0])
    inputs, order = empty((block, X.shape[1]), weights[0].dtype), np.arange(X.shape[0])
    for first in range(0, X.shape[0], block):
        x = inputs[:min(block, X.shape[0] - first)]
        pixels.pixel_rows(X, order, first, x)
        add(weights, biases, acts, cost, x, y[first:first + x.shape[0]], parallel, totals)
    return totals[0], int(totals[1])


def _add_narrow(weights, biases, acts, cost, X, y, parallel, totals):
    """totals += (sum of the costs, number correct) over X, by nbnet.narrow's evaluate."""
    n = X.shape[0]
    buffers = narrow_buffers(weights, min(n, EVALUATION_TILE), y)
    variant(narrow.evaluate, parallel)(
        sizes_of(weights), acts, cost, flat(weights, biases), X, y, np.arange(n), buffers, totals)


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


# ----------------------------------------------------------------------------- nbnet.narrow
def chunk_width(weights, n_samples):
    """Samples per chunk of nbnet.narrow's passes: as many as fit NARROW_ROW_BYTES per row (a wider
    chunk spreads each kernel's per-row costs over more samples), split in two when the pass has
    NARROW_PARALLEL_WORK multiply-adds (so that two threads can share it), rounded up to a whole
    number of SIMD registers (LANE_PAD). From the network and the number of samples alone, never
    from the thread count (the result does not depend on it)."""
    itemsize = weights[0].dtype.itemsize
    pad, widest = LANE_PAD // itemsize, NARROW_ROW_BYTES // itemsize
    n_chunks = -(-n_samples // widest)
    if n_chunks == 1 and n_samples * sum(W.size for W in weights) >= NARROW_PARALLEL_WORK and n_samples >= 2 * pad:
        n_chunks = 2
    return _round_up(-(-n_samples // n_chunks), pad)


def sizes_of(weights):
    """The layer sizes n_0 .. n_L of these weights, as nbnet.narrow's passes take them."""
    return np.array([weights[0].shape[1]] + [W.shape[0] for W in weights], dtype=np.int64)


def flat(weights, biases):
    """Every W^m by rows, then every b^m, in one vector: the layout of nbnet.narrow's parameters
    and of Network.flat_parameters."""
    return np.concatenate([W.ravel() for W in weights] + list(biases))


def parameter_views(theta, weights, biases):
    """([W^m], [b^m]) shaped like `weights` and `biases`: views of a vector laid out as `flat` lays
    them out."""
    views, offset = [], 0
    for P in (*weights, *biases):
        views.append(theta[offset:offset + P.size].reshape(P.shape))
        offset += P.size
    return views[:len(weights)], views[len(weights):]


def _round_up(n, multiple):
    return -(-n // multiple) * multiple


def narrow_buffers(weights, n_samples, y):
    """The buffers of nbnet.narrow's passes over n_samples samples at a time (one minibatch, or a
    data set in rounds) whose targets look like y (class ids, or rows of a target matrix):
    (xs, ts, zs, activations, deltas, scratch, grads, chunk_totals), each with one entry per
    chunk held in memory at once (see nbnet.narrow)."""
    width = chunk_width(weights, n_samples)
    n_buffers = min(NARROW_CHUNK_BUFFERS, -(-n_samples // width))
    dtype, neurons = weights[0].dtype, sum(W.shape[0] for W in weights)
    n_params = sum(W.size + W.shape[0] for W in weights)
    ts = np.zeros((n_buffers, width), np.int64) if np.ndim(y) == 1 else empty((n_buffers, y.shape[1], width), dtype)
    return (empty((n_buffers, weights[0].shape[1], width), dtype), ts,
            *(empty((n_buffers, neurons, width), dtype) for _ in range(3)), empty((n_buffers, 4, width), dtype),
            empty((n_buffers, n_params), dtype), np.zeros((n_buffers, 2)))


def narrow_forward(weights, biases, acts, X, parallel):
    """The output activations a^L of X, (n_samples, n_out), by nbnet.narrow's forward_rows."""
    n = X.shape[0]
    no_targets = np.zeros(1, np.int64)
    out = empty((n, weights[-1].shape[0]), weights[0].dtype)
    variant(narrow.forward_rows, parallel)(
        sizes_of(weights), acts, flat(weights, biases), X, no_targets, narrow_buffers(weights, min(n, EVALUATION_TILE),
                                                                                      no_targets), out)
    return out


def narrow_gradients(weights, biases, acts, cost, X, y, l2_over_n, parallel):
    """(grads_W, grads_b, sum of the costs) of the mean cost over X, y plus the L2 term, by
    nbnet.narrow's gradient_and_cost."""
    n = X.shape[0]
    gradient, totals = np.empty(sum(W.size + b.size for W, b in zip(weights, biases)), weights[0].dtype), np.zeros(2)
    variant(narrow.gradient_and_cost, parallel)(
        sizes_of(weights), acts, cost, flat(weights, biases), X, y, np.arange(n), float(l2_over_n),
        narrow_buffers(weights, min(n, EVALUATION_TILE), y), gradient, totals)
    return (*parameter_views(gradient, weights, biases), totals[0])
