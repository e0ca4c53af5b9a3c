"""Backpropagation as the textbook writes it: one plain loop nest per equation. Read this first.

    z^m = W^m a^(m-1) + b^m          a^m = f(z^m)          a^0 = x
    delta^L = f'(z^L) * dJ/da^L      delta^m = f'(z^m) * (W^(m+1))^T delta^(m+1)
    dJ/dW^m = delta^m (a^(m-1))^T    dJ/db^m = delta^m
    W^m -= alpha * (dJ/dW^m + (lambda/n) W^m)          b^m -= alpha * dJ/db^m

Shapes: samples are rows (a[s, j]), W^m is (n_out, n_in), b^m is (n_out,). Indices: s sample,
j neuron of this layer, k neuron of the layer below. Each `prange` runs over the index that
owns what its loop writes (s for z, a and delta; j for the gradients and the step), so no two
threads write one element, every sum runs in one fixed order, and the result is the same for
any thread count. Minibatch gradients are means over the S samples of the batch.

These loops are compiled with the kernels' options (nbnet.config) and train end to end with
`nbnet train --kernels loops` (the driver at the end of this file). nbnet/kernels.py computes
the same equations faster (blocking, fusion, tiling: each kernel's docstring names its loop
here); the README's kernel map and bench/ladder.py measure what each step earns.
"""

import numpy as np
from numba import prange

from . import kernels, passes
from .codes import EXP, IDENTITY, QUADRATIC, SGD, SIGMOID, SOFTMAX, TANH
from .kernels import sample_weight, target
from .config import FASTMATH, parallel, serial

ZERO, ONE = np.float32(0), np.float32(1)


def plain(fn):
    """Compile a loop nest as the kernels are compiled (parallel, the flags of nbnet.config)."""
    return parallel(fn, FASTMATH)


# f and f_prime are written again here, not imported from kernels.py: kernels.f computes e^x and
# tanh with nbnet.vecmath's vectorisable approximations and kernels.f_prime leaves out identity
# and exp (see there); these are the textbook functions, with NumPy's exp and tanh.
@serial(inline="always")
def f(z, act):
    """a = f(z) for one neuron: sigmoid 1 / (1 + e^-z), tanh, identity z, exp e^z, or relu max(z, 0)."""
    if act == SIGMOID:
        return ONE / (ONE + np.exp(-z))
    if act == TANH:
        return np.tanh(z)
    if act == IDENTITY:
        return z
    if act == EXP:
        return np.exp(z)
    return z if z > ZERO else z * ZERO


@serial(inline="always")
def f_prime(z, a, act):
    """f'(z), written with a = f(z): sigmoid a (1 - a), tanh 1 - a^2, identity 1, exp a, relu 1 or 0."""
    if act == SIGMOID:
        return a * (ONE - a)
    if act == TANH:
        return ONE - a * a
    if act == IDENTITY:
        return ONE
    if act == EXP:
        return a
    return ONE if z > ZERO else ZERO


@plain
def weighted_sum(W, b, a_prev, z):
    """z^m = W^m a^(m-1) + b^m:   z[s, j] = b[j] + sum_k W[j, k] a_prev[s, k]."""
    for s in prange(a_prev.shape[0]):
        for j in range(W.shape[0]):
            total = b[j]
            for k in range(W.shape[1]):
                total += W[j, k] * a_prev[s, k]
            z[s, j] = total


@plain
def activate(z, act, a):
    """a^m = f(z^m); softmax: a[s, j] = e^(z[s, j] - max_i z[s, i]) / sum_i e^(z[s, i] - max_i z[s, i])."""
    for s in prange(z.shape[0]):
        if act == SOFTMAX:
            top = np.max(z[s])  # subtracting the largest z keeps e^z finite
            total = z.dtype.type(0)
            for j in range(z.shape[1]):
                a[s, j] = np.exp(z[s, j] - top)
                total += a[s, j]
            for j in range(z.shape[1]):
                a[s, j] /= total
        else:
            for j in range(z.shape[1]):
                a[s, j] = f(z[s, j], act)


@plain
def output_delta(z, a, y, act, cost, delta):
    """delta^L = w_s f'(z^L) * dJ/da^L, dJ/da = a - y (kernels.target, sample_weight); see kernels.output_delta."""
    for s in prange(a.shape[0]):
        w = sample_weight(y, s, a.shape[1])
        for j in range(a.shape[1]):
            delta[s, j] = w * (a[s, j] - target(y, s, j))
        if cost == QUADRATIC and act == SOFTMAX:
            e_dot_a = a.dtype.type(0)
            for i in range(a.shape[1]):
                e_dot_a += delta[s, i] * a[s, i]
            for j in range(a.shape[1]):
                delta[s, j] = a[s, j] * (delta[s, j] - e_dot_a)
        elif cost == QUADRATIC:
            for j in range(a.shape[1]):
                delta[s, j] *= f_prime(z[s, j], a[s, j], act)


@plain
def hidden_delta(W_next, delta_next, z, a, act, delta):
    """delta^m = f'(z^m) * (W^(m+1))^T delta^(m+1):  delta[s, k] = f'(z[s, k]) sum_j W_next[j, k] delta_next[s, j]."""
    for s in prange(z.shape[0]):
        for k in range(z.shape[1]):
            total = z.dtype.type(0)
            for j in range(W_next.shape[0]):
                total += W_next[j, k] * delta_next[s, j]
            delta[s, k] = f_prime(z[s, k], a[s, k], act) * total


