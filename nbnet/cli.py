"""The `nbnet` command line: train, plot, download (and, in cli_model.py, the commands that use a model)."""

import os
import sys
from pathlib import Path

import click
import numba
import numpy as np
from click.core import ParameterSource

from . import __version__
from .activations import HIDDEN, OUTPUT
from .config import cache_dir_writable, kernel_cache_dir
from .costs import COSTS
from .data import DataError, download_mnist, hold_out, load_dataset
from .model_file import ModelError, load_model, save_model
from .network import DTYPES, INITS, Network
from .optimizers import OPTIMIZERS, Optimizer
from .schedules import SCHEDULES, learning_rate
from .plots import OutputError, plot_metrics, read_metrics, write_metrics
from .train import TRAIN_METRICS, BestEpoch, Diverged, EpochMetrics, prepare_kernels, set_threads, train

POSITIVE_FLOAT = click.FloatRange(min=0, min_open=True)


def fail(message):
    """Stop with a one-line error and exit code 1."""
    raise click.ClickException(message)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nbnet")
def main():
    """nbnet: a neural network whose backpropagation is readable loops compiled by Numba."""


TRAINING_OPTIONS = ("dataset", "hidden", "activation", "output", "cost", "batch_size", "lr", "l2", "seed",
                    "dtype", "test_fraction", "train_size", "init", "optimizer", "momentum", "beta1", "beta2", "rho",
                    "eps", "decoupled_weight_decay", "schedule", "lr_step", "lr_decay", "validation", "early_stopping",
                    "patience", "track_gradients", "dropout")


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
@click.option("--epochs", type=click.IntRange(min=1), default=30, show_default=True,
              help="Epochs in all (with --resume: the checkpoint's planned total unless given).")
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
@click.option("--save", "save_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Save the trained model (.npz) here; it can be evaluated, used and resumed.")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=None,
              help="Also save the model (with the state to resume from) every K epochs; needs --save.")
