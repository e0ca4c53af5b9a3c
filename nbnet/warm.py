"""Compiling what a run calls before its first epoch, with both halves of a training step
compiled at once on a cold start.

A process compiles one function at a time. On a cold start (the run's training driver is
not in the kernel cache) with two usable cores, a helper process compiles the backward half of
a training step, the deltas and the update (on one thread, first of all the activations' exp and
tanh), into the disk cache while this process compiles the forward half: evaluation, the
training forward pass and the minibatch gathering. The helper is a fork of this process where
that is safe (forked_helper: no Python start, no imports), else a new Python process. This
process then waits for the helper (loading the plot's matplotlib meanwhile, for nbnet train)
and compiles the driver that chains the halves, loading the helper's part from the cache
(bench/startup.py: an MNIST run starts training after 5.5 s instead of 10.0 s, the digits'
after 3.7 s instead of 6.1 s). With --kernels loops the helper compiles the plain loops,
which a Python driver calls, while this process compiles the evaluation pass.

The helper only adds entries to the cache (under numba_cache.lock_numba_cache_index's lock): if
it cannot start, fails or is disabled (NBNET_COMPILE_HELPER=0), this process compiles what is
missing itself, so the model is the same whichever process compiled what. An exception or
Ctrl-C here kills the helper; if this process is killed outright, the helper finishes its
half (seconds) and exits.
"""

import inspect
import json
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import nullcontext
from pathlib import Path

import numba
import numpy as np

from . import kernels, narrow, passes, vecmath
from .augment import Augmentation, TrainingRows
from .cache import cache_dir_writable, compile_lock, kernel_cache_dir
from .config import workers_started
from .numba_cache import cache_saves_locked
from .network import Network
from .optimizers import Optimizer


def warm_up(layers, dtype, parallel_evaluation, parallel_training, optimizer=None, track_gradients=False,
            dropout=False, running=False, kernel_set="fast", half="both", targets="ids", pixel_bytes=False,
            augment=False, narrow=False, narrow_steps=False):
    """Run once, on a tiny network of `layers` layers and `dtype`, the compiled drivers that a
    run with these settings calls (same variants and argument types): evaluation, and
    training with `optimizer` through `kernel_set` ("fast" or "loops") unless it is None (else
    Network.forward, for evaluate and predict). half="forward" or "backward" compiles only
    that half of the fast training step (see training_halves), "both" everything. targets:
    "ids" (class ids) or "matrix" (a target matrix: nbnet.costs.targets), the form of y.
    pixel_bytes: the inputs are uint8 pixel bytes; augment: training distorts them (nbnet.pixels).
    narrow: the run's network evaluates through nbnet.narrow; narrow_steps: it trains through it."""
    tiny, X, y = tiny_data(layers, dtype, targets)
    weights, biases = tuple(tiny.weights), tuple(tiny.biases)
    if half == "backward" and not parallel_training:  # (the helper: first what the forward half calls later)
        warm_math(dtype)
    if half != "backward" and (pixel_bytes or augment):
        warm_pixels(dtype, pixel_bytes, augment and optimizer is not None)
    if narrow_steps and half != "both":
        warm_narrow_half(tiny, X, y, half, parallel_evaluation, (optimizer, parallel_training, dropout, running))
        return
    if half != "backward":
        passes.evaluate(weights, biases, tiny.acts, tiny.cost_function.code, X, y, parallel_evaluation, narrow)
    if optimizer is None:
        if narrow:
            passes.narrow_forward(weights, biases, tiny.acts, X, parallel_evaluation)
            return
        passes.variant(kernels.forward, parallel_evaluation)(weights, biases, tiny.acts, X,
                                                             passes.layer_buffers(weights, 4),
                                                             passes.layer_buffers(weights, 4))
        return
    same = Optimizer(optimizer, track_gradients=track_gradients, kernels=kernel_set)
    same.narrow = narrow_steps
    steps = tiny_steps(X, y, dropout, running, parallel_training)
    if narrow_steps:
        same.run(tiny, *steps)
        return
    if half == "both" or (kernel_set == "loops" and half == "backward"):
        same.run(tiny, *steps)  # (the plain loops are called from Python: the helper compiles them all)
        return
    if kernel_set == "loops":
        return
    driver, args = same.compiled_call(tiny, *steps)
    for call in training_halves(same.fused, parallel_training, driver, args)[half]:
        call()


