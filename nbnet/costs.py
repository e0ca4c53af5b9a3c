"""Cost functions, after Nielsen's network2.py: each has `fn` (the cost) and `delta` (the
output error delta^L = dJ/dz^L), here in NumPy. The compiled delta is
`nbnet.kernels.output_delta`; nbnet.reference compares the two.

Costs are per sample; Network.cost takes the mean over samples and adds the L2 term.
`fn` works from z^L as well as a^L so that logarithms never see a rounded-off 0 or 1.
"""

import numpy as np

from .activations import f_prime
from .codes import CROSS_ENTROPY, QUADRATIC, SIGMOID, SOFTMAX


def one_hot(y, n_classes, dtype):
    """Rows e_{y[s]}: the target vectors for class ids y."""
    Y = np.zeros((len(y), n_classes), dtype=dtype)
    Y[np.arange(len(y)), y] = 1
    return Y


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


COSTS = {c.name: c for c in (QuadraticCost, CrossEntropyCost)}
BY_CODE = {c.code: c for c in COSTS.values()}
