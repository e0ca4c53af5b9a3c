"""The estimators' epochs in compiled code (nbnet.epochs through nbnet.stochastic): the same weights,
bit for bit, as epoch by epoch (verbose fits, one epoch per call) and as nbnet.train; scikit-learn's
stopping rule, schedules, early stopping, partial_fit and divergence; its validation score against
scikit-learn's own metrics; the same bits on one or two threads."""

import io
import json
import os
import subprocess
import sys
from contextlib import redirect_stdout

import numba
import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.datasets import load_iris  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.metrics import accuracy_score, r2_score  # noqa: E402

from nbnet import epochs, stochastic  # noqa: E402
from nbnet.data import load_digits  # noqa: E402
from nbnet.sklearn import MLPClassifier, MLPRegressor  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    data = load_digits(dtype="float64")
    return data.X_train[:400], data.y_train[:400]


def weights_of(model):
    return [P.copy() for P in model.coefs_ + model.intercepts_]


def same(a, b):
    return all(np.array_equal(p, q) for p, q in zip(weights_of(a), weights_of(b)))


def epoch_by_epoch(monkeypatch):
    """Make stochastic.fit run one epoch per compiled call, as a verbose fit does, but silently."""
    monkeypatch.setattr(stochastic, "SECONDS_PER_CALL", 0.0)


SETTINGS = [
    dict(solver="adam"),
    dict(solver="adam", early_stopping=True, n_iter_no_change=3),
    dict(solver="sgd", learning_rate="adaptive", n_iter_no_change=2, tol=0.05),
    dict(solver="sgd", learning_rate="invscaling", momentum=0.5, nesterovs_momentum=False, batch_size=72),
]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("settings", SETTINGS, ids=["adam", "early-stopping", "adaptive", "invscaling-momentum"])
def test_one_epoch_per_call_gives_the_same_fit(digits, monkeypatch, settings):
    X, y = digits
    params = dict(hidden_layer_sizes=(20,), max_iter=25, random_state=3, dtype="float64", **settings)
    together = MLPClassifier(**params).fit(X, y)
    epoch_by_epoch(monkeypatch)
    apart = MLPClassifier(**params).fit(X, y)
    assert same(together, apart)
    assert together.loss_curve_ == apart.loss_curve_ and together.n_iter_ == apart.n_iter_
    assert together.validation_scores_ == apart.validation_scores_
    assert together._optimizer.learning_rate == apart._optimizer.learning_rate


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_a_minibatch_of_every_sample_is_not_shuffled(digits, monkeypatch):
    """With one minibatch per epoch (batch_size >= n) neither the compiled epochs nor the epochs
    one by one draw a shuffle (its order would change only the rounding of the gradient's sums):
    shuffle=True fits the same bits as shuffle=False; with two minibatches it does not."""
    X, y = digits[0][:150], digits[1][:150]
    fits = {}
    for batch, shuffle, one_by_one in [(150, True, False), (150, False, False), (150, True, True), (75, True, False),
                                       (75, False, False)]:
        if one_by_one:
            epoch_by_epoch(monkeypatch)
        fits[batch, shuffle, one_by_one] = MLPClassifier(hidden_layer_sizes=(12,), batch_size=batch, shuffle=shuffle,
                                                          max_iter=8, random_state=0, dtype="float64").fit(X, y)
    assert same(fits[150, True, False], fits[150, False, False]) and same(fits[150, True, False], fits[150, True, True])
    assert not same(fits[75, True, False], fits[75, False, False])


def test_verbose_lines_are_scikit_learns_and_the_fit_is_the_same(digits):
    X, y = digits
    params = dict(hidden_layer_sizes=(20,), max_iter=40, random_state=0, early_stopping=True, n_iter_no_change=3)
    output = io.StringIO()
    with redirect_stdout(output):
        talking = MLPClassifier(**params, verbose=True).fit(X, y)
    quiet = MLPClassifier(**params).fit(X, y)
    assert same(talking, quiet)
    lines = output.getvalue().splitlines()
    assert lines[0].startswith("Iteration 1, loss = ") and lines[1].startswith("Validation score: ")
    assert lines[-1] == ("Validation score did not improve more than tol=0.000100 for 3 consecutive epochs. "
                         "Stopping.")
    assert len([line for line in lines if line.startswith("Iteration")]) == quiet.n_iter_ < 40


