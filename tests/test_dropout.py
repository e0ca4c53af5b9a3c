"""Inverted dropout: masks, their reproducibility, and the maths of the masked backward pass."""

import numba
import numpy as np
import pytest
from click.testing import CliRunner

from nbnet import Network
from nbnet import kernels as K
from nbnet import passes
from nbnet import reference as R
from nbnet.cli import main
from nbnet.gradcheck import numerical_gradients, relative_error
from nbnet.train import set_threads, train_epoch


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_kernel_matches_numpy_twin(dtype):
    a = np.random.default_rng(0).random((37, 53)).astype(dtype)
    mask, kept = np.empty_like(a), np.empty_like(a)
    K.dropout(a, 0.7, 12345, 8, 2, mask, kept)
    twin_mask, twin_kept = R.dropout(a, 0.7, 12345, 8, 2)
    np.testing.assert_array_equal(mask, twin_mask)
    np.testing.assert_array_equal(kept, twin_kept)
    assert abs((mask > 0).mean() - 0.7) < 0.03  # each unit survives with probability 0.7
    assert set(np.unique(mask)) == {dtype(0), dtype(1) / dtype(0.7)}
    other = np.empty_like(a)
    K.dropout(a, 0.7, 12345, 9, 2, other, kept)  # another step: another mask
    assert not np.array_equal(mask, other)


def test_masks_do_not_depend_on_thread_count():
    a = np.ones((300, 400), np.float32)
    masks = []
    try:
        for threads in (1, 2 if numba.config.NUMBA_NUM_THREADS > 1 else 1):
            set_threads(threads)
            mask, kept = np.empty_like(a), np.empty_like(a)
            K.dropout(a, 0.5, 3, 1, 0, mask, kept)
            masks.append(mask)
    finally:
        set_threads(None)
    np.testing.assert_array_equal(*masks)


forward_layers = K.forward_layers.serial


@numba.njit
def forward_dropped(weights, biases, acts, X, zs, activations, keep, seed, step, masks, kept):
    """kernels.forward_layers with dropout, for Python (its pass has no entry for Python:
    config.inner_driver)."""
    forward_layers(np.int64(0), weights, biases, acts, X, zs, activations, keep, seed, step, masks, kept)


def test_masked_backward_is_the_gradient_of_the_dropped_network():
    """With the masks fixed, backward(keep < 1) must be the derivative of the cost of the
    network whose hidden layers are multiplied by those masks."""
    rng = np.random.default_rng(4)
    net = Network([6, 7, 5, 3], activation="tanh", dtype="float64", seed=4)
    X, y = rng.standard_normal((9, 6)), rng.integers(0, 3, 9)

    class Dropped:  # the dropped network's cost, in NumPy, for the finite differences
        weights, biases = net.weights, net.biases

        @staticmethod
        def cost(X_, y_, l2, n_train):
            zs, activations, _, _ = R.forward_dropout(net.weights, net.biases, net.acts, X_, 0.6, 99, 3)
            return float(np.mean(net.cost_function.fn(zs[-1], activations[-1], np.eye(3)[y_], net.acts[-1])))

    numeric_W, numeric_b = numerical_gradients(Dropped, X, y)
    weights, biases = tuple(net.weights), tuple(net.biases)
    zs, activations, deltas = (passes.layer_buffers(weights, 9) for _ in range(3))
    masks, kept = passes.layer_buffers(weights, 9), passes.layer_buffers(weights, 9)
    forward_dropped(weights, biases, net.acts, X, zs, activations, 0.6, 99, 3, masks, kept)
    grads_W, grads_b = tuple(np.empty_like(W) for W in weights), tuple(np.empty_like(b) for b in biases)
    K.backward.serial(weights, net.acts, net.cost_function.code, X, y, 0.0, zs, activations, deltas,
                      passes.parts_buffers(weights, deltas), grads_W, grads_b, masks, kept)
    for analytic, numeric in zip(list(grads_W) + list(grads_b), numeric_W + numeric_b):
        assert relative_error(analytic, numeric) < 1e-7


def test_compiled_dropout_training_matches_numpy():
    rng = np.random.default_rng(5)
    net = Network([9, 8, 6, 4], activation="relu", dtype="float64", seed=1)
    X, y = rng.random((40, 9)), rng.integers(0, 4, 40)
    order = rng.permutation(40).astype(np.int64)
    twin_W, twin_b = [W.copy() for W in net.weights], [b.copy() for b in net.biases]
    train_epoch(net, X, y, order, 8, 0.3, 0.0, dropout=0.25, dropout_seed=17)
    R.train_batches(twin_W, twin_b, net.acts, net.cost_function.code, X, y, order, 8, 0, 5, 0.3, 0.0, keep=0.75,
                    seed=17)
    for got, want in zip(net.weights + net.biases, twin_W + twin_b):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_cli_dropout_is_reproducible_and_checked(tmp_path):
    runner = CliRunner()
    args = ["train", "--epochs", "2", "--dropout", "0.3", "--plot", str(tmp_path / "p.png"), "-q"]
    first = runner.invoke(main, [*args, "--save", str(tmp_path / "a.npz")])
    second = runner.invoke(main, [*args, "--save", str(tmp_path / "b.npz")])
    assert first.exit_code == 0 and second.exit_code == 0, first.output
    a, b = Network.load(tmp_path / "a.npz"), Network.load(tmp_path / "b.npz")
    assert all(np.array_equal(x, z) for x, z in zip(a.weights, b.weights))
    assert runner.invoke(main, ["train", "--dropout", "1.0"]).exit_code == 2
