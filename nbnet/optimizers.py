"""Optimisers: plain SGD (the fused gradient_step kernel), and momentum, Nesterov momentum,
RMSprop and Adam (kernels.optimizer_step), with their state kept per parameter array.

L2 regularisation stays on the weights only. By default it is added to the gradient,
dJ/dW + (lambda/n) W, for every optimiser (for Adam that is "Adam with L2"); with
decoupled=True the weights are shrunk directly, W -= alpha (lambda/n) W, outside the
adaptive scaling (AdamW, Loshchilov & Hutter 2019).
"""

import numpy as np

from . import kernels, narrow, passes
from .aligned import aligned, empty, zeros
from .codes import ADAM, MOMENTUM, NESTEROV, RMSPROP, SGD

OPTIMIZERS = {"sgd": SGD, "momentum": MOMENTUM, "nesterov": NESTEROV, "rmsprop": RMSPROP, "adam": ADAM}
KERNELS = ("fast", "loops")
NOT_TRACKED = np.zeros((0, 0))  # gradient_sums when gradients are not tracked: kernels.optimizer_steps sums nothing


class Optimizer:
    """An optimiser with its hyperparameters and, once attached to a network, its state."""

    def __init__(self, name="sgd", momentum=0.9, beta1=0.9, beta2=0.999, rho=0.9, eps=1e-8, decoupled=False,
                 track_gradients=False, kernels="fast"):
        if name not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}")
        for what, value in (("momentum", momentum), ("beta1", beta1), ("beta2", beta2), ("rho", rho)):
            if not 0 <= value < 1:
                raise ValueError(f"{what} must lie in [0, 1), got {value}")
        if not eps > 0:
            raise ValueError(f"eps must be positive, got {eps}")
        self.name, self.code = name, OPTIMIZERS[name]
        self.momentum, self.beta1, self.beta2, self.rho, self.eps = momentum, beta1, beta2, rho, eps
        self.decoupled = decoupled
        if kernels not in KERNELS:
            raise ValueError(f"unknown kernels {kernels!r}; choose one of: {', '.join(KERNELS)}")
        self.kernels = kernels  # "fast": nbnet.kernels; "loops": the plain loops of nbnet.loops
        self.track_gradients = track_gradients  # then gradient_sums / tracked_steps = mean |dJ/dW^m|, |dJ/db^m|
        self.gradient_sums, self.tracked_steps = None, 0
        self.step = 0
        self.state = None  # [s1_W, s1_b, s2_W, s2_b], each a list of arrays shaped like the parameters
        # nbnet.narrow's passes (True) or nbnet.kernels' (False); None: as passes.narrow_pays says for the network
        self.narrow = None
        self._workspace_key = self._workspace_buffers = None

    def attach(self, net):
        """Zero state for `net` (unless state for it was loaded from a checkpoint); plain SGD
        keeps arrays too, unused, so that every optimiser runs through the same kernels."""
        shapes = [P.shape for P in net.weights + net.biases] * 2
        if self.state is None or [a.shape for arrays in self.state for a in arrays] != shapes:
            self.state = [[zeros(P.shape, P.dtype) for P in params]
                          for params in (net.weights, net.biases, net.weights, net.biases)]
        return self

    def settings(self, lr, l2_over_n, dtype):
        """(alpha, h1, h2, eps, decay) for kernels.optimizer_step, scalars of `dtype`: the
        learning rate; h1 = momentum's mu or Adam's b1; h2 = RMSprop's rho or Adam's b2; eps;
        decay = lambda/n when weight decay is decoupled, else 0. A plain tuple, not a
        namedtuple: Numba pickles a signature's classes into its cache index, and an index
        naming a class that a later nbnet renamed could not be read at all."""
        h1 = self.beta1 if self.name == "adam" else self.momentum
        h2 = self.beta2 if self.name == "adam" else self.rho
        decay = l2_over_n if self.decoupled else 0.0
        return tuple(np.dtype(dtype).type(value) for value in (lr, h1, h2, self.eps, decay))

    def _count_gradients(self, net):
        """Zero gradient_sums, one column per layer of `net`, unless the sums have begun."""
        if self.gradient_sums is None:
            self.gradient_sums = np.zeros((2, len(net.weights)))

    def take_gradient_means(self):
        """(mean |dJ/dW^m| per layer, mean |dJ/db^m| per layer) over the steps since the last call."""
        means = self.gradient_sums / max(1, self.tracked_steps)
        self.gradient_sums[:] = 0.0
        self.tracked_steps = 0
        return list(means[0]), list(means[1])

    def run(self, net, X, y, order, batch_size, first, stop, lr, l2_over_n, keep=1.0, seed=0, parallel=None,
            totals=None, run_batch_size=None):
        """Batches first..stop-1 of `order` (all of batch_size samples), with dropout when
        keep < 1 (masks from `seed`). Plain SGD takes the fused path unless gradients are
        tracked (which needs them whole). `parallel` picks the drivers' variant (default: by
        passes.parallel_pays); each minibatch's cost sum and correct count are added to
        totals[0] and totals[1] when `totals` is given. run_batch_size: the batch size of the run
        when this is its short last batch (nbnet.narrow cuts it into the run's chunks)."""
        if self.kernels == "loops":
            from . import loops  # (imported, and so compiled, only when asked for)

            self._count_gradients(net)
            loops.train_batches(net, self, X, y, order, batch_size, first, stop, lr, l2_over_n, keep, seed, totals)
            self.tracked_steps += stop - first
            return
        driver, args = self.compiled_call(net, X, y, order, batch_size, first, stop, lr, l2_over_n, keep, seed,
                                          parallel, totals, run_batch_size)
        steps = driver(*args)
        if not self.fused:
            self.step = int(steps)
            self.tracked_steps += stop - first

    @property
    def fused(self):
        """True when the steps take the fused path (kernels.train_batches: plain SGD whose
        gradients are not tracked), else kernels.train_batches_with or narrow.train_batches."""
        return self.name == "sgd" and not self.track_gradients and not self.narrow

    def takes_narrow_steps(self, net, dropout, batch_size):
        """Whether run() trains `net` through nbnet.narrow (passes.narrow_pays for the network and
        the batch size, and nothing asks for what only nbnet.kernels' steps do: dropout, tracked
        gradients, the plain loops); sets self.narrow so."""
        self.narrow = passes.narrow_steps(net.weights, batch_size, dropout, self.track_gradients, self.kernels)
        return self.narrow

    def compiled_call(self, net, X, y, order, batch_size, first, stop, lr, l2_over_n, keep=1.0, seed=0, parallel=None,
                      totals=None, run_batch_size=None):
        """(driver, arguments) of `run`'s compiled call (nbnet.kernels): train_batches when
        `fused`, else train_batches_with, in the variant `parallel` picks."""
        weights, biases = tuple(net.weights), tuple(net.biases)
        self._count_gradients(net)
        if self.narrow is None:
            self.takes_narrow_steps(net, keep < 1.0, run_batch_size or batch_size)
        totals = np.zeros(0) if totals is None else totals  # (empty: not counted; see kernels.train_batches)
        if self.narrow:
            return self._narrow_call(net, X, y, order, batch_size, first, stop, lr, l2_over_n, parallel, totals,
                                     run_batch_size or batch_size)
        if parallel is None:
            parallel = passes.parallel_pays(weights, batch_size)
        buffers, masks, kept, x_chunks, y_chunks, J, correct = self._workspace(weights, X, y, batch_size, keep < 1.0)
        if self.fused:
            return passes.variant(kernels.train_batches, parallel), (
                weights, biases, net.acts, net.cost_function.code, X, y, order, batch_size, first, stop, float(lr),
                float(l2_over_n), float(keep), int(seed), buffers, x_chunks, y_chunks, masks, kept, J, correct,
                totals)
        state = tuple(tuple(arrays) for arrays in self.attach(net).state)
        grads = (tuple(empty(W.shape, W.dtype) for W in weights), tuple(empty(b.shape, b.dtype) for b in biases))
        gradient_l2 = 0.0 if self.decoupled else l2_over_n
        return passes.variant(kernels.train_batches_with, parallel), (
            self.code, self.settings(lr, l2_over_n, net.dtype), self.step, weights, biases, state, net.acts,
            net.cost_function.code, X, y, order, batch_size, first, stop, float(gradient_l2),
            self.gradient_sums if self.track_gradients else NOT_TRACKED,
            float(keep), int(seed), buffers, x_chunks, y_chunks, masks, kept, grads, J, correct, totals)

    def _narrow_call(self, net, X, y, order, batch_size, first, stop, lr, l2_over_n, parallel, totals, run_batch_size):
        """compiled_call's (driver, arguments) for nbnet.narrow's train_batches, in the variant
        `parallel` picks (None: as passes.narrow_parallel says)."""
        weights, biases = tuple(net.weights), tuple(net.biases)
        state = tuple(tuple(arrays) for arrays in self.attach(net).state)
        buffers, params, gradient = self.narrow_workspace(net, y, run_batch_size)
        threads = passes.narrow_parallel(weights, run_batch_size) if parallel is None else parallel
        gradient_l2 = 0.0 if self.decoupled else l2_over_n
        return passes.variant(narrow.train_batches, threads), (
            self.code, self.settings(lr, l2_over_n, net.dtype), self.step, weights, biases, state,
            passes.sizes_of(weights), net.acts, net.cost_function.code, X, y, order, batch_size, first, stop,
            float(gradient_l2), buffers, params, gradient, totals)

    def narrow_workspace(self, net, y, batch_size):
        """(buffers, params, gradient) of nbnet.narrow's steps for minibatches of batch_size samples
        (a short last batch uses its run's), kept while the shapes stay the same."""
        weights = net.weights
        key = ("narrow", tuple(W.shape for W in weights), y.shape[1:], y.dtype, batch_size)
        if self._workspace_key != key:
            self._workspace_key = key
            n_params = sum(W.size + b.size for W, b in zip(weights, net.biases))
            self._workspace_buffers = (passes.narrow_buffers(weights, batch_size, y), empty(n_params, net.dtype),
                                       empty(n_params, net.dtype))
        return self._workspace_buffers

    def _workspace(self, weights, X, y, batch_size, dropout):
        """The buffers the compiled steps write into, kept from one call to the next while the
        shapes stay the same (an epoch calls `run` about 50 times, for its progress bar)."""
        key = (tuple(W.shape for W in weights), X.shape[1], X.dtype, y.shape[1:], y.dtype, batch_size, dropout)
        if self._workspace_key != key:
            self._workspace_key = key
            self._workspace_buffers = (*passes.step_buffers(weights, batch_size, dropout),
                                       *passes.chunk_buffers(X, y, batch_size), *passes.cost_buffers(batch_size, X.dtype))
        return self._workspace_buffers

    # ------------------------------------------------------------------ pickling (scikit-learn's estimator)
    def __getstate__(self):
        state = self.__dict__.copy()
        state["_workspace_key"] = state["_workspace_buffers"] = None  # scratch space: made again on first use
        return state

    def __setstate__(self, state):
        """Writeable arrays again (joblib may hand back read-only memory maps, which the kernels
        cannot update)."""
        self.__dict__.update(state)
        if self.gradient_sums is not None:
            self.gradient_sums = np.array(self.gradient_sums)
        if self.state is not None:
            self.state = [[aligned(array) for array in arrays] for arrays in self.state]

    # ------------------------------------------------------------------ checkpoints
    def state_arrays(self):
        """The state as named arrays for a model file (none for SGD)."""
        if self.state is None or self.name == "sgd":
            return {}
        return {f"optimizer_{kind}_{m}": array for kind, arrays in zip(("s1W", "s1b", "s2W", "s2b"), self.state)
                for m, array in enumerate(arrays, 1)}

    def load_state(self, arrays, net, step):
        """Restore state_arrays() saved beside `net`."""
        self.step = step
        if self.name == "sgd":
            return
        L = len(net.weights)
        self.state = [[aligned(arrays[f"optimizer_{kind}_{m}"], net.dtype) for m in range(1, L + 1)]
                      for kind in ("s1W", "s1b", "s2W", "s2b")]
