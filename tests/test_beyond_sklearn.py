"""What scikit-learn's MLP users asked for and never got: class_weight, a validation set of
one's own with its loss curve, scikit-learn's callback API, and ONNX export (the estimators
through skl2onnx, nbnet train's models through nbnet export)."""

import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from click.testing import CliRunner  # noqa: E402
from sklearn.datasets import load_digits, make_classification, make_multilabel_classification, make_regression  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import log_loss, recall_score  # noqa: E402
from sklearn.model_selection import GridSearchCV, train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.class_weight import compute_sample_weight  # noqa: E402

from nbnet import callbacks as nbnet_callbacks  # noqa: E402
from nbnet.cli import main  # noqa: E402
from nbnet.sklearn import MLPClassifier, MLPRegressor  # noqa: E402
from documents import documented  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def same_weights(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_))


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


# ----------------------------------------------------------------------------- class_weight
@pytest.mark.parametrize("class_weight", ["balanced", {0: 5.0, 1: 1.0, 2: 0.5}])
def test_class_weight_is_a_factor_of_the_sample_weights(class_weight):
    """scikit-learn's meaning: the same fit as sample_weight=compute_sample_weight(class_weight, y)."""
    X, y = make_classification(200, 6, n_classes=3, n_informative=4, weights=[0.6, 0.3, 0.1], random_state=0)
    settings = dict(hidden_layer_sizes=(12,), max_iter=15, random_state=0, threads=1)
    weighted = MLPClassifier(class_weight=class_weight, **settings).fit(X, y)
    by_hand = MLPClassifier(**settings).fit(X, y, sample_weight=compute_sample_weight(class_weight, y))
    assert same_weights(weighted, by_hand) and not same_weights(weighted, MLPClassifier(**settings).fit(X, y))
    times_two = MLPClassifier(class_weight=class_weight, **settings).fit(X, y, sample_weight=np.full(len(y), 2.0))
    by_hand = MLPClassifier(**settings).fit(X, y, sample_weight=2 * compute_sample_weight(class_weight, y))
    assert same_weights(times_two, by_hand)


def test_class_weight_for_multi_label_y_and_partial_fit():
    X, Y = make_multilabel_classification(150, 6, n_classes=3, random_state=0)
    settings = dict(hidden_layer_sizes=(8,), max_iter=10, random_state=0, threads=1)
    weighted = MLPClassifier(class_weight="balanced", **settings).fit(X, Y)
    assert same_weights(weighted, MLPClassifier(**settings).fit(X, Y, sample_weight=compute_sample_weight("balanced", Y)))
    with pytest.raises(ValueError, match="list of dicts"):  # (scikit-learn's own message)
        MLPClassifier(class_weight={0: 1, 1: 2}, **settings).fit(X, Y)
    y = Y[:, 0]
    with pytest.raises(ValueError, match="not supported for partial_fit"):
        MLPClassifier(class_weight="balanced").partial_fit(X, y, classes=[0, 1])
    MLPClassifier(class_weight={0: 1.0, 1: 3.0}).partial_fit(X, y, classes=[0, 1])
    with pytest.raises(ValueError, match="class_weight"):
        MLPClassifier(class_weight="heavy").fit(X, y)


def test_balanced_class_weight_raises_the_minority_recall_as_logistic_regressions_does():
    X, y = make_classification(1000, 10, weights=[0.9, 0.1], flip_y=0.05, random_state=0)
    X_train, X_test, y_train, y_test = train_test_split(X, y, stratify=y, random_state=0)
    recalls = {}
    for name, make in (("nbnet", lambda weight: MLPClassifier(random_state=0, threads=1, class_weight=weight)),
                       ("logistic", lambda weight: LogisticRegression(class_weight=weight))):
        for weight in (None, "balanced"):
            recalls[name, weight] = recall_score(y_test, make(weight).fit(X_train, y_train).predict(X_test))
    assert recalls["nbnet", "balanced"] > recalls["nbnet", None]
    assert recalls["logistic", "balanced"] > recalls["logistic", None]


