"""nbnet.narrow's kernels and passes against their NumPy twins (nbnet.reference, on the transposes:
narrow keeps one row per neuron, one column per sample).

Imported by test_narrow.py (compiled) and run by it again in a child process with
NUMBA_DISABLE_JIT=1 on small shapes, so that the loop code itself is executed and covered."""

import numpy as np

from nbnet import narrow as N
from nbnet import passes
from nbnet import reference as R
from nbnet.codes import (ADAM, CROSS_ENTROPY, EXP, IDENTITY, MOMENTUM, NESTEROV, POISSON, QUADRATIC, RELU, RMSPROP,
                         SGD, SIGMOID, SOFTMAX, TANH)
from nbnet.network import Network

from kernel_cases import close_enough

I64 = np.int64


def chunk(rng, dtype, n_rows, width, scale=1.0):
    return (scale * rng.standard_normal((n_rows, width))).astype(dtype)


def check_kernels(rng, dtype, width, n_in, n_out, count=None):
    """Every narrow kernel once on one random layer whose chunk has `width` columns, `count` of
    them samples (the rest padding)."""
    count = width if count is None else count
    shape = f"narrow {dtype.__name__} width={width} count={count} in={n_in} out={n_out}"
    W = rng.standard_normal((n_out, n_in)).astype(dtype)
    b = rng.standard_normal(n_out).astype(dtype)
    a_prev = rng.random((n_in, width)).astype(dtype)
    z = np.empty((n_out, width), dtype)
    N.weighted_sum(W, b, a_prev, z)
    close_enough(z, R.weighted_sum(W, b, a_prev.T).T, dtype, "weighted_sum " + shape)

    z = chunk(rng, dtype, n_out, width, 3.0)
    scratch = np.empty((4, width), dtype)
    for act in (SIGMOID, TANH, RELU, SOFTMAX, IDENTITY, EXP):
        a = np.empty_like(z)
        N.activate(z, I64(act), a, scratch)
        close_enough(a, R.activate(z.T, act).T, dtype, f"activate {act} " + shape)

    Y = rng.random((count, n_out)).astype(dtype)
    weighted = np.hstack([Y, 2 * rng.random((count, 1)).astype(dtype)])
    ids = rng.integers(0, n_out, count)
    for y in (ids, Y, weighted):
        t = targets_of(y, width, dtype)
        pairs = ((SIGMOID, QUADRATIC), (SOFTMAX, QUADRATIC), (SIGMOID, CROSS_ENTROPY), (SOFTMAX, CROSS_ENTROPY))
        if y.ndim == 2:
            pairs += ((IDENTITY, QUADRATIC), (EXP, POISSON), (EXP, QUADRATIC))
        for act, cost in pairs:
            a = R.activate(z.T, act).T.copy()
            delta = np.full_like(z, np.nan)
            N.output_delta(z, a, t, I64(act), I64(cost), I64(count), scratch, delta)
            expected = R.output_delta(z.T[:count], a.T[:count], y, act, cost).T
            close_enough(delta[:, :count], expected, dtype, f"output_delta {y.shape} {act} {cost} " + shape)
            assert not np.any(delta[:, count:]), "output_delta: the padding columns must be 0 " + shape
            totals = np.array([0.5, 1.0])
            N.output_cost(z, a, t, I64(act), I64(cost), I64(count), scratch, totals)
            J, right = R.output_cost(z.T[:count], a.T[:count], y, act, cost)
            close_enough(totals[0] - 0.5, J.sum(), np.float64 if dtype == np.float64 else dtype,
                         f"output_cost {y.shape} {act} {cost} " + shape)
            assert totals[1] - 1.0 == right.sum(), f"output_cost right {y.shape} {act} " + shape

    z_here = chunk(rng, dtype, n_in, width)
    delta_next = chunk(rng, dtype, n_out, width)
    for act in (SIGMOID, TANH, RELU, IDENTITY):
        a_here = R.activate(z_here.T, act).T.copy()
        delta = np.empty_like(z_here)
        N.hidden_delta(W, delta_next, z_here, a_here, I64(act), delta)
        close_enough(delta, R.hidden_delta(W, delta_next.T, z_here.T, a_here.T, act).T, dtype, f"hidden_delta {act} " + shape)

    grad_W, grad_b = np.empty_like(W), np.empty_like(b)
    N.weight_gradient(delta_next, a_prev, grad_W, grad_b)
    mean_W, mean_b = R.weight_gradient(delta_next.T, a_prev.T, W, 0.0)
    close_enough(grad_W, mean_W * width, dtype, "weight_gradient W " + shape)
    close_enough(grad_b, mean_b * width, dtype, "weight_gradient b " + shape)
    N.mean_and_l2(W, I64(width), 0.37, grad_W, grad_b)
    mean_W, mean_b = R.weight_gradient(delta_next.T, a_prev.T, W, 0.37)
    close_enough(grad_W, mean_W, dtype, "mean_and_l2 W " + shape)
    close_enough(grad_b, mean_b, dtype, "mean_and_l2 b " + shape)

    X = rng.standard_normal((count + 5, n_in)).astype(dtype)
    order = rng.permutation(count + 5)
    x = np.full((n_in, width), np.nan, dtype)
    N.gather_inputs(X, order, I64(2), I64(count), x)
    np.testing.assert_array_equal(x[:, :count], X[order[2:2 + count]].T, err_msg="gather_inputs " + shape)
    assert not np.any(x[:, count:]), "gather_inputs: padding must be 0 " + shape
    check_update(rng, dtype, W, b, shape)


