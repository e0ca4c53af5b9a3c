"""The `nbnet` command line: a small package, one module per group of commands.

    group.py   the `nbnet` group and `fail` (one-line error, exit code 1)
    options.py the options made from nbnet.options.TrainConfig, shared by train and sweep
    train.py   nbnet train
    sweep.py   nbnet sweep
    model.py   nbnet evaluate, predict, gradcheck, info, compile
    data.py    nbnet plot, download
    trace.py   nbnet trace

Each command parses its options, builds what the library needs (a TrainConfig, a Network)
and calls the library; errors become one line and exit code 1, bad options exit code 2.
"""

from . import data, model, sweep, trace, train  # noqa: F401  (each registers its commands on `main`)
from .group import fail, main

__all__ = ["fail", "main"]
