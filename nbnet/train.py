"""The training driver: epochs of shuffled minibatch SGD, and the per-epoch monitoring
(train and test cost and accuracy) that shows overfitting, after Nielsen's network2.SGD.

The minibatch steps themselves run inside compiled code (kernels.train_batches); Python
only shuffles, hands over slices of an epoch (so a progress bar can move) and evaluates.
"""

import time
from dataclasses import asdict, dataclass

import numba
import numpy as np

from . import kernels, passes
from .network import Network
from .optimizers import Optimizer

PLAIN_SGD = Optimizer("sgd")

TRAIN_METRICS = ("full", "running", "none")
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
    """Training produced NaN or infinite values."""

    def __init__(self, epoch, what):
        super().__init__(f"training diverged in epoch {epoch}: {what}")
        self.epoch = epoch


def set_threads(threads):
    """Use `threads` threads in the parallel kernels (None: every core Numba found)."""
    limit = numba.config.NUMBA_NUM_THREADS
    threads = limit if threads is None else int(threads)
    if not 1 <= threads <= limit:
        raise ValueError(f"threads must lie in 1..{limit}, got {threads}")
    numba.set_num_threads(threads)
    return threads


def prepare_kernels(net, batch_size=None, optimizer=None, dropout=0.0, train_metrics="full"):
    """Compile (or load from the disk cache) the compiled code that evaluating `net` and, with
    a batch size, training it with `optimizer`, `dropout` and `train_metrics` will call, and
    nothing else.
    So compiling happens here and not inside the first timed epoch.
    Returns (seconds, compiled) where compiled is True when anything had to be compiled."""
    start = time.perf_counter()
    misses = _cache_misses()
    train = batch_size is not None
    optimizer = optimizer or PLAIN_SGD
    warm_up(len(net.sizes) - 1, net.dtype, passes.parallel_pays(net.weights, 1),
            train and passes.parallel_pays(net.weights, batch_size), optimizer.name if train else None,
            optimizer.track_gradients, dropout > 0, train_metrics == "running")
    return time.perf_counter() - start, _cache_misses() > misses


def warm_up(layers, dtype, parallel_evaluation, parallel_training, optimizer=None, track_gradients=False,
            dropout=False, running=False):
    """Run once, on a tiny network of `layers` layers and `dtype`, the compiled drivers that a
    run with these settings calls (same variants and argument types): evaluation, and
    training with `optimizer` unless it is None (else Network.forward, for evaluate and predict)."""
    tiny = Network([3] * layers + [2], dtype=dtype, seed=0)
    X = tiny.as_inputs(np.zeros((4, 3)))
    y = np.zeros(4, dtype=np.int64)
    weights, biases = tuple(tiny.weights), tuple(tiny.biases)
    passes.evaluate(weights, biases, tiny.acts, tiny.cost_function.code, X, y, parallel_evaluation)
    if optimizer is None:
        passes.variant(kernels.forward, parallel_evaluation)(weights, biases, tiny.acts, X,
                                                             passes.layer_buffers(weights, 4),
                                                             passes.layer_buffers(weights, 4))
        return
    same = Optimizer(optimizer, track_gradients=track_gradients).attach(tiny)
    same.run(tiny, X, y, np.arange(4, dtype=np.int64), 2, 0, 2, 0.1, 0.0, 0.5 if dropout else 1.0, 0,
             parallel=parallel_training, totals=np.zeros(2) if running else None)


def _cache_misses():
    """How many times nbnet's compiled drivers were compiled in this process (not loaded from the cache)."""
    drivers = (kernels.train_batches, kernels.train_batches_with, kernels.evaluate_tiles, kernels.forward)
    return sum(sum(d.stats.cache_misses.values()) for driver in drivers for d in (driver, driver.serial))


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
    optimizer = optimizer or PLAIN_SGD
    keep = 1.0 - dropout
    full = len(order) // batch_size
    parallel = passes.parallel_pays(net.weights, batch_size)
    if first < min(stop, full):
        optimizer.run(net, X, y, order, int(batch_size), int(first), int(min(stop, full)), lr, l2_over_n, keep,
                      dropout_seed, parallel, totals)
    if stop > full and full * batch_size < len(order):
        rest = order[full * batch_size:]
        optimizer.run(net, X, y, rest, len(rest), 0, 1, lr, l2_over_n, keep, dropout_seed + 1, parallel, totals)


