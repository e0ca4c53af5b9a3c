"""Arrays the compiled loops read start on a 64-byte boundary (nbnet.aligned)."""

import numpy as np
import pytest

from nbnet import Network
from nbnet.aligned import ALIGNMENT, aligned, empty, zeros
from nbnet.optimizers import Optimizer

from idx_files import write_mnist


def is_aligned(array):
    return array.ctypes.data % ALIGNMENT == 0 and array.flags.c_contiguous


@pytest.mark.parametrize("shape,dtype", [((100, 784), "float32"), ((7,), "float64"), ((), "int64")])
def test_empty_and_zeros_are_aligned(shape, dtype):
    for make in (empty, zeros):
        array = make(shape, dtype)
        assert array.shape == shape and array.dtype == np.dtype(dtype) and is_aligned(array)
    assert not np.any(zeros(shape, dtype))


def test_aligned_copies_only_when_it_must():
    base = np.arange(40, dtype=np.float32)
    misaligned = base[1:33]  # 4 bytes past an aligned or misaligned start: never both
    for array in (misaligned, base[::2], base.astype(np.float64)):
        out = aligned(array, np.float32)
        assert is_aligned(out) and out.dtype == np.float32
        np.testing.assert_array_equal(out, array.astype(np.float32))
    already = aligned(base)
    assert aligned(already) is already


def test_network_data_and_optimizer_state_are_aligned(tmp_path):
    from nbnet.data import load_mnist

    net = Network([784, 30, 10], seed=0)
    assert all(is_aligned(p) for p in net.weights + net.biases)
    X = np.random.default_rng(0).random((5, 784))  # float64: as_inputs converts
    assert is_aligned(net.as_inputs(X))
    optimizer = Optimizer("adam").attach(net)
    assert all(is_aligned(s) for arrays in optimizer.state for s in arrays)
    write_mnist(tmp_path, n_train=12, n_test=4, side=5)
    data = load_mnist(tmp_path)
    assert is_aligned(data.X_train) and is_aligned(data.X_test)
    assert Network([25, 3, 10]).as_inputs(data.X_train) is data.X_train  # an aligned dataset is not copied
