"""`nbnet train`: build the run's TrainConfig from the options (or from a checkpoint), train,
report each epoch, and write the plot, the metrics CSV and the model file."""

import contextlib
import os
import sys
import time
import warnings
from pathlib import Path

import click
import numba
import numpy as np
from click.core import ParameterSource

from .. import scaling
from ..cache import cache_dir_writable, kernel_cache_dir
from ..data import IDX_SETS, DataError, default_data_dir, download as download_idx_set, split_for
from ..model_file import ModelError
from ..network import Network
from ..costs import OUTPUTS_OF
from ..options import TrainConfig, output_mismatch
from ..config import threads_in_use
from ..plots import OutputError, plot_metrics, pyplot, write_metrics
from ..tables import Columns, load_any_dataset
from ..train import BestEpoch, Diverged, EpochMetrics, RunState, optimizer_for, set_threads, train, watched_cost
from ..warm import prepare_kernels
from .group import fail, main
from .options import config_from, config_options

# Options a resumed run may change: how long it runs and what it reports, not what it computes.
RESUMABLE_CHANGES = ("epochs", "train_metrics", "stop_on_divergence")


@main.command("train")
@config_options()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where the IDX files of mnist, fashion-mnist or kmnist are [default: ~/.cache/nbnet/DATASET; "
                   "for mnist $NBNET_DATA_DIR if set].")
@click.option("--download", is_flag=True, help="Download the IDX files into --data-dir first if they are missing.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help=f"Threads for the parallel kernels [default: all cores, {numba.config.NUMBA_NUM_THREADS}].")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to save the cost plot [default: plots/<dataset>-cost.png].")
@click.option("--metrics", "metrics_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write one CSV row per epoch here.")
@click.option("--save", "save_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Save the trained model (.npz) here; it can be evaluated, used and resumed.")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=None,
              help="Also save the model (with the state to resume from) every K epochs; needs --save (or --resume, "
                   "whose file it then writes).")
