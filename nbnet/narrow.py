"""Narrow networks: the samples of a chunk in SIMD lanes.

nbnet.kernels runs each sum over a layer's inputs k in SIMD lanes: right for MNIST's 784
inputs, wasted on a layer with 4 or 16 of them (a loop of 4 never fills a register). In a
narrow network the long dimension is the batch. So here every layer's z, a and delta are
stored transposed, one row per neuron and one column per sample,

    z[j, s]: neuron j's weighted sum for sample s of the chunk     (kernels.py's z[s, j])

and the innermost loop of every kernel runs along a row, over samples, in SIMD lanes, whatever
the layer's width. W^m stays (n_out, n_in). The equations are the same (their plain loops are
nbnet/loops.py; the NumPy twins of these kernels are nbnet.reference's, applied to transposes).

Chunks. A minibatch (or a data set to evaluate) is cut into chunks of `width` columns (a
multiple of config.LANE_PAD, so that no vector loop has a scalar remainder; the columns after a
chunk's `count` samples are padding, with inputs 0 and deltas 0). width comes from the
network's size and the batch size alone (chunk_width), never from the thread count. Each
chunk's forward pass, costs, deltas and gradient sums are one thread's work, in buffers of its
own (Buffers); the chunks' gradients are then added in chunk order. So the result is the same
bits for any thread count, and a minibatch of one chunk runs in one call on one thread with no
parallel region at all (a whole training step: forward, backward and the update of every layer).

Drivers, after the kernels: `gradient_and_cost` (dJ/dW and dJ/db of a data set), `train_batches`
(minibatch steps with any optimiser, as kernels.train_batches_with), `evaluate` (costs and
correct counts of a data set) and `forward_rows` (the outputs, as rows). The first two are
compiled as a parallel driver (NAME: its chunks shared among the threads) and a one-thread one
(NAME.serial); evaluation and prediction of a narrow network run on one thread only.
"""

import numpy as np
from numba import prange
from numba.extending import overload

from .codes import ADAM, CROSS_ENTROPY, EXP, MOMENTUM, NESTEROV, POISSON, QUADRATIC, RELU, RMSPROP, SGD, SIGMOID, SOFTMAX, TANH  # noqa: F401
from .config import FASTMATH, inner_driver, mark_driver, on_demand, parallel, renamed, serial
from .kernels import FLUSH_BELOW, SQUARE_FLUSH_BELOW
from .vecmath import exp, log, log1p, select, tanh

ZERO, ONE, HALF = np.float32(0), np.float32(1), np.float32(0.5)


def lanes(fn):
    """Compile a kernel for one thread with every fast-math flag (`reassoc` lets LLVM run the sums
    over samples in weight_gradient in SIMD lanes; the other loops are SIMD lanes as written), its
    array arguments declared not to overlap (config.distinct_arrays_option: no run-time overlap
    checks before each loop; the small data sets' fits took 5-12 % less time). Every call
    passes arrays whose elements it writes that no other argument reaches (rows of one
    buffer, such as delta^(m+1) and delta^m, are different rows). Only the drivers call it in a
    run: its entry for Python is compiled when Python calls it (config.on_demand), as the
    one-thread kernels' below."""
    return on_demand(fn, fastmath=FASTMATH, noalias=True)


# ----------------------------------------------------------------------------- targets
# A chunk's targets t are class ids (t[s], int64) or a target matrix (t[j, s], one row per
# output and, when the samples are weighted, one more row of weights w_s): nbnet.costs.targets,
# transposed. Numba compiles each form apart (the overloads pick the body by t's type).
def target(t, j, s):
    """The target of output j for sample s: 1 if j is its class (class ids), else t[j, s]."""
    if t.ndim == 1:
        return ONE if j == t[s] else ZERO
    return t[j, s]


@overload(target)
def _target_compiled(t, j, s):
    if t.ndim == 1:
        return lambda t, j, s: select(j == t[s], ONE, ZERO)
    return lambda t, j, s: t[j, s]


# ----------------------------------------------------------------------------- samples in
@lanes
def gather_inputs(X, order, first, count, x):
    """x[k, i] = X[order[first + i], k] for the chunk's samples i < count; 0 in the padding columns."""
    for i in range(x.shape[1]):
        if i < count:
            row = order[first + i]
            for k in range(X.shape[1]):
                x[k, i] = X[row, k]
        else:
            for k in range(X.shape[1]):
                x[k, i] = ZERO


@on_demand
def gather_targets(y, order, first, count, t):
    """Column i of t = the targets of y[order[first + i]] (a class id, or a row of the target
    matrix) for i < count; 0 in the padding columns."""
    for i in range(t.shape[-1]):
        row = order[first + min(i, count - 1)]
        if t.ndim == 1:
            t[i] = y[row] if i < count else 0
        else:
            for j in range(t.shape[0]):
                t[j, i] = y[row, j] if i < count else y[row, j] * ZERO


