"""Every Numba option nbnet uses, in one place.

All compiled code in nbnet is decorated with `kernel` (parallel, `prange` loops run on
several threads) or `serial` (same options, one thread). Both share:

* FASTMATH: LLVM fast-math flags *without* `nnan` and `ninf`, so NaN/inf checks and the
  overflow behaviour of `exp` stay correct. `reassoc` lets LLVM vectorise the sums over k
  in weighted_sum (7-10x faster); it may reorder a sum, but every thread runs the same
  compiled loop on the same shapes, so results still do not depend on the thread count.
  The one-thread twins (below) leave `reassoc` out: see `kernel`.
* error_model="numpy": division by zero gives inf/nan like NumPy instead of raising, which
  keeps the hot loops free of Python-exception checks.
* cache=True: compiled machine code is written to disk and reused by later processes.
  Numba puts it in `nbnet/__pycache__` when that is writable, otherwise in the user-wide
  cache directory (`~/.cache/numba`, or `$NUMBA_CACHE_DIR` when set). Numba notices edits
  to kernels.py but not to this file: after changing an option here, delete
  nbnet/__pycache__ (or the cache directory) so every kernel is compiled again.
"""

import os
import tempfile
import types

from numba import njit

FASTMATH = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})
SERIAL_FASTMATH = FASTMATH - {"reassoc"}

JIT_OPTIONS = dict(error_model="numpy", cache=True, nogil=True)

# A kernel call with less work than this (multiply-adds, or elements) runs its one-thread
# twin: starting threads costs about a microsecond per call, more than such work takes
# (the twin of weighted_sum computes its sums one multiply-add at a time, without SIMD).
PARALLEL_MIN_WORK = 10_000
# Samples gathered at once into a contiguous block for the next minibatches (gather_rows).
GATHER_ROWS = 256
# Samples per tile in weighted_sum: a tile of 784-pixel float32 rows is 0.8 MB, within L2.
SAMPLE_TILE = 256


def kernel(fn):
    """Compile `fn` with the shared options; its `prange` loops run in parallel.

    `NAME.serial` is the same body compiled for one thread (built here once, never inside a
    function, which would recompile on every call; under its own name, so the two variants
    do not overwrite each other in the disk cache). The compiled drivers inline the twins,
    and inlined code compiled with `reassoc` was vectorised differently when compiled fresh
    and when loaded from the cache: the first run of a seed gave a slightly different model
    from later runs. So twins are compiled without `reassoc`; parallel loop bodies are
    compiled on their own and are not affected (tests/test_cache.py checks both). A twin of
    weighted_sum is slower (its sums over k only vectorise with `reassoc`), which is why the
    threshold below is low.
    """
    parallel = njit(parallel=True, fastmath=set(FASTMATH), **JIT_OPTIONS)(fn)
    twin = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial", fn.__defaults__, fn.__closure__)
    twin.__qualname__ = fn.__qualname__ + "_serial"
    twin.__doc__ = fn.__doc__
    parallel.serial = njit(parallel=False, fastmath=set(SERIAL_FASTMATH), **JIT_OPTIONS)(twin)
    return parallel


def serial(fn=None, **extra):
    """Compile `fn` for one thread: the drivers that chain kernels, and the element-wise
    helpers the kernels inline."""
    if fn is None:
        return lambda f: serial(f, **extra)
    return njit(parallel=False, fastmath=set(SERIAL_FASTMATH), **JIT_OPTIONS, **extra)(fn)


def cache_dir_writable(directory):
    """True when compiled kernels can be written to `directory` (created if missing)."""
    try:
        os.makedirs(directory, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            return True
    except OSError:
        return False


def kernel_cache_dir():
    """The directory Numba caches nbnet's compiled kernels in, as it chose it."""
    from . import kernels

    return kernels.weighted_sum.stats.cache_path