def warm_math(dtype):
    """Compile nbnet.vecmath's exp and tanh for `dtype`, which the activations of the forward
    pass call (kernels.f): a forked helper of a one-thread run starts with them and has them in
    the disk cache within 0.2 s, before this process, which compiles its loop nest first, needs
    them. (The costs' log and log1p stay with this process: with them the helper's half was the
    longer, and the digits' cold command 0.1 s slower. With the parallel kernels the helper's
    half is the longer already.)"""
    single = np.dtype(dtype) == np.float32
    for function in (vecmath.exp32, vecmath.tanh32) if single else (vecmath.exp64, vecmath.tanh64):
        compile_for(function, np.dtype(dtype).type(0.5))  # (compiled code alone calls them: config.helper)


def warm_pixels(dtype, pixel_bytes, augment):
    """Call the kernels of nbnet.pixels that a run with pixel bytes (uint8 inputs) and/or
    augmentation calls, with the argument types it passes (augment.TrainingRows)."""
    X = np.zeros((1, 4), dtype=np.uint8 if pixel_bytes else dtype)
    rows = TrainingRows(X, dtype, Augmentation() if augment else None, (2, 2))
    rows.block(np.zeros(1, dtype=np.int64), 1)


def tiny_data(layers, dtype, targets="ids"):
    """(network, X, y): a network of `layers` layers of 3 neurons (2 outputs) and 4 samples,
    with class ids or a target matrix y."""
    tiny = Network([3] * layers + [2], dtype=dtype, seed=0)
    y = np.zeros(4, dtype=np.int64) if targets == "ids" else np.zeros((4, 2), dtype=dtype)
    return tiny, tiny.as_inputs(np.zeros((4, 3))), tiny.as_labels(y, 4)


def tiny_steps(X, y, dropout, running, parallel):
    """Optimizer.run's arguments after the network: two minibatches of tiny_data's samples."""
    return (X, y, np.arange(4, dtype=np.int64), 2, 0, 2, 0.1, 0.0, 0.5 if dropout else 1.0, 0, parallel,
            np.zeros(2) if running else None)


def training_halves(fused, parallel, driver, args):
    """{"forward": calls, "backward": calls}: calls that compile (compile_for) the passes that
    `driver` (kernels.train_batches when `fused`, else train_batches_with, called with `args`)
    calls in its forward and backward half, each for the argument types the driver passes, so
    that compiling them compiles the driver's callees. (tests/test_compile.py checks, for the
    one-thread drivers, that the driver then compiles no new signature of them; a parallel
    driver is the same Python body, so it passes its callees the same types.)"""
    a = dict(zip(inspect.signature(driver.py_func).parameters, args))
    zs, activations, deltas, parts = a["buffers"]
    x, y = a["X"][:a["batch_size"]], a["y"][:a["batch_size"]]
    v = lambda driver: passes.variant(driver, parallel)  # noqa: E731
    forward = [
        lambda: compile_for(v(kernels.gathered_batch), a["X"], a["y"], a["order"], a["batch_size"], a["first"],
                            a["stop"], a["first"], a["x_chunks"], a["y_chunks"]),
        lambda: compile_for(v(kernels.forward_layers), np.int64(1 if fused else 0), a["weights"], a["biases"],
                            a["acts"], x, zs, activations, a["keep"], a["seed"], a["first"], a["masks"], a["kept"])]
    if fused:
        # (the minibatch gathering stays in this process's half: the helper's half, with
        # hidden_delta's two phases, is the heavier even without it, on the digits by 0.05 s)
        backward = [
            lambda: compile_for(v(kernels.backpropagate), a["weights"], a["acts"], a["cost"], y, zs, activations,
                                deltas, parts, a["masks"]),
            lambda: compile_for(v(kernels.gradient_steps), a["weights"], a["biases"], activations, deltas, a["kept"],
                                x, x, zs, a["lr"], a["l2_over_n"])]
    else:
        grads_W, grads_b = a["grads"]
        backward = [
            lambda: compile_for(v(kernels.backward), a["weights"], a["acts"], a["cost"], x, y, a["l2_over_n"], zs,
                                activations, deltas, parts, grads_W, grads_b, a["masks"], a["kept"]),
            lambda: compile_for(v(kernels.optimizer_steps), a["code"], a["settings"], a["step"] + 1, a["weights"],
                                a["biases"], a["state"], a["grads"], a["gradient_sums"])]
    return {"forward": forward, "backward": backward}