def targets_of(y, width, dtype):
    """A chunk's targets: class ids, or the target matrix transposed, padded to `width` columns."""
    if y.ndim == 1:
        t = np.zeros(width, np.int64)
        t[:len(y)] = y
        return t
    t = np.zeros((y.shape[1], width), dtype)
    t[:, :len(y)] = y.T
    return t


def check_update(rng, dtype, W, b, shape):
    """narrow.update, every optimiser, against reference.optimizer_step (with decoupled decay)."""
    for code in (SGD, MOMENTUM, NESTEROV, RMSPROP, ADAM):
        settings = tuple(dtype(v) for v in (0.05, 0.9, 0.99, 1e-8, 0.01))
        c1, c2 = dtype(1 - 0.9 ** 3), dtype(1 - 0.99 ** 3)
        grads = [rng.standard_normal(P.shape).astype(dtype) for P in (W, b)]
        state = [[rng.random(P.shape).astype(dtype) for P in (W, b)] for _ in range(2)]
        mine = [P.copy() for P in (W, b)] + [s.copy() for pair in state for s in pair]
        W1, b1, s1_W, s1_b, s2_W, s2_b = mine
        shrink = settings[0] * settings[4]
        N.update(I64(code), settings, c1, c2, grads[0].reshape(-1), W1.reshape(-1), s1_W.reshape(-1), s2_W.reshape(-1),
                 shrink)
        N.update(I64(code), settings, c1, c2, grads[1], b1, s1_b, s2_b, shrink * dtype(0))
        theirs = [P.copy() for P in (W, b)] + [s.copy() for pair in state for s in pair]
        R.optimizer_step(code, grads[0], grads[1], settings, c1, c2, *theirs[:2], theirs[2], theirs[3], theirs[4],
                         theirs[5])
        for got, want, name in zip(mine, theirs, ("W", "b", "s1_W", "s1_b", "s2_W", "s2_b")):
            close_enough(got, want, dtype, f"update {code} {name} " + shape)


def network_case(rng, sizes, dtype, act, output, cost, n, targets):
    """(net, X, y) for a pass test: y class ids, a target matrix, or one with weights."""
    net = Network(sizes, activation=act, output=output, cost=cost, dtype=dtype.__name__, seed=int(rng.integers(99)))
    X = rng.standard_normal((n, sizes[0])).astype(dtype)
    if targets == "ids":
        y = rng.integers(0, sizes[-1], n)
    else:
        y = rng.random((n, sizes[-1])).astype(dtype)
        if targets == "weighted":
            y = np.hstack([y, 2 * rng.random((n, 1)).astype(dtype)])
    return net, X, net.as_labels(y, n)


