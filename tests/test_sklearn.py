"""nbnet.sklearn.MLPClassifier: scikit-learn's estimator checks, the habits of its users
(pipelines, grid search in worker processes, cross-validation, pickling, any labels), and
that it trains exactly what nbnet's train() trains."""

import pickle

import numba
import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

import joblib  # noqa: E402  (scikit-learn's dependency)

from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from nbnet.data import load_digits  # noqa: E402
from nbnet.sklearn import MLPClassifier, MLPRegressor  # noqa: E402
from nbnet.train import train  # noqa: E402
from documents import documented  # noqa: E402

# Checks that fail for a stated reason: none (every check of scikit-learn 1.9 passes, the sample
# weight equivalence checks included). Each estimator here runs on one thread (threads=1): a fit
# then compiles no parallel kernel; and in float64 whatever the checks' data (float32 data would
# compile every driver again, for float32; test_mlp_param_dtypes of scikit-learn's own tests,
# bench/sklearn_tests.py, checks that float32 data keeps float32 weights).
EXPECTED_FAILURES = {}


@parametrize_with_checks([MLPClassifier(max_iter=50, threads=1, random_state=0, dtype="float64"),
                          MLPRegressor(max_iter=50, threads=1, random_state=0, dtype="float64")],
                         expected_failed_checks=lambda estimator: EXPECTED_FAILURES)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def digits():
    data = load_digits(dtype="float64")
    return data.X_train * 16, data.y_train, data.X_test * 16, data.y_test  # raw 0..16 pixels: scaling matters


def test_pipeline_with_a_scaler_and_the_score(digits):
    X, y, X_test, y_test = digits
    model = make_pipeline(StandardScaler(), MLPClassifier(max_iter=30, random_state=0, threads=1)).fit(X, y)
    assert model.score(X_test, y_test) > 0.93


def test_grid_search_in_two_worker_processes_and_cross_validation(digits):
    X, y = digits[0][:600], digits[1][:600]
    search = GridSearchCV(MLPClassifier(max_iter=15, batch_size=32, learning_rate_init=0.01, random_state=0, threads=1),
                          {"alpha": [1e-4, 1.0], "hidden_layer_sizes": [(20,), (40,)]}, cv=2, n_jobs=2)
    search.fit(X / 16, y)
    assert len(search.cv_results_["params"]) == 4 and search.best_score_ > 0.8
    scores = cross_val_score(MLPClassifier(max_iter=15, batch_size=32, learning_rate_init=0.01, random_state=0, threads=1),
                             X / 16, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.8


def test_string_labels_pickling_and_coefs_in_scikit_learn_orientation(digits, tmp_path):
    X, y = digits[0] / 16, digits[1]
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    model = MLPClassifier(hidden_layer_sizes=25, max_iter=20, random_state=1, threads=1).fit(X, names[y])
    assert list(model.classes_) == sorted(names)
    assert [W.shape for W in model.coefs_] == [(64, 25), (25, 10)] and model.n_layers_ == 3
    assert [b.shape for b in model.intercepts_] == [(25,), (10,)]
    assert model.n_iter_ == len(model.loss_curve_) and model.loss_curve_[-1] < model.loss_curve_[0]
    assert model.plot_first_layer(tmp_path / "weights.png", (8, 8)).stat().st_size > 1000  # 25 tiles of 8 x 8
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.predict_proba(X), model.predict_proba(X))
    assert set(again.predict(X[:50])) <= set(names)
    joblib.dump(model, tmp_path / "model.joblib")  # read back as read-only memory maps (what joblib's workers get)
    mapped = joblib.load(tmp_path / "model.joblib", mmap_mode="r")
    assert all(P.flags.writeable for P in mapped._network.weights + mapped._network.biases + [mapped._network.acts])
    np.testing.assert_array_equal(mapped.predict_proba(X), model.predict_proba(X))
    mapped.partial_fit(X, names[y])
    again.coefs_[-1][...] = 0  # coefs_ are the network's weights: zeroing them changes the predictions
    again.intercepts_[-1][...] = 0
    np.testing.assert_allclose(again.predict_proba(X[:3]), 0.1)


