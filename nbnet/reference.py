"""The same maths as nbnet.kernels in plain vectorised NumPy (matrix products, no loops).

Each function is the twin of the kernel of the same name: tests compare them on random
shapes, and bench/ races them. Arrays here are returned rather than filled in place.
"""

import numpy as np

from .activations import f, f_prime
from .costs import BY_CODE, correct, targets
from .codes import MOMENTUM, NESTEROV, RMSPROP, SGD


def weighted_sum(W, b, a_prev):
    """z = a_prev W^T + b  (samples are rows)."""
    return a_prev @ W.T + b


def activate(z, act):
    return f(z, act)


def output_delta(z, a, y, act, cost):
    """delta^L (each row times its sample's weight when y carries weights)."""
    Y, w = targets(y, a.shape[1], a.dtype)
    delta = BY_CODE[cost].delta(z, a, Y, act)
    return delta if w is None else delta * w[:, None]


def output_cost(z, a, y, act, cost):
    """(per-sample cost J before the L2 term, times the sample's weight; 1 where the sample is
    classified right, else 0: nbnet.costs.correct)."""
    Y, w = targets(y, a.shape[1], a.dtype)
    J = BY_CODE[cost].fn(z, a, Y, act)
    return (J if w is None else J * w), correct(a, y)


def hidden_delta(W_next, delta_next, z, a, act):
    """delta = f'(z) * (delta_next W_next)."""
    return f_prime(z, a, act) * (delta_next @ W_next)


