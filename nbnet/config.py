"""Every Numba option nbnet uses, in one place.

All compiled code in nbnet is built by `parallel` (`prange` loops run on several threads),
`serial` (one thread), `loop_nest` (the long sums, with every fast-math flag), `helper`
(nbnet.vecmath's functions) or `inlined` (only ever inlined into its callers: the kernels'
one-thread variants and their choosers); loop nests, helpers, the kernels' bodies and the passes
that only drivers call (`inner_driver`) have no entry for Python (`compiled_only`), and the
parallel kernels get theirs when Python first calls them (`entry_on_demand`);
kernels.kernel builds each kernel's variants with these. All share:

* FASTMATH: LLVM fast-math flags *without* `nnan` and `ninf`, so NaN/inf checks and the
  overflow behaviour of `exp` stay correct. `reassoc` lets LLVM vectorise the sums over k
  in weighted_sum (7-10x faster); it may reorder a sum, but every thread runs the same
  compiled loop on the same shapes, so results still do not depend on the thread count.
  Only the `loop_nest` functions get `reassoc` and `contract` (a * b + c in one rounding):
  see `loop_nest` and kernels.kernel.
* error_model="numpy": division by zero gives inf/nan like NumPy instead of raising, which
  keeps the hot loops free of Python-exception checks.
* cache=True (except `inlined`, which has no machine code of its own): compiled machine
  code is written to disk and reused by later processes. Numba puts it in `nbnet/__pycache__`
  when that is writable, otherwise in the user-wide cache directory (`~/.cache/numba`, or
  `$NUMBA_CACHE_DIR` when set). nbnet.numba_cache adjusts how Numba uses it (patch_numba_cache):
  an edit to any file of compiled code, this one included, makes every kernel compile again;
  concurrent saves are locked; loading does not wait for Numba's compiler to set up.
* no_cfunc_wrapper: no C-callable entry point besides the function itself and its entry for
  Python (Numba's `cfunc` wrapper, for first-class function values, which nbnet never makes):
  a tenth of each function's code for LLVM to optimise and emit, for nothing.
* 512-bit vectors on CPUs with AVX-512 (`wide_vectors`).
"""

import inspect
import types

from numba import njit
from numba.core import codegen
from numba.core import config as numba_config
from numba.core.registry import CPUDispatcher

from .numba_cache import DRIVERS, THIN_PARALLEL, patch_numba_cache
from .numba_inline import share_callee_scope


def wide_vectors():
    """Let LLVM use 512-bit vectors (16 float32 lanes) where the CPU has AVX-512.

    LLVM's tuning for Intel's AVX-512 chips prefers 256-bit vectors (its `prefer-256-bit`
    feature: on the first such chips 512-bit instructions lowered the clock). nbnet's kernels
    are long runs of multiply-adds over contiguous rows, where twice the lanes per instruction
    win (docs/performance.md, "Vector width and register blocks"). Numba reads the CPU
    features once, when it sets up its compiler, so this runs when nbnet is imported, before
    anything is compiled; the features are part of the disk cache's key, so code compiled
    with other features is never loaded. A choice of your own (NUMBA_CPU_NAME or
    NUMBA_CPU_FEATURES) is kept, and so are the defaults if Numba compiled something before
    nbnet was imported."""
    if numba_config.CPU_NAME is not None or numba_config.CPU_FEATURES is not None:
        return
    features = codegen.get_host_cpu_features()
    if "+avx512f" in features.split(","):
        numba_config.CPU_FEATURES = features + ",-prefer-256-bit"


wide_vectors()

FASTMATH = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})
KERNEL_FASTMATH = FASTMATH - {"reassoc", "contract"}  # the flags outside the loop nests: see kernels.kernel
# nbnet.pixels: without `arcp`, which would turn pixel / 255 into pixel * (1/255), a last bit
# away from the inputs NumPy's division makes (pixel bytes and float inputs train the same).
PIXEL_FASTMATH = FASTMATH - {"arcp"}

JIT_OPTIONS = dict(error_model="numpy", cache=True, nogil=True, no_cfunc_wrapper=True)

