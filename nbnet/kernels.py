"""The compiled heart of nbnet: one explicit loop nest per backpropagation equation.

Conventions (see README, "Kernel map"):
  shapes   X, a, z, delta: (n_samples, n_neurons)   W^m: (n_out, n_in)   b^m: (n_out,)
  indices  s sample, j neuron of this layer, k neuron of the layer below
  threads  a kernel's body computes the outputs owned by lo..hi-1 of the index that owns what
           it writes: samples `s` for z, a and delta; neurons `j` (or blocks of 4 of them) for
           grad_W, grad_b and the update. `kernel` gives each thread a chunk of them. No two
           threads write one element and every sum runs in a fixed order, so results are the
           same for any thread count.
  numbers  constants are float32 literals (exact in float64 too), learning rates are cast to
           the array dtype, so float32 loops stay float32.

The last part of the file chains the kernels into a forward pass, a backward pass and a
whole run of minibatch SGD steps, all compiled, so Python is not in the inner loop. They live
here, beside the kernels they call, because Numba's on-disk cache only notices edits to the
file that holds a function.
"""

import inspect

import numpy as np
from numba import prange
from numba.extending import overload

from .codes import (ADAM, CROSS_ENTROPY, EXP, IDENTITY, MOMENTUM, NESTEROV, POISSON, QUADRATIC, RELU, RMSPROP, SGD,  # noqa: F401
                    SIGMOID, SOFTMAX, TANH)
from .config import (PARALLEL_MIN_PRODUCTS, PARALLEL_MIN_WORK, SAMPLE_TILE, compiled_only, driver, entry_on_demand,
                     inlined, inlined_nests, inner_driver, loop_nest, on_demand_driver, parallel, renamed, same_entries,
                     serial, thin_parallel, thread_count)
from .vecmath import exp, log, log1p, tanh


# The variants of a kernel (see `kernel`), written out for each kernel's own parameters ARGS:
# Numba inlines a function into its caller only when it names its parameters (not with *args).
# ROWS is the kernel's body, which computes the outputs owned by lo..hi-1.
THREADS = thread_count()
PARALLEL = """
def NAME(ARGS):
    n = OWNERS(ARGS)
    chunks = min(n, THREADS())
    for c in prange(chunks):  # (the first chunks get the extra owner: the last block of rows may be a short one)
        ROWS(ARGS, -(-c * n // chunks), -(-(c + 1) * n // chunks))
"""
ONE_THREAD = """
def NAME(ARGS):
    ROWS(ARGS, int64(0), OWNERS(ARGS))
"""
CHOOSER = """
def NAME(ARGS):
    if WORK(ARGS) >= MIN_WORK:
        PARALLEL(ARGS)
    else:
        ONE_THREAD(ARGS)
"""


def written_out(template, name, fn, compile_as, qualname=None, **scope):
    """The function `template` defines, named `name` (qualified name: `qualname`, the name of its
    compiled code and cache files), with ARGS the parameters of the kernel body `fn` before its
    last two (lo, hi), compiled by `compile_as`."""
    args = ", ".join(list(inspect.signature(fn).parameters)[:-2])
    scope = dict(dict(__name__=__name__, prange=prange, int64=np.int64, THREADS=THREADS), **scope)
    # (compiled as if written in this file, where Numba's disk cache keeps the parallel kernel)
    exec(compile(template.replace("NAME", name).replace("ARGS", args), __file__, "exec"), scope)
    function = scope[name]
    function.__qualname__ = qualname or name
    return compile_as(function)


def kernel(work, owners, min_work=PARALLEL_MIN_WORK):
    """Compile a kernel from one Python body fn(ARGS, lo, hi), which computes the outputs owned
    by lo..hi-1 of the `owners(ARGS)` owners (samples s, neurons j or blocks of 4 of them: see
    the file's docstring), once, here (never inside a function, which would recompile on
    every call), as:

      NAME.rows        the body, compiled once on its own: the work of every variant below
                       but NAME.serial (only they call it: no entry for Python,
                       config.compiled_only);
      NAME             the parallel kernel: the owners split into one chunk per thread
                       (`prange`), each thread calling NAME.rows on its chunk (its entry for
                       Python is compiled when Python calls it: config.entry_on_demand);
      NAME.one_thread  NAME.rows over all owners;
      NAME.serial      the same, with the body inlined: what the one-thread drivers call (a
                       compiled function of its own costs about 0.3 s of compile time however
                       small it is; a cold start of the digits saves 2 s);
      NAME.auto        NAME when work(ARGS) reaches min_work (config.PARALLEL_MIN_WORK
                       elements, or PARALLEL_MIN_PRODUCTS multiply-adds), else
                       NAME.one_thread: what the parallel drivers call.

    Every owner's outputs are computed by the same compiled loop whichever chunk it falls in,
    so all variants give the same bits, for any thread count (tests/test_kernels.py). The
    parallel kernel holds no loop of its own: its body is compiled once, as NAME.rows, instead
    of once more inside Numba's parallel loop, which cost 1-5 s of compile time per kernel
    (most of a cold MNIST start). So it is compiled as a driver (config.thin_parallel), under the
    name NAME_parallel (nbnet.narrow has kernels of the same names, with loops of their own).
    NAME.rows takes its arrays as distinct (`noalias`, as Numba's parallel loops do) and has
    its loop nests inlined (`loop_nest`). The long sums are `loop_nest` functions, compiled with
    `reassoc` and `contract`; the bodies leave them out, so that a short sum (a softmax row) is
    added in the same order in every variant, and no a * b + c is fused into one rounding in one
    variant and not in another (LLVM fused one in optimizer_step's parallel loop when it
    compiled the kernel, and not in the machine code it wrote to the disk cache: Adam's first
    run gave other bits than every later run). The copies are made here, in kernels.py, because
    Numba's disk cache only notices edits to the file a function's code comes from.
    """
    def compile_variants(fn):
        name, how_many = fn.__name__, inlined(owners)
        rows = compiled_only(serial(renamed(fn, "_rows", **inlined_nests(fn)), noalias=True))
        compiled = written_out(PARALLEL, name, fn, lambda f: entry_on_demand(parallel(thin_parallel(f))),
                               qualname=name + "_parallel", OWNERS=how_many, ROWS=rows)
        compiled.rows = rows
        compiled.one_thread = written_out(ONE_THREAD, name + "_one_thread", fn, inlined, OWNERS=how_many, ROWS=rows)
        compiled.serial = written_out(ONE_THREAD, name + "_serial", fn, inlined, OWNERS=how_many,
                                      ROWS=serial(renamed(fn, "_serial_rows"), inline="always"))
        compiled.auto = written_out(CHOOSER, name + "_auto", fn, inlined, WORK=inlined(work), MIN_WORK=min_work,
                                    PARALLEL=compiled, ONE_THREAD=compiled.one_thread)
        return compiled

    return compile_variants


@inlined
def blocks_of_4(W):
    """The number of blocks of 4 rows of W (the last may hold 1 to 3): the owners of the kernels
    whose loop nests compute 4 neurons at a time."""
    return (W.shape[0] + 3) // 4


ZERO, ONE = np.float32(0), np.float32(1)
TWO_TO_MINUS_24 = np.float32(2.0 ** -24)


