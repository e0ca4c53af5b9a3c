"""Every option of a training run, in one frozen dataclass: its default, its help text and
its check.

`TrainConfig` is what a run *is*: the command line builds its `nbnet train` and `nbnet sweep`
options from these fields (nbnet/cli/options.py), `train()` reads it, model files and
checkpoints store it (so `--resume` compares configs), sweeps vary any field of it, and the
recipes of bench/accuracy.py are written as one. Where the data live, how many threads run
and where outputs go are not part of it: they change how a run is done, not what it computes.
"""

import math
from dataclasses import asdict, dataclass, field, fields, replace

from .activations import HIDDEN, NUMERIC_OUTPUTS, OUTPUT
from .augment import Augmentation
from .costs import COSTS, OUTPUTS_OF
from .data import IDX_SETS
from .network import DTYPES, INITS, Network
from .optimizers import KERNELS, OPTIMIZERS
from .schedules import SCHEDULES

DATASETS = ("digits", *IDX_SETS)
TRAIN_METRICS = ("full", "running", "none")


def option(default, help, choices=None, low=None, high=None, low_open=False, high_open=False, flag=False,
           files=None):
    """A field of TrainConfig: its default and help text, and the values it accepts (choices,
    or files with one of the suffixes `files`, or a number in [low, high] with either end
    open), which the command line shows too."""
    return field(default=default, metadata=dict(help=help, choices=choices, low=low, high=high, low_open=low_open,
                                                high_open=high_open, flag=flag, files=files))


