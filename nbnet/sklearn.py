"""nbnet as scikit-learn estimators: `MLPClassifier` and `MLPRegressor`, drop-in replacements for
sklearn.neural_network's, trained by nbnet's compiled loops.

    from nbnet.sklearn import MLPClassifier, MLPRegressor
    model = MLPClassifier(hidden_layer_sizes=(100,), max_iter=20).fit(X_train, y_train)
    model.score(X_test, y_test)

They need scikit-learn (`pip install nbnet[sklearn]`; SciPy comes with it). Every parameter,
fitted attribute and behaviour of scikit-learn's estimators is there with the same meaning,
defaults, errors and warnings: the solvers 'adam', 'sgd' (with momentum, Nesterov's by default)
and 'lbfgs' (L-BFGS-B on nbnet's full-batch passes, compiled for narrow networks: nbnet.lbfgs);
the activations 'identity', 'logistic', 'tanh', 'relu'; learning_rate 'constant', 'invscaling' (with power_t)
and 'adaptive'; scikit-learn's initialisation (Glorot's uniform, drawn from random_state as
scikit-learn draws it); its output layers (softmax for several classes, one logistic unit for
two, one per label for multi-label y; identity, or exp for loss='poisson', in the regressor);
sparse X (densified once per fit or predict call), sample_weight, partial_fit, warm_start,
early stopping (a stratified split for two classes, as scikit-learn's), n_iter_no_change and tol
(inf included). Loss values (loss_, loss_curve_) are scikit-learn's.

Beyond scikit-learn's (docs/beyond-sklearn.md): MLPClassifier's class_weight; fit's X_val, y_val
and sample_weight_val (a validation set of one's own: validation_scores_ and
validation_loss_curve_ after every epoch, watched by early stopping); scikit-learn's callback
API (set_callbacks, nbnet.callbacks); ONNX export through skl2onnx (nbnet.onnx).

nbnet's own parameters, after scikit-learn's:
  dtype    None (default): the input's, float32 for float32 X and float64 otherwise, as
           scikit-learn; 'float32' trains in float32 whatever X is (twice the speed of float64).
  dropout  drop each hidden unit with this probability in every training step.
  threads  the number of threads of the compiled loops during fit and predict (default: all).
  kernels  'fast', or 'loops': fit through the plain textbook loop of each equation
           (nbnet/loops.py), as `nbnet train --kernels loops`.
  augment  True (Simard's strengths: nbnet.augment.Augmentation()) or an Augmentation: each
           epoch trains on freshly distorted copies of the images X holds (solvers 'sgd' and
           'adam'; seeded from random_state), as `nbnet train --augment`.
  image_shape  (height, width) of those images; default: square (64 inputs are 8x8).

What differs (the README lists the scikit-learn tests that show it):
* The minibatch order comes from nbnet's own generator (seeded from random_state), so the
  fitted weights are not scikit-learn's bit for bit, only as good.
* With sample_weight, a minibatch's gradient is sum_s w_s dJ_s / B with weights scaled to mean 1
  over the training set (scikit-learn divides by the batch's own weight sum); the full-batch
  loss of lbfgs is scikit-learn's exactly.
* Diverging stochastic fits stop at the first non-finite weight instead of running on with NaN.
"""

import numbers
import warnings

import numba
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import type_of_target, unique_labels
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from . import callbacks as _callbacks, lbfgs, stochastic
from .augment import Augmentation
from .data import Split
from .network import Network
from .optimizers import KERNELS
from .options import TrainConfig
from .schedules import ADAPTIVE_FACTOR, ADAPTIVE_FLOOR, learning_rate
from .train import DivergenceWarning, Diverged, RunState, train

ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
OUTPUTS = {"softmax": "softmax", "logistic": "sigmoid", "identity": "identity", "exp": "exp"}  # scikit-learn's: nbnet's
COSTS = {"softmax": "cross-entropy", "logistic": "cross-entropy", "identity": "quadratic", "exp": "poisson"}
SOLVERS = ("lbfgs", "sgd", "adam")
SLICES = 4  # compiled calls per epoch (nbnet.train): no progress bar to move, and 80 calls cost 20 % of a small fit
NON_FINITE = ("Solver produced non-finite parameter weights. The input data may contain large values and need to "
              "be preprocessed.")


class _Stop(Exception):
    """Raised by the epoch callback of a stochastic fit when scikit-learn's stopping rule says so."""


class _LearningRate:
    """The learning rate of a stochastic fit, as scikit-learn's optimizer keeps it (the estimator's
    `_optimizer`): 'invscaling' sets lr_init / (t + 1)^power_t after each epoch (t: samples seen);
    'adaptive' divides it by 5 each time the stopping rule fires, and stops below 1e-6."""

    def __init__(self, learning_rate_init, schedule="constant", power_t=0.5):
        self.learning_rate_init, self.lr_schedule, self.power_t = learning_rate_init, schedule, power_t
        self.learning_rate = float(learning_rate_init)

    def iteration_ends(self, time_step):
        if self.lr_schedule == "invscaling":  # (nbnet.schedules' invscaling, from the samples seen)
            self.learning_rate = learning_rate("invscaling", float(self.learning_rate_init), 0, 0,
                                               power_t=self.power_t, samples_seen=time_step)

    def trigger_stopping(self, msg, verbose):
        """True when training should stop (scikit-learn's rule: always, except 'adaptive' above 1e-6)."""
        if self.lr_schedule != "adaptive":
            if verbose:
                print(msg + " Stopping.")
            return True
        if self.learning_rate <= ADAPTIVE_FLOOR:
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self.learning_rate /= ADAPTIVE_FACTOR
        if verbose:
            print(msg + " Setting learning rate to %f" % self.learning_rate)
        return False