# ----------------------------------------------------------------------------- element-wise
# exp, log, log1p and tanh are nbnet.vecmath's: plain arithmetic that LLVM vectorises (libm's
# are a call per element), within 1-2 ulp of the exact values.
HALF = np.float32(0.5)
FLUSH_BELOW, SQUARE_FLUSH_BELOW = np.float32(1e-30), np.float32(1e-15)  # see flushed


@serial(inline="always")
def f(x, act):
    """a = f(z) for one element of a sigmoid, tanh, relu, identity or exp layer."""
    if act == SIGMOID:
        return ONE / (ONE + exp(-x))
    if act == TANH:
        return tanh(x)
    if act == IDENTITY:
        return x
    if act == EXP:
        return exp(x)
    return x if x > ZERO else x * ZERO  # relu (x * 0 keeps the dtype of x)


@serial(inline="always")
def f_prime(x, fx, act):
    """f'(z) from z = x and a = fx, for one element of a sigmoid, tanh or relu layer (sigmoid and
    tanh reuse a). Identity layers (f' = 1) skip the product with f'; an exp output's f' is a.
    (Branches for those here changed how LLVM compiled the sigmoid's f' inside back_sums, whose
    fast-math flags allow fusing: freshly compiled and cached code then differed in the last bit.)"""
    if act == SIGMOID:
        return fx * (ONE - fx)
    if act == TANH:
        return ONE - fx * fx
    return ONE if x > ZERO else ZERO  # relu


# ----------------------------------------------------------------------------- targets
# The kernels read targets through these functions, so that one loop serves both forms
# (nbnet.costs.targets): class ids y (an int array: the target row is one-hot) and a target
# matrix Y (a float array: one row per sample, and optionally one more column, each sample's
# weight). Numba compiles each form apart (the `overload`s below pick the body by the type of
# y), so class-id runs compile exactly the loops they always had.
def target(y, s, j):
    """The target of output j for sample s: 1 if j is its class (class ids), else Y[s, j]."""
    if y.ndim == 1:
        return ONE if j == y[s] else ZERO
    return y[s, j]


def sample_weight(y, s, n_out):
    """The weight w_s of sample s: 1, or the column after the n_out targets of a target matrix."""
    if y.ndim == 1 or y.shape[1] == n_out:
        return ONE
    return y[s, n_out]


def is_correct(a, y, s):
    """Whether sample s is classified right: its largest output is its class (class ids), or
    every output rounds to its target, |a - Y| < 1/2 (a target matrix)."""
    return largest_is_class(a, y, s) if y.ndim == 1 else rounds_to_targets(a, y, s)


@overload(target)
def _target_compiled(y, s, j):
    if y.ndim == 1:
        return lambda y, s, j: ONE if j == y[s] else ZERO
    return lambda y, s, j: y[s, j]


@overload(sample_weight)
def _sample_weight_compiled(y, s, n_out):
    if y.ndim == 1:
        return lambda y, s, n_out: ONE
    return lambda y, s, n_out: y[s, n_out] if y.shape[1] > n_out else y.dtype.type(ONE)


@serial(inline="always")
def largest_is_class(a, y, s):
    """is_correct for class ids."""
    guess = 0
    for j in range(a.shape[1]):
        if a[s, j] > a[s, guess]:
            guess = j
    return guess == y[s]


@serial(inline="always")
def rounds_to_targets(a, y, s):
    """is_correct for a target matrix."""
    for j in range(a.shape[1]):
        if not abs(a[s, j] - y[s, j]) < HALF:
            return False
    return True


def target_dot(y, s, z):
    """sum_j y_j z[s, j]: z[s, y[s]] for class ids."""
    return z[s, y[s]] if y.ndim == 1 else dot_targets(y, s, z)


@serial(inline="always")
def dot_targets(y, s, z):
    """target_dot for a target matrix."""
    total = z[s, 0] * ZERO
    for j in range(z.shape[1]):
        total += y[s, j] * z[s, j]
    return total


@overload(target_dot, inline="always")
def _target_dot_compiled(y, s, z):
    if y.ndim == 1:
        return lambda y, s, z: z[s, y[s]]
    return lambda y, s, z: dot_targets(y, s, z)


@overload(is_correct, inline="always")
def _is_correct_compiled(a, y, s):
    if y.ndim == 1:
        return lambda a, y, s: largest_is_class(a, y, s)
    return lambda a, y, s: rounds_to_targets(a, y, s)


# ----------------------------------------------------------------------------- forward
@loop_nest
def sum_rows(W, b, a_prev, z, j0, j1, first, last):
    """z[s, j] = b[j] + W[j] a_prev[s] for the neurons j0..j1-1 (j0 a multiple of 4) and the
    samples first..last-1: the loop nest of weighted_sum. Four neurons for four samples at a time
    (then two samples, then one), 16 running sums: z12 is z[s + 1, j + 2]. Each load of
    W[j + i, k] feeds four sums and each load of a_prev[s, k] four, so the loop does 16
    multiply-adds per 8 loads."""
    n_in = W.shape[1]
    for j in range(j0, j1, 4):
        if j + 4 > j1:  # the last 1 to 3 neurons, one at a time
            for jj in range(j, j1):
                for s in range(first, last):
                    acc = b[jj]
                    for k in range(n_in):
                        acc += W[jj, k] * a_prev[s, k]
                    z[s, jj] = acc
            continue
        s = first
        while s + 4 <= last:
            z00, z01, z02, z03 = b[j], b[j + 1], b[j + 2], b[j + 3]
            z10, z11, z12, z13 = z00, z01, z02, z03
            z20, z21, z22, z23 = z00, z01, z02, z03
            z30, z31, z32, z33 = z00, z01, z02, z03
            for k in range(n_in):
                w0, w1, w2, w3 = W[j, k], W[j + 1, k], W[j + 2, k], W[j + 3, k]
                x0, x1, x2, x3 = a_prev[s, k], a_prev[s + 1, k], a_prev[s + 2, k], a_prev[s + 3, k]
                z00 += w0 * x0
                z01 += w1 * x0
                z02 += w2 * x0
                z03 += w3 * x0
                z10 += w0 * x1
                z11 += w1 * x1
                z12 += w2 * x1
                z13 += w3 * x1
                z20 += w0 * x2
                z21 += w1 * x2
                z22 += w2 * x2
                z23 += w3 * x2
                z30 += w0 * x3
                z31 += w1 * x3
                z32 += w2 * x3
                z33 += w3 * x3
            z[s, j], z[s, j + 1], z[s, j + 2], z[s, j + 3] = z00, z01, z02, z03
            z[s + 1, j], z[s + 1, j + 1], z[s + 1, j + 2], z[s + 1, j + 3] = z10, z11, z12, z13
            z[s + 2, j], z[s + 2, j + 1], z[s + 2, j + 2], z[s + 2, j + 3] = z20, z21, z22, z23
            z[s + 3, j], z[s + 3, j + 1], z[s + 3, j + 2], z[s + 3, j + 3] = z30, z31, z32, z33
            s += 4
        if s + 2 <= last:  # two of the last 2 or 3 samples
            z00, z01, z02, z03 = b[j], b[j + 1], b[j + 2], b[j + 3]
            z10, z11, z12, z13 = z00, z01, z02, z03
            for k in range(n_in):
                w0, w1, w2, w3 = W[j, k], W[j + 1, k], W[j + 2, k], W[j + 3, k]
                x0, x1 = a_prev[s, k], a_prev[s + 1, k]
                z00 += w0 * x0
                z01 += w1 * x0
                z02 += w2 * x0
                z03 += w3 * x0
                z10 += w0 * x1
                z11 += w1 * x1
                z12 += w2 * x1
                z13 += w3 * x1
            z[s, j], z[s, j + 1], z[s, j + 2], z[s, j + 3] = z00, z01, z02, z03
            z[s + 1, j], z[s + 1, j + 1], z[s + 1, j + 2], z[s + 1, j + 3] = z10, z11, z12, z13
            s += 2
        if s < last:  # an odd last sample
            z00, z01, z02, z03 = b[j], b[j + 1], b[j + 2], b[j + 3]
            for k in range(n_in):
                x0 = a_prev[s, k]
                z00 += W[j, k] * x0
                z01 += W[j + 1, k] * x0
                z02 += W[j + 2, k] * x0
                z03 += W[j + 3, k] * x0
            z[s, j], z[s, j + 1], z[s, j + 2], z[s, j + 3] = z00, z01, z02, z03


