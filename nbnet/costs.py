"""Cost functions, after Nielsen's network2.py: each has `fn` (the cost) and `delta` (the
output error delta^L = dJ/dz^L), here in NumPy. The compiled delta is
`nbnet.kernels.output_delta`; nbnet.reference compares the two.

Costs are per sample; Network.cost takes the mean over samples and adds the L2 term.
`fn` works from z^L as well as a^L so that logarithms never see a rounded-off 0 or 1.

Targets come in two forms (see `targets`): class ids y (one per sample; the one-hot row e_y
is the target), or a target matrix Y of one row per sample, for regression, multi-label
and one-unit binary outputs; a target matrix may carry one more column, each sample's
weight w_s, and every cost and delta^L of sample s is then multiplied by w_s (weights of mean
1 make the mean cost the weighted mean sum_s w_s J_s / sum_s w_s).
"""

import numpy as np

from .activations import f_prime
from .codes import CROSS_ENTROPY, EXP, POISSON, QUADRATIC, SIGMOID, SOFTMAX


def one_hot(y, n_classes, dtype):
    """Rows e_{y[s]}: the target vectors for class ids y."""
    Y = np.zeros((len(y), n_classes), dtype=dtype)
    Y[np.arange(len(y)), y] = 1
    return Y


def targets(y, n_outputs, dtype):
    """(Y, w) for class ids or a target matrix y: the (n_samples, n_outputs) targets (one-hot
    rows for class ids) and the sample weights (None when y carries none)."""
    y = np.asarray(y)
    if y.ndim == 1:
        return one_hot(y, n_outputs, dtype), None
    weights = y[:, n_outputs] if y.shape[1] > n_outputs else None
    return y[:, :n_outputs].astype(dtype), weights


def correct(a, y):
    """1 where sample s is classified right, else 0: its largest output is y[s] (class ids), or
    every output rounds to its target (|a - Y| < 1/2: a target matrix)."""
    if np.ndim(y) == 1:
        return (np.argmax(a, axis=1) == y).astype(np.int64)
    return np.all(np.abs(a - y[:, :a.shape[1]]) < 0.5, axis=1).astype(np.int64)


class QuadraticCost:
    """J = 1/2 ||a^L - y||^2."""

    code = QUADRATIC
    name = "quadratic"

    @staticmethod
    def fn(z, a, Y, output):
        return 0.5 * np.sum((a - Y) ** 2, axis=1)

    @staticmethod
    def delta(z, a, Y, output):
        """delta^L = f'(z^L) * (a - y); for softmax, the Jacobian product a_j (e_j - e.a)."""
        e = a - Y
        if output == SOFTMAX:
            return a * (e - np.sum(e * a, axis=1, keepdims=True))
        return e * f_prime(z, a, output)


class CrossEntropyCost:
    """Softmax output: J = -sum_j y_j ln a_j (categorical).
    Sigmoid output: J = -sum_j [y_j ln a_j + (1 - y_j) ln(1 - a_j)] (binary, summed over outputs)."""

    code = CROSS_ENTROPY
    name = "cross-entropy"

    @staticmethod
    def fn(z, a, Y, output):
        if output == SOFTMAX:  # -ln softmax(z)_y = logsumexp(z) - z_y
            top = z.max(axis=1, keepdims=True)
            log_total = np.log(np.exp(z - top).sum(axis=1)) + top[:, 0]
            return log_total - np.sum(Y * z, axis=1)
        if output == SIGMOID:  # -y ln s(z) - (1 - y) ln(1 - s(z)) = softplus(z) - y z
            softplus = np.log1p(np.exp(-np.abs(z))) + np.maximum(z, 0)
            return np.sum(softplus - Y * z, axis=1)
        raise ValueError("cross-entropy needs a sigmoid or softmax output")

    @staticmethod
    def delta(z, a, Y, output):
        """delta^L = a - y: with its matching output the f'(z) factor cancels exactly."""
        return a - Y


class PoissonCost:
    """Exp output a = e^z (a Poisson mean): J = sum_j [a_j - y_j z_j + y_j ln y_j - y_j], half the
    Poisson deviance (scikit-learn's MLPRegressor(loss="poisson")); 0 ln 0 = 0."""

    code = POISSON
    name = "poisson"

    @staticmethod
    def fn(z, a, Y, output):
        if output != EXP:
            raise ValueError("the poisson cost needs an exp output")
        y_log_y = np.where(Y > 0, Y * np.log(np.where(Y > 0, Y, 1)), 0)
        return np.sum(a - Y * z + y_log_y - Y, axis=1)

    @staticmethod
    def delta(z, a, Y, output):
        """delta^L = a - y: dJ/da = 1 - y/a times f'(z) = a."""
        return a - Y


COSTS = {c.name: c for c in (QuadraticCost, CrossEntropyCost, PoissonCost)}
# The output layers each cost is defined for (Network refuses the other pairs).
OUTPUTS_OF = {"quadratic": ("sigmoid", "softmax", "identity", "exp"), "cross-entropy": ("sigmoid", "softmax"),
              "poisson": ("exp",)}
BY_CODE = {c.code: c for c in COSTS.values()}
