"""Any labelled data, from a file: `.npz` (arrays X (n, d) and y (n,), and optionally its own
X_test and y_test) or `.csv` (a header row, one label column named by --label-column, every
other column a number). Labels may be numbers or strings; the classes are their sorted
distinct values, kept as names. Without test arrays the file is split by --test-fraction,
stratified and seeded, as the digits are. Features are used as they are: scale them first
(to [0, 1], or to zero mean and unit variance) as you would for any network.

With numeric targets (`targets="numbers"`: nbnet train --output identity or exp), y holds
numbers, one per sample or, in a .npz, a row of several per sample; they are kept as a target
matrix (n, k) in the run's dtype and the split is seeded but not stratified.
"""

import csv
from pathlib import Path

import numpy as np

from .aligned import aligned
from .data import DataError, Dataset, load_dataset, stratified_split
from .files import NUMPY_FILE_ERRORS, load_npz

SUFFIXES = (".npz", ".csv")


def is_table(name):
    """True when the dataset `name` is a file nbnet reads as a table (.npz or .csv)."""
    return str(name).lower().endswith(SUFFIXES)


def load_any_dataset(name, data_dir=None, test_fraction=0.2, seed=0, dtype="float32", label_column="label",
                     targets="classes"):
    """Any data set nbnet trains on: digits or mnist by name (nbnet.data), or a .npz/.csv file
    (of classes, or of numeric targets: targets="numbers")."""
    if is_table(name):
        return load_table(name, test_fraction, seed, dtype, label_column, targets)
    if targets == "numbers":
        raise DataError(f"{name} holds classes, not numeric targets: regression needs a .npz or .csv dataset")
    return load_dataset(name, data_dir, test_fraction, seed, dtype)


