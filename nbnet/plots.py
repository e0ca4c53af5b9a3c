"""Metrics files, the train-vs-test cost plot (the overfitting diagnosis) and the plots of
`nbnet evaluate` (confusion matrix, most confidently wrong images).

All are written atomically: to a temporary file in the target directory, then renamed,
so an interrupted run never leaves a half-written CSV or PNG behind.
"""

import csv
import threading

import numpy as np

from .files import OutputError, atomic_write
from .train import METRIC_COLUMNS, VALIDATION_COLUMNS

__all__ = ["OutputError", "plot_evaluation", "plot_metrics", "pyplot", "read_metrics", "write_metrics"]

_LOADING = threading.Lock()


def pyplot():
    """matplotlib.pyplot, drawing to files only (the Agg backend: no window, no display needed).
    Importing it takes 0.3 s, which a cold start spends while it waits for its compile helper
    (nbnet.warm.prepare_kernels' `meanwhile`): the lock keeps a plot from choosing the backend
    while that import is half done."""
    with _LOADING:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    return plt


def write_metrics(rows, path):
    """One CSV row per epoch, columns METRIC_COLUMNS (and VALIDATION_COLUMNS when the run had a
    validation set); rows are EpochMetrics or dicts; a value that was not measured is empty."""
    rows = [row if isinstance(row, dict) else row.as_dict() for row in rows]
    columns = METRIC_COLUMNS + tuple(key for key in (rows[0] if rows else ()) if key not in METRIC_COLUMNS)

    def write(temporary):
        with open(temporary, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            for row in rows:
                writer.writerow({key: ("" if row.get(key) is None else row[key]) for key in columns})
    return atomic_write(path, write)


def read_metrics(path):
    """Rows of a metrics CSV as dicts of numbers."""
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            missing = set(METRIC_COLUMNS) - set(reader.fieldnames or ())
            if missing:
                raise OutputError(f"{path}: not a metrics file (missing columns: {', '.join(sorted(missing))})")
            columns = METRIC_COLUMNS + tuple(c for c in reader.fieldnames if c not in METRIC_COLUMNS
                                             and (c in VALIDATION_COLUMNS or c.startswith(("grad_W", "grad_b"))))
            rows = [{key: (int(row[key]) if key == "epoch" else None if row[key] == "" else float(row[key]))
                     for key in columns} for row in reader]
    except OSError as error:
        raise OutputError(f"cannot read {path}: {error.strerror}") from None
    except (ValueError, TypeError):
        raise OutputError(f"{path}: a row holds a value that is not a number") from None
    if not rows:
        raise OutputError(f"{path}: holds no epochs")
    return rows


def plot_metrics(rows, path, title=""):
    """Train and test cost per epoch on one axes, accuracy on a second; saved as PNG."""
    plt = pyplot()
    rows = [row if isinstance(row, dict) else row.as_dict() for row in rows]
    gradient_columns = [key for key in rows[0] if key.startswith("grad_W")]
    figure, panels = plt.subplots(1, 3 if gradient_columns else 2, figsize=(16 if gradient_columns else 11, 4.2))
    cost_axes, accuracy_axes = panels[0], panels[1]
    marker_size = 3 if len(rows) <= 60 else 0  # markers only while they can be told apart
    for split, style in (("train", "-o"), ("validation", "-^"), ("test", "-s")):
        measured = [row for row in rows if row.get(f"{split}_cost") is not None]
        if not measured:
            continue
        if len(measured) == 1 and len(rows) > 1:  # a test set evaluated once, after training
            style, size = "*", 12
        else:
            size = marker_size
        x = [row["epoch"] for row in measured]
        cost_axes.plot(x, [row[f"{split}_cost"] for row in measured], style, ms=size, label=f"{split} cost")
        accuracy_axes.plot(x, [100 * row[f"{split}_accuracy"] for row in measured], style, ms=size,
                           label=f"{split} accuracy")
    cost_axes.set(xlabel="epoch", ylabel="cost (with L2 term)",
                  title="cost: a widening train/test gap = overfitting")
    accuracy_axes.set(xlabel="epoch", ylabel="accuracy (%)", title="classification accuracy")
    if gradient_columns:  # vanishing gradients: early layers learn orders of magnitude slower
        gradient_axes = panels[2]
        epochs = [row["epoch"] for row in rows]
        for column in gradient_columns:
            line, = gradient_axes.plot(epochs, [row[column] for row in rows], "-o", ms=marker_size,
                                       label=f"layer {column[6:]}: |dJ/dW|")
            if "grad_b" + column[6:] in rows[0]:
                gradient_axes.plot(epochs, [row["grad_b" + column[6:]] for row in rows], "--", color=line.get_color(),
                                   label=f"layer {column[6:]}: |dJ/db|")
        gradient_axes.set(xlabel="epoch", ylabel="mean over the epoch's steps", yscale="log",
                          title="gradient size per layer")
    for axes in panels:
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7 if axes is panels[-1] and gradient_columns else None)
    figure.suptitle(title, fontsize=10)
    return save_figure(figure, path)


