"""Click options made from the fields of nbnet.options.TrainConfig, so `nbnet train` and
`nbnet sweep` accept the same options with the same defaults, help and checks."""

import math
from dataclasses import fields

import click

from ..options import TrainConfig


class Architecture(click.ParamType):
    """Hidden layer sizes written as one number or a comma-separated list: 100, 500,300."""

    name = "N[,N...]"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            sizes = tuple(int(part) for part in str(value).split(","))
        except ValueError:
            self.fail(f"{value!r} is not a layer size or a comma-separated list of them", param, ctx)
        if min(sizes) < 1:
            self.fail(f"{value!r}: layer sizes must be at least 1", param, ctx)
        return sizes


class ChoiceOrFile(click.ParamType):
    """One of some names, or the path of a file with one of some suffixes (--dataset)."""

    def __init__(self, choices, suffixes):
        self.choices, self.suffixes = choices, suffixes
        self.name = "|".join(choices) + "|FILE" + "|".join(suffixes)

    def convert(self, value, param, ctx):
        if value in self.choices or str(value).lower().endswith(self.suffixes):
            return value
        self.fail(f"{value!r} is not one of {', '.join(map(repr, self.choices))}, nor a "
                  f"{' or '.join(self.suffixes)} file", param, ctx)


class FiniteFloatRange(click.FloatRange):
    """click.FloatRange that also refuses nan and inf (which pass its comparisons, or its open end)."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


def click_type(spec):
    """The click type that accepts what the TrainConfig field `spec` accepts."""
    meta = spec.metadata
    if spec.name == "hidden":
        return Architecture()
    if meta["files"]:
        return ChoiceOrFile(meta["choices"], meta["files"])
    if meta["choices"] is not None:
        return click.Choice(meta["choices"])
    kind = spec.type if spec.type in (int, float) else type(spec.default)
    if meta["low"] is None and meta["high"] is None:
        return kind
    ranged = click.IntRange if kind is int else FiniteFloatRange
    return ranged(meta["low"], meta["high"], min_open=meta["low_open"], max_open=meta["high_open"])


def config_options(sweep=False, only=None):
    """A decorator adding one option per TrainConfig field (or per field named in `only`). For
    `nbnet sweep` (sweep=True) every option but a flag can be repeated, each value one run
    (--hidden 500,300 is one architecture); for `nbnet train`, --hidden repeats to add layers."""
    def decorate(command):
        for spec in reversed([spec for spec in fields(TrainConfig) if only is None or spec.name in only]):
            name = spec.name.replace("_", "-")
            names = f"--{name}/--no-{name}" if spec.metadata["flag"] and spec.default else f"--{name}"  # (on by default)
            command = click.option(names, spec.name, **option_settings(spec, sweep))(command)
        return command

    return decorate


def option_settings(spec, sweep):
    meta = spec.metadata
    help_text = meta["help"]
    if meta["flag"]:
        return dict(is_flag=True, default=spec.default, help=help_text)
    settings = dict(type=click_type(spec), help=help_text, show_default=spec.default is not None)
    if spec.name == "categorical":  # (repeated: more columns, in one run, for sweep too)
        return dict(type=str, multiple=True, default=(), help=help_text)
    if sweep:
        repeat = "Repeat to try several: each value is a run (the grid of all repeated options is swept)."
        settings.update(multiple=True, help=f"{help_text} {repeat}")
        settings["default"] = (spec.default,) if spec.default is not None else ()
        settings["show_default"] = spec.default is not None and spec.name != "hidden"
        if spec.name == "hidden":
            settings["help"] += " --hidden 500,300 is one run with two hidden layers. [default: 30]"
    elif spec.name == "hidden":
        settings.update(multiple=True, default=(spec.default,), show_default=False,
                        help=help_text + " [default: 30]")
    else:
        settings["default"] = spec.default
    return settings


def config_from(options, **fixed):
    """The TrainConfig of parsed `nbnet train` options, or of the config_options(only=...) a command
    takes (the others keep their defaults), with the fields in `fixed` set so; --hidden repeats
    add layers."""
    values = {spec.name: options[spec.name] for spec in fields(TrainConfig) if spec.name in options}
    values["hidden"] = tuple(size for layers in values["hidden"] for size in layers)
    return TrainConfig(**values, **fixed)
