"""Tables as users bring them: raw scales, text categories, numeric targets in the hundreds;
the model keeps its standardisation (nbnet.scaling) and its columns (nbnet.tables.Columns), and
every later use (evaluate, predict on rows, resume, the Python API, a sweep) applies them."""

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from nbnet import Network
from nbnet.cli import main
from nbnet.data import DataError
from nbnet.scaling import Scaling
from nbnet.tables import Columns, load_table, read_rows


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def fruit(path, n=400, seed=0, label=True):
    """A table with columns of very different scales (size ~1000, weight ~0.002), a text
    category that decides the class together with size, and one that does not matter."""
    rng = np.random.default_rng(seed)
    color, shape = rng.choice(["red", "green", "blue"], n), rng.choice(["round", "square"], n)
    size, weight = rng.normal(1000, 300, n), rng.normal(0.002, 0.001, n)
    kind = np.where((color == "red") ^ (size > 1000), "A", "B")
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["size", "color", "weight", "shape"] + (["kind"] if label else []))
        for row in zip(size, color, weight, shape, kind):
            writer.writerow([f"{row[0]:.1f}", row[1], f"{row[2]:.5f}", row[3]] + ([row[4]] if label else []))
    return kind


@pytest.fixture(scope="module")
def fruit_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fruit")
    fruit(folder / "fruit.csv")
    result = invoke("train", "--dataset", folder / "fruit.csv", "--label-column", "kind", "--save",
                    folder / "fruit.npz", "--plot", folder / "p.png", "-q")
    assert result.exit_code == 0, result.output
    return folder


