"""`nbnet` commands that use a model or inspect nbnet: evaluate, predict, gradcheck, info."""

import os
import platform
import time
from pathlib import Path

import click
import numba
import numpy as np

from . import __version__, kernels
from .activations import HIDDEN, OUTPUT
from .cli import fail, main
from .config import FASTMATH, kernel_cache_dir
from .costs import COSTS
from .data import DataError, load_dataset
from .files import OutputError, atomic_write
from .gradcheck import PASS_BELOW, VERDICTS, gradient_check, verdict
from .images import ImageError, fit_image, read_image
from .model_file import ModelError, load_model
from .network import DTYPES
from .optimizers import OPTIMIZERS
from .train import prepare_kernels, set_threads


def open_model(path):
    try:
        return load_model(path)
    except ModelError as error:
        fail(str(error))


# ----------------------------------------------------------------------------- evaluate
@main.command("evaluate")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dataset", type=click.Choice(["digits", "mnist"]), default=None,
              help="Data to evaluate on [default: the data set the model was trained on].")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), help="Where the MNIST IDX files are.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Save the confusion matrix here (PNG) and the most confidently wrong test images "
                   "beside it (NAME-mistakes.png).")
def evaluate_command(model, dataset, data_dir, plot_path):
    """Cost, accuracy, per-class accuracy and confusion matrix of MODEL on the test set."""
    net, metadata = open_model(model)
    inputs = metadata.get("inputs") or {}
    options = (metadata.get("checkpoint") or {}).get("options") or {}
    dataset = dataset or inputs.get("dataset") or "digits"
    try:  # the digits test split is the one the model was trained beside (same seed and fraction)
        data = load_dataset(dataset, data_dir, options.get("test_fraction", 0.2), options.get("seed", 0),
                            net.dtype.name)
    except DataError as error:
        fail(str(error))
    if data.n_inputs != net.sizes[0]:
        fail(f"{model} takes {net.sizes[0]} inputs but {dataset} images have {data.n_inputs} pixels")
    prepare_kernels(net)
    l2, n_train = options.get("l2", 0.0), options.get("train_size") or len(data.X_train)
    cost, accuracy = net.evaluate(data.X_test, data.y_test, l2, n_train)
    probabilities = net.forward(data.X_test)
    predicted = np.argmax(probabilities, axis=1)
    n_classes = net.sizes[-1]
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (data.y_test, predicted), 1)
    click.echo(f"{model} on the {dataset} test set ({len(data.y_test)} images): cost {cost:.4f}, "
               f"accuracy {accuracy:.2%}")
    click.echo("per-class accuracy: " + "  ".join(
        f"{c}: {confusion[c, c] / max(1, confusion[c].sum()):.1%}" for c in range(n_classes)))
    click.echo("confusion matrix (rows: true class, columns: predicted class)")
    click.echo("      " + "".join(f"{c:>6}" for c in range(n_classes)))
    for c in range(n_classes):
        click.echo(f"{c:>6}" + "".join(f"{v:>6}" for v in confusion[c]))
    if plot_path:
        try:
            mistakes = plot_path.with_name(plot_path.stem + "-mistakes.png")
            plot_evaluation(confusion, data, probabilities, predicted, plot_path, mistakes, f"{model.name} on {dataset}")
        except OutputError as error:
            fail(str(error))
        click.echo(f"Plots: {plot_path}, {mistakes}")