def compile_for(dispatcher, *args):
    """Compile `dispatcher` for the types of `args`, as a call with them would, without running
    it: the passes of a training step and nbnet.vecmath's functions have no entry for Python
    (config.compiled_only), and nbnet.narrow's kernels get theirs only when Python calls them
    (config.on_demand). (Under
    NUMBA_DISABLE_JIT, plain Python functions: the call itself.)"""
    if numba.config.DISABLE_JIT:
        dispatcher(*args)
        return
    dispatcher.compile(tuple(dispatcher.typeof_pyval(arg) for arg in args))


def narrow_halves(tiny, X, y):
    """nbnet.narrow's compiled code of a run, in the order two processes compile it on a cold start,
    as {part: [(dispatcher, arguments)]}, on tiny_data's network, inputs and targets, with the
    argument types chunk_pass and train_batches pass (views of flat buffers, int64 counts):

      "forward"   the kernels of the forward pass (this process)
      "backward"  the costs and the kernels of the deltas, the gradients and the update (the
                  helper, meanwhile)
      "chunk"     chunk_pass, which links them all (this process, once the helper's are cached;
                  the helper then compiles the training pass while this process compiles evaluation)

    tests/test_compile.py checks that chunk_pass then compiles no new signature of a kernel."""
    from . import narrow as N

    weights, biases = tuple(tiny.weights), tuple(tiny.biases)
    dtype, t, i64 = tiny.dtype, tiny.dtype.type, np.int64
    xs, ts, zs, activations, deltas, scratch, grads, chunk_totals = buffers = passes.narrow_buffers(weights, 4, y)
    sizes, params, order = passes.sizes_of(weights), passes.flat(weights, biases), np.arange(4)
    W, b = weights[1], biases[1]
    x, z, a, d, work, chunk_targets = xs[0], zs[0, :2], activations[0, :2], deltas[0, :2], scratch[0], ts[0]
    flat, state = np.zeros_like(params), np.zeros(6, dtype)
    return {
        "forward": [(N.weighted_sum, (W, b, x[:2], z)),  # (first: add_products, which hidden_delta calls too)
                    (N.gather_inputs, (X, order, i64(0), i64(4), x)),
                    (N.gather_targets, (y, order, i64(0), i64(4), chunk_targets)),
                    (N.activate, (z, i64(0), a, work))],
        "backward": [(N.output_delta, (z, a, chunk_targets, i64(0), i64(0), i64(4), work, d)),
                     (N.weight_gradient, (d, x[:2], np.zeros_like(W), np.zeros_like(b))),
                     (N.add_into, (flat, params)),
                     (N.mean_and_l2, (W, i64(4), 0.0, np.zeros_like(W), np.zeros_like(b))),
                     (N.flatten, (weights, biases, flat)),
                     (N.update, (i64(0), (t(0.1), t(0.9), t(0.9), t(1e-8), t(0)), t(1), t(1), state, state.copy(),
                                 state.copy(), state.copy(), t(0))),
                     (N.output_cost, (z, a, chunk_targets, i64(0), i64(0), i64(4), work, chunk_totals[0])),
                     (N.hidden_delta, (W, d, z, a, i64(0), deltas[0, 2:4]))],  # (last: add_products is cached by then)
        "chunk": [(N.chunk_pass, (sizes, tiny.acts, i64(tiny.cost_function.code), params, X, y, order, i64(0), i64(4),
                                  *buffers, i64(0), np.bool_(True), np.bool_(True)))]}


def warm_narrow_half(tiny, X, y, half, parallel_evaluation, steps):
    """Compile one part of nbnet.narrow's code (narrow_halves): "forward" or "backward" kernels (the
    helper: then, once the chunk pass is in the disk cache, the training pass), or "chunk": the
    chunk pass and the evaluation pass."""
    parts = narrow_halves(tiny, X, y)
    if half == "chunk":
        for dispatcher, arguments in parts["chunk"]:
            compile_for(dispatcher, *arguments)
        passes.evaluate(tuple(tiny.weights), tuple(tiny.biases), tiny.acts, tiny.cost_function.code, X, y,
                        parallel_evaluation, True)
        return
    for dispatcher, arguments in parts[half]:
        compile_for(dispatcher, *arguments)
    if half == "backward" and wait_until_cached(parts["chunk"], lambda: False):
        optimizer, parallel_training, dropout, running = steps
        same = Optimizer(optimizer)
        same.narrow = True
        same.run(tiny, *tiny_steps(X, y, dropout, running, parallel_training))


def wait_until_cached(calls, given_up, timeout=120.0):
    """Wait until the disk cache holds every (dispatcher, arguments) of `calls` (True), or until
    given_up() or the timeout (False)."""
    end = time.perf_counter() + timeout
    while not all(in_disk_cache(dispatcher, arguments) for dispatcher, arguments in calls):
        if given_up() or time.perf_counter() > end:
            return False
        time.sleep(0.02)
    return True


