"""The scikit-learn estimators' stochastic fit ('sgd', 'adam') of a narrow network with its epochs in
compiled code (nbnet.epochs): what it needs to be handed, calls of as many epochs as a quarter
of a second holds (so Ctrl-C is seen between them), and what Python does between calls
(scikit-learn's verbose lines and warnings, the fitted attributes).

The same weights, bit for bit, come out whatever the calls' lengths: one epoch per call (verbose
fits) or all of them, and as nbnet.train gives for the same run (tests/test_stochastic.py).
"""

import time
import warnings

import numpy as np

from . import epochs, passes
from .aligned import empty
from .epochs import (ACCURACY_IDS, ACCURACY_LABELS, ADAPTIVE, BEST_LOSS, BEST_SCORE, BUDGET, CONSTANT, CONVERGED,  # noqa: F401
                     DIVERGED, HAS_BEST, INVSCALING, LR, MAX_ITER, N_ITER, NO_IMPROVEMENT, ONE_EPOCH, R2, RATE_REDUCED,
                     RATE_TOO_SMALL, SAMPLES_SEEN, STEP)

SECONDS_PER_CALL = 0.25
STOPPED = -1  # (a callback asked the fit to stop: not one of run_epochs' reasons)
SCHEDULES = {"constant": CONSTANT, "invscaling": INVSCALING, "adaptive": ADAPTIVE}


def compiled_epochs_fit(net, config, dropout_free):
    """True when nbnet.epochs can run the fit: its steps are nbnet.narrow's (passes.narrow_steps) and
    nothing is augmented (that runs epoch by epoch through nbnet.train)."""
    return (passes.narrow_steps(net.weights, config.batch_size, not dropout_free, config.track_gradients,
                                config.kernels) and not config.augment)


class Validation:
    """The held-out set as nbnet.epochs scores it after every epoch: kind (epochs.ACCURACY_IDS,
    ACCURACY_LABELS or R2), inputs, targets (float64 (n, n_out); class ids in column 0), weights,
    and `targets`, the network's targets of the same samples (class ids or a target matrix, with
    the weights scaled to mean 1 as a last column), for its loss."""

    def __init__(self, net, kind, X, Y, weights, targets):
        self.kind, self.X = kind, net.as_inputs(X)
        self.Y = np.ascontiguousarray(Y, dtype=np.float64)
        self.weights = np.zeros(0) if weights is None else np.ascontiguousarray(weights, dtype=np.float64)
        self.no_targets = np.zeros(1, np.int64)
        self.buffers = passes.narrow_buffers(tuple(net.weights), self.X.shape[0], self.no_targets)
        self.out = empty((self.X.shape[0], net.sizes[-1]), net.dtype)
        self.targets = net.as_labels(targets, self.X.shape[0])
        self.evaluate_buffers = passes.narrow_buffers(tuple(net.weights), self.X.shape[0], self.targets)

    def argument(self):
        return (self.kind, self.X, self.Y, self.weights, self.buffers, self.no_targets, self.out, self.targets,
                self.evaluate_buffers)

    @staticmethod
    def none(net, y):
        """No validation set (a tuple of the same types, never read; y: the training targets)."""
        return (np.int64(epochs.NO_SCORE), empty((1, net.sizes[0]), net.dtype), np.zeros((1, net.sizes[-1])),
                np.zeros(0), passes.narrow_buffers(tuple(net.weights), 1, np.zeros(1, np.int64)), np.zeros(1, np.int64),
                empty((1, net.sizes[-1]), net.dtype), y[:1], passes.narrow_buffers(tuple(net.weights), 1, y[:1]))


class Outcome:
    """What a fit's calls of nbnet.epochs left: per-epoch losses and scores, how it ended."""

    def __init__(self):
        self.losses, self.scores, self.validation_losses, self.status = [], [], [], BUDGET