# ----------------------------------------------------------------------------- forward
@lanes
def add_products(M, row_step, term_step, x, base, out):
    """out[i, s] = base[i] + sum_l M[i, l] x[l, s] for every row i of out (base empty: 0), where
    M[i, l] = M[i * row_step + l * term_step] of a flat matrix: W^m read by rows for weighted_sum
    (z = b + W a), (W^(m+1))^T read by columns for hidden_delta (W^T delta).

    Speed trick: four rows and four terms at a time. Each load of x[l, s] feeds four rows, and
    each row is loaded and stored once per four terms: 16 multiply-adds per 8 loads and 4
    stores, along s, in SIMD lanes (two rows at a time did 8 per 6 loads and 2 stores, and the
    small data sets' fits ran 10-40 % slower in these loops). In a block of four rows the first
    four terms store their sums from base without loading out (a pass of its own to set out to
    base cost a tenth more). When the terms are not a multiple of four, the last pass has zero
    weights for the missing ones (on rows of x that exist); the last 1 to 3 rows go one at a
    time, each set to base first."""
    n_rows = out.shape[0]
    i = np.int64(0)  # (a literal 0 would compile add_to_rows for it too: Numba types the call before i's loop)
    while i < n_rows:
        rows = 4 if i + 4 <= n_rows else 1
        add_to_rows(M, i * row_step, row_step, term_step, x, base, out, i, rows)
        i += rows


@lanes
def add_to_rows(M, u, row_step, step, x, base, out, i, rows):
    """out[i + r, s] = base[i + r] + sum_l M[u + r row_step + l step] x[l, s] for r < rows (4, or 1):
    the body of add_products for a block of rows."""
    n_terms, width = x.shape
    zero = M[u] * ZERO
    if rows == 1:
        start = base[i] if base.shape[0] else zero
        for s in range(width):
            out[i, s] = start
    for l in range(0, n_terms, 4):
        l1, l2, l3 = min(l + 1, n_terms - 1), min(l + 2, n_terms - 1), min(l + 3, n_terms - 1)
        p, q, r, t = l * step, l1 * step, l2 * step, l3 * step
        has1, has2, has3 = l + 1 < n_terms, l + 2 < n_terms, l + 3 < n_terms  # (weight 0 for a term past the last)
        a0, a1, a2, a3 = M[u + p], M[u + q] if has1 else zero, M[u + r] if has2 else zero, M[u + t] if has3 else zero
        if rows == 1:
            for s in range(width):
                out[i, s] += a0 * x[l, s] + a1 * x[l1, s] + a2 * x[l2, s] + a3 * x[l3, s]
            continue
        v = u + row_step
        c0, c1, c2, c3 = M[v + p], M[v + q] if has1 else zero, M[v + r] if has2 else zero, M[v + t] if has3 else zero
        v += row_step
        d0, d1, d2, d3 = M[v + p], M[v + q] if has1 else zero, M[v + r] if has2 else zero, M[v + t] if has3 else zero
        v += row_step
        e0, e1, e2, e3 = M[v + p], M[v + q] if has1 else zero, M[v + r] if has2 else zero, M[v + t] if has3 else zero
        if l == 0:  # the first four terms: the sums start from base, stored without a load
            b0, b1, b2, b3 = (base[i], base[i + 1], base[i + 2], base[i + 3]) if base.shape[0] else (zero, zero, zero,
                                                                                                     zero)
            for s in range(width):
                x0, x1, x2, x3 = x[l, s], x[l1, s], x[l2, s], x[l3, s]
                out[i, s] = b0 + (a0 * x0 + a1 * x1 + a2 * x2 + a3 * x3)
                out[i + 1, s] = b1 + (c0 * x0 + c1 * x1 + c2 * x2 + c3 * x3)
                out[i + 2, s] = b2 + (d0 * x0 + d1 * x1 + d2 * x2 + d3 * x3)
                out[i + 3, s] = b3 + (e0 * x0 + e1 * x1 + e2 * x2 + e3 * x3)
        else:
            for s in range(width):
                x0, x1, x2, x3 = x[l, s], x[l1, s], x[l2, s], x[l3, s]
                out[i, s] += a0 * x0 + a1 * x1 + a2 * x2 + a3 * x3
                out[i + 1, s] += c0 * x0 + c1 * x1 + c2 * x2 + c3 * x3
                out[i + 2, s] += d0 * x0 + d1 * x1 + d2 * x2 + d3 * x3
                out[i + 3, s] += e0 * x0 + e1 * x1 + e2 * x2 + e3 * x3


@lanes
def weighted_sum(W, b, a_prev, z):
    """z^m = W^m a^(m-1) + b^m:   z[j, s] = b[j] + sum_k W[j, k] a_prev[k, s]."""
    add_products(W.reshape(-1), np.int64(W.shape[1]), np.int64(1), a_prev, b, z)