@dataclass(frozen=True)
class TrainConfig:
    """What a training run computes: every option of `nbnet train` and `nbnet sweep`, with its
    default and check (each field's help is the option's). Frozen: `but(**changes)` makes a
    changed copy; `network(n_inputs, n_outputs)` the run's new Network; `as_dict`/`from_dict`
    are how model files and checkpoints store it."""

    dataset: str = option("digits", "digits: bundled UCI 8x8 digits; mnist, fashion-mnist, kmnist: the IDX "
                                    "files in --data-dir (see --download); or a .npz (arrays X, y) or .csv file of "
                                    "any labelled data.", choices=DATASETS,
                          files=(".npz", ".csv"))
    label_column: str = option("label", "The label column of a .csv --dataset (its header names it).")
    categorical: tuple = option((), "A column of a .csv --dataset to one-hot encode as categories (repeatable; a "
                                    "column of text is one anyway).")
    standardize: bool = option(True, "Tables: standardise the numeric columns, and numeric targets of an identity "
                                     "output, with the training split's mean and standard deviation, kept in the model "
                                     "(--no-standardize: data already scaled). Images keep their pixel scale.",
                               flag=True)
    hidden: tuple = option((30,), "Neurons in a hidden layer; repeat for more layers (--hidden 100 --hidden 30).",
                           low=1)
    activation: str = option("sigmoid", "Activation of the hidden layers.", choices=HIDDEN)
    output: str = option("softmax", "Activation of the output layer.", choices=OUTPUT)
    cost: str = option("cross-entropy", "Cost J.", choices=tuple(COSTS))
    epochs: int = option(30, "Epochs in all (with --resume: the checkpoint's planned total unless given).", low=1)
    batch_size: int = option(10, "Samples per minibatch (1 = per-sample SGD).", low=1)
    lr: float = option(0.5, "Learning rate alpha.", low=0, low_open=True)
    l2: float = option(0.0, "L2 strength lambda: cost + lambda/(2n) sum W^2, n = training samples.", low=0)
    seed: int = option(0, "Seeds the initial weights, the shuffles and the digits split.")
    shuffle: bool = option(True, "Visit the training samples in a new random order every epoch (--no-shuffle: in "
                                 "their stored order).", flag=True)
    dtype: str = option("float32", "Floating-point type of weights and arithmetic.", choices=DTYPES)
    kernels: str = option("fast", "Training steps through fast: the blocked, fused kernels (nbnet/kernels.py), or "
                                  "loops: the plain textbook loop of each equation (nbnet/loops.py; slower, the same "
                                  "results up to rounding).", choices=KERNELS)
    test_fraction: float = option(0.2, "Share of the digits held out for testing (stratified, seeded).", low=0,
                                  high=1, low_open=True, high_open=True)
    train_size: int = option(None, "Train on the first N training samples only (shows overfitting quickly).", low=1)
    init: str = option(None, "Weight initialisation [default: scaled for sigmoid and tanh, he for relu].",
                       choices=tuple(INITS))
    optimizer: str = option("sgd", "How the gradient changes the weights.", choices=tuple(OPTIMIZERS))
    momentum: float = option(0.9, "mu of momentum and nesterov.", low=0, high=1, high_open=True)
    beta1: float = option(0.9, "Adam.", low=0, high=1, high_open=True)
    beta2: float = option(0.999, "Adam.", low=0, high=1, high_open=True)
    rho: float = option(0.9, "RMSprop's decay of the mean square.", low=0, high=1, high_open=True)
    eps: float = option(1e-8, "RMSprop and Adam.", low=0, low_open=True)
    decoupled_weight_decay: bool = option(False, "Apply --l2 as weight decay outside the optimiser's scaling "
                                                 "(AdamW) instead of in the gradient.", flag=True)
    schedule: str = option("constant", "Learning rate per epoch: constant, step (times --lr-decay every --lr-step "
                                       "epochs), cosine, invscaling (see --power-t), adaptive (divided by 5 when 2 "
                                       "epochs in a row do not improve by --lr-tol; stops below 1e-6).",
                           choices=SCHEDULES)
    lr_step: int = option(10, "Epochs between the steps of --schedule step.", low=1)
    lr_decay: float = option(0.1, "Factor of each step of --schedule step.", low=0, high=1, low_open=True)
    power_t: float = option(0.5, "Exponent of --schedule invscaling: lr / (t + 1)^power_t, t = samples seen.", low=0)
    lr_tol: float = option(1e-4, "--schedule adaptive: an epoch improves when it lowers the best watched cost "
                                 "(validation, else train) by more than this.", low=0)
    validation: float = option(None, "Hold out the last N training samples (or this fraction, when below 1) for "
                                     "validation; the test set is then evaluated once, after training.", low=0,
                               low_open=True)
    early_stopping: bool = option(False, "Stop when the validation cost has not improved for --patience epochs; "
                                         "keep the best weights.", flag=True)
    patience: int = option(5, "Epochs without improvement before --early-stopping stops.", low=1)
    dropout: float = option(0.0, "Drop each hidden unit with this probability in every training step (inverted "
                                 "dropout).", low=0, high=1, high_open=True)
    augment: bool = option(False, "Distort every training image afresh each epoch (images only): a random affine "
                                  "map and an elastic distortion (Simard et al. 2003), strengths below.", flag=True)
    rotate: float = option(10.0, "--augment: rotation within +-this many degrees.", low=0, high=180)
    scale: float = option(0.1, "--augment: scale within 1 +- this.", low=0, high=1, high_open=True)
    shear: float = option(0.1, "--augment: shear within +-this.", low=0)
    shift: float = option(1.0, "--augment: shift within +-this many pixels (of a 28-pixel side; scaled with the "
                               "image).", low=0)
    elastic_alpha: float = option(34.0, "--augment: elastic strength alpha (0: none), in pixels of a 28-pixel side.",
                                  low=0)
    elastic_sigma: float = option(4.0, "--augment: width sigma of the Gaussian that smooths the elastic field, in "
                                       "pixels of a 28-pixel side.", low=0, low_open=True)
    track_gradients: bool = option(False, "Record mean |dJ/dW| per layer each epoch (metrics columns grad_W1.., a "
                                          "plot panel).", flag=True)
    train_metrics: str = option("full", "Train cost and accuracy per epoch: full (evaluate the training set after "
                                        "each epoch), running (mean over the epoch's minibatches, no extra pass), "
                                        "none.", choices=TRAIN_METRICS)
    stop_on_divergence: bool = option(False, "Stop with an error (exit 1, last checkpoint kept) when the held-out "
                                             "cost exceeds 10 times that of a network that guesses, instead of "
                                             "warning once.", flag=True)

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(int(n) for n in self.hidden))
        object.__setattr__(self, "categorical", tuple(str(name) for name in self.categorical))
        for spec in fields(self):
            check(spec, getattr(self, spec.name))
        if self.output not in OUTPUTS_OF[self.cost]:
            raise ValueError(output_mismatch(self.cost, self.output))

    def as_dict(self):
        """Plain JSON-ready values (hidden as a list)."""
        values = asdict(self)
        values["hidden"], values["categorical"] = list(self.hidden), list(self.categorical)
        return values

    @classmethod
    def from_dict(cls, values):
        """The config of stored values; options missing from them (older files) keep their defaults."""
        known = {spec.name for spec in fields(cls)}
        return cls(**{name: value for name, value in values.items() if name in known})

    @property
    def augmentation(self):
        """The run's nbnet.augment.Augmentation, or None without --augment."""
        if not self.augment:
            return None
        return Augmentation(self.rotate, self.scale, self.shear, self.shift, self.elastic_alpha, self.elastic_sigma)

    @property
    def data_dtype(self):
        """The dtype to load the data set's inputs in: IDX images stay pixel bytes (uint8)."""
        return "uint8" if self.dataset in IDX_SETS else self.dtype

    @property
    def targets(self):
        """What the data set's y hold for this run: "numbers" (an identity or exp output:
        regression) or "classes"."""
        return "numbers" if self.output in NUMERIC_OUTPUTS else "classes"

    def network(self, n_inputs, n_outputs=10):
        """A new Network for this run: n_inputs, the hidden layers, n_outputs (one per class),
        seeded by `seed`."""
        return Network([n_inputs, *self.hidden, n_outputs], activation=self.activation, output=self.output, cost=self.cost,
                       dtype=self.dtype, seed=self.seed, init=self.init)

    def but(self, **changes):
        """A copy with some options changed (and checked)."""
        return replace(self, **changes)

    def differences(self, other, ignore=()):
        """Names of the options whose values differ from `other`'s."""
        return [spec.name for spec in fields(self)
                if spec.name not in ignore and getattr(self, spec.name) != getattr(other, spec.name)]


