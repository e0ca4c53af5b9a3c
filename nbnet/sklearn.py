"""nbnet as a scikit-learn estimator: `MLPClassifier`, with scikit-learn's parameter names and
meanings where the idea is the same, trained by nbnet's compiled loops.

    from nbnet.sklearn import MLPClassifier
    model = MLPClassifier(hidden_layer_sizes=(100,), max_iter=20).fit(X_train, y_train)
    model.score(X_test, y_test)

It needs scikit-learn (`pip install nbnet[sklearn]`). What differs from
sklearn.neural_network.MLPClassifier:

* solvers: 'sgd' (with momentum, Nesterov's by default, as scikit-learn's) and 'adam'; no
  'lbfgs'. Activations 'logistic', 'tanh', 'relu'; no 'identity'. The learning rate is
  constant (scikit-learn's learning_rate='constant').
* The output layer is a softmax with one unit per class, two classes included (scikit-learn
  uses one logistic unit for two classes); the loss is the same cross-entropy.
* nbnet's own parameters: `dtype` (float32 by default: twice the speed of float64), `dropout`,
  `output` and `cost` (another output layer and loss), `threads` (the number of threads of
  the compiled loops during fit and predict; default all cores), `kernels` ('fast', or
  'loops': fit through the plain textbook loop of each equation, nbnet/loops.py, as
  `nbnet train --kernels loops`).

`alpha` has scikit-learn's meaning: the L2 term of a minibatch of B samples is
alpha / (2 B) ||W||^2, which is nbnet's lambda / (2 n) ||W||^2 with lambda = alpha n / B.
`loss_curve_` is, as scikit-learn's, the mean over each epoch's minibatches of their loss,
each measured just before its own step (nbnet's --train-metrics running): fit never passes
over the whole training set only to report it.
"""

import warnings

import numba
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .data import Split
from .options import TrainConfig
from .train import RunState, train

