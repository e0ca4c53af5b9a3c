"""Every Numba option nbnet uses, in one place.

All compiled code in nbnet is decorated with `kernel` (parallel, `prange` loops run on
several threads) or `serial` (same options, one thread). Both share:

* FASTMATH: LLVM fast-math flags *without* `nnan` and `ninf`, so NaN/inf checks and the
  overflow behaviour of `exp` stay correct, and *without* `reassoc`: letting LLVM reorder
  sums made the same kernel give different last bits when compiled fresh and when loaded
  from the disk cache (it vectorises differently once a kernel is inlined), so the same seed
  gave a different model on the first run. The kernels get their SIMD speed from blocking
  instead (see kernels.weighted_sum), which needs no reordering; measured, dropping
  `reassoc` cost nothing (bench/epoch.py).
* error_model="numpy": division by zero gives inf/nan like NumPy instead of raising, which
  keeps the hot loops free of Python-exception checks.
* cache=True: compiled machine code is written to disk and reused by later processes.
  Numba puts it in `nbnet/__pycache__` when that is writable, otherwise in the user-wide
  cache directory (`~/.cache/numba`, or `$NUMBA_CACHE_DIR` when set).
"""

import types

from numba import njit

FASTMATH = frozenset({"nsz", "arcp", "contract", "afn"})

JIT_OPTIONS = dict(fastmath=set(FASTMATH), error_model="numpy", cache=True, nogil=True)


# A kernel call runs on several threads only when it has at least this many multiply-adds;
# below that, starting the threads costs more than it saves (batch size 1 on 784-100-10).
PARALLEL_MIN_MACS = 100_000
# Samples per tile in weighted_sum: a tile of 784-pixel float32 rows is 0.8 MB, within L2.
SAMPLE_TILE = 256


def kernel(fn):
    """Compile `fn` with the shared options; its `prange` loops run in parallel.

    `kernel_name.serial` is the same body compiled for one thread, built here once (never
    inside a function, which would recompile on every call). It gets its own name so that the
    two variants do not overwrite each other in the disk cache.
    """
    parallel = njit(parallel=True, **JIT_OPTIONS)(fn)
    twin = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial", fn.__defaults__, fn.__closure__)
    twin.__qualname__ = fn.__qualname__ + "_serial"
    twin.__doc__ = fn.__doc__
    parallel.serial = njit(parallel=False, **JIT_OPTIONS)(twin)
    return parallel


def serial(fn=None, **extra):
    """Compile `fn` with the shared options for one thread (`prange` acts as `range`)."""
    if fn is None:
        return lambda f: njit(parallel=False, **JIT_OPTIONS, **extra)(f)
    return njit(parallel=False, **JIT_OPTIONS, **extra)(fn)