@click.option("--resume", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Continue the run saved in this model file, with its options, exactly where it stopped.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or notes; epoch lines only.")
@click.pass_context
def train_command(ctx, data_dir, download, threads, plot_path, metrics_path, save_path, checkpoint_every, resume,
                  quiet, **options):
    """Train a network on digit images, report cost and accuracy per epoch, plot train vs test cost."""
    note = (lambda message: None) if quiet else (lambda message: click.echo(message, err=True))
    check_run_options(threads, checkpoint_every, save_path or resume, options)
    set_threads(threads)
    warn_unwritable_cache()
    config, net, state, history, saved_files, inputs = resumed_run(ctx, resume, options) if resume else new_run(options)
    files = run_files(ctx, resume, saved_files, data_dir=data_dir, plot_path=plot_path, metrics_path=metrics_path,
                      save_path=save_path, checkpoint_every=checkpoint_every)
    data = load_data(config, files["data_dir"], download, quiet, saved_columns(inputs))
    files["data_dir"] = files["data_dir"] or (default_data_dir(config.dataset) if config.dataset in IDX_SETS else None)
    if config.augment:
        require_images(config, data, "--augment")
    split = training_split(data, config)
    net = net or new_network(config, data, split, note)
    if (net.sizes[0], net.sizes[-1]) != (data.n_inputs, data.n_classes):
        fail(f"{resume} has {net.sizes[0]} inputs and {net.sizes[-1]} outputs but {config.dataset} has "
             f"{data.n_inputs} features and {data.n_classes} classes")
    note(f"{config.dataset}: {len(split.X_train)} training, {len(split.X_test)} test samples; network {net.sizes}, "
         f"{net.activation}/{net.output}, {net.cost_name}, {net.dtype.name}, init {net.init}, {config.optimizer}, "
         f"{threads_in_use()} thread(s)" + (f"; resuming after epoch {state.first_epoch - 1}" if resume else ""))
    note("Preparing compiled kernels (compiled on first use, then loaded from the disk cache)...")
    seconds, compiled = prepare_kernels(net, config.batch_size, state.optimizer, config.dropout, config.train_metrics,
                                        "matrix" if data.targets else "ids", split.X_train.dtype == np.uint8,
                                        config.augment, meanwhile=pyplot)
    note(f"Kernels {'compiled and cached' if compiled else 'loaded from cache'} in {seconds:.1f} s.")
    files["plot_path"] = files["plot_path"] or Path("plots") / f"{config.dataset}-cost.png"
    report = Report(config, net, state, history, data.input_spec(), split.X_validation is not None, files)
    title, targets = plot_title(config, net, len(split.X_train)), data.targets
    with ending_cleanly(ctx, report, config):
        run_epochs(net, split, config, state, report, show_bar=not quiet and sys.stderr.isatty())
    # What follows needs only the history and the weights: the images go back to the system before matplotlib
    # loads for the plot, which would otherwise add its ~40 MB to the run's peak memory on top of theirs.
    del data, split
    with ending_cleanly(ctx, report, config):
        if report.save_path:
            report.save(config.epochs)
        plot_metrics(report.history, report.files["plot_path"], title)
    scored = [m for m in history if m.test_accuracy is not None]
    best = max(scored, key=lambda m: m.test_accuracy) if scored and not targets else None
    note((f"Best test accuracy {best.test_accuracy:.2%} at epoch {best.epoch}. " if best else "")
         + f"Plot: {files['plot_path']}" + (f"  Metrics: {files['metrics_path']}" if files["metrics_path"] else "")
         + (f"  Model: {files['save_path']}" if files["save_path"] else ""))


def new_network(config, data, split, note):
    """The run's new Network, with the Scaling of its table (nbnet.scaling) fitted on the
    training split."""
    net = config.network(data.n_inputs, data.n_classes)
    try:
        net.scaling = scaling.for_run(data, split, config, net.output)
    except ValueError as error:
        fail(f"{config.dataset}: {error}")
    constant = scaling.constant_columns(net.scaling, data, split)
    if constant:
        note(f"Note: {', '.join(constant[:5])}{' ...' if len(constant) > 5 else ''} "
             f"{'is' if len(constant) == 1 else 'are'} the same in every training row (no information)")
    return net


def check_run_options(threads, checkpoint_every, save_path, options):
    """Usage errors the option types cannot catch alone (save_path: where the model goes, which
    for a resumed run is the file it resumes from unless --save says otherwise)."""
    if threads is not None and threads > numba.config.NUMBA_NUM_THREADS:
        raise click.BadParameter(f"at most {numba.config.NUMBA_NUM_THREADS} on this machine", param_hint="--threads")
    if checkpoint_every and not save_path:
        raise click.UsageError("--checkpoint-every needs --save PATH (the file the checkpoints go to)")
    if options["early_stopping"] and not options["validation"]:
        raise click.UsageError("--early-stopping needs --validation N (the data it watches)")
    if options["output"] is not None and options["output"] not in OUTPUTS_OF[options["cost"]]:
        raise click.UsageError(output_mismatch(options["cost"], options["output"]))


def new_run(options):
    """(config, network, state, history, files, inputs) of a run from epoch 1; the network is
    made once the data say how many inputs it has."""
    config = config_from(options)
    return config, None, RunState.start(config), [], {}, None


def resumed_run(ctx, path, options):
    """(config, network, state, history, files, inputs) saved in a model file's checkpoint. Options
    given on the command line must agree with the saved config, except RESUMABLE_CHANGES."""
    try:
        net, metadata = Network.load_with_metadata(path)
    except ModelError as error:
        fail(str(error))
    checkpoint = metadata.get("checkpoint")
    if not checkpoint:
        fail(f"{path} holds no checkpoint to resume (save one with nbnet train --save)")
    saved = TrainConfig.from_dict(checkpoint["config"])
    given = config_from(options)
    for name in given.differences(saved, ignore=RESUMABLE_CHANGES):
        if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE:
            value = list(getattr(given, name)) if name == "hidden" else getattr(given, name)
            shown = list(getattr(saved, name)) if name == "hidden" else getattr(saved, name)
            raise click.UsageError(f"--{name.replace('_', '-')} {value} differs from the {shown} of {path}; "
                                   f"a resumed run keeps its options")
    changes = {name: getattr(given, name) for name in RESUMABLE_CHANGES
               if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE}
    config = saved.but(epochs=checkpoint["epochs"]).but(**changes)
    if checkpoint["epoch"] >= config.epochs and "epochs" in changes:
        raise click.BadParameter(f"{path} already holds {checkpoint['epoch']} epochs; ask for more",
                                 param_hint="--epochs")
    rng = np.random.default_rng()
    rng.bit_generator.state = checkpoint["rng"]
    history = [EpochMetrics.from_dict(row) for row in metadata["history"]]
    optimizer = optimizer_for(config)
    optimizer.load_state(metadata["state"], net, checkpoint.get("optimizer_step", 0))
    best = BestEpoch.from_checkpoint(metadata["state"], history, checkpoint.get("best_epoch"))
    state = RunState(rng, checkpoint["epoch"] + 1, optimizer, best)
    state.watched = [watched_cost(row) for row in history]  # (--schedule adaptive's rate follows from them)
    return config, net, state, history, checkpoint.get("files", {}), metadata.get("inputs")


def run_files(ctx, resume, saved, **given):
    """The files of the run (data_dir, plot_path, metrics_path, save_path, checkpoint_every): as
    given; a resumed run keeps, unless told otherwise, writing where the original run wrote, at
    its checkpoint interval, into the file it resumes from, and reads the data where it did."""
    files = dict(given)
    if resume:
        for name, value in saved.items():
            if name in files and value is not None and ctx.get_parameter_source(name) != ParameterSource.COMMANDLINE:
                files[name] = value if name == "checkpoint_every" else Path(value)
        if ctx.get_parameter_source("save_path") != ParameterSource.COMMANDLINE:
            files["save_path"] = resume
    return files


def saved_columns(inputs):
    """The nbnet.tables.Columns a model file's inputs describe (None: images, or no model)."""
    return Columns.from_dict(inputs["columns"]) if inputs and inputs.get("columns") else None


def absolute(files):
    """`files` for a checkpoint: paths made absolute, so a run resumed from another directory
    writes and reads the same files."""
    return {name: (str(Path(value).absolute()) if isinstance(value, Path) else value) for name, value in files.items()}


def load_data(config, data_dir, download, quiet, columns=None):
    """The run's Dataset (downloading its IDX files first when asked); a table's features
    encoded as `columns` (a resumed model's nbnet.tables.Columns) say, if given."""
    try:
        if config.dataset in IDX_SETS and download:
            download_idx_set(config.dataset, data_dir, progress=None if quiet else download_progress())
        return load_any_dataset(config.dataset, data_dir, config.test_fraction, config.seed, config.data_dtype,
                                config.label_column, config.targets, config.categorical, columns)
    except DataError as error:
        fail(str(error))


def require_images(config, data, param_hint):
    """A usage error unless the data set is one of images (what --augment distorts)."""
    if data.image_shape is None:
        raise click.BadParameter(f"--augment distorts images, and {config.dataset} is a table of features",
                                 param_hint=param_hint)


def training_split(data, config):
    """The run's Split: --train-size samples, with --validation held out of them."""
    if config.train_size is not None and config.train_size > len(data.X_train):
        raise click.BadParameter(f"{config.train_size} exceeds the {len(data.X_train)} training samples",
                                 param_hint="--train-size")
    try:
        return split_for(data, config.train_size, config.validation)
    except DataError as error:
        raise click.BadParameter(str(error), param_hint="--validation") from None


class Report:
    """What happens after each epoch: its line on stdout, the metrics CSV, the checkpoints."""

    def __init__(self, config, net, state, history, inputs, validating, files):
        self.config, self.net, self.state, self.history, self.inputs = config, net, state, history, inputs
        self.validating, self.files, self.metrics_path = validating, files, files["metrics_path"]
        self.save_path, self.checkpoint_every = files["save_path"], files["checkpoint_every"]

    def header(self):
        held_out = "valid" if self.validating else "test"
        click.echo(f"{'epoch':>7} {'train cost':>11} {held_out + ' cost':>11} {'train acc':>10} "
                   f"{held_out + ' acc':>10} {'seconds':>8}")

    def __call__(self, metrics):
        self.history.append(metrics)
        cost, accuracy = ((metrics.validation_cost, metrics.validation_accuracy) if self.validating
                          else (metrics.test_cost, metrics.test_accuracy))
        train_cost, train_accuracy = ((f"{metrics.train_cost:>11.4f}", f"{metrics.train_accuracy:>10.2%}")
                                      if metrics.train_cost is not None else (f"{'-':>11}", f"{'-':>10}"))
        accuracy = f"{accuracy:>10.2%}"
        if self.config.targets == "numbers":  # the cost says it all
            train_accuracy = accuracy = f"{'-':>10}"
        click.echo(f"{metrics.epoch:>3}/{self.config.epochs:<3} {train_cost} {cost:>11.4f} {train_accuracy} "
                   f"{accuracy} {metrics.seconds:>8.2f}")
        self.write_metrics()
        if self.checkpoint_every and metrics.epoch % self.checkpoint_every == 0:
            self.save(metrics.epoch)

    def write_metrics(self):
        if self.metrics_path:
            write_metrics(self.history, self.metrics_path)

    def save(self, epoch):
        """The model with everything --resume needs to continue after `epoch`."""
        state, best = self.state, self.state.best
        checkpoint = dict(epoch=epoch, epochs=self.config.epochs, config=self.config.as_dict(),
                          rng=state.rng.bit_generator.state, optimizer_step=state.optimizer.step,
                          best_epoch=best.metrics.epoch if best.metrics else None, files=absolute(self.files))
        self.net.save(self.save_path, self.history, inputs=self.inputs, checkpoint=checkpoint,
                      state={**state.optimizer.state_arrays(), **best.arrays()})


def run_epochs(net, split, config, state, report, show_bar):
    """Train what remains of the run (its epoch lines, metrics and checkpoints)."""
    report.header()
    if state.first_epoch <= config.epochs:
        with warnings.catch_warnings():  # a DivergenceWarning as one line between the epochs' lines
            warnings.showwarning = lambda message, *_: click.echo(f"Warning: {message}", err=True)
            train(net, split, config, on_epoch=report,
                  on_progress=EpochProgressBar(config.epochs, config.batch_size) if show_bar else None, state=state)
        if report.validating:
            report_held_out(report.history, config)
            report.write_metrics()


@contextlib.contextmanager
def ending_cleanly(ctx, report, config):
    """A divergence, Ctrl-C or an output that cannot be written ends the run with one line, the
    last good checkpoint kept."""
    try:
        yield
    except Diverged as error:
        report.write_metrics()
        save_path, metrics_path = report.save_path, report.metrics_path
        kept = f" {save_path} keeps the last good checkpoint." if save_path and save_path.exists() else ""
        fail(f"{error}; try a smaller learning rate than --lr {config.lr:g}.{kept}"
             + (f" Metrics so far: {metrics_path}" if metrics_path else ""))
    except KeyboardInterrupt:
        last = f"; resume from the last checkpoint with: nbnet train --resume {report.save_path}" \
            if report.checkpoint_every and report.save_path.exists() else ""
        click.echo(f"Interrupted{last}", err=True)
        ctx.exit(130)
    except (OutputError, ValueError) as error:
        fail(str(error))


def plot_title(config, net, n_train):
    return (f"{config.dataset} (n_train={n_train}): {'-'.join(map(str, net.sizes))}, {net.activation}/{net.output}, "
            f"{net.cost_name}, {config.optimizer}, batch {config.batch_size}, lr {config.lr:g}"
            + (f" ({config.schedule})" if config.schedule != "constant" else "") + f", l2 {config.l2:g}"
            + (", --augment" if config.augment else ""))


def report_held_out(history, config):
    """After a run with a validation set: why it stopped, and the one look at the test set."""
    kept = next((row for row in history if row.test_cost is not None), None)
    if kept is None:
        return
    if history[-1].epoch < config.epochs:
        click.echo(f"Stopped early after epoch {history[-1].epoch}: the validation cost has not improved for "
                   f"{config.patience} epochs; kept the weights of epoch {kept.epoch} "
                   f"(validation cost {kept.validation_cost:.4f}).")
    click.echo(f"Test set, weights of epoch {kept.epoch}: cost {kept.test_cost:.4f}, accuracy {kept.test_accuracy:.2%}")


def warn_unwritable_cache():
    """Numba falls back to another cache directory when $NUMBA_CACHE_DIR is not writable; say so once."""
    directory = os.environ.get("NUMBA_CACHE_DIR")
    if directory and not cache_dir_writable(directory):
        click.echo(f"Warning: NUMBA_CACHE_DIR={directory} is not writable; compiled kernels are cached in "
                   f"{kernel_cache_dir()} instead.", err=True)


class EpochProgressBar:
    """A click progress bar on stderr for each epoch, with samples per second and the time
    left; erased when the epoch ends, so that the epoch's row takes its place. Called as
    (epoch, batches_done, n_batches)."""

    def __init__(self, epochs, batch_size):
        self.epochs, self.batch_size, self.bar, self.done, self.start = epochs, batch_size, None, 0, 0.0

    def __call__(self, epoch, done, total):
        if self.bar is None:
            self.bar = click.progressbar(length=total, label=f"epoch {epoch}/{self.epochs}", file=sys.stderr,
                                         show_eta=True, show_percent=True)
            self.bar.__enter__()
            self.done, self.start = 0, time.perf_counter()
        elapsed = time.perf_counter() - self.start
        if elapsed > 0.2:  # (before that, a rate would mostly measure the first slice's start-up)
            self.bar.label = f"epoch {epoch}/{self.epochs} {done * self.batch_size / elapsed:>9,.0f} samples/s"
        self.bar.update(done - self.done)
        self.done = done
        if done == total:
            self.bar.__exit__(None, None, None)
            self.bar = None
            sys.stderr.write("\x1b[1A\x1b[2K")  # up one line, clear it: the finished bar goes
            sys.stderr.flush()


def download_progress():
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