def test_adaptive_rate_messages_and_stop(digits):
    """'adaptive' divides the rate by 5 each time the loss stalls, and stops below 1e-6."""
    X, y = digits
    output = io.StringIO()
    with redirect_stdout(output):
        model = MLPClassifier(hidden_layer_sizes=(10,), solver="sgd", learning_rate="adaptive", learning_rate_init=1e-5,
                              tol=10.0, n_iter_no_change=1, max_iter=500, random_state=0, verbose=True).fit(X, y)
    text = output.getvalue()
    assert "Setting learning rate to 0.000002" in text
    assert text.rstrip().endswith("Learning rate too small. Stopping.")
    assert model._optimizer.learning_rate <= 1e-6 and model.n_iter_ < 500


def test_early_stopping_keeps_the_best_epochs_weights(digits, monkeypatch):
    """The weights after the fit are those of the epoch with the best validation score (captured
    here by stopping an identical fit there)."""
    X, y = digits
    params = dict(hidden_layer_sizes=(15,), random_state=1, early_stopping=True, n_iter_no_change=4,
                  learning_rate_init=0.02, max_iter=60)
    model = MLPClassifier(**params).fit(X, y)
    best_epoch = int(np.argmax(model.validation_scores_)) + 1
    assert best_epoch < model.n_iter_  # (else this checks nothing)
    with pytest.warns(ConvergenceWarning):
        stopped = MLPClassifier(**{**params, "max_iter": best_epoch, "n_iter_no_change": 10 ** 6}).fit(X, y)
    assert same(model, stopped)
    assert model.best_validation_score_ == max(model.validation_scores_)


def test_partial_fit_runs_one_epoch_a_call_and_continues(digits):
    X, y = digits
    model = MLPClassifier(hidden_layer_sizes=(12,), random_state=0)
    for _ in range(3):
        model.partial_fit(X, y, classes=np.arange(10))
    assert model.n_iter_ == 1 and len(model.loss_curve_) == 3 and model.t_ == 3 * len(X)
    assert model.loss_curve_[2] < model.loss_curve_[0]


def test_a_diverging_fit_stops_at_the_first_non_finite_loss(digits):
    """As the epoch-by-epoch path: the epoch whose loss is not finite is not recorded, a NaN is
    (and a ValueError follows when a weight itself is no longer finite)."""
    X, y = digits
    model = MLPRegressor(hidden_layer_sizes=(8,), solver="sgd", learning_rate_init=1e10, momentum=0, max_iter=20,
                         random_state=0).fit(X, y.astype(float) * 1e3)
    assert np.isnan(model.loss_curve_[-1]) and model.n_iter_ == len(model.loss_curve_) - 1 < 20
    assert not hasattr(model, "_state")  # (a new fit starts afresh)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two threads")
def test_the_same_bits_on_one_and_two_threads(digits):
    """A batch large enough that two threads share each step's chunks."""
    X, y = digits
    params = dict(hidden_layer_sizes=(60,), batch_size=400, max_iter=5, random_state=0)
    with pytest.warns(ConvergenceWarning):
        one = MLPClassifier(**params, threads=1).fit(X, y)
    with pytest.warns(ConvergenceWarning):
        two = MLPClassifier(**params, threads=2).fit(X, y)
    assert same(one, two)


