import numba
import numpy as np
import pytest

from nbnet import Network, passes
from nbnet import kernels as K
from nbnet import reference as R
from nbnet.data import Split, load_digits
from nbnet.options import TrainConfig
from nbnet.train import set_threads, train, train_epoch


@pytest.fixture(scope="module")
def digits():
    return load_digits(seed=0)


@pytest.fixture
def restore_threads():
    yield
    set_threads(None)


def fit(net, digits, **options):
    """train() on the digits' training and test sets with these TrainConfig options."""
    return train(net, Split(digits.X_train, digits.y_train, digits.X_test, digits.y_test), TrainConfig(**options))


def fresh_net(digits, **options):
    return Network([digits.n_inputs, 30, 10], seed=options.pop("seed", 0), **options)


def test_training_reduces_cost_and_reaches_95_percent(digits):
    net = fresh_net(digits)
    before = net.cost(digits.X_train, digits.y_train)
    history = fit(net, digits, epochs=10)
    assert history[-1].train_cost < 0.3 * before
    assert all(later.train_cost < earlier.train_cost * 1.5 for earlier, later in zip(history, history[1:]))
    assert history[-1].test_accuracy >= 0.95
    assert [m.epoch for m in history] == list(range(1, 11))
    assert all(m.seconds > 0 for m in history)


@pytest.mark.parametrize("activation,output,cost", [("tanh", "softmax", "quadratic"), ("relu", "sigmoid", "cross-entropy")])
def test_other_configurations_learn(digits, activation, output, cost):
    # (two hidden layers in float64, one in float32: the depths the other tests train, so that CI
    # compiles each driver once per depth and dtype)
    net = Network([digits.n_inputs, 30, 20, 10], seed=0, activation=activation, output=output, cost=cost,
                  dtype="float64")
    lr = 0.1 if activation == "relu" else 0.5
    history = fit(net, digits, epochs=5, lr=lr)
    assert history[-1].test_accuracy >= 0.85


def test_metrics_match_network_evaluation_with_l2(digits):
    net = fresh_net(digits)
    history = fit(net, digits, epochs=2, l2=5.0)
    n = len(digits.X_train)
    assert history[-1].test_cost == pytest.approx(net.cost(digits.X_test, digits.y_test, 5.0, n))
    assert history[-1].train_accuracy == pytest.approx(net.accuracy(digits.X_train, digits.y_train))
    penalty = 0.5 * 5.0 / n * sum(float((W.astype(np.float64) ** 2).sum()) for W in net.weights)
    assert history[-1].train_cost == pytest.approx(net.cost(digits.X_train, digits.y_train) + penalty)


def test_l2_shrinks_weights(digits):
    plain, decayed = fresh_net(digits), fresh_net(digits)
    fit(plain, digits, epochs=3)
    fit(decayed, digits, epochs=3, l2=50.0)
    assert np.sum(decayed.weights[0] ** 2) < 0.7 * np.sum(plain.weights[0] ** 2)


def run(digits, threads=None, seed=0, batch_size=10, **options):
    if threads:
        set_threads(threads)
    net = fresh_net(digits, seed=seed)
    net.history = fit(net, digits, epochs=2, batch_size=batch_size, seed=seed, **options)
    return net


def test_no_shuffle_visits_the_samples_in_their_stored_order(digits):
    """--no-shuffle (scikit-learn's shuffle=False): every epoch steps through samples 0, 1, 2, ...
    in minibatches, as train_epoch does with that order given; shuffling gives other weights."""
    in_order, by_hand, shuffled = fresh_net(digits), fresh_net(digits), fresh_net(digits)
    fit(in_order, digits, epochs=2, batch_size=7, lr=0.3, shuffle=False)
    fit(shuffled, digits, epochs=2, batch_size=7, lr=0.3)
    X, y = by_hand.as_inputs(digits.X_train), by_hand.as_labels(digits.y_train, len(digits.X_train))
    for _ in range(2):
        train_epoch(by_hand, X, y, np.arange(len(X)), 7, 0.3)
    for got, want, other in zip(in_order.weights, by_hand.weights, shuffled.weights):
        np.testing.assert_array_equal(got, want)
        assert not np.array_equal(got, other)


