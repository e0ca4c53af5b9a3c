"""The `nbnet` command line: train, plot, download."""

import sys
from pathlib import Path

import click
import numba

from . import __version__
from .activations import HIDDEN, OUTPUT
from .costs import COSTS
from .data import DataError, download_mnist, load_dataset
from .network import DTYPES, Network
from .plots import OutputError, plot_metrics, read_metrics, write_metrics
from .train import prepare_kernels, set_threads, train

POSITIVE_FLOAT = click.FloatRange(min=0, min_open=True)


def fail(message):
    """Stop with a one-line error and exit code 1."""
    raise click.ClickException(message)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nbnet")
def main():
    """nbnet: a neural network whose backpropagation is readable loops compiled by Numba."""


@main.command("train")
@click.option("--dataset", type=click.Choice(["digits", "mnist"]), default="digits", show_default=True,
              help="digits: bundled UCI 8x8 digits; mnist: the IDX files in --data-dir.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where the MNIST IDX files are [default: $NBNET_DATA_DIR or ~/.cache/nbnet/mnist].")
@click.option("--download", is_flag=True, help="Download MNIST into --data-dir first if it is missing.")
@click.option("--hidden", type=click.IntRange(min=1), multiple=True, default=(30,), show_default=True,
              help="Neurons in a hidden layer; repeat for more layers (--hidden 100 --hidden 30).")
@click.option("--activation", type=click.Choice(HIDDEN), default="sigmoid", show_default=True,
              help="Activation of the hidden layers.")
@click.option("--output", type=click.Choice(OUTPUT), default="softmax", show_default=True,
              help="Activation of the output layer.")
@click.option("--cost", type=click.Choice(tuple(COSTS)), default="cross-entropy", show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=30, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=10, show_default=True,
              help="Samples per minibatch (1 = per-sample SGD).")