def load_table(path, test_fraction=0.2, seed=0, dtype="float32", label_column="label", targets="classes"):
    """The Dataset in a .npz or .csv file (see the module docstring); DataError if it does not fit."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.suffix.lower() == ".npz":
        X, y, X_test, y_test = _read_npz(path)
    else:
        (X, y), X_test, y_test = _read_csv(path, label_column), None, None
    numbers = targets == "numbers"
    X, y = _checked(path, X, y, "X", "y", numbers)
    if X_test is not None:
        X_test, y_test = _checked(path, X_test, y_test, "X_test", "y_test", numbers)
        if X_test.shape[1] != X.shape[1]:
            raise DataError(f"{path}: X has {X.shape[1]} features but X_test has {X_test.shape[1]}")
    if numbers:
        return _numeric_targets(path, X, y, X_test, y_test, test_fraction, seed, dtype)
    classes = np.unique(y if y_test is None else np.concatenate([y, y_test]))
    if len(classes) < 2:
        raise DataError(f"{path}: every sample has the label {classes[0]!r}; a classifier needs 2 classes or more")
    if X_test is None:
        X, y, X_test, y_test = stratified_split(X, np.searchsorted(classes, y), test_fraction, seed)
    else:
        y, y_test = np.searchsorted(classes, y), np.searchsorted(classes, y_test)
    if len(X) == 0 or len(X_test) == 0:
        raise DataError(f"{path}: too few samples to split into training and test sets")
    return Dataset(str(path), aligned(X, dtype), y.astype(np.int64), aligned(X_test, dtype), y_test.astype(np.int64),
                   None, tuple(str(c) for c in classes))


def _read_npz(path):
    try:
        arrays = load_npz(path)
    except NUMPY_FILE_ERRORS as error:
        raise DataError(f"{path}: not a readable .npz file ({type(error).__name__})") from None
    for name in ("X", "y"):
        if name not in arrays:
            raise DataError(f"{path}: no array named {name!r} (it holds {', '.join(sorted(arrays)) or 'none'})")
    if ("X_test" in arrays) != ("y_test" in arrays):
        raise DataError(f"{path}: X_test and y_test go together")
    return arrays["X"], arrays["y"], arrays.get("X_test"), arrays.get("y_test")


def _read_csv(path, label_column):
    try:
        with open(path, newline="") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"{path}: not a readable CSV file ({error})") from None
    if len(rows) < 2:
        raise DataError(f"{path}: needs a header row and at least one row of data")
    header = [name.strip() for name in rows[0]]
    if label_column not in header:
        raise DataError(f"{path}: no column named {label_column!r} (the header has: {', '.join(header)}); "
                        f"name the label column with --label-column")
    at = header.index(label_column)
    X = np.empty((len(rows) - 1, len(header) - 1))
    y = []
    for number, row in enumerate(rows[1:], 2):
        if len(row) != len(header):
            raise DataError(f"{path}: line {number} has {len(row)} fields, the header {len(header)}")
        y.append(row[at].strip())
        features = row[:at] + row[at + 1:]
        for column, text in enumerate(features):
            try:
                X[number - 2, column] = float(text)
            except ValueError:
                name = (header[:at] + header[at + 1:])[column]
                raise DataError(f"{path}: line {number}, column {name!r}: {text!r} is not a number") from None
    y = np.array(y)
    try:  # numeric labels sort as numbers (2 before 10), others as text
        y = y.astype(np.int64) if all(label.lstrip("-").isdigit() for label in y) else y
    except ValueError:
        pass
    return X, y


def _numeric_targets(path, X, y, X_test, y_test, test_fraction, seed, dtype):
    """The Dataset of numeric targets: y as (n, k) target matrices, split at random (seeded)."""
    y = y.reshape(len(y), -1)
    if X_test is None:
        if not 0.0 < test_fraction < 1.0:
            raise DataError(f"test fraction must lie strictly between 0 and 1, got {test_fraction}")
        test = np.zeros(len(X), dtype=bool)
        test[np.random.default_rng(seed).permutation(len(X))[:int(round(test_fraction * len(X)))]] = True
        X, y, X_test, y_test = X[~test], y[~test], X[test], y[test]
    y_test = y_test.reshape(len(y_test), -1)
    if y_test.shape[1] != y.shape[1]:
        raise DataError(f"{path}: y has {y.shape[1]} targets per sample but y_test has {y_test.shape[1]}")
    if len(X) == 0 or len(X_test) == 0:
        raise DataError(f"{path}: too few samples to split into training and test sets")
    return Dataset(str(path), aligned(X, dtype), aligned(y, dtype), aligned(X_test, dtype), aligned(y_test, dtype),
                   None, targets=y.shape[1])


def _checked(path, X, y, x_name, y_name, numbers=False):
    """X as a 2-D array of finite numbers and y as one label per row (numbers: one number, or a
    row of numbers, per row), or DataError."""
    X, y = np.asarray(X), np.asarray(y)
    if X.ndim != 2 or X.shape[1] == 0 or not (np.issubdtype(X.dtype, np.number) or X.dtype == bool) \
            or np.iscomplexobj(X):
        raise DataError(f"{path}: {x_name} must be a 2-D array of numbers, got shape {X.shape} of {X.dtype}")
    if not np.all(np.isfinite(X)):
        raise DataError(f"{path}: {x_name} holds NaN or infinite values")
    if numbers:
        try:
            y = y.astype(np.float64)
        except ValueError:
            raise DataError(f"{path}: {y_name} must hold numbers for --output identity or exp") from None
        if y.ndim not in (1, 2) or len(y) != len(X) or y.size == 0:
            raise DataError(f"{path}: {y_name} must hold one number (or row of numbers) per row of {x_name} "
                            f"({len(X)}), got shape {y.shape}")
    elif y.shape != (len(X),):
        raise DataError(f"{path}: {y_name} must hold one label per row of {x_name} ({len(X)}), got shape {y.shape}")
    if np.issubdtype(y.dtype, np.floating) and not np.all(np.isfinite(y)):
        raise DataError(f"{path}: {y_name} holds NaN or infinite labels")
    return X, y