def test_same_seed_gives_identical_weights(digits):
    a, b, c = run(digits, seed=4), run(digits, seed=4), run(digits, seed=5)
    for Wa, Wb in zip(a.weights + a.biases, b.weights + b.biases):
        np.testing.assert_array_equal(Wa, Wb)
    assert not np.array_equal(a.weights[0], c.weights[0])


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two threads")
@pytest.mark.parametrize("batch_size", [1, 10, 128])
def test_one_and_two_threads_give_identical_weights(digits, restore_threads, batch_size):
    """Batch 128 takes the parallel drivers with two threads (the others are below
    PARALLEL_RUN_WORK): the same weights, and the same running train figures (the minibatch
    costs, summed in a fixed order), as on one thread; and, in a new process that loads the
    parallel drivers from the disk cache, the same again. (No other test compiles these
    drivers, so in CI's empty cache this process compiled them: fresh against cached.)"""
    one = run(digits, threads=1, batch_size=batch_size, train_metrics="running")
    two = run(digits, threads=2, batch_size=batch_size, train_metrics="running")
    assert numba.get_num_threads() == 2
    for W1, W2 in zip(one.weights + one.biases, two.weights + two.biases):
        np.testing.assert_array_equal(W1, W2)
    figures = [(m.train_cost, m.train_accuracy) for m in two.history]
    assert [(m.train_cost, m.train_accuracy) for m in one.history] == figures
    if batch_size == 128:
        from kernel_cases import in_a_new_process

        loaded, loaded_figures = in_a_new_process(
            "from test_training import run; from nbnet.data import load_digits; "
            "net = run(load_digits(seed=0), threads=2, batch_size=128, train_metrics='running'); "
            "sys.stdout.buffer.write(pickle.dumps((net.weights + net.biases, "
            "[(m.train_cost, m.train_accuracy) for m in net.history])))")
        assert all(np.array_equal(a, b) for a, b in zip(loaded, two.weights + two.biases, strict=True))
        assert loaded_figures == figures


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two threads")
def test_the_backward_pass_in_row_parts_is_the_same_on_one_and_two_threads(restore_threads):
    """A W^(m+1) of 64 rows or more and a minibatch: hidden_delta sums over 4 parts of its rows
    (passes.row_parts), in two phases. The parallel driver on two threads gives the bits of the
    one-thread driver, and the gradients of the NumPy reference. (Two layers, 64 classes: the
    drivers other tests compile.)"""
    rng = np.random.default_rng(4)
    net = Network([30, 40, 64], seed=3)
    x, y = net.as_inputs(rng.random((20, 30))), net.as_labels(rng.integers(0, 64, 20), 20)
    weights, biases = tuple(net.weights), tuple(net.biases)
    zs, activations = passes.layer_buffers(weights, 20), passes.layer_buffers(weights, 20)
    K.forward.serial(weights, biases, net.acts, x, zs, activations)
    results = []
    for driver, threads in ((K.backward.serial, 1), (K.backward, 2)):
        set_threads(threads)
        deltas = passes.layer_buffers(weights, 20)
        parts = passes.parts_buffers(weights, deltas)
        assert [p.shape[0] for p in parts] == [4, 0]  # (delta^1, fed back through the 64 rows of W^2)
        grads_W, grads_b = tuple(np.empty_like(W) for W in weights), tuple(np.empty_like(b) for b in biases)
        driver(weights, net.acts, net.cost_function.code, x, y, 0.0, zs, activations, deltas, parts, grads_W, grads_b,
               None, None)
        results.append(grads_W + grads_b)
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)
    want_W, want_b = R.backward(net.weights, net.acts, net.cost_function.code, x, y, 0.0,
                                *R.forward(net.weights, net.biases, net.acts, x))
    for got, want in zip(results[0], want_W + want_b):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_set_threads_rejects_impossible_counts():
    with pytest.raises(ValueError):
        set_threads(0)
    with pytest.raises(ValueError):
        set_threads(numba.config.NUMBA_NUM_THREADS + 1)


