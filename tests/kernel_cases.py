"""Each kernel against its NumPy twin in nbnet.reference, on random shapes.

Imported by test_kernels.py (compiled kernels) and run by it again in a child process with
NUMBA_DISABLE_JIT=1 on small shapes, so the loop code itself is executed and covered.
"""

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np

from nbnet import kernels as K
from nbnet import loops as P
from nbnet import reference as R
from nbnet.passes import hidden_delta_in_phases
from nbnet.kernels import (ADAM, CROSS_ENTROPY, EXP, IDENTITY, MOMENTUM, NESTEROV, POISSON, QUADRATIC, RELU, RMSPROP,
                           SIGMOID, SOFTMAX, TANH)

# (dtype, variant) pairs the kernels are checked in. Float64 through the one-thread twins only:
# the parallel variant is the same loop body, and compiling every parallel kernel a second time,
# for float64, cost CI ~18 s.
VARIANTS = [(np.float32, "parallel"), (np.float32, "serial"), (np.float64, "serial")]
TOLERANCE = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}


def random_layer(rng, dtype, n_samples, n_in, n_out):
    W = rng.standard_normal((n_out, n_in)).astype(dtype)
    b = rng.standard_normal(n_out).astype(dtype)
    a_prev = rng.random((n_samples, n_in)).astype(dtype)
    return W, b, a_prev


def close_enough(actual, expected, dtype, what):
    """Equal up to rounding: relative, plus an absolute part scaled by the largest value
    (sums of many terms of both signs lose relative precision near zero)."""
    tolerance = TOLERANCE[dtype]
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=tolerance["rtol"], atol=tolerance["atol"] * scale,
                               err_msg=what)


class Serial:
    """nbnet.kernels with every kernel replaced by its one-thread twin, where it has one:
    `one_thread` (what NAME.auto calls; `serial`, which the one-thread drivers inline, is the
    same Python body compiled with the same flags, and is tested through those drivers, whose
    training runs are compared with NumPy's; compiling it on its own here too cost CI 15 s)."""

    def __init__(self, twin="one_thread"):
        self.twin = twin

    def __getattr__(self, name):
        return getattr(getattr(K, name), self.twin, None) or getattr(K, name)


def kernels_of(variant):
    """nbnet.kernels itself ("parallel"), or with its one-thread twins ("serial": see Serial)."""
    return K if variant == "parallel" else Serial()


