"""Metrics files and the train-vs-test cost plot (the overfitting diagnosis).

Both are written atomically: to a temporary file in the target directory, then renamed,
so an interrupted run never leaves a half-written CSV or PNG behind.
"""

import csv

from .files import OutputError, atomic_write
from .train import METRIC_COLUMNS

__all__ = ["OutputError", "plot_metrics", "read_metrics", "write_metrics"]


def write_metrics(rows, path):
    """One CSV row per epoch, columns METRIC_COLUMNS; rows are EpochMetrics or dicts."""
    def write(temporary):
        with open(temporary, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=METRIC_COLUMNS)
            writer.writeheader()
            for row in rows:
                writer.writerow(row if isinstance(row, dict) else row.as_dict())
    return atomic_write(path, write)


def read_metrics(path):
    """Rows of a metrics CSV as dicts of numbers."""
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            missing = set(METRIC_COLUMNS) - set(reader.fieldnames or ())
            if missing:
                raise OutputError(f"{path}: not a metrics file (missing columns: {', '.join(sorted(missing))})")
            rows = [{key: (int(row[key]) if key == "epoch" else float(row[key])) for key in METRIC_COLUMNS}
                    for row in reader]
    except OSError as error:
        raise OutputError(f"cannot read {path}: {error.strerror}") from None
    except (ValueError, TypeError):
        raise OutputError(f"{path}: a row holds a value that is not a number") from None
    if not rows:
        raise OutputError(f"{path}: holds no epochs")
    return rows


def plot_metrics(rows, path, title=""):
    """Train and test cost per epoch on one axes, accuracy on a second; saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [row if isinstance(row, dict) else row.as_dict() for row in rows]
    epochs = [row["epoch"] for row in rows]
    figure, (cost_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(11, 4.2))
    marker_size = 3 if len(rows) <= 60 else 0  # markers only while they can be told apart
    for split, style in (("train", "-o"), ("test", "-s")):
        cost_axes.plot(epochs, [row[f"{split}_cost"] for row in rows], style, ms=marker_size, label=f"{split} cost")
        accuracy_axes.plot(epochs, [100 * row[f"{split}_accuracy"] for row in rows], style, ms=marker_size,
                           label=f"{split} accuracy")
    cost_axes.set(xlabel="epoch", ylabel="cost (with L2 term)",
                  title="cost: a widening train/test gap = overfitting")
    accuracy_axes.set(xlabel="epoch", ylabel="accuracy (%)", title="classification accuracy")
    for axes in (cost_axes, accuracy_axes):
        axes.grid(alpha=0.3)
        axes.legend()
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    try:
        return atomic_write(path, lambda temporary: figure.savefig(temporary, dpi=110, format="png"))
    finally:
        plt.close(figure)