def test_the_targets_of_a_fit_are_the_label_binarizers():
    """The classifier's targets of y at a fit (written without the binarizer's transform, which
    checks y again) are LabelBinarizer's, for several and two classes, numbers and strings."""
    from sklearn.preprocessing import LabelBinarizer

    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 3))
    labels = [rng.integers(0, 4, 50), rng.integers(0, 2, 50), np.where(rng.integers(0, 2, 50) > 0, 5, -3),
              rng.integers(0, 3, 50).astype(float), np.array(list("abc") * 16 + ["a", "c"], dtype=object),
              np.array(["x", "y"] * 25), rng.integers(0, 2, (50, 3))]
    for y in labels:
        _, Y, _ = MLPClassifier()._validate_input(X, y, incremental=False, reset=True)
        expected = LabelBinarizer().fit(y).transform(y).astype(bool)
        assert Y.dtype == expected.dtype and Y.shape == expected.shape and np.array_equal(Y, expected), y[:4]


@pytest.mark.parametrize("hidden", [30, 330], ids=["narrow-compiled-epochs", "wide-epoch-by-epoch"])
def test_fit_trains_what_nbnet_train_trains(digits, monkeypatch, hidden):
    """The estimator adds no maths of its own: its weights equal those of nbnet.train run on the
    network, inputs, config and run state it hands over, bit for bit, whether its epochs ran in
    compiled code (a narrow network: nbnet.stochastic) or epoch by epoch through train() itself;
    the initial weights are drawn as scikit-learn draws them (Glorot's uniform from
    random_state); alpha is scikit-learn's (lambda = alpha n / B)."""
    import copy

    import nbnet.sklearn
    import nbnet.stochastic
    from nbnet.data import Split

    calls = []

    def recording_train(net, split, config, on_epoch=None, state=None, slices=50):
        calls.append((copy.deepcopy(net), split.X_train, split.y_train, config, copy.deepcopy(state)))
        return train(net, split, config, on_epoch=on_epoch, state=state, slices=slices)

    fit = nbnet.stochastic.fit

    def recording_fit(estimator, net, X, y, state, config, *rest):
        calls.append((copy.deepcopy(net), X, y, config.but(epochs=rest[2]), copy.deepcopy(state)))
        return fit(estimator, net, X, y, state, config, *rest)

    monkeypatch.setattr(nbnet.sklearn, "train", recording_train)
    monkeypatch.setattr(nbnet.stochastic, "fit", recording_fit)
    X, y = digits[0] / 16, digits[1]
    model = MLPClassifier(hidden_layer_sizes=(hidden,), solver="sgd", learning_rate_init=0.1, alpha=0.01,
                          batch_size=32, max_iter=4 if hidden == 30 else 2, tol=0, random_state=5, threads=1)
    with pytest.warns(sklearn.exceptions.ConvergenceWarning):
        model.fit(X, y)
    (net, X_train, y_train, config, state), = calls
    assert config.l2 == pytest.approx(0.01 * len(X) / 32) and config.optimizer == "nesterov" and config.shuffle
    bound = np.sqrt(6 / (64 + hidden))
    np.testing.assert_array_equal(net.weights[0].T, np.random.RandomState(5).uniform(-bound, bound, (64, hidden)))
    threads = numba.get_num_threads()
    numba.set_num_threads(1)  # as the estimator ran (the variants agree bit for bit anyway)
    try:
        train(net, Split(X_train, y_train, None, None), config, state=state)
    finally:
        numba.set_num_threads(threads)
    for W, coef in zip(net.weights, model.coefs_):
        np.testing.assert_array_equal(W.T, coef)