def test_scaling_standardises_columns_and_targets_and_round_trips():
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(1000, 300, 50), rng.integers(0, 2, 50), np.full(50, 7.0)])
    Y = np.column_stack([rng.normal(150, 70, 50), rng.normal(-3, 1, 50)])
    scaling = Scaling.fit(X, Y, keep=[1])
    inputs = scaling.inputs(X, np.float64)
    np.testing.assert_allclose(inputs[:, 0].mean(), 0, atol=1e-12)
    np.testing.assert_allclose(inputs[:, 0].std(), 1)
    assert np.array_equal(inputs[:, 1], X[:, 1]) and np.all(inputs[:, 2] == 0)  # one-hot kept; constant: 0
    assert scaling.target_std == pytest.approx(np.sqrt((Y[:, 0].var() + Y[:, 1].var()) / 2))  # one for all targets
    np.testing.assert_allclose(scaling.targets(Y, np.float64).mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(scaling.outputs(scaling.targets(Y, np.float64)), Y)
    stored = json.loads(json.dumps(scaling.as_dict()))
    again = Scaling.from_dict(stored, 3, 2)
    assert np.array_equal(again.input_mean, scaling.input_mean) and again.target_std == scaling.target_std
    with pytest.raises(ValueError, match="not 2 finite"):
        Scaling.from_dict(dict(stored, target_mean=[1.0]), 3, 2)
    with pytest.raises(ValueError, match="not positive"):
        Scaling.from_dict(dict(stored, input_std=[1.0, 0.0, 1.0]), 3, 2)
    with pytest.raises(ValueError, match="nothing to learn"):
        Scaling.fit(X, np.full((50, 1), 4.0))


def test_a_network_with_scaling_answers_in_the_targets_units(tmp_path):
    """forward in the targets' units; cost and gradients of the cost in those units (checked
    against finite differences); saved and loaded with the network."""
    rng = np.random.default_rng(1)
    X, Y = rng.normal(50, 20, (30, 3)), rng.normal(200, 60, (30, 2))
    net = Network([3, 4, 2], activation="tanh", output="identity", cost="quadratic", dtype="float64", seed=2)
    net.scaling = Scaling.fit(X, Y)
    plain = Network([3, 4, 2], activation="tanh", output="identity", cost="quadratic", dtype="float64", seed=2)
    Xs, Ys = net.scaling.inputs(X, np.float64), net.scaling.targets(Y, np.float64)
    np.testing.assert_allclose(net.forward(X), net.scaling.outputs(plain.forward(Xs)), rtol=1e-13)
    assert net.cost(X, Y, 0.1) == pytest.approx(net.scaling.target_std ** 2 * plain.cost(Xs, Ys, 0.1), rel=1e-13)
    direct = 0.5 * np.mean(np.sum((net.forward(X) - Y) ** 2, axis=1))  # the cost of the raw targets, by hand
    assert net.cost(X, Y) == pytest.approx(direct, rel=1e-10)
    grads_W, grads_b = net.gradients(X, Y, 0.1)
    for m, (W, G) in enumerate(zip(net.weights, grads_W)):
        for j, k in ((0, 0), (1, W.shape[1] - 1)):
            keep, h = W[j, k], 1e-5
            W[j, k] = keep + h
            up = net.cost(X, Y, 0.1)
            W[j, k] = keep - h
            down = net.cost(X, Y, 0.1)
            W[j, k] = keep
            assert G[j, k] == pytest.approx((up - down) / (2 * h), rel=1e-6), (m, j, k)
    net.save(tmp_path / "m.npz")
    loaded = Network.load(tmp_path / "m.npz")
    assert np.array_equal(loaded.forward(X), net.forward(X))
    plain.save(tmp_path / "plain.npz")  # (no scaling: as files written before there was one)
    assert Network.load(tmp_path / "plain.npz").scaling is None


def test_a_table_with_raw_scales_and_categories_trains_and_predicts(fruit_model, tmp_path):
    folder = fruit_model
    net, metadata = Network.load_with_metadata(folder / "fruit.npz")
    assert metadata["history"][-1]["test_accuracy"] >= 0.9
    columns = Columns.from_dict(metadata["inputs"]["columns"])
    assert columns.categories == {"color": ["blue", "green", "red"], "shape": ["round", "square"]}
    assert net.sizes[0] == 7 and columns.one_hot == [1, 2, 3, 5, 6]
    assert net.scaling.input_std[0] > 100 and net.scaling.input_std[1] == 1.0  # size standardised, codes kept
    plain = invoke("train", "--dataset", folder / "fruit.csv", "--label-column", "kind", "--no-standardize",
                   "--plot", tmp_path / "p.png", "-q")
    last = plain.output.strip().splitlines()[-1].split()
    assert float(last[-2].rstrip("%")) < 80  # the raw sizes saturate the sigmoid units
    # what a user does next: predict new rows (no label column), as the Python API does
    kind = fruit(tmp_path / "new.csv", n=20, seed=5, label=False)
    result = invoke("predict", folder / "fruit.npz", tmp_path / "new.csv", "--output", tmp_path / "out.csv")
    assert result.exit_code == 0, result.output
    X, labels = read_rows(tmp_path / "new.csv", columns)
    probabilities = net.forward(X)
    names = metadata["inputs"]["class_names"]
    expected = [f"row {i + 1}: {names[np.argmax(p)]} ({p.max():.1%})" for i, p in enumerate(probabilities)]
    assert labels is None and result.output.splitlines()[:20] == expected
    with open(tmp_path / "out.csv", newline="") as handle:
        written = list(csv.DictReader(handle))
    assert list(written[0]) == ["size", "color", "weight", "shape", "predicted", "probability"]
    assert [row["predicted"] for row in written] == [names[np.argmax(p)] for p in probabilities]
    assert np.mean([row["predicted"] for row in written] == kind) >= 0.8
    # another labelled table, scored whole
    fruit(tmp_path / "more.csv", n=100, seed=6)
    result = invoke("evaluate", folder / "fruit.npz", "--dataset", tmp_path / "more.csv")
    assert result.exit_code == 0, result.output
    X, y = read_rows(tmp_path / "more.csv", columns, names, labels="required")
    accuracy = np.mean(np.argmax(net.forward(X), axis=1) == y)
    assert f"more.csv (100 rows): cost" in result.output and f"accuracy {accuracy:.2%}" in result.output


@pytest.mark.parametrize("command,content,message", [
    ("predict", "size,color,weight\n900,red,0.001\n", "no column 'shape'"),
    ("predict", "size,color,weight,shape,price\n900,red,0.001,round,3\n", "a column 'price'"),
    ("predict", "size,color,weight,shape\n900,purple,0.001,round\n", "'purple' is not one of the categories"),
    ("predict", "size,color,weight,shape\nbig,red,0.001,round\n", "'big' is not a number"),
    ("evaluate", "size,color,weight,shape,kind\n900,red,0.001,round,C\n", "not one of the model's classes"),
    ("evaluate", "size,color,weight,shape\n900,red,0.001,round\n", "no column 'kind'"),
])
def test_rows_that_do_not_fit_the_model_are_one_line_errors(fruit_model, tmp_path, command, content, message):
    (tmp_path / "rows.csv").write_text(content)
    args = ([fruit_model / "fruit.npz", tmp_path / "rows.csv", "--output", tmp_path / "out.csv"] if command == "predict"
            else [fruit_model / "fruit.npz", "--dataset", tmp_path / "rows.csv"])
    result = invoke(command, *args)
    assert result.exit_code == 1 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize("content,options,message", [
    ("a,b,label\n1,2,0\n2,n/a,1\n3,4,0\n", [], "'n/a' is not a number (the column's other values are"),
    ("a,b,y\n1,2,5\n2,3,5\n3,4,5\n4,5,5\n5,6,5\n", ["--label-column", "y", "--output", "identity", "--cost",
                                                    "quadratic"], "nothing to learn"),
    ("a,b,label\n1,2,0\n2,3,1\n", ["--categorical", "c"], "--categorical c: no such feature column"),
])
def test_tables_that_do_not_fit_are_one_line_errors(tmp_path, content, options, message):
    (tmp_path / "d.csv").write_text(content)
    result = invoke("train", "--dataset", tmp_path / "d.csv", *options, "--plot", tmp_path / "p.png", "-q")
    assert result.exit_code == 1 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


def test_declared_categories_and_constant_columns(tmp_path):
    """--categorical makes a column of numbers a category; a constant column is noted and adds
    nothing (standardised: 0), never a NaN."""
    rng = np.random.default_rng(3)
    code, x = rng.integers(1, 4, 300), rng.standard_normal(300)
    label = np.where((code == 2) ^ (x > 0), "yes", "no")
    rows = ["code,x,flat,label"] + [f"{c},{v:.4f},5,{lab}" for c, v, lab in zip(code, x, label)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    data = load_table(tmp_path / "d.csv", categorical=("code",))
    assert data.columns.categories == {"code": ["1", "2", "3"]} and data.n_inputs == 5
    result = CliRunner().invoke(main, ["train", "--dataset", str(tmp_path / "d.csv"), "--categorical",
                                                       "code", "--save", str(tmp_path / "m.npz"), "--plot",
                                                       str(tmp_path / "p.png")])
    assert result.exit_code == 0, result.output
    assert "flat is the same in every training row" in result.stderr
    net = Network.load(tmp_path / "m.npz")
    assert np.all(np.isfinite(net.scaling.input_mean)) and net.scaling.input_std[4] == 1.0
    assert net.evaluate(data.X_test, data.y_test)[1] >= 0.9  # (the raw test rows: the network standardises them)


def test_resume_evaluate_and_sweep_keep_the_tables_scaling(fruit_model, tmp_path):
    """A run of 2 epochs resumed for 2 more equals a straight 4-epoch run, bit for bit (the
    scaling is the saved one); nbnet sweep's runs standardise as nbnet train's do."""
    from nbnet.options import TrainConfig
    from nbnet.sweep import jobs, run_one

    common = ["--dataset", fruit_model / "fruit.csv", "--label-column", "kind", "--hidden", 12, "-q", "--plot",
              tmp_path / "p.png"]
    assert invoke("train", *common, "--epochs", 4, "--save", tmp_path / "straight.npz").exit_code == 0
    assert invoke("train", *common, "--epochs", 2, "--save", tmp_path / "run.npz").exit_code == 0
    result = invoke("train", "--resume", tmp_path / "run.npz", "--epochs", 4, "-q", "--plot", tmp_path / "p.png")
    assert result.exit_code == 0, result.output
    straight, resumed = Network.load(tmp_path / "straight.npz"), Network.load(tmp_path / "run.npz")
    assert np.array_equal(straight.scaling.input_mean, resumed.scaling.input_mean)
    assert all(np.array_equal(a, b) for a, b in zip(straight.weights + straight.biases, resumed.weights + resumed.biases))
    report = invoke("evaluate", tmp_path / "run.npz")
    history = Network.load_with_metadata(tmp_path / "run.npz")[1]["history"]
    assert report.exit_code == 0 and f"accuracy {history[-1]['test_accuracy']:.2%}" in report.output
    config = TrainConfig(dataset=str(fruit_model / "fruit.csv"), label_column="kind")  # (the fixture's run)
    swept = run_one(jobs([config], None, 1)[0])
    trained = Network.load_with_metadata(fruit_model / "fruit.npz")[1]["history"][-1]
    assert swept["test_accuracy"] == trained["test_accuracy"] >= 0.9


def test_a_model_of_an_npz_predicts_npz_rows(tmp_path):
    rng = np.random.default_rng(4)
    X = rng.normal(0, 1000, (300, 3))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    assert invoke("train", "--dataset", tmp_path / "d.npz", "--save", tmp_path / "m.npz", "-q", "--plot",
                  tmp_path / "p.png").exit_code == 0
    np.savez(tmp_path / "rows.npz", X=X[:5])
    result = invoke("predict", tmp_path / "m.npz", tmp_path / "rows.npz")
    net = Network.load(tmp_path / "m.npz")
    assert result.exit_code == 0 and result.output.splitlines() == [
        f"row {i + 1}: {np.argmax(p)} ({p.max():.1%})" for i, p in enumerate(net.forward(X[:5]))]
    with pytest.raises(DataError, match="X must be rows of 2 numbers"):
        read_rows(tmp_path / "d.npz", Columns(["x1", "x2"]))


@pytest.fixture
def sklearn_tables(tmp_path):
    """scikit-learn's bundled breast cancer and diabetes tables written to CSV, label column `target`."""
    datasets = pytest.importorskip("sklearn.datasets")
    for name, data in (("bc", datasets.load_breast_cancer()), ("diabetes", datasets.load_diabetes(scaled=False))):
        with open(tmp_path / f"{name}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow([*data.feature_names, "target"])
            writer.writerows([*map(repr, map(float, row)), target] for row, target in zip(data.data, data.target))
    return tmp_path


def test_the_best_known_small_tables_with_the_defaults(sklearn_tables, monkeypatch):
    """Breast cancer (30 features from 0.001 to 4,000) and diabetes (targets 25-346), nothing but
    the defaults and the label column: >= 95 % test accuracy and R^2 >= 0.35 on the seeded split."""
    monkeypatch.chdir(sklearn_tables)
    result = invoke("train", "--dataset", "bc.csv", "--label-column", "target", "--save", "bc.npz", "-q")
    assert result.exit_code == 0, result.output
    assert Network.load_with_metadata("bc.npz")[1]["history"][-1]["test_accuracy"] >= 0.95
    result = invoke("train", "--dataset", "diabetes.csv", "--label-column", "target", "--output", "identity", "--cost",
                    "quadratic", "--save", "diabetes.npz", "-q")
    assert result.exit_code == 0, result.output
    report = invoke("evaluate", "diabetes.npz")
    assert report.exit_code == 0 and float(report.output.split("R^2 ")[1].split(",")[0]) >= 0.35, report.output