class _BaseMLP(_callbacks.CallbackSupportMixin, BaseEstimator):
    """What the classifier and the regressor share: parameters, the solvers, the stopping rule."""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5, max_iter=200,
                 shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-8, n_iter_no_change=10, max_fun=15000, dtype=None, dropout=0.0, threads=None,
                 kernels="fast", augment=False, image_shape=None):
        self.hidden_layer_sizes, self.activation = hidden_layer_sizes, activation
        self.solver, self.alpha = solver, alpha
        self.batch_size, self.learning_rate, self.learning_rate_init = batch_size, learning_rate, learning_rate_init
        self.power_t, self.max_iter, self.shuffle, self.random_state = power_t, max_iter, shuffle, random_state
        self.tol, self.verbose, self.warm_start = tol, verbose, warm_start
        self.momentum, self.nesterovs_momentum = momentum, nesterovs_momentum
        self.early_stopping, self.validation_fraction = early_stopping, validation_fraction
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon
        self.n_iter_no_change, self.max_fun = n_iter_no_change, max_fun
        self.dtype, self.dropout, self.threads, self.kernels = dtype, dropout, threads, kernels
        self.augment, self.image_shape = augment, image_shape

    # ------------------------------------------------------------------ fitting
    @_callbacks.with_callbacks
    def fit(self, X, y, sample_weight=None, *, X_val=None, y_val=None, sample_weight_val=None):
        """Fit the model to X and y (with warm_start, from the current weights).

        X_val, y_val (and sample_weight_val): a validation set of one's own (solvers 'sgd' and
        'adam'). Its score and loss are recorded after every epoch (validation_scores_,
        validation_loss_curve_), and early_stopping watches it instead of holding out
        validation_fraction of X."""
        if X_val is None and (y_val is not None or sample_weight_val is not None):
            raise ValueError("y_val and sample_weight_val need X_val")
        if X_val is not None and y_val is None:
            raise ValueError("X_val needs y_val")
        return self._fit(X, y, sample_weight, incremental=False,
                         validation=None if X_val is None else (X_val, y_val, sample_weight_val), callbacks=True)

    def _check_solver(self):
        if self.solver not in ("sgd", "adam"):
            raise AttributeError(f"partial_fit is only available for stochastic optimizers. {self.solver} is not "
                                 f"stochastic.")
        return True

    def _fit(self, X, y, sample_weight=None, incremental=False, validation=None, callbacks=False):
        self._check_parameters()
        given = (X, y, None if sample_weight is None else {"sample_weight": sample_weight})  # (what callbacks get)
        if validation is not None and self.solver == "lbfgs":
            raise ValueError("X_val is scored after every epoch of solver 'sgd' or 'adam'; 'lbfgs' has no epochs")
        hidden = [int(n) for n in self._hidden()]
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, Y, class_weights = self._validate_input(X, y, incremental, reset=first_pass)
        X = X.toarray() if hasattr(X, "toarray") else X  # sparse X: densified once (the kernels read rows)
        if sample_weight is not None:
            sample_weight = _checked_weights(sample_weight, X.shape[0])
        if class_weights is not None:  # (scikit-learn's class_weight: a factor of each sample's weight)
            sample_weight = class_weights if sample_weight is None else sample_weight * class_weights
        Y = Y.reshape(-1, 1) if Y.ndim == 1 else Y
        self.n_outputs_ = Y.shape[1]
        self._random_state = check_random_state(self.random_state)
        dtype = np.dtype(self.dtype or X.dtype)
        if first_pass:
            self._initialize(Y, [X.shape[1], *hidden, self.n_outputs_], dtype)
        else:
            self._sync_network(dtype)
        if validation is not None:
            validation = self._validation_set(*validation)
        context = _callbacks.fit_context(self, self.max_iter + 1, *given) if callbacks else None
        subtasks = None
        if context is not None and _callbacks.has_callbacks(self):
            subtasks = _callbacks.Subtasks(self, context, *given, "iteration" if self.solver == "lbfgs" else "epoch",
                                           self._snapshot)
        with _threads(self.threads), warnings.catch_warnings():
            warnings.simplefilter("ignore", DivergenceWarning)  # (scikit-learn's estimators have no such warning)
            if self.solver == "lbfgs":
                self._fit_lbfgs(X, Y, sample_weight, subtasks)
            else:
                self._fit_stochastic(X, Y, sample_weight, incremental, validation, subtasks)
        if subtasks is not None:
            subtasks.close()
        if context is not None:
            context.call_on_fit_task_end(estimator=self, X=given[0], y=given[1], metadata=given[2],
                                         reconstruction_attributes={})
        if not self._network.parameters_finite():
            raise ValueError(NON_FINITE)
        with _threads(self.threads):  # (loads the forward pass that predict runs: a script's first predict does not wait)
            self._network.forward(X[:1])
        return self

    def _validation_set(self, X_val, y_val, sample_weight_val):
        """(X_val, Y_val, labels, weights): a validation set of one's own checked as the training
        set is (Y_val as the network's outputs: binarized classes; labels as scikit-learn scores
        them), its class weights, if any, multiplied into its weights."""
        X_val = validate_data(self, X_val, accept_sparse=["csr", "csc"], reset=False, dtype=(np.float64, np.float32))
        X_val = X_val.toarray() if hasattr(X_val, "toarray") else X_val
        y_val = np.asarray(y_val)
        if len(y_val) != X_val.shape[0]:
            raise ValueError(f"X_val has {X_val.shape[0]} samples but y_val has {len(y_val)}")
        weights = None if sample_weight_val is None else _checked_weights(sample_weight_val, X_val.shape[0])
        if is_classifier(self):
            y_val = column_or_1d(y_val) if y_val.ndim == 2 and y_val.shape[1] == 1 else y_val
            unknown = np.setdiff1d(unique_labels(y_val), self.classes_) if y_val.ndim == 1 else []
            if len(unknown):
                raise ValueError(f"y_val has classes not in y: {unknown}")
            Y_val = self._binarizer().transform(y_val).astype(bool)
            class_weights = self._class_weights(y_val, incremental=False)
            if class_weights is not None:
                weights = class_weights if weights is None else weights * class_weights
        else:
            Y_val = np.asarray(y_val, dtype=np.float64)
        Y_val = Y_val.reshape(len(Y_val), -1)
        if Y_val.shape[1] != self.n_outputs_:
            raise ValueError(f"y_val has {Y_val.shape[1]} outputs but y has {self.n_outputs_}")
        labels = self._binarizer().inverse_transform(Y_val) if is_classifier(self) else Y_val
        return X_val, Y_val, labels, weights

    def _snapshot(self, parameters=None):
        """The reconstruction attributes of a callback's fitted estimator: the estimator as it stands
        (coefs_ and intercepts_ copied, or made from L-BFGS's flat `parameters`)."""
        net = self._network
        if parameters is None:
            coefs, intercepts = [c.copy() for c in self.coefs_], [b.copy() for b in self.intercepts_]
        else:
            weights, biases = net.parameter_views(np.asarray(parameters, dtype=net.dtype))
            coefs, intercepts = [W.T.copy() for W in weights], [b.copy() for b in biases]
        return {"coefs_": coefs, "intercepts_": intercepts, "n_iter_": self.n_iter_}

    def _initialize(self, Y, layer_units, dtype):
        """A new network with scikit-learn's initialisation (Glorot's uniform, drawn from the
        estimator's random_state as scikit-learn draws it) and fresh fitted attributes."""
        self.n_iter_, self.t_ = 0, 0
        self.out_activation_ = self._output_activation(Y)
        net = Network(layer_units, activation=ACTIVATIONS[self.activation], output=OUTPUTS[self.out_activation_],
                      cost=COSTS[self.out_activation_], dtype=dtype.name, init="xavier")
        factor = 2.0 if self.activation == "logistic" else 6.0
        for W, b in zip(net.weights, net.biases):
            n_out, n_in = W.shape
            bound = np.sqrt(factor / (n_in + n_out))
            W[...] = self._random_state.uniform(-bound, bound, (n_in, n_out)).T
            b[...] = self._random_state.uniform(-bound, bound, n_out)
        self._network = net
        if self.augment:  # (drawn only then: without augmentation the draws are scikit-learn's)
            self._augment_seed = int(self._random_state.randint(2 ** 31))
        self._expose()
        for name in ("_state", "_optimizer"):
            self.__dict__.pop(name, None)
        if self.solver != "lbfgs":
            self.loss_curve_, self._no_improvement_count = [], 0
            if self.early_stopping:
                self.validation_scores_, self.best_validation_score_, self.best_loss_ = [], -np.inf, None
            else:
                self.best_loss_, self.validation_scores_, self.best_validation_score_ = np.inf, None, None
            self.validation_loss_curve_ = [] if self.early_stopping else None

    def _sync_network(self, dtype):
        """The network behind coefs_ and intercepts_: the fitted one, or, when they were set by
        hand (scikit-learn lets users set them), one made from them."""
        net = getattr(self, "_network", None)
        if net is not None and all(np.shares_memory(coef, W) for coef, W in zip(self.coefs_, net.weights)) \
                and all(np.shares_memory(b0, b) for b0, b in zip(self.intercepts_, net.biases)):
            return
        coefs = [np.asarray(c) for c in self.coefs_]
        if coefs[0].dtype in (np.float32, np.float64):
            dtype = coefs[0].dtype
        sizes = [coefs[0].shape[0]] + [c.shape[1] for c in coefs]
        net = Network(sizes, activation=ACTIVATIONS[self.activation], output=OUTPUTS[self.out_activation_],
                      cost=COSTS[self.out_activation_], dtype=np.dtype(dtype).name)
        for W, b, coef, intercept in zip(net.weights, net.biases, coefs, self.intercepts_):
            W[...] = coef.T
            b[...] = np.reshape(intercept, b.shape)
        self._network = net
        self._expose()
        self.__dict__.pop("_state", None)

    def _targets(self, Y, sample_weight, dtype):
        """What the kernels train on: class ids for a softmax output without sample weights (the
        fast path), else the target matrix, with a column of weights (scaled to mean 1) if any."""
        if self.out_activation_ == "softmax" and sample_weight is None:
            return np.argmax(Y, axis=1).astype(np.int64)
        Y = np.asarray(Y, dtype=dtype)
        if sample_weight is None:
            return Y
        mean = sample_weight.mean()
        weights = sample_weight / mean if mean > 0 else sample_weight
        return np.hstack([Y, weights.astype(dtype)[:, None]])

    # ------------------------------------------------------------------ lbfgs
    def _fit_lbfgs(self, X, Y, sample_weight, subtasks=None):
        net = self._network
        X = net.as_inputs(X)
        y = net.as_labels(self._targets(Y, sample_weight, net.dtype), X.shape[0])
        n_train = X.shape[0] if sample_weight is None else sample_weight.sum()  # (scikit-learn's n of the L2 term)
        stopped = []

        def iteration_ended(theta):  # (callbacks: each iteration a subtask)
            done = subtasks.done + 1
            if subtasks.ended(lambda: dict(self._snapshot(theta), n_iter_=done)):
                stopped.append(done)
                raise StopIteration

        result = lbfgs.minimize(net, X, y, l2=self.alpha, n_train=n_train, max_iter=self.max_iter,
                                max_fun=self.max_fun, tol=self.tol, verbose=self.verbose is True or self.verbose >= 1,
                                callback=None if subtasks is None else iteration_ended)
        self._expose()  # (the weights are now views of the vector L-BFGS moved)
        self.n_iter_ = min(result.nit, self.max_iter)
        if result.status != 0 and not stopped:
            warnings.warn(f"lbfgs failed to converge after {self.n_iter_} iteration(s) (status={result.status}):\n"
                          f"{result.message}\n\nIncrease the number of iterations to improve the convergence "
                          f"(max_iter={self.max_iter}).\nYou might also want to scale the data as shown in:\n"
                          f"    https://scikit-learn.org/stable/modules/preprocessing.html", ConvergenceWarning,
                          stacklevel=3)
        self.loss_ = self._sklearn_loss(float(result.fun), net.l2_penalty(self.alpha, n_train))

    def _loss_grad_lbfgs(self, packed_coef_inter, X, y, sample_weight, activations, deltas, coef_grads,
                         intercept_grads):
        """scikit-learn's private objective of lbfgs, for code that calls it: (loss, gradient) at a
        vector packed as scikit-learn packs it (every coefs_ raveled, then every intercepts_),
        computed by nbnet's full-batch passes. The last four arguments are ignored."""
        net = self._network
        offset = 0
        for W in net.weights:
            W[...] = packed_coef_inter[offset:offset + W.size].reshape(W.shape[1], W.shape[0]).T
            offset += W.size
        for b in net.biases:
            b[...] = packed_coef_inter[offset:offset + b.size]
            offset += b.size
        X = net.as_inputs(X)
        Y = np.asarray(y).reshape(X.shape[0], -1)
        w = None if sample_weight is None else _checked_weights(sample_weight, X.shape[0])
        n_train = X.shape[0] if w is None else w.sum()
        problem = lbfgs.FullBatch(net, X, net.as_labels(self._targets(Y, w, net.dtype), X.shape[0]), self.alpha,
                                  n_train)
        loss, gradient = problem.objective(problem.theta)
        self._expose()
        grads_W, grads_b = net.parameter_views(gradient)
        packed = np.concatenate([G.T.ravel() for G in grads_W] + [g for g in grads_b])
        return self._sklearn_loss(loss, net.l2_penalty(self.alpha, n_train)), packed

    # ------------------------------------------------------------------ sgd, adam
    def _fit_stochastic(self, X, Y, sample_weight, incremental, validation=None, subtasks=None):
        net = self._network
        if not incremental or not hasattr(self, "_optimizer"):
            self._optimizer = _LearningRate(self.learning_rate_init,
                                            self.learning_rate if self.solver == "sgd" else "constant", self.power_t)
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        X_val = Y_val = y_val = w_val = None
        if validation is not None:  # one's own (fit's X_val): scored whether or not early stopping watches it
            X_val, Y_val, y_val, w_val = validation
            if self.validation_scores_ is None:
                self.validation_scores_ = []
            if getattr(self, "validation_loss_curve_", None) is None:
                self.validation_loss_curve_ = []
        elif self.early_stopping:
            stratify = Y if is_classifier(self) and self.n_outputs_ == 1 else None  # (scikit-learn's choice)
            arrays = (X, Y) if sample_weight is None else (X, Y, sample_weight)
            parts = train_test_split(*arrays, random_state=self._random_state, test_size=self.validation_fraction,
                                     stratify=stratify)
            X, X_val, Y, Y_val = parts[:4]
            sample_weight, w_val = (parts[4], parts[5]) if sample_weight is not None else (None, None)
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase 'validation_fraction' or the size of "
                                 "your dataset.")
            y_val = self._binarizer().inverse_transform(Y_val) if is_classifier(self) else Y_val
        n = X.shape[0]
        batch = self._batch(n)
        X = net.as_inputs(X)
        y = net.as_labels(self._targets(Y, sample_weight, net.dtype), n)
        config = self._config(n, batch, 1.0 if sample_weight is None else sample_weight.mean())
        if not incremental or not hasattr(self, "_state"):  # a new optimiser state per fit, as scikit-learn's
            self._state = RunState.start(config.but(seed=int(self._random_state.randint(np.iinfo(np.int32).max))))
        state = self._state
        state.learning_rate = self._optimizer.learning_rate
        self.n_iter_ = 0
        epochs = 1 if incremental else self.max_iter
        if stochastic.compiled_epochs_fit(net, config, self.dropout == 0):
            self._fit_compiled_epochs(X, y, (X_val, Y_val, y_val, w_val), config, state, epochs, incremental, subtasks)
            return
        best = None
        if X_val is not None:  # (its loss: the network's inputs and targets, made once)
            inputs_val = net.as_inputs(X_val)
            targets_val = net.as_labels(self._targets(Y_val, w_val, net.dtype), inputs_val.shape[0])

        def after_epoch(metrics):
            nonlocal best
            self.n_iter_ += 1
            self.t_ += n
            self.loss_ = self._sklearn_loss(float(metrics.train_cost), net.l2_penalty(config.l2, n))
            self.loss_curve_.append(self.loss_)
            if self.verbose:
                print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))
            score = None
            if X_val is not None:
                score = self._score(X_val, y_val, w_val)
                self.validation_scores_.append(score)
                cost = net.evaluate_checked(inputs_val, targets_val, config.l2, n)[0]
                self.validation_loss_curve_.append(self._sklearn_loss(cost, net.l2_penalty(config.l2, n)))
                if self.verbose:
                    print("Validation score: %f" % score)
            if self._update_no_improvement_count(score):
                best = [P.copy() for P in net.weights + net.biases]
            self._optimizer.iteration_ends(self.t_)
            if subtasks is not None and subtasks.ended():
                raise _Stop
            if self._no_improvement_count > self.n_iter_no_change:
                what = "Validation score" if self.early_stopping else "Training loss"
                msg = (f"{what} did not improve more than tol={self.tol:f} for {self.n_iter_no_change:d} "
                       f"consecutive epochs.")
                if self._optimizer.trigger_stopping(msg, self.verbose):
                    raise _Stop
                self._no_improvement_count = 0
            state.learning_rate = self._optimizer.learning_rate
            if incremental:
                raise _Stop
            if self.n_iter_ == self.max_iter:
                warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                              f"optimization hasn't converged yet.", ConvergenceWarning)

        try:
            train(net, Split(X, y, None, None, image_shape=self.image_shape),
                  config.but(epochs=state.first_epoch - 1 + epochs), on_epoch=after_epoch, state=state, slices=SLICES)
        except _Stop:
            pass
        except Diverged:  # scikit-learn runs on with NaN; nbnet stops at the first non-finite weight
            self._diverged(X_val is not None)
        if self.early_stopping and best is not None:  # keep the weights of the best validation score
            for P, kept in zip(net.weights + net.biases, best):
                P[...] = kept

    def _fit_compiled_epochs(self, X, y, validation_set, config, state, epochs, incremental, subtasks):
        """_fit_stochastic for a narrow network: its epochs in compiled code (nbnet.stochastic),
        the same weights as the epoch-by-epoch path below."""
        net = self._network
        net.family = "narrow"  # (it evaluates and predicts with the passes it trains with)
        X_val, Y_val, y_val, w_val = validation_set
        validation = None
        if X_val is not None:
            kind, targets = self._validation_targets(y_val)
            validation = stochastic.Validation(net, kind, X_val, targets, w_val, self._targets(Y_val, w_val, net.dtype))
        loss_outputs = self.n_outputs_ if self.out_activation_ == "identity" else 1  # (_sklearn_loss)
        schedule = (self._optimizer.lr_schedule, self._optimizer.learning_rate_init, self._optimizer.power_t)
        outcome = stochastic.fit(self, net, X, y, state, config, schedule, validation, epochs, incremental,
                                 bool(self.verbose), loss_outputs, early=self.early_stopping,
                                 after_epoch=None if subtasks is None else lambda epoch: subtasks.ended())
        if outcome.status == stochastic.DIVERGED:  # as the epoch-by-epoch path: nbnet stops at the first non-finite weight
            self._diverged(validation is not None)

    def _diverged(self, validating):
        """A diverged stochastic fit's attributes: scikit-learn runs on with NaN; nbnet stops at the
        first non-finite weight, with NaN as the last loss (and validation score and loss)."""
        self.loss_curve_.append(np.nan)
        if validating:
            self.validation_scores_.append(np.nan)
            self.validation_loss_curve_.append(np.nan)
        self.__dict__.pop("_state", None)

    def _validation_targets(self, y_val):
        """(score kind, targets) of nbnet.epochs' validation score for the held-out labels or targets."""
        if not is_classifier(self):
            return stochastic.R2, np.asarray(y_val, dtype=np.float64).reshape(len(y_val), -1)
        Y = self._binarizer().transform(y_val)
        if self.out_activation_ == "softmax":
            return stochastic.ACCURACY_IDS, np.argmax(Y, axis=1).astype(np.float64)[:, None]
        return stochastic.ACCURACY_LABELS, Y.astype(np.float64)

    def _update_no_improvement_count(self, score):
        """scikit-learn's rule, after each epoch, on the validation score (early stopping) or the
        training loss; True when the score is a new best."""
        if self.early_stopping:
            improved = not score < self.best_validation_score_ + self.tol  # (scikit-learn's test: NaN resets)
            self._no_improvement_count = 0 if improved else self._no_improvement_count + 1
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                return True
            return False
        last = self.loss_curve_[-1]
        self._no_improvement_count = self._no_improvement_count + 1 if last > self.best_loss_ - self.tol else 0
        self.best_loss_ = min(self.best_loss_, last)
        return False

    def _score(self, X, y, sample_weight=None):
        """The validation score of early stopping (NaN when the predictions are not finite)."""
        prediction = self._predict(X, check_input=False)  # (checked: it is part of the training data)
        if np.issubdtype(prediction.dtype, np.floating) and not np.isfinite(prediction).all():
            return np.nan
        return float((accuracy_score if is_classifier(self) else r2_score)(y, prediction, sample_weight=sample_weight))

    def _sklearn_loss(self, cost, l2_term):
        """nbnet's mean cost as scikit-learn reports it: its squared error is a mean over the
        outputs too (nbnet's quadratic cost sums them); every other loss is the same."""
        if self.out_activation_ == "identity" and self.n_outputs_ > 1:
            return (cost - l2_term) / self.n_outputs_ + l2_term
        return cost

    # ------------------------------------------------------------------ prediction
    def _forward(self, X, check_input=True):
        """The output activations a^L of X (scikit-learn's checks first, unless X is known good)."""
        check_is_fitted(self)
        if check_input:
            X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False, dtype=(np.float64, np.float32))
            X = X.toarray() if hasattr(X, "toarray") else X
        self._sync_network(self._network.dtype)
        with _threads(self.threads):
            return self._network.forward(X).copy()

    # ------------------------------------------------------------------ plumbing
    def _config(self, n_samples, batch, mean_weight=1.0):
        """The TrainConfig that says the same as these parameters (alpha is scikit-learn's: the
        L2 term of a minibatch of B samples is alpha / (2 B) ||W||^2, nbnet's lambda / (2 n) ||W||^2
        with lambda = alpha n / B; with sample weights, B is the batch's expected weight sum,
        B times the mean weight)."""
        optimizer = "adam" if self.solver == "adam" else (
            "sgd" if self.momentum == 0 else "nesterov" if self.nesterovs_momentum else "momentum")
        net = self._network
        strengths = Augmentation() if self.augment is True else self.augment
        distortion = dict(augment=True, seed=getattr(self, "_augment_seed", 0), **vars(strengths)) if self.augment else {}
        return TrainConfig(**distortion, hidden=tuple(net.sizes[1:-1]), activation=net.activation, output=net.output,
                           cost=net.cost_name, epochs=1, batch_size=batch, lr=self.learning_rate_init,
                           l2=self.alpha * n_samples / (batch * mean_weight), dtype=net.dtype.name, optimizer=optimizer,
                           momentum=self.momentum or 0.9, beta1=self.beta_1, beta2=self.beta_2, eps=self.epsilon,
                           dropout=self.dropout, shuffle=bool(self.shuffle), train_metrics="running",
                           kernels=self.kernels)

    def _hidden(self):
        """hidden_layer_sizes as a sequence (scikit-learn accepts one int for one layer)."""
        sizes = self.hidden_layer_sizes
        return list(sizes) if hasattr(sizes, "__iter__") else [sizes]

    def _batch(self, n_samples):
        if self.batch_size == "auto":
            return min(200, n_samples)
        if self.batch_size > n_samples:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped")
        return int(np.clip(self.batch_size, 1, n_samples))

    def _check_parameters(self):
        """scikit-learn's parameter checks (ValueError naming the parameter and what it accepts)."""
        name = type(self).__name__

        def among(parameter, choices):
            value = getattr(self, parameter)
            if not (isinstance(value, str) and value in choices):
                raise ValueError(f"The '{parameter}' parameter of {name} must be a str among {set(choices)}. Got "
                                 f"{value!r} instead.")

        def number(parameter, low, high=None, closed="both", integer=False, infinite=False):
            value = getattr(self, parameter)
            ok = (isinstance(value, numbers.Integral if integer else numbers.Real) and not isinstance(value, bool)) \
                or (infinite and value == np.inf)
            ok = ok and (value >= low if closed in ("both", "left") else value > low)
            ok = ok and (high is None or (value <= high if closed in ("both", "right") else value < high))
            if not ok:
                left, right = "[" if closed in ("both", "left") else "(", "]" if closed in ("both", "right") else ")"
                raise ValueError(f"The '{parameter}' parameter of {name} must be {'an int' if integer else 'a float'} "
                                 f"in the range {left}{low}, {'inf' if high is None else high}"
                                 f"{right if high is not None else ')'}. Got {value!r} instead.")

        among("activation", ACTIVATIONS)
        among("solver", SOLVERS)
        among("learning_rate", ("constant", "invscaling", "adaptive"))
        if any(not isinstance(n, numbers.Integral) or n <= 0 for n in np.ravel(self._hidden())) \
                or len(self._hidden()) == 0:
            raise ValueError(f"hidden_layer_sizes must be > 0, got {self._hidden()}.")
        number("alpha", 0)
        number("learning_rate_init", 0, closed="neither")
        number("power_t", 0)
        number("max_iter", 1, integer=True)
        number("tol", 0)
        number("momentum", 0, 1)
        number("validation_fraction", 0, 1, closed="left")
        for beta in ("beta_1", "beta_2"):
            number(beta, 0, 1, closed="left")
        number("epsilon", 0, closed="neither")
        number("n_iter_no_change", 1, integer=True, infinite=True)
        number("max_fun", 1, integer=True)
        if self.batch_size != "auto":
            number("batch_size", 1, integer=True)
        if self.dtype is not None and str(np.dtype(self.dtype)) not in ("float32", "float64"):
            raise ValueError(f"dtype must be None, 'float32' or 'float64', got {self.dtype!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")
        if self.kernels not in KERNELS:
            raise ValueError(f"kernels must be one of {', '.join(KERNELS)}, got {self.kernels!r}")
        if not (isinstance(self.augment, (bool, np.bool_)) or isinstance(self.augment, Augmentation)):
            raise ValueError(f"augment must be True, False or an nbnet.augment.Augmentation, got {self.augment!r}")
        if self.augment and self.solver == "lbfgs":
            raise ValueError("augment distorts the samples of each epoch: it needs solver 'sgd' or 'adam', not 'lbfgs'")

    def _expose(self):
        """coefs_ and intercepts_ as views of the network's arrays, in scikit-learn's (n_in, n_out)
        orientation: changing one changes the network."""
        net = self._network
        self.coefs_ = [W.T for W in net.weights]
        self.intercepts_ = list(net.biases)
        self.n_layers_ = len(net.sizes)
        self.n_outputs_ = net.sizes[-1]

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
        tags.input_tags.sparse = True
        return tags


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """A multi-layer perceptron classifier trained by nbnet: scikit-learn's MLPClassifier, with
    its parameters and attributes (see the module docstring), plus class_weight, dtype, dropout,
    threads and kernels.

    class_weight  None, "balanced" or {class: weight}: each sample's weight is multiplied by its
                  class's (scikit-learn's meaning, as in LogisticRegression: "balanced" is
                  n_samples / (n_classes * count of the class)); for multi-label y, "balanced" or
                  a list of one {0: w, 1: w} per label, as scikit-learn's other estimators take it.
    """

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5, max_iter=200,
                 shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-8, n_iter_no_change=10, max_fun=15000, class_weight=None, dtype=None, dropout=0.0,
                 threads=None, kernels="fast", augment=False, image_shape=None):
        super().__init__(hidden_layer_sizes, activation, solver=solver, alpha=alpha, batch_size=batch_size,
                         learning_rate=learning_rate, learning_rate_init=learning_rate_init, power_t=power_t,
                         max_iter=max_iter, shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
                         warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
                         early_stopping=early_stopping, validation_fraction=validation_fraction, beta_1=beta_1,
                         beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun,
                         dtype=dtype, dropout=dropout, threads=threads, kernels=kernels, augment=augment,
                         image_shape=image_shape)
        self.class_weight = class_weight

    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over (X, y). `classes` (every label of every call) is needed on the first call."""
        if getattr(self, "classes_", None) is None and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        if classes is not None and getattr(self, "classes_", None) is not None:
            if not np.array_equal(self.classes_, unique_labels(classes)):
                raise ValueError(f"`classes={classes!r}` is not the same as on last call to partial_fit, was: "
                                 f"{self.classes_!r}")
        elif classes is not None:
            self.classes_ = unique_labels(classes)
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y if type_of_target(y).startswith("multilabel") else classes)
        return self._fit(X, y, sample_weight, incremental=True)

    partial_fit = available_if(lambda self: self._check_solver())(partial_fit)

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
            kind = self._label_binarizer.y_type_
            if y.ndim == 1 and (kind == "multiclass" or (kind == "binary" and len(self.classes_) == 2)):
                # The binarizer's transform of the y it was just fitted to, without its checks again
                # (a third of a small fit's Python): a column per class (binary: the second's).
                Y = y[:, None] == self.classes_[None, :] if kind == "multiclass" else (y == self.classes_[1])[:, None]
                return X, Y, self._class_weights(y, incremental)
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(f"warm_start can only be used where `y` has the same classes as in the previous "
                                     f"call to fit. Previously got {self.classes_}, `y` has {classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has {self.classes_}. 'y' "
                                 f"has {classes}.")
        return X, self._binarizer().transform(y).astype(bool), self._class_weights(y, incremental)

    def _class_weights(self, y, incremental):
        """Each sample's class weight (scikit-learn's compute_sample_weight), or None without class_weight."""
        if self.class_weight is None:
            return None
        if incremental and isinstance(self.class_weight, str):
            raise ValueError("class_weight 'balanced' is not supported for partial_fit: the classes' frequencies "
                             "are those of the whole data set. Compute them with sklearn.utils.class_weight."
                             "compute_class_weight('balanced', classes=classes, y=y) on enough of it and pass the "
                             "result as class_weight.")
        if not (isinstance(self.class_weight, (dict, list)) or self.class_weight == "balanced"):
            raise ValueError(f"The 'class_weight' parameter of MLPClassifier must be an instance of 'dict', a list of "
                             f"dicts, a str among {{'balanced'}} or None. Got {self.class_weight!r} instead.")
        return compute_sample_weight(self.class_weight, y)

    def _binarizer(self):
        if not hasattr(self, "_label_binarizer"):  # (classes_ set by hand)
            self._label_binarizer = LabelBinarizer().fit(self.classes_)
        return self._label_binarizer

    def _output_activation(self, Y):
        return "softmax" if self._binarizer().y_type_ == "multiclass" else "logistic"

    def _predict(self, X, check_input=True):
        y_pred = self._forward(X, check_input)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        return self._binarizer().inverse_transform(y_pred)

    def predict(self, X):
        """The predicted class of each sample (a 0/1 row per sample for multi-label y)."""
        return self._predict(X)

    def predict_proba(self, X):
        """Class probabilities, one column per entry of classes_ (independent per label for
        multi-label y)."""
        y_pred = self._forward(X).astype(np.float64, copy=False)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        if y_pred.ndim == 1:
            return np.vstack([1 - y_pred, y_pred]).T
        return y_pred

    def predict_log_proba(self, X):
        """log(predict_proba(X))."""
        probabilities = self.predict_proba(X)
        return np.log(probabilities, out=probabilities)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        tags.non_deterministic = False
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """A multi-layer perceptron regressor trained by nbnet: scikit-learn's MLPRegressor (half the
    squared error, or half the Poisson deviance with loss='poisson' and an exp output), one or
    several targets, with its parameters and attributes, plus dtype, dropout, threads and kernels."""

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5,
                 max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, beta_1=0.9,
                 beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000, dtype=None, dropout=0.0,
                 threads=None, kernels="fast", augment=False, image_shape=None):
        super().__init__(hidden_layer_sizes, activation, solver=solver, alpha=alpha, batch_size=batch_size,
                         learning_rate=learning_rate, learning_rate_init=learning_rate_init, power_t=power_t,
                         max_iter=max_iter, shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
                         warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
                         early_stopping=early_stopping, validation_fraction=validation_fraction, beta_1=beta_1,
                         beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun,
                         dtype=dtype, dropout=dropout, threads=threads, kernels=kernels, augment=augment,
                         image_shape=image_shape)
        self.loss = loss

    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y)."""
        return self._fit(X, y, sample_weight, incremental=True)

    partial_fit = available_if(lambda self: self._check_solver())(partial_fit)

    def _check_parameters(self):
        if self.loss not in ("squared_error", "poisson"):
            raise ValueError(f"The 'loss' parameter of MLPRegressor must be a str among {{'squared_error', "
                             f"'poisson'}}. Got {self.loss!r} instead.")
        super()._check_parameters()

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True, y_numeric=True,
                             dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if self.loss == "poisson" and np.any(y < 0):
            raise ValueError("Some value(s) of y are negative which is not allowed for Poisson regression.")
        return X, y, None

    def _output_activation(self, Y):
        return "exp" if self.loss == "poisson" else "identity"

    def _predict(self, X, check_input=True):
        y_pred = self._forward(X, check_input)
        return y_pred.ravel() if y_pred.shape[1] == 1 else y_pred

    def predict(self, X):
        """The predicted targets, shape (n_samples,) for one target, else (n_samples, n_targets)."""
        return self._predict(X)


def _checked_weights(sample_weight, n_samples):
    """sample_weight as a float64 array of n_samples finite, non-negative weights (scikit-learn's checks)."""
    if isinstance(sample_weight, numbers.Number):
        return np.full(n_samples, float(sample_weight))
    weights = np.asarray(sample_weight, dtype=np.float64)
    if weights.ndim != 1:
        raise ValueError(f"Sample weights must be 1D array or scalar, got {weights.ndim}D array.")
    if weights.shape != (n_samples,):
        raise ValueError(f"sample_weight.shape == {weights.shape}, expected {(n_samples,)}!")
    if not np.all(np.isfinite(weights)):
        raise ValueError("Input sample_weight contains NaN or infinity.")
    if np.any(weights < 0):
        raise ValueError("Negative values in data passed to sample_weight")
    if not np.any(weights):
        raise ValueError("Sample weights must contain at least one non-zero number.")
    return weights


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
