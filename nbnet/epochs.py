"""Epochs in compiled code: scikit-learn's stochastic fit (solver 'sgd' or 'adam') of a narrow
network, as many epochs as Python lets one call run.

Each epoch is what nbnet.train does for the estimator, in the same order, on the same compiled
steps (nbnet.narrow.train_batches), so the weights are the same bits as training epoch by
epoch: a fresh shuffle from the run's generator (`permutation`: the order
np.random.Generator.permutation draws; none when one minibatch holds every sample, where the
order would change only the rounding of the sums: on 10,000 samples it took a sixth of the
epoch), the minibatches (a short last one on its own), the running loss
(each minibatch's cost before its step, plus the L2 term), then scikit-learn's rules after the
epoch:

    validation score and loss:          accuracy, or R^2 averaged over the outputs, of the held-out
                                        samples (weighted when they are), and their loss as the
                                        training loss is reported (L2 term included), computed here
    no-improvement count:               +1 when the loss did not fall below best - tol (with early
                                        stopping: the score did not rise above best + tol), else 0
    learning rate:                      invscaling: lr_init / (t + 1)^power_t, t the samples seen;
                                        adaptive: divided by 5 when the count passes n_iter_no_change
    stop:                               the count passed n_iter_no_change (adaptive: with the rate at
                                        1e-6 or below), max_iter epochs, one epoch of partial_fit, a
                                        weight or the loss not finite

Python (nbnet.stochastic) runs between calls only when something must: a verbose line, a
callback, the end of a call's time budget (so Ctrl-C is seen). What an epoch leaves for it is
in `progress` and `curves`; run_epochs returns why it stopped.
"""

import numba
import numpy as np
from numba.np.random.random_methods import random_interval

from .config import driver, on_demand, renamed, serial
from .narrow import evaluate, flatten, forward_rows, train_batches

# why run_epochs returned (the epoch it ran last is recorded in progress and curves)
BUDGET, CONVERGED, RATE_REDUCED, RATE_TOO_SMALL, MAX_ITER, ONE_EPOCH, DIVERGED = range(7)
# progress: the state the rules carry from epoch to epoch (float64 array)
LR, BEST_LOSS, BEST_SCORE, NO_IMPROVEMENT, N_ITER, SAMPLES_SEEN, STEP, HAS_BEST = range(8)
# what the validation score is
NO_SCORE, ACCURACY_IDS, ACCURACY_LABELS, R2 = range(4)
# learning-rate schedules (the estimator's learning_rate for 'sgd'; 'adam' keeps its rate constant)
CONSTANT, INVSCALING, ADAPTIVE = range(3)
ADAPTIVE_FACTOR, ADAPTIVE_FLOOR = 5.0, 1e-6


@on_demand
def permutation(rng, n):
    """rng.permutation(n) as NumPy's Generator draws it: 0..n-1 shuffled by Fisher-Yates from the
    last place down, place i swapped with a place j in 0..i drawn by the generator's bounded
    integers (random_interval, Numba's copy of NumPy's). The same order, the same state of rng
    after it. (Numba's own rng.permutation shuffles through its general n-dimensional shuffle,
    whose slice copies and their error messages took 4 s to compile, most of a first fit's.)"""
    order = np.empty(n, dtype=np.int64)
    for i in range(n):
        order[i] = i
    for i in range(n - 1, 0, -1):
        j = np.int64(random_interval(rng.bit_generator, i))
        order[i], order[j] = order[j], order[i]
    return order


if numba.config.DISABLE_JIT:  # plain Python (NUMBA_DISABLE_JIT=1): random_interval is Numba's; NumPy's own order
    def permutation(rng, n):  # noqa: F811
        return rng.permutation(n)


@on_demand
def copy_into(source, target):
    """target[...] = source for a matrix or a vector, as a loop (a slice assignment compiles
    Numba's shape-mismatch message, a second or two of string code)."""
    flat_source, flat_target = source.reshape(-1), target.reshape(-1)
    for i in range(flat_source.shape[0]):
        flat_target[i] = flat_source[i]


