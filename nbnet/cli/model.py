"""`nbnet` commands that use a model or inspect nbnet: evaluate, predict, gradcheck, info, compile."""

import csv
import os
import platform
import time
from pathlib import Path

import click
import numba
import numpy as np

from .. import kernels
from ..activations import HIDDEN, NUMERIC_OUTPUTS, OUTPUT
from ..cache import kernel_cache_dir
from ..config import FASTMATH
from ..costs import COSTS
from ..data import DataError, Dataset
from ..options import DATASETS
from ..files import atomic_write
from ..tables import SUFFIXES, Columns, is_table, load_any_dataset, read_rows
from ..gradcheck import PASS_BELOW, VERDICTS, gradient_check, verdict
from ..images import ImageError, fit_image, read_image
from ..model_file import ModelError
from ..network import DTYPES, Network
from ..plots import OutputError, plot_evaluation, plot_first_layer
from ..train import set_threads
from ..warm import prepare_kernels
from ..version import __version__
from .group import fail, main
from .options import ChoiceOrFile, FiniteFloatRange
from .train import saved_columns


def open_model(path):
    try:
        return Network.load_with_metadata(path)
    except ModelError as error:
        fail(str(error))


# ----------------------------------------------------------------------------- evaluate
@main.command("evaluate")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dataset", type=ChoiceOrFile(DATASETS, SUFFIXES), default=None,
              help="Data to evaluate on [default: the data set the model was trained on, its test split]; another "
                   ".csv or .npz table is scored whole, its columns and labels matched to the model's.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), help="Where the IDX files are [default: where the model's run read them].")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Save the confusion matrix here (PNG), and beside it the most confidently wrong test "
                   "images (NAME-mistakes.png) and the first layer's weights (NAME-weights.png).")
def evaluate_command(model, dataset, data_dir, plot_path):
    """Cost, accuracy, per-class accuracy and confusion matrix of MODEL on the test set (for a
    model of numeric targets: cost, R^2 and mean |error| of each target)."""
    net, metadata = open_model(model)
    inputs = metadata.get("inputs") or {}
    options = (metadata.get("checkpoint") or {}).get("config") or {}
    dataset = dataset or inputs.get("dataset") or "digits"
    if data_dir is None and dataset == inputs.get("dataset"):  # where the run that saved it read its data
        data_dir = ((metadata.get("checkpoint") or {}).get("files") or {}).get("data_dir")
    numeric = net.output in NUMERIC_OUTPUTS  # a model of numeric targets (regression)
    columns = saved_columns(inputs)
    try:
        if columns is not None and dataset != inputs.get("dataset"):  # another table: all of it
            data, what = other_table(dataset, columns, inputs, numeric, net.dtype.name), dataset
        else:  # the test split the model was trained beside (same seed and fraction)
            data = load_any_dataset(dataset, data_dir, options.get("test_fraction", 0.2), options.get("seed", 0),
                                    net.dtype.name, options.get("label_column", "label"),
                                    "numbers" if numeric else "classes", columns=columns)
            what = f"the {dataset} test set"
    except DataError as error:
        fail(str(error))
    if data.n_inputs != net.sizes[0]:
        fail(f"{model} takes {net.sizes[0]} inputs but {dataset} has {data.n_inputs} "
             f"{'pixels' if data.image_shape else 'features'}")
    prepare_kernels(net, targets="matrix" if numeric else "ids")
    l2, n_train = options.get("l2", 0.0), options.get("train_size") or len(data.X_train) or 1
    cost, accuracy = net.evaluate(data.X_test, data.y_test, l2, n_train)
    if numeric:
        report_numeric(model, what, net.forward(data.X_test), data.y_test, cost, plot_path)
    else:
        report_classes(model, what, net, data, cost, accuracy, plot_path)


def other_table(path, columns, inputs, numeric, dtype):
    """A Dataset whose test set is every row of the table `path`, read for a model of these
    columns (and classes, or numeric targets)."""
    class_names = None if numeric else inputs.get("class_names")
    X, y = read_rows(path, columns, class_names, labels="required")
    X = X.astype(dtype)
    y = y.astype(dtype) if numeric else y
    return Dataset(str(path), X[:0], y[:0], X, y, None, None if numeric else tuple(class_names),
                   y.shape[1] if numeric else None, columns)