def check_passes(rng, dtype, sizes, act, output, cost, n, targets, n_buffers=None, variant="serial"):
    """gradient_and_cost, evaluate and forward_rows over n samples against reference.backward,
    output_cost and forward (n_buffers: hold only so many chunks at once, so the passes run in rounds)."""
    net, X, y = network_case(rng, sizes, dtype, act, output, cost, n, targets)
    weights, biases = tuple(net.weights), tuple(net.biases)
    buffers = passes.narrow_buffers(weights, n, y)
    if n_buffers:
        buffers = tuple(buffer[:n_buffers] for buffer in buffers)
    order = rng.permutation(n)
    params, sizes_ = passes.flat(weights, biases), passes.sizes_of(weights)
    gradient, totals = np.empty_like(params), np.zeros(2)
    pick = (lambda f: f) if variant == "parallel" else (lambda f: f.serial)
    code = I64(net.cost_function.code)
    pick(N.gradient_and_cost)(sizes_, net.acts, code, params, X, y, order, 0.3, buffers, gradient, totals)
    zs, activations = R.forward(net.weights, net.biases, net.acts, X[order])
    grads_W, grads_b = R.backward(net.weights, net.acts, net.cost_function.code, X[order], y[order], 0.3, zs,
                                  activations)
    what = f"{variant} {dtype.__name__} {sizes} {act} {output} {cost} n={n} {targets} buffers={n_buffers}"
    close_enough(gradient, np.concatenate([g.ravel() for g in grads_W] + list(grads_b)), dtype, "gradient " + what)
    J, right = R.output_cost(zs[-1], activations[-1], y[order], net.acts[-1], net.cost_function.code)
    close_enough(totals[0], J.sum(), dtype, "cost " + what)
    assert totals[1] == right.sum(), "right " + what
    totals = np.zeros(2)
    pick(N.evaluate)(sizes_, net.acts, code, params, X, y, np.arange(n), buffers, totals)
    close_enough(totals[0], J.sum(), dtype, "evaluate " + what)
    out = np.empty((n, sizes[-1]), dtype)
    pick(N.forward_rows)(sizes_, net.acts, params, X, y, buffers, out)
    close_enough(out, R.forward(net.weights, net.biases, net.acts, X)[1][-1], dtype, "forward_rows " + what)
    return gradient, totals, out


KERNEL_SHAPES = [(16, 1, 1), (32, 3, 5), (48, 7, 2), (64, 13, 10), (32, 33, 17)]
PASS_CASES = [  # sizes, activation, output, cost, n, targets
    ([4, 32, 16, 4], TANH, "identity", "quadratic", 300, "matrix"),
    ([4, 9, 3], RELU, "softmax", "cross-entropy", 77, "ids"),
    ([5, 7, 6, 1], SIGMOID, "sigmoid", "cross-entropy", 50, "weighted"),
    ([3, 5, 2], RELU, "exp", "poisson", 41, "weighted"),
    ([6, 4, 3], TANH, "softmax", "quadratic", 33, "ids"),
]
ACTIVATION_NAMES = {SIGMOID: "sigmoid", TANH: "tanh", RELU: "relu", IDENTITY: "identity"}


def check_all(kernel_shapes=KERNEL_SHAPES, pass_cases=PASS_CASES, seed=0):
    rng = np.random.default_rng(seed)
    for dtype in (np.float32, np.float64):
        for width, n_in, n_out in kernel_shapes:
            check_kernels(rng, dtype, width, n_in, n_out, count=width - width // 3)
        for sizes, act, output, cost, n, targets in pass_cases:
            check_passes(rng, dtype, sizes, ACTIVATION_NAMES[act], output, cost, n, targets)