# ----------------------------------------------------------------------------- a validation set of one's own
@pytest.mark.parametrize("hidden", [(30,), (320,)], ids=["compiled epochs", "epoch by epoch"])
def test_a_validation_set_of_ones_own_is_scored_after_every_epoch(digits, hidden):
    """validation_scores_ and validation_loss_curve_ on X_val without early stopping (the last:
    the fitted model's score and loss, the loss as loss_curve_'s: L2 term included); a narrow
    network (its epochs compiled) and a wide one (epoch by epoch) alike."""
    X, y = digits
    X_train, X_val, y_train, y_val = train_test_split(X, y, test_size=0.25, random_state=0)
    model = MLPClassifier(hidden_layer_sizes=hidden, max_iter=6, random_state=0, threads=1).fit(X_train, y_train, X_val=X_val,
                                                                                      y_val=y_val)
    assert len(model.validation_scores_) == len(model.validation_loss_curve_) == model.n_iter_ == 6
    assert model.best_validation_score_ is None and model.validation_scores_[-1] == model.score(X_val, y_val)
    l2_term = 0.5 * model.alpha / 200 * sum(float(np.sum(c ** 2)) for c in model.coefs_)  # (alpha / 2B ||W||^2)
    expected = log_loss(y_val, model.predict_proba(X_val)) + l2_term
    assert model.validation_loss_curve_[-1] == pytest.approx(expected, rel=1e-9)
    assert model.validation_loss_curve_[0] > model.validation_loss_curve_[-1]
    plain = MLPClassifier(hidden_layer_sizes=hidden, max_iter=6, random_state=0, threads=1).fit(X_train, y_train)
    assert same_weights(model, plain)  # (watching costs nothing but time)


def test_early_stopping_watches_the_validation_set_it_is_given(digits):
    X, y = digits
    X_train, X_val, y_train, y_val = train_test_split(X, y, test_size=0.25, random_state=0)
    model = MLPClassifier(hidden_layer_sizes=(30,), max_iter=300, early_stopping=True, n_iter_no_change=3,
                          random_state=0, threads=1).fit(X_train, y_train, X_val=X_val, y_val=y_val)
    assert model.n_iter_ < 300 and model.t_ == model.n_iter_ * len(X_train)  # (nothing held out of X_train)
    assert model.best_validation_score_ == max(model.validation_scores_) == model.score(X_val, y_val)  # best kept
    own = MLPClassifier(hidden_layer_sizes=(30,), max_iter=5, early_stopping=True, random_state=0, threads=1).fit(X, y)
    assert len(own.validation_loss_curve_) == len(own.validation_scores_) == 5  # (its own split: both recorded)


def test_validation_sets_for_the_regressor_and_bad_ones():
    X, Y = make_regression(300, 5, n_targets=2, noise=5, random_state=0)
    Y /= Y.std()
    model = MLPRegressor(hidden_layer_sizes=(16,), max_iter=5, random_state=0, threads=1).fit(X[:200], Y[:200], X_val=X[200:],
                                                                                    y_val=Y[200:])
    l2_term = 0.5 * model.alpha / 200 * sum(float(np.sum(c ** 2)) for c in model.coefs_)
    squared = 0.5 * np.mean((model.predict(X[200:]) - Y[200:]) ** 2)  # (scikit-learn's: a mean over outputs too)
    assert model.validation_loss_curve_[-1] == pytest.approx(squared + l2_term, rel=1e-9)
    assert model.validation_scores_[-1] == pytest.approx(model.score(X[200:], Y[200:]))
    with pytest.raises(ValueError, match="'lbfgs' has no epochs"):
        MLPRegressor(solver="lbfgs").fit(X, Y, X_val=X, y_val=Y)
    with pytest.raises(ValueError, match="need X_val"):
        MLPRegressor().fit(X, Y, y_val=Y)
    with pytest.raises(ValueError, match="outputs"):
        MLPRegressor(max_iter=1).fit(X, Y, X_val=X, y_val=Y[:, 0])
    with pytest.raises(ValueError, match="classes not in y"):
        MLPClassifier(max_iter=1).fit(X, Y[:, 0] > 0, X_val=X, y_val=np.full(len(X), 7))


# ----------------------------------------------------------------------------- callbacks
needs_callbacks = pytest.mark.skipif(not nbnet_callbacks.AVAILABLE, reason="scikit-learn before 1.9 has no callback API")


@needs_callbacks
@pytest.mark.parametrize("settings", [dict(hidden_layer_sizes=(30,)), dict(hidden_layer_sizes=(320,)),
                                      dict(hidden_layer_sizes=(30,), solver="lbfgs")],
                         ids=["compiled epochs", "epoch by epoch", "lbfgs"])