def plot_evaluation(confusion, data, probabilities, predicted, confusion_path, mistakes_path, title):
    """A confusion-matrix heat map, and a gallery of the most confidently wrong test images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 5.4))
    image = axes.imshow(confusion, cmap="Blues")
    for (true, guess), count in np.ndenumerate(confusion):
        axes.text(guess, true, str(count), ha="center", va="center", fontsize=7,
                  color="white" if count > confusion.max() / 2 else "black")
    axes.set(xlabel="predicted class", ylabel="true class", title=f"confusion matrix: {title}",
             xticks=range(len(confusion)), yticks=range(len(confusion)))
    figure.colorbar(image)
    figure.tight_layout()
    try:
        atomic_write(confusion_path, lambda temporary: figure.savefig(temporary, dpi=110, format="png"))
    finally:
        plt.close(figure)

    wrong = np.flatnonzero(predicted != data.y_test)
    wrong = wrong[np.argsort(-probabilities[wrong, predicted[wrong]])][:24]
    figure, grid = plt.subplots(3, 8, figsize=(12, 5.2))
    for axes in grid.ravel():
        axes.axis("off")
    for axes, i in zip(grid.ravel(), wrong):
        axes.imshow(data.X_test[i].reshape(data.image_shape), cmap="gray_r")
        axes.set_title(f"true {data.y_test[i]}, said {predicted[i]}\n({probabilities[i, predicted[i]]:.0%} sure)",
                       fontsize=8)
    figure.suptitle(f"most confidently wrong test images: {title}")
    figure.tight_layout()
    try:
        atomic_write(mistakes_path, lambda temporary: figure.savefig(temporary, dpi=90, format="png"))
    finally:
        plt.close(figure)


# ----------------------------------------------------------------------------- predict
@main.command("predict")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("images", type=click.Path(dir_okay=False, path_type=Path), nargs=-1, required=True)
@click.option("--invert", is_flag=True, help="The images are dark ink on light paper (MNIST is light on dark).")
@click.option("--top-k", type=click.IntRange(min=1), default=1, show_default=True,
              help="Print the K most probable digits per image.")
def predict_command(model, images, invert, top_k):
    """The digit in each image (PNG, JPEG, ... or a 2-D .npy array), with its probability.

    Each image is converted to grayscale, its digit cropped, scaled and centred the way the
    model's training images were, then classified."""
    net, metadata = open_model(model)
    inputs = metadata.get("inputs")
    if not inputs or "image_shape" not in inputs:
        fail(f"{model} does not say how its inputs were made (save it with nbnet train --save)")
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
    for path, p in zip(images, probabilities):
        best = np.argsort(-p)[:k]
        click.echo(f"{path}: " + ", ".join(f"{digit} ({p[digit]:.1%})" for digit in best))


# ----------------------------------------------------------------------------- gradcheck
@main.command("gradcheck")
@click.option("--hidden", type=click.IntRange(min=1), multiple=True, default=(5, 4), show_default=True,
              help="Hidden layer sizes of the small test network (repeatable).")