ACTIVATIONS = {"logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}


class _Stop(Exception):
    """Raised by the epoch callback of fit when scikit-learn's stopping rule says so."""


class MLPClassifier(ClassifierMixin, BaseEstimator):
    """A multi-layer perceptron classifier trained by nbnet (see the module docstring)."""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate_init=0.001, max_iter=200, shuffle=True, random_state=None,
                 tol=1e-4, verbose=False, warm_start=False, momentum=0.9, nesterovs_momentum=True,
                 early_stopping=False, validation_fraction=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 n_iter_no_change=10, dtype="float32", dropout=0.0, output="softmax", cost="cross-entropy",
                 threads=None, kernels="fast"):
        self.hidden_layer_sizes, self.activation, self.solver = hidden_layer_sizes, activation, solver
        self.alpha, self.batch_size, self.learning_rate_init = alpha, batch_size, learning_rate_init
        self.max_iter, self.shuffle, self.random_state, self.tol = max_iter, shuffle, random_state, tol
        self.verbose, self.warm_start = verbose, warm_start
        self.momentum, self.nesterovs_momentum = momentum, nesterovs_momentum
        self.early_stopping, self.validation_fraction = early_stopping, validation_fraction
        self.beta_1, self.beta_2, self.epsilon, self.n_iter_no_change = beta_1, beta_2, epsilon, n_iter_no_change
        self.dtype, self.dropout, self.output, self.cost, self.threads = dtype, dropout, output, cost, threads
        self.kernels = kernels

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y):
        """Train from scratch (or, with warm_start, from the current weights) for up to
        max_iter epochs, stopping early as scikit-learn does (see tol, n_iter_no_change)."""
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X, y, classes=None):
        """One epoch over (X, y). `classes` (every label of every call) is needed on the first call."""
        if self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        first = not hasattr(self, "classes_")
        if first and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit")
        return self._fit(X, y, incremental=True, classes=classes if first else None)

    def _fit(self, X, y, incremental, classes=None):
        self._check_parameters()
        fitted = hasattr(self, "_network")
        reset = not (incremental and fitted) and not (self.warm_start and fitted)
        X, y = validate_data(self, X, y, reset=reset, dtype=(np.float64, np.float32))
        check_classification_targets(y)
        if reset:
            self.classes_ = np.unique(y if classes is None else np.concatenate([np.unique(y), np.asarray(classes)]))
            if len(self.classes_) < 2:
                raise ValueError(f"the training data hold only one class ({self.classes_[0]!r}); need 2 or more")
        unknown = np.setdiff1d(np.unique(y), self.classes_)
        if len(unknown):
            raise ValueError(f"y holds labels not in classes_: {unknown.tolist()}")
        labels = np.searchsorted(self.classes_, y)
        X_val = y_val = None
        if self.early_stopping and not incremental:
            X, X_val, labels, y_val = train_test_split(X, labels, test_size=self.validation_fraction,
                                                       random_state=self._seed(), stratify=labels)
        config = self._config(len(X), self._batch(len(X)), 1 if incremental else self.max_iter)
        if reset:
            self._start(config, X.shape[1])
        with _threads(self.threads):
            self._epochs(X, labels, X_val, y_val, config, incremental)
        return self

    def _start(self, config, n_features):
        """A new network and run state, and empty curves."""
        self._network = config.network(n_features, len(self.classes_))
        self._state = RunState.start(config)
        self.loss_curve_, self.n_iter_, self.t_ = [], 0, 0
        self.best_loss_ = np.inf
        self.validation_scores_ = [] if self.early_stopping else None
        self.best_validation_score_ = -np.inf if self.early_stopping else None
        self._no_improvement_count = 0
        self._expose()

    def _epochs(self, X, labels, X_val, y_val, config, incremental):
        """Run epochs through nbnet.train, applying scikit-learn's stopping rule after each."""
        net, state = self._network, self._state
        state.first_epoch = self.n_iter_ + 1
        best_weights = None

        def after_epoch(metrics):
            nonlocal best_weights
            self.n_iter_ = metrics.epoch
            self.t_ += len(X)
            self.loss_ = float(metrics.train_cost)
            self.loss_curve_.append(self.loss_)
            if self.verbose:
                print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
            if incremental:
                return
            if X_val is not None:
                score = float(np.mean(self._network.predict(X_val) == y_val))
                self.validation_scores_.append(score)
                improved = score > self.best_validation_score_ + self.tol
                if score > self.best_validation_score_:
                    self.best_validation_score_ = score
                    best_weights = [P.copy() for P in net.weights + net.biases]
            else:
                improved = self.loss_ < self.best_loss_ - self.tol
                self.best_loss_ = min(self.best_loss_, self.loss_)
            self._no_improvement_count = 0 if improved else self._no_improvement_count + 1
            if self._no_improvement_count > self.n_iter_no_change:
                raise _Stop

        try:
            train(net, Split(X, labels, None, None), config.but(epochs=self.n_iter_ + config.epochs),
                  on_epoch=after_epoch, state=state)
            if not incremental:
                warnings.warn(f"Stochastic optimizer: maximum iterations ({self.max_iter}) reached and the "
                              f"optimization hasn't converged yet.", ConvergenceWarning)
        except _Stop:
            if self.verbose:
                what = "Validation score" if X_val is not None else "Training loss"
                print(f"{what} did not improve more than tol={self.tol} for {self.n_iter_no_change} consecutive "
                      f"epochs. Stopping.")
        if best_weights is not None:  # early stopping keeps the weights of the best validation score
            for P, best in zip(net.weights + net.biases, best_weights):
                P[...] = best
        self._no_improvement_count = 0

    # ------------------------------------------------------------------ prediction
    def predict_proba(self, X):
        """Class probabilities, one column per entry of classes_."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        with _threads(self.threads):
            p = self._network.forward(X).astype(np.float64)
        return p / p.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X):
        return np.log(self.predict_proba(X))

    def predict(self, X):
        """The most probable class of each sample."""
        probabilities = self.predict_proba(X)  # (checks first that the model is fitted)
        return self.classes_[np.argmax(probabilities, axis=1)]

    def plot_first_layer(self, path, image_shape=None):
        """Write a PNG of what the first layer learned: one tile per hidden unit, its weights
        shaped as the input image (`image_shape`; default: square, as 784 -> 28 x 28)."""
        check_is_fitted(self)
        from .plots import plot_first_layer

        side = int(round(np.sqrt(self.n_features_in_)))
        if image_shape is None and side * side != self.n_features_in_:
            raise ValueError(f"{self.n_features_in_} features are not a square image; pass image_shape")
        return plot_first_layer(self._network.weights[0], image_shape or (side, side), path,
                                f"{self.n_features_in_}-{'-'.join(map(str, self._network.sizes[1:]))}")

    # ------------------------------------------------------------------ plumbing
    def _config(self, n_samples, batch, epochs):
        """The TrainConfig that says the same as these parameters."""
        optimizer = "adam" if self.solver == "adam" else (
            "sgd" if self.momentum == 0 else "nesterov" if self.nesterovs_momentum else "momentum")
        return TrainConfig(hidden=tuple(int(n) for n in self._hidden()), activation=ACTIVATIONS[self.activation],
                           output=self.output, cost=self.cost, epochs=epochs, batch_size=batch,
                           lr=self.learning_rate_init, l2=self.alpha * n_samples / batch, seed=self._seed(),
                           dtype=self.dtype, optimizer=optimizer, momentum=self.momentum or 0.9,
                           beta1=self.beta_1, beta2=self.beta_2, eps=self.epsilon, dropout=self.dropout,
                           shuffle=bool(self.shuffle), train_metrics="running", kernels=self.kernels)

    def _hidden(self):
        """hidden_layer_sizes as a sequence (scikit-learn accepts one int for one layer)."""
        return (self.hidden_layer_sizes,) if np.isscalar(self.hidden_layer_sizes) else self.hidden_layer_sizes

    def _batch(self, n_samples):
        if self.batch_size == "auto":
            return min(200, n_samples)
        if self.batch_size > n_samples:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped")
        return int(np.clip(self.batch_size, 1, n_samples))

    def _seed(self):
        """An int seed for nbnet from random_state (drawn once per estimator when it is None or a generator)."""
        if isinstance(self.random_state, (int, np.integer)):
            return int(self.random_state)
        if not hasattr(self, "_drawn_seed"):
            self._drawn_seed = int(check_random_state(self.random_state).randint(2 ** 31 - 1))
        return self._drawn_seed

    def _check_parameters(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation {self.activation!r} is not supported; choose one of {list(ACTIVATIONS)}")
        if self.solver not in ("sgd", "adam"):
            raise ValueError(f"solver {self.solver!r} is not supported; choose 'sgd' or 'adam'")
        sizes = self._hidden()
        if len(sizes) == 0 or any(int(n) < 1 for n in sizes):
            raise ValueError(f"hidden_layer_sizes must be positive, got {self.hidden_layer_sizes}")
        if self.max_iter < 1:
            raise ValueError(f"max_iter must be >= 1, got {self.max_iter}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must lie in [0, 1), got {self.momentum}")
        if self.early_stopping and not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must lie in (0, 1), got {self.validation_fraction}")
        if self.batch_size != "auto" and (not isinstance(self.batch_size, (int, np.integer)) or self.batch_size < 1):
            raise ValueError(f"batch_size must be 'auto' or a positive int, got {self.batch_size!r}")

    def _expose(self):
        """coefs_ and intercepts_ as views of the network's arrays, in scikit-learn's (n_in, n_out)
        orientation: changing one changes the network."""
        net = self._network
        self.coefs_ = [W.T for W in net.weights]
        self.intercepts_ = list(net.biases)
        self.n_layers_ = len(net.sizes)
        self.n_outputs_ = net.sizes[-1]
        self.out_activation_ = net.output

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("coefs_", None), state.pop("intercepts_", None)  # views: rebuilt after unpickling
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if hasattr(self, "_network"):
            self._expose()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        return tags


class _threads:
    """Run a block with `threads` Numba threads (None: leave the count as it is)."""

    def __init__(self, threads):
        self.threads, self.before = threads, None

    def __enter__(self):
        if self.threads is not None:
            self.before = numba.get_num_threads()
            numba.set_num_threads(min(int(self.threads), numba.config.NUMBA_NUM_THREADS))

    def __exit__(self, *exc):
        if self.before is not None:
            numba.set_num_threads(self.before)