def test_kernels_loops_fits_through_the_plain_loops(digits):
    """kernels="loops" fits through nbnet/loops.py: the model of the fast kernels up to rounding,
    but not its bits (the plain loops add in another order, so another path ran). (float64 and
    two hidden layers, as the other float64 tests: nothing new to compile.)"""
    X, y = digits[0][:300] / 16, digits[1][:300]
    settings = dict(hidden_layer_sizes=(24, 16), solver="sgd", learning_rate_init=0.1, batch_size=32, max_iter=2,
                    tol=0, random_state=5, threads=1, dtype="float64")
    with pytest.warns(sklearn.exceptions.ConvergenceWarning):
        fast = MLPClassifier(**settings).fit(X, y)
    with pytest.warns(sklearn.exceptions.ConvergenceWarning):
        plain = MLPClassifier(kernels="loops", **settings).fit(X, y)
    for got, want in zip(plain.coefs_ + plain.intercepts_, fast.coefs_ + fast.intercepts_):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-11)
    assert not all(np.array_equal(a, b) for a, b in zip(plain.coefs_, fast.coefs_))
    assert plain.loss_curve_ == pytest.approx(fast.loss_curve_, rel=1e-9)


def test_one_full_batch_sgd_step_by_hand(digits):
    """W <- W - lr (dJ/dW + alpha/B W) for one plain-SGD step over a full batch (scikit-learn's rule),
    from the weights a first fit left (warm_start)."""
    X, y = digits[0][:40] / 16, digits[1][:40]
    model = MLPClassifier(hidden_layer_sizes=(12,), solver="sgd", momentum=0, learning_rate_init=0.3, alpha=0.5,
                          batch_size=40, max_iter=1, random_state=2, warm_start=True, threads=1)
    with pytest.warns(sklearn.exceptions.ConvergenceWarning):
        model.fit(X, y)
    start = [W.copy() for W in model._network.weights]
    grads_W, grads_b = model._network.gradients(X, y, l2=0.5, n_train=40)  # dJ/dW + (0.5 / 40) W
    with pytest.warns(sklearn.exceptions.ConvergenceWarning):
        model.fit(X, y)
    for W0, g, coef in zip(start, grads_W, model.coefs_):
        np.testing.assert_allclose(coef.T, W0 - np.float32(0.3) * g, rtol=1e-5, atol=1e-6)


def test_partial_fit_and_early_stopping(digits):
    X, y = digits[0] / 16, digits[1]
    model = MLPClassifier(hidden_layer_sizes=(20,), random_state=0, threads=1)
    with pytest.raises(ValueError, match="classes"):
        model.partial_fit(X, y)
    for _ in range(5):
        model.partial_fit(X[:500], y[:500], classes=np.arange(10))
    assert model.n_iter_ == 1 and len(model.loss_curve_) == 5 and model.loss_curve_[-1] < model.loss_curve_[0]
    stopping = MLPClassifier(hidden_layer_sizes=(20,), early_stopping=True, n_iter_no_change=2, max_iter=500,
                             learning_rate_init=0.01, random_state=0, threads=1).fit(X, y)
    assert stopping.n_iter_ < 500 and len(stopping.validation_scores_) == stopping.n_iter_
    assert stopping.best_validation_score_ == max(stopping.validation_scores_) > 0.9


def test_bad_settings_are_clear_errors(digits):
    X, y = digits[0][:50], digits[1][:50]
    for bad, match in (({"solver": "newton"}, "solver"), ({"activation": "softplus"}, "activation"),
                       ({"hidden_layer_sizes": (0,)}, "hidden_layer_sizes"), ({"batch_size": 0}, "batch_size"),
                       ({"kernels": "gpu"}, "kernels"), ({"learning_rate": "cyclic"}, "learning_rate"),
                       ({"dtype": "int8"}, "dtype"), ({"momentum": 1.5}, "momentum")):
        with pytest.raises(ValueError, match=match):
            MLPClassifier(**bad).fit(X, y)
    with pytest.raises(ValueError, match="loss"):
        MLPRegressor(loss="huber").fit(X, y)
    with pytest.raises(ValueError, match="classes"):  # (one thread, 2 epochs: compiles what the other tests use)
        MLPClassifier(max_iter=2, threads=1).fit(X, y).partial_fit(X, y + 20)