@serial(inline="always")
def column_tops(z, top, total):
    """top[s] = max_j z[j, s], the largest z of each sample (subtracted before e^z, so that it
    stays finite), and total[s] = 0, for the softmax's sums."""
    for s in range(z.shape[1]):
        top[s], total[s] = z[0, s], z[0, s] * ZERO
    for j in range(1, z.shape[0]):
        for s in range(z.shape[1]):
            top[s] = max(top[s], z[j, s])


@on_demand
def activate(z, act, a, scratch):
    """a^m = f(z^m) element by element; softmax by columns: a[j, s] = e^(z[j, s] - top_s) / sum_i
    e^(z[i, s] - top_s), top_s = max_i z[i, s] (kept, with the sums, in the rows of scratch)."""
    n, width = z.shape
    if act == SOFTMAX:
        top, total = scratch[0], scratch[1]
        column_tops(z, top, total)
        for j in range(n):
            for s in range(width):
                a[j, s] = exp(z[j, s] - top[s])
                total[s] += a[j, s]
        for j in range(n):
            for s in range(width):
                a[j, s] /= total[s]
    elif act == SIGMOID:
        for j in range(n):
            for s in range(width):
                a[j, s] = ONE / (ONE + exp(-z[j, s]))
    elif act == TANH:
        for j in range(n):
            for s in range(width):
                a[j, s] = tanh(z[j, s])
    elif act == RELU:
        for j in range(n):
            for s in range(width):
                a[j, s] = max(z[j, s], ZERO)
    elif act == EXP:
        for j in range(n):
            for s in range(width):
                a[j, s] = exp(z[j, s])
    else:  # identity
        for j in range(n):
            for s in range(width):
                a[j, s] = z[j, s]


# ----------------------------------------------------------------------------- backward
@on_demand
def output_delta(z, a, t, act, cost, count, scratch, delta):
    """delta^L = w_s f'(z^L) * dJ/da^L for the chunk's `count` samples (kernels.output_delta: a - y
    for each output and cost that cancel f', times f' or the softmax Jacobian for the quadratic
    cost), 0 in the padding columns."""
    n, width = a.shape
    for j in range(n):
        for s in range(width):
            delta[j, s] = a[j, s] - target(t, j, s)
    if cost == QUADRATIC:
        if act == SOFTMAX:  # delta_j = a_j (e_j - sum_i e_i a_i)
            e_dot_a = scratch[0]
            for s in range(width):
                e_dot_a[s] = a[0, s] * ZERO
            for j in range(n):
                for s in range(width):
                    e_dot_a[s] += delta[j, s] * a[j, s]
            for j in range(n):
                for s in range(width):
                    delta[j, s] = a[j, s] * (delta[j, s] - e_dot_a[s])
        elif act == SIGMOID or act == TANH or act == EXP or act == RELU:
            for j in range(n):
                for s in range(width):
                    delta[j, s] *= f_prime(z[j, s], a[j, s], act)
    if t.ndim == 2 and t.shape[0] > n:  # weighted samples
        for j in range(n):
            for s in range(width):
                delta[j, s] *= t[n, s]
    for j in range(n):
        for s in range(count, width):
            delta[j, s] = ZERO


@serial(inline="always")
def f_prime(z, a, act):
    """f'(z), from z and a = f(z): sigmoid a (1 - a), tanh 1 - a^2, exp a, relu 1 or 0."""
    if act == SIGMOID:
        return a * (ONE - a)
    if act == TANH:
        return ONE - a * a
    if act == EXP:
        return a
    return select(z > ZERO, z * ZERO + ONE, z * ZERO)  # relu


@lanes
def hidden_delta(W_next, delta_next, z, a, act, delta):
    """delta^m = f'(z^m) * (W^(m+1))^T delta^(m+1):  delta[k, s] = f'(z[k, s]) sum_j W_next[j, k] delta_next[j, s]."""
    n, width = delta.shape
    add_products(W_next.reshape(-1), np.int64(1), np.int64(W_next.shape[1]), delta_next, W_next[0, :0], delta)
    if act == SIGMOID:
        for k in range(n):
            for s in range(width):
                delta[k, s] *= a[k, s] * (ONE - a[k, s])
    elif act == TANH:
        for k in range(n):
            for s in range(width):
                delta[k, s] *= ONE - a[k, s] * a[k, s]
    elif act == RELU:
        for k in range(n):
            for s in range(width):
                delta[k, s] = select(z[k, s] > ZERO, delta[k, s], delta[k, s] * ZERO)


