"""Activation functions by name: the codes the kernels use, and their NumPy forms.

    sigmoid  f(z) = 1 / (1 + e^-z)       f'(z) = a (1 - a)
    tanh     f(z) = tanh z               f'(z) = 1 - a^2
    relu     f(z) = max(z, 0)            f'(z) = 1 if z > 0 else 0
    identity f(z) = z                    f'(z) = 1             (linear layers; regression outputs)
    exp      f(z) = e^z                  f'(z) = a             (output layer only: Poisson regression)
    softmax  a_j = e^z_j / sum_i e^z_i   (output layer only; its Jacobian is used in costs)
"""

import numpy as np

from .codes import EXP, IDENTITY, RELU, SIGMOID, SOFTMAX, TANH

CODES = {"sigmoid": SIGMOID, "tanh": TANH, "relu": RELU, "softmax": SOFTMAX, "identity": IDENTITY, "exp": EXP}
NAMES = {code: name for name, code in CODES.items()}
HIDDEN = ("sigmoid", "tanh", "relu", "identity")
OUTPUT = ("sigmoid", "softmax", "identity", "exp")
NUMERIC_OUTPUTS = ("identity", "exp")  # the outputs that train on numeric targets (regression), not classes


def f(z, act):
    """a = f(z) for a whole (n_samples, n_neurons) array; softmax works on rows."""
    one = z.dtype.type(1)
    if act == SIGMOID:
        with np.errstate(over="ignore"):
            return one / (one + np.exp(-z))
    if act == TANH:
        return np.tanh(z)
    if act == RELU:
        return np.maximum(z, z.dtype.type(0))
    if act == IDENTITY:
        return z.copy()
    if act == EXP:
        with np.errstate(over="ignore"):
            return np.exp(z)
    if act == SOFTMAX:
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    raise ValueError(f"unknown activation code {act}")


def f_prime(z, a, act):
    """f'(z) element-wise for sigmoid, tanh, relu, identity and exp, given z and a = f(z)."""
    one = z.dtype.type(1)
    if act == SIGMOID:
        return a * (one - a)
    if act == TANH:
        return one - a * a
    if act == RELU:
        return (z > 0).astype(z.dtype)
    if act == IDENTITY:
        return np.ones_like(z)
    if act == EXP:
        return a
    raise ValueError(f"f' of activation code {act} is not element-wise")
