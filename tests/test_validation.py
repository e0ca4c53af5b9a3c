"""Validation sets and early stopping."""

import csv

import numpy as np
import pytest
from click.testing import CliRunner

from nbnet import Network
from nbnet.cli import main
from nbnet.data import Split, load_digits
from nbnet.plots import read_metrics
from nbnet.options import TrainConfig
from nbnet.train import train


def test_early_stopping_restores_the_best_epoch():
    data = load_digits()
    X, y = data.X_train[:200], data.y_train[:200]  # few samples: validation cost turns up soon
    X_val, y_val = data.X_train[1000:1300], data.y_train[1000:1300]
    net = Network([64, 30, 10], seed=0)
    history = train(net, Split(X, y, data.X_test, data.y_test, X_val, y_val),
                    TrainConfig(epochs=200, lr=1.0, early_stopping=True, patience=3))
    best = min(history, key=lambda m: m.validation_cost)
    assert len(history) < 200 and history[-1].epoch - best.epoch == 3
    # the best weights are back (net.cost runs nbnet.narrow's passes, the run with minibatches of 10
    # nbnet.kernels': float32 sums in another order, equal to float32's precision)
    assert net.cost(X_val, y_val, 0.0, len(X)) == pytest.approx(best.validation_cost, rel=1e-6)
    assert abs(net.cost(X_val, y_val, 0.0, len(X)) - history[-1].validation_cost) > 1e-4
    assert [m.epoch for m in history if m.test_cost is not None] == [best.epoch]  # test set looked at once
    assert best.test_accuracy == net.accuracy(data.X_test, data.y_test)


def test_validation_without_early_stopping_keeps_the_last_epoch():
    data = load_digits()
    net = Network([64, 10, 10], seed=0)
    history = train(net, Split(data.X_train[:-200], data.y_train[:-200], data.X_test, data.y_test,
                          data.X_train[-200:], data.y_train[-200:]), TrainConfig(epochs=3))
    assert [m.test_cost is None for m in history] == [True, True, False]
    assert all(m.validation_accuracy is not None for m in history)


def test_cli_validation_and_early_stopping(tmp_path):
    metrics = tmp_path / "m.csv"
    result = CliRunner().invoke(main, ["train", "--train-size", "300", "--validation", "0.3", "--early-stopping",
                                       "--patience", "2", "--epochs", "100", "--lr", "1.0", "--metrics", str(metrics),
                                       "--plot", str(tmp_path / "p.png"), "-q"])
    assert result.exit_code == 0, result.output
    assert "valid cost" in result.output and "Stopped early" in result.output and "Test set, weights of epoch" in result.output
    with open(metrics, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["epoch", "train_cost", "test_cost", "train_accuracy", "test_accuracy", "seconds",
                             "validation_cost", "validation_accuracy"]
    assert sum(row["test_cost"] != "" for row in rows) == 1 and len(rows) < 100
    assert len(read_metrics(metrics)) == len(rows)
    assert (tmp_path / "p.png").read_bytes().startswith(b"\x89PNG")
    result = CliRunner().invoke(main, ["train", "--early-stopping", "--epochs", "1", "--plot", str(tmp_path / "q.png")])
    assert result.exit_code == 2 and "--validation" in result.output
    result = CliRunner().invoke(main, ["train", "--validation", "5000", "--plot", str(tmp_path / "q.png")])
    assert result.exit_code == 2 and "--validation" in result.output
    assert np.isfinite(float(rows[-1]["validation_cost"]))
