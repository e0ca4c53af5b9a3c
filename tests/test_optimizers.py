"""Optimisers, learning-rate schedules and initialisations."""

import numpy as np
import pytest
from click.testing import CliRunner

from nbnet import Network
from nbnet import kernels as K
from nbnet import reference as R
from nbnet.cli import main
from nbnet.data import Split, load_digits
from nbnet.optimizers import OPTIMIZERS, Optimizer
from nbnet.schedules import adaptive_rate, learning_rate
from nbnet.options import TrainConfig
from nbnet.train import train

ADAPTIVE = ["momentum", "nesterov", "rmsprop", "adam"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ADAPTIVE)
@pytest.mark.parametrize("decay", [0.0, 0.02])
def test_optimizer_step_matches_numpy_twin(name, dtype, decay):
    rng = np.random.default_rng(1)
    W, b = rng.standard_normal((7, 13)).astype(dtype), rng.standard_normal(7).astype(dtype)
    g_W, g_b = rng.standard_normal((7, 13)).astype(dtype), rng.standard_normal(7).astype(dtype)
    state = [rng.random(W.shape).astype(dtype), rng.random(7).astype(dtype),
             rng.random(W.shape).astype(dtype), rng.random(7).astype(dtype)]
    settings = Optimizer(name).settings(0.05, decay, dtype)
    c1, c2 = dtype(1 - settings[1] ** 3), dtype(1 - settings[2] ** 3)
    mine = [W.copy(), b.copy()] + [s.copy() for s in state]
    twin = [W.copy(), b.copy()] + [s.copy() for s in state]
    K.optimizer_step(OPTIMIZERS[name], g_W, g_b, settings, c1, c2, *mine)
    R.optimizer_step(OPTIMIZERS[name], g_W, g_b, settings, c1, c2, *twin)
    tolerance = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
    for got, want in zip(mine, twin):
        np.testing.assert_allclose(got, want, **tolerance)
    assert not np.allclose(mine[0], W)  # the step did something


@pytest.mark.parametrize("name", ADAPTIVE)
def test_optimizer_step_writes_no_value_near_the_subnormal_range(name):
    """kernels.flushed: a weight, state or squared gradient below 1e-30 becomes 0 (the processor
    is slow on subnormal floats), in the kernel and its twin alike; a NaN stays NaN."""
    tiny = np.float32(1e-33)
    W, b = np.full((4, 6), tiny), np.full(4, tiny)
    W[0, 0], W[1, 1] = np.nan, 0.5
    g_W, g_b = np.full((4, 6), np.float32(1e-18)), np.full(4, np.float32(1e-18))
    state = [np.full((4, 6), tiny), np.full(4, tiny), np.full((4, 6), tiny), np.full(4, tiny)]
    settings = Optimizer(name).settings(1e-3, 0.0, np.float32)
    mine = [W.copy(), b.copy()] + [x.copy() for x in state]
    twin = [W.copy(), b.copy()] + [x.copy() for x in state]
    K.optimizer_step(OPTIMIZERS[name], g_W, g_b, settings, np.float32(0.1), np.float32(0.001), *mine)
    R.optimizer_step(OPTIMIZERS[name], g_W, g_b, settings, np.float32(0.1), np.float32(0.001), *twin)
    for got, want in zip(mine, twin):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-30)
        finite = got[np.isfinite(got)]
        assert np.all((finite == 0) | (np.abs(finite) >= 1e-30))
    assert np.isnan(mine[0][0, 0]) and mine[0][1, 1] != 0