def prepare_kernels(net, batch_size=None, optimizer=None, dropout=0.0, train_metrics="full", targets="ids",
                    pixel_bytes=False, augment=False, meanwhile=None):
    """Compile (or load from the disk cache) the compiled code that evaluating `net` and, with
    a batch size, training it with `optimizer`, `dropout` and `train_metrics` will call, and
    nothing else; on a cold start with a helper process for the backward half (see above).
    So compiling happens here and not inside the first timed epoch. `meanwhile`: a function
    to run in a thread once this process has compiled its half while the helper still compiles
    (nbnet train imports matplotlib for its plot then, on a core that would otherwise wait).
    Returns (seconds, compiled) where compiled is True when anything had to be compiled."""
    start = time.perf_counter()
    misses = cache_misses()
    helped = compile_run(run_settings(net, batch_size, optimizer, dropout, train_metrics, targets, pixel_bytes,
                                      augment), meanwhile)
    return time.perf_counter() - start, helped or cache_misses() > misses


def compile_run(settings, meanwhile=None):
    """warm_up(**settings), on a cold start of a training run with a helper process for the
    backward half, under the run's compile lock when its driver is not in the disk cache
    (processes that start the same run together compile it once: see cache.compile_lock; a
    process that only loads does not wait for another's compile). True when a helper compiled.
    meanwhile: see prepare_kernels."""
    with compile_lock(settings) if not run_cached(settings) else nullcontext():
        helper = start_helper(settings) if settings["optimizer"] and helper_pays(settings) else None
        try:
            if helper is not None:
                warm_up(**settings, half="forward")
                if meanwhile is not None and helper.poll() is None:
                    in_background(meanwhile)
                if settings.get("narrow_steps"):  # the helper's kernels, then the chunk pass (see narrow_halves)
                    tiny, X, y = tiny_data(settings["layers"], settings["dtype"], settings["targets"])
                    wait_until_cached(narrow_halves(tiny, X, y)["backward"], lambda: helper.poll() is not None)
                    warm_up(**settings, half="chunk")
                helper.wait()
            warm_up(**settings)
        finally:
            if helper is not None and helper.poll() is None:
                helper.kill()
                helper.wait()
    return helper is not None and helper.returncode == 0


def in_background(task):
    """Run task() in a daemon thread; an error there is dropped (whoever needs the task's result
    does the task again, and meets the error then)."""
    def quietly():
        try:
            task()
        except Exception:
            pass

    threading.Thread(target=quietly, daemon=True).start()


def run_settings(net, batch_size=None, optimizer=None, dropout=0.0, train_metrics="full", targets="ids",
                 pixel_bytes=False, augment=False):
    """warm_up's arguments for a run of `net` with these settings (prepare_kernels' parameters)."""
    optimizer = optimizer or Optimizer("sgd")
    train = batch_size is not None
    narrow_steps = train and passes.narrow_steps(net.weights, batch_size, dropout > 0, optimizer.track_gradients,
                                                 optimizer.kernels)
    narrow = narrow_steps if train else net.narrow_passes()  # (a run evaluates with its steps' family)
    return dict(layers=len(net.sizes) - 1, dtype=net.dtype.name, parallel_evaluation=passes.evaluation_parallel(net.weights),
                parallel_training=train and passes.steps_parallel(net.weights, batch_size, narrow_steps),
                optimizer=optimizer.name if train else None, track_gradients=optimizer.track_gradients,
                dropout=dropout > 0, running=train_metrics == "running", kernel_set=optimizer.kernels,
                targets=targets, pixel_bytes=bool(pixel_bytes), augment=bool(augment), narrow=narrow,
                narrow_steps=narrow_steps)


def helper_pays(settings):
    """True when a helper process would compile the backward half of warm_up(**settings): its
    training code is not in the disk cache, two cores are usable, the two processes' cache saves
    are locked (numba_cache.lock_numba_cache_index: not where flock is missing, as on Windows) and
    the helper is not disabled (NBNET_COMPILE_HELPER=0)."""
    return (usable_cores() >= 2 and os.environ.get("NBNET_COMPILE_HELPER") != "0" and not numba.config.DISABLE_JIT
            and cache_saves_locked() and cache_dir_writable(kernel_cache_dir()) and not training_compiled(settings))