def check_layer(rng, dtype, n_samples, n_in, n_out, variant="parallel"):
    """Every kernel once on one random layer of the given shape (variant: parallel or serial,
    the one-thread twin); returns every output, for comparing the variants bit for bit."""
    W, b, a_prev = random_layer(rng, dtype, n_samples, n_in, n_out)
    shape = f"{variant} {dtype.__name__} S={n_samples} in={n_in} out={n_out}"
    K = kernels_of(variant)
    outputs = []  # everything the kernels computed, in order

    def close(actual, expected, dtype, what):
        outputs.append(np.array(actual, copy=True))
        close_enough(actual, expected, dtype, what)

    z = np.empty((n_samples, n_out), dtype)
    K.weighted_sum(W, b, a_prev, z)
    close(z, R.weighted_sum(W, b, a_prev), dtype, "weighted_sum " + shape)

    z = (3 * rng.standard_normal((n_samples, n_out))).astype(dtype)
    for act in (SIGMOID, TANH, RELU, SOFTMAX, IDENTITY, EXP):
        a = np.empty_like(z)
        K.activate(z, act, a)
        close(a, R.activate(z, act), dtype, f"activate {act} " + shape)

    # a target matrix (regression, multi-label), then the same with a column of sample weights
    Y = rng.random((n_samples, n_out)).astype(dtype)
    for y in (Y, np.hstack([Y, 2 * rng.random((n_samples, 1))]).astype(dtype)):
        for act, cost in ((IDENTITY, QUADRATIC), (EXP, POISSON), (SIGMOID, CROSS_ENTROPY), (SOFTMAX, CROSS_ENTROPY),
                          (EXP, QUADRATIC)):
            a = R.activate(z, act)
            delta, J, correct = np.empty_like(z), np.empty(n_samples, dtype), np.empty(n_samples, np.int64)
            K.output_delta(z, a, y, act, cost, delta)
            close(delta, R.output_delta(z, a, y, act, cost), dtype, f"output_delta Y{y.shape} {act} {cost} " + shape)
            K.output_cost(z, a, y, act, cost, J, correct)
            expected_J, expected_correct = R.output_cost(z, a, y, act, cost)
            close(J, expected_J, dtype, f"output_cost Y{y.shape} {act} {cost} " + shape)
            np.testing.assert_array_equal(correct, expected_correct, err_msg="output_cost Y correct " + shape)

    y = rng.integers(0, n_out, n_samples)
    for act in (SIGMOID, SOFTMAX):
        a = R.activate(z, act)
        for cost in (QUADRATIC, CROSS_ENTROPY):
            delta = np.empty_like(z)
            K.output_delta(z, a, y, act, cost, delta)
            close(delta, R.output_delta(z, a, y, act, cost), dtype, f"output_delta {act} {cost} " + shape)
            J, correct = np.empty(n_samples, dtype), np.empty(n_samples, np.int64)
            K.output_cost(z, a, y, act, cost, J, correct)
            expected_J, expected_correct = R.output_cost(z, a, y, act, cost)
            close(J, expected_J, dtype, f"output_cost {act} {cost} " + shape)
            np.testing.assert_array_equal(correct, expected_correct, err_msg="output_cost correct " + shape)

    z_hidden = rng.standard_normal((n_samples, n_in)).astype(dtype)
    delta_next = rng.standard_normal((n_samples, n_out)).astype(dtype)
    for act in (SIGMOID, TANH, RELU, IDENTITY):
        a_hidden = R.activate(z_hidden, act)
        delta = np.empty_like(z_hidden)
        parts = hidden_delta_in_phases(W, delta_next, z_hidden, a_hidden, act, delta, K.hidden_delta)
        close(delta, R.hidden_delta(W, delta_next, z_hidden, a_hidden, act), dtype, f"hidden_delta {act} " + shape)
        if parts.shape[0] > 0:  # (a W_next of many rows: phase 0's sums over parts of its rows, phase 1's sum)
            close(parts, R.hidden_delta_parts(W, delta_next, z_hidden, a_hidden, act, parts.shape[0]), dtype,
                  f"hidden_delta parts {act} " + shape)
            close(delta, R.add_parts(parts), dtype, f"hidden_delta phase 1 {act} " + shape)

    for l2_over_n in (0.0, 0.37):
        grad_W, grad_b = np.empty_like(W), np.empty_like(b)
        K.weight_gradient(delta_next, a_prev, W, l2_over_n, grad_W, grad_b)
        expected_W, expected_b = R.weight_gradient(delta_next, a_prev, W, l2_over_n)
        close(grad_W, expected_W, dtype, "weight_gradient W " + shape)
        close(grad_b, expected_b, dtype, "weight_gradient b " + shape)

    for l2_over_n in (0.0, 0.37):
        W_kernel, b_kernel, W_numpy, b_numpy = W.copy(), b.copy(), W.copy(), b.copy()
        K.gradient_step(delta_next, a_prev, 0.3, l2_over_n, W_kernel, b_kernel)
        R.gradient_step(delta_next, a_prev, 0.3, l2_over_n, W_numpy, b_numpy)
        close(W_kernel, W_numpy, dtype, "gradient_step W " + shape)
        close(b_kernel, b_numpy, dtype, "gradient_step b " + shape)
        assert W_kernel.dtype == dtype and b_kernel.dtype == dtype

    g_W, g_b = rng.standard_normal(W.shape).astype(dtype), rng.standard_normal(n_out).astype(dtype)
    settings = tuple(dtype(v) for v in (0.01, 0.9, 0.999, 1e-8, 0.001))  # alpha, h1, h2, eps, decay
    for code in (MOMENTUM, NESTEROV, RMSPROP, ADAM):
        start = [W, b] + [rng.random(shape).astype(dtype) for shape in (W.shape, n_out, W.shape, n_out)]
        mine, twin = [a.copy() for a in start], [a.copy() for a in start]
        K.optimizer_step(code, g_W, g_b, settings, dtype(0.1), dtype(0.01), *mine)
        R.optimizer_step(code, g_W, g_b, settings, dtype(0.1), dtype(0.01), *twin)
        for got, want, name in zip(mine, twin, ("W", "b", "s1_W", "s1_b", "s2_W", "s2_b")):
            close(got, want, dtype, f"optimizer_step {code} {name} " + shape)


    order = rng.permutation(n_samples + 3)
    X_all, y_all = rng.random((n_samples + 3, n_in)).astype(dtype), rng.integers(0, 10, n_samples + 3)
    x_out, y_out = np.empty((n_samples, n_in), dtype), np.empty(n_samples, np.int64)
    K.gather_rows(X_all, y_all, order, 2, x_out, y_out)
    expected_x, expected_y = R.gather_rows(X_all, y_all, order, 2, n_samples)
    np.testing.assert_array_equal(x_out, expected_x, err_msg="gather_rows " + shape)
    np.testing.assert_array_equal(y_out, expected_y, err_msg="gather_rows " + shape)
    Y_all = rng.random((n_samples + 3, 3)).astype(dtype)  # the rows of a target matrix
    Y_out = np.empty((n_samples, 3), dtype)
    K.gather_rows(X_all, Y_all, order, 2, x_out, Y_out)
    np.testing.assert_array_equal(Y_out, R.gather_rows(X_all, Y_all, order, 2, n_samples)[1], err_msg="gather Y " + shape)
    return outputs