def train(net, X_train, y_train, X_test, y_test, epochs=30, batch_size=10, lr=0.5, l2=0.0,
          seed=0, on_epoch=None, on_progress=None, rng=None, first_epoch=1, optimizer=None, schedule=None,
          X_validation=None, y_validation=None, patience=None, dropout=0.0, best=None, train_metrics="full"):
    """Train `net` in place with minibatch SGD (or `optimizer`); return the list of EpochMetrics.

    Each epoch draws a fresh shuffle from `rng` (default: a generator seeded with `seed`), so
    the same seed and the same initial network give the same final weights; passing a
    generator in the state a checkpoint recorded, with first_epoch after the checkpoint's,
    continues a run exactly. The L2 term uses n = len(X_train); reported costs include it.
    `optimizer` (default plain SGD) carries its state between epochs; `schedule(epoch)` gives
    the learning rate of an epoch (default: lr throughout).

    With a validation set, each epoch reports validation instead of test cost and accuracy,
    and the test set is evaluated once, at the end. With `patience`, training stops when the
    validation cost has not improved for that many epochs, and the weights of the best epoch
    are restored (the returned history then ends with that epoch's row updated). `best` (a
    BestEpoch) carries that bookkeeping over from the epochs before first_epoch.

    dropout P drops each hidden unit with probability P in every training step (inverted
    dropout); the masks depend only on (seed, epoch, step, layer, sample, unit).

    train_metrics says what the train cost and accuracy of an epoch are (TRAIN_METRICS):
    "full" evaluates the whole training set after the epoch (exact; a forward pass over it);
    "running" is the mean over the epoch's minibatches, each measured just before its own
    step (free, as Keras and scikit-learn report it; early minibatches count with the weights
    they had then, so it trails the full figure while the cost falls fast); "none" skips it.

    on_epoch(metrics) is called after each epoch; on_progress(epoch, batches_done, n_batches)
    during it. Raises Diverged as soon as a weight or a cost is NaN or infinite.
    """
    if train_metrics not in TRAIN_METRICS:
        raise ValueError(f"train_metrics must be one of {', '.join(TRAIN_METRICS)}, got {train_metrics!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
    if epochs < 1 or batch_size < 1 or not lr > 0 or l2 < 0:
        raise ValueError("epochs, batch size and learning rate must be positive, l2 non-negative")
    X_train = net.as_inputs(X_train)
    y_train = net.as_labels(y_train, X_train.shape[0])
    X_test = net.as_inputs(X_test)
    y_test = net.as_labels(y_test, X_test.shape[0])
    validating = X_validation is not None
    if validating:
        X_validation = net.as_inputs(X_validation)
        y_validation = net.as_labels(y_validation, X_validation.shape[0])
    elif patience:
        raise ValueError("early stopping needs a validation set")
    n = X_train.shape[0]
    n_batches = -(-n // batch_size)
    slice_size = max(1, n_batches // 50)  # ~50 progress updates (and divergence checks) per epoch
    rng = np.random.default_rng(seed) if rng is None else rng
    history = []
    best = BestEpoch() if best is None else best
    for epoch in range(first_epoch, epochs + 1):
        order = rng.permutation(n).astype(np.int64)
        epoch_lr = schedule(epoch) if schedule else lr
        start = time.perf_counter()
        running = np.zeros(2) if train_metrics == "running" else None  # the minibatch costs and correct counts
        for first in range(0, n_batches, slice_size):
            stop = min(first + slice_size, n_batches)
            _train_steps(net, X_train, y_train, order, batch_size, first, stop, epoch_lr, l2 / n, optimizer, dropout,
                         (seed * 1_000_003 + epoch * 2) % 2 ** 62, running)
            if not net.parameters_finite():
                raise Diverged(epoch, f"a weight became NaN or infinite after {stop} of {n_batches} minibatches")
            if on_progress:
                on_progress(epoch, stop, n_batches)
        seconds = time.perf_counter() - start
        if train_metrics == "full":
            train_cost, train_accuracy = net.evaluate(X_train, y_train, l2, n)
        elif train_metrics == "running":
            train_cost, train_accuracy = running[0] / n + net.l2_penalty(l2, n), running[1] / n
        else:
            train_cost = train_accuracy = None
        if validating:
            validation_cost, validation_accuracy = net.evaluate(X_validation, y_validation, l2, n)
            test_cost = test_accuracy = None
            checked = validation_cost
        else:
            validation_cost = validation_accuracy = None
            test_cost, test_accuracy = net.evaluate(X_test, y_test, l2, n)
            checked = test_cost
        if not (np.isfinite(checked) and (train_cost is None or np.isfinite(train_cost))):
            raise Diverged(epoch, f"the cost is {train_cost} (train) and {checked} (held out)")
        tracked = optimizer.take_gradient_means() if optimizer and optimizer.track_gradients else (None, None)
        metrics = EpochMetrics(epoch, train_cost, test_cost, train_accuracy, test_accuracy, seconds,
                               validation_cost, validation_accuracy, *tracked)
        history.append(metrics)
        if patience:
            best.offer(net, metrics)
        if on_epoch:
            on_epoch(metrics)
        if patience and epoch - best.metrics.epoch >= patience:
            break
    if validating and history:  # keep the best epoch's weights, then look at the test set once
        if patience:
            best.restore(net)
        kept = best.metrics if patience else history[-1]
        kept.test_cost, kept.test_accuracy = net.evaluate(X_test, y_test, l2, n)
    return history
