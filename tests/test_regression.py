"""nbnet train on numeric targets (--output identity / exp): a .npz or .csv of numbers, the
quadratic or Poisson cost, and the model a user then loads to predict."""

import csv

import numpy as np
import pytest
from click.testing import CliRunner

from nbnet import Network
from nbnet.cli import main
from documents import documented  # noqa: E402


@pytest.fixture(scope="module")
def numeric(tmp_path_factory):
    folder = tmp_path_factory.mktemp("numeric")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 5))
    y = np.tanh(X @ np.array([1.0, -2.0, 0.5, 0.0, 1.5])) + 0.05 * rng.standard_normal(400)
    np.savez(folder / "wave.npz", X=X, y=y)
    with open(folder / "wave.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["a", "b", "c", "d", "e", "height"])
        writer.writerows([*row, target] for row, target in zip(X, y))
    return folder, X, y


def test_train_on_numeric_targets_then_load_and_predict(numeric, tmp_path, monkeypatch):
    """The README's command as written (its data file and model in a test folder)."""
    folder, X, y = numeric
    readme = documented()
    command = next(line for line in readme.splitlines() if line.startswith("nbnet train --dataset heights.csv"))
    heights = np.column_stack([X, y])
    np.savetxt(tmp_path / "heights.csv", heights, delimiter=",", header="a,b,c,d,e,height", comments="")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, command.split()[1:] + ["--plot", "wave.png"])
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines() if line.strip()[:1].isdigit()]
    assert len(rows) == 30 and float(rows[-1][2]) < float(rows[0][2]) / 3  # the test cost falls
    assert rows[-1][3] == rows[-1][4] == "-"  # no accuracy for numeric targets
    net = Network.load(tmp_path / "heights.npz")  # what a user does next: predict with the model
    prediction = net.forward(X)[:, 0]
    assert net.output == "identity" and 1 - np.var(prediction - y) / np.var(y) > 0.9
    evaluate = next(line for line in readme.splitlines() if line.startswith("nbnet evaluate heights.npz"))
    report = CliRunner().invoke(main, evaluate.split("#")[0].split()[1:])  # the README's next command
    assert report.exit_code == 0, report.output
    assert "R^2" in report.output and float(report.output.split("R^2 ")[1].split(",")[0]) > 0.9
    predict = next(line for line in readme.splitlines() if line.startswith("nbnet predict heights.npz"))
    np.savetxt(tmp_path / "new-people.csv", X[:3], delimiter=",", header="a,b,c,d,e", comments="")
    predicted = CliRunner().invoke(main, predict.split("#")[0].split()[1:])  # then: new rows
    assert predicted.exit_code == 0, predicted.output
    assert predicted.output.splitlines() == [f"row {i + 1}: {value:.6g}" for i, value in enumerate(prediction[:3])]
    npz_run = CliRunner().invoke(main, ["train", "--dataset", str(folder / "wave.npz"), "--output", "identity",
                                        "--cost", "quadratic", "--epochs", "2", "-q", "--plot", "npz.png"])
    assert npz_run.exit_code == 0, npz_run.output
    csv_run = CliRunner().invoke(main, ["train", "--dataset", str(folder / "wave.csv"), "--label-column", "height",
                                        "--output", "identity", "--cost", "quadratic", "--epochs", "2", "-q",
                                        "--plot", str(tmp_path / "csv.png")])
    assert csv_run.exit_code == 0, csv_run.output


def test_poisson_regression_and_clear_errors(numeric, tmp_path):
    folder, X, y = numeric
    counts = np.random.default_rng(1).poisson(np.exp(0.5 * X[:, 0]))
    np.savez(tmp_path / "counts.npz", X=X, y=counts)
    result = CliRunner().invoke(main, ["train", "--dataset", str(tmp_path / "counts.npz"), "--output", "exp",
                                       "--cost", "poisson", "--epochs", "3", "--lr", "0.05", "-q", "--plot",
                                       str(tmp_path / "p.png")])
    assert result.exit_code == 0, result.output
    for args, message in ((["--dataset", str(folder / "wave.npz"), "--output", "identity"], "quadratic"),
                          (["--output", "identity", "--cost", "quadratic"], "numeric targets")):
        bad = CliRunner().invoke(main, ["train", *args, "--epochs", "1", "--plot", str(tmp_path / "x.png")])
        assert bad.exit_code != 0 and message in bad.output and "Traceback" not in bad.output
    np.savez(tmp_path / "words.npz", X=X, y=np.array(["a", "b"] * 200))
    bad = CliRunner().invoke(main, ["train", "--dataset", str(tmp_path / "words.npz"), "--output", "identity",
                                    "--cost", "quadratic", "--epochs", "1", "--plot", str(tmp_path / "x.png")])
    assert bad.exit_code != 0 and "must hold numbers" in bad.output


def test_sweep_on_numeric_targets(numeric, tmp_path):
    folder, _, _ = numeric
    result = CliRunner().invoke(main, ["sweep", "--dataset", str(folder / "wave.npz"), "--output", "identity",
                                       "--cost", "quadratic", "--lr", "0.01", "--lr", "0.05", "--epochs", "3",
                                       "--workers", "1", "--csv", str(tmp_path / "s.csv"), "--plot",
                                       str(tmp_path / "s.png"), "-q"])
    assert result.exit_code == 0, result.output
    assert "best (test cost): lr 0.05" in result.output