@plain
def weight_gradient(delta, a_prev, W, l2_over_n, grad_W, grad_b):
    """dJ/dW^m = mean_s delta^m (a^(m-1))^T + (lambda/n) W^m,   dJ/db^m = mean_s delta^m."""
    mean = ONE / W.dtype.type(a_prev.shape[0])  # 1 / S
    l2 = W.dtype.type(l2_over_n)
    for j in prange(W.shape[0]):
        for k in range(W.shape[1]):
            total = W.dtype.type(0)
            for s in range(a_prev.shape[0]):
                total += delta[s, j] * a_prev[s, k]
            grad_W[j, k] = mean * total + l2 * W[j, k]
        grad_b[j] = mean * np.sum(delta[:, j])


@plain
def sgd_step(grad_W, grad_b, lr, W, b):
    """W^m -= alpha dJ/dW^m,   b^m -= alpha dJ/db^m."""
    alpha = W.dtype.type(lr)
    for j in prange(W.shape[0]):
        for k in range(W.shape[1]):
            W[j, k] -= alpha * grad_W[j, k]
        b[j] -= alpha * grad_b[j]


# ----------------------------------------------------------------------------- the driver
# One minibatch step, in Python, calling the loops above in the order of the equations. The
# parts that are not equations of backpropagation come from nbnet.kernels: the dropout masks
# (so both paths draw the same ones), the minibatch costs (add_costs), and the optimisers other
# than SGD.
LOOPS = (weighted_sum, activate, output_delta, hidden_delta, weight_gradient, sgd_step)


def train_batches(net, optimizer, X, y, order, batch_size, first, stop, lr, l2_over_n, keep, seed, totals):
    """Minibatches first..stop-1 of `order` through the plain loops: forward, backward, step."""
    for batch in range(first, stop):
        rows = order[batch * batch_size:(batch + 1) * batch_size]
        z, a, inputs, masks = forward(net, X[rows], keep, seed, batch)
        if totals is not None:
            kernels.add_costs(tuple(z), tuple(a), net.acts, net.cost_function.code, y[rows],
                              *passes.cost_buffers(len(rows), X.dtype), totals)
        delta = backward(net, z, a, y[rows], masks)
        grads = [(np.empty_like(W), np.empty_like(b)) for W, b in zip(net.weights, net.biases)]
        l2_in_gradient = 0.0 if optimizer.code != SGD and optimizer.decoupled else l2_over_n
        for m, (W, b) in enumerate(zip(net.weights, net.biases)):
            weight_gradient(delta[m], inputs[m], W, l2_in_gradient, *grads[m])
        _step(net, optimizer, grads, lr, l2_over_n)


def forward(net, x, keep=1.0, seed=0, batch=0):
    """(z, a, inputs, masks) per layer m: z^m = W^m a^(m-1) + b^m, a^m = f(z^m), a^0 = x; inputs[m]
    is what layer m + 1 reads (a^m, or its kept units under dropout, with masks[m])."""
    z, a, inputs, masks = [], [], [x], []
    for m, (W, b) in enumerate(zip(net.weights, net.biases)):
        z.append(np.empty((len(x), W.shape[0]), W.dtype))
        a.append(np.empty_like(z[m]))
        weighted_sum(W, b, inputs[m], z[m])
        activate(z[m], net.acts[m], a[m])
        inputs.append(a[m])
        if keep < 1.0 and m < len(net.weights) - 1:  # inverted dropout, the masks nbnet.kernels draws
            masks.append(np.empty_like(a[m]))
            inputs[m + 1] = np.empty_like(a[m])
            kernels.dropout(a[m], keep, seed, np.int64(batch), np.int64(m), masks[m], inputs[m + 1])
    return z, a, inputs, masks


def backward(net, z, a, labels, masks=()):
    """delta^m for every layer: delta^L, then delta^m for m = L-1..1 (a dropped unit passes no error back)."""
    delta = [np.empty_like(z_m) for z_m in z]
    output_delta(z[-1], a[-1], labels, net.acts[-1], net.cost_function.code, delta[-1])
    for m in range(len(z) - 2, -1, -1):
        hidden_delta(net.weights[m + 1], delta[m + 1], z[m], a[m], net.acts[m], delta[m])
        if masks:
            delta[m] *= masks[m]
    return delta


def _step(net, optimizer, grads, lr, l2_over_n):
    """The step on every layer: sgd_step, or the optimiser's (kernels.optimizer_step)."""
    if optimizer.track_gradients:  # --track-gradients: mean |dJ/dW^m| and |dJ/db^m| of every step
        optimizer.gradient_sums += [[np.mean(np.abs(g[i])) for g in grads] for i in (0, 1)]
    if optimizer.code == SGD:
        for (W, b), (grad_W, grad_b) in zip(zip(net.weights, net.biases), grads):
            sgd_step(grad_W, grad_b, lr, W, b)
        return
    optimizer.step += 1
    settings = optimizer.settings(lr, l2_over_n, net.dtype)
    c1, c2 = (net.dtype.type(1 - h ** optimizer.step) for h in settings[1:3])  # Adam's bias corrections
    state = optimizer.attach(net).state
    for m, (W, b) in enumerate(zip(net.weights, net.biases)):
        kernels.optimizer_step(optimizer.code, *grads[m], settings, c1, c2, W, b, *(arrays[m] for arrays in state))