def test_optimizer_rules_by_hand():
    """One element, one step, worked out on paper."""
    g, s1, s2 = np.float64(0.5), np.float64(0.2), np.float64(0.04)
    settings, c1, c2 = (0.1, 0.9, 0.99, 1e-8, 0.0), 1 - 0.9, 1 - 0.99  # alpha, mu or b1, rho or b2, eps, decay
    # momentum: v = 0.9 * 0.2 - 0.1 * 0.5 = 0.13; change = -v
    assert R.optimizer_change(K.MOMENTUM, g, s1, s2, settings, c1, c2)[0] == pytest.approx(-0.13)
    # nesterov: change = -(0.9 * 0.13 - 0.05) = -0.067
    assert R.optimizer_change(K.NESTEROV, g, s1, s2, settings, c1, c2)[0] == pytest.approx(-0.067)
    # rmsprop (rho = 0.99): r = 0.99 * 0.04 + 0.01 * 0.25 = 0.0421; change = 0.05 / sqrt(0.0421)
    assert R.optimizer_change(K.RMSPROP, g, s1, s2, settings, c1, c2)[0] == pytest.approx(0.05 / np.sqrt(0.0421))
    # adam at t = 1 from zero state: m^ = g, v^ = g^2, change = alpha * g / |g| = alpha
    assert R.optimizer_change(K.ADAM, g, 0.0, 0.0, settings, c1, c2)[0] == pytest.approx(0.1)


@pytest.mark.parametrize("name", ADAPTIVE)
def test_compiled_optimizer_training_matches_numpy(name):
    rng = np.random.default_rng(2)
    # (float64, one hidden layer: the driver the scikit-learn checks compile, nothing new to compile; the
    # optimisers on two hidden layers are checked against the plain loops, tests/test_loops.py)
    net = Network([9, 8, 4], activation="tanh", dtype="float64", seed=3)
    X, y = rng.random((600, 9)), rng.integers(0, 4, 600)  # 600 samples: more than one GATHER_ROWS chunk
    order = rng.permutation(600).astype(np.int64)
    optimizer = Optimizer(name).attach(net)
    twin_W, twin_b = [W.copy() for W in net.weights], [b.copy() for b in net.biases]
    twin_state = [[s.copy() for s in arrays] for arrays in optimizer.state]
    optimizer.run(net, X, y, order, 8, 0, 75, 0.05, 0.01)
    step = R.train_batches_with(OPTIMIZERS[name], Optimizer(name).settings(0.05, 0.01, np.float64), 0, twin_W, twin_b,
                                *twin_state, net.acts, net.cost_function.code, X, y, order, 8, 0, 75, 0.01)
    assert optimizer.step == step == 75
    for got, want in zip(net.weights + net.biases, twin_W + twin_b):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name,lr", [("sgd", 0.5), ("momentum", 0.05), ("nesterov", 0.05), ("rmsprop", 0.002),
                                     ("adam", 0.002)])
def test_each_optimizer_reduces_the_cost(name, lr):
    data = load_digits()
    net = Network([64, 30, 10], seed=0)
    before = net.cost(data.X_train, data.y_train)
    history = train(net, Split(data.X_train, data.y_train, data.X_test, data.y_test),
                    TrainConfig(epochs=3, lr=lr, optimizer=name))
    assert history[-1].train_cost < 0.5 * before
    assert history[-1].test_accuracy > 0.85


def test_decoupled_weight_decay_shrinks_weights_without_touching_the_gradient():
    data = load_digits()
    coupled, decoupled = Network([64, 30, 10], seed=0), Network([64, 30, 10], seed=0)
    for net, flag in ((coupled, False), (decoupled, True)):
        train(net, Split(data.X_train, data.y_train, data.X_test, data.y_test),
              TrainConfig(epochs=2, lr=0.002, l2=50.0, optimizer="adam", decoupled_weight_decay=flag))
    assert not np.allclose(coupled.weights[0], decoupled.weights[0])


def test_optimizer_rejects_bad_settings():
    with pytest.raises(ValueError):
        Optimizer("adagrad")
    with pytest.raises(ValueError):
        Optimizer("adam", beta1=1.0)


def test_schedules(monkeypatch):
    assert learning_rate("constant", 0.5, 7, 10) == 0.5
    assert [learning_rate("step", 1.0, e, 30, step_epochs=10, gamma=0.5) for e in (1, 10, 11, 21)] == [1, 1, 0.5, 0.25]
    assert learning_rate("cosine", 2.0, 1, 10) == 2.0
    assert learning_rate("cosine", 2.0, 6, 10) == pytest.approx(1.0)
    seen = []
    data = load_digits()
    monkeypatch.setattr("nbnet.train.learning_rate", lambda *args: seen.append(args) or 0.1)
    train(Network([64, 10, 10]), Split(data.X_train, data.y_train, data.X_test, data.y_test),
          TrainConfig(epochs=3, schedule="step", lr=0.7, lr_step=2, lr_decay=0.5))
    n = len(data.X_train)
    assert seen == [("step", 0.7, epoch, 3, 2, 0.5, 0.5, (epoch - 1) * n) for epoch in (1, 2, 3)]


