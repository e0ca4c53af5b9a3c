"""Any labelled data, from a file: `.npz` (arrays X (n, d) and y (n,), and optionally its own
X_test and y_test) or `.csv` (a header row, one label column named by --label-column, every
other column a feature). Labels may be numbers or strings; the classes are their sorted
distinct values, kept as names. Without test arrays the file is split by --test-fraction,
stratified and seeded, as the digits are.

Features. A CSV column whose values are all numbers is a numeric feature; one whose values are
all text (or that --categorical names) is a category, one-hot encoded: one input per category
seen in the file, 1 for the row's category and 0 for the others (`Columns`). A column of numbers
with some text in it is an error (a typo, or a missing value written as "n/a"), not a category.
The columns and categories are kept with the model, so that later rows (nbnet evaluate, nbnet
predict, `read_rows`) are encoded the same way; a category the model never saw is an error.
The numbers are standardised by the model itself (nbnet.scaling), unless --no-standardize.

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
                     targets="classes", categorical=(), columns=None):
    """Any data set nbnet trains on: digits or mnist by name (nbnet.data), or a .npz/.csv file
    (of classes, or of numeric targets: targets="numbers"; see load_table)."""
    if is_table(name):
        return load_table(name, test_fraction, seed, dtype, label_column, targets, categorical, columns)
    if targets == "numbers":
        raise DataError(f"{name} holds classes, not numeric targets: regression needs a .npz or .csv dataset")
    if categorical:
        raise DataError(f"--categorical names columns of a .csv dataset, and {name} is a set of images")
    return load_dataset(name, data_dir, test_fraction, seed, dtype)


class Columns:
    """How a table's feature columns become the network's inputs, kept with a model:

    names       the feature columns, in the file's order (x1, x2, ... for a .npz)
    categories  {column: its categories}: that column is one-hot encoded, one input per
                category in this order (the others are numbers, one input each)
    label       the label (or target) column of a .csv; None for a .npz
    """

    def __init__(self, names, categories=None, label=None):
        self.names, self.categories, self.label = list(names), dict(categories or {}), label

    @classmethod
    def numbers(cls, n):
        """The Columns of n numeric features without names (a .npz's X, an array): x1 .. xn."""
        return cls([f"x{i + 1}" for i in range(n)])

    @classmethod
    def of(cls, path, names, raw, categorical=(), label=None):
        """The Columns of a CSV's feature columns `names` with their values `raw` (one list of
        strings per column): categories are the columns in `categorical` and those with no
        number at all; DataError for a column of numbers with text in it."""
        unknown = [name for name in categorical if name not in names]
        if unknown:
            raise DataError(f"{path}: --categorical {unknown[0]}: no such feature column (the features are: "
                            f"{', '.join(names)})")
        categories = {}
        for name, values in zip(names, raw):
            parsed = [_number(text) for text in values]
            if name in categorical or all(value is None for value in parsed):
                numeric = all(value is not None for value in parsed)  # (declared codes: 2 before 10)
                categories[name] = sorted(set(values), key=(lambda text: (float(text), text)) if numeric else None)
            elif None in parsed:
                line = parsed.index(None)
                raise DataError(f"{path}: line {line + 2}, column {name!r}: {values[line]!r} is not a number (the "
                                f"column's other values are; --categorical {name} makes it a category)")
        return cls(names, categories, label)

    @property
    def features(self):
        """The name of each input: a numeric column's name, or column=category for each category."""
        names = []
        for name in self.names:
            names += [f"{name}={category}" for category in self.categories[name]] if name in self.categories else [name]
        return names

    @property
    def one_hot(self):
        """The indices of the inputs that are one-hot codes (nbnet.scaling leaves them as they are)."""
        at, indices = 0, []
        for name in self.names:
            width = len(self.categories[name]) if name in self.categories else 1
            indices += list(range(at, at + width)) if name in self.categories else []
            at += width
        return indices

    def encode(self, path, raw):
        """The inputs (n, len(features)) float64 of rows given as one list of strings per
        column of `names`; DataError, in one line, for text in a numeric column or a category
        this model has not seen."""
        n = len(raw[0]) if raw else 0
        blocks = []
        for name, values in zip(self.names, raw):
            if name in self.categories:
                known = {category: i for i, category in enumerate(self.categories[name])}
                block = np.zeros((n, len(known)))
                for row, text in enumerate(values):
                    if text not in known:
                        shown = ", ".join(self.categories[name][:10]) + (", ..." if len(known) > 10 else "")
                        raise DataError(f"{path}: line {row + 2}, column {name!r}: {text!r} is not one of the "
                                        f"categories the model knows ({shown})")
                    block[row, known[text]] = 1.0
            else:
                block = np.empty((n, 1))
                for row, text in enumerate(values):
                    value = _number(text)
                    if value is None:
                        raise DataError(f"{path}: line {row + 2}, column {name!r}: {text!r} is not a number")
                    block[row, 0] = value
            blocks.append(block)
        return np.concatenate(blocks, axis=1) if blocks else np.zeros((n, 0))

    def as_dict(self):
        return dict(names=self.names, categories=self.categories, label=self.label)

    @classmethod
    def from_dict(cls, values):
        return cls(values["names"], values.get("categories"), values.get("label"))

    def __eq__(self, other):
        return isinstance(other, Columns) and self.as_dict() == other.as_dict()


def _number(text):
    """float(text), or None when it is not a number."""
    try:
        return float(text)
    except ValueError:
        return None


def load_table(path, test_fraction=0.2, seed=0, dtype="float32", label_column="label", targets="classes",
               categorical=(), columns=None):
    """The Dataset in a .npz or .csv file (see the module docstring), its features encoded as
    `columns` (a model's Columns) says, or as the file's own columns and --categorical ones say;
    DataError if it does not fit."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.suffix.lower() == ".npz":
        if categorical or (columns is not None and columns.categories):
            raise DataError(f"{path}: categories are columns of a .csv file (a .npz holds numbers only)")
        X, y, X_test, y_test = _read_npz(path)
        columns = Columns.numbers(np.shape(X)[1] if np.ndim(X) == 2 else 0)
    else:
        names, raw, y = _read_csv(path, label_column)
        columns = columns or Columns.of(path, names, raw, categorical, label_column)
        X, X_test, y_test = columns.encode(path, raw), None, None
    numbers = targets == "numbers"
    X, y = _checked(path, X, y, "X", "y", numbers)
    if X_test is not None:
        X_test, y_test = _checked(path, X_test, y_test, "X_test", "y_test", numbers)
        if X_test.shape[1] != X.shape[1]:
            raise DataError(f"{path}: X has {X.shape[1]} features but X_test has {X_test.shape[1]}")
    if numbers:
        return _numeric_targets(path, X, y, X_test, y_test, test_fraction, seed, dtype, columns)
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
                   None, tuple(str(c) for c in classes), columns=columns)


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


def _read_csv(path, label_column=None, required=True):
    """(feature column names, their values: one list of stripped strings per column, labels) of
    a CSV file; the labels are None when label_column is None, or absent and not `required`.
    Labels that are all whole numbers become int64 (so they sort as numbers: 2 before 10)."""
    try:
        with open(path, newline="") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"{path}: not a readable CSV file ({error})") from None
    if len(rows) < 2:
        raise DataError(f"{path}: needs a header row and at least one row of data")
    header = [name.strip() for name in rows[0]]
    if label_column is not None and label_column not in header and required:
        raise DataError(f"{path}: no column named {label_column!r} (the header has: {', '.join(header)}); "
                        f"name the label column with --label-column")
    for number, row in enumerate(rows[1:], 2):
        if len(row) != len(header):
            raise DataError(f"{path}: line {number} has {len(row)} fields, the header {len(header)}")
    at = header.index(label_column) if label_column in header else None
    values = [[text.strip() for text in column] for column in zip(*rows[1:])]
    if at is None:
        return header, values, None
    y = np.array(values[at])
    try:  # numeric labels sort as numbers (2 before 10), others as text
        y = y.astype(np.int64) if all(label.lstrip("-").isdigit() for label in y) else y
    except ValueError:
        pass
    return header[:at] + header[at + 1:], values[:at] + values[at + 1:], y


def read_rows(path, columns, class_names=None, labels="optional"):
    """(inputs, labels) of the rows of a .csv or .npz file, for a model whose features are
    `columns` (and, for a classifier, whose classes are `class_names`): the columns matched by
    name (a .npz's X by position), each encoded as the model encodes them (the inputs are not
    standardised: the network does that). The labels (class ids, or numbers for a model of
    numeric targets: class_names None) come from the label column (a .npz's y), or are None
    where there is none and labels="optional"; labels="required" makes a missing one an error,
    labels="ignore" leaves them unread (predicting).
    DataError, in one line, for a missing or unknown column, text in a numeric column, a
    category or a label the model does not know."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.suffix.lower() == ".npz":
        X, y = _rows_of_npz(path, columns, labels)
    elif path.suffix.lower() == ".csv":
        header, raw, y = _read_csv(path, columns.label, required=False)
        if y is None and labels == "required":
            raise DataError(f"{path}: no column {columns.label!r} (the labels the model was trained on) to score the "
                            f"rows against" if columns.label else
                            f"{path}: the model was trained on a .npz; give the rows to score as arrays X and y of one")
        missing = [name for name in columns.names if name not in header]
        extra = [name for name in header if name not in columns.names]
        if missing or extra:
            problem = f"no column {missing[0]!r}" if missing else f"a column {extra[0]!r}"
            raise DataError(f"{path}: {problem}, and the model takes the columns {', '.join(columns.names)}"
                            + (f" (and the label {columns.label})" if columns.label else ""))
        X = columns.encode(path, [raw[header.index(name)] for name in columns.names])
    else:
        raise DataError(f"{path}: rows come in a .csv or .npz file")
    if y is None or labels == "ignore":
        return X, None
    if class_names is None:
        try:
            return X, y.astype(np.float64).reshape(len(y), -1)
        except ValueError:
            raise DataError(f"{path}: the targets must be numbers") from None
    known = {name: i for i, name in enumerate(class_names)}
    ids = np.empty(len(y), dtype=np.int64)
    for row, label in enumerate(y):
        if str(label) not in known:
            raise DataError(f"{path}: row {row + 1} has the label {str(label)!r}, which is not one of the model's "
                            f"classes ({', '.join(class_names[:10])}{', ...' if len(class_names) > 10 else ''})")
        ids[row] = known[str(label)]
    return X, ids


def _rows_of_npz(path, columns, labels):
    """(X, y) of a .npz of rows for the model's `columns` (numbers only; y None if absent)."""
    if columns.categories:
        raise DataError(f"{path}: the model encodes categories, which come as text in a .csv file")
    try:
        arrays = load_npz(path)
    except NUMPY_FILE_ERRORS as error:
        raise DataError(f"{path}: not a readable .npz file ({type(error).__name__})") from None
    if "X" not in arrays or ("y" not in arrays and labels == "required"):
        wanted = "X" if "X" not in arrays else "y"
        raise DataError(f"{path}: no array named {wanted!r} (it holds {', '.join(sorted(arrays)) or 'none'})")
    X = np.asarray(arrays["X"])
    if X.ndim == 1:
        X = X[None, :]
    if X.ndim != 2 or X.shape[1] != len(columns.names) or not np.issubdtype(X.dtype, np.number):
        raise DataError(f"{path}: X must be rows of {len(columns.names)} numbers, got shape {X.shape} of {X.dtype}")
    if not np.all(np.isfinite(X)):
        raise DataError(f"{path}: X holds NaN or infinite values")
    y = arrays.get("y")
    if y is not None and len(y) != len(X):
        raise DataError(f"{path}: y has {len(y)} rows but X {len(X)}")
    return X.astype(np.float64), y


def _numeric_targets(path, X, y, X_test, y_test, test_fraction, seed, dtype, columns):
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
                   None, targets=y.shape[1], columns=columns)


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