def test_the_readme_example_runs_as_written(digits):
    """The README's scikit-learn example, on the digits (then what a user does next: predict)."""
    readme = documented()
    example = readme.split("## scikit-learn estimator", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    X_train, y_train, X_test, y_test = digits
    scope = dict(X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test)
    threads = numba.get_num_threads()
    numba.set_num_threads(1)  # (one thread: the digits compile no parallel kernel)
    try:
        exec(example, scope)
    finally:
        numba.set_num_threads(threads)
    clf = scope["clf"]
    assert clf.score(X_test, y_test) > 0.9 and clf.coefs_[0].shape[0] == 64
    assert scope["model"].score(X_test, y_test) > 0.9


@pytest.fixture(scope="module")
def regression():
    from sklearn.datasets import make_regression

    X, y = make_regression(n_samples=200, n_features=10, noise=10.0, random_state=7)
    return X, y / y.std()


def test_lbfgs_matches_scikit_learn_on_regression_and_classification(regression, digits):
    """solver='lbfgs' reaches what scikit-learn's reaches (same start: the same Glorot draws)."""
    import warnings

    from sklearn.neural_network import MLPClassifier as SkClassifier
    from sklearn.neural_network import MLPRegressor as SkRegressor

    X, y = regression
    settings = dict(solver="lbfgs", hidden_layer_sizes=(20,), max_iter=300, random_state=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sklearn.exceptions.ConvergenceWarning)
        ours, theirs = MLPRegressor(threads=1, **settings).fit(X, y), SkRegressor(**settings).fit(X, y)
        assert ours.score(X, y) == pytest.approx(theirs.score(X, y), abs=0.01) and ours.score(X, y) > 0.98
        assert ours.coefs_[0].dtype == np.float64 and ours.predict(X).shape == (200,)
        X, y = digits[0][:300] / 16, digits[1][:300]
        ours = MLPClassifier(solver="lbfgs", max_iter=30, random_state=0, threads=1).fit(X, y)
        theirs = SkClassifier(solver="lbfgs", max_iter=30, random_state=0).fit(X, y)
    assert ours.n_iter_ <= 30 and abs(ours.score(X, y) - theirs.score(X, y)) < 0.02
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=0.5)


def test_the_lbfgs_gradient_is_the_derivative_of_its_loss(regression):
    """scikit-learn's private _loss_grad_lbfgs (its own test calls it) against central differences,
    for each output layer nbnet now has: identity, exp (Poisson), logistic and softmax."""
    X, y = regression[0][:20], regression[1][:20]
    cases = ((MLPRegressor(activation="identity"), y), (MLPRegressor(loss="poisson", activation="tanh"), np.abs(y)),
             (MLPClassifier(activation="logistic"), y > 0), (MLPClassifier(activation="tanh"), np.digitize(y, [-.5, .5])))
    for model, target in cases:
        model.set_params(solver="lbfgs", hidden_layer_sizes=(4,), max_iter=1, alpha=0.3, random_state=0, threads=1)
        with pytest.warns(sklearn.exceptions.ConvergenceWarning):
            model.fit(X, target)
        theta = np.hstack([P.ravel() for P in model.coefs_ + model.intercepts_])
        Y = (target[:, None] if target.ndim == 1 else target) if isinstance(model, MLPRegressor) else \
            model._label_binarizer.transform(target)
        w = np.linspace(0.5, 2, len(X))
        loss, grad = model._loss_grad_lbfgs(theta, X, Y, w, None, None, None, None)
        numeric = np.array([(model._loss_grad_lbfgs(theta + e, X, Y, w, None, None, None, None)[0]
                             - model._loss_grad_lbfgs(theta - e, X, Y, w, None, None, None, None)[0]) / 2e-6
                            for e in np.eye(len(theta)) * 1e-6])
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-7)