def save_figure(figure, path, dpi=110):
    """Lay `figure` out, write it to `path` as a PNG (atomically: never half a file) and close it."""
    plt = pyplot()
    figure.tight_layout()
    try:
        return atomic_write(path, lambda temporary: figure.savefig(temporary, dpi=dpi, format="png"))
    finally:
        plt.close(figure)


def plot_evaluation(confusion, data, probabilities, predicted, confusion_path, mistakes_path, title):
    """A confusion-matrix heat map, and a gallery of the most confidently wrong test images."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(6.4, 5.4))
    # Colour = the share of each true class's images that went to each wrong class (the diagonal,
    # ~99 % on MNIST, would make every error look white); the diagonal is drawn apart, in grey.
    shares = confusion / np.maximum(1, confusion.sum(axis=1, keepdims=True))
    errors = np.ma.masked_where(np.eye(len(confusion), dtype=bool), shares)
    axes.imshow(np.ma.masked_where(~np.eye(len(confusion), dtype=bool), shares), cmap="Greys", vmin=0, vmax=2)
    image = axes.imshow(errors, cmap="Reds", vmin=0, vmax=max(float(errors.max() or 0), 1e-9))
    top = float(errors.max() or 0)
    for (true, guess), count in np.ndenumerate(confusion):
        axes.text(guess, true, str(count), ha="center", va="center", fontsize=7,
                  color="white" if true != guess and shares[true, guess] > top / 2 else "black")
    names = [data.label(c) for c in range(len(confusion))]
    axes.set(xlabel="predicted class", ylabel="true class", title=f"confusion matrix: {title}",
             xticks=range(len(confusion)), yticks=range(len(confusion)))
    axes.set_xticklabels(names, rotation=90 if max(map(len, names)) > 2 else 0)
    axes.set_yticklabels(names)
    figure.colorbar(image, label="share of the true class's images (off the diagonal)")
    save_figure(figure, confusion_path)
    if mistakes_path is None:
        return
    wrong = np.flatnonzero(predicted != data.y_test)
    wrong = wrong[np.argsort(-probabilities[wrong, predicted[wrong]])][:24]
    figure, grid = plt.subplots(3, 8, figsize=(12, 5.2))
    for axes in grid.ravel():
        axes.axis("off")
    for axes, i in zip(grid.ravel(), wrong):
        axes.imshow(data.X_test[i].reshape(data.image_shape), cmap="gray_r")
        axes.set_title(f"true {data.label(data.y_test[i])}, said {data.label(predicted[i])}\n({probabilities[i, predicted[i]]:.0%} sure)",
                       fontsize=8)
    figure.suptitle(f"most confidently wrong test images: {title}")
    save_figure(figure, mistakes_path, dpi=90)


def plot_first_layer(W, image_shape, path, title, most=100):
    """What the first layer looks for: one tile per hidden unit (the first `most`), its weights
    W[j] shaped as the input image; red for positive weights, blue for negative, each tile on
    its own symmetric scale."""
    plt = pyplot()
    units = min(len(W), most)
    columns = int(np.ceil(np.sqrt(units)))
    rows = int(np.ceil(units / columns))
    figure, grid = plt.subplots(rows, columns, figsize=(1.1 * columns, 1.1 * rows + 0.6), squeeze=False)
    for j, axes in enumerate(grid.ravel()):
        axes.axis("off")
        if j < units:
            scale = float(np.abs(W[j]).max()) or 1.0
            axes.imshow(np.asarray(W[j]).reshape(image_shape), cmap="RdBu_r", vmin=-scale, vmax=scale)
    figure.suptitle(f"first-layer weights, one tile per hidden unit: {title}", fontsize=9)
    return save_figure(figure, path)


def plot_augmentation(originals, distorted, image_shape, path, title):
    """One row per image: the original, then its distorted versions (distorted[i, e])."""
    plt = pyplot()
    n, versions = distorted.shape[:2]
    figure, grid = plt.subplots(n, versions + 1, figsize=(1.1 * (versions + 1), 1.1 * n + 0.7), squeeze=False)
    for i in range(n):
        for e, image in enumerate([originals[i], *distorted[i]]):
            axes = grid[i, e]
            axes.imshow(np.asarray(image).reshape(image_shape), cmap="gray_r", vmin=0, vmax=1)
            axes.set_xticks([])
            axes.set_yticks([])
            if i == 0:
                axes.set_title("original" if e == 0 else f"epoch {e}", fontsize=8)
    figure.suptitle(title, fontsize=8)
    return save_figure(figure, path)
