"""The plain loops (nbnet.loops): each against its NumPy twin and its fast kernel, whole
training runs through them against the fast kernels, and the same bits for any thread count.
(tests/test_kernels.py also runs them as plain Python, under NUMBA_DISABLE_JIT=1.)"""

import inspect

import numpy as np
import pytest
from click.testing import CliRunner

from nbnet import Network, loops
from nbnet.cli import main
from nbnet.data import Split, load_digits
from nbnet.options import TrainConfig
from nbnet.train import set_threads, train

from kernel_cases import check_loops
from documents import documented  # noqa: E402

SHAPES = [(1, 1, 1), (3, 13, 1), (7, 33, 10), (13, 17, 31), (10, 784, 100)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_each_loop_matches_its_numpy_twin_and_its_fast_kernel(dtype):
    """Every shape in one test (compiled once, by one worker; a failure names its shape)."""
    for n_samples, n_in, n_out in SHAPES:
        check_loops(np.random.default_rng(n_samples * 1000 + n_in), dtype, n_samples, n_in, n_out)


def test_each_equation_is_one_short_plain_function():
    """The module a student reads first: one function of at most 15 lines per equation, each
    with its equation on the docstring's first line, and no kernel tricks in it."""
    for loop in loops.LOOPS:
        source = inspect.getsource(loop.py_func)
        lines = source[source.index("def "):].splitlines()  # from `def` on: the decorator is not the function
        assert len(lines) <= 15, f"{loop.__name__} has {len(lines)} lines"
        assert "=" in loop.py_func.__doc__.splitlines()[0] and "prange" in source
        assert not any(trick in source for trick in ("TILE", "block", "j + 4", "s + 2", "_auto", "loop_nest"))


@pytest.fixture
def restore_threads():
    yield
    set_threads(None)


def run(dtype="float64", **options):
    """Two epochs on the digits, of a 64-24-16-10 network in float64 (the error passes between
    hidden layers) and a 64-24-10 network in float32 (as `nbnet train`); (network, history).
    (Depths that other tests also train: CI compiles each driver once per depth and dtype.)"""
    data = load_digits(dtype=dtype)
    hidden = (24, 16) if dtype == "float64" else (24,)
    config = TrainConfig(**{**dict(hidden=hidden, epochs=2, batch_size=7, lr=0.5, dtype=dtype), **options})
    net = config.network(data.n_inputs, data.n_classes)
    return net, train(net, Split(data.X_train, data.y_train, data.X_test, data.y_test), config)


@pytest.mark.parametrize("options", [
    dict(l2=0.5, dropout=0.2),
    dict(activation="tanh", output="sigmoid", cost="quadratic", l2=0.5, lr=0.05, optimizer="nesterov",
         decoupled_weight_decay=True, track_gradients=True, train_metrics="running"),
    dict(activation="relu", output="softmax", cost="quadratic", dropout=0.3, optimizer="adam", lr=0.005, l2=1.0),
], ids=["sgd-l2-dropout", "tanh-sigmoid-quadratic-nesterov-decay-tracked-running", "relu-quadratic-adam-l2-dropout"])
def test_training_through_the_loops_ends_where_the_fast_kernels_end(options):
    """Same seed, same options: the same weights and the same epoch figures up to rounding."""
    fast, fast_history = run(**options)
    plain, plain_history = run(kernels="loops", **options)
    for got, want in zip(plain.weights + plain.biases, fast.weights + fast.biases):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-11)
    for got, want in zip(plain_history, fast_history):
        for name in ("train_cost", "test_cost", "train_accuracy", "test_accuracy", "gradient_means"):
            assert getattr(got, name) == (None if getattr(want, name) is None
                                          else pytest.approx(getattr(want, name), rel=1e-9))
    assert plain_history[-1].test_accuracy > 0.4  # it learned (chance: 0.1)


def test_float32_loops_stay_close_and_are_the_same_bits_on_one_and_two_threads(restore_threads):
    """`nbnet train --kernels loops` as it runs by default. (Dropout through the loops is checked
    in float64 above; its masks are kernels.dropout's, the same bits on any thread count.)"""
    set_threads(2)
    two, _ = run(dtype="float32", kernels="loops")
    set_threads(1)
    one, _ = run(dtype="float32", kernels="loops")
    fast, _ = run(dtype="float32")
    for a, b, c in zip(one.weights + one.biases, two.weights + two.biases, fast.weights + fast.biases):
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, c, rtol=1e-3, atol=1e-4)


def test_readme_trains_through_the_plain_loops(tmp_path, monkeypatch):
    """The README's command as written, then what a reader does next: the same run through
    the fast kernels, with the same figures."""
    monkeypatch.chdir(tmp_path)
    command = "train --kernels loops --epochs 3 --save loops.npz"
    assert "nbnet " + command in documented()
    plain = CliRunner().invoke(main, command.split())
    assert plain.exit_code == 0, plain.output
    fast = CliRunner().invoke(main, ["train", "--epochs", "3", "--save", "fast.npz"])
    assert fast.exit_code == 0, fast.output
    rows = [[[float(v.rstrip("%")) for v in line.split()[1:5]] for line in result.output.splitlines() if "/3 " in line]
            for result in (plain, fast)]
    assert len(rows[0]) == 3
    plain_rows, fast_rows = np.array(rows[0]), np.array(rows[1])
    np.testing.assert_allclose(plain_rows[:, :2], fast_rows[:, :2], atol=2e-3)  # train and test cost
    np.testing.assert_allclose(plain_rows[:, 2:], fast_rows[:, 2:], atol=0.6)  # accuracy (%): two digits at most
    np.testing.assert_allclose(Network.load("loops.npz").weights[0], Network.load("fast.npz").weights[0],
                               rtol=1e-3, atol=1e-4)