def hidden_delta_parts(W_next, delta_next, z, a, act, n_parts):
    """kernels.hidden_delta's parts: parts[p] = f'(z) * (delta_next[:, rows] @ W_next[rows]) for
    the rows of part p, consecutive blocks of 4 rows split into n_parts nearly equal runs."""
    blocks = -(-W_next.shape[0] // 4)
    bounds = [min(4 * -(-p * blocks // n_parts), W_next.shape[0]) for p in range(n_parts + 1)]
    return np.stack([f_prime(z, a, act) * (delta_next[:, lo:hi] @ W_next[lo:hi])
                     for lo, hi in zip(bounds[:-1], bounds[1:])])


def add_parts(parts):
    """kernels.hidden_delta's phase 1: delta = the sum of the parts."""
    return parts.sum(axis=0)


def weight_gradient(delta, a_prev, W, l2_over_n):
    """(delta^T a_prev / S + l2_over_n W,  mean of delta over samples)."""
    scale = W.dtype.type(1.0 / a_prev.shape[0])
    return (delta.T @ a_prev) * scale + W.dtype.type(l2_over_n) * W, delta.sum(axis=0) * scale


def sgd_update(W, b, grad_W, grad_b, lr):
    """In place: W -= lr grad_W, b -= lr grad_b."""
    alpha = W.dtype.type(lr)
    W -= alpha * grad_W
    b -= alpha * grad_b


def gradient_step(delta, a_prev, lr, l2_over_n, W, b):
    """In place, like the kernel: the gradient of the layer, then the SGD update."""
    grad_W, grad_b = weight_gradient(delta, a_prev, W, l2_over_n)
    sgd_update(W, b, grad_W, grad_b, lr)


def forward(weights, biases, acts, X):
    """Lists (zs, activations) of every layer."""
    zs, activations, _, _ = forward_dropout(weights, biases, acts, X, 1.0, 0, 0)
    return zs, activations


def mix(seed, step, layer, s, j):
    """The 64 random bits of kernels.mix for arrays of s and j (uint64 arithmetic wraps)."""
    s, j = np.asarray(s, dtype=np.uint64), np.asarray(j, dtype=np.uint64)
    key = np.array([seed, step, layer], dtype=np.uint64)
    with np.errstate(over="ignore"):  # wrapping around 2^64 is the point
        x = (key[0] * np.uint64(0x9E3779B97F4A7C15) + key[1] * np.uint64(0xBF58476D1CE4E5B9)
             + key[2] * np.uint64(0x94D049BB133111EB) + s * np.uint64(0xD6E8FEB86659FD93) + j)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def uniform(seed, step, layer, n_samples, n_units):
    """The (n_samples, n_units) numbers of kernels.uniform, all at once."""
    x = mix(seed, step, layer, np.arange(n_samples)[:, None], np.arange(n_units)[None, :])
    return (x >> np.uint64(40)).astype(np.float32) * np.float32(2.0 ** -24)


def dropout(a, keep, seed, step, layer):
    """(mask, kept): mask = 1/keep where the unit survives, else 0; kept = a * mask."""
    q = a.dtype.type(keep)
    mask = np.where(uniform(seed, step, layer, *a.shape) < q, a.dtype.type(1) / q, a.dtype.type(0)).astype(a.dtype)
    return mask, a * mask


def forward_dropout(weights, biases, acts, X, keep, seed, step):
    """forward, with every hidden layer dropped out when keep < 1: (zs, activations, masks,
    kept), the last two empty when keep = 1."""
    zs, activations, masks, kept = [], [], [], []
    a_in = X
    for m, (W, b, act) in enumerate(zip(weights, biases, acts)):
        z = weighted_sum(W, b, a_in)
        a = activate(z, act)
        zs.append(z)
        activations.append(a)
        a_in = a
        if keep < 1 and m < len(weights) - 1:
            mask, a_in = dropout(a, keep, seed, step, m)
            masks.append(mask)
            kept.append(a_in)
    return zs, activations, masks, kept


def backpropagate(weights, acts, cost, y, zs, activations, masks=None):
    """The list of deltas, output layer first computed, from the outputs of `forward`
    (masked like the forward pass when it used dropout)."""
    L = len(weights)
    deltas = [None] * L
    deltas[L - 1] = output_delta(zs[L - 1], activations[L - 1], y, acts[L - 1], cost)
    for m in range(L - 2, -1, -1):
        deltas[m] = hidden_delta(weights[m + 1], deltas[m + 1], zs[m], activations[m], acts[m])
        if masks is not None:
            deltas[m] = deltas[m] * masks[m]
    return deltas


def backward(weights, acts, cost, X, y, l2_over_n, zs, activations):
    """Lists (grads_W, grads_b) from the outputs of `forward`."""
    L = len(weights)
    deltas = backpropagate(weights, acts, cost, y, zs, activations)
    grads_W, grads_b = [], []
    for m in range(L):
        a_prev = X if m == 0 else activations[m - 1]
        gW, gb = weight_gradient(deltas[m], a_prev, weights[m], l2_over_n)
        grads_W.append(gW)
        grads_b.append(gb)
    return grads_W, grads_b


def gather_rows(X, y, order, start, n_rows):
    """The samples order[start], ..., order[start + n_rows - 1] of X and y."""
    idx = order[start:start + n_rows]
    return X[idx], y[idx]


def train_batches(weights, biases, acts, cost, X, y, order, batch_size, first, stop, lr, l2_over_n, keep=1.0,
                  seed=0):
    """Minibatch SGD steps for batches first..stop-1 of `order`, updating the lists in place
    (with dropout when keep < 1)."""
    for batch in range(first, stop):
        xb, yb = gather_rows(X, y, order, batch * batch_size, batch_size)
        zs, activations, masks, kept = forward_dropout(weights, biases, acts, xb, keep, seed, batch)
        dropped = keep < 1
        inputs = kept if dropped else activations
        deltas = backpropagate(weights, acts, cost, yb, zs, activations, masks if dropped else None)
        for m in range(len(weights)):
            gradient_step(deltas[m], xb if m == 0 else inputs[m - 1], lr, l2_over_n, weights[m], biases[m])


def optimizer_change(code, g, s1, s2, settings, c1, c2):
    """(change, new s1, new s2) for whole arrays; see kernels.optimizer_element."""
    alpha, h1, h2, eps, decay = settings
    if code == SGD:
        return alpha * g, s1, s2
    if code in (MOMENTUM, NESTEROV):
        v = h1 * s1 - alpha * g
        return (-(h1 * v - alpha * g) if code == NESTEROV else -v), v, s2
    g2 = np.where(np.abs(g) >= 1e-15, g * g, 0)  # (see kernels.flushed)
    if code == RMSPROP:
        r = h2 * s2 + (1 - h2) * g2
        return alpha * g / (np.sqrt(r) + eps), s1, r
    m = h1 * s1 + (1 - h1) * g
    v = h2 * s2 + (1 - h2) * g2
    return alpha * (m / c1) / (np.sqrt(v / c2) + eps), m, v


def optimizer_step(code, grad_W, grad_b, settings, c1, c2, W, b, s1_W, s1_b, s2_W, s2_b):
    """In place, like the kernel."""
    alpha, h1, h2, eps, decay = settings
    change, s1, s2 = optimizer_change(code, grad_W, s1_W, s2_W, settings, c1, c2)
    s1_W[...], s2_W[...], W[...] = flushed(s1), flushed(s2), flushed(W - (change + alpha * decay * W))
    change, s1, s2 = optimizer_change(code, grad_b, s1_b, s2_b, settings, c1, c2)
    s1_b[...], s2_b[...], b[...] = flushed(s1), flushed(s2), flushed(b - change)


def flushed(x):
    """x with every |value| below 1e-30 set to 0 (see kernels.flushed)."""
    return np.where(np.abs(x) < 1e-30, 0, x)


def train_batches_with(code, settings, step, weights, biases, s1_W, s1_b, s2_W, s2_b, acts, cost, X, y, order,
                       batch_size, first, stop, l2_over_n):
    """Like kernels.train_batches_with, on lists of arrays; returns the new step count."""
    for batch in range(first, stop):
        xb, yb = gather_rows(X, y, order, batch * batch_size, batch_size)
        zs, activations = forward(weights, biases, acts, xb)
        grads_W, grads_b = backward(weights, acts, cost, xb, yb, l2_over_n, zs, activations)
        step += 1
        alpha, h1, h2, eps, decay = settings
        c1, c2 = 1 - h1 ** step, 1 - h2 ** step
        for m in range(len(weights)):
            optimizer_step(code, grads_W[m], grads_b[m], settings, c1, c2, weights[m], biases[m], s1_W[m], s1_b[m],
                           s2_W[m], s2_b[m])
    return step


def distort(X, order, H, W, pixel_max, seed, epoch, settings, taps, dtype):
    """The rows of pixels.distorted_rows, with SciPy's 1-D correlations for the Gaussian
    smoothing (zero outside) and NumPy's indexing for the bilinear reads; computed in float64."""
    from scipy.ndimage import correlate1d

    from .pixels import AFFINE_STREAM, ALPHA, FIELD_STREAM, ROTATE, SCALE, SHEAR, SHIFT
    r, c = np.mgrid[0:H, 0:W].astype(np.float64)
    out = np.empty((len(order), H * W), dtype=dtype)
    for s, i in enumerate(order):
        field = np.zeros((2, H, W))
        if settings[ALPHA] > 0:
            bits = mix(seed, epoch, FIELD_STREAM, i, np.arange(H * W)).reshape(H, W)
            for d, draw in enumerate((bits >> np.uint64(40), bits & np.uint64(0xFFFFFF))):
                u = draw.astype(np.float32) * np.float32(2.0 ** -24) * 2 - 1
                smooth = correlate1d(correlate1d(u.astype(np.float64), taps, axis=0, mode="constant"), taps, axis=1,
                                     mode="constant")
                field[d] = settings[ALPHA] * smooth
        draws = 2.0 * ((mix(seed, epoch, AFFINE_STREAM, i, np.arange(5)) >> np.uint64(40)) * 2.0 ** -24) - 1.0
        angle, scale, shear = settings[ROTATE] * draws[0], 1.0 + settings[SCALE] * draws[1], settings[SHEAR] * draws[2]
        A = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) @ [[1, shear], [0, 1]] / scale
        c0, r0 = (W - 1) / 2, (H - 1) / 2
        x = A[0, 0] * (c - c0) + A[0, 1] * (r - r0) + c0 + settings[SHIFT] * draws[3] + field[0]
        y = A[1, 0] * (c - c0) + A[1, 1] * (r - r0) + r0 + settings[SHIFT] * draws[4] + field[1]
        padded = np.zeros((H + 3, W + 3))  # a border of zeros: 1 before, 2 after
        padded[1:H + 1, 1:W + 1] = X[i].reshape(H, W)
        y, x = np.clip(y, -1, H), np.clip(x, -1, W)  # a point beyond the image reads only zeros
        y0, x0 = np.floor(y), np.floor(x)
        fy, fx = y - y0, x - x0
        y0, x0 = y0.astype(int) + 1, x0.astype(int) + 1
        value = ((1 - fy) * ((1 - fx) * padded[y0, x0] + fx * padded[y0, x0 + 1])
                 + fy * ((1 - fx) * padded[y0 + 1, x0] + fx * padded[y0 + 1, x0 + 1]))
        out[s] = (value / pixel_max).reshape(-1)
    return out
