"""`nbnet plot` and `nbnet download`: the commands that work on files, not on a network."""

from pathlib import Path

import click

from ..data import IDX_SETS, DataError, download
from ..plots import OutputError, plot_metrics, read_metrics
from .group import fail, main
from .train import download_progress


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
