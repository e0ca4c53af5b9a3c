"""The training driver: epochs of shuffled minibatch SGD, and the per-epoch monitoring
(train and test cost and accuracy) that shows overfitting, after Nielsen's network2.SGD.

The minibatch steps themselves run inside compiled code (kernels.train_batches); Python
only shuffles, hands over slices of an epoch (so a progress bar can move) and evaluates.
"""

import time
import warnings
from dataclasses import asdict, dataclass

import numba
import numpy as np

from . import passes
from .activations import f
from .augment import TrainingRows
from .config import workers_started
from .costs import targets
from .optimizers import Optimizer
from .schedules import adaptive_rate, learning_rate
from .warm import prepare_kernels

METRIC_COLUMNS = ("epoch", "train_cost", "test_cost", "train_accuracy", "test_accuracy", "seconds")
VALIDATION_COLUMNS = ("validation_cost", "validation_accuracy")


@dataclass
class EpochMetrics:
    epoch: int
    train_cost: float
    test_cost: float
    train_accuracy: float
    test_accuracy: float
    seconds: float  # wall time of the epoch's training steps, evaluation excluded
    # With a validation set the test set is evaluated once, after training: test_cost and
    # test_accuracy are None except in the row of the epoch whose weights were kept.
    validation_cost: float = None
    validation_accuracy: float = None
    # With --track-gradients: mean |dJ/dW^m| and mean |dJ/db^m| (= mean |delta^m|, Nielsen's
    # "speed of learning" of layer m) over the epoch's steps, one value per layer m = 1..L.
    gradient_means: list = None
    bias_gradient_means: list = None

    def as_dict(self):
        row = asdict(self)
        del row["gradient_means"], row["bias_gradient_means"]
        if self.validation_cost is None:
            del row["validation_cost"], row["validation_accuracy"]
        for name, values in (("grad_W", self.gradient_means), ("grad_b", self.bias_gradient_means)):
            for m, value in enumerate(values or (), 1):
                row[f"{name}{m}"] = value
        return row

    @classmethod
    def from_dict(cls, row):
        """The inverse of as_dict."""
        def series(name):
            keys = sorted((k for k in row if k.startswith(name)), key=lambda k: int(k[len(name):]))
            return [row[k] for k in keys] or None

        fields = {key: value for key, value in row.items() if not key.startswith(("grad_W", "grad_b"))}
        return cls(**fields, gradient_means=series("grad_W"), bias_gradient_means=series("grad_b"))


class BestEpoch:
    """The epoch with the lowest validation cost so far and a copy of its weights: what early
    stopping restores. Checkpoints keep it (`arrays`, `from_checkpoint`), so a resumed run
    stops, and keeps, what the uninterrupted run would have."""

    def __init__(self, metrics=None, weights=None, biases=None):
        self.metrics, self.weights, self.biases = metrics, weights, biases

    def offer(self, net, metrics):
        if self.metrics is None or metrics.validation_cost < self.metrics.validation_cost:
            self.metrics = metrics
            self.weights = [W.copy() for W in net.weights]
            self.biases = [b.copy() for b in net.biases]

    def restore(self, net):
        for P, saved in zip(net.weights + net.biases, self.weights + self.biases):
            P[...] = saved

    def arrays(self):
        """Named arrays for a model file (none before the first epoch)."""
        if self.metrics is None:
            return {}
        named = {f"best_W{m}": W for m, W in enumerate(self.weights, 1)}
        named.update({f"best_b{m}": b for m, b in enumerate(self.biases, 1)})
        return named

    @classmethod
    def from_checkpoint(cls, arrays, history, epoch):
        """The record saved with a checkpoint: `epoch` (None if none) names a row of `history`."""
        if epoch is None:
            return cls()
        metrics = next(row for row in history if row.epoch == epoch)
        L = sum(name.startswith("best_W") for name in arrays)
        return cls(metrics, [arrays[f"best_W{m}"] for m in range(1, L + 1)],
                   [arrays[f"best_b{m}"] for m in range(1, L + 1)])


class Diverged(Exception):
    """Training produced NaN or infinite values (or, with stop_on_divergence, a cost far above
    a guessing network's)."""

    def __init__(self, epoch, what):
        super().__init__(f"training diverged in epoch {epoch}: {what}")
        self.epoch = epoch


class DivergenceWarning(UserWarning):
    """The held-out cost is far above a guessing network's, though still finite."""


# A held-out cost this many times that of a network that guesses (all z^L = 0) is divergence:
# a trained network never gets there (the README's runs stay below 1x), an overshooting one
# does within an epoch (relu at --lr 1e6: 447,660 against 2.3).
DIVERGENCE_FACTOR = 10