@lanes
def weight_gradient(delta, a_prev, grad_W, grad_b):
    """dJ/dW^m and dJ/db^m summed over the chunk's samples (the mean and the L2 term come when the
    chunks are added up):  grad_W[j, k] = sum_s delta[j, s] a_prev[k, s],  grad_b[j] = sum_s delta[j, s].

    Speed trick: tiles of four rows by four inputs, sixteen running sums in registers; each load
    of delta[j, s] feeds four of them and each load of a_prev[k, s] four (the sums run along s,
    in SIMD lanes; two rows by four inputs, 8 sums, made the small data sets' fits slower). The
    last 1 to 3 rows one at a time, in tiles of one row by four inputs."""
    n_out, width = grad_W.shape[0], delta.shape[1]
    for j in range(n_out):
        total = delta[j, 0] * ZERO
        for s in range(width):
            total += delta[j, s]
        grad_b[j] = total
    j = np.int64(0)  # (as in add_products)
    while j < n_out:
        rows = 4 if j + 4 <= n_out else 1
        gradient_rows(delta, a_prev, grad_W, j, rows)
        j += rows


@lanes
def gradient_rows(delta, a_prev, grad_W, j, rows):
    """grad_W[j + r, k] = sum_s delta[j + r, s] a_prev[k, s] for r < rows (4, or 1) and every input k:
    the body of weight_gradient for a block of rows (tiles of four inputs, then the last 1 to 3
    inputs alone)."""
    n_in, width = grad_W.shape[1], delta.shape[1]
    k = 0
    while k + 4 <= n_in:
        if rows == 1:
            g00 = g01 = g02 = g03 = delta[j, 0] * ZERO
            for s in range(width):
                d0 = delta[j, s]
                g00 += d0 * a_prev[k, s]
                g01 += d0 * a_prev[k + 1, s]
                g02 += d0 * a_prev[k + 2, s]
                g03 += d0 * a_prev[k + 3, s]
            grad_W[j, k], grad_W[j, k + 1], grad_W[j, k + 2], grad_W[j, k + 3] = g00, g01, g02, g03
            k += 4
            continue
        g00 = g01 = g02 = g03 = g10 = g11 = g12 = g13 = delta[j, 0] * ZERO
        g20 = g21 = g22 = g23 = g30 = g31 = g32 = g33 = delta[j, 0] * ZERO
        for s in range(width):
            d0, d1, d2, d3 = delta[j, s], delta[j + 1, s], delta[j + 2, s], delta[j + 3, s]
            x0, x1, x2, x3 = a_prev[k, s], a_prev[k + 1, s], a_prev[k + 2, s], a_prev[k + 3, s]
            g00 += d0 * x0
            g01 += d0 * x1
            g02 += d0 * x2
            g03 += d0 * x3
            g10 += d1 * x0
            g11 += d1 * x1
            g12 += d1 * x2
            g13 += d1 * x3
            g20 += d2 * x0
            g21 += d2 * x1
            g22 += d2 * x2
            g23 += d2 * x3
            g30 += d3 * x0
            g31 += d3 * x1
            g32 += d3 * x2
            g33 += d3 * x3
        grad_W[j, k], grad_W[j, k + 1], grad_W[j, k + 2], grad_W[j, k + 3] = g00, g01, g02, g03
        grad_W[j + 1, k], grad_W[j + 1, k + 1], grad_W[j + 1, k + 2], grad_W[j + 1, k + 3] = g10, g11, g12, g13
        grad_W[j + 2, k], grad_W[j + 2, k + 1], grad_W[j + 2, k + 2], grad_W[j + 2, k + 3] = g20, g21, g22, g23
        grad_W[j + 3, k], grad_W[j + 3, k + 1], grad_W[j + 3, k + 2], grad_W[j + 3, k + 3] = g30, g31, g32, g33
        k += 4
    for kk in range(k, n_in):  # the last 1 to 3 inputs
        for r in range(rows):
            g = delta[j, 0] * ZERO
            for s in range(width):
                g += delta[j + r, s] * a_prev[kk, s]
            grad_W[j + r, kk] = g