@click.option("--resume", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Continue the run saved in this model file, with its options, exactly where it stopped.")
@click.option("--init", type=click.Choice(tuple(INITS)), default=None,
              help="Weight initialisation [default: scaled for sigmoid and tanh, he for relu].")
@click.option("--optimizer", type=click.Choice(tuple(OPTIMIZERS)), default="sgd", show_default=True)
@click.option("--momentum", type=click.FloatRange(0, 1, max_open=True), default=0.9, show_default=True,
              help="mu of momentum and nesterov.")
@click.option("--beta1", type=click.FloatRange(0, 1, max_open=True), default=0.9, show_default=True, help="Adam.")
@click.option("--beta2", type=click.FloatRange(0, 1, max_open=True), default=0.999, show_default=True, help="Adam.")
@click.option("--rho", type=click.FloatRange(0, 1, max_open=True), default=0.9, show_default=True,
              help="RMSprop's decay of the mean square.")
@click.option("--eps", type=POSITIVE_FLOAT, default=1e-8, show_default=True, help="RMSprop and Adam.")
@click.option("--decoupled-weight-decay", is_flag=True,
              help="Apply --l2 as weight decay outside the optimiser's scaling (AdamW) instead of in the gradient.")
@click.option("--schedule", type=click.Choice(SCHEDULES), default="constant", show_default=True,
              help="Learning rate per epoch: constant, step (times --lr-decay every --lr-step epochs), cosine.")
@click.option("--lr-step", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--lr-decay", type=click.FloatRange(0, 1, min_open=True), default=0.1, show_default=True)
@click.option("--validation", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Hold out the last N training samples (or this fraction, when below 1) for validation; "
                   "the test set is then evaluated once, after training.")
@click.option("--early-stopping", is_flag=True,
              help="Stop when the validation cost has not improved for --patience epochs; keep the best weights.")
@click.option("--patience", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
              help="Drop each hidden unit with this probability in every training step (inverted dropout).")
@click.option("--track-gradients", is_flag=True,
              help="Record mean |dJ/dW| per layer each epoch (metrics columns grad_W1.., a plot panel).")
@click.option("--train-metrics", type=click.Choice(TRAIN_METRICS), default="full", show_default=True,
              help="Train cost and accuracy per epoch: full (evaluate the training set after each epoch), running "
                   "(mean over the epoch's minibatches, no extra pass), none.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or notes; epoch lines only.")
@click.pass_context
def train_command(ctx, data_dir, download, epochs, threads, plot_path, metrics_path, save_path, checkpoint_every,
                  resume, train_metrics, quiet, **options):
    """Train a network on digit images, report cost and accuracy per epoch, plot train vs test cost."""
    note = (lambda message: None) if quiet else (lambda message: click.echo(message, err=True))
    if threads is not None and threads > numba.config.NUMBA_NUM_THREADS:
        raise click.BadParameter(f"at most {numba.config.NUMBA_NUM_THREADS} on this machine", param_hint="--threads")
    if checkpoint_every and not save_path:
        raise click.UsageError("--checkpoint-every needs --save PATH (the file the checkpoints go to)")
    set_threads(threads)
    warn_unwritable_cache()

    run = resume_run(ctx, resume, options, epochs) if resume else new_run(options, epochs)
    options, epochs = run["options"], run["epochs"]
    plot_path = plot_path or Path("plots") / f"{options['dataset']}-cost.png"
    try:
        if options["dataset"] == "mnist" and download:
            download_mnist(data_dir, progress=None if quiet else _download_progress())
        data = load_dataset(options["dataset"], data_dir, options["test_fraction"], options["seed"], options["dtype"])
    except DataError as error:
        fail(str(error))
    X_train, y_train = data.X_train, data.y_train
    train_size = options["train_size"]
    if train_size is not None:
        if train_size > len(X_train):
            raise click.BadParameter(f"{train_size} exceeds the {len(X_train)} training samples",
                                     param_hint="--train-size")
        X_train, y_train = X_train[:train_size], y_train[:train_size]
    X_validation = y_validation = None
    if options["early_stopping"] and not options["validation"]:
        raise click.UsageError("--early-stopping needs --validation N (the data it watches)")
    if options["validation"]:
        try:
            X_train, y_train, X_validation, y_validation = hold_out(X_train, y_train, options["validation"])
        except DataError as error:
            raise click.BadParameter(str(error), param_hint="--validation") from None

    net = run["net"] or Network([data.n_inputs, *options["hidden"], 10], activation=options["activation"],
                                output=options["output"], cost=options["cost"], dtype=options["dtype"],
                                seed=options["seed"], init=options["init"])
    optimizer = Optimizer(options["optimizer"], options["momentum"], options["beta1"], options["beta2"],
                          options["rho"], options["eps"], options["decoupled_weight_decay"], options["track_gradients"])
    if resume:
        optimizer.load_state(run["state"], net, run["step"])
    optimizer.attach(net)

    def schedule(epoch):
        return learning_rate(options["schedule"], options["lr"], epoch, epochs, options["lr_step"], options["lr_decay"])

    if net.sizes[0] != data.n_inputs:
        fail(f"{resume} has {net.sizes[0]} inputs but {options['dataset']} images have {data.n_inputs}")
    rng, history = run["rng"], run["history"]
    note(f"{options['dataset']}: {len(X_train)} training, {len(data.X_test)} test samples; network {net.sizes}, "
         f"{net.activation}/{net.output}, {net.cost_name}, {net.dtype.name}, init {net.init}, {optimizer.name}, "
         f"{numba.get_num_threads()} thread(s)"
         + (f"; resuming after epoch {run['first_epoch'] - 1}" if resume else ""))
    note("Preparing compiled kernels (compiled on first use, then loaded from the disk cache)...")
    seconds, compiled = prepare_kernels(net, options["batch_size"], optimizer, options["dropout"], train_metrics)
    note(f"Kernels {'compiled and cached' if compiled else 'loaded from cache'} in {seconds:.1f} s.")

    inputs = data.input_spec()

    best_epoch = run["best"]  # early stopping's best epoch so far, kept in checkpoints

    def save(epoch):
        checkpoint = dict(epoch=epoch, epochs=epochs, options=options, rng=rng.bit_generator.state,
                          optimizer_step=optimizer.step,
                          best_epoch=best_epoch.metrics.epoch if best_epoch.metrics else None)
        save_model(net, save_path, history, inputs=inputs, checkpoint=checkpoint,
                   state={**optimizer.state_arrays(), **best_epoch.arrays()})

    show_bar = not quiet and sys.stderr.isatty()
    held_out = "valid" if X_validation is not None else "test"
    click.echo(f"{'epoch':>7} {'train cost':>11} {held_out + ' cost':>11} {'train acc':>10} {held_out + ' acc':>10} "
               f"{'seconds':>8}")

    def on_epoch(metrics):
        history.append(metrics)
        cost, accuracy = ((metrics.validation_cost, metrics.validation_accuracy) if X_validation is not None
                          else (metrics.test_cost, metrics.test_accuracy))
        train_cost, train_accuracy = ((f"{metrics.train_cost:>11.4f}", f"{metrics.train_accuracy:>10.2%}")
                                      if metrics.train_cost is not None else (f"{'-':>11}", f"{'-':>10}"))
        click.echo(f"{metrics.epoch:>3}/{epochs:<3} {train_cost} {cost:>11.4f} {train_accuracy} {accuracy:>10.2%} "
                   f"{metrics.seconds:>8.2f}")
        if metrics_path:
            write_metrics(history, metrics_path)
        if checkpoint_every and metrics.epoch % checkpoint_every == 0:
            save(metrics.epoch)

    title = (f"{options['dataset']} (n_train={len(X_train)}): {'-'.join(map(str, net.sizes))}, "
             f"{net.activation}/{net.output}, {net.cost_name}, {optimizer.name}, batch {options['batch_size']}, "
             f"lr {options['lr']:g}" + (f" ({options['schedule']})" if options["schedule"] != "constant" else "")
             + f", l2 {options['l2']:g}")
    try:
        if run["first_epoch"] <= epochs:
            train(net, X_train, y_train, data.X_test, data.y_test, epochs, options["batch_size"], options["lr"],
                  options["l2"], rng=rng, first_epoch=run["first_epoch"], on_epoch=on_epoch,
                  on_progress=EpochProgressBar(epochs) if show_bar else None, optimizer=optimizer,
                  schedule=schedule, X_validation=X_validation, y_validation=y_validation,
                  patience=options["patience"] if options["early_stopping"] else None, dropout=options["dropout"],
                  best=best_epoch, train_metrics=train_metrics)
            if X_validation is not None:
                report_held_out(history, epochs, options, metrics_path)
        if save_path:
            save(epochs)
        plot_metrics(history, plot_path, title)
    except Diverged as error:
        if metrics_path:
            write_metrics(history, metrics_path)
        kept = f" {save_path} keeps the last good checkpoint." if save_path and save_path.exists() else ""
        fail(f"{error}; try a smaller learning rate than --lr {options['lr']:g}.{kept}"
             + (f" Metrics so far: {metrics_path}" if metrics_path else ""))
    except KeyboardInterrupt:
        last = f"; resume from the last checkpoint with: nbnet train --resume {save_path}" \
            if checkpoint_every and save_path.exists() else ""
        click.echo(f"Interrupted{last}", err=True)
        ctx.exit(130)
    except (OutputError, ValueError) as error:
        fail(str(error))
    scored = [m for m in history if m.test_accuracy is not None]
    best = max(scored, key=lambda m: m.test_accuracy) if scored else None
    note((f"Best test accuracy {best.test_accuracy:.2%} at epoch {best.epoch}. " if best else "") + f"Plot: {plot_path}"
         + (f"  Metrics: {metrics_path}" if metrics_path else "") + (f"  Model: {save_path}" if save_path else ""))


def report_held_out(history, epochs, options, metrics_path):
    """After a run with a validation set: why it stopped, and the one look at the test set."""
    kept = next((row for row in history if row.test_cost is not None), None)
    if kept is None:
        return
    if history[-1].epoch < epochs:
        click.echo(f"Stopped early after epoch {history[-1].epoch}: the validation cost has not improved for "
                   f"{options['patience']} epochs; kept the weights of epoch {kept.epoch} "
                   f"(validation cost {kept.validation_cost:.4f}).")
    click.echo(f"Test set, weights of epoch {kept.epoch}: cost {kept.test_cost:.4f}, accuracy {kept.test_accuracy:.2%}")
    if metrics_path:
        write_metrics(history, metrics_path)


def new_run(options, epochs):
    options = dict(options, hidden=list(options["hidden"]))
    return dict(options=options, epochs=epochs, net=None, history=[], first_epoch=1,
                rng=np.random.default_rng(options["seed"]), state={}, step=0, best=BestEpoch())


def resume_run(ctx, path, options, epochs):
    """The state saved in a model file: network, options, history, random generator, epoch."""
    try:
        net, metadata = load_model(path)
    except ModelError as error:
        fail(str(error))
    checkpoint = metadata.get("checkpoint")
    if not checkpoint:
        fail(f"{path} holds no checkpoint to resume (save one with nbnet train --save)")
    saved = dict(options, **checkpoint["options"])  # options a checkpoint predates keep their defaults
    for name in TRAINING_OPTIONS:
        given = ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE
        value = list(options[name]) if name == "hidden" else options[name]
        if given and value != saved[name]:
            raise click.UsageError(f"--{name.replace('_', '-')} {value} differs from the {saved[name]} of {path}; "
                                   f"a resumed run keeps its options")
    if ctx.get_parameter_source("epochs") != ParameterSource.COMMANDLINE:
        epochs = checkpoint["epochs"]
    if checkpoint["epoch"] >= epochs and ctx.get_parameter_source("epochs") == ParameterSource.COMMANDLINE:
        raise click.BadParameter(f"{path} already holds {checkpoint['epoch']} epochs; ask for more",
                                 param_hint="--epochs")
    rng = np.random.default_rng()
    rng.bit_generator.state = checkpoint["rng"]
    history = [EpochMetrics.from_dict(row) for row in metadata["history"]]
    best = BestEpoch.from_checkpoint(metadata["state"], history, checkpoint.get("best_epoch"))
    return dict(options=saved, epochs=epochs, net=net, history=history, first_epoch=checkpoint["epoch"] + 1, rng=rng,
                state=metadata["state"], step=checkpoint.get("optimizer_step", 0), best=best)


def warn_unwritable_cache():
    """Numba falls back to another cache directory when $NUMBA_CACHE_DIR is not writable; say so once."""
    directory = os.environ.get("NUMBA_CACHE_DIR")
    if directory and not cache_dir_writable(directory):
        click.echo(f"Warning: NUMBA_CACHE_DIR={directory} is not writable; compiled kernels are cached in "
                   f"{kernel_cache_dir()} instead.", err=True)


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


from . import cli_model  # noqa: E402,F401  (registers evaluate, predict, gradcheck, info)