def guessing_cost(net, y):
    """The mean cost (no L2 term) on targets y of a network whose outputs are all z^L = 0: it
    guesses (softmax 1/C, sigmoid 1/2, identity 0, exp 1 everywhere). The yardstick of divergence."""
    z = np.zeros((len(y), net.sizes[-1]))
    Y, w = targets(y, net.sizes[-1], z.dtype)
    J = net.cost_function.fn(z, f(z, net.acts[-1]), Y, net.acts[-1])
    return float(np.mean(J if w is None else J * w)) * net.cost_factor  # (y standardised: see nbnet.scaling)


def set_threads(threads):
    """Use `threads` threads in the parallel kernels (None: every core Numba found)."""
    limit = numba.config.NUMBA_NUM_THREADS
    if threads is None and not workers_started():  # (all of them, as they will start: see config.threads_in_use)
        return limit
    threads = limit if threads is None else int(threads)
    if not 1 <= threads <= limit:
        raise ValueError(f"threads must lie in 1..{limit}, got {threads}")
    numba.set_num_threads(threads)
    return threads


def train_epoch(net, X, y, order, batch_size, lr, l2_over_n=0.0, optimizer=None, dropout=0.0, dropout_seed=0):
    """One epoch of minibatch training over X[order] in compiled code (no monitoring).
    X, y must already be the network's inputs and labels (Network.as_inputs / as_labels)."""
    _train_steps(net, X, y, order, batch_size, 0, -(-len(order) // batch_size), lr, l2_over_n, optimizer,
                 dropout, dropout_seed)


def _train_steps(net, X, y, order, batch_size, first, stop, lr, l2_over_n, optimizer=None, dropout=0.0,
                 dropout_seed=0, totals=None):
    """Batches first..stop-1; a short last batch (when len(order) is not a multiple of the
    batch size) runs as a one-batch call of its own size (with its own dropout stream). The
    run's batch size chooses the drivers' variant, the short batch included."""
    optimizer = optimizer or Optimizer("sgd")  # (a fresh one: it keeps state and buffers for the network it trains)
    keep = 1.0 - dropout
    full = len(order) // batch_size
    parallel = passes.steps_parallel(net.weights, batch_size, optimizer.takes_narrow_steps(net, dropout > 0, batch_size))
    if first < min(stop, full):
        optimizer.run(net, X, y, order, int(batch_size), int(first), int(min(stop, full)), lr, l2_over_n, keep,
                      dropout_seed, parallel, totals)
    if stop > full and full * batch_size < len(order):
        rest = order[full * batch_size:]
        optimizer.run(net, X, y, rest, len(rest), 0, 1, lr, l2_over_n, keep, dropout_seed + 1, parallel, totals,
                      batch_size)


class RunState:
    """What a run carries from one epoch to the next, and a checkpoint keeps: the random
    generator of the shuffles, the next epoch, the optimiser (with its state) and early
    stopping's best epoch."""

    def __init__(self, rng, first_epoch, optimizer, best):
        self.rng, self.first_epoch, self.optimizer, self.best = rng, first_epoch, optimizer, best
        # the learning rate of the next epochs when a caller steers it (the scikit-learn
        # estimator's invscaling and adaptive schedules); None: config.schedule says
        self.learning_rate = None
        self.watched = []  # the cost --schedule adaptive watched after each epoch so far (see watched_cost)

    @classmethod
    def start(cls, config):
        """The state before epoch 1 of a run of `config`."""
        return cls(np.random.default_rng(config.seed), 1, optimizer_for(config), BestEpoch())


def optimizer_for(config):
    """A fresh Optimizer with the settings of `config`."""
    return Optimizer(config.optimizer, config.momentum, config.beta1, config.beta2, config.rho, config.eps,
                     config.decoupled_weight_decay, config.track_gradients, config.kernels)


def train(net, split, config, on_epoch=None, on_progress=None, state=None, slices=50):
    """Train `net` in place on `split` (nbnet.data.Split) as `config` (nbnet.options.TrainConfig)
    says; return the list of EpochMetrics of the epochs run.

    Each epoch draws a fresh shuffle from the state's generator (seeded with config.seed), so
    the same seed and the same initial network give the same final weights; `state` (a
    RunState, as a checkpoint recorded it) continues a run exactly. The L2 term uses
    n = len(X_train); reported costs include it. The optimiser carries its state between
    epochs; config.schedule gives the learning rate of each epoch.

    With a validation set, each epoch reports validation instead of test cost and accuracy,
    and the test set is evaluated once, at the end. Without either (split.X_test None, as
    the scikit-learn estimator trains), no held-out figures are computed. With early stopping,
    training stops when the validation cost has not improved for config.patience epochs, and
    the weights of the best epoch are restored (the returned history then ends with that
    epoch's row updated).

    Dropout P drops each hidden unit with probability P in every training step (inverted
    dropout); the masks depend only on (seed, epoch, step, layer, sample, unit).

    uint8 inputs are pixel bytes: they stay bytes in memory and become inputs byte / 255 as
    each slice of an epoch is gathered (the same numbers as float inputs divided by 255 at load
    time, so the same model). With config.augment, each training image is distorted afresh in
    every epoch (nbnet.augment; split.image_shape, or square images), the distortion depending
    only on (seed, epoch, the image's index in X_train).

    config.train_metrics says what the train cost and accuracy of an epoch are: "full"
    evaluates the whole training set after the epoch (exact; a forward pass over it);
    "running" is the mean over the epoch's minibatches, each measured just before its own
    step (free, as Keras and scikit-learn report it; early minibatches count with the weights
    they had then, so it trails the full figure while the cost falls fast); "none" skips it.

    on_epoch(metrics) is called after each epoch; on_progress(epoch, batches_done, n_batches)
    during it, after each of `slices` calls of the compiled steps (each call costs ~0.1 ms of
    Python; Ctrl-C and the NaN check act between them). Raises Diverged as soon as a weight or a
    cost is NaN or infinite. When the held-out cost exceeds DIVERGENCE_FACTOR x guessing_cost,
    warns once (DivergenceWarning), or raises Diverged with config.stop_on_divergence (the train
    cost, when nothing is held out).
    """
    state = state or RunState.start(config)
    X_train, y_train = _checked(net, split.X_train, split.y_train)
    rows = _training_rows(net, X_train, split, config)
    X_test, y_test = _checked(net, split.X_test, split.y_test)
    X_held, y_held = _checked(net, split.X_validation, split.y_validation)
    validating = X_held is not None
    if config.early_stopping and not validating:
        raise ValueError("early stopping needs a validation set")
    if config.schedule == "adaptive" and not validating and config.train_metrics == "none":
        raise ValueError("--schedule adaptive watches the validation cost, else the train cost: use --validation, "
                         "or --train-metrics full or running")
    # compiled (or loaded) once the inputs are known to be good and before the first epoch, whose
    # seconds must not include it; nothing to do when the caller did it already (nbnet train,
    # to say how long it took)
    prepare_kernels(net, config.batch_size, state.optimizer, config.dropout, config.train_metrics,
                    "ids" if y_train.ndim == 1 else "matrix", X_train.dtype == np.uint8, config.augment)
    if not validating:
        X_held, y_held = X_test, y_test  # (None, None without a test set: nothing held out to report)
    patience = config.patience if config.early_stopping else None
    n = X_train.shape[0]
    history, far_above = [], DIVERGENCE_FACTOR * guessing_cost(net, y_train if y_held is None else y_held)
    family = state.optimizer.takes_narrow_steps(net, config.dropout > 0, config.batch_size)  # (evaluations too)
    net.family = "narrow" if family else "kernels"  # (and later ones: Network.narrow_passes)
    for epoch in range(state.first_epoch, config.epochs + 1):
        seconds, running = _train_epoch(net, X_train, y_train, config, state, epoch, on_progress, slices, rows)
        train_cost, train_accuracy = _train_figures(net, X_train, y_train, config, running, family)
        held_cost, held_accuracy = (None, None) if X_held is None else net.evaluate_checked(X_held, y_held,
                                                                                             config.l2, n, family)
        watched, which = (held_cost, "held-out") if held_cost is not None else (train_cost, "train")
        if not all(np.isfinite(cost) for cost in (train_cost, held_cost) if cost is not None):
            raise Diverged(epoch, f"the cost is {train_cost} (train) and {held_cost} (held out)")
        diverging = (watched is not None and watched > far_above
                     and _divergence(epoch, which, watched, far_above / DIVERGENCE_FACTOR, config))
        optimizer = state.optimizer
        tracked = optimizer.take_gradient_means() if optimizer.track_gradients else (None, None)
        held = (None, None, held_cost, held_accuracy) if validating else (held_cost, held_accuracy, None, None)
        metrics = EpochMetrics(epoch, train_cost, held[0], train_accuracy, held[1], seconds, held[2], held[3],
                               *tracked)
        history.append(metrics)
        state.first_epoch = epoch + 1
        if patience:
            state.best.offer(net, metrics)
        if on_epoch:
            on_epoch(metrics)
        if diverging:  # after the epoch's report, once
            warnings.warn(diverging, DivergenceWarning, stacklevel=2)
            far_above = np.inf
        if patience and epoch - state.best.metrics.epoch >= patience:
            break
        if config.schedule == "adaptive":
            state.watched.append(watched_cost(metrics))
            if adaptive_rate(config.lr, state.watched, config.lr_tol)[1]:
                break  # the rate fell below 1e-6 and the cost still does not improve
    if validating and history:  # keep the best epoch's weights, then look at the test set once
        if patience:
            state.best.restore(net)
        kept = state.best.metrics if patience else history[-1]
        if X_test is not None:
            kept.test_cost, kept.test_accuracy = net.evaluate_checked(X_test, y_test, config.l2, n, family)
    return history


def watched_cost(metrics):
    """The cost --schedule adaptive watches after an epoch: the validation cost, else the train cost."""
    return metrics.validation_cost if metrics.validation_cost is not None else metrics.train_cost


def _checked(net, X, y):
    """(X, y) as the network's checked inputs (pixel bytes kept as bytes) and labels; (None,
    None) for no data."""
    if X is None:
        return None, None
    X = net.as_inputs(X, keep_bytes=True)
    return X, net.as_labels(y, X.shape[0])


def _divergence(epoch, which, cost, guessing, config):
    """A finite cost far above a guessing network's: raise Diverged (before the epoch is
    reported or checkpointed) with config.stop_on_divergence, else return the warning."""
    what = (f"the {which} cost {cost:.4g} is over {DIVERGENCE_FACTOR} times that of a network that guesses "
            f"({guessing:.4g})")
    if config.stop_on_divergence:
        raise Diverged(epoch, what)
    return f"training is diverging in epoch {epoch}: {what}; try a smaller learning rate than {config.lr:g}"


def _training_rows(net, X, split, config):
    """The augment.TrainingRows that make the inputs of each slice of an epoch, when they are
    not rows of X as they are (pixel bytes, or --augment); else None."""
    if X.dtype != np.uint8 and not config.augment:
        return None
    return TrainingRows(X, net.dtype, config.augmentation, split.image_shape, config.seed)


def _train_epoch(net, X, y, config, state, epoch, on_progress, slices=50, rows=None):
    """The minibatch steps of one epoch, in slices for the progress bar (and divergence checks);
    returns (seconds, the minibatches' cost and correct sums or None). With `rows` (see
    _training_rows) each slice's samples are made into inputs first, and the steps read them
    in place: X[order[lo:hi]] becomes rows 0.. of the block, so order becomes the positions
    order - lo (the same batches, dropout masks and bits as reading X itself)."""
    n = X.shape[0]
    n_batches = -(-n // config.batch_size)
    slice_size = max(1, n_batches // slices)  # ~50 progress updates (and divergence checks, Ctrl-C) per epoch
    # (one minibatch of every sample: no shuffle, whose order would change only the sums' rounding)
    shuffled = config.shuffle and config.batch_size < n
    order = state.rng.permutation(n).astype(np.int64) if shuffled else np.arange(n, dtype=np.int64)
    if state.learning_rate is not None:
        lr = state.learning_rate
    elif config.schedule == "adaptive":
        lr = adaptive_rate(config.lr, state.watched, config.lr_tol)[0]
    else:
        lr = learning_rate(config.schedule, config.lr, epoch, config.epochs, config.lr_step, config.lr_decay,
                           config.power_t, (epoch - 1) * n)
    running = np.zeros(2) if config.train_metrics == "running" else None  # the minibatch costs and correct counts
    start = time.perf_counter()
    for first in range(0, n_batches, slice_size):
        stop = min(first + slice_size, n_batches)
        x_slice, y_slice, positions = X, y, order
        if rows is not None:
            lo, hi = first * config.batch_size, min(stop * config.batch_size, n)
            x_slice, y_slice, positions = rows.block(order[lo:hi], epoch), y[order[lo:hi]], np.arange(-lo, n - lo)
        _train_steps(net, x_slice, y_slice, positions, config.batch_size, first, stop, lr, config.l2 / n,
                     state.optimizer, config.dropout, (config.seed * 1_000_003 + epoch * 2) % 2 ** 62, running)
        if not net.parameters_finite():
            raise Diverged(epoch, f"a weight became NaN or infinite after {stop} of {n_batches} minibatches")
        if on_progress:
            on_progress(epoch, stop, n_batches)
    return time.perf_counter() - start, running


def _train_figures(net, X, y, config, running, narrow):
    """(train cost, train accuracy) of an epoch as config.train_metrics asks (None, None for none)."""
    n = X.shape[0]
    if config.train_metrics == "full":
        return net.evaluate_checked(X, y, config.l2, n, narrow)
    if config.train_metrics == "running":
        return (running[0] / n + net.l2_penalty(config.l2, n)) * net.cost_factor, running[1] / n
    return None, None