# ----------------------------------------------------------------------------- cost and accuracy
@on_demand
def output_cost(z, a, t, act, cost, count, scratch, totals):
    """totals[0] += sum_s w_s J_s and totals[1] += how many samples are classified right, over the
    chunk's `count` samples, J_s the cost of sample s as kernels.output_cost computes it:

    cross-entropy, softmax output:  J = log sum_j e^(z_j - top) + top - sum_j y_j z_j
    cross-entropy, sigmoid output:  J = sum_j log(1 + e^-|z_j|) + max(z_j, 0) - y_j z_j
    quadratic:                      J = 1/2 sum_j (a_j - y_j)^2
    poisson (exp output):           J = sum_j a_j - y_j z_j + y_j log y_j - y_j

    A sample is classified right when its largest output is its class (class ids), or when every
    output is within 1/2 of its target (a target matrix). Per-sample values are made in the rows
    of scratch (J, right, and the softmax's top and sum), along s in SIMD lanes, then added in
    sample order in float64."""
    n, width = a.shape
    J, right, top, total = scratch[0], scratch[1], scratch[2], scratch[3]
    for s in range(width):
        J[s] = a[0, s] * ZERO
    if cost == CROSS_ENTROPY and act == SOFTMAX:
        column_tops(z, top, total)
        for j in range(n):
            for s in range(width):
                total[s] += exp(z[j, s] - top[s])
                J[s] -= target(t, j, s) * z[j, s]
        for s in range(width):
            J[s] += log(total[s]) + top[s]
    elif cost == CROSS_ENTROPY:
        for j in range(n):
            for s in range(width):
                x = z[j, s]
                J[s] += log1p(exp(-abs(x))) + max(x, ZERO) - target(t, j, s) * x
    elif cost == POISSON:
        for j in range(n):
            for s in range(width):
                y = target(t, j, s)
                y_log_y = select(y > ZERO, y * log(y) - y, y * ZERO)
                J[s] += a[j, s] - y * z[j, s] + y_log_y
    else:
        for j in range(n):
            for s in range(width):
                e = a[j, s] - target(t, j, s)
                J[s] += HALF * e * e
    if t.ndim == 2 and t.shape[0] > n:  # weighted samples
        for s in range(width):
            J[s] *= t[n, s]
    is_right(a, t, right, top)
    cost_sum, right_count = 0.0, 0.0
    for s in range(count):
        cost_sum += J[s]
        right_count += right[s]
    totals[0] += cost_sum
    totals[1] += right_count


@on_demand
def is_right(a, t, right, best):
    """right[s] = 1 where sample s is classified right, else 0 (best: a row of scratch)."""
    n, width = a.shape
    one, zero = right.dtype.type(ONE), right.dtype.type(ZERO)
    if t.ndim == 1:  # the first largest output is the class
        for s in range(width):
            best[s], right[s] = a[0, s], select(t[s] == 0, one, zero)
        for j in range(1, n):
            for s in range(width):
                larger = a[j, s] > best[s]
                best[s] = select(larger, a[j, s], best[s])
                right[s] = select(larger, select(t[s] == j, one, zero), right[s])
    else:  # every output within 1/2 of its target
        for s in range(width):
            right[s] = one
        for j in range(n):
            for s in range(width):
                right[s] = select(abs(a[j, s] - t[j, s]) < HALF, right[s], zero)


# ----------------------------------------------------------------------------- the update
@on_demand
def update(code, settings, c1, c2, grad, P, s1, s2, shrink):
    """P -= change(dJ/dP) for one array of parameters P (flat), updating the optimiser state s1, s2:
    kernels.optimizer_element's rules, in the same order of operations, with a loop of its own
    for each optimiser so that each runs in SIMD lanes. shrink: decoupled weight decay (alpha
    decay for weights, 0 for biases). Every state value and parameter written is `flushed`
    (kernels.flushed: 0 below 1e-30, never subnormal)."""
    alpha, h1, h2, eps, decay = settings
    one, zero, tiny, tiny_g = alpha * ZERO + ONE, alpha * ZERO, alpha * ZERO + FLUSH_BELOW, alpha * ZERO + SQUARE_FLUSH_BELOW
    n = P.shape[0]
    if code == SGD:  # (no state)
        for i in range(n):
            P[i] = flush(P[i] - (alpha * grad[i] + shrink * P[i]), tiny)
    elif code == MOMENTUM or code == NESTEROV:
        nesterov = code == NESTEROV
        for i in range(n):
            v = h1 * s1[i] - alpha * grad[i]
            change = select(nesterov, -(h1 * v - alpha * grad[i]), -v)
            s1[i], s2[i] = flush(v, tiny), flush(s2[i], tiny)
            P[i] = flush(P[i] - (change + shrink * P[i]), tiny)
    elif code == RMSPROP:
        for i in range(n):
            g = grad[i]
            g2 = select(abs(g) >= tiny_g, g * g, g * zero)
            r = h2 * s2[i] + (one - h2) * g2
            change = alpha * g / (np.sqrt(r) + eps)
            s1[i], s2[i] = flush(s1[i], tiny), flush(r, tiny)
            P[i] = flush(P[i] - (change + shrink * P[i]), tiny)
    else:  # adam
        for i in range(n):
            g = grad[i]
            g2 = select(abs(g) >= tiny_g, g * g, g * zero)
            m = h1 * s1[i] + (one - h1) * g
            v = h2 * s2[i] + (one - h2) * g2
            change = alpha * (m / c1) / (np.sqrt(v / c2) + eps)
            s1[i], s2[i] = flush(m, tiny), flush(v, tiny)
            P[i] = flush(P[i] - (change + shrink * P[i]), tiny)


