"""Standardised inputs and targets, kept with the model: what makes a table of raw numbers
trainable.

A network learns badly from features of very different sizes (a table's columns may run from
0.001 to 4,000: sigmoid units saturate on the large ones and nothing is learnt) and from
targets in the hundreds (the first steps of the quadratic cost overshoot). So a network trained
on a table sees every numeric column standardised with the mean and the standard deviation of
the training split,

    x' = (x - mean) / std          (a column constant in the training split: x - mean, so 0)

and, for a regression with an identity output, the targets centred on their means and divided
by one common standard deviation, y' = (y - mean_y) / std_y, the predictions turned back,
y = std_y a^L + mean_y. One std_y for every target makes the quadratic cost of the standardised
problem the cost in the targets' units divided by std_y^2, exactly: so the cost a run reports
(in the targets' units: the cost, L2 term included, times std_y^2) is the one it minimises, and
a target of larger spread weighs more, as it does in the cost of the raw targets. The network's
weights are those of the standardised problem; Network applies the Scaling wherever inputs
come in (as_inputs) and targets come in (as_labels) or go out (forward), and multiplies the
costs and gradients it reports by cost_factor, so that the equations, the kernels and every
use of a saved model see one consistent network. One-hot category columns
(nbnet.tables) keep their 0 and 1 (mean 0, std 1 here). Images are not standardised: their
pixels have a fixed scale (nbnet.data).
"""

from dataclasses import dataclass

import numpy as np


@dataclass
class Scaling:
    input_mean: np.ndarray  # (n_in,) float64
    input_std: np.ndarray  # (n_in,) float64, 1 where the column is constant or a category
    target_mean: np.ndarray = None  # (n_out,) float64, or None: targets as they are
    target_std: float = 1.0  # one for all targets

    @property
    def cost_factor(self):
        """A cost of the standardised targets times this is the cost in the targets' units."""
        return self.target_std ** 2

    @classmethod
    def fit(cls, X, Y=None, keep=()):
        """The Scaling of training inputs X (n, d), leaving the columns in `keep` (one-hot
        categories) as they are, and of numeric targets Y (n, k) when given; ValueError, in one
        line, for a constant target (nothing to learn)."""
        X = np.asarray(X, dtype=np.float64)
        mean, std = X.mean(axis=0), X.std(axis=0)
        std[std == 0] = 1.0
        keep = list(keep)
        mean[keep], std[keep] = 0.0, 1.0
        if Y is None:
            return cls(mean, std)
        Y = np.asarray(Y, dtype=np.float64).reshape(len(Y), -1)
        target_mean = Y.mean(axis=0)
        target_std = float(np.sqrt(np.mean(Y.var(axis=0))))  # (the root of the targets' mean variance)
        if target_std == 0:
            raise ValueError(f"every training sample has the same target{'s' if Y.shape[1] > 1 else ''} "
                             f"({', '.join(f'{v:g}' for v in Y[0])}): nothing to learn")
        return cls(mean, std, target_mean, target_std)

    def inputs(self, X, dtype):
        """(X - mean) / std in `dtype`."""
        return ((np.asarray(X, dtype=np.float64) - self.input_mean) / self.input_std).astype(dtype)

    def targets(self, Y, dtype):
        """(Y - mean_y) / std_y in `dtype` (Y as it is without target scaling)."""
        if self.target_mean is None:
            return Y
        return ((np.asarray(Y, dtype=np.float64) - self.target_mean) / self.target_std).astype(dtype)

    def outputs(self, A):
        """std_y A + mean_y: standardised outputs in the targets' units (A as it is without)."""
        if self.target_mean is None:
            return A
        return (A * self.target_std + self.target_mean).astype(A.dtype)

    def as_dict(self):
        """JSON-ready lists (Python writes floats that read back to the same bits)."""
        values = dict(input_mean=self.input_mean.tolist(), input_std=self.input_std.tolist())
        if self.target_mean is not None:
            values.update(target_mean=self.target_mean.tolist(), target_std=self.target_std)
        return values

    @classmethod
    def from_dict(cls, values, n_in, n_out):
        """The Scaling stored by as_dict, for a network of n_in inputs and n_out outputs;
        ValueError if it does not fit."""
        arrays = {name: np.asarray(values[name], dtype=np.float64) for name in
                  ("input_mean", "input_std", "target_mean", "target_std") if name in values}
        for name, array in arrays.items():
            shape = (n_in,) if name.startswith("input") else (n_out,) if name == "target_mean" else ()
            if array.shape != shape or not np.all(np.isfinite(array)):
                raise ValueError(f"scaling {name} is not {shape[0] if shape else 1} finite number(s)")
            if name.endswith("std") and not np.all(array > 0):
                raise ValueError(f"scaling {name} holds a value that is not positive")
        if ("target_mean" in arrays) != ("target_std" in arrays):
            raise ValueError("scaling has target_mean or target_std, not both")
        return cls(arrays["input_mean"], arrays["input_std"], arrays.get("target_mean"),
                   float(arrays.get("target_std", 1.0)))


def for_run(data, split, config, output):
    """The Scaling of a new run of `config` on the Dataset `data` (training split `split`) for
    a network with this output layer: None for images and with --no-standardize; else the
    table's numeric columns (not its one-hot ones) and, for an identity output, its targets."""
    if data.image_shape is not None or not config.standardize:
        return None
    one_hot = data.columns.one_hot if data.columns is not None else []
    return Scaling.fit(split.X_train, split.y_train if output == "identity" else None, one_hot)


def constant_columns(scaling, data, split):
    """The names of the numeric input columns that are the same in every training row (they
    add nothing; standardised, they are 0)."""
    if scaling is None:
        return []
    one_hot = set(data.columns.one_hot) if data.columns is not None else set()
    features = data.columns.features if data.columns is not None else [f"x{i + 1}" for i in range(data.n_inputs)]
    spread = np.ptp(np.asarray(split.X_train, dtype=np.float64), axis=0)
    return [features[i] for i in range(len(features)) if spread[i] == 0 and i not in one_hot]
