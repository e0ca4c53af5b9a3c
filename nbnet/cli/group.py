"""The `nbnet` command group, and the one-line error every command stops with."""

import click

from ..version import __version__


def fail(message):
    """Stop with a one-line error and exit code 1."""
    raise click.ClickException(message)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nbnet")
def main():
    """nbnet: a neural network whose backpropagation is readable loops compiled by Numba."""