def test_invscaling_and_adaptive_schedules_are_scikit_learns():
    """invscaling: lr / (t + 1)^power_t with t the samples seen; adaptive: divided by 5 after two
    epochs in a row without an improvement of more than tol, stop once at or below 1e-6."""
    assert learning_rate("invscaling", 0.1, 1, 5, power_t=0.25, samples_seen=0) == 0.1
    assert learning_rate("invscaling", 0.1, 3, 5, power_t=0.25, samples_seen=8) == pytest.approx(0.1 / 9 ** 0.25)
    assert adaptive_rate(1.0, [5, 4, 3], tol=0.5) == (1.0, False)
    assert adaptive_rate(1.0, [5, 4.9, 4.8], tol=0.5) == (0.2, False)  # 4.9 and 4.8: two epochs without 0.5 less
    assert adaptive_rate(1.0, [5, 4.9, 4.8, 4.7], tol=0.5) == (0.2, False)  # the count started again
    assert adaptive_rate(1.0, [5, 4.9, 4.8, 4.7, 4.6], tol=0.5) == (0.04, False)
    assert adaptive_rate(1e-6, [5, 5, 5], tol=0.1) == (1e-6, True)
    data = load_digits()
    history = train(Network([64, 10, 10]), Split(data.X_train, data.y_train, data.X_test, data.y_test),
                    TrainConfig(epochs=20, schedule="adaptive", lr=1e-6, lr_tol=10.0))
    assert len(history) == 3  # at 1e-6 already: the two epochs after the first, which set the best, stop the run
    with pytest.raises(ValueError, match="adaptive"):
        train(Network([64, 10, 10]), Split(data.X_train, data.y_train, None, None),
              TrainConfig(epochs=2, schedule="adaptive", train_metrics="none"))


@pytest.mark.parametrize("init,std,zero_biases", [("large", 1.0, False), ("scaled", 1 / 20, False),
                                                  ("xavier", np.sqrt(2 / 500), True), ("he", np.sqrt(2 / 400), True)])
def test_initialisations(init, std, zero_biases):
    net = Network([400, 100, 10], init=init, seed=1)
    assert net.weights[0].std() == pytest.approx(std, rel=0.03)
    assert np.all(net.biases[0] == 0) == zero_biases
    assert Network([4, 3, 2], activation="relu").init == "he"
    assert Network([4, 3, 2], activation="tanh").init == "scaled"


@pytest.mark.parametrize("schedule", [["--schedule", "cosine"], ["--schedule", "adaptive", "--lr-tol", "10"]])
def test_cli_adam_with_schedule_and_exact_resume(tmp_path, schedule):
    """(adaptive with a huge tol: the rate of epoch 3 is divided by 5 after two epochs; the resumed
    run recomputes that from the checkpoint's history.)"""
    runner = CliRunner()
    common = ["--optimizer", "adam", "--lr", "0.003", *schedule, "--epochs", "3", "--init", "xavier",
              "-q", "--plot", str(tmp_path / "p.png")]
    assert runner.invoke(main, ["train", *common, "--save", str(tmp_path / "straight.npz")]).exit_code == 0
    # two epochs, then resume for the third: the optimiser state travels in the checkpoint
    two = ["--optimizer", "adam", "--lr", "0.003", *schedule, "--epochs", "3", "--init", "xavier",
           "-q", "--plot", str(tmp_path / "p.png"), "--save", str(tmp_path / "part.npz"), "--checkpoint-every", "1"]
    import nbnet.cli.train
    real = nbnet.cli.train.write_metrics

    def stop_in_epoch_3(rows, path):
        if len(rows) == 3:
            raise KeyboardInterrupt
        return real(rows, path)

    nbnet.cli.train.write_metrics = stop_in_epoch_3
    try:
        assert runner.invoke(main, ["train", *two, "--metrics", str(tmp_path / "m.csv")]).exit_code == 130
    finally:
        nbnet.cli.train.write_metrics = real
    _, metadata = Network.load_with_metadata(tmp_path / "part.npz")
    assert metadata["checkpoint"]["optimizer_step"] > 0 and metadata["state"]
    result = runner.invoke(main, ["train", "--resume", str(tmp_path / "part.npz"), "--save", str(tmp_path / "done.npz"),
                                  "-q", "--plot", str(tmp_path / "p.png")])
    assert result.exit_code == 0, result.output
    a, b = Network.load(tmp_path / "straight.npz"), Network.load(tmp_path / "done.npz")
    assert all(np.array_equal(x, y) for x, y in zip(a.weights + a.biases, b.weights + b.biases))


