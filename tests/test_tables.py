"""Any labelled data: `nbnet train --dataset FILE.npz|FILE.csv`, any number of features and
classes, string labels kept as class names; one-line errors for files that do not fit."""

import numpy as np
import pytest
from click.testing import CliRunner

from nbnet import Network
from nbnet.cli import main
from nbnet.data import DataError
from nbnet.options import TrainConfig
from nbnet.sweep import data_shape
from nbnet.tables import load_table
from documents import documented  # noqa: E402


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def blobs(n=300, features=5, classes=3, seed=0):
    """Gaussian clusters, one per class, well apart: any working classifier separates them."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    centres = 3 * rng.standard_normal((classes, features))
    return (centres[y] + rng.standard_normal((n, features))) / 4, y


def test_train_on_an_npz_with_its_own_test_arrays_and_string_labels(tmp_path):
    X, y = blobs()
    names = np.array(["setosa", "versicolor", "virginica"])
    np.savez(tmp_path / "d.npz", X=X[:240], y=names[y[:240]], X_test=X[240:], y_test=names[y[240:]])
    result = invoke("train", "--dataset", tmp_path / "d.npz", "--hidden", 8, "--epochs", 15, "--lr", 0.3,
                    "--save", tmp_path / "m.npz", "--plot", tmp_path / "p.png", "-q")
    assert result.exit_code == 0, result.output
    net, metadata = Network.load_with_metadata(tmp_path / "m.npz")
    assert net.sizes == [5, 8, 3] and metadata["inputs"]["class_names"] == list(names)
    assert metadata["history"][-1]["test_accuracy"] > 0.9
    result = invoke("evaluate", tmp_path / "m.npz", "--plot", tmp_path / "e.png")  # what a user does next
    assert result.exit_code == 0 and "(60 rows)" in result.output, result.output
    result = invoke("predict", tmp_path / "m.npz", tmp_path / "p.png")
    assert result.exit_code == 1 and "table of features" in result.output


def test_train_on_a_csv_split_by_test_fraction(tmp_path):
    X, y = blobs(features=4, classes=4, seed=1)
    lines = ["a,b,kind,c,d"] + [f"{r[0]},{r[1]},{'k' + str(c)},{r[2]},{r[3]}" for r, c in zip(X, y)]
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    data = load_table(tmp_path / "d.csv", test_fraction=0.25, seed=3, label_column="kind")
    assert data.class_names == ("k0", "k1", "k2", "k3") and data.n_inputs == 4 and 70 <= len(data.X_test) <= 80
    every = np.concatenate([data.X_train, data.X_test])  # the columns around the label column, in order
    np.testing.assert_allclose(np.sort(every[:, 2]), np.sort(X[:, 2]), rtol=1e-6)
    result = invoke("train", "--dataset", tmp_path / "d.csv", "--label-column", "kind", "--hidden", 8, "--epochs", 15,
                    "--lr", 0.3, "--plot", tmp_path / "p.png", "-q")
    assert result.exit_code == 0, result.output
    accuracy = float(result.output.strip().splitlines()[-1].split()[-2].rstrip("%"))
    assert accuracy > 90
    # what nbnet sweep warms its kernels for: the file's shape (which picks the drivers' variant)
    known = {}
    config = TrainConfig(dataset=str(tmp_path / "d.csv"), label_column="kind")
    assert data_shape(config, known) == (4, 4) and data_shape(TrainConfig(dataset="mnist"), known) == (784, 10)
    assert list(known) == [(str(tmp_path / "d.csv"), "kind", "classes", ())]  # read once


@pytest.mark.parametrize("content,message", [
    ("a,b,label\n1,x,0\n2,3,1\n", "'x' is not a number"),
    ("a,b,label\n1,nan,0\n2,3,1\n", "NaN"),
    ("a,b,label\n1,2,0\n2,3,0\n", "2 classes or more"),
    ("a,b,kind\n1,2,0\n2,3,1\n", "no column named 'label'"),
    ("a,b,label\n1,2\n", "fields"),
    ("", "header row"),
])
def test_files_that_do_not_fit_are_one_line_errors(tmp_path, content, message):
    (tmp_path / "d.csv").write_text(content)
    with pytest.raises(DataError, match=message):
        load_table(tmp_path / "d.csv")
    result = invoke("train", "--dataset", tmp_path / "d.csv", "--plot", tmp_path / "p.png")
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1 and message in result.output


def test_npz_errors_and_a_model_for_other_inputs(tmp_path):
    np.savez(tmp_path / "no-y.npz", X=np.zeros((4, 2)))
    assert "no array named 'y'" in invoke("train", "--dataset", tmp_path / "no-y.npz").output
    np.savez(tmp_path / "rank.npz", X=np.zeros((4, 2, 2)), y=np.arange(4))
    assert "2-D array of numbers" in invoke("train", "--dataset", tmp_path / "rank.npz").output
    assert "--dataset" in invoke("train", "--dataset", "data.txt").output  # neither a name nor .npz/.csv
    X, y = blobs()
    np.savez(tmp_path / "d.npz", X=X, y=y)
    assert invoke("train", "--epochs", 1, "--save", tmp_path / "digits.npz", "--plot", tmp_path / "p.png",
                  "-q").exit_code == 0
    result = invoke("evaluate", tmp_path / "digits.npz", "--dataset", tmp_path / "d.npz")
    assert result.exit_code != 0 and "Traceback" not in result.output


def test_the_readme_commands_run_as_written(tmp_path, monkeypatch):
    """The documented table workflow, as written: train, evaluate its test split and another
    table, predict new rows into a CSV."""
    import shlex

    readme = documented()
    block = readme.split("## Any labelled data", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    X, y = blobs(n=400, features=4, classes=3, seed=2)
    X = X * [1000, 1, 0.01, 50] + [5000, 0, 0, -20]  # raw columns of very different scales
    species = np.array(["setosa", "versicolor", "virginica"])[y]
    header = "sepal_length,sepal_width,species,petal_length,petal_width"
    rows = [f"{a},{b},{s},{c},{d}" for (a, b, c, d), s in zip(X, species)]
    (tmp_path / "measurements.csv").write_text("\n".join([header] + rows[:300]) + "\n")
    (tmp_path / "more-measurements.csv").write_text("\n".join([header] + rows[300:]) + "\n")
    new = ["petal_width,petal_length,sepal_width,sepal_length"]  # (any order; no label column)
    new += [f"{d},{c},{b},{a}" for a, b, c, d in X[300:]]
    (tmp_path / "new-plants.csv").write_text("\n".join(new) + "\n")
    monkeypatch.chdir(tmp_path)
    outputs = []
    for line in block.strip().splitlines():
        args = shlex.split(line.split("#")[0])
        assert args[0] == "nbnet"
        result = CliRunner().invoke(main, args[1:])
        assert result.exit_code == 0, (line, result.output)
        outputs.append(result.output)
    assert "accuracy" in outputs[1] and (tmp_path / "eval.png").exists()
    assert "more-measurements.csv (100 rows)" in outputs[2]
    accuracy = float(outputs[2].split("accuracy ")[1].split("%")[0])
    assert accuracy > 90
    predicted = [line.split()[2] for line in outputs[3].splitlines() if line.startswith("row ")]
    assert len(predicted) == 100 and np.mean(np.array(predicted) == species[300:]) == accuracy / 100
    written = (tmp_path / "predicted.csv").read_text().splitlines()
    assert written[0] == new[0] + ",predicted,probability" and written[1].split(",")[4] == predicted[0]