@click.option("--lr", type=POSITIVE_FLOAT, default=0.5, show_default=True, help="Learning rate alpha.")
@click.option("--l2", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="L2 strength lambda: cost + lambda/(2n) sum W^2, n = training samples.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seeds the initial weights, the shuffles and the digits split.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help=f"Threads for the parallel kernels [default: all cores, {numba.config.NUMBA_NUM_THREADS}].")
@click.option("--dtype", type=click.Choice(DTYPES), default="float32", show_default=True)
@click.option("--test-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.2,
              show_default=True, help="Share of the digits held out for testing (stratified, seeded).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to save the cost plot [default: plots/<dataset>-cost.png].")
@click.option("--metrics", "metrics_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write one CSV row per epoch here.")
@click.option("--train-size", type=click.IntRange(min=1), default=None,
              help="Train on the first N training samples only (shows overfitting quickly).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or notes; epoch lines only.")
def train_command(dataset, data_dir, download, hidden, activation, output, cost, epochs, batch_size, lr, l2,
                  seed, threads, dtype, test_fraction, plot_path, metrics_path, train_size, quiet):
    """Train a network on digit images, report cost and accuracy per epoch, plot train vs test cost."""
    note = (lambda message: None) if quiet else (lambda message: click.echo(message, err=True))
    if threads is not None and threads > numba.config.NUMBA_NUM_THREADS:
        raise click.BadParameter(f"at most {numba.config.NUMBA_NUM_THREADS} on this machine", param_hint="--threads")
    set_threads(threads)
    plot_path = plot_path or Path("plots") / f"{dataset}-cost.png"
    try:
        if dataset == "mnist" and download:
            download_mnist(data_dir, progress=None if quiet else _download_progress())
        data = load_dataset(dataset, data_dir, test_fraction, seed, dtype)
    except DataError as error:
        fail(str(error))
    X_train, y_train = data.X_train, data.y_train
    if train_size is not None:
        if train_size > len(X_train):
            raise click.BadParameter(f"{train_size} exceeds the {len(X_train)} training samples",
                                     param_hint="--train-size")
        X_train, y_train = X_train[:train_size], y_train[:train_size]

    sizes = [data.n_inputs, *hidden, 10]
    net = Network(sizes, activation=activation, output=output, cost=cost, dtype=dtype, seed=seed)
    note(f"{dataset}: {len(X_train)} training, {len(data.X_test)} test samples; network {sizes}, "
         f"{activation}/{output}, {cost}, {dtype}, {numba.get_num_threads()} thread(s)")
    note("Preparing compiled kernels (compiled on first use, then loaded from the disk cache)...")
    seconds, compiled = prepare_kernels(dtype)
    note(f"Kernels {'compiled and cached' if compiled else 'loaded from cache'} in {seconds:.1f} s.")

    n_batches = -(-len(X_train) // batch_size)
    show_bar = not quiet and sys.stderr.isatty()
    history = []
    click.echo(f"{'epoch':>7} {'train cost':>11} {'test cost':>10} {'train acc':>10} {'test acc':>9} {'seconds':>8}")

    def on_epoch(metrics):
        history.append(metrics)
        click.echo(f"{metrics.epoch:>3}/{epochs:<3} {metrics.train_cost:>11.4f} {metrics.test_cost:>10.4f} "
                   f"{metrics.train_accuracy:>10.2%} {metrics.test_accuracy:>9.2%} {metrics.seconds:>8.2f}")
        if metrics_path:
            write_metrics(history, metrics_path)

    title = (f"{dataset} (n_train={len(X_train)}): {'-'.join(map(str, sizes))}, {activation}/{output}, {cost}, "
             f"batch {batch_size}, lr {lr:g}, l2 {l2:g}")
    try:
        train(net, X_train, y_train, data.X_test, data.y_test, epochs, batch_size, lr, l2, seed=seed,
              on_epoch=on_epoch, on_progress=EpochProgressBar(epochs) if show_bar else None)
        plot_metrics(history, plot_path, title)
    except OutputError as error:
        fail(str(error))
    best = max(history, key=lambda m: m.test_accuracy)
    note(f"Best test accuracy {best.test_accuracy:.2%} at epoch {best.epoch}. Plot: {plot_path}"
         + (f"  Metrics: {metrics_path}" if metrics_path else ""))


class EpochProgressBar:
    """A click progress bar on stderr for each epoch: called as (epoch, batches_done, n_batches)."""

    def __init__(self, epochs):
        self.epochs, self.bar, self.done = epochs, None, 0

    def __call__(self, epoch, done, total):
        if self.bar is None:
            self.bar = click.progressbar(length=total, label=f"epoch {epoch}/{self.epochs}", file=sys.stderr)
            self.bar.__enter__()
            self.done = 0
        self.bar.update(done - self.done)
        self.done = done
        if done == total:
            self.bar.__exit__(None, None, None)
            self.bar = None


def _download_progress():
    """A download progress callback drawing one click progress bar per file."""
    bars = {}

    def progress(name, done, total):
        if name not in bars:
            bars[name] = [click.progressbar(length=total or 1, label=name, file=sys.stderr), 0]
            bars[name][0].__enter__()
        bar, shown = bars[name]
        bar.update(done - shown)
        bars[name][1] = done
        if total and done >= total:
            bar.__exit__(None, None, None)

    return progress


@main.command("plot")
@click.argument("metrics", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", "output_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The PNG file to write.")
@click.option("--title", default=None, help="Figure title [default: the CSV file name].")
def plot_command(metrics, output_path, title):
    """Redraw the train-vs-test cost plot from a metrics CSV written by `nbnet train --metrics`."""
    try:
        plot_metrics(read_metrics(metrics), output_path, title if title is not None else metrics.name)
    except OutputError as error:
        fail(str(error))
    click.echo(f"Plot: {output_path}")


@main.command("download")
@click.argument("dataset", type=click.Choice(["mnist"]))
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Target directory [default: $NBNET_DATA_DIR or ~/.cache/nbnet/mnist].")
@click.option("--mirror", "mirrors", multiple=True,
              help="Base URL to fetch from instead of the default mirrors (repeatable, tried in order).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def download_command(dataset, data_dir, mirrors, quiet):
    """Download MNIST's four IDX files, each checked against its SHA-256 before it is kept."""
    kwargs = {"mirrors": tuple(m if m.endswith("/") else m + "/" for m in mirrors)} if mirrors else {}
    try:
        directory = download_mnist(data_dir, progress=None if quiet else _download_progress(), **kwargs)
    except DataError as error:
        fail(str(error))
    click.echo(f"MNIST is in {directory}")