def report_classes(model, dataset, net, data, cost, accuracy, plot_path):
    """evaluate's report for classes: cost, accuracy, per-class accuracy, confusion matrix, plots."""
    probabilities = net.forward(data.X_test)
    predicted = np.argmax(probabilities, axis=1)
    n_classes = net.sizes[-1]
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (data.y_test, predicted), 1)
    click.echo(f"{model} on {dataset} ({len(data.y_test)} {'images' if data.image_shape else 'rows'}): cost "
               f"{cost:.4f}, accuracy {accuracy:.2%}")
    click.echo("per-class accuracy: " + "  ".join(
        f"{data.label(c)}: {confusion[c, c] / max(1, confusion[c].sum()):.1%}" for c in range(n_classes)))
    click.echo("confusion matrix (rows: true class, columns: predicted class)")
    click.echo("      " + "".join(f"{c:>6}" for c in range(n_classes)))
    for c in range(n_classes):
        click.echo(f"{c:>6}" + "".join(f"{v:>6}" for v in confusion[c]))
    if plot_path:
        try:
            images = data.image_shape is not None  # (a table of features has no pictures of mistakes or weights)
            mistakes = plot_path.with_name(plot_path.stem + "-mistakes.png") if images else None
            weights = plot_path.with_name(plot_path.stem + "-weights.png")
            plot_evaluation(confusion, data, probabilities, predicted, plot_path, mistakes, f"{model.name} on {dataset}")
            if images:
                plot_first_layer(net.weights[0], data.image_shape, weights, model.name)
        except OutputError as error:
            fail(str(error))
        click.echo(f"Plots: {plot_path}" + (f", {mistakes}, {weights}" if images else ""))


def report_numeric(model, dataset, prediction, Y, cost, plot_path):
    """evaluate's report for numeric targets: the cost, and R^2 and the mean |error| of each target."""
    residual = prediction - Y
    r2 = 1 - (residual ** 2).sum(axis=0) / np.maximum(((Y - Y.mean(axis=0)) ** 2).sum(axis=0), 1e-300)
    click.echo(f"{model} on {dataset} ({len(Y)} rows): cost {cost:.4f}, R^2 "
               + ", ".join(f"{value:.4f}" for value in r2) + ", mean |error| "
               + ", ".join(f"{value:.4g}" for value in np.abs(residual).mean(axis=0)))
    if plot_path:
        click.echo("(no plots for numeric targets: the training run's cost plot shows them)", err=True)


# ----------------------------------------------------------------------------- predict
@main.command("predict")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("images", metavar="IMAGES|ROWS", type=click.Path(dir_okay=False, path_type=Path), nargs=-1,
                required=True)
@click.option("--invert", is_flag=True, help="The images are dark ink on light paper (MNIST is light on dark).")
@click.option("--top-k", type=click.IntRange(min=1), default=1, show_default=True,
              help="Print the K most probable classes per image or row.")
@click.option("--output", "output_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Rows: also write them, each with its prediction, to this CSV file.")
def predict_command(model, images, invert, top_k, output_path):
    """The digit in each image (PNG, JPEG, ... or a 2-D .npy array), with its probability; or,
    for a model trained on a table, the prediction for each row of a .csv or .npz file.

    Each image is converted to grayscale, its digit cropped, scaled and centred the way the
    model's training images were, then classified. The rows of a table are matched to the
    model's columns by name and encoded as its training rows were."""
    net, metadata = open_model(model)
    inputs = metadata.get("inputs")
    if inputs and "image_shape" not in inputs and ("class_names" in inputs or "targets" in inputs):
        return predict_rows(model, net, inputs, images, top_k, output_path)
    if not inputs or "image_shape" not in inputs:
        fail(f"{model} does not say how its inputs were made (save it with nbnet train --save)")
    if output_path:
        raise click.UsageError("--output writes rows of a table with their predictions; images are printed")
    shape = inputs["image_shape"]
    if shape[0] * shape[1] != net.sizes[0]:
        fail(f"{model}: image shape {shape} does not match its {net.sizes[0]} inputs")
    rows = []
    for path in images:
        try:
            rows.append(fit_image(read_image(path), shape, inputs["digit_fraction"], invert))
        except ImageError as error:
            fail(f"{path}: {error}" if not str(error).startswith(str(path)) else str(error))
    prepare_kernels(net)
    probabilities = net.forward(np.array(rows))
    k = min(top_k, net.sizes[-1])
    names = inputs.get("class_names") or [str(c) for c in range(net.sizes[-1])]
    for path, p in zip(images, probabilities):
        best = np.argsort(-p)[:k]
        click.echo(f"{path}: " + ", ".join(f"{names[c]} ({p[c]:.1%})" for c in best))