@serial(inline="always")
def flush(x, tiny):
    """x, or 0 when |x| < tiny (kernels.flushed)."""
    return select(abs(x) < tiny, x * ZERO, x)


# ----------------------------------------------------------------------------- one chunk
# The passes below take the network as `sizes` (n_0 .. n_L), `acts` (the activation codes) and
# `params`, every W^m (by rows) then every b^m in one flat vector (Network.flat_parameters'
# layout), and each buffer as one array with a leading chunk index: zs[c] holds chunk c's
# z^1 .. z^L, one block of rows per layer; grads[c] its gradient sums laid out as params. (Numba
# runs a `prange` loop body as a function of arrays and numbers: no tuples of arrays in it.)
@on_demand
def layer_rows(sizes, m):
    """(first, end): the rows of layer m + 1's neurons in a chunk buffer of z, a or delta."""
    first = 0
    for i in range(1, m + 1):
        first += sizes[i]
    return first, first + sizes[m + 1]


@on_demand
def layer_parameters(params, sizes, m):
    """Views (W, b) of W^(m+1) and b^(m+1) in a flat vector laid out as `params`."""
    w_first, b_first = 0, 0
    for i in range(len(sizes) - 1):
        b_first += sizes[i + 1] * sizes[i]
    for i in range(m):
        w_first += sizes[i + 1] * sizes[i]
        b_first += sizes[i + 1]
    n_out, n_in = sizes[m + 1], sizes[m]
    return params[w_first:w_first + n_out * n_in].reshape(n_out, n_in), params[b_first:b_first + n_out]


@inner_driver
def chunk_pass(sizes, acts, cost, params, X, y, order, first, count, xs, ts, zs, activations, deltas, scratch,
               grads, chunk_totals, c, backward, costs):
    """Chunk c of a pass: its samples order[first:first + count] gathered, the forward pass
    z^m = W^m a^(m-1) + b^m, a^m = f(z^m); with `costs` their cost sum and correct count into row c
    of chunk_totals; with `backward` delta^L, delta^m for m = L-1..1, and its sums of dJ/dW^m
    and dJ/db^m into grads[c]."""
    L, x, t, work = len(sizes) - 1, xs[c], ts[c], scratch[c]
    gather_inputs(X, order, first, count, x)
    a_prev = x
    for m in range(L):
        W, b = layer_parameters(params, sizes, m)
        lo, hi = layer_rows(sizes, m)
        weighted_sum(W, b, a_prev, zs[c, lo:hi])
        activate(zs[c, lo:hi], acts[m], activations[c, lo:hi], work)
        a_prev = activations[c, lo:hi]
    if not (costs or backward):
        return
    gather_targets(y, order, first, count, t)
    lo, hi = layer_rows(sizes, L - 1)
    if costs:
        chunk_totals[c, 0], chunk_totals[c, 1] = 0.0, 0.0
        output_cost(zs[c, lo:hi], activations[c, lo:hi], t, acts[L - 1], cost, count, work, chunk_totals[c])
    if not backward:
        return
    output_delta(zs[c, lo:hi], activations[c, lo:hi], t, acts[L - 1], cost, count, work, deltas[c, lo:hi])
    for m in range(L - 2, -1, -1):
        W_next = layer_parameters(params, sizes, m + 1)[0]
        lo, hi = layer_rows(sizes, m)
        up, end = layer_rows(sizes, m + 1)
        hidden_delta(W_next, deltas[c, up:end], zs[c, lo:hi], activations[c, lo:hi], acts[m], deltas[c, lo:hi])
    for m in range(L):
        grad_W, grad_b = layer_parameters(grads[c], sizes, m)
        lo, hi = layer_rows(sizes, m)
        a_prev = x
        if m > 0:
            below, top = layer_rows(sizes, m - 1)
            a_prev = activations[c, below:top]
        weight_gradient(deltas[c, lo:hi], a_prev, grad_W, grad_b)


@inner_driver
def forward_out(sizes, acts, params, X, no_targets, order, start, xs, ts, zs, activations, deltas, scratch, grads,
                chunk_totals, c, out):
    """Chunk c of forward_rows: the forward pass of the samples from `start` on, a^L into rows of out."""
    count = min(xs.shape[2], X.shape[0] - start)
    chunk_pass(sizes, acts, np.int64(0), params, X, no_targets, order, start, count, xs, ts, zs, activations, deltas,
               scratch, grads, chunk_totals, c, np.bool_(False), np.bool_(False))
    lo, hi = layer_rows(sizes, len(sizes) - 2)
    for i in range(count):
        for j in range(hi - lo):
            out[start + i, j] = activations[c, lo + j, i]


@lanes
def add_into(chunk_sums, total):
    """total += chunk_sums: one chunk's sums into the pass's (flat vectors)."""
    for i in range(total.shape[0]):
        total[i] += chunk_sums[i]


