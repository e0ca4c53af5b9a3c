"""`nbnet sweep`: every `nbnet train` option, each repeatable; one run per combination."""

import csv
import os
from dataclasses import fields
from pathlib import Path

import click
import numba

from ..data import IDX_SETS, DataError, download as download_idx_set
from ..files import OutputError, atomic_write
from ..options import TrainConfig
from ..sweep import best, grid, jobs, plot_sweep, prepare, shown, sweep, threads_per_run
from .group import fail, main
from .options import config_options
from .train import download_progress

RESULT_COLUMNS = ("train_cost", "held_out_cost", "train_accuracy", "held_out_accuracy", "test_accuracy", "held_out",
                  "seconds")


@main.command("sweep")
@config_options(sweep=True)
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--download", is_flag=True,
              help="Download the IDX files of the swept data sets into --data-dir first if they are missing.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Runs at once [default: as many as cores, at most the number of runs]; cores are split among them.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Threads of each run's parallel kernels [default: the cores split among the workers].")
@click.option("--scheduler", default=None,
              help="Send the runs to the Dask cluster at this address (needs nbnet[dask]).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), default=Path("plots/sweep.csv"),
              show_default=True)
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="[default: plots/sweep-<swept options>.png]")
@click.option("--quiet", "-q", is_flag=True, help="No notes on stderr; the result lines only.")
def sweep_command(data_dir, download, workers, threads, scheduler, csv_path, plot_path, quiet, **options):
    """Train one model per combination of the repeated options' values (--l2 0 --l2 5 --lr 0.1
    --lr 0.5: four runs), in parallel; write a CSV with a column per swept option and a plot of
    final train and held-out cost and accuracy against them."""
    note = (lambda message: None) if quiet else (lambda message: click.echo(message, err=True))
    values = {spec.name: (list(options[spec.name]) or [None]) if isinstance(options[spec.name], tuple)
              else [options[spec.name]] for spec in fields(TrainConfig)}  # a flag is one value; no value: None
    values["categorical"] = [options["categorical"]]  # (its columns, together: one value)
    if options["early_stopping"] and None in values["validation"]:
        raise click.UsageError("--early-stopping needs --validation N (the data it watches)")
    try:
        swept, configs = grid(TrainConfig(**{name: tried[0] for name, tried in values.items()}), values)
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    if threads is not None and threads > numba.config.NUMBA_NUM_THREADS:
        raise click.BadParameter(f"at most {numba.config.NUMBA_NUM_THREADS} on this machine", param_hint="--threads")
    if download:
        for name in sorted({config.dataset for config in configs} & set(IDX_SETS)):
            try:
                download_idx_set(name, data_dir, progress=None if quiet else download_progress())
            except DataError as error:
                fail(str(error))
    cores = os.cpu_count() or 1
    workers = workers or min(len(configs), cores)
    job_list = jobs(configs, data_dir, threads or threads_per_run(workers, cores))
    plot_path = plot_path or Path("plots") / f"sweep-{'-'.join(swept) or 'run'}.png"
    note(f"sweep: {len(configs)} runs, {workers} at a time, {job_list[0]['threads']} thread(s) each"
         + (f", on the Dask cluster at {scheduler}" if scheduler else ""))
    results = run_jobs(job_list, workers, scheduler, note)
    try:
        atomic_write(csv_path, lambda temporary: write_rows(temporary, swept, results))
        plot_sweep(results, plot_path, swept)
    except OutputError as error:
        fail(str(error))
    for row in results:
        if row.get("warning"):  # (as nbnet train prints it: one line, also with --quiet)
            click.echo(f"Warning: {described(row, swept) or 'run'}: {row['warning']}", err=True)
        click.echo(" ".join(f"{name} {shown(row[name])}" for name in swept) + f"{' ' if swept else ''}train cost "
                   f"{row['train_cost']:.4f} {row['held_out']} cost {row['held_out_cost']:.4f} {row['held_out']} "
                   f"accuracy {row['held_out_accuracy']:.2%}")
    top = best(results)
    click.echo(f"best ({top['held_out']} cost): {described(top, swept)}. CSV: {csv_path}  Plot: {plot_path}")


def described(row, swept):
    """A run by its swept options' values: "l2 5, lr 0.5"."""
    return ", ".join(f"{name} {shown(row[name])}" for name in swept)


def run_jobs(job_list, workers, scheduler, note):
    """Results of every job: on the Dask cluster at `scheduler`, else in `workers` processes;
    what the runs compile is compiled first (once per Dask worker)."""
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing

    try:
        if scheduler:
            try:
                from distributed import Client
            except ImportError:
                fail("--scheduler needs Dask: pip install 'nbnet[dask]'")
            with Client(scheduler, timeout=30) as client:
                client.run(prepare, job_list)  # once per worker, before any run
                return sweep(job_list, client.get_executor())
        note(f"compiled kernels ready in {prepare(job_list):.1f} s")
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as executor:
            return sweep(job_list, executor)
    except (DataError, OSError, TimeoutError) as error:
        fail(f"sweep failed: {error}")


def write_rows(path, swept, rows):
    """The CSV: one column per swept option, then the results."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*swept, *RESULT_COLUMNS], extrasaction="ignore")
        writer.writeheader()
        writer.writerows({**row, **{name: shown(row[name]) for name in swept}} for row in rows)