def predict_rows(model, net, inputs, paths, top_k, output_path):
    """predict for a model of a table: one line per row of the .csv or .npz file, and with
    output_path the rows with their predictions as a CSV."""
    if len(paths) != 1 or not is_table(paths[0]):
        fail(f"{model} was trained on a table of features ({inputs.get('dataset')}), not on images: give it one .csv "
             f"or .npz file of rows")
    columns = saved_columns(inputs) or Columns.numbers(net.sizes[0])  # (a model from before columns were kept)
    try:
        X, _ = read_rows(paths[0], columns, labels="ignore")
    except DataError as error:
        fail(str(error))
    prepare_kernels(net)
    outputs = net.forward(X)
    classes = inputs.get("class_names")
    if classes:
        best = np.argsort(-outputs, axis=1)[:, :min(top_k, len(classes))]
        lines = [", ".join(f"{classes[c]} ({p[c]:.1%})" for c in order) for order, p in zip(best, outputs)]
        added = {"predicted": [classes[order[0]] for order in best],
                 "probability": [f"{p[order[0]]:.6g}" for order, p in zip(best, outputs)]}
    else:
        names = [columns.label] if columns.label and net.sizes[-1] == 1 else [f"y{j + 1}" for j in range(net.sizes[-1])]
        lines = [", ".join(f"{value:.6g}" for value in row) for row in outputs]
        added = {f"predicted_{name}": [f"{value:.6g}" for value in outputs[:, j]] for j, name in enumerate(names)}
    for number, line in enumerate(lines, 1):
        click.echo(f"row {number}: {line}")
    if output_path:
        try:
            write_predictions(paths[0], X, columns, added, output_path)
        except OutputError as error:
            fail(str(error))
        click.echo(f"Predictions: {output_path}", err=True)


def write_predictions(path, X, columns, added, output_path):
    """The rows of `path` (a CSV's fields as they were; a .npz's X as numbers) with the columns
    `added` after them, as a CSV at output_path (atomically)."""
    if str(path).lower().endswith(".csv"):
        with open(path, newline="") as handle:
            rows = list(csv.reader(handle))
        header, rows = [name.strip() for name in rows[0]], [[field.strip() for field in row] for row in rows[1:]]
    else:
        header, rows = list(columns.names), [[f"{value:.17g}" for value in row] for row in X]

    def write(temporary):
        with open(temporary, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header + list(added))
            for i, row in enumerate(rows):
                writer.writerow(row + [values[i] for values in added.values()])

    atomic_write(output_path, write)


# ----------------------------------------------------------------------------- export
@main.command("export")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("output", type=click.Path(dir_okay=False, path_type=Path))
def export_command(model, output):
    """Write MODEL (saved by nbnet train) as an ONNX graph that any ONNX runtime runs: its
    input scaling (pixels to [0, 1], a table's categories and standardisation) inside, its class
    names as labels. Needs the onnx extra: pip install 'nbnet[onnx]'."""
    try:
        from ..onnx import export_model

        inputs, outputs = export_model(model, output)
    except (ImportError, ModelError, OutputError) as error:
        fail(str(error))
    click.echo(f"{output}: inputs {', '.join(inputs)}; outputs {', '.join(outputs)}")


# ----------------------------------------------------------------------------- gradcheck
@main.command("gradcheck")
@click.option("--hidden", type=click.IntRange(min=1), multiple=True, default=(5, 4), show_default=True,
              help="Hidden layer sizes of the small test network (repeatable).")
