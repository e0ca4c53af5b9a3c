import os
import re
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest
from numba import njit, typeof
from numba.core.compiler import CompilerBase, DefaultPassBuilder
from numba.core.compiler_machinery import FunctionPass, register_pass

from nbnet import Network
from nbnet import kernels as K
from nbnet import reference as R
from nbnet.passes import row_parts
from nbnet.train import set_threads, train_epoch

from kernel_cases import VARIANTS, check_all, check_layer

# Sizes that are multiples of nothing in particular (1, primes, odd), plus MNIST-like ones.
SHAPES = [(1, 1, 1), (1, 7, 3), (3, 13, 1), (7, 33, 10), (13, 17, 31), (64, 129, 65), (10, 784, 100)]


@pytest.mark.parametrize("dtype,variant", VARIANTS)
def test_each_kernel_matches_its_numpy_twin(dtype, variant):
    """Every shape in one test: a variant's kernels are compiled once, by one worker (one test
    per shape let CI's two workers compile the same kernels at the same time). A failure names
    its shape."""
    for n_samples, n_in, n_out in SHAPES:
        check_layer(np.random.default_rng(n_samples * 1000 + n_in), dtype, n_samples, n_in, n_out, variant)


def test_random_shapes_match_numpy_twin():
    rng = np.random.default_rng(42)
    shapes = [tuple(int(v) for v in rng.integers(1, 70, 3)) for _ in range(8)]
    # (the plain loops: tests/test_loops.py, on odd shapes too; compiling them here as well cost
    # CI ~8 s of CPU when the two tests ran on different workers)
    check_all(shapes, seed=1, loops=False)


def test_kernels_as_plain_python_match_numpy_twin():
    """The loop bodies themselves, run by the Python interpreter (NUMBA_DISABLE_JIT=1)."""
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    code = "from kernel_cases import check_all; check_all([(1, 1, 1), (3, 5, 2), (4, 7, 6), (3, 2, 64)]); print('ok')"
    result = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def float32_arguments(name):
    """Float32 arguments for kernel `name` (learning rate and l2 stay Python floats, as callers pass them)."""
    f32 = np.float32
    a, W, b, y = np.ones((4, 3), f32), np.ones((2, 3), f32), np.ones(2, f32), np.zeros(4, np.int64)
    z, d = np.ones((4, 2), f32), np.ones((4, 2), f32)
    return {
        "weighted_sum": (W, b, a, z),
        "activate": (z, K.SOFTMAX, d),
        "output_delta": (z, d, y, K.SIGMOID, K.QUADRATIC, d),
        "hidden_delta": (W, d, a, a.copy(), K.SIGMOID, a.copy(), np.ones((4, 4, 3), f32), np.int64(1)),
        "weight_gradient": (d, a, W, 0.1, W.copy(), b.copy()),
        "gradient_step": (d, a, 0.1, 0.01, W, b),
        "dropout": (z, 0.5, 7, 3, 1, d, d.copy()),
        "apply_mask": (z, d),
    }[name]


class TypesFound(Exception):
    """Carries the variable types out of Numba's compiler (StopWithTypes)."""


@register_pass(mutates_CFG=False, analysis_only=True)
class StopWithTypes(FunctionPass):
    _name = "nbnet_stop_with_types"

    def __init__(self):
        FunctionPass.__init__(self)

    def run_pass(self, state):
        raise TypesFound(dict(state.typemap))


class UpToTypes(CompilerBase):
    """Numba's passes up to and including type inference (helpers inlined, as in a compiled
    kernel), then StopWithTypes: no machine code, which would take twice as long."""

    def define_pipelines(self):
        passes = DefaultPassBuilder.define_untyped_pipeline(self.state)
        for typed_pass in DefaultPassBuilder.define_typed_pipeline(self.state).passes:
            passes.passes.append(typed_pass)
        passes.add_pass(StopWithTypes, "the variable types, then stop")
        passes.finalize()
        return [passes]


def variable_types(function, args):
    """{variable name: Numba type} inside `function` called with `args`."""
    try:
        njit(pipeline_class=UpToTypes)(function).compile(tuple(typeof(arg) for arg in args))
    except TypesFound as found:
        return found.args[0]
    raise AssertionError("type inference did not run")