# A kernel call with less work than this runs its one-thread twin: starting the threads of a
# parallel kernel costs about 2 us a call on two cores, more than such work takes. Work is
# counted in elements for the element-wise kernels (an exp, a cost or a row copy each) and in
# multiply-adds for the products (weighted_sum, hidden_delta, the gradient and the step), which
# do 16 in one SIMD instruction: their threshold is ten times higher. (At 10,000 multiply-adds
# the products of a 10-output layer at batch 10 ran on two threads; on one, an MNIST epoch at
# batch 10 takes 6-22 % less time: docs/performance.md, "Thread starts for the small products".)
PARALLEL_MIN_WORK = 10_000
PARALLEL_MIN_PRODUCTS = 100_000
# A training run whose minibatch step has less work than this (samples x weights) runs every
# kernel on one thread (the drivers' `.serial` variants), and so never compiles the parallel
# kernels: the bundled digits (64-30-10, batch 10: 22,300) take this path. A network with
# fewer weights than this is also evaluated on one thread.
PARALLEL_RUN_WORK = 50_000
# Samples gathered at once into a contiguous block for the next minibatches (gather_rows).
GATHER_ROWS = 256
# Samples per tile in weighted_sum: a tile of 784-pixel float32 rows is 0.8 MB, within L2.
SAMPLE_TILE = 256
# For a minibatch of at most ROW_PARTS_MAX_SAMPLES samples, hidden_delta splits its sum over the
# rows j of a W^(m+1) of ROW_PARTS_MIN_ROWS rows or more into ROW_PARTS parts of consecutive rows,
# so that threads own rows of W^(m+1) as they do in weighted_sum and gradient_step
# (kernels.hidden_delta). A constant, not the thread count: the same sums for any thread count.
ROW_PARTS = 4
ROW_PARTS_MIN_ROWS = 64
ROW_PARTS_MAX_SAMPLES = 64
# Samples per tile when evaluating a whole data set (kernels.evaluate_tiles).
EVALUATION_TILE = 1024

# A network whose layers have at most NARROW_MAX_INPUTS inputs each and NARROW_MAX_WEIGHTS weights
# in all runs nbnet.narrow's passes (the samples in SIMD lanes), a wider one nbnet.kernels' (the
# inputs of a neuron in SIMD lanes); training does so from NARROW_MIN_BATCH samples a minibatch
# (half that for layers of at most NARROW_MIN_BATCH // 2 inputs): nbnet.passes.narrow_pays.
NARROW_MAX_INPUTS = 128
NARROW_MAX_WEIGHTS = 20_000
NARROW_MIN_BATCH = 64
# nbnet.narrow: a chunk of samples is a whole number of LANE_PAD bytes wide (32 float32 or 16
# float64 samples: whole SIMD registers, so that no vector loop has a scalar remainder) and at
# most NARROW_ROW_BYTES (512 float32 or 256 float64 samples: each row still a few cache lines);
# at most NARROW_CHUNK_BUFFERS chunks are in memory at once. A pass of NARROW_PARALLEL_WORK
# multiply-adds (forward) or more is cut into at least two chunks, which the threads share.
LANE_PAD = 128
NARROW_ROW_BYTES = 2048
NARROW_CHUNK_BUFFERS = 64
NARROW_PARALLEL_WORK = 250_000


def distinct_arrays_option():
    """Let njit take noalias=True, which Numba's options leave out (its parallel loops set it on
    their bodies themselves): every array argument is then declared to LLVM as not overlapping
    any other, so a loop that writes one array and reads another is vectorised without run-time
    overlap checks (gather_rows' copy ran 4x slower without it). nbnet gives each kernel
    distinct arrays to write."""
    from numba.core.cpu import CPUTargetOptions
    from numba.core.options import TargetOptions

    if not hasattr(CPUTargetOptions, "noalias"):
        CPUTargetOptions.noalias = TargetOptions.Mapping("noalias")


distinct_arrays_option()


def thread_count():
    """numba.get_num_threads() as compiled code reads it: Numba's own intrinsic, which its
    parallel loops call (numba.get_num_threads itself, compiled, cannot be cached); the thread
    count in Python with NUMBA_DISABLE_JIT=1, or where that intrinsic is missing."""
    try:
        from numba.np.ufunc.parallel import _iget_num_threads
    except ImportError:
        _iget_num_threads = None
    if numba_config.DISABLE_JIT or _iget_num_threads is None:
        import numba

        return numba.get_num_threads
    return _iget_num_threads


def workers_started():
    """Whether Numba's worker threads have started in this process (True when that cannot be told)."""
    try:
        from numba.np.ufunc import parallel
    except ImportError:
        return True
    return getattr(parallel, "_is_initialized", True) is not False


def threads_in_use():
    """numba.get_num_threads(), without starting Numba's worker threads if nothing has started
    them yet (they then start NUMBA_NUM_THREADS of them): a process whose workers have not started
    may fork its compile helper (nbnet.warm.forked_helper)."""
    if not workers_started():
        return numba_config.NUMBA_NUM_THREADS
    import numba

    return numba.get_num_threads()