@kernel(work=lambda W, b, a_prev, z: a_prev.shape[0] * W.size, owners=lambda W, b, a_prev, z: blocks_of_4(W),
        min_work=PARALLEL_MIN_PRODUCTS)
def weighted_sum(W, b, a_prev, z, lo, hi):
    """z^m = W^m a^(m-1) + b^m:   z[s, j] = b[j] + sum_k W[j, k] a_prev[s, k]. Plain loop: loops.weighted_sum.

    Speed trick, used again in hidden_delta and gradient_step: four neurons for four samples
    at a time (sum_rows). Sixteen running sums share every load of W[j, k] and a_prev[s, k],
    so the k loop does 16 multiply-adds per 8 loads instead of 1 per 2, and LLVM turns each
    sum over k into SIMD lanes (16 float32 lanes with AVX-512: config.wide_vectors). Threads
    own blocks of 4 rows of W, so W streams through the cache once per tile of SAMPLE_TILE
    samples (whose activations stay in cache), not once per sample.
    """
    n_samples = a_prev.shape[0]
    for first in range(0, n_samples, SAMPLE_TILE):
        last = min(first + SAMPLE_TILE, n_samples)
        sum_rows(W, b, a_prev, z, 4 * lo, min(4 * hi, W.shape[0]), first, last)


@kernel(work=lambda z, act, a: z.size, owners=lambda z, act, a: z.shape[0])
def activate(z, act, a, lo, hi):
    """a^m = f(z^m): element-wise, or a row-wise softmax a[s, j] = exp(z[s, j]) / sum_i exp(z[s, i]).
    Plain loop: loops.activate (this one differs only by its exp and tanh, nbnet.vecmath's)."""
    for s in range(lo, hi):
        if act == SOFTMAX:
            top = z[s, 0]  # subtract the row maximum so exp cannot overflow
            for j in range(z.shape[1]):
                top = max(top, z[s, j])
            total = z[s, 0] * ZERO
            for j in range(z.shape[1]):
                a[s, j] = exp(z[s, j] - top)
                total += a[s, j]
            for j in range(z.shape[1]):
                a[s, j] /= total
        else:
            for j in range(z.shape[1]):
                a[s, j] = f(z[s, j], act)


# ----------------------------------------------------------------------------- backward
@kernel(work=lambda z, a, y, act, cost, delta: z.size, owners=lambda z, a, y, act, cost, delta: z.shape[0])
def output_delta(z, a, y, act, cost, delta, lo, hi):
    """delta^L = w_s f'(z^L) * dJ/da^L, with y the targets of the samples (class ids or a target
    matrix: see `target`) and w_s the weight of sample s (1 unless y carries weights). Plain
    loop: loops.output_delta (the same loop).

    Cross-entropy with a sigmoid or softmax output, and the Poisson cost with an exp output,
    simplify exactly to delta = a - y (the f' factor cancels). The quadratic cost J = 1/2 ||a - y||^2
    has dJ/da = a - y, times f'(z) for an element-wise output (1 for identity), or times the
    softmax Jacobian: delta_j = a_j (e_j - sum_i e_i a_i).
    """
    for s in range(lo, hi):
        for j in range(a.shape[1]):
            delta[s, j] = a[s, j] - target(y, s, j)
        if cost == QUADRATIC:
            if act == SOFTMAX:
                e_dot_a = a[s, 0] * ZERO
                for i in range(a.shape[1]):
                    e_dot_a += delta[s, i] * a[s, i]
                for j in range(a.shape[1]):
                    delta[s, j] = a[s, j] * (delta[s, j] - e_dot_a)
            elif act == EXP:
                for j in range(a.shape[1]):
                    delta[s, j] *= a[s, j]
            elif act != IDENTITY:
                for j in range(a.shape[1]):
                    delta[s, j] *= f_prime(z[s, j], a[s, j], act)
        w = sample_weight(y, s, a.shape[1])
        if w != ONE:
            for j in range(a.shape[1]):
                delta[s, j] *= w


@loop_nest
def back_sums(W_next, delta_next, z, a, act, out, j0, j1, s0, s1):
    """out[s, k] = f'(z[s, k]) sum_j W_next[j, k] delta_next[s, j] over the rows j0..j1-1 of
    W_next (j0 a multiple of 4), for the samples s0..s1-1 (s0 even): the loop nest of
    hidden_delta (act IDENTITY: the sums alone).

    The sum over j is the outer loop, so the inner loop walks rows of W_next (contiguous).
    Samples go in tiles of 4, whose rows of `out` stay in L1 while the rows of W_next pass by,
    four at a time; each four rows are added for both pairs of samples of the tile, two samples
    s, s + 1 at once (an odd last sample alone): each load of W_next[j, k] feeds both samples,
    and out[s, k] is loaded and stored once per 4 rows (8 multiply-adds per 6 loads and 2
    stores).
    """
    n_here = W_next.shape[1]
    for t0 in range(s0, s1, 4):
        t1 = min(t0 + 4, s1)
        for s in range(t0, t1):
            for k in range(n_here):
                out[s, k] = ZERO
        j = j0
        while j + 4 <= j1:
            for s in range(t0, t1, 2):
                d0, d1, d2, d3 = delta_next[s, j], delta_next[s, j + 1], delta_next[s, j + 2], delta_next[s, j + 3]
                if s + 1 < t1:
                    t = s + 1
                    e0, e1, e2, e3 = delta_next[t, j], delta_next[t, j + 1], delta_next[t, j + 2], delta_next[t, j + 3]
                    for k in range(n_here):
                        w0, w1, w2, w3 = W_next[j, k], W_next[j + 1, k], W_next[j + 2, k], W_next[j + 3, k]
                        out[s, k] += w0 * d0 + w1 * d1 + w2 * d2 + w3 * d3
                        out[t, k] += w0 * e0 + w1 * e1 + w2 * e2 + w3 * e3
                else:
                    for k in range(n_here):
                        out[s, k] += W_next[j, k] * d0 + W_next[j + 1, k] * d1 + W_next[j + 2, k] * d2 + W_next[j + 3, k] * d3
            j += 4
        for jj in range(j, j1):  # the last 1 to 3 rows
            for s in range(t0, t1):
                d = delta_next[s, jj]
                for k in range(n_here):
                    out[s, k] += W_next[jj, k] * d
        if act != IDENTITY:
            for s in range(t0, t1):
                for k in range(n_here):
                    out[s, k] *= f_prime(z[s, k], a[s, k], act)