@click.option("--inputs", type=click.IntRange(min=1), default=6, show_default=True)
@click.option("--outputs", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--activation", type=click.Choice(HIDDEN), default="sigmoid", show_default=True)
@click.option("--output", type=click.Choice(OUTPUT), default="softmax", show_default=True)
@click.option("--cost", type=click.Choice(tuple(COSTS)), default="cross-entropy", show_default=True)
@click.option("--l2", type=FiniteFloatRange(min=0), default=0.0, show_default=True)
@click.option("--samples", type=click.IntRange(min=1), default=7, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def gradcheck_command(hidden, inputs, outputs, activation, output, cost, l2, samples, seed):
    """Compare backpropagation's gradients with finite differences, layer by layer."""
    sizes = [inputs, *hidden, outputs]
    click.echo(f"gradient check: network {sizes}, {activation}/{output}, {cost}, l2 {l2:g}, {samples} samples, float64")
    rows = gradient_check(sizes, activation, output, cost, l2, samples, seed)
    for name, error in rows:
        click.echo(f"  {name:<4} relative error {error:9.2e}   {verdict(error).split(':')[0]}")
    worst = max(error for _, error in rows)
    click.echo("relative error = |g_backprop - g_numerical| / max(|g_backprop| + |g_numerical|, 1e-5); reading it:")
    for limit, text in VERDICTS:
        click.echo(f"  below {limit:.0e}: {text}" if np.isfinite(limit) else f"  above: {text}")
    if worst < PASS_BELOW:
        click.echo(f"PASS (largest relative error {worst:.2e})")
    else:
        click.echo(f"FAIL (largest relative error {worst:.2e} is not below {PASS_BELOW:.0e})")
        raise SystemExit(1)


# ----------------------------------------------------------------------------- info
@main.command("info")
def info_command():
    """Versions, threading and where compiled kernels are cached."""
    set_threads(None)
    z = np.zeros((1, 1), dtype=np.float32)
    kernels.activate(z, 0, z)  # a parallel kernel has run: Numba knows its threading layer
    click.echo(f"nbnet {__version__}")
    click.echo(f"python {platform.python_version()}, numpy {np.__version__}, numba {numba.__version__}")
    click.echo(f"threading layer {numba.threading_layer()}, threads {numba.get_num_threads()} "
               f"(of {numba.config.NUMBA_NUM_THREADS}; {os.cpu_count()} cores)")
    click.echo(f"fast-math flags {', '.join(sorted(FASTMATH))}")
    click.echo(f"kernel cache {kernel_cache_dir()}")


# ----------------------------------------------------------------------------- compile
@main.command("compile")
@click.option("--dtype", type=click.Choice([*DTYPES, "all"]), default="float32", show_default=True)
@click.option("--hidden-layers", type=click.IntRange(1, 8), multiple=True, default=(1,), show_default=True,
              help="For networks with this many hidden layers (repeatable: --hidden-layers 1 --hidden-layers 2).")
@click.option("--optimizers", type=click.Choice(["sgd", "all"]), default="all", show_default=True,
              help="sgd: plain SGD only; all: also momentum, nesterov, rmsprop, adam and --track-gradients.")
@click.option("--dropout/--no-dropout", default=False, show_default=True, help="Also the dropout paths.")
@click.option("--threads", type=click.IntRange(1), default=None,
              help="1: the one-thread variants only, all that runs with --threads 1 use (a sweep's or a cluster's "
                   "one-thread workers) [default: both variants].")
def compile_command(dtype, hidden_layers, optimizers, dropout, threads):
    """Compile the kernels into the disk cache ahead of time (for a container image or cluster
    workers), so that the first `nbnet train` loads them instead of compiling.

    Covers training, evaluation and prediction with the given settings, for narrow networks
    (nbnet.narrow: up to 20,000 weights) and wide ones, in both variants: one thread (small
    networks, --threads 1) and parallel. Each run compiles only what it uses anyway; this only
    moves that time to when you choose. (With two cores, a helper process compiles the backward
    half of each wide training path meanwhile, as `nbnet train` does.)"""
    from itertools import product

    from ..warm import compile_run

    set_threads(None)
    start = time.perf_counter()
    variants = (False,) if threads == 1 else (False, True)  # (parallel?)
    networks = list(product(DTYPES if dtype == "all" else (dtype,), sorted(set(hidden_layers)), ("narrow", "wide"),
                            variants))
    paths = list(product(("sgd", "adam") if optimizers == "all" else ("sgd",), (False, True) if dropout else (False,)))
    for (name, layers, family, parallel), (optimizer, dropped) in product(networks, [*paths, (None, False)]):
        if family == "narrow" and dropped:
            continue  # (a narrow network with dropout trains through the wide passes)
        narrow = family == "narrow"
        if narrow and optimizer == "adam":
            continue  # (nbnet.narrow's steps take every optimiser: compiled with sgd's)
        began = time.perf_counter()
        compile_run(dict(layers=layers + 1, dtype=name, parallel_evaluation=parallel and not narrow,
                         parallel_training=parallel, optimizer=optimizer, track_gradients=False, dropout=dropped,
                         running=False, kernel_set="fast", narrow=narrow, narrow_steps=narrow and optimizer is not None))
        what = ("evaluate and predict" if optimizer is None else "train, " + (
            "every optimiser" if narrow else "sgd" if optimizer == "sgd" else "momentum, nesterov, rmsprop, adam")
            + (", dropout" if dropped else ""))
        click.echo(f"{name}, {layers} hidden layer(s), {family} network, {'parallel' if parallel else 'one thread'}: "
                   f"{what}: {time.perf_counter() - began:.1f} s")
    click.echo(f"Compiled in {time.perf_counter() - start:.1f} s into {kernel_cache_dir()}")