def check_loops(rng, dtype, n_samples, n_in, n_out):
    """Every plain loop of nbnet.loops once on one random layer, against its NumPy twin and
    against the fast kernel of the same equation (both up to rounding): the parallel kernel in
    float32, in float64 its one-thread twin, as VARIANTS checks float64 (the parallel float64
    kernels, the same bodies, compiled here alone cost CI ~12 s of CPU)."""
    K = kernels_of("parallel" if dtype == np.float32 else "serial")
    W, b, a_prev = random_layer(rng, dtype, n_samples, n_in, n_out)
    shape = f"loops {dtype.__name__} S={n_samples} in={n_in} out={n_out}"

    def same(loop, kernel, args, twin, what):
        """Run the plain loop and the fast kernel on copies of args; the last `len(twin)` arguments are outputs."""
        mine, fast = ([a.copy() if isinstance(a, np.ndarray) else a for a in args] for _ in range(2))
        loop(*mine)
        kernel(*fast)
        for got, from_kernel, want, name in zip(mine[-len(twin):], fast[-len(twin):], twin, what):
            close_enough(got, want, dtype, f"{name} (loop vs NumPy) {shape}")
            close_enough(got, from_kernel, dtype, f"{name} (loop vs kernel) {shape}")

    empty = np.empty((n_samples, n_out), dtype)
    same(P.weighted_sum, K.weighted_sum, (W, b, a_prev, empty), [R.weighted_sum(W, b, a_prev)], ["weighted_sum"])
    z = (3 * rng.standard_normal((n_samples, n_out))).astype(dtype)
    for act in (SIGMOID, TANH, RELU, SOFTMAX):
        same(P.activate, K.activate, (z, act, empty), [R.activate(z, act)], [f"activate {act}"])
    Y = np.hstack([rng.random((n_samples, n_out)), 2 * rng.random((n_samples, 1))]).astype(dtype)  # weighted
    for act, cost in ((IDENTITY, QUADRATIC), (EXP, POISSON), (SIGMOID, CROSS_ENTROPY)):
        a = R.activate(z, act)
        same(P.output_delta, K.output_delta, (z, a, Y, act, cost, empty), [R.output_delta(z, a, Y, act, cost)],
             [f"output_delta Y {act} {cost}"])
    y = rng.integers(0, n_out, n_samples)
    for act in (SIGMOID, SOFTMAX):
        a = R.activate(z, act)
        for cost in (QUADRATIC, CROSS_ENTROPY):
            same(P.output_delta, K.output_delta, (z, a, y, act, cost, empty), [R.output_delta(z, a, y, act, cost)],
                 [f"output_delta {act} {cost}"])
    z_hidden = rng.standard_normal((n_samples, n_in)).astype(dtype)
    delta_next = rng.standard_normal((n_samples, n_out)).astype(dtype)
    in_phases = lambda *args: hidden_delta_in_phases(*args, K.hidden_delta)  # noqa: E731
    for act in (SIGMOID, TANH, RELU, IDENTITY):
        a_hidden = R.activate(z_hidden, act)
        same(P.hidden_delta, in_phases, (W, delta_next, z_hidden, a_hidden, act, np.empty_like(z_hidden)),
             [R.hidden_delta(W, delta_next, z_hidden, a_hidden, act)], [f"hidden_delta {act}"])
    for l2_over_n in (0.0, 0.37):
        same(P.weight_gradient, K.weight_gradient, (delta_next, a_prev, W, l2_over_n, np.empty_like(W), np.empty_like(b)),
             R.weight_gradient(delta_next, a_prev, W, l2_over_n), ["weight_gradient W", "weight_gradient b"])
    grad_W, grad_b = R.weight_gradient(delta_next, a_prev, W, 0.37)
    W_step, b_step = W.copy(), b.copy()
    R.sgd_update(W_step, b_step, grad_W, grad_b, 0.3)
    # the SGD step: weight_gradient then sgd_step, against the fused kernel gradient_step
    W_loops, b_loops, W_fast, b_fast = W.copy(), b.copy(), W.copy(), b.copy()
    g_W, g_b = np.empty_like(W), np.empty_like(b)
    P.weight_gradient(delta_next, a_prev, W_loops, 0.37, g_W, g_b)
    P.sgd_step(g_W, g_b, 0.3, W_loops, b_loops)
    K.gradient_step(delta_next, a_prev, 0.3, 0.37, W_fast, b_fast)
    for got, fast, want, name in ((W_loops, W_fast, W_step, "sgd_step W"), (b_loops, b_fast, b_step, "sgd_step b")):
        close_enough(got, want, dtype, f"{name} (loop vs NumPy) {shape}")
        close_enough(got, fast, dtype, f"{name} (loop vs kernel) {shape}")
        assert got.dtype == dtype


def check_all(shapes, seed=0, loops=True):
    """Every kernel variant (and, with `loops`, every plain loop) on each of `shapes`."""
    rng = np.random.default_rng(seed)
    for dtype, variant in VARIANTS:
        for n_samples, n_in, n_out in shapes:
            check_layer(rng, dtype, n_samples, n_in, n_out, variant)
    for dtype in (np.float32, np.float64) if loops else ():
        for n_samples, n_in, n_out in shapes:
            check_loops(rng, dtype, n_samples, n_in, n_out)


def in_a_new_process(code):
    """What `code` writes to stdout as one pickle, run by a new Python process in tests/ (so it
    loads the compiled kernels from the disk cache: fresh against cached)."""
    result = subprocess.run([sys.executable, "-c", "import pickle, sys\n" + code], cwd=Path(__file__).parent,
                            capture_output=True, timeout=600)
    assert result.returncode == 0, result.stderr.decode()
    return pickle.loads(result.stdout)