@inlined
def parts_or_1(parts):
    """The number of parts hidden_delta splits its sum into: 1 when `parts` is empty.
    (A conditional, not max(): a compiled max costs three functions more to compile.)"""
    return parts.shape[0] if parts.shape[0] > 0 else 1


@kernel(work=lambda W_next, delta_next, z, a, act, delta, parts, phase: z.shape[0] * W_next.size,
        owners=lambda W_next, delta_next, z, a, act, delta, parts, phase: parts_or_1(parts) * ((z.shape[0] + 1) // 2),
        min_work=PARALLEL_MIN_PRODUCTS)
def hidden_delta(W_next, delta_next, z, a, act, delta, parts, phase, lo, hi):
    """delta^m = f'(z^m) * (W^(m+1))^T delta^(m+1):  delta[s, k] = f'(z[s, k]) sum_j W_next[j, k] delta_next[s, j].
    Plain loop: loops.hidden_delta. `parts`: nbnet.passes.row_parts(W_next, delta); `phase` 0,
    then 1 when there are parts (see below).

    Threads own pairs of samples (back_sums computes both sums at once); an odd last sample
    goes alone.

    Speed trick for a W_next of many rows and a minibatch (parts not empty): the sum over j is
    split into the sums S_p over ROW_PARTS parts p of consecutive rows of W_next. Phase 0:
    threads own (part p, pair of samples), part by part, and write f' S_p into parts[p].
    Phase 1: the same owners, counted pair by pair, and the thread that owns a pair's first adds
    its parts in order (f' (S_0 + S_1 + ...) computed as f' S_0 + f' S_1 + ..., equal up to
    rounding). With two threads each thread reads only half of the rows of W_next in phase 0,
    the half that weighted_sum and gradient_step on that layer give it too, so the rows stay in
    its own core's cache instead of moving between cores three times a step (that traffic made
    hidden_delta and gradient_step on a 300 x 500 W^(m+1) 2.2x slower at batch size 10). The
    parts depend on the shape, not the thread count: the same sums for any.
    """
    pairs, n_parts = (z.shape[0] + 1) // 2, parts_or_1(parts)
    if phase == 1:  # the parts added, for each pair whose first owner (pair * n_parts) is in lo..hi-1
        for s in range(2 * -(-lo // n_parts), min(2 * -(-hi // n_parts), z.shape[0])):
            for k in range(z.shape[1]):
                delta[s, k] = parts[0, s, k]
            for q in range(1, n_parts):
                for k in range(z.shape[1]):
                    delta[s, k] += parts[q, s, k]
        return
    blocks = blocks_of_4(W_next)
    for p in range(lo // pairs, -(-hi // pairs)):  # each part this thread owns pairs of samples in
        s0 = 2 * (lo - p * pairs) if lo > p * pairs else 0  # (its pairs of samples in part p)
        s1 = min(2 * (min(hi, p * pairs + pairs) - p * pairs), z.shape[0])
        j0, j1 = 4 * -(-p * blocks // n_parts), min(4 * -(-(p + 1) * blocks // n_parts), W_next.shape[0])
        # f' times the sums over the rows of part p, into parts[p] (no parts: over every row, into delta)
        back_sums(W_next, delta_next, z, a, act, parts[p] if parts.shape[0] > 0 else delta, j0, j1, s0, s1)


@loop_nest
def subtract_outer_products(delta, a_prev, c, G, j0, j1):
    """G[j, k] -= c sum_s delta[s, j] a_prev[s, k] for the rows j0..j1-1 of G (j0 a multiple of 4):
    the sum over samples of outer products delta^m (a^(m-1))^T, the loop nest of both
    weight_gradient and gradient_step.

    Four rows and four samples at a time (then two samples, then one), with the 16 factors
    d21 = c delta[s + 1, j + 2] held in registers: each load of a_prev[s, k] feeds four rows,
    and each row is loaded and stored once per four samples (16 multiply-adds per 8 loads and
    4 stores).
    """
    n_samples, n_in = a_prev.shape
    for j in range(j0, j1, 4):
        if j + 4 > j1:  # the last 1 to 3 rows, one sample at a time
            for jj in range(j, j1):
                for s in range(n_samples):
                    d = c * delta[s, jj]
                    for k in range(n_in):
                        G[jj, k] -= d * a_prev[s, k]
            continue
        s = 0
        while s + 4 <= n_samples:
            d00, d01, d02, d03 = c * delta[s, j], c * delta[s + 1, j], c * delta[s + 2, j], c * delta[s + 3, j]
            d10, d11, d12, d13 = c * delta[s, j + 1], c * delta[s + 1, j + 1], c * delta[s + 2, j + 1], c * delta[s + 3, j + 1]
            d20, d21, d22, d23 = c * delta[s, j + 2], c * delta[s + 1, j + 2], c * delta[s + 2, j + 2], c * delta[s + 3, j + 2]
            d30, d31, d32, d33 = c * delta[s, j + 3], c * delta[s + 1, j + 3], c * delta[s + 2, j + 3], c * delta[s + 3, j + 3]
            for k in range(n_in):
                x0, x1, x2, x3 = a_prev[s, k], a_prev[s + 1, k], a_prev[s + 2, k], a_prev[s + 3, k]
                G[j, k] -= d00 * x0 + d01 * x1 + d02 * x2 + d03 * x3
                G[j + 1, k] -= d10 * x0 + d11 * x1 + d12 * x2 + d13 * x3
                G[j + 2, k] -= d20 * x0 + d21 * x1 + d22 * x2 + d23 * x3
                G[j + 3, k] -= d30 * x0 + d31 * x1 + d32 * x2 + d33 * x3
            s += 4
        if s + 2 <= n_samples:  # two of the last 2 or 3 samples
            d00, d01, d10, d11 = c * delta[s, j], c * delta[s + 1, j], c * delta[s, j + 1], c * delta[s + 1, j + 1]
            d20, d21, d30, d31 = c * delta[s, j + 2], c * delta[s + 1, j + 2], c * delta[s, j + 3], c * delta[s + 1, j + 3]
            for k in range(n_in):
                x0, x1 = a_prev[s, k], a_prev[s + 1, k]
                G[j, k] -= d00 * x0 + d01 * x1
                G[j + 1, k] -= d10 * x0 + d11 * x1
                G[j + 2, k] -= d20 * x0 + d21 * x1
                G[j + 3, k] -= d30 * x0 + d31 * x1
            s += 2
        if s < n_samples:  # an odd last sample
            d00, d10, d20, d30 = c * delta[s, j], c * delta[s, j + 1], c * delta[s, j + 2], c * delta[s, j + 3]
            for k in range(n_in):
                x0 = a_prev[s, k]
                G[j, k] -= d00 * x0
                G[j + 1, k] -= d10 * x0
                G[j + 2, k] -= d20 * x0
                G[j + 3, k] -= d30 * x0


@loop_nest
def mean_rows(delta, scale, grad_b, j0, j_end):
    """grad_b[j] = scale sum_s delta[s, j] for j = j0..j_end-1: dJ/db^m = mean_s delta^m (scale = 1/S)."""
    for j in range(j0, j_end):
        gb = ZERO * scale
        for s in range(delta.shape[0]):
            gb += delta[s, j]
        grad_b[j] = gb * scale


@loop_nest
def add_l2_rows(W, l2, G, j0, j_end):
    """G[j, k] += l2 W[j, k] for rows j0..j_end-1: the L2 term (lambda/n) W^m of weight_gradient
    (a multiply-add, so in a nest: see kernel)."""
    for j in range(j0, j_end):
        for k in range(W.shape[1]):
            G[j, k] += l2 * W[j, k]


@loop_nest
def gradient_rows(delta, a_prev, W, scale, l2, grad_W, grad_b, j0, j1, first, last):
    """Rows j0..j1-1 of weight_gradient, for its samples first..last-1: the first tile zeroes the
    rows and forms grad_b (over every sample), each tile subtracts its outer products, the last
    adds the L2 term."""
    if first == 0:
        mean_rows(delta, scale, grad_b, j0, j1)
        for j in range(j0, j1):
            for k in range(W.shape[1]):
                grad_W[j, k] = ZERO
    subtract_outer_products(delta[first:last], a_prev[first:last], -scale, grad_W, j0, j1)
    if last == a_prev.shape[0] and l2 != ZERO:
        add_l2_rows(W, l2, grad_W, j0, j1)


@kernel(work=lambda delta, a_prev, W, l2_over_n, grad_W, grad_b: a_prev.shape[0] * W.size,
        owners=lambda delta, a_prev, W, l2_over_n, grad_W, grad_b: blocks_of_4(W), min_work=PARALLEL_MIN_PRODUCTS)
def weight_gradient(delta, a_prev, W, l2_over_n, grad_W, grad_b, lo, hi):
    """dJ/dW^m = mean_s delta^m (a^(m-1))^T + (lambda/n) W^m,   dJ/db^m = mean_s delta^m.
    Plain loop: loops.weight_gradient.

    grad_W[j, k] = 1/S sum_s delta[s, j] a_prev[s, k] + l2_over_n W[j, k], formed by
    subtract_outer_products with c = -1/S. Threads own blocks of 4 rows, as in gradient_step.
    (SGD training uses gradient_step, which fuses this with the update; the other optimisers,
    Network.gradients and full-batch L-BFGS use this.)

    Speed trick for a whole data set (full-batch L-BFGS): samples in tiles of SAMPLE_TILE, as in
    weighted_sum. Each block of rows then reads a tile while it is in cache, instead of streaming
    all S rows of a_prev from memory once per block (on MNIST's 60,000 images, 188 MB per block
    of 4 rows). A minibatch is one tile. Tiles hold a multiple of 4 samples, so every sum over s
    adds the same terms in the same order as one pass would.
    """
    n_samples = a_prev.shape[0]
    scale = ONE / W.dtype.type(n_samples)  # 1 / S
    l2 = W.dtype.type(l2_over_n)
    for first in range(0, n_samples, SAMPLE_TILE):
        last = min(first + SAMPLE_TILE, n_samples)
        gradient_rows(delta, a_prev, W, scale, l2, grad_W, grad_b, 4 * lo, min(4 * hi, W.shape[0]), first, last)


@loop_nest
def step_rows(delta, a_prev, lr, l2_over_n, W, b, j0, j1):
    """The SGD step of gradient_step for rows j0..j1-1 of W and b: the bias step and the L2
    shrink row by row, then W[j, k] -= alpha/S sum_s delta[s, j] a_prev[s, k]."""
    n_samples = a_prev.shape[0]
    step = W.dtype.type(lr) / W.dtype.type(n_samples)  # alpha / S
    decay = ONE - W.dtype.type(lr) * W.dtype.type(l2_over_n)
    for j in range(j0, j1):
        gb = ZERO * step
        for s in range(n_samples):
            gb += delta[s, j]
        b[j] -= step * gb
        if decay != ONE:  # L2: shrink the row first
            for k in range(W.shape[1]):
                W[j, k] *= decay
    subtract_outer_products(delta, a_prev, step, W, j0, j1)


@kernel(work=lambda delta, a_prev, lr, l2_over_n, W, b: a_prev.shape[0] * W.size,
        owners=lambda delta, a_prev, lr, l2_over_n, W, b: blocks_of_4(W), min_work=PARALLEL_MIN_PRODUCTS)
def gradient_step(delta, a_prev, lr, l2_over_n, W, b, lo, hi):
    """One SGD step on layer m: W^m -= alpha (dJ/dW^m + (lambda/n) W^m),  b^m -= alpha dJ/db^m,
    with dJ/dW^m = mean_s delta^m (a^(m-1))^T formed row by row and never stored (plain loops:
    loops.weight_gradient, then loops.sgd_step):

        W[j, k] = (1 - alpha l2_over_n) W[j, k] - alpha/S sum_s delta[s, j] a_prev[s, k]

    weight_gradient and the update fused, so each row of W is read and written once per step;
    samples are added four at a time. Threads own the same blocks of 4 rows as in
    weighted_sum, so each thread's rows of W stay in its own core's cache from one step to
    the next (moving them between cores cost more than the arithmetic at batch size 1).
    """
    step_rows(delta, a_prev, lr, l2_over_n, W, b, 4 * lo, min(4 * hi, W.shape[0]))


@kernel(work=lambda delta, a_prev, lr, l2_over_n, W, b, x_next, z_next:
        (a_prev.shape[0] + x_next.shape[0]) * W.size,
        owners=lambda delta, a_prev, lr, l2_over_n, W, b, x_next, z_next: blocks_of_4(W), min_work=PARALLEL_MIN_PRODUCTS)
def gradient_step_then_weighted_sum(delta, a_prev, lr, l2_over_n, W, b, x_next, z_next, lo, hi):
    """gradient_step on layer 1, then, while each block of 4 updated rows is still in cache
    (L1), the next minibatch's z^1 = W^1 x_next + b^1 (weighted_sum) for those rows (the two
    nests are inlined here: no call per block, config.loop_nest).

    The same two computations in the same order as calling the two kernels, so the same
    result; but the largest matrix (784 inputs wide on MNIST) is read once per step instead
    of twice, and one thread start is saved: a third of the time at batch size 1.
    """
    for block in range(lo, hi):
        j, j_end = 4 * block, min(4 * block + 4, W.shape[0])
        step_rows(delta, a_prev, lr, l2_over_n, W, b, j, j_end)
        sum_rows(W, b, x_next, z_next, j, j_end, np.int64(0), x_next.shape[0])


# ----------------------------------------------------------------------------- inputs
@kernel(work=lambda X, y, order, start, x_out, y_out: x_out.size, owners=lambda X, y, order, start, x_out, y_out: x_out.shape[0])
def gather_rows(X, y, order, start, x_out, y_out, lo, hi):
    """x_out[i] = X[order[start + i]], y_out[i] = y[order[start + i]]: the shuffled samples of
    the next few minibatches copied into one contiguous block. One thread owns each row, and
    all threads fetch rows at once instead of one sample at a time inside the steps (a random
    row of X is in no cache)."""
    for i in range(lo, hi):
        for k in range(X.shape[1]):
            x_out[i, k] = X[order[start + i], k]
        y_out[i] = y[order[start + i]]


# ----------------------------------------------------------------------------- dropout
@serial(inline="always")
def mix(seed, step, layer, s, j):
    """64 random bits that depend only on the five arguments: the key is mixed by splitmix64's
    finaliser (a counter-based generator). Numbers drawn this way are the same for any thread
    count and any order of evaluation (dropout masks here, image distortions in nbnet.pixels)."""
    x = (np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(step) * np.uint64(0xBF58476D1CE4E5B9)
         + np.uint64(layer) * np.uint64(0x94D049BB133111EB) + np.uint64(s) * np.uint64(0xD6E8FEB86659FD93)
         + np.uint64(j))
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@serial(inline="always")
def uniform(seed, step, layer, s, j):
    """A number in [0, 1) that depends only on its five arguments (see mix)."""
    return np.float32(mix(seed, step, layer, s, j) >> np.uint64(40)) * TWO_TO_MINUS_24  # the top 24 bits, exact in float32


@kernel(work=lambda a, keep, seed, step, layer, mask, kept: a.size,
        owners=lambda a, keep, seed, step, layer, mask, kept: a.shape[0])
def dropout(a, keep, seed, step, layer, mask, kept, lo, hi):
    """Inverted dropout on hidden layer m: each unit survives with probability keep and is then
    scaled by 1/keep, so the next layer's expected input is unchanged and a trained network
    needs no rescaling:  mask[s, j] = 1/keep or 0,  kept = a^m * mask."""
    for s in range(lo, hi):
        q = a.dtype.type(keep)
        for j in range(a.shape[1]):
            mask[s, j] = ONE / q if uniform(seed, step, layer, s, j) < q else q * ZERO
            kept[s, j] = a[s, j] * mask[s, j]


@kernel(work=lambda delta, mask: delta.size, owners=lambda delta, mask: delta.shape[0])
def apply_mask(delta, mask, lo, hi):
    """delta^m *= mask: a dropped unit passes no error back (d kept / d a^m = mask)."""
    for s in range(lo, hi):
        for j in range(delta.shape[1]):
            delta[s, j] *= mask[s, j]


# ----------------------------------------------------------------------------- optimisers
@serial(inline="always")
def optimizer_element(code, g, s1, s2, alpha, h1, h2, eps, c1, c2):
    """For one parameter with gradient g and optimiser state (s1, s2): (how much to subtract
    from the parameter, new s1, new s2). alpha is the learning rate; the rest by optimiser:
      sgd        change = alpha g                     (train_batches fuses this case instead)
      momentum   v = mu v - alpha g                   change = -v              (s1 = v, h1 = mu)
      nesterov   v = mu v - alpha g                   change = -(mu v - alpha g)
      rmsprop    r = rho r + (1 - rho) g^2            change = alpha g / (sqrt(r) + eps)   (s2 = r, h2 = rho)
      adam       m = b1 m + (1 - b1) g,  v = b2 v + (1 - b2) g^2                     (h1 = b1, h2 = b2)
                 change = alpha (m / c1) / (sqrt(v / c2) + eps),  c1 = 1 - b1^t, c2 = 1 - b2^t
    """
    if code == SGD:
        return alpha * g, s1, s2
    if code == MOMENTUM or code == NESTEROV:
        v = h1 * s1 - alpha * g
        return (-(h1 * v - alpha * g) if code == NESTEROV else -v), v, s2
    g2 = g * g if abs(g) >= SQUARE_FLUSH_BELOW else g * ZERO  # squares below 1e-30 count as 0 (see flushed)
    if code == RMSPROP:
        r = h2 * s2 + (ONE - h2) * g2
        return alpha * g / (np.sqrt(r) + eps), s1, r
    m = h1 * s1 + (ONE - h1) * g  # adam
    v = h2 * s2 + (ONE - h2) * g2
    return alpha * (m / c1) / (np.sqrt(v / c2) + eps), m, v


@serial(inline="always")
def flushed(x):
    """x, or 0 when |x| < FLUSH_BELOW (1e-30). A float32 below 1.2e-38 is subnormal, and the
    processor takes a slow microcode path for every operation that reads or makes one. With
    Adam, the weights of MNIST pixels that are never lit decay geometrically towards 0 (their
    gradient is only the L2 term), and so do their optimiser state and their squared gradients:
    9 % of layer 1's first moments were subnormal after 4 epochs, and every later epoch ran
    50 % slower. So the optimiser writes no state or weight below 1e-30, and optimizer_element
    squares no gradient below 1e-15 (its square would be below 1e-30): values that change no
    output, and that matter to Adam and RMSprop only next to an eps below 1e-15."""
    return x * ZERO if abs(x) < FLUSH_BELOW else x


@kernel(work=lambda code, grad_W, grad_b, settings, c1, c2, W, b, s1_W, s1_b, s2_W, s2_b: W.size,
        owners=lambda code, grad_W, grad_b, settings, c1, c2, W, b, s1_W, s1_b, s2_W, s2_b: W.shape[0])
def optimizer_step(code, grad_W, grad_b, settings, c1, c2, W, b, s1_W, s1_b, s2_W, s2_b, lo, hi):
    """W^m -= change(dJ/dW^m), b^m -= change(dJ/db^m) for a momentum, Nesterov, RMSprop or Adam
    step (optimizer_element), updating the optimiser state s1, s2 of every parameter (each
    value it writes `flushed` to 0 below 1e-30).
    settings = (alpha, h1, h2, eps, decay), scalars in the weights' dtype (Optimizer.settings);
    c1, c2 = Adam's bias corrections for this step. decay > 0 shrinks the weights directly,
    W -= alpha decay W (decoupled weight decay, as in AdamW), instead of through the gradient."""
    alpha, h1, h2, eps, decay = settings
    shrink = alpha * decay
    for j in range(lo, hi):
        for k in range(W.shape[1]):
            change, s1, s2 = optimizer_element(code, grad_W[j, k], s1_W[j, k], s2_W[j, k], alpha, h1, h2, eps, c1, c2)
            s1_W[j, k], s2_W[j, k] = flushed(s1), flushed(s2)
            W[j, k] = flushed(W[j, k] - (change + shrink * W[j, k]))
        change, s1, s2 = optimizer_element(code, grad_b[j], s1_b[j], s2_b[j], alpha, h1, h2, eps, c1, c2)
        s1_b[j], s2_b[j] = flushed(s1), flushed(s2)
        b[j] = flushed(b[j] - change)


# ----------------------------------------------------------------------------- cost and accuracy
@kernel(work=lambda z, a, y, act, cost, J, correct: z.size, owners=lambda z, a, y, act, cost, J, correct: z.shape[0])
def output_cost(z, a, y, act, cost, J, correct, lo, hi):
    """J[s] = w_s times the cost of sample s (before the L2 term); correct[s] = 1 when it is
    classified right (is_correct). y_j is target(y, s, j):

    cross-entropy, softmax output:  J = log sum_j e^z_j - sum_j y_j z_j   (from z^L: no log of a rounded-off 0)
    cross-entropy, sigmoid output:  J = sum_j log(1 + e^z_j) - y_j z_j
    quadratic:                      J = 1/2 sum_j (a_j - y_j)^2
    poisson (exp output):           J = sum_j a_j - y_j z_j + y_j log y_j - y_j   (half the deviance)
    """
    for s in range(lo, hi):
        correct[s] = 1 if is_correct(a, y, s) else 0
        total = z[s, 0] * ZERO
        if cost == CROSS_ENTROPY and act == SOFTMAX:
            top = z[s, 0]
            for j in range(z.shape[1]):
                top = max(top, z[s, j])
            for j in range(z.shape[1]):
                total += exp(z[s, j] - top)
            J[s] = log(total) + top - target_dot(y, s, z)
        elif cost == CROSS_ENTROPY:  # log(1 + e^x) = log(1 + e^-|x|) + max(x, 0), which cannot overflow
            for j in range(z.shape[1]):
                x = z[s, j]
                total += log1p(exp(-abs(x))) + max(x, ZERO) - target(y, s, j) * x
            J[s] = total
        elif cost == POISSON:
            for j in range(z.shape[1]):
                t = target(y, s, j)
                total += a[s, j] - t * z[s, j] + (t * log(t) - t if t > ZERO else t * ZERO)
            J[s] = total
        else:
            for j in range(a.shape[1]):
                e = a[s, j] - target(y, s, j)
                total += e * e
            J[s] = HALF * total
        w = sample_weight(y, s, a.shape[1])
        if w != ONE:
            J[s] *= w


# ----------------------------------------------------------------------------- whole passes
# `weights`, `biases` and the buffers are tuples of arrays, one per layer m (index m - 1);
# `acts` holds the activation code of each layer. `masks` and `kept` (dropout) are None in a
# run without dropout: Numba removes the branches `if masks is not None` when it compiles such
# a call, so a run without dropout compiles no dropout kernel.
# `totals` (the running train metrics) is an empty array, not None, in a run that does not count
# them: the few lines of add_costs are not worth a driver of their own (one more costs ~3 s of
# compile the first time a run switches --train-metrics).
#
# Each driver is compiled in two variants (see `one_thread` at the end of the file): NAME calls
# every kernel's `auto` (the parallel kernel for large work, its twin for small), NAME.serial
# calls only the one-thread twins. A run picks one (nbnet.passes), and compiles only it.
# Integer constants passed to a compiled function are written np.int64(0): Numba compiles a
# copy of the callee for each bare literal value.
weighted_sum_auto, activate_auto, output_delta_auto = weighted_sum.auto, activate.auto, output_delta.auto
hidden_delta_auto, weight_gradient_auto, gradient_step_auto = hidden_delta.auto, weight_gradient.auto, gradient_step.auto
gradient_step_then_weighted_sum_auto, gather_rows_auto = gradient_step_then_weighted_sum.auto, gather_rows.auto
dropout_auto, apply_mask_auto, optimizer_step_auto = dropout.auto, apply_mask.auto, optimizer_step.auto
output_cost_auto = output_cost.auto


@inner_driver
def forward_layers(first, weights, biases, acts, X, zs, activations, keep, seed, step, masks, kept):
    """Layers first+1..L of the forward pass: z^m = W^m a^(m-1) + b^m, a^m = f(z^m), a^0 = X.
    With first = 1, z^1 is already in zs[0] (train_batches computed it) but a^1 is not. With
    dropout (masks not None), every hidden layer is dropped out and the next reads `kept`."""
    a_prev = X
    L = len(weights)
    for m in range(L):
        if m >= first:
            weighted_sum_auto(weights[m], biases[m], a_prev, zs[m])
        activate_auto(zs[m], acts[m], activations[m])
        a_prev = activations[m]
        if masks is not None:
            if m < L - 1:
                dropout_auto(activations[m], keep, seed, step, m, masks[m], kept[m])
                a_prev = kept[m]


@inner_driver
def backpropagate(weights, acts, cost, y, zs, activations, deltas, parts, masks):
    """delta^L, then delta^m for m = L-1..1 (after forward_layers), masked as the forward pass
    was when it used dropout. parts[m] is hidden_delta's for delta^m (nbnet.passes.row_parts)."""
    L = len(weights)
    output_delta_auto(zs[L - 1], activations[L - 1], y, acts[L - 1], cost, deltas[L - 1])
    for m in range(L - 2, -1, -1):
        for phase in range(2 if parts[m].shape[0] > 0 else 1):  # (phase 1 adds the parts, when there are)
            hidden_delta_auto(weights[m + 1], deltas[m + 1], zs[m], activations[m], acts[m], deltas[m], parts[m], phase)
        if masks is not None:
            apply_mask_auto(deltas[m], masks[m])


@inner_driver
def weight_gradients(weights, X, l2_over_n, activations, deltas, grads_W, grads_b, kept):
    """Every dJ/dW^m and dJ/db^m from the deltas (after backpropagate); with dropout, layer
    m + 1 reads the kept activations of layer m."""
    for m in range(len(weights)):
        if m == 0:
            weight_gradient_auto(deltas[m], X, weights[m], l2_over_n, grads_W[m], grads_b[m])
        elif kept is not None:
            weight_gradient_auto(deltas[m], kept[m - 1], weights[m], l2_over_n, grads_W[m], grads_b[m])
        else:
            weight_gradient_auto(deltas[m], activations[m - 1], weights[m], l2_over_n, grads_W[m], grads_b[m])


@driver
def backward(weights, acts, cost, X, y, l2_over_n, zs, activations, deltas, parts, grads_W, grads_b, masks, kept):
    """All deltas, then every dJ/dW^m and dJ/db^m (after forward_layers, with dropout if masks
    is not None)."""
    backpropagate(weights, acts, cost, y, zs, activations, deltas, parts, masks)
    weight_gradients(weights, X, l2_over_n, activations, deltas, grads_W, grads_b, kept)


@on_demand_driver
def add_costs(zs, activations, acts, cost, y, J, correct, totals):
    """totals[0] += the costs of these samples, totals[1] += how many are classified correctly
    (output_cost, then sums in float64 in sample order)."""
    L = len(zs)
    n = y.shape[0]
    output_cost_auto(zs[L - 1], activations[L - 1], y, acts[L - 1], cost, J[:n], correct[:n])
    for s in range(n):
        totals[0] += J[s]
        totals[1] += correct[s]


@inner_driver
def gathered_batch(X, y, order, batch_size, first, stop, batch, x_chunks, y_chunks):
    """The inputs and labels of minibatch `batch`, for batches asked for in turn from `first`
    on. The samples of several minibatches are gathered (gather_rows) into one of the two
    chunk buffers when the first of them is asked for, and each minibatch is a slice of it;
    the buffers alternate, so the batch before stays valid while the next is fetched.
    A batch of one sample is that row of X, read in place (copying it cost more than it saved)."""
    if batch_size == 1:
        i = order[batch]
        return X[i:i + 1], y[i:i + 1]
    per_chunk = x_chunks[0].shape[0] // batch_size
    c, i = divmod(batch - first, per_chunk)
    x_chunk, y_chunk = x_chunks[c % 2], y_chunks[c % 2]
    if i == 0:
        rows = min(per_chunk, stop - batch) * batch_size
        gather_rows_auto(X, y, order, batch * batch_size, x_chunk[:rows], y_chunk[:rows])
    return x_chunk[i * batch_size:(i + 1) * batch_size], y_chunk[i * batch_size:(i + 1) * batch_size]


@inner_driver
def gradient_steps(weights, biases, activations, deltas, kept, x_now, x_next, zs, lr, l2_over_n):
    """gradient_step on layers L..1 (after backpropagate); with dropout (kept not None), layer
    m + 1 reads the kept activations of layer m. Unless x_next (the next minibatch) is empty,
    the step on layer 1 also computes its z^1 into zs[0] (gradient_step_then_weighted_sum), so
    the next forward pass starts from there."""
    for m in range(len(weights) - 1, 0, -1):
        if kept is not None:
            gradient_step_auto(deltas[m], kept[m - 1], lr, l2_over_n, weights[m], biases[m])
        else:
            gradient_step_auto(deltas[m], activations[m - 1], lr, l2_over_n, weights[m], biases[m])
    if x_next.shape[0] == 0:
        gradient_step_auto(deltas[0], x_now, lr, l2_over_n, weights[0], biases[0])
    elif x_next.shape[0] <= SAMPLE_TILE:
        gradient_step_then_weighted_sum_auto(deltas[0], x_now, lr, l2_over_n, weights[0], biases[0], x_next, zs[0])
    else:  # too many samples to keep in cache beside the rows: the two kernels one after the other
        gradient_step_auto(deltas[0], x_now, lr, l2_over_n, weights[0], biases[0])
        weighted_sum_auto(weights[0], biases[0], x_next, zs[0])


@serial
def mean_abs(A):
    """The mean of |A| over all its entries, summed in float64 (a loop: no array of |A| made)."""
    flat = A.reshape(-1)
    total = 0.0
    for i in range(flat.shape[0]):
        total += abs(flat[i])
    return total / flat.shape[0]


@inner_driver
def optimizer_steps(code, settings, step, weights, biases, state, grads, gradient_sums):
    """optimizer_step on every layer (after backward), as step number `step` (from 1) of the
    optimiser, with the optimiser state (s1_W, s1_b, s2_W, s2_b) of every layer; `settings`
    is as in optimizer_step (in the weights' dtype). With --track-gradients, gradient_sums[0, m]
    and [1, m] accumulate the mean |dJ/dW^m| and |dJ/db^m|; without, gradient_sums is empty and
    nothing is summed."""
    grads_W, grads_b = grads
    s1_W, s1_b, s2_W, s2_b = state
    alpha, h1, h2, eps, decay = settings
    c1 = weights[0].dtype.type(ONE - h1 ** step)  # Adam's bias corrections 1 - b1^t, 1 - b2^t
    c2 = weights[0].dtype.type(ONE - h2 ** step)
    for m in range(len(weights)):
        if gradient_sums.shape[0] > 0:
            gradient_sums[0, m] += mean_abs(grads_W[m])
            gradient_sums[1, m] += mean_abs(grads_b[m])
        optimizer_step_auto(code, grads_W[m], grads_b[m], settings, c1, c2, weights[m], biases[m], s1_W[m],
                            s1_b[m], s2_W[m], s2_b[m])


@driver
def train_batches(weights, biases, acts, cost, X, y, order, batch_size, first, stop, lr, l2_over_n, keep, seed,
                  buffers, x_chunks, y_chunks, masks, kept, J, correct, totals):
    """Minibatch SGD steps for batches first..stop-1 of the shuffled `order`, every one of
    batch_size samples (train.py passes a short last batch as a run of its own).

    Each step: forward, backpropagate the deltas, gradient_steps on layers L..1. The step on
    layer 1 also computes the next batch's z^1, so the next forward pass starts from there.
    With dropout (masks not None), hidden units are dropped out with masks drawn from (seed,
    batch, layer, sample, unit). `buffers` holds (zs, activations, deltas, parts) for batch_size
    samples; unless `totals` is empty, add_costs adds each minibatch's cost and correct count
    (before its step) to it.
    """
    zs, activations, deltas, parts = buffers
    x_now, y_now = gathered_batch(X, y, order, batch_size, first, stop, first, x_chunks, y_chunks)
    weighted_sum_auto(weights[0], biases[0], x_now, zs[0])
    for batch in range(first, stop):
        forward_layers(np.int64(1), weights, biases, acts, x_now, zs, activations, keep, seed, batch, masks, kept)
        if totals.shape[0] > 0:  # running train metrics
            add_costs(zs, activations, acts, cost, y_now, J, correct, totals)
        backpropagate(weights, acts, cost, y_now, zs, activations, deltas, parts, masks)
        if batch + 1 == stop:
            gradient_steps(weights, biases, activations, deltas, kept, x_now, x_now[:0], zs, lr, l2_over_n)
            break
        x_new, y_new = gathered_batch(X, y, order, batch_size, first, stop, batch + 1, x_chunks, y_chunks)
        gradient_steps(weights, biases, activations, deltas, kept, x_now, x_new, zs, lr, l2_over_n)
        x_now, y_now = x_new, y_new


@driver
def train_batches_with(code, settings, step, weights, biases, state, acts, cost, X, y, order, batch_size, first, stop,
                       l2_over_n, gradient_sums, keep, seed, buffers, x_chunks, y_chunks, masks, kept, grads,
                       J, correct, totals):
    """Minibatch steps like train_batches, for the optimisers that need the whole gradient
    first: forward, backward (the deltas and every gradient), then optimizer_steps. `step`
    counts earlier steps (for Adam's bias correction) and the new count is returned."""
    zs, activations, deltas, parts = buffers
    grads_W, grads_b = grads
    for batch in range(first, stop):
        x, y_now = gathered_batch(X, y, order, batch_size, first, stop, batch, x_chunks, y_chunks)
        forward_layers(np.int64(0), weights, biases, acts, x, zs, activations, keep, seed, batch, masks, kept)
        if totals.shape[0] > 0:  # running train metrics
            add_costs(zs, activations, acts, cost, y_now, J, correct, totals)
        backward(weights, acts, cost, x, y_now, l2_over_n, zs, activations, deltas, parts, grads_W, grads_b, masks,
                 kept)
        step += 1
        optimizer_steps(code, settings, step, weights, biases, state, grads, gradient_sums)
    return step


@driver
def evaluate_tiles(weights, biases, acts, cost, X, y, zs, activations, J, correct, totals):
    """The forward pass and add_costs over X in tiles of as many samples as the buffers hold
    (len(X) a multiple of it), so a whole data set is evaluated without activations for all
    of it: totals[0] += the sum of the costs, totals[1] += the number classified correctly."""
    tile = zs[0].shape[0]
    for first in range(0, X.shape[0], tile):
        x = X[first:first + tile]
        forward_layers(np.int64(0), weights, biases, acts, x, zs, activations, 1.0, np.int64(0), np.int64(0), None,
                       None)
        add_costs(zs, activations, acts, cost, y[first:first + tile], J, correct, totals)


@driver
def forward(weights, biases, acts, X, zs, activations):
    """a^0 = X; for m = 1..L: z^m = W^m a^(m-1) + b^m, a^m = f(z^m). Fills zs and activations."""
    forward_layers(np.int64(0), weights, biases, acts, X, zs, activations, 1.0, np.int64(0), np.int64(0), None,
                   None)


def one_thread(drivers, kernels):
    """NAME.serial for every driver: the same Python body compiled again with every
    `KERNEL_auto` it calls replaced by KERNEL.serial and every driver by its own .serial (so
    a one-thread run compiles no parallel kernel), with the same entries (config.same_entries)."""
    replaced = {kernel.__name__ + "_auto": kernel.serial for kernel in kernels}
    for compiled in drivers:  # callees first
        python_function = getattr(compiled, "py_func", compiled)  # (NUMBA_DISABLE_JIT=1: the function itself)
        compiled.serial = same_entries(compiled, serial(renamed(python_function, "_serial", **replaced)))
        replaced[compiled.__name__] = compiled.serial


one_thread((forward_layers, backpropagate, weight_gradients, backward, add_costs, gathered_batch, gradient_steps,
            optimizer_steps, train_batches, train_batches_with, evaluate_tiles, forward),
           (weighted_sum, activate, output_delta, hidden_delta, weight_gradient, gradient_step,
            gradient_step_then_weighted_sum, gather_rows, dropout, apply_mask, optimizer_step, output_cost))