@lanes
def mean_and_l2(W, n, l2_over_n, grad_W, grad_b):
    """grad_W = grad_W / n + (lambda/n_train) W,  grad_b = grad_b / n: from sums over n samples to
    dJ/dW^m and dJ/db^m."""
    scale, l2 = ONE / W.dtype.type(n), W.dtype.type(l2_over_n)
    for j in range(W.shape[0]):
        for k in range(W.shape[1]):
            grad_W[j, k] = grad_W[j, k] * scale + l2 * W[j, k]
        grad_b[j] *= scale


@lanes
def flatten(weights, biases, params):
    """params = every W^m by rows, then every b^m (the layout of Network.flat_parameters)."""
    i = 0
    for m in range(len(weights)):
        W = weights[m]
        for j in range(W.shape[0]):
            for k in range(W.shape[1]):
                params[i] = W[j, k]
                i += 1
    for m in range(len(biases)):
        for j in range(biases[m].shape[0]):
            params[i] = biases[m][j]
            i += 1


# ----------------------------------------------------------------------------- passes
# Each pass below is compiled twice from one body (see the end of the file): NAME shares its
# chunks among the threads (`prange`), NAME.serial runs them in turn on one thread. Both call
# the same compiled chunk_pass, so they compute the same bits.
def run_chunks(sizes, acts, cost, params, X, y, order, first, n, buffers, gradient, totals, backward, costs):
    """The samples order[first:first + n] in chunks: forward passes; with `costs` totals[0] += their
    cost sum and totals[1] += their correct count; with `backward` gradient = their dJ/dW^m and
    dJ/db^m summed over the samples (laid out as params). The buffers hold some chunks at a time
    (a round); each round's chunks run at once, then their sums are added in chunk order."""
    xs, ts, zs, activations, deltas, scratch, grads, chunk_totals = buffers
    n_buffers, width = xs.shape[0], xs.shape[2]
    n_chunks = (n + width - 1) // width
    if backward:
        for i in range(gradient.shape[0]):
            gradient[i] = 0
    for round_start in range(0, n_chunks, n_buffers):
        in_round = min(n_buffers, n_chunks - round_start)
        if in_round == 1:  # no parallel region for one chunk
            start = round_start * width
            chunk_pass(sizes, acts, cost, params, X, y, order, first + start, min(width, n - start), xs, ts, zs,
                       activations, deltas, scratch, grads, chunk_totals, np.int64(0), backward, costs)
        else:
            for c in prange(in_round):  # (c is unsigned here: passed as int64, it takes the chunk_pass above)
                start = (round_start + c) * width
                chunk_pass(sizes, acts, cost, params, X, y, order, first + start, min(width, n - start), xs, ts, zs,
                           activations, deltas, scratch, grads, chunk_totals, np.int64(c), backward, costs)
        for c in range(in_round):
            if costs:
                totals[0] += chunk_totals[c, 0]
                totals[1] += chunk_totals[c, 1]
            if backward:
                add_into(grads[c], gradient)


def train_batches(code, settings, step, weights, biases, state, sizes, acts, cost, X, y, order, batch_size, first,
                  stop, l2_over_n, buffers, params, gradient, totals):
    """Minibatch steps for batches first..stop-1 of the shuffled `order`, each of batch_size
    samples. A step: dJ/dW^m and dJ/db^m of the batch (run_chunks; the mean over its samples
    plus (lambda/n) W^m, l2_over_n), then every layer's update by the optimiser `code`
    (kernels.optimizer_step: SGD, momentum, Nesterov, RMSprop or Adam) as its step number
    step + 1. Unless `totals` is empty, each batch's cost sum and correct count (before its
    step) are added to it. `params` and `gradient` are flat scratch vectors. Returns the new
    step count (as kernels.train_batches_with)."""
    alpha, h1, h2, eps, decay = settings
    s1_W, s1_b, s2_W, s2_b = state
    for batch in range(first, stop):
        flatten(weights, biases, params)
        run_chunks(sizes, acts, cost, params, X, y, order, batch * batch_size, batch_size, buffers, gradient, totals,
                   np.bool_(True), totals.shape[0] > 0)
        step += 1
        c1 = weights[0].dtype.type(ONE - h1 ** step)  # Adam's bias corrections 1 - b1^t, 1 - b2^t
        c2 = weights[0].dtype.type(ONE - h2 ** step)
        shrink = alpha * decay
        for m in range(len(weights)):
            grad_W, grad_b = layer_parameters(gradient, sizes, m)
            mean_and_l2(weights[m], batch_size, l2_over_n, grad_W, grad_b)
            update(code, settings, c1, c2, grad_W.reshape(-1), weights[m].reshape(-1), s1_W[m].reshape(-1),
                   s2_W[m].reshape(-1), shrink)
            update(code, settings, c1, c2, grad_b, biases[m], s1_b[m], s2_b[m], shrink * ZERO)
    return step