def test_scoring_monitor_logs_the_score_of_the_fit_stopped_there(digits, settings):
    """scikit-learn's contract (its test_score_after_fit): the score logged after epoch i is the
    score of the same fit stopped by max_iter=i."""
    from sklearn.callback import ScoringMonitor

    X, y = digits
    monitor = ScoringMonitor(scoring="accuracy")
    MLPClassifier(max_iter=4, random_state=0, threads=1, **settings).set_callbacks(monitor).fit(X, y)
    logged = [row["accuracy"] for row in monitor.get_logs().data if row["task_name"].split()[0] in ("epoch", "iteration")]
    stopped = [MLPClassifier(max_iter=i, random_state=0, threads=1, **settings).fit(X, y).score(X, y) for i in range(1, 5)]
    assert logged == stopped


@needs_callbacks
def test_a_callback_can_stop_a_fit_and_callbacks_propagate_through_pipelines_and_searches(digits):
    from sklearn.callback import ProgressBar, ScoringMonitor

    X, y = digits

    class StopAfterTwo:
        def setup(self, estimator, context):
            self.ended = 0

        def teardown(self, estimator, context):
            pass

        def on_fit_task_begin(self, estimator, context):
            pass

        def on_fit_task_end(self, estimator, context):
            self.ended += context.task_name.startswith("epoch")
            return self.ended >= 2

    for hidden in ((30,), (320,)):
        model = MLPClassifier(hidden_layer_sizes=hidden, max_iter=50, random_state=0, threads=1).set_callbacks(StopAfterTwo())
        assert model.fit(X, y).n_iter_ == 2 and len(model.loss_curve_) == 2
    pytest.importorskip("rich")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipeline = make_pipeline(StandardScaler(), MLPClassifier(max_iter=5, random_state=0, threads=1))
        pipeline.set_callbacks(ProgressBar()).fit(X, y)
        assert pipeline.score(X, y) > 0.8
        monitor = ScoringMonitor(scoring="accuracy")
        search = GridSearchCV(MLPClassifier(max_iter=3, random_state=0, threads=1).set_callbacks(monitor),
                              {"alpha": [1e-4, 1e-2]}, cv=2, n_jobs=1)
        search.fit(X, y)
    epochs = [row for row in monitor.get_logs("all")[0].data if row["task_name"].startswith("epoch")]
    assert len(epochs) == (2 * 2 + 1) * 3  # (2 candidates x 2 folds and the refit, 3 epochs each, in the search's run)
    unwatched = MLPClassifier(max_iter=2, random_state=0, threads=1).fit(X, y)
    assert not hasattr(unwatched, "_callback_fit_ctx")


# ----------------------------------------------------------------------------- ONNX
@pytest.fixture(scope="module")
def onnxruntime():
    pytest.importorskip("skl2onnx")
    runtime = pytest.importorskip("onnxruntime")
    import nbnet.onnx  # noqa: F401  (registers the converters)
    return runtime


def run_onnx(runtime, model, X):
    session = runtime.InferenceSession(model.SerializeToString())
    return session.run(None, {session.get_inputs()[0].name: X})


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic", "identity"])
def test_onnx_classifiers_predict_what_nbnet_predicts(onnxruntime, dtype, activation):
    from skl2onnx import to_onnx

    X, y = make_classification(200, 6, n_classes=3, n_informative=4, random_state=0)
    X, names = X.astype(dtype), np.array(["cat", "dog", "emu"])[y]
    model = MLPClassifier(hidden_layer_sizes=(12,), activation=activation, max_iter=20, random_state=0, threads=1).fit(X, names)
    labels, probabilities = run_onnx(onnxruntime, to_onnx(model, X[:1], options={"zipmap": False}), X)
    difference = np.abs(probabilities - model.predict_proba(X)).max()
    assert difference <= (1e-5 if dtype == np.float32 else 1e-12), difference
    assert np.array_equal(labels, model.predict(X))