def fit(estimator, net, X, y, state, config, schedule, validation, max_epochs, one_epoch, verbose, loss_outputs,
        early=None, after_epoch=None):
    """Run up to max_epochs epochs of the estimator's stochastic fit through nbnet.epochs, from the
    estimator's attributes (learning rate, best loss or score, no-improvement count, samples seen)
    and the run state (generator, optimiser), and write them back. Prints scikit-learn's verbose
    lines and raises its ConvergenceWarning; returns an Outcome. `estimator` carries scikit-learn's
    attributes (nbnet.sklearn); `schedule` is (name, lr_init, power_t); `validation` a Validation
    or None, scored and its loss recorded after every epoch; `early`: whether its score decides
    when to stop (early stopping; default: with a validation set). after_epoch(epoch), when
    given, is called after each epoch (then one epoch per compiled call) with the estimator's
    attributes written back; a true return value stops the fit."""
    early = validation is not None if early is None else early
    optimizer = state.optimizer
    weights, biases = tuple(net.weights), tuple(net.biases)
    n, batch = X.shape[0], config.batch_size
    buffers, params, gradient = optimizer.narrow_workspace(net, y, batch)
    hyper = optimizer.settings(0.0, config.l2 / n, net.dtype)[1:]
    gradient_l2 = 0.0 if optimizer.decoupled else config.l2 / n
    validating = validation is not None
    progress = np.array([estimator._optimizer.learning_rate, estimator.best_loss_ if not early else 0.0,
                         estimator.best_validation_score_ if early else 0.0, estimator._no_improvement_count, 0,
                         estimator.t_, optimizer.step, 0], dtype=np.float64)
    curves = (np.zeros(max_epochs), np.zeros(max_epochs), np.zeros(max_epochs))
    best = (tuple(W.copy() for W in weights), tuple(b.copy() for b in biases))
    name, lr_init, power_t = schedule
    driver = passes.variant(epochs.run_epochs, passes.narrow_parallel(weights, batch))
    arguments = (optimizer.code, hyper, weights, biases, tuple(tuple(a) for a in optimizer.attach(net).state),
                 passes.sizes_of(weights), net.acts, net.cost_function.code, X, y, state.rng, bool(config.shuffle),
                 batch, float(gradient_l2), buffers, params, gradient,
                 validation.argument() if validating else Validation.none(net, y),
                 (np.int64(SCHEDULES[name]), float(lr_init), float(power_t)),
                 (float(estimator.tol), float(estimator.n_iter_no_change), np.int64(max_epochs), bool(one_epoch),
                  float(loss_outputs), bool(early)), progress, curves, best)
    outcome, budget, done = Outcome(), 1, 0
    while True:
        start = time.perf_counter()
        status = driver(np.int64(budget), *arguments)
        seconds = time.perf_counter() - start
        ran = int(progress[N_ITER]) - done
        new = (list(curves[0][done:done + ran]), list(curves[1][done:done + ran]) if validating else [],
               list(curves[2][done:done + ran]) if validating else [])
        outcome.losses += new[0]
        outcome.scores += new[1]
        outcome.validation_losses += new[2]
        if verbose:
            _print_epochs(outcome, done, ran, validating)
        done += ran
        state.first_epoch += ran
        optimizer.step = int(progress[STEP])
        _write_back(estimator, progress, new, early, validating)
        outcome.status = status
        if status == RATE_REDUCED:
            _stopping_message(estimator, early, verbose, f" Setting learning rate to {progress[LR]:f}")
            if one_epoch or done >= max_epochs:
                status = ONE_EPOCH if one_epoch else MAX_ITER
        elif status in (CONVERGED, RATE_TOO_SMALL):
            _stopping_message(estimator, early, verbose,
                              " Stopping." if status == CONVERGED else " Learning rate too small. Stopping.")
        if ran and after_epoch is not None and status != DIVERGED and after_epoch(done):
            outcome.status = status = STOPPED
        if status not in (BUDGET, RATE_REDUCED):
            break
        budget = 1 if verbose or after_epoch is not None else max(
            1, min(max_epochs, int(SECONDS_PER_CALL * max(ran, 1) / max(seconds, 1e-9))))
    if status == MAX_ITER:
        warnings.warn(f"Stochastic Optimizer: Maximum iterations ({estimator.max_iter}) reached and the optimization "
                      f"hasn't converged yet.", _convergence_warning())
    if early and progress[HAS_BEST]:
        for P, kept in zip(weights + biases, best[0] + best[1]):
            P[...] = kept
    return outcome


def _print_epochs(outcome, done, ran, early):
    for i in range(done, done + ran):
        print("Iteration %d, loss = %.8f" % (i + 1, outcome.losses[i]))
        if early:
            print("Validation score: %f" % outcome.scores[i])


def _stopping_message(estimator, early, verbose, ending):
    if verbose:
        what = "Validation score" if early else "Training loss"
        print(f"{what} did not improve more than tol={estimator.tol:f} for {estimator.n_iter_no_change:d} "
              f"consecutive epochs." + ending)


def _write_back(estimator, progress, new, early, validating):
    """The estimator's fitted attributes (scikit-learn's names) after a call that ran the epochs
    whose losses, validation scores and validation losses are `new`."""
    losses, scores, validation_losses = new
    estimator.n_iter_ += len(losses)
    estimator.t_ = int(progress[SAMPLES_SEEN])
    estimator._no_improvement_count = int(progress[NO_IMPROVEMENT])
    estimator._optimizer.learning_rate = float(progress[LR])
    estimator.loss_curve_ += [float(loss) for loss in losses]
    if losses:
        estimator.loss_ = float(losses[-1])
    if validating:
        estimator.validation_scores_ += [float(value) for value in scores]
        estimator.validation_loss_curve_ += [float(value) for value in validation_losses]
    if early:
        estimator.best_validation_score_ = float(progress[BEST_SCORE])
    else:
        estimator.best_loss_ = float(progress[BEST_LOSS])


def _convergence_warning():
    from sklearn.exceptions import ConvergenceWarning

    return ConvergenceWarning