def gradient_and_cost(sizes, acts, cost, params, X, y, order, l2_over_n, buffers, gradient, totals):
    """The whole data set's dJ/dW^m and dJ/db^m (the mean over the samples order[:] plus the L2
    term) into gradient, laid out as params, and totals += their cost sum and correct count: what
    full-batch L-BFGS asks for at each point (nbnet.lbfgs)."""
    n = order.shape[0]
    run_chunks(sizes, acts, cost, params, X, y, order, np.int64(0), n, buffers, gradient, totals, np.bool_(True),
               np.bool_(True))
    for m in range(len(sizes) - 1):
        W, b = layer_parameters(params, sizes, m)
        grad_W, grad_b = layer_parameters(gradient, sizes, m)
        mean_and_l2(W, n, l2_over_n, grad_W, grad_b)


def objective(x, sizes, acts, cost, params, X, y, order, l2_over_n, buffers, gradient, totals, gradient_out):
    """J(x) = mean_s J_s + (lambda/2n) sum_m ||W^m||^2 at the parameter vector x (laid out as params),
    returned, and dJ/dx into gradient_out: what SciPy's L-BFGS-B asks for at each point
    (nbnet.lbfgs). x and gradient_out are float64, as SciPy keeps them; params and gradient
    (scratch) are in the network's dtype."""
    for i in range(x.shape[0]):
        params[i] = x[i]
    totals[0], totals[1] = 0.0, 0.0
    gradient_and_cost(sizes, acts, cost, params, X, y, order, l2_over_n, buffers, gradient, totals)
    squares, n_weights = 0.0, 0
    for m in range(len(sizes) - 1):
        n_weights += sizes[m + 1] * sizes[m]
    for i in range(n_weights):
        squares += np.float64(params[i]) * np.float64(params[i])
    for i in range(x.shape[0]):
        gradient_out[i] = gradient[i]
    return totals[0] / order.shape[0] + 0.5 * l2_over_n * squares


def evaluate(sizes, acts, cost, params, X, y, order, buffers, totals):
    """totals[0] += the sum of the costs and totals[1] += the number classified right, over the
    samples order[:] (forward passes only)."""
    run_chunks(sizes, acts, cost, params, X, y, order, np.int64(0), order.shape[0], buffers, params, totals,
               np.bool_(False), np.bool_(True))


def forward_rows(sizes, acts, params, X, no_targets, buffers, out):
    """out[s] = a^L of sample s of X, as a row: the forward pass, chunk by chunk. (no_targets: an
    array of the kind of targets the buffers were made for, never read.)"""
    xs, ts, zs, activations, deltas, scratch, grads, chunk_totals = buffers
    n_buffers, width, n = xs.shape[0], xs.shape[2], X.shape[0]
    order = np.arange(n)
    n_chunks = (n + width - 1) // width
    for round_start in range(0, n_chunks, n_buffers):
        in_round = min(n_buffers, n_chunks - round_start)
        if in_round == 1:  # no parallel region for one chunk
            forward_out(sizes, acts, params, X, no_targets, order, round_start * width, xs, ts, zs, activations, deltas,
                        scratch, grads, chunk_totals, np.int64(0), out)
        else:
            for c in prange(in_round):
                forward_out(sizes, acts, params, X, no_targets, order, (round_start + c) * width, xs, ts, zs, activations,
                            deltas, scratch, grads, chunk_totals, c, out)


def _both_variants(body, calls=(), threaded=True):
    """NAME, compiled for several threads (the `prange` loop of run_chunks, which is inlined into
    it, shares chunks among them; threaded=False: a body that only calls threaded passes), and
    NAME.serial for one (where `prange` is `range`), from one Python body; NAME.serial calls the
    .serial variants of the passes in `calls`."""
    mark_driver(body)
    compiled = parallel(body) if threaded else serial(body)
    compiled.serial = serial(renamed(body, "_serial", **{callee.__name__: callee.serial for callee in calls}))
    return compiled


def _one_thread_only(body):
    """NAME for a pass that always runs on one thread (NAME.serial is NAME itself): a narrow
    network's evaluation and prediction (passes.evaluation_parallel), whose forward passes are
    too quick to share, so that no parallel variant is compiled for them."""
    mark_driver(body)
    compiled = serial(body)
    compiled.serial = compiled
    return compiled


run_chunks = serial(run_chunks, inline="always")  # (inlined: a call of its own would compile every kernel again)
train_batches = _both_variants(train_batches)
gradient_and_cost = _both_variants(gradient_and_cost)
objective = _both_variants(objective, [gradient_and_cost], threaded=False)
evaluate = _one_thread_only(evaluate)
forward_rows = _one_thread_only(forward_rows)
