"""Network.gradients against central finite differences and against autograd."""

import itertools

import numpy as np
import pytest

from nbnet import Network
from nbnet.gradcheck import numerical_gradients, relative_error, smooth_step

COMBINATIONS = list(itertools.product(["sigmoid", "tanh", "relu"], ["sigmoid", "softmax"],
                                      ["quadratic", "cross-entropy"], [0.0, 2.5]))
SIZES = [5, 6, 4, 3]  # two hidden layers, so hidden_delta runs for a layer fed by another hidden layer


def problem(activation, output, cost, seed=0):
    rng = np.random.default_rng(seed)
    net = Network(SIZES, activation=activation, output=output, cost=cost, dtype="float64", seed=seed, init="scaled")
    X = rng.standard_normal((7, SIZES[0]))
    y = rng.integers(0, SIZES[-1], 7)
    return net, X, y


@pytest.mark.parametrize("activation,output,cost,l2", COMBINATIONS)
def test_gradients_match_finite_differences(activation, output, cost, l2):
    net, X, y = problem(activation, output, cost)
    n_train = 20
    analytic_W, analytic_b = net.gradients(X, y, l2, n_train)
    numeric_W, numeric_b = numerical_gradients(net, X, y, l2, n_train, smooth_step(net, X))
    for a, n in zip(analytic_W + analytic_b, numeric_W + numeric_b):
        assert relative_error(a, n) < 1e-7


@pytest.mark.parametrize("activation,output,cost", [("identity", "identity", "quadratic"), ("tanh", "exp", "poisson"),
                                                    ("relu", "sigmoid", "cross-entropy"), ("sigmoid", "softmax",
                                                                                          "cross-entropy")])
def test_gradients_of_target_matrices_and_sample_weights_match_finite_differences(activation, output, cost):
    """Regression, Poisson and multi-label outputs train on a target matrix, optionally with a last
    column of sample weights (nbnet.costs.targets): the gradients are those of the weighted cost."""
    net, X, _ = problem(activation, output, cost)
    rng = np.random.default_rng(1)
    Y = rng.random((7, SIZES[-1])) * (3 if cost == "poisson" else 1)
    if output == "softmax":
        Y /= Y.sum(axis=1, keepdims=True)
    for y in (Y, np.hstack([Y, rng.random((7, 1)) * 2])):
        analytic_W, analytic_b = net.gradients(X, y, 1.5, 20)
        numeric_W, numeric_b = numerical_gradients(net, X, y, 1.5, 20, smooth_step(net, X))
        for a, n in zip(analytic_W + analytic_b, numeric_W + numeric_b):
            assert relative_error(a, n) < 1e-7
    weighted = net.cost(X, np.hstack([Y, np.full((7, 1), 2.0)]))
    assert weighted == pytest.approx(2 * net.cost(X, Y), rel=1e-12)  # a weight scales its sample's cost


def test_gradient_check_fails_on_wrong_gradients():
    """The check itself can fail: a gradient off by 0.1% is caught."""
    net, X, y = problem("sigmoid", "softmax", "cross-entropy")
    analytic_W, _ = net.gradients(X, y)
    numeric_W, _ = numerical_gradients(net, X, y, 0.0, None)
    assert relative_error(analytic_W[0] * 1.001, numeric_W[0]) > 1e-7


def autograd_cost(weights, biases, X, Y, activation, output, cost, l2, n_train):
    """The same cost written independently in autograd.numpy."""
    import autograd.numpy as anp

    hidden = {"sigmoid": lambda z: 1 / (1 + anp.exp(-z)), "tanh": anp.tanh, "relu": lambda z: anp.maximum(z, 0)}
    a = X
    for m, (W, b) in enumerate(zip(weights, biases)):
        z = anp.dot(a, W.T) + b
        if m < len(weights) - 1:
            a = hidden[activation](z)
        elif output == "softmax":
            a = anp.exp(z) / anp.sum(anp.exp(z), axis=1, keepdims=True)
        else:
            a = 1 / (1 + anp.exp(-z))
    if cost == "quadratic":
        per_sample = 0.5 * anp.sum((a - Y) ** 2, axis=1)
    elif output == "softmax":
        per_sample = -anp.sum(Y * anp.log(a), axis=1)
    else:
        per_sample = -anp.sum(Y * anp.log(a) + (1 - Y) * anp.log(1 - a), axis=1)
    return anp.mean(per_sample) + l2 / (2 * n_train) * sum(anp.sum(W ** 2) for W in weights)


@pytest.mark.parametrize("activation,output,cost,l2", COMBINATIONS)
def test_gradients_match_autograd(activation, output, cost, l2):
    autograd = pytest.importorskip("autograd")
    net, X, y = problem(activation, output, cost, seed=3)
    Y = np.eye(SIZES[-1])[y]
    n_train = 50
    expected_W, expected_b = autograd.grad(autograd_cost, argnum=(0, 1))(
        net.weights, net.biases, X, Y, net.activation, net.output, net.cost_name, l2, n_train)
    analytic_W, analytic_b = net.gradients(X, y, l2, n_train)
    for got, want in zip(analytic_W + analytic_b, list(expected_W) + list(expected_b)):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    assert net.cost(X, y, l2, n_train) == pytest.approx(
        float(autograd_cost(net.weights, net.biases, X, Y, net.activation, net.output, net.cost_name, l2, n_train)),
        rel=1e-12)