def test_onnx_binary_multilabel_regressors_and_pipelines(onnxruntime):
    from skl2onnx import to_onnx

    X, y = make_classification(200, 6, random_state=0)
    X32 = X.astype(np.float32)
    binary = MLPClassifier(hidden_layer_sizes=(8,), max_iter=20, random_state=0, threads=1).fit(X32, y)
    labels, probabilities = run_onnx(onnxruntime, to_onnx(binary, X32[:1]), X32)  # (zipmap: a dict a row)
    assert np.array_equal(labels, binary.predict(X32))
    assert np.abs(np.array([[row[0], row[1]] for row in probabilities]) - binary.predict_proba(X32)).max() <= 1e-5
    X_labels, Y = make_multilabel_classification(150, 6, n_classes=3, random_state=0)
    multilabel = MLPClassifier(hidden_layer_sizes=(8,), max_iter=20, random_state=0, threads=1).fit(X_labels, Y)
    labels, probabilities = run_onnx(onnxruntime, to_onnx(multilabel, X_labels[:1], options={"zipmap": False}),
                                     X_labels)
    assert np.array_equal(labels, multilabel.predict(X_labels))
    assert np.abs(probabilities - multilabel.predict_proba(X_labels)).max() <= 1e-12
    X_reg, Y_reg = make_regression(150, 5, n_targets=2, random_state=0)
    for loss, targets in (("squared_error", Y_reg / 100), ("poisson", np.abs(Y_reg[:, 0]) / 100)):
        regressor = MLPRegressor(loss=loss, hidden_layer_sizes=(8,), max_iter=20, random_state=0, threads=1).fit(X_reg, targets)
        (prediction,) = run_onnx(onnxruntime, to_onnx(regressor, X_reg[:1]), X_reg)
        assert np.abs(prediction.reshape(regressor.predict(X_reg).shape) - regressor.predict(X_reg)).max() <= 1e-12
    pipeline = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(8,), max_iter=20, random_state=0, threads=1))
    pipeline.fit(X, y)
    labels, probabilities = run_onnx(onnxruntime, to_onnx(pipeline, X[:1], options={"zipmap": False}), X)
    assert np.array_equal(labels, pipeline.predict(X)) and np.abs(probabilities - pipeline.predict_proba(X)).max() < 1e-9


def test_nbnet_export_runs_as_nbnet_predict(onnxruntime, tmp_path, monkeypatch):
    """The documented commands as written: a digits model exported, then run on the image
    nbnet predict reads, gives predict's answer; bad files are one-line errors."""
    import shlex

    from nbnet.images import fit_image, read_image

    block = documented().split("## ONNX", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    X, _ = load_digits(return_X_y=True)
    np.save("digit.npy", X[0].reshape(8, 8))
    outputs = []
    for line in block.strip().splitlines():
        args = shlex.split(line.split("#")[0])
        result = CliRunner().invoke(main, args[1:])
        assert result.exit_code == 0, (line, result.output)
        outputs.append(result.output)
    assert "inputs pixels; outputs label, probabilities" in outputs[1]
    predicted = outputs[2].split(": ")[1].split()  # "digit.npy: 0 (99.1%)"
    row = fit_image(read_image("digit.npy"), (8, 8), 1.0, False) * 16.0  # (the pixels predict fed the model)
    labels, probabilities = run_onnx(onnxruntime, __import__("onnx").load("digits.onnx"), row[None].astype(np.float32))
    assert str(labels[0]) == predicted[0] and f"({probabilities[0].max():.1%})" == predicted[1]
    result = CliRunner().invoke(main, ["export", "missing.npz", "out.onnx"])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    (tmp_path / "file").write_text("")
    result = CliRunner().invoke(main, ["export", "digits.npz", "file/out.onnx"])
    assert result.exit_code == 1 and "cannot write" in result.output


def test_the_pages_python_examples_run_as_written(tmp_path, monkeypatch, capsys):
    """Every Python block of docs/beyond-sklearn.md, run as written; the class-weight block
    prints what the page shows after it."""
    from pathlib import Path

    page = (Path(__file__).parents[1] / "docs" / "beyond-sklearn.md").read_text()
    blocks = [part.split("```", 1) for part in page.split("```python\n")[1:]]
    monkeypatch.chdir(tmp_path)
    for number, (code, after) in enumerate(blocks):
        if "onnxruntime" in code:
            pytest.importorskip("onnxruntime")
            pytest.importorskip("skl2onnx")
        if "sklearn.callback" in code and not nbnet_callbacks.AVAILABLE:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exec(compile(code, f"beyond-sklearn.md block {number}", "exec"), {})
        printed = capsys.readouterr().out
        if number == 0:
            shown = after.split("```\n", 1)[1].split("```", 1)[0]
            assert printed == shown
        assert printed.strip()