@click.option("--inputs", type=click.IntRange(min=1), default=6, show_default=True)
@click.option("--outputs", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--activation", type=click.Choice(HIDDEN), default="sigmoid", show_default=True)
@click.option("--output", type=click.Choice(OUTPUT), default="softmax", show_default=True)
@click.option("--cost", type=click.Choice(tuple(COSTS)), default="cross-entropy", show_default=True)
@click.option("--l2", type=click.FloatRange(min=0), default=0.0, show_default=True)
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
def compile_command(dtype, hidden_layers, optimizers, dropout):
    """Compile the kernels into the disk cache ahead of time (for a container image or cluster
    workers), so that the first `nbnet train` loads them instead of compiling.

    Covers training, evaluation and prediction with the given settings, in both variants:
    one thread (small networks, --threads 1) and parallel. Each run compiles only what it
    uses anyway; this only moves that time to when you choose."""
    from itertools import product

    from .train import warm_up

    set_threads(None)
    start = time.perf_counter()
    networks = list(product(DTYPES if dtype == "all" else (dtype,), sorted(set(hidden_layers)), (False, True)))
    paths = list(product(("sgd", "adam") if optimizers == "all" else ("sgd",), (False, True) if dropout else (False,),
                         (False, True)))
    for (name, layers, parallel), (optimizer, dropped, running) in product(networks, [(None, False, False), *paths]):
        began = time.perf_counter()
        warm_up(layers + 1, name, parallel, parallel, optimizer, False, dropped, running)
        what = ("evaluate and predict" if optimizer is None else "train, " + ("sgd" if optimizer == "sgd" else
                "momentum, nesterov, rmsprop, adam") + (", dropout" if dropped else "")
                + (", --train-metrics running" if running else ""))
        click.echo(f"{name}, {layers} hidden layer(s), {'parallel' if parallel else 'one thread'}: {what}: "
                   f"{time.perf_counter() - began:.1f} s")
    click.echo(f"Compiled in {time.perf_counter() - start:.1f} s into {kernel_cache_dir()}")


# ----------------------------------------------------------------------------- sweep
@main.command("sweep")
@click.option("--l2", type=click.FloatRange(min=0), multiple=True, default=(0.0,), show_default=True,
              help="L2 strengths to try (repeat: --l2 0 --l2 0.5 --l2 5 --l2 50).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), multiple=True, default=(0.5,), show_default=True,
              help="Learning rates to try (repeatable).")
@click.option("--hidden", type=click.IntRange(min=1), multiple=True, default=(30,), show_default=True,
              help="Sizes of the one hidden layer to try (repeatable).")
@click.option("--dataset", type=click.Choice(["digits", "mnist"]), default="digits", show_default=True)
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--activation", type=click.Choice(HIDDEN), default="sigmoid", show_default=True)
@click.option("--optimizer", type=click.Choice(tuple(OPTIMIZERS)), default="sgd", show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--train-size", type=click.IntRange(min=1), default=None)
@click.option("--validation", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Judge runs on the last N training samples (or a fraction) instead of the test set.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Runs at once [default: as many as cores, at most the number of runs]; cores are split among them.")
@click.option("--scheduler", default=None,
              help="Send the runs to the Dask cluster at this address (needs nbnet[dask]).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), default=Path("plots/sweep.csv"),
              show_default=True)
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="[default: plots/sweep-<swept option>.png]")
def sweep_command(l2, lr, hidden, dataset, data_dir, activation, optimizer, epochs, batch_size, seed, train_size,
                  validation, workers, scheduler, csv_path, plot_path):
    """Train one model per value of --l2 (and/or --lr, --hidden) in parallel; write a CSV and a
    plot of final train and held-out cost and accuracy against the swept value."""
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing

    from .sweep import SWEPT, best, combinations, plot_sweep, prepare, sweep, threads_per_run

    values = {"l2": list(l2), "lr": list(lr), "hidden": list(hidden)}
    varied = next((name for name in SWEPT if len(values[name]) > 1), "l2")
    cores = os.cpu_count() or 1
    base = dict(dataset=dataset, data_dir=str(data_dir) if data_dir else None, activation=activation,
                optimizer=optimizer, epochs=epochs, batch_size=batch_size, seed=seed, train_size=train_size,
                validation=validation)
    runs = combinations(base, values)
    workers = workers or min(len(runs), cores)
    for run in runs:
        run["threads"] = threads_per_run(workers, cores)
    plot_path = plot_path or Path("plots") / f"sweep-{varied}.png"
    click.echo(f"sweep: {len(runs)} runs, {workers} at a time, {runs[0]['threads']} thread(s) each"
               + (f", on the Dask cluster at {scheduler}" if scheduler else ""), err=True)
    try:
        if scheduler:
            try:
                from distributed import Client
            except ImportError:
                fail("--scheduler needs Dask: pip install 'nbnet[dask]'")
            with Client(scheduler, timeout=30) as client:
                client.run(prepare, runs)  # once per worker, before any run
                results = sweep(runs, client.get_executor())
        else:
            click.echo(f"compiled kernels ready in {prepare(runs):.1f} s", err=True)
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as executor:
                results = sweep(runs, executor)
    except (DataError, OSError, TimeoutError) as error:
        fail(f"sweep failed: {error}")
    columns = ["l2", "lr", "hidden", "train_cost", "held_out_cost", "train_accuracy", "held_out_accuracy",
               "test_accuracy", "held_out", "seconds"]
    try:
        atomic_write(csv_path, lambda temporary: _write_rows(temporary, columns, results))
        plot_sweep(results, plot_path, varied)
    except OutputError as error:
        fail(str(error))
    for row in results:
        click.echo(f"l2 {row['l2']:<8g} lr {row['lr']:<6g} hidden {row['hidden']:<5} train cost {row['train_cost']:.4f} "
                   f"{row['held_out']} cost {row['held_out_cost']:.4f} {row['held_out']} accuracy "
                   f"{row['held_out_accuracy']:.2%}")
    top = best(results)
    click.echo(f"best ({top['held_out']} cost): l2 {top['l2']:g}, lr {top['lr']:g}, hidden {top['hidden']}. "
               f"CSV: {csv_path}  Plot: {plot_path}")


def _write_rows(path, columns, rows):
    import csv

    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