def test_network_validates_its_inputs():
    with pytest.raises(ValueError, match="activation"):
        Network([2, 2], activation="swish")
    with pytest.raises(ValueError, match="dtype"):
        Network([2, 2], dtype="int8")
    with pytest.raises(ValueError, match="sizes, got \\[2, 0, 2\\]"):
        Network(np.array([2, 0, 2]))  # (NumPy integers written as numbers)
    with pytest.raises(ValueError, match="whole layer sizes, got \\[4.5, 3, 2\\]"):
        Network([4.5, 3, 2])  # (not truncated to 4)
    assert Network(np.array([4, 3, 2])).sizes == Network([4.0, 3, 2]).sizes == [4, 3, 2]
    net = Network([3, 2])
    with pytest.raises(ValueError, match="shape"):
        net.forward(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="NaN"):
        net.forward(np.full((1, 3), np.nan))
    with pytest.raises(ValueError, match="labels"):
        net.cost(np.zeros((2, 3)), np.array([0, 2]))


def test_public_api_shapes():
    net = Network([784, 100, 10], activation="sigmoid", output="softmax", cost="cross-entropy", dtype="float32", seed=0)
    assert [W.shape for W in net.weights] == [(100, 784), (10, 100)]
    assert [b.shape for b in net.biases] == [(100,), (10,)]
    X = np.random.default_rng(0).random((5, 784))
    a = net.forward(X)
    assert a.shape == (5, 10) and a.dtype == np.float32
    np.testing.assert_allclose(a.sum(axis=1), 1, rtol=1e-5)
    assert net.predict(X).shape == (5,)
    grads_W, grads_b = net.gradients(X, np.arange(5))
    assert [g.shape for g in grads_W] == [(100, 784), (10, 100)] and grads_b[0].dtype == np.float32
    # (100 x 784 weights on two threads: the parallel backward driver, which no other test runs) the
    # gradients of the NumPy reference, up to float32 rounding
    x = net.as_inputs(X)
    zs, activations = R.forward(net.weights, net.biases, net.acts, x)
    want_W, want_b = R.backward(net.weights, net.acts, net.cost_function.code, x, np.arange(5), 0.0, zs, activations)
    for got, want in zip(grads_W + grads_b, want_W + want_b):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    # weights ~ N(0, 1/n_in)
    assert abs(net.weights[0].std() - 1 / np.sqrt(784)) < 0.002


def test_running_train_metrics_are_the_minibatch_means_and_none_skips_them(digits, restore_threads):
    """--train-metrics running: the mean cost and accuracy of the epoch's minibatches, each
    measured before its own step. With one minibatch of every sample, that is exactly the
    cost and accuracy of the network before the epoch's single step."""
    net = fresh_net(digits)
    before = net.evaluate(digits.X_train, digits.y_train)
    set_threads(1)  # (one thread: the one-thread drivers, which other tests compile too)
    row = fit(net, digits, epochs=1, batch_size=len(digits.X_train), train_metrics="running")[0]
    assert row.train_cost == pytest.approx(before[0], rel=1e-6) and row.train_accuracy == before[1]
    full, running, skipped = (fit(fresh_net(digits), digits, epochs=2, train_metrics=choice)
                              for choice in ("full", "running", "none"))
    for a, b in zip(full, running):  # the same weights and held-out figures: only the train figures differ
        assert a.test_cost == b.test_cost and a.test_accuracy == b.test_accuracy
    assert running[0].train_cost > full[0].train_cost and running[0].train_accuracy < full[0].train_accuracy
    assert all(m.train_cost is None and m.train_accuracy is None for m in skipped)
    assert [m.test_cost for m in skipped] == [m.test_cost for m in full]


def test_train_prepares_the_kernels_before_its_first_epoch(digits, monkeypatch):
    """The Python API gets what nbnet train does: the run's compiled code is compiled (or
    loaded) before the first epoch, whose seconds would otherwise include compiling, for the
    run's own settings."""
    import nbnet.train as T

    events, prepare, epoch = [], T.prepare_kernels, T._train_epoch
    monkeypatch.setattr(T, "prepare_kernels", lambda *args: events.append(("prepare", *args[1:])) or prepare(*args))
    monkeypatch.setattr(T, "_train_epoch", lambda *args: events.append("epoch") or epoch(*args))
    fit(fresh_net(digits), digits, epochs=2, batch_size=16, dropout=0.1, optimizer="adam", train_metrics="running")
    assert [event if event == "epoch" else event[0] for event in events] == ["prepare", "epoch", "epoch"]
    batch_size, optimizer, dropout, train_metrics, targets, pixel_bytes, augment = events[0][1:]
    assert (batch_size, optimizer.name, dropout, train_metrics, targets) == (16, "adam", 0.1, "running", "ids")
    assert (pixel_bytes, augment) == (False, False)