def loop_nest(fn):
    """Compile `fn`, the loop nest that computes a range of a kernel's outputs (rows of W, or
    samples), with every fast-math flag (with `reassoc`, LLVM turns its sums over k into SIMD
    lanes), as:

      NAME          compiled on its own and called by the one-thread drivers (through the
                    kernels' .serial variants);
      NAME.inlined  the same, marked for LLVM to inline into each kernel body that calls it
                    (NAME.rows: see kernels.kernel), once it is compiled and optimised on its
                    own: kernels.gradient_step_then_weighted_sum then steps and sums each block
                    of 4 rows while it is in L1, with no call between (a call per block, or
                    the two loops over all the rows, made its step 10-15 % slower at batch
                    size 1). Inlined into the drivers too, the nests made the digits' cold
                    start compile 1.1 s longer.

    A run compiles one of the two (its drivers are one-thread or parallel: nbnet.passes). Both
    compute every element in the same order (tests/test_kernels.py checks all variants bit for
    bit), so results do not depend on which ran, nor on the thread count. Only compiled code
    calls them (`compiled_only`).
    """
    options = dict(JIT_OPTIONS, parallel=False, fastmath=set(FASTMATH), noalias=True)
    nest = compiled_only(njit(**options)(fn))
    nest.inlined = compiled_only(njit(forceinline=True, **options)(renamed(fn, "_inlined", **inlined_nests(fn))))
    return nest


def inlined_nests(fn):
    """{name: NAME.inlined} for every loop nest the Python function `fn` calls."""
    return {name: fn.__globals__[name].inlined for name in fn.__code__.co_names
            if hasattr(fn.__globals__.get(name), "inlined")}


def serial(fn=None, fastmath=KERNEL_FASTMATH, **extra):
    """Compile `fn` for one thread: the drivers that chain kernels, and the element-wise
    helpers the kernels inline."""
    if fn is None:
        return lambda f: serial(f, fastmath, **extra)
    return njit(parallel=False, fastmath=set(fastmath), **dict(JIT_OPTIONS, **extra))(fn)


class CompiledOnly(CPUDispatcher):
    """A compiled function without an entry for Python: called from Python, it raises TypeError
    (where Numba would jump to the entry it does not have). See `compiled_only`."""

    def __call__(self, *args, **kwargs):
        name = f"{self.py_func.__module__}.{self.py_func.__qualname__}"
        raise TypeError(f"{name} is compiled only for other compiled functions to call (it has no entry for "
                        f"Python): call the kernel that uses it, or compile it with {name}.compile(signature)")


def compiled_only(dispatcher):
    """Compile `dispatcher` (not compiled yet) without an entry for Python, callable only from
    compiled code: the loop nests (`loop_nest`), nbnet.vecmath's functions (`helper`), the
    kernels' bodies and the inner passes (`inner_driver`). Numba gives every compiled function an
    entry for Python (its `cpython` wrapper, which unboxes each argument: for the loop nests and
    vecmath 1,700 of the 21,000 lines of LLVM IR of the digits' run, and 0.25 s of its 5.5 s of
    compiling); only compiled code calls these."""
    return without_entry(dispatcher, CompiledOnly)


def without_entry(dispatcher, kind):
    """`dispatcher` (not compiled yet) compiled with no_cpython_wrapper, as a dispatcher of class
    `kind` (CompiledOnly or EntryOnDemand), whose __call__ stands in for the missing entry: the
    option and the class always go together. (Unchanged under NUMBA_DISABLE_JIT, where `njit`
    returns the Python function.)"""
    if isinstance(dispatcher, CPUDispatcher):
        dispatcher.targetoptions["no_cpython_wrapper"] = True  # (read when it compiles)
        dispatcher.__class__ = kind
    return dispatcher


def helper(fn):
    """Compile `fn` as `serial` does, callable only from compiled code (`compiled_only`): an
    element-wise function of nbnet.vecmath, called by the kernels."""
    return compiled_only(serial(fn))


def driver(fn=None, **extra):
    """Compile `fn` as `serial` does, for a driver: a function whose own code only chains
    compiled kernels and passes (loops over layers, minibatches, chunks or epochs; no arithmetic
    of its own worth vectorising). Its one-thread copy (NAME_serial) is one too. Numba does not
    optimise a driver's module again with the code of everything it calls
    (numba_cache.drivers_optimised_once), which halves its compile time."""
    if fn is None:
        return lambda f: driver(f, **extra)
    mark_driver(fn)
    return serial(fn, **extra)


def inner_driver(fn):
    """A `driver` that only other drivers call (a pass of a training step), callable only from
    compiled code (`compiled_only`): nbnet.warm compiles it with `.compile(signature)`."""
    return compiled_only(driver(fn))


