"""Checking backpropagation against finite differences (the `nbnet gradcheck` command).

For every weight and bias p, the derivative of the cost is estimated numerically with a
fourth-order central difference

    dJ/dp ~ (J(p - 2h) - 8 J(p - h) + 8 J(p + h) - J(p + 2h)) / 12h

(error O(h^4), so h can be large enough that rounding in J does not swamp small entries),
and compared with Network.gradients by the relative error |g_a - g_n| / max(|g_a| + |g_n|, tiny).
Everything runs in float64.
"""

import numpy as np

from . import reference
from .network import Network

# How to read a relative error (after CS231n's notes on gradient checking).
VERDICTS = (
    (1e-7, "excellent: backpropagation and finite differences agree to rounding"),
    (1e-4, "acceptable only where the cost has kinks (relu at 0); suspicious otherwise"),
    (1e-2, "suspicious: probably a bug in a gradient"),
    (np.inf, "wrong: the gradient is not the derivative of the cost"),
)
PASS_BELOW = 1e-7
TINY = 1e-5  # far above the ~1e-13 rounding noise of the differences: two near-zero entries agree


def numerical_gradients(net, X, y, l2=0.0, n_train=None, h=1e-3):
    """(grads_W, grads_b) of net.cost(X, y, l2, n_train), by fourth-order central differences."""
    result = []
    for params in (net.weights, net.biases):
        grads = []
        for P in params:
            G = np.zeros(P.shape)
            for index in np.ndindex(P.shape):
                G[index] = central_difference(lambda: net.cost(X, y, l2, n_train), P, index, h)
            grads.append(G)
        result.append(grads)
    return result


def central_difference(cost, P, index, h):
    """(J(p - 2h) - 8 J(p - h) + 8 J(p + h) - J(p + 2h)) / 12h for the entry p = P[index], J = cost()
    evaluated with P[index] moved; P[index] is p again afterwards."""
    p = P[index]
    J = []
    for shift in (-2 * h, -h, h, 2 * h):
        P[index] = p + shift
        J.append(cost())
    P[index] = p
    return (J[0] - 8 * J[1] + 8 * J[2] - J[3]) / (12 * h)


def relative_error(analytic, numeric, tiny=TINY):
    """max over entries of |g_a - g_n| / max(|g_a| + |g_n|, tiny)."""
    return float(np.max(np.abs(analytic - numeric) / np.maximum(np.abs(analytic) + np.abs(numeric), tiny)))


def smooth_step(net, X, h=1e-3):
    """A step h so small that no perturbation moves a hidden z across relu's kink at 0
    (there the cost is not differentiable and finite differences mean nothing)."""
    if net.activation != "relu":
        return h
    zs, activations = reference.forward(net.weights, net.biases, net.acts, X)
    closest = min(np.abs(z).min() for z in zs[:-1])
    largest = max(1.0, np.abs(X).max(), *(np.abs(a).max() for a in activations))
    return min(h, 0.05 * closest / largest)


def verdict(error):
    return next(text for limit, text in VERDICTS if error < limit)


def gradient_check(sizes, activation="sigmoid", output="softmax", cost="cross-entropy", l2=0.0,
                   n_samples=7, seed=0):
    """[(parameter name, relative error)] for a random float64 network and random data.
    Biases are drawn N(0, 1) ("scaled" initialisation) so no relu unit is dead at the point
    checked: a dead unit's gradient is exactly 0, and only rounding noise would be compared."""
    rng = np.random.default_rng(seed)
    net = Network(sizes, activation=activation, output=output, cost=cost, dtype="float64", seed=seed, init="scaled")
    X = rng.standard_normal((n_samples, sizes[0]))
    y = rng.integers(0, sizes[-1], n_samples)
    n_train = 10 * n_samples
    analytic_W, analytic_b = net.gradients(X, y, l2, n_train)
    numeric_W, numeric_b = numerical_gradients(net, X, y, l2, n_train, smooth_step(net, X))
    rows = [(f"W{m}", relative_error(a, n)) for m, (a, n) in enumerate(zip(analytic_W, numeric_W), 1)]
    rows += [(f"b{m}", relative_error(a, n)) for m, (a, n) in enumerate(zip(analytic_b, numeric_b), 1)]
    return rows
