"""Compiling only what a run uses, filling the kernel cache ahead of time, and the same model
from fresh and cached kernels.

One fresh kernel cache for the whole sequence, in child processes (each compile is real):
a run compiles its own path and nothing else; another option compiles on first use; processes
that start together on a cache that lacks their kernels compile them once (nbnet.cache.compile_lock:
one compiles, the others wait and load); runs that compile the one-thread drivers train the same
weights as runs that load them; `nbnet compile` and the sweep's warm-up fill the cache so that
later processes compile nothing. (One sequence, not several tests, so that CI compiles each of
these paths once. One-thread code only: tests/test_training.py compares the parallel drivers
fresh against cached, in the suite's own cache, which compiles them anyway.)
"""

import os
import subprocess
import sys

import numba
import pytest

from nbnet.warm import usable_cores

DIGESTS = """
import sys, hashlib, numpy as np
from nbnet import Network
from nbnet.data import load_digits
from nbnet.train import train_epoch, prepare_kernels, set_threads
def digests(models):
    d, found = load_digits(), []
    for hidden, batch in models:
        net = Network([64, *hidden, 10], seed=0)
        X, y = net.as_inputs(d.X_train), net.as_labels(d.y_train, len(d.X_train))
        train_epoch(net, X, y, np.random.default_rng(0).permutation(len(X)), batch, 0.3, 0.001)
        found.append(hashlib.sha256(b"".join(w.tobytes() for w in net.weights + net.biases)).hexdigest()[:12])
    return found
SMALL = [((30,), 1), ((30,), 16)]  # small: the one-thread drivers, whatever the thread count
"""

LAZY = DIGESTS + """
from nbnet import kernels as K, narrow as N
from nbnet.optimizers import Optimizer
from nbnet import warm
from nbnet.warm import helper_pays, run_settings
helpers, fork = [], warm.forked_helper  # (no set_threads: Numba's workers start after the helper forks)
warm.forked_helper = lambda settings: helpers.append(fork(settings)) or helpers[-1]
def compiled(*functions):
    return [bool(f.signatures) for f in functions]
def loaded(*functions):  # compiled by prepare_kernels' helper process: loaded here, not compiled
    return [sum(f.stats.cache_hits.values()) > 0 and not sum(f.stats.cache_misses.values()) for f in functions]
net = Network([64, 30, 10])
print(helper_pays(run_settings(net, 10)))  # a cold start, two cores: the helper compiles the backward half
print(prepare_kernels(net, 10)[1])  # the bundled digits' default run: minibatches of 10, nbnet.kernels' steps, one thread
print(loaded(K.backpropagate.serial, K.gradient_steps.serial), helper_pays(run_settings(net, 10)))
print(compiled(K.train_batches.serial, K.evaluate_tiles.serial, K.sum_rows, K.gradient_steps.serial))
print(compiled(K.train_batches, K.weighted_sum, K.gradient_step, K.train_batches_with.serial, K.optimizer_step,
               K.dropout, K.forward.serial, K.output_cost, N.chunk_pass, N.evaluate.serial, N.forward_rows.serial))
print(len(K.forward_layers.serial.signatures))  # one, shared by training and evaluation: no dropout
print(prepare_kernels(net, 10, Optimizer("adam"), 0.2)[1])  # another path compiles on first use
print(compiled(K.train_batches_with.serial, K.optimizer_step, K.dropout), len(K.forward_layers.serial.signatures))
print(loaded(K.backward.serial, K.optimizer_steps.serial), len(K.gathered_batch.serial.signatures))
print(prepare_kernels(net, 64, Optimizer("adam"))[1])  # minibatches of 64: nbnet.narrow's steps, half by the helper
print(compiled(N.chunk_pass, N.evaluate.serial, N.weighted_sum, N.train_batches, N.evaluate, N.forward_rows))
print(loaded(N.output_delta, N.hidden_delta, N.train_batches.serial), len(N.chunk_pass.signatures))
print(prepare_kernels(net, 10)[1])  # nothing new
print("nbnet.loops" in sys.modules)  # the plain loops (--kernels loops) are not even imported
print(digests(SMALL))  # trained by the one-thread drivers this process compiled
from nbnet import loops  # --kernels loops: the helper compiles the plain loops, this process evaluation
print(prepare_kernels(net, 10, Optimizer(kernels="loops"))[1], loaded(*loops.LOOPS))
print(sorted({type(helper).__name__ for helper in helpers}), len(helpers))  # each a fork of this process
print(N.add_to_rows.signatures)  # one, compiled here for the forward half: no copy for a literal first row 0
"""