def on_demand(fn=None, **extra):
    """Compile `fn` as `serial` does (with `extra` options), its entry for Python compiled when
    Python first calls it (`entry_on_demand`): the small kernels of nbnet.narrow and the helpers
    of nbnet.epochs, which drivers call in a run and the tests call from Python."""
    if fn is None:
        return lambda f: on_demand(f, **extra)
    return entry_on_demand(serial(fn, **extra))


def on_demand_driver(fn):
    """A `driver` that compiled drivers call in a run and Python calls elsewhere (kernels.add_costs:
    nbnet.lbfgs and nbnet.loops), with its entry for Python compiled on demand (`entry_on_demand`)."""
    return entry_on_demand(driver(fn))


class EntryOnDemand(CPUDispatcher):
    """A compiled function whose entry for Python is compiled when Python first calls it: a
    driver of its own that calls it (`python_entry`). See `entry_on_demand`."""

    def __call__(self, *args, **kwargs):
        entry = self.__dict__.get("python_entry")
        if entry is None:
            entry = self.python_entry = python_entry(self)
        return entry(*args, **kwargs)


def entry_on_demand(dispatcher):
    """Compile `dispatcher` (not compiled yet) without an entry for Python, for a function that
    compiled code calls in a run and Python calls elsewhere: the parallel kernels (tests and bench/ call them, the
    drivers do in a run), kernels.add_costs and the `on_demand` functions. Its entry for Python
    is compiled only for a call from Python, as a driver that calls it (a few lines of LLVM IR:
    drivers call nbnet.kernels' machine code as loaded, numba_cache.drivers_call_loaded_code),
    not with each function (for the parallel kernels, 2,500 of the 35,000 lines of LLVM IR an
    MNIST run compiles; for nbnet.narrow's and nbnet.epochs', 5,000 of an iris fit's 118,000)."""
    return without_entry(dispatcher, EntryOnDemand)


def python_entry(dispatcher):
    """NAME_from_python(ARGS): return NAME(ARGS), for the parameters ARGS of `dispatcher`'s
    Python function, compiled as a driver and cached as if written in NAME's file (as
    kernels.written_out does)."""
    fn = dispatcher.py_func
    args = ", ".join(inspect.signature(fn).parameters)
    name = fn.__name__ + "_from_python"
    scope = {"NAME": dispatcher, "__name__": fn.__module__}
    exec(compile(f"def {name}({args}):\n    return NAME({args})\n", fn.__code__.co_filename, "exec"), scope)
    entry = scope[name]
    entry.__qualname__ = fn.__qualname__ + "_from_python"
    return driver(entry)


def same_entries(original, copy):
    """`copy` (a dispatcher not compiled yet: `original`'s one-thread twin) with the entries of
    `original`: none for Python when it has none (`compiled_only`, `entry_on_demand`)."""
    if isinstance(original, (CompiledOnly, EntryOnDemand)):
        return without_entry(copy, type(original))
    return copy


def mark_driver(fn):
    """Count the function `fn` (and its copy NAME_serial, see `renamed`) among the drivers."""
    python_function = getattr(fn, "py_func", fn)
    DRIVERS.update((python_function.__qualname__, python_function.__qualname__ + "_serial"))
    DRIVER_CODE.add(python_function.__code__)
    return fn


def thin_parallel(fn):
    """Count `fn` among the drivers, and the code Numba generates for its `prange` loop with it
    (numba_cache.THIN_PARALLEL): a parallel kernel whose loop only calls the kernel's body."""
    THIN_PARALLEL.add(getattr(fn, "py_func", fn).__qualname__)
    return mark_driver(fn)


DRIVER_CODE = set()  # the code of every driver (a renamed copy shares its original's: tests/test_compile.py)


def inlined(fn):
    """Compile `fn` only to be inlined: Numba copies its code into each compiled function that
    calls it, so it is never compiled, nor cached, on its own."""
    return serial(fn, inline="always", cache=False)


def renamed(fn, suffix, **replaced_globals):
    """A copy of the Python function `fn` named NAME + suffix (so its compiled code has its own
    place in the disk cache), whose global names `replaced_globals` resolve to other objects."""
    scope = dict(fn.__globals__, **replaced_globals) if replaced_globals else fn.__globals__
    copy = types.FunctionType(fn.__code__, scope, fn.__name__ + suffix, fn.__defaults__, fn.__closure__)
    copy.__qualname__, copy.__doc__ = fn.__qualname__ + suffix, fn.__doc__
    return copy


def parallel(fn, fastmath=KERNEL_FASTMATH):
    """Compile `fn` with its `prange` loops run on several threads."""
    return njit(parallel=True, fastmath=set(fastmath), **JIT_OPTIONS)(fn)


patch_numba_cache()  # before anything is compiled (nbnet.numba_cache)
share_callee_scope()  # (nbnet.numba_inline: Numba's inliner, faster)
