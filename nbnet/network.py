"""The Network: parameters, configuration, and the calls that run the compiled kernels."""

import numpy as np

from . import kernels, passes, pixels
from .activations import CODES, HIDDEN, OUTPUT
from .aligned import aligned, empty
from .costs import COSTS, OUTPUTS_OF
from .model_file import ModelError, read_model_file, write_model_file
from .scaling import Scaling

DTYPES = ("float32", "float64")

# Weight initialisations: (standard deviation of W^m given n_in, n_out; random N(0, 1) biases?)
INITS = {
    "large": (lambda n_in, n_out: 1.0, True),  # Nielsen's large_weight_initializer, N(0, 1)
    "scaled": (lambda n_in, n_out: 1 / np.sqrt(n_in), True),  # Nielsen's default, N(0, 1/n_in)
    "xavier": (lambda n_in, n_out: np.sqrt(2 / (n_in + n_out)), False),  # Glorot & Bengio 2010
    "he": (lambda n_in, n_out: np.sqrt(2 / n_in), False),  # He et al. 2015, for relu
}
DEFAULT_INIT = {"sigmoid": "scaled", "tanh": "scaled", "relu": "he", "identity": "scaled"}


class Network:
    """A fully connected network trained by backpropagation.

    sizes       neurons per layer, input first: [784, 100, 10]
    activation  hidden layers: "sigmoid", "tanh", "relu" or "identity"
    output      output layer: "sigmoid", "softmax", "identity" (regression) or "exp" (Poisson)
    cost        "cross-entropy" (sigmoid or softmax output), "quadratic" (any), "poisson" (exp)
    dtype       "float32" or "float64"
    seed        seeds the initial weights
    init        "large" W ~ N(0, 1), b ~ N(0, 1)         (Nielsen's first networks: saturates)
                "scaled" W ~ N(0, 1/n_in), b ~ N(0, 1)   (Nielsen's default; default for sigmoid, tanh)
                "xavier" W ~ N(0, 2/(n_in + n_out)), b = 0 (Glorot & Bengio)
                "he" W ~ N(0, 2/n_in), b = 0             (He et al.; default for relu)

    weights[m-1] is W^m with shape (n_out, n_in); biases[m-1] is b^m with shape (n_out,).
    scaling (nbnet.scaling.Scaling, or None): how inputs and numeric targets are standardised
    before they reach the network (a network trained on a table); saved with it.
    family ("narrow", "kernels" or None): the compiled passes it was trained with (nbnet.passes),
    which it then evaluates and predicts with, so that no second family is compiled for that;
    None (not trained yet): as passes.narrow_pays says. Saved with it.
    """

    def __init__(self, sizes, activation="sigmoid", output="softmax", cost="cross-entropy",
                 dtype="float32", seed=0, init=None):
        given = list(sizes)
        sizes = [int(n) for n in given]
        if len(sizes) < 2 or min(sizes) < 1 or sizes != given:  # (4.5 is not a size, nor truncated to 4)
            written = ", ".join(map(str, given))  # (NumPy integers as plain numbers)
            raise ValueError(f"sizes must list at least two positive whole layer sizes, got [{written}]")
        _check_choice("activation", activation, HIDDEN)
        _check_choice("output", output, OUTPUT)
        _check_choice("cost", cost, tuple(COSTS))
        if output not in OUTPUTS_OF[cost]:
            raise ValueError(f"the {cost} cost needs a {' or '.join(OUTPUTS_OF[cost])} output, got {output!r}")
        try:
            dtype_name = np.dtype(dtype).name
        except TypeError:
            dtype_name = str(dtype)
        _check_choice("dtype", dtype_name, DTYPES)
        self.sizes = sizes
        self.activation, self.output, self.cost_name = activation, output, cost
        self.dtype = np.dtype(dtype)
        self.init = init or DEFAULT_INIT[activation]
        _check_choice("init", self.init, tuple(INITS))
        rng = np.random.default_rng(seed)
        weight_std, biases_random = INITS[self.init]
        self.weights = [aligned(rng.standard_normal((n_out, n_in)) * weight_std(n_in, n_out), self.dtype)
                        for n_in, n_out in zip(sizes[:-1], sizes[1:])]
        self.biases = [aligned(rng.standard_normal(n_out) if biases_random else np.zeros(n_out), self.dtype)
                       for n_out in sizes[1:]]
        self.acts = np.array([CODES[activation]] * (len(sizes) - 2) + [CODES[output]], dtype=np.int64)
        self.cost_function = COSTS[cost]
        self.scaling = None
        self.family = None

    def save(self, path, history=(), inputs=None, checkpoint=None, state=None):
        """Write this network to `path` (.npz; see nbnet.model_file), with optional history rows,
        input description, checkpoint and named optimiser-state or best-epoch arrays."""
        metadata = dict(sizes=self.sizes, activation=self.activation, output=self.output, cost=self.cost_name,
                        dtype=self.dtype.name, init=self.init, inputs=inputs,
                        history=[row if isinstance(row, dict) else row.as_dict() for row in history],
                        checkpoint=checkpoint, scaling=self.scaling.as_dict() if self.scaling else None,
                        family=self.family)
        arrays = {f"W{m}": W for m, W in enumerate(self.weights, 1)}
        arrays.update({f"b{m}": b for m, b in enumerate(self.biases, 1)})
        return write_model_file(path, {**arrays, **(state or {})}, metadata)

    @classmethod
    def load(cls, path):
        """The network stored in `path` by `save` or `nbnet train --save`."""
        return cls.load_with_metadata(path)[0]

    @classmethod
    def load_with_metadata(cls, path):
        """(Network, metadata) from a model file; ModelError if it is not one or its arrays do
        not fit its metadata. Optimiser-state and best-epoch arrays, if any, are in
        metadata["state"]."""
        arrays, metadata = read_model_file(path)
        try:
            sizes = metadata["sizes"]
            if not (isinstance(sizes, list) and len(sizes) >= 2 and all(type(n) is int and n >= 1 for n in sizes)):
                raise ValueError(f"sizes {sizes!r} are not two or more positive integers")
            for m in range(1, len(sizes)):  # before the network is made: its arrays are that large
                if np.shape(arrays[f"W{m}"]) != (sizes[m], sizes[m - 1]):
                    raise ValueError(f"W{m} is {np.shape(arrays[f'W{m}'])}, but the sizes {sizes} need "
                                     f"{(sizes[m], sizes[m - 1])}")
            net = cls(metadata["sizes"], activation=metadata["activation"], output=metadata["output"],
                      cost=metadata["cost"], dtype=metadata["dtype"], init=metadata.get("init"))
            for m in range(1, len(net.sizes)):
                for name, array, like in ((f"W{m}", arrays[f"W{m}"], net.weights[m - 1]),
                                          (f"b{m}", arrays[f"b{m}"], net.biases[m - 1])):
                    if array.shape != like.shape or array.dtype != like.dtype:
                        raise ModelError(f"{path}: {name} is {array.dtype} {array.shape}, but the sizes {net.sizes} "
                                         f"and dtype {net.dtype.name} need {like.dtype} {like.shape}")
                    if not np.all(np.isfinite(array)):
                        raise ModelError(f"{path}: {name} holds NaN or infinite values")
                    like[...] = array
            if metadata.get("scaling"):  # (older files have none)
                net.scaling = Scaling.from_dict(metadata["scaling"], net.sizes[0], net.sizes[-1])
            net.family = metadata.get("family") if metadata.get("family") in ("narrow", "kernels") else None
        except (KeyError, TypeError, ValueError) as error:
            raise ModelError(f"{path}: incomplete or inconsistent model ({error})") from None
        metadata["state"] = {name: array for name, array in arrays.items() if name.startswith(("optimizer_", "best_"))}
        return net, metadata

    def flat_parameters(self):
        """One contiguous vector of every parameter, W^1..W^L (rows of W^m in order) then
        b^1..b^L, in the network's dtype; from now on the network's weights and biases are
        views of it, so writing the vector changes the network (full-batch solvers such as
        L-BFGS work on one vector: nbnet.lbfgs)."""
        theta = aligned(passes.flat(self.weights, self.biases), self.dtype)
        self.weights, self.biases = self.parameter_views(theta)
        return theta

    def parameter_views(self, theta):
        """(weights, biases): views of a flat vector laid out as flat_parameters lays it out."""
        return passes.parameter_views(theta, self.weights, self.biases)

    def parameters_finite(self):
        """False once any weight or bias is NaN or infinite (training has diverged)."""
        with np.errstate(over="ignore", invalid="ignore"):  # a sum of huge values may overflow: also a divergence
            return all(np.isfinite(np.sum(P)) for P in self.weights + self.biases)

    def __setstate__(self, state):
        """Unpickled (joblib may hand back read-only memory maps): aligned, writeable arrays again,
        so that predicting neither compiles the kernels anew for read-only arrays nor fails to train."""
        self.__dict__.update(state)
        self.__dict__.setdefault("scaling", None)  # (pickled before networks had one)
        self.__dict__.setdefault("family", None)
        self.weights = [aligned(W) for W in self.weights]
        self.biases = [aligned(b) for b in self.biases]
        self.acts = aligned(self.acts)

    def __repr__(self):
        return (f"Network({self.sizes}, activation={self.activation!r}, output={self.output!r}, "
                f"cost={self.cost_name!r}, dtype={self.dtype.name!r}, init={self.init!r})")

    # ------------------------------------------------------------------ inputs
    def as_inputs(self, X, keep_bytes=False):
        """X as a C-contiguous, aligned (nbnet.aligned) (n_samples, n_in) array of the network's
        dtype: X itself when it is one already. uint8 X are pixel bytes: the inputs are X / 255
        (nbnet.pixels); with keep_bytes they stay bytes, for the passes that scale them block
        by block (training and evaluation), at a quarter of the memory. A network with a
        scaling gets (X - mean) / std (nbnet.scaling)."""
        X = np.asarray(X)
        if X.ndim == 1 and X.shape[0] == self.sizes[0]:
            X = X[None, :]
        if X.ndim != 2 or X.shape[1] != self.sizes[0]:
            raise ValueError(f"inputs must have shape (n_samples, {self.sizes[0]}), got {X.shape}")
        if X.shape[0] == 0:
            raise ValueError("inputs hold no samples")
        if X.dtype == np.uint8:
            X = aligned(X)
            return X if keep_bytes else pixels.inputs(X, self.dtype)
        if not np.all(np.isfinite(X)):
            raise ValueError("inputs contain NaN or infinite values")
        return aligned(X if self.scaling is None else self.scaling.inputs(X, self.dtype), self.dtype)

    def as_labels(self, y, n_samples):
        """y as the kernels' targets (nbnet.costs.targets): int64 class ids 0..n_out-1, one per
        sample; or a target matrix in the network's dtype, one row of n_out targets per sample,
        optionally followed by a column of sample weights (positive; see nbnet.costs). A network
        whose scaling standardises targets gets them standardised (nbnet.scaling)."""
        y = np.asarray(y)
        n_out = self.sizes[-1]
        if y.ndim == 2 and y.shape[0] == n_samples and y.shape[1] in (n_out, n_out + 1):
            Y = aligned(y, self.dtype)
            if not np.all(np.isfinite(Y)):
                raise ValueError("targets contain NaN or infinite values")
            if y.shape[1] > n_out and not np.all(Y[:, n_out] >= 0):
                raise ValueError("sample weights must not be negative")
            if self.scaling is not None and self.scaling.target_mean is not None:
                Y = Y.copy() if Y is y else Y
                Y[:, :n_out] = self.scaling.targets(Y[:, :n_out], self.dtype)
            return Y
        if y.shape != (n_samples,) or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"labels must be {n_samples} integer class ids (or a target matrix of shape "
                             f"({n_samples}, {n_out})), got shape {y.shape} of {y.dtype}")
        if y.size and (y.min() < 0 or y.max() >= n_out):
            raise ValueError(f"labels must lie in 0..{n_out - 1}")
        y = np.ascontiguousarray(y, dtype=np.int64)
        return y if y.flags.writeable else y.copy()  # (read-only arrays: see nbnet.aligned)

    # ------------------------------------------------------------------ compiled passes
    def narrow_passes(self):
        """Whether evaluating and predicting run nbnet.narrow's passes: the family it was trained
        with, else as passes.narrow_pays says for its size."""
        return self.family == "narrow" if self.family else passes.narrow_pays(self.weights)

    def _parallel(self):
        """Whether a whole-data-set pass runs the drivers' parallel variant (nbnet.passes)."""
        return passes.evaluation_parallel(self.weights)

    def _forward(self, X):
        weights, biases = tuple(self.weights), tuple(self.biases)
        zs, activations = passes.layer_buffers(weights, X.shape[0]), passes.layer_buffers(weights, X.shape[0])
        passes.variant(kernels.forward, self._parallel())(weights, biases, self.acts, X, zs, activations)
        return weights, zs, activations

    def forward(self, X):
        """Output activations a^L, shape (n_samples, n_out) (for standardised targets, in the
        targets' units: nbnet.scaling)."""
        X = self.as_inputs(X)
        if self.narrow_passes():
            out = passes.narrow_forward(tuple(self.weights), tuple(self.biases), self.acts, X, self._parallel())
        else:
            out = self._forward(X)[2][-1]
        return out if self.scaling is None else self.scaling.outputs(out)

    @property
    def cost_factor(self):
        """What the network's costs and gradients are multiplied by to be in the targets' units:
        std_y^2 for standardised targets (nbnet.scaling), else 1."""
        return 1.0 if self.scaling is None else self.scaling.cost_factor

    def predict(self, X):
        """Class ids: the index of the largest output activation."""
        return np.argmax(self.forward(X), axis=1)

    def l2_penalty(self, l2, n_train):
        """(lambda / 2n) sum of all W^2 (biases are not penalised)."""
        return l2_penalty(self.weights, l2, n_train)

    def evaluate(self, X, y, l2=0.0, n_train=None):
        """(mean cost including the L2 term, accuracy), in one compiled pass over tiles of X
        (passes.evaluate: no activations of the whole data set are kept)."""
        X = self.as_inputs(X, keep_bytes=True)
        return self.evaluate_checked(X, self.as_labels(y, X.shape[0]), l2, n_train)

    def evaluate_checked(self, X, y, l2=0.0, n_train=None, narrow=None):
        """`evaluate` for inputs and labels already made by as_inputs and as_labels, without
        checking them again (train() evaluates the same arrays after every epoch; checking
        60,000 MNIST images for NaN took a quarter of each evaluation). `narrow`: whether through
        nbnet.narrow's passes (None: as narrow_passes says; a training run passes the family its
        steps use, so that it compiles one)."""
        narrow = self.narrow_passes() if narrow is None else narrow
        cost_sum, correct = passes.evaluate(tuple(self.weights), tuple(self.biases), self.acts, self.cost_function.code,
                                            X, y, self._parallel(), narrow)
        cost = cost_sum / X.shape[0] + self.l2_penalty(l2, n_train or X.shape[0])
        return cost * self.cost_factor, correct / X.shape[0]

    def cost(self, X, y, l2=0.0, n_train=None):
        """J_hat = mean_s J(x_s, y_s) + (lambda / 2n) sum W^2, with n = n_train or len(X) (times
        cost_factor)."""
        return self.evaluate(X, y, l2, n_train)[0]

    def accuracy(self, X, y):
        """Fraction of samples whose predicted class is y."""
        return self.evaluate(X, y)[1]

    def gradients(self, X, y, l2=0.0, n_train=None):
        """(grads_W, grads_b): the gradients of `cost(X, y, l2, n_train)`, shaped like weights/biases
        (backpropagation gives those of the cost of standardised targets: times cost_factor)."""
        X = self.as_inputs(X)
        y = self.as_labels(y, X.shape[0])
        l2_over_n = float(l2) / (n_train or X.shape[0])
        if self.narrow_passes():
            grads_W, grads_b = passes.narrow_gradients(tuple(self.weights), tuple(self.biases), self.acts,
                                                       self.cost_function.code, X, y, l2_over_n, self._parallel())[:2]
            return self._in_cost_units(grads_W, grads_b)
        weights, zs, activations = self._forward(X)
        deltas = passes.layer_buffers(weights, X.shape[0])
        grads_W = tuple(empty(W.shape, W.dtype) for W in self.weights)
        grads_b = tuple(empty(b.shape, b.dtype) for b in self.biases)
        passes.variant(kernels.backward, self._parallel())(
            weights, self.acts, self.cost_function.code, X, y, l2_over_n, zs, activations, deltas,
            passes.parts_buffers(weights, deltas), grads_W, grads_b, None, None)  # no dropout
        return self._in_cost_units(grads_W, grads_b)

    def _in_cost_units(self, grads_W, grads_b):
        """Gradients as lists, times cost_factor."""
        factor = self.cost_factor
        if factor == 1.0:
            return list(grads_W), list(grads_b)
        return [G * G.dtype.type(factor) for G in grads_W], [g * g.dtype.type(factor) for g in grads_b]


def l2_penalty(weights, l2, n_train):
    """(lambda / 2n) sum of every W^2 of `weights`, in float64 (biases are not penalised)."""
    if not l2:
        return 0.0
    return 0.5 * l2 / n_train * sum(float(np.sum(W.astype(np.float64) ** 2)) for W in weights)


def _check_choice(what, value, choices):
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; choose one of: {', '.join(choices)}")