@on_demand
def score(kind, out, y, w):
    """The validation score of the outputs out (n_samples, n_out) against y: accuracy (ACCURACY_IDS:
    the first largest output is the class id in y[s, 0]; ACCURACY_LABELS: every output is on the
    side of 1/2 its 0/1 label is) or R^2 = 1 - sum_s w_s (y - out)^2 / sum_s w_s (y - mean_w y)^2
    averaged over the outputs (scikit-learn's r2_score: 1 for a perfect fit of constant targets,
    0 for an imperfect one); weighted by w (empty: no weights). NaN if an output is not finite."""
    n, n_out = out.shape
    for s in range(n):
        for j in range(n_out):
            if not np.isfinite(out[s, j]):
                return np.nan
    weights = np.ones(n) if w.shape[0] == 0 else w
    total_weight = 0.0
    for s in range(n):
        total_weight += weights[s]
    if kind == ACCURACY_IDS or kind == ACCURACY_LABELS:
        right = 0.0
        for s in range(n):
            if kind == ACCURACY_IDS:
                guess = 0
                for j in range(1, n_out):
                    if out[s, j] > out[s, guess]:
                        guess = j
                ok = guess == y[s, 0]
            else:
                ok = True
                for j in range(n_out):
                    ok = ok and (out[s, j] > 0.5) == (y[s, j] > 0.5)
            if ok:
                right += weights[s]
        return right / total_weight
    r2 = 0.0
    for j in range(n_out):
        mean = 0.0
        for s in range(n):
            mean += weights[s] * y[s, j]
        mean /= total_weight
        residual, spread = 0.0, 0.0
        for s in range(n):
            residual += weights[s] * (y[s, j] - out[s, j]) ** 2
            spread += weights[s] * (y[s, j] - mean) ** 2
        if spread != 0.0 and residual != 0.0:
            r2 += 1.0 - residual / spread
        elif spread != 0.0 or residual == 0.0:
            r2 += 1.0
    return r2 / n_out


@on_demand
def parameters_finite(weights, biases):
    """False once a weight or bias is NaN or infinite."""
    for m in range(len(weights)):
        W, b = weights[m], biases[m]
        for j in range(W.shape[0]):
            if not np.isfinite(b[j]):
                return False
            for k in range(W.shape[1]):
                if not np.isfinite(W[j, k]):
                    return False
    return True


@on_demand
def sum_of_squares(weights):
    """sum_m ||W^m||^2 in float64 (the L2 term is l2_over_n / 2 times it)."""
    total = 0.0
    for m in range(len(weights)):
        W = weights[m]
        for j in range(W.shape[0]):
            for k in range(W.shape[1]):
                total += np.float64(W[j, k]) * np.float64(W[j, k])
    return total