def run_cached(settings):
    """True when the disk cache holds the driver warm_up(**settings) ends with (training's, or
    Network.forward's for a run that only evaluates): the rest of a run's code is compiled with it."""
    if settings["optimizer"] is None:
        forward = narrow.forward_rows if settings.get("narrow") else kernels.forward
        return in_disk_cache(passes.variant(forward, settings["parallel_evaluation"]))
    return training_compiled(settings)


def usable_cores():
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def training_compiled(settings):
    """True when the disk cache holds the training driver that warm_up(**settings) calls (with
    --kernels loops: when it holds each plain loop for some types)."""
    if settings["kernel_set"] == "loops":
        from . import loops

        return all(in_disk_cache(loop) for loop in loops.LOOPS)
    tiny, X, y = tiny_data(settings["layers"], settings["dtype"], settings.get("targets", "ids"))
    same = Optimizer(settings["optimizer"], track_gradients=settings["track_gradients"])
    same.narrow = settings.get("narrow_steps", False)
    return in_disk_cache(*same.compiled_call(tiny, *tiny_steps(X, y, settings["dropout"], settings["running"],
                                                                 settings["parallel_training"])))


def in_disk_cache(dispatcher, args=None):
    """True when Numba's disk cache holds `dispatcher` compiled for the types of `args` (for
    any types: None), or when that cannot be told (Numba's cache internals differ from what
    this expects)."""
    try:
        cache = dispatcher._cache
        index = cache._cache_file._load_index()
        if args is None:
            return bool(index)
        return cache._index_key(tuple(numba.typeof(arg) for arg in args), dispatcher.targetctx.codegen()) in index
    except Exception:  # noqa: BLE001 (any failure: assume cached, and compile here as without a helper)
        return True


def start_helper(settings):
    """A process that compiles the backward half of warm_up(**settings) into the disk cache
    (None if it cannot start): a fork of this one where that is safe (forked_helper), else a
    new Python process, importing this same nbnet."""
    forked = forked_helper(settings)
    if forked is not None:
        return forked
    code = ("import json, sys; sys.path.insert(0, sys.argv[2]); from nbnet.warm import warm_up; "
            "warm_up(**json.loads(sys.argv[1]), half='backward')")
    package_parent = str(Path(__file__).resolve().parent.parent)  # (first on its path, whatever its directory holds)
    try:
        return subprocess.Popen([sys.executable, "-c", code, json.dumps(settings), package_parent],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:
        return None


def forked_helper(settings):
    """start_helper's process as a fork of this one, which has imported Numba and nbnet already:
    it starts compiling at once, where a new Python process spends 0.3-0.4 s importing them
    first. Only on Linux (elsewhere forking a process that has loaded system libraries is not
    safe), from a process that runs no other thread: neither Python's nor Numba's workers (a fork
    copies no thread, and would inherit any lock one held; GNU OpenMP, one of Numba's threading
    layers, stops a forked process that uses it). nbnet train starts the workers only after
    this (config.threads_in_use), unless --threads is given. None otherwise."""
    if not sys.platform.startswith("linux") or threading.active_count() > 1 or workers_started():
        return None
    try:
        pid = os.fork()
    except OSError:
        return None
    if pid:
        return ForkedHelper(pid)
    status = 1
    try:  # the child: compile, then leave without running anything of the parent's at exit
        quiet = os.open(os.devnull, os.O_RDWR)
        for descriptor in (0, 1, 2):
            os.dup2(quiet, descriptor)
        warm_up(**settings, half="backward")
        status = 0
    finally:
        os._exit(status)


class ForkedHelper:
    """A forked helper, waited for as the subprocess.Popen of a new process would be."""

    def __init__(self, pid):
        self.pid, self.returncode = pid, None

    def poll(self):
        return self._reap(os.WNOHANG)

    def wait(self):
        return self._reap(0)

    def _reap(self, options):
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, options)
            except ChildProcessError:  # (reaped elsewhere: its status is lost, so counted as failed)
                pid, status = self.pid, 1 << 8
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def kill(self):
        if self.returncode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def cache_misses():
    """How many times nbnet's compiled drivers were compiled in this process (not loaded from the cache)."""
    drivers = (kernels.train_batches, kernels.train_batches_with, kernels.evaluate_tiles, kernels.forward,
               narrow.train_batches, narrow.evaluate, narrow.forward_rows, narrow.gradient_and_cost)
    misses = sum(sum(d.stats.cache_misses.values()) for driver in drivers for d in (driver, driver.serial))
    loops = sys.modules.get("nbnet.loops")  # (imported only by runs that train through the plain loops)
    return misses + (sum(sum(loop.stats.cache_misses.values()) for loop in loops.LOOPS) if loops else 0)