TRAIN = DIGESTS + """
set_threads(1)
hidden = tuple(int(size) for size in sys.argv[1].split(","))  # one hidden layer, or two
print(prepare_kernels(Network([64, *hidden, 10]), 16)[1])
print(digests([(hidden, 1), (hidden, 16)]))
if sys.argv[2:] == ["check"]:  # nothing to compile: the digits (sgd, adam), MNIST (train, evaluate)
    from nbnet.optimizers import Optimizer
    digits, mnist = Network([64, 20, 10]), Network([784, 100, 10])
    print(prepare_kernels(digits, 10)[1], prepare_kernels(digits, 10, Optimizer("adam"))[1],
          prepare_kernels(mnist, 10)[1], prepare_kernels(mnist)[1])
"""


def run(args, env):
    result = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2 or usable_cores() < 2,
                    reason="needs two threads and two cores (the compile helper's)")
def test_runs_compile_only_what_they_use_and_nbnet_compile_fills_the_cache(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), NBNET_COMPILE_HELPER="1")
    # the digits' default run compiles no parallel kernel, no optimiser, dropout or nbnet.narrow code
    lazy = run(["-c", LAZY], env).split("\n")
    # (on two cores, a helper process compiles the backward half of the training step: this
    # process loads it, and compiles no other signature of the driver's callees than its own
    # forward half did: one gathered_batch, one forward_layers without dropout; nbnet.narrow's
    # steps share one chunk pass between training and evaluation)
    assert lazy[:14] == [
        "True", "True", "[True, True] False", "[True, True, True, True]",
        "[False, False, False, False, False, False, False, False, False, False, False]", "1",
        "True", "[True, False, False] 2", "[True, True] 1",
        "True", "[True, True, True, False, True, False]", "[True, True, True] 1", "False", "False"]
    # Three processes start together (a sweep's workers, two terminals) on a cache without the
    # drivers of a network with two hidden layers: one compiles them, the other two wait for it
    # and load; all train the same. (Drivers of another depth over the kernels compiled above:
    # float64 ones would compile every kernel again, ~10 s of CPU, for no other path checked.)
    together = [subprocess.Popen([sys.executable, "-c", TRAIN, "30,20"], env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [child.communicate(timeout=600) for child in together]
    assert [child.returncode for child in together] == [0] * 3, [stderr for _, stderr in outputs]
    started = [stdout.split("\n")[:2] for stdout, _ in outputs]
    assert sorted(compiled for compiled, _ in started) == ["False", "False", "True"]
    assert all(digests == started[0][1] for _, digests in started)
    # nbnet compile, one-thread variants only (what workers with one thread each run)
    output = run(["-m", "nbnet", "compile", "--optimizers", "sgd", "--threads", "1"], env)
    assert "one thread: evaluate and predict:" in output and "one thread: train, sgd:" in output
    assert "parallel" not in output
    # what nbnet sweep runs before its workers start
    job = dict(config=dict(hidden=[20], optimizer="adam"), data_dir=None, threads=1)
    run(["-c", f"from nbnet.sweep import prepare; prepare([{job!r}])"], env)
    # Later processes load everything and train what the fresh kernels trained, bit for bit
    # (compiler choices that reorder sums would break this): one hidden layer as the first
    # process above compiled it, two as one of the three did.
    cached = [run(["-c", TRAIN, hidden, *check], env).split("\n")[:3]
              for hidden, check in (("30", ["check"]), ("30,20", []))]
    assert [compiled for compiled, *_ in cached] == ["False", "False"]
    assert cached[0][2].split() == ["False"] * 4
    assert cached[0][1] == lazy[14] and cached[1][1] == started[0][1]
    assert lazy[15] == "True [True, True, True, True, True, True]"
    assert lazy[16] == "['ForkedHelper'] 4"
    assert lazy[17].count("Array(") == 4 and "Literal" not in lazy[17], lazy[17]
    # A cached driver calls the machine code of the kernels it loads with it (numba_cache.
    # drivers_call_loaded_code). A kernel compiled again (its cache entries lost here) has other
    # symbols: the drivers that call it are compiled again too, and train the same.
    lost = list((tmp_path / "cache").rglob("kernels.step_rows-*"))
    assert lost
    for entry in lost:
        entry.unlink()
    assert run(["-c", TRAIN, "30"], env).split("\n")[:2] == ["True", lazy[14]]


def helper_standing_in(monkeypatch, code):
    """Make prepare_kernels start `code` as its helper process, whatever the cache holds; the list
    of helpers it started."""
    from nbnet import warm

    started = []

    def start(settings):
        started.append(subprocess.Popen([sys.executable, "-c", code]))
        return started[-1]

    monkeypatch.setattr(warm, "helper_pays", lambda settings: True)
    monkeypatch.setattr(warm, "start_helper", start)
    return started


def test_a_failing_compile_helper_costs_only_time(monkeypatch):
    """The helper only adds to the cache: when it fails, prepare_kernels compiles (or loads)
    everything itself."""
    from nbnet import Network
    from nbnet import kernels as K
    from nbnet.warm import prepare_kernels

    started = helper_standing_in(monkeypatch, "raise SystemExit(3)")
    prepare_kernels(Network([64, 12, 10], seed=0), 10, None, 0.2)  # (dropout: nbnet.kernels' steps, which the helper halves)
    assert [helper.returncode for helper in started] == [3]
    assert K.train_batches.serial.signatures  # (compiled here, or loaded)


def test_the_run_does_its_meanwhile_task_while_the_helper_compiles(monkeypatch, tmp_path):
    """prepare_kernels' `meanwhile` (nbnet train: importing matplotlib) runs in a thread of its own
    once this process's half is compiled, while the helper still compiles."""
    import threading

    from nbnet import Network
    from nbnet.warm import prepare_kernels

    signal, ran = tmp_path / "ran", []
    helper_standing_in(monkeypatch, f"import os, time; t = time.time()\n"
                                    f"while not os.path.exists({str(signal)!r}) and time.time() < t + 60: time.sleep(0.02)")

    def meanwhile():
        ran.append(threading.current_thread() is not threading.main_thread())
        signal.touch()

    prepare_kernels(Network([64, 12, 10]), 10, None, 0.2, meanwhile=meanwhile)
    assert ran == [True]


def test_the_compile_helper_ends_with_its_run(monkeypatch):
    """An error (or Ctrl-C) in this process while the helper compiles kills the helper."""
    from nbnet import Network, warm

    def interrupted(**settings):
        raise KeyboardInterrupt

    started = helper_standing_in(monkeypatch, "import time; time.sleep(60)")
    monkeypatch.setattr(warm, "warm_up", interrupted)
    with pytest.raises(KeyboardInterrupt):
        warm.prepare_kernels(Network([64, 12, 10], seed=0), 10, None, 0.2)
    assert started[0].poll() is not None


def test_the_compile_helper_runs_only_for_cold_training_code(monkeypatch):
    from nbnet import Network
    from nbnet.optimizers import Optimizer
    from nbnet.warm import helper_pays, prepare_kernels, run_settings

    net = Network([64, 12, 10], seed=0)
    prepare_kernels(net, 10, None, 0.2)  # (compiled or loaded: now in the cache)
    assert not helper_pays(run_settings(net, 10, None, 0.2))
    monkeypatch.setattr("nbnet.warm.in_disk_cache", lambda dispatcher, args=None: False)  # as on a cold start
    monkeypatch.setattr("nbnet.warm.usable_cores", lambda: 2)
    monkeypatch.delenv("NBNET_COMPILE_HELPER")  # (tests/conftest.py turns it off for the suite)
    assert helper_pays(run_settings(net, 10, None, 0.2)) and helper_pays(run_settings(net, 10, Optimizer(kernels="loops")))
    assert helper_pays(run_settings(net, 10)) and helper_pays(run_settings(net, 64))  # (nbnet.narrow's: narrow_halves)
    monkeypatch.setenv("NBNET_COMPILE_HELPER", "0")
    assert not helper_pays(run_settings(net, 10, None, 0.2))
    monkeypatch.setenv("NBNET_COMPILE_HELPER", "1")
    monkeypatch.setattr("nbnet.warm.usable_cores", lambda: 1)
    assert not helper_pays(run_settings(net, 10, None, 0.2))


def test_drivers_are_only_the_functions_marked_as_drivers():
    """A driver is compiled without the final -O3 of its module (numba_cache.drivers_optimised_once),
    which is chosen by name: no kernel whose own loops are the work may share a driver's name."""
    from numba.core.registry import CPUDispatcher

    from nbnet import epochs, kernels, loops, narrow, pixels, vecmath
    from nbnet.config import DRIVER_CODE
    from nbnet.numba_cache import DRIVERS

    compiled = set()
    for module in (kernels, narrow, epochs, loops, pixels, vecmath):
        for value in vars(module).values():
            for variant in (value, getattr(value, "serial", None), getattr(value, "inlined", None)):
                if isinstance(variant, CPUDispatcher):
                    compiled.add(variant)
    named = [d for d in compiled if d.py_func.__qualname__ in DRIVERS]
    assert len(named) >= 20  # the drivers of both families and the compiled epochs
    assert all(d.py_func.__code__ in DRIVER_CODE for d in named), [d.py_func.__qualname__ for d in named
                                                                    if d.py_func.__code__ not in DRIVER_CODE]
    assert {"run_epochs_serial", "train_batches", "chunk_pass", "evaluate_tiles_serial"} <= DRIVERS
    assert not {"weighted_sum", "sum_rows", "activate", "add_products", "update"} & DRIVERS


WIDE_VECTORS = """
import llvmlite.binding as ll
import numpy as np
from numba import njit
from numba.core.registry import cpu_target
import nbnet

@njit(fastmath=True)
def axpy(x, y):
    for k in range(x.shape[0]):
        y[k] += np.float32(2) * x[k]

x = np.ones(1024, np.float32)
axpy(x, x.copy())
assembly = next(iter(axpy.inspect_asm().values()))
print(int(ll.get_host_cpu_features().get("avx512f", False)), int("zmm" in assembly),
      cpu_target.target_context.codegen()._tm_features.split(",")[-1])
"""


def test_loops_use_512_bit_vectors_where_the_cpu_has_them_unless_the_user_chose():
    """config.wide_vectors: LLVM's tuning for Intel's AVX-512 chips prefers 256-bit vectors;
    nbnet asks for 512-bit ones (zmm registers) where the CPU has AVX-512, and keeps features
    the user set (NUMBA_CPU_FEATURES)."""
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CPU_FEATURES", "NUMBA_CPU_NAME")}
    run = subprocess.run([sys.executable, "-c", WIDE_VECTORS], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    has_avx512, uses_zmm, last_feature = run.stdout.split()
    assert uses_zmm == has_avx512
    assert (last_feature == "-prefer-256-bit") == (has_avx512 == "1")

    import llvmlite.binding as ll
    own = ll.get_host_cpu_features().flatten()
    run = subprocess.run([sys.executable, "-c", WIDE_VECTORS], env=dict(env, NUMBA_CPU_FEATURES=own),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split()[2] == own.split(",")[-1]  # the user's features, as given