def test_sample_weights_count_as_repeated_samples_in_lbfgs(regression):
    """Weight 2 on a sample is that sample twice: the full-batch loss (and so the fit) is the same."""
    X, y = regression
    w = np.where(np.arange(len(X)) < 50, 2.0, 1.0)
    twice = np.r_[np.arange(len(X)), np.arange(50)]
    settings = dict(solver="lbfgs", hidden_layer_sizes=(8,), max_iter=50, alpha=0.1, random_state=3, threads=1)
    with pytest.warns(sklearn.exceptions.ConvergenceWarning):
        weighted = MLPRegressor(**settings).fit(X, y, sample_weight=w)
    with pytest.warns(sklearn.exceptions.ConvergenceWarning):
        repeated = MLPRegressor(**settings).fit(X[twice], y[twice])
    assert weighted.loss_ == pytest.approx(repeated.loss_, rel=1e-6)
    np.testing.assert_allclose(weighted.predict(X), repeated.predict(X), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="Negative"):
        MLPRegressor(**settings).fit(X, y, sample_weight=-w)


def test_regressor_sgd_multioutput_partial_fit_and_multilabel(regression):
    X, y = regression
    Y = np.c_[y, -2 * y]
    model = MLPRegressor(solver="sgd", hidden_layer_sizes=(16,), learning_rate_init=0.01, max_iter=200,
                         random_state=0, threads=1).fit(X, Y)
    assert model.predict(X).shape == (200, 2) and model.score(X, Y) > 0.9 and model.n_outputs_ == 2
    before = model.loss_
    model.partial_fit(X, Y)
    assert model.n_iter_ == 1 and model.loss_ < before * 1.1
    labels = np.c_[y > 0, y > 1, y < -1]
    clf = MLPClassifier(solver="lbfgs", hidden_layer_sizes=(16,), random_state=0, threads=1).fit(X, labels)
    assert clf.out_activation_ == "logistic" and clf.predict(X).shape == (200, 3) and clf.score(X, labels) > 0.9
    assert np.all((clf.predict_proba(X) > 0.5) == clf.predict(X))


def test_sparse_input_is_the_dense_input(digits):
    from scipy import sparse

    X, y = digits[0][:200] / 16, digits[1][:200] % 2
    settings = dict(hidden_layer_sizes=(10,), max_iter=20, random_state=0, threads=1)
    with pytest.warns(sklearn.exceptions.ConvergenceWarning):
        dense = MLPClassifier(**settings).fit(X, y)
    with pytest.warns(sklearn.exceptions.ConvergenceWarning):
        csr = MLPClassifier(**settings).fit(sparse.csr_matrix(X), y)
    np.testing.assert_array_equal(dense.coefs_[0], csr.coefs_[0])
    np.testing.assert_array_equal(dense.predict_proba(X), csr.predict_proba(sparse.csc_matrix(X)))


def test_learning_rate_schedules_as_scikit_learn_defines_them():
    X, y = [[3, 2], [1, 6], [5, 6], [-2, -4]], [1, 1, 1, 0]
    model = MLPClassifier(solver="sgd", hidden_layer_sizes=4, learning_rate="invscaling", power_t=0.25, max_iter=3,
                          random_state=0, threads=1)
    with pytest.warns(sklearn.exceptions.ConvergenceWarning):
        model.fit(X, y)
    assert model._optimizer.learning_rate == pytest.approx(0.001 / (12 + 1) ** 0.25)  # after 3 epochs of 4 samples
    adaptive = MLPClassifier(solver="sgd", tol=0.5, max_iter=3000, learning_rate="adaptive", random_state=0,
                             threads=1).fit(X[:2], y[:2])
    assert adaptive.n_iter_ < 3000 and adaptive._optimizer.learning_rate < 1e-6


def test_scikit_learns_own_mlp_tests_run_against_nbnet():
    """bench/sklearn_tests.py (the README's command) swaps test_mlp.py's import for nbnet's
    estimators and runs it; here on four quick ones (all 59 take two minutes on a cold cache)."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parents[1] / "bench" / "sklearn_tests.py"
    tests = ("test_predict_proba_multiclass", "test_partial_fit_unseen_classes", "test_partial_fit_errors",
             "test_minimum_input_sample_size")  # (adam on float64, as the estimator checks: nothing new to compile)
    result = subprocess.run([sys.executable, str(script), "--need", "4", "-k", " or ".join(tests), "-n", "0"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "test_mlp.py against nbnet.sklearn: 4 of 4 passed" in result.stdout