def run_epochs(budget, code, hyper, weights, biases, state, sizes, acts, cost, X, y, rng, shuffle, batch_size,
               l2_over_n, buffers, params, gradient, validation, schedule, rules, progress, curves, best):
    """Up to `budget` epochs of minibatch training (see the module docstring); returns why it stopped.

    hyper       (h1, h2, eps, decay) of the optimiser `code` in the weights' dtype (Optimizer.settings
                without the rate, which the schedule sets each epoch)
    validation  (kind, X_val, y_val: float64 (n, n_out), class ids in column 0 for ACCURACY_IDS; w_val or
                empty; forward_rows' buffers, no_targets and output rows (n, n_out) for X_val; the
                network's targets of X_val (as y, weights scaled to mean 1) and evaluate's buffers)
    schedule    (kind, lr_init, power_t)
    rules       (tol, n_iter_no_change, max_iter, one_epoch, outputs of the loss: the squared error
                is reported per output, as scikit-learn's; early stopping: the validation score,
                not the loss, decides)
    progress    float64 [LR, BEST_LOSS, BEST_SCORE, NO_IMPROVEMENT, N_ITER, SAMPLES_SEEN, STEP, HAS_BEST]
    curves      (loss_curve, validation_scores, validation_losses): the values of epoch i at index i - 1
    best        (weights, biases) of the best validation score so far"""
    h1, h2, eps, decay = hyper
    kind, X_val, y_val, w_val, validation_buffers, no_targets, out, targets_val, evaluate_buffers = validation
    schedule_kind, lr_init, power_t = schedule
    tol, n_iter_no_change, max_iter, one_epoch, loss_outputs, early = rules
    loss_curve, scores, validation_losses = curves
    best_weights, best_biases = best
    n = X.shape[0]
    full = n // batch_size
    totals = np.zeros(2)
    for _ in range(budget):
        order = permutation(rng, n) if shuffle and batch_size < n else np.arange(n)  # (as nbnet.train)
        settings = (weights[0].dtype.type(progress[LR]), h1, h2, eps, decay)
        totals[0], totals[1] = 0.0, 0.0
        step = np.int64(progress[STEP])
        step = train_batches(code, settings, step, weights, biases, state, sizes, acts, cost, X, y, order, batch_size,
                             np.int64(0), full, l2_over_n, buffers, params, gradient, totals)
        if full * batch_size < n:  # the short last minibatch, as nbnet.train runs it
            step = train_batches(code, settings, step, weights, biases, state, sizes, acts, cost, X, y,
                                 order[full * batch_size:], n - full * batch_size, np.int64(0), np.int64(1), l2_over_n,
                                 buffers, params, gradient, totals)
        progress[STEP] = step
        l2_term = 0.5 * l2_over_n * sum_of_squares(weights)
        loss = (totals[0] / n) / loss_outputs + l2_term  # (the squared error per output, as scikit-learn's)
        if not (np.isfinite(loss) and parameters_finite(weights, biases)):
            return DIVERGED
        epoch = np.int64(progress[N_ITER])
        progress[N_ITER] += 1
        progress[SAMPLES_SEEN] += n
        loss_curve[epoch] = loss
        value = 0.0
        if kind != NO_SCORE:
            flatten(weights, biases, params)
            forward_rows_one_thread(sizes, acts, params, X_val, no_targets, validation_buffers, out)
            value = score(kind, out, y_val, w_val)
            scores[epoch] = value
            totals[0], totals[1] = 0.0, 0.0
            evaluate_one_thread(sizes, acts, cost, params, X_val, targets_val, np.arange(X_val.shape[0]),
                                evaluate_buffers, totals)
            validation_losses[epoch] = (totals[0] / X_val.shape[0]) / loss_outputs + l2_term
        if early:
            improved = not value < progress[BEST_SCORE] + tol  # (scikit-learn's test: a NaN score counts as one)
            progress[NO_IMPROVEMENT] = 0.0 if improved else progress[NO_IMPROVEMENT] + 1
            if value > progress[BEST_SCORE]:
                progress[BEST_SCORE], progress[HAS_BEST] = value, 1.0
                for m in range(len(weights)):
                    copy_into(weights[m], best_weights[m])
                    copy_into(biases[m], best_biases[m])
        else:
            worse = loss > progress[BEST_LOSS] - tol
            progress[NO_IMPROVEMENT] = progress[NO_IMPROVEMENT] + 1 if worse else 0.0
            if loss < progress[BEST_LOSS]:
                progress[BEST_LOSS] = loss
        if schedule_kind == INVSCALING:
            progress[LR] = lr_init / (progress[SAMPLES_SEEN] + 1) ** power_t
        if progress[NO_IMPROVEMENT] > n_iter_no_change:
            if schedule_kind != ADAPTIVE:
                return CONVERGED
            if progress[LR] <= ADAPTIVE_FLOOR:
                return RATE_TOO_SMALL
            progress[LR] /= ADAPTIVE_FACTOR
            progress[NO_IMPROVEMENT] = 0.0
            if not one_epoch and progress[N_ITER] < max_iter:
                return RATE_REDUCED
        if one_epoch:
            return ONE_EPOCH
        if progress[N_ITER] >= max_iter:
            return MAX_ITER
    return BUDGET


forward_rows_one_thread, evaluate_one_thread = forward_rows.serial, evaluate.serial  # (validation sets are small)

# run_epochs calls narrow.train_batches, whose minibatches share their chunks among the threads;
# run_epochs.serial, the same body compiled again, calls its one-thread variant
run_epochs = driver(run_epochs)
run_epochs.serial = serial(renamed(getattr(run_epochs, "py_func", run_epochs), "_serial",  # (NUMBA_DISABLE_JIT=1: itself)
                                   train_batches=train_batches.serial))
