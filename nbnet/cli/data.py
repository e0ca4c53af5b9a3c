"""`nbnet plot` and `nbnet download`: the commands that work on files, not on a network."""

from pathlib import Path

import click
import numpy as np

from ..augment import TrainingRows
from ..data import IDX_SETS, DataError, download
from ..options import TrainConfig
from ..plots import OutputError, plot_augmentation, plot_metrics, read_metrics
from .group import fail, main
from .options import config_options
from .train import download_progress, load_data, require_images

STRENGTHS = ("rotate", "scale", "shear", "shift", "elastic_alpha", "elastic_sigma")


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
@click.argument("dataset", type=click.Choice(tuple(IDX_SETS)))
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Target directory [default: ~/.cache/nbnet/DATASET; for mnist $NBNET_DATA_DIR if set].")
@click.option("--mirror", "mirrors", multiple=True,
              help="Base URL to fetch from instead of the default mirrors (repeatable, tried in order).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def download_command(dataset, data_dir, mirrors, quiet):
    """Download the four IDX files of MNIST, Fashion-MNIST or Kuzushiji-MNIST, each checked
    against its SHA-256 before it is kept."""
    kwargs = {"mirrors": tuple(m if m.endswith("/") else m + "/" for m in mirrors)} if mirrors else {}
    try:
        directory = download(dataset, data_dir, progress=None if quiet else download_progress(), **kwargs)
    except DataError as error:
        fail(str(error))
    click.echo(f"{IDX_SETS[dataset].title} is in {directory}")


@main.command("augment-preview")
@config_options(only=("dataset", "seed") + STRENGTHS)
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Directory of the IDX files [default: as nbnet train].")
@click.option("--images", type=click.IntRange(1, 50), default=6, show_default=True, help="Training images shown.")
@click.option("--epochs", "versions", type=click.IntRange(1, 20), default=7, show_default=True,
              help="Distorted versions of each: what epochs 1, 2, ... of `nbnet train --augment` train on.")
@click.option("-o", "--output", "output_path", type=click.Path(dir_okay=False, path_type=Path),
              help="The PNG file to write [default: plots/DATASET-augment.png].")
def augment_preview_command(data_dir, images, versions, output_path, **options):
    """Draw training images beside the distorted versions `nbnet train --augment` (with the
    same strengths and --seed) trains on in its first epochs."""
    config = TrainConfig(augment=True, **options)
    data = load_data(config, data_dir, download=False, quiet=True)
    require_images(config, data, "--dataset")
    picked = np.random.default_rng(config.seed).choice(len(data.X_train), min(images, len(data.X_train)),
                                                       replace=False)
    rows = TrainingRows(data.X_train, np.float32, config.augmentation, data.image_shape, config.seed)
    distorted = np.stack([rows.block(picked, epoch).copy() for epoch in range(1, versions + 1)], axis=1)
    originals = TrainingRows(data.X_train, np.float32).block(picked, 1) \
        if data.X_train.dtype == np.uint8 else data.X_train[picked]
    output_path = output_path or Path("plots") / f"{Path(config.dataset).stem}-augment.png"
    try:
        plot_augmentation(originals, distorted, data.image_shape, output_path,
                          f"{config.dataset}: rotate {config.rotate:g}, scale {config.scale:g}, shear "
                          f"{config.shear:g}, shift {config.shift:g}, elastic alpha {config.elastic_alpha:g} sigma "
                          f"{config.elastic_sigma:g}")
    except OutputError as error:
        fail(str(error))
    click.echo(f"Preview: {output_path}")