@pytest.mark.parametrize("name", ["weighted_sum", "activate", "output_delta", "hidden_delta",
                                  "weight_gradient", "gradient_step", "dropout", "apply_mask"])
def test_float32_kernels_compute_in_float32(name):
    """No variable inside a float32 kernel is float64: a bare float literal such as 0.5 would
    promote the loop to float64 (slower, and not the dtype the user chose)."""
    kernel = getattr(K, name)
    typemap = variable_types(kernel.py_func, float32_arguments(name))
    parameters = set(kernel.py_func.__code__.co_varnames[:kernel.py_func.__code__.co_argcount])
    # parameters themselves may be float64 (a Python float lr), also where a helper inlined
    # into the kernel receives them (Numba names those `helper_v7_lr`)
    def is_parameter(variable):
        return re.sub(r"^(arg\.|\w+_v\d+_)", "", variable) in parameters

    promoted = sorted(v for v, t in typemap.items() if "float64" in str(t) and not is_parameter(v))
    assert not promoted, f"{name}: float64 variables {promoted}"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n_samples,batch_size", [(23, 1), (23, 4), (23, 7), (700, 300), (1100, 1), (1100, 7)])
def test_compiled_training_matches_numpy_training(dtype, n_samples, batch_size):
    """Whole minibatch SGD runs end with the same weights: short last batches, batches too
    large for gradient_step_then_weighted_sum (the unfused path), and runs over several
    chunks of gathered samples (GATHER_ROWS) included."""
    rng = np.random.default_rng(3)
    net = Network([9, 8, 5, 4], activation="tanh", output="softmax", dtype=dtype, seed=2)
    X = rng.random((n_samples, 9)).astype(dtype)
    y = rng.integers(0, 4, n_samples)
    order = rng.permutation(n_samples).astype(np.int64)
    ref_W = [W.copy() for W in net.weights]
    ref_b = [b.copy() for b in net.biases]
    n_batches = -(-n_samples // batch_size)
    train_epoch(net, X, y, order, batch_size, 0.4, 0.01)  # compiled; a short last batch goes separately
    R.train_batches(ref_W, ref_b, net.acts, net.cost_function.code, X, y, order, batch_size, 0, n_batches,
                    0.4, 0.01)
    tolerance = dict(rtol=1e-4, atol=1e-5) if dtype == "float32" else dict(rtol=1e-10, atol=1e-12)
    for got, want in zip(net.weights + net.biases, ref_W + ref_b):
        np.testing.assert_allclose(got, want, **tolerance)
        assert got.dtype == np.dtype(dtype)


def test_fused_step_equals_the_two_kernels():
    """gradient_step_then_weighted_sum gives exactly gradient_step followed by weighted_sum."""
    rng = np.random.default_rng(8)
    W = rng.standard_normal((13, 29)).astype(np.float32)
    b = rng.standard_normal(13).astype(np.float32)
    delta = rng.standard_normal((6, 13)).astype(np.float32)
    a_prev, x_next = rng.random((6, 29)).astype(np.float32), rng.random((5, 29)).astype(np.float32)
    W2, b2 = W.copy(), b.copy()
    z_fused, z_apart = np.empty((5, 13), np.float32), np.empty((5, 13), np.float32)
    K.gradient_step_then_weighted_sum(delta, a_prev, 0.3, 0.02, W, b, x_next, z_fused)
    K.gradient_step(delta, a_prev, 0.3, 0.02, W2, b2)
    K.weighted_sum(W2, b2, x_next, z_apart)
    np.testing.assert_array_equal(W, W2)
    np.testing.assert_array_equal(b, b2)
    np.testing.assert_array_equal(z_fused, z_apart)


def test_forward_matches_numpy_forward():
    rng = np.random.default_rng(5)
    net = Network([6, 5, 4, 3], activation="relu", output="sigmoid", dtype="float64", seed=1)
    X = rng.standard_normal((9, 6))
    _, activations = R.forward(net.weights, net.biases, net.acts, X)
    np.testing.assert_allclose(net.forward(X), activations[-1], rtol=1e-12)


@pytest.mark.parametrize("n_samples,n_in,n_out", [(37, 50, 23), (10, 784, 101)])
def test_loop_nests_inlined_or_called_give_the_same_bits(n_samples, n_in, n_out):
    """A kernel's body (NAME.rows, which the parallel kernel and NAME.one_thread run) has its loop
    nests inlined by LLVM; the one-thread drivers' copy of the body (NAME.serial) calls them
    (config.loop_nest). A run takes one or the other by its size and thread count, so both must
    compute the same bits."""
    rng = np.random.default_rng(n_samples)
    W, b, a_prev = (rng.standard_normal(shape).astype(np.float32) for shape in ((n_out, n_in), n_out, (n_samples, n_in)))
    delta, z_in = rng.standard_normal((n_samples, n_out)).astype(np.float32), rng.standard_normal((n_samples, n_in))
    x_next = rng.random((n_samples - 3, n_in)).astype(np.float32)
    a_in = (1 / (1 + np.exp(-z_in))).astype(np.float32)
    parts = row_parts(W, a_in)  # (parts when W has many rows: the second shape)
    calls = {  # kernel: (arguments, the indices of those it writes)
        "weighted_sum": ((W, b, a_prev, np.empty((n_samples, n_out), np.float32)), (3,)),
        "hidden_delta": ((W, delta, z_in.astype(np.float32), a_in, K.SIGMOID, np.zeros_like(a_in), parts, np.int64(0)),
                         (5, 6)),
        "hidden_delta phase 1": ((W, delta, z_in.astype(np.float32), a_in, K.SIGMOID, np.empty_like(a_in),
                                  rng.standard_normal((3, *a_in.shape)).astype(np.float32), np.int64(1)), (5,)),
        "weight_gradient": ((delta, a_prev, W, 0.3, np.empty_like(W), np.empty_like(b)), (4, 5)),
        "gradient_step": ((delta, a_prev, 0.1, 0.02, W, b), (4, 5)),
        "gradient_step_then_weighted_sum": ((delta, a_prev, 0.1, 0.02, W, b, x_next,
                                             np.empty((len(x_next), n_out), np.float32)), (4, 5, 7)),
    }
    for name, (args, written) in calls.items():
        results = []
        kernel = getattr(K, name.split()[0])
        for variant in (kernel.one_thread, kernel.serial):
            copies = [arg.copy() if isinstance(arg, np.ndarray) else arg for arg in args]
            variant(*copies)
            results.append([copies[i] for i in written])
        for inlined, called in zip(*results):
            assert np.array_equal(inlined, called), name


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two threads")
@pytest.mark.parametrize("shape", [(37, 50, 23), (300, 64, 130), (1, 784, 100)])
def test_parallel_kernels_and_their_one_thread_twins_agree_bit_for_bit(shape):
    """A run calls either the parallel or the one-thread variant of the drivers (nbnet.passes,
    by its size and thread count), compiled fresh or loaded from the disk cache; that is only
    allowed because all of them compute the same bits."""
    from kernel_cases import check_layer

    set_threads(2)
    here = {}
    for dtype in (np.float32,):  # (float64: see kernel_cases.VARIANTS)
        parallel = check_layer(np.random.default_rng(3), dtype, *shape, variant="parallel")
        serial = check_layer(np.random.default_rng(3), dtype, *shape, variant="serial")
        assert len(parallel) == len(serial) > 20
        for got, want in zip(parallel, serial):
            assert np.array_equal(got, want), (dtype, shape)
        here[dtype.__name__] = parallel + serial
    if shape == (37, 50, 23):
        # In a fresh cache (CI) this process compiled the kernels above (here or in the tests before);
        # a new process loads them from the disk cache and must compute the same bits.
        from kernel_cases import in_a_new_process

        loaded = in_a_new_process(
            "import numpy as np; from nbnet.train import set_threads; from kernel_cases import check_layer; "
            "set_threads(2); sys.stdout.buffer.write(pickle.dumps({d: [x for v in ('parallel', 'serial') for x in "
            "check_layer(np.random.default_rng(3), getattr(np, d), 37, 50, 23, variant=v)] for d in "
            "('float32',)}))")
        for name, outputs in here.items():
            assert all(np.array_equal(a, b) for a, b in zip(outputs, loaded[name], strict=True)), name


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="plain Python functions under NUMBA_DISABLE_JIT")
def test_functions_only_compiled_code_calls_have_no_entry_for_python():
    """config.compiled_only: the loop nests, nbnet.vecmath's functions, the kernels' bodies and
    the inner passes of the drivers are compiled without Numba's entry for Python (only compiled
    code calls them); called from Python they raise TypeError instead of jumping to the entry
    they do not have, and the kernels that call them work. config.entry_on_demand: the parallel
    kernels and nbnet.narrow's get theirs when Python calls them."""
    from nbnet import vecmath

    W, b, a_prev = np.ones((4, 3)), np.arange(4.0), np.ones((2, 3))
    z = np.zeros((2, 4))
    with pytest.raises(TypeError, match=r"nbnet\.kernels\.sum_rows is compiled only for other compiled functions"):
        K.sum_rows(W, b, a_prev, z, 0, 4, 0, 2)
    with pytest.raises(TypeError, match=r"nbnet\.vecmath\.exp64 is compiled only"):
        vecmath.exp64(1.0)
    K.weighted_sum.serial(W, b, a_prev, z)  # (through sum_rows)
    np.testing.assert_array_equal(z, [[3, 4, 5, 6], [3, 4, 5, 6]])
    # the kernels' bodies and the passes that only drivers call (config.inner_driver), both variants
    from nbnet import narrow
    from nbnet.config import CompiledOnly, EntryOnDemand

    inner = [K.weighted_sum.rows, K.hidden_delta.rows, narrow.chunk_pass, narrow.forward_out]
    for name in ("forward_layers", "backpropagate", "weight_gradients", "gathered_batch", "gradient_steps",
                 "optimizer_steps"):
        inner += [getattr(K, name), getattr(K, name).serial]
    assert all(isinstance(function, CompiledOnly) and function.targetoptions["no_cpython_wrapper"] for function in inner)
    with pytest.raises(TypeError, match=r"nbnet\.kernels\.weighted_sum_rows is compiled only"):
        K.weighted_sum.rows(W, b, a_prev, z, 0, 1)
    # what Python calls in a run keeps its entry
    assert not any(isinstance(function, CompiledOnly) or function.targetoptions.get("no_cpython_wrapper")
                   for function in (K.train_batches, K.train_batches.serial, K.backward.serial, K.forward.serial))
    # what Python calls elsewhere (tests, bench/, nbnet.lbfgs) gets it when called (config.entry_on_demand)
    from nbnet import epochs

    on_demand = [K.weighted_sum, K.activate, K.gradient_step_then_weighted_sum, K.add_costs, K.add_costs.serial,
                 narrow.weighted_sum, narrow.activate, narrow.update, epochs.score, epochs.permutation]
    assert all(isinstance(function, EntryOnDemand) and function.targetoptions["no_cpython_wrapper"]
               for function in on_demand)
    z2 = np.zeros((2, 4))
    K.weighted_sum(W, b, a_prev, z2)
    np.testing.assert_array_equal(z2, z)
    assert K.weighted_sum.python_entry.py_func.__qualname__ == "weighted_sum_parallel_from_python"


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="plain Python functions under NUMBA_DISABLE_JIT")
def test_products_start_threads_at_ten_times_the_work_of_element_wise_kernels():
    """kernel(min_work): the choosers (NAME.auto) of the products compare multiply-adds with
    PARALLEL_MIN_PRODUCTS, those of the element-wise kernels elements with PARALLEL_MIN_WORK."""
    from nbnet.config import PARALLEL_MIN_PRODUCTS, PARALLEL_MIN_WORK

    def threshold(kernel):
        return kernel.auto.py_func.__globals__["MIN_WORK"]

    products = (K.weighted_sum, K.hidden_delta, K.weight_gradient, K.gradient_step, K.gradient_step_then_weighted_sum)
    element_wise = (K.activate, K.output_delta, K.gather_rows, K.dropout, K.apply_mask, K.optimizer_step, K.output_cost)
    assert PARALLEL_MIN_PRODUCTS == 10 * PARALLEL_MIN_WORK
    assert [threshold(kernel) for kernel in products] == [PARALLEL_MIN_PRODUCTS] * len(products)
    assert [threshold(kernel) for kernel in element_wise] == [PARALLEL_MIN_WORK] * len(element_wise)