def test_tracked_gradients_are_the_gradients_of_each_step():
    """One epoch of two full-batch steps: the tracked mean |dJ/dW^m| is the mean over the two
    steps of the gradients Network.gradients gives at the weights of each step."""
    data = load_digits()
    X, y = data.X_train[:64], data.y_train[:64]
    # (one hidden layer, float64: the driver test_compiled_optimizer_training_matches_numpy compiles)
    net, twin = Network([64, 12, 10], seed=5, dtype="float64"), Network([64, 12, 10], seed=5, dtype="float64")
    expected, expected_b = np.zeros(2), np.zeros(2)
    order = np.random.default_rng(0).permutation(64)  # the shuffle train() will draw with seed 0
    for half in (order[:32], order[32:]):
        grads_W, grads_b = twin.gradients(X[half], y[half])
        expected += [np.abs(g).mean() / 2 for g in grads_W]
        expected_b += [np.abs(g).mean() / 2 for g in grads_b]
        for P, G in zip(twin.weights + twin.biases, grads_W + grads_b):
            P -= 0.5 * G
    history = train(net, Split(X, y, data.X_test, data.y_test),
                    TrainConfig(epochs=1, batch_size=32, lr=0.5, seed=0, track_gradients=True))
    np.testing.assert_allclose(history[0].gradient_means, expected, rtol=1e-10)
    np.testing.assert_allclose(history[0].bias_gradient_means, expected_b, rtol=1e-10)
    row = history[0].as_dict()
    assert [key for key in row if key.startswith("grad_")] == ["grad_W1", "grad_W2", "grad_b1", "grad_b2"]


def test_cli_track_gradients_writes_columns_and_panel(tmp_path):
    metrics = tmp_path / "m.csv"
    result = CliRunner().invoke(main, ["train", "--hidden", "20", "--epochs", "2", "--track-gradients",
                                       "--metrics", str(metrics), "--plot", str(tmp_path / "p.png"), "-q"])
    assert result.exit_code == 0, result.output
    header = metrics.read_text().splitlines()[0].split(",")
    assert header[-4:] == ["grad_W1", "grad_W2", "grad_b1", "grad_b2"]
    result = CliRunner().invoke(main, ["plot", str(metrics), "-o", str(tmp_path / "again.png")])
    assert result.exit_code == 0 and (tmp_path / "again.png").exists()
    # a tracked run saved and resumed keeps its gradient history
    args = ["train", "--epochs", "1", "--track-gradients", "--save", str(tmp_path / "m.npz"), "--plot",
            str(tmp_path / "p.png"), "-q"]
    assert CliRunner().invoke(main, args).exit_code == 0
    result = CliRunner().invoke(main, ["train", "--resume", str(tmp_path / "m.npz"), "--epochs", "2", "--metrics",
                                       str(metrics), "--plot", str(tmp_path / "p.png"), "-q"])
    assert result.exit_code == 0, result.output
    assert metrics.read_text().splitlines()[0].endswith("grad_W1,grad_W2,grad_b1,grad_b2")
    assert len(metrics.read_text().splitlines()) == 3
