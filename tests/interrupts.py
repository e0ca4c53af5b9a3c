"""Ctrl-C at a chosen moment of an `nbnet train` run in the test process."""

import nbnet.cli.train

REAL_WRITE_METRICS = nbnet.cli.train.write_metrics


def ctrl_c_in_epoch(monkeypatch, epoch):
    """Make `nbnet train --metrics ...` stop as Ctrl-C does in epoch `epoch`: after its training,
    when the metrics of its first `epoch` epochs are written, before its checkpoint. None: the
    real writer again, no interrupt."""
    def write_then_interrupt(rows, path):
        if len(rows) == epoch:
            raise KeyboardInterrupt
        return REAL_WRITE_METRICS(rows, path)

    monkeypatch.setattr(nbnet.cli.train, "write_metrics", REAL_WRITE_METRICS if epoch is None else write_then_interrupt)
