"""`nbnet trace`: one sample through a new network, every equation of backpropagation with its
numbers (nbnet.trace), as text or JSON."""

import json
from pathlib import Path

import click
import numpy as np

from .. import trace as tracing
from .group import main
from .options import config_from, config_options
from .train import load_data, new_network, training_split

OPTIONS = ("dataset", "label_column", "categorical", "standardize", "hidden", "activation", "output", "cost", "lr", "l2",
           "seed", "init", "test_fraction")
SHADES = " .:-=+*#%@"  # a pixel's brightness, from 0 to 1


@main.command("trace")
@config_options(only=OPTIONS)
@click.option("--sample", type=click.IntRange(min=0), default=0, show_default=True,
              help="Which sample of the training split (0 is the first).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where the IDX files of mnist, fashion-mnist or kmnist are [default: as nbnet train].")
@click.option("--format", "output_format", type=click.Choice(("text", "json")), default="text", show_default=True,
              help="text: the lesson's equations with their numbers; json: every number, for a notebook.")
@click.option("--full", is_flag=True, help="Print every array whole (else those over 10 rows or columns are summarised).")
def trace_command(sample, data_dir, output_format, full, **options):
    """One sample through a new network (as `nbnet train` would start it, in float64): z and a per
    layer, the cost J, delta^L and every delta^m, dJ/dW and dJ/db beside their finite differences,
    the L2 term, and W and b after one SGD step, computed by the plain loops of nbnet/loops.py."""
    try:
        config = config_from(options, dtype="float64")
    except ValueError as error:  # (an output the cost is not defined for: a usage error, as in nbnet train)
        raise click.UsageError(str(error)) from None
    data = load_data(config, data_dir, download=False, quiet=True)
    split = training_split(data, config)
    if sample >= len(split.X_train):
        raise click.BadParameter(f"{config.dataset} has {len(split.X_train)} training samples (0 to "
                                 f"{len(split.X_train) - 1})", param_hint="--sample")
    net = new_network(config, data, split, note=lambda message: None)
    x = net.as_inputs(split.X_train[sample:sample + 1])[0]
    label = split.y_train[sample]
    y = net.as_labels(split.y_train[sample:sample + 1], 1)[0]
    result = tracing.trace(net, x, y, config.lr, config.l2, len(split.X_train), config.seed)
    shape = "-".join(map(str, net.sizes))
    about = dict(dataset=config.dataset, sample=sample, sizes=net.sizes, activation=net.activation, output=net.output,
                 cost_function=net.cost_name, init=net.init, seed=config.seed,
                 label=data.label(int(label)) if data.targets is None else np.asarray(label).tolist())
    if output_format == "json":
        click.echo(json.dumps(tracing.as_json(result, about)))
        return
    what = f"label {about['label']}" if data.targets is None else f"targets {about['label']}"
    title = (f"nbnet trace: sample {sample} of the {config.dataset} training split ({what}) through {shape}: "
             f"{net.activation} hidden, {net.output} output, {net.cost_name} cost, init {net.init}, seed {config.seed}, "
             f"float64; alpha {config.lr:g}, lambda {config.l2:g}, n = {len(split.X_train)} training samples")
    lines = tracing.text(result, title, full)
    if net.scaling is not None:
        lines[1:1] = ["", "The table's columns are standardised (x - mean) / std with the training split's means and "
                      "standard deviations" + (", and so are the targets" if net.scaling.target_mean is not None else "")
                      + " (nbnet.scaling): the numbers below are what the loops see."]
    if data.image_shape is not None and np.prod(data.image_shape) == len(x):
        lines[1:1] = ["", "The sample (a^0 = x, darker is larger):"] + picture(x, data.image_shape)
    click.echo("\n".join(lines))


def picture(x, shape):
    """An image's pixels (0 to 1) as text, two characters a pixel."""
    levels = np.clip((x.reshape(shape) * len(SHADES)).astype(int), 0, len(SHADES) - 1)
    return [("    " + "".join(SHADES[v] * 2 for v in row)).rstrip() for row in levels]