def output_mismatch(cost, output):
    """The one-line error for a cost and an output layer that do not go together."""
    return (f"the {cost} cost needs a {' or '.join(OUTPUTS_OF[cost])} output, got {output}"
            + (" (numeric targets: --cost quadratic, or poisson with --output exp)" if output in NUMERIC_OUTPUTS
               else ""))


def check(spec, value):
    """ValueError, in one line, when `value` is not one the option `spec` accepts."""
    meta = spec.metadata
    if value is None and spec.default is None:
        return
    for item in value if isinstance(value, tuple) else (value,):
        if meta["choices"] is not None and item not in meta["choices"] and not (
                meta["files"] and str(item).lower().endswith(meta["files"])):
            files = f", or a {' or '.join(meta['files'])} file" if meta["files"] else ""
            raise ValueError(f"{spec.name} must be one of {', '.join(meta['choices'])}{files}, got {item!r}")
        if meta["low"] is None and meta["high"] is None:
            continue
        if not math.isfinite(item):  # (NaN passes every comparison below)
            raise ValueError(f"{spec.name} must be a finite number in {interval(meta)}, got {item}")
        below = item <= meta["low"] if meta["low_open"] else item < meta["low"]
        above = meta["high"] is not None and (item >= meta["high"] if meta["high_open"] else item > meta["high"])
        if below or above:
            raise ValueError(f"{spec.name} must lie in {interval(meta)}, got {item}")


def interval(meta):
    """The range an option accepts, written as an interval: [0, 1), (0, inf)."""
    high = "inf" if meta["high"] is None else f"{meta['high']:g}"
    return (f"{'(' if meta['low_open'] else '['}{meta['low']:g}, {high}"
            f"{')' if meta['high_open'] or meta['high'] is None else ']'}")
