"""The integer codes the compiled kernels use for activations, costs and optimisers.

This module imports nothing, so plain-Python modules (activations, costs, optimizers, the
command line) can name these codes without importing, and so compiling, the kernels.
"""

SIGMOID, TANH, RELU, SOFTMAX, IDENTITY, EXP = 0, 1, 2, 3, 4, 5
QUADRATIC, CROSS_ENTROPY, POISSON = 0, 1, 2
SGD, MOMENTUM, NESTEROV, RMSPROP, ADAM = 0, 1, 2, 3, 4