def test_validation_score_is_scikit_learns():
    """epochs.score against accuracy_score and r2_score: weights, several outputs, multi-label,
    constant targets (R^2 1 for a perfect fit, 0 otherwise), a non-finite output (NaN)."""
    rng = np.random.default_rng(0)
    out = rng.random((40, 3))
    ids = rng.integers(0, 3, 40)
    w = rng.random(40)
    for weights in (np.zeros(0), w):
        sample_weight = None if weights.size == 0 else weights
        assert epochs.score(epochs.ACCURACY_IDS, out, ids[:, None].astype(float), weights) == pytest.approx(
            accuracy_score(ids, out.argmax(1), sample_weight=sample_weight), rel=1e-12)
        labels = (rng.random((40, 3)) > 0.5).astype(float)
        assert epochs.score(epochs.ACCURACY_LABELS, out, labels, weights) == pytest.approx(
            accuracy_score(labels, (out > 0.5).astype(float), sample_weight=sample_weight), rel=1e-12)
        Y = out + 0.3 * rng.standard_normal((40, 3))
        assert epochs.score(epochs.R2, out, Y, weights) == pytest.approx(
            r2_score(Y, out, sample_weight=sample_weight), rel=1e-12)
    constant = np.ones((40, 1))
    assert epochs.score(epochs.R2, constant.copy(), constant, np.zeros(0)) == 1.0
    assert epochs.score(epochs.R2, constant + 0.1, constant, np.zeros(0)) == 0.0
    bad = out.copy()
    bad[3, 1] = np.inf
    assert np.isnan(epochs.score(epochs.R2, bad, Y, np.zeros(0)))


def test_networks_the_compiled_epochs_take():
    """Narrow networks on minibatches that fill SIMD lanes, with the fast kernels and no dropout;
    the others go epoch by epoch (train())."""
    from nbnet.network import Network
    from nbnet.options import TrainConfig

    narrow, wide, tiny = Network([64, 20, 10]), Network([64, 400, 10]), Network([4, 32, 16, 4])
    config = TrainConfig(batch_size=200)  # (scikit-learn's default)
    assert stochastic.compiled_epochs_fit(narrow, config, True)
    assert not stochastic.compiled_epochs_fit(narrow, config.but(batch_size=10), True)  # nbnet train's default
    assert stochastic.compiled_epochs_fit(narrow, config.but(batch_size=64), True)
    assert not stochastic.compiled_epochs_fit(narrow, config.but(batch_size=63), True)
    assert stochastic.compiled_epochs_fit(tiny, config.but(batch_size=32), True)  # (at most 32 inputs a layer)
    assert not stochastic.compiled_epochs_fit(tiny, config.but(batch_size=31), True)
    assert not stochastic.compiled_epochs_fit(Network([200, 10]), config, True)  # (more than 128 inputs)
    assert not stochastic.compiled_epochs_fit(narrow, config, False)  # dropout
    assert not stochastic.compiled_epochs_fit(narrow, config.but(kernels="loops"), True)
    assert not stochastic.compiled_epochs_fit(wide, config, True)


@pytest.mark.parametrize("n", [1, 2, 7, 150, 1437])
def test_the_compiled_shuffle_is_numpys_permutation(n):
    """epochs.permutation draws the order np.random.Generator.permutation draws, and leaves the
    generator where NumPy's leaves it (the compiled epochs shuffle with it)."""
    for seed in range(3):
        ours, numpys = np.random.default_rng(seed), np.random.default_rng(seed)
        np.testing.assert_array_equal(epochs.permutation(ours, n), numpys.permutation(n))
        assert ours.integers(0, 2 ** 62) == numpys.integers(0, 2 ** 62)


PLAIN_FIT = dict(hidden_layer_sizes=(5,), max_iter=3, random_state=0, threads=1)


def test_the_compiled_epochs_run_as_plain_python_too():
    """Under NUMBA_DISABLE_JIT=1 (debugging the loops in Python) nbnet.epochs imports and a fit
    runs through it, to the loss curve the compiled code gives (the same maths)."""
    code = ("import warnings, json; warnings.simplefilter('ignore'); from sklearn.datasets import load_iris; "
            "from nbnet.sklearn import MLPClassifier; X, y = load_iris(return_X_y=True); "
            f"print(json.dumps(MLPClassifier(**{PLAIN_FIT!r}).fit(X, y).loss_curve_))")
    plain = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, NUMBA_DISABLE_JIT="1"),
                           capture_output=True, text=True, timeout=300)
    assert plain.returncode == 0, plain.stderr[-2000:]
    compiled = MLPClassifier(**PLAIN_FIT).fit(*load_iris(return_X_y=True)).loss_curve_
    np.testing.assert_allclose(json.loads(plain.stdout.strip().splitlines()[-1]), compiled, rtol=1e-6)
