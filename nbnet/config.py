"""Every Numba option nbnet uses, in one place.

All compiled code in nbnet is decorated with `kernel` (parallel, `prange` loops run on
several threads) or `serial` (same options, one thread). Both share:

* FASTMATH: LLVM fast-math flags *without* `nnan` and `ninf`, so NaN/inf checks and the
  overflow behaviour of `exp` stay correct. `reassoc` lets LLVM vectorise the inner-product
  sums (it may reorder a sum inside one loop; every thread runs the same code on the same
  shapes, so results still do not depend on the thread count).
* error_model="numpy": division by zero gives inf/nan like NumPy instead of raising, which
  keeps the hot loops free of Python-exception checks.
* cache=True: compiled machine code is written to disk and reused by later processes.
  Numba puts it in `nbnet/__pycache__` when that is writable, otherwise in the user-wide
  cache directory (`~/.cache/numba`, or `$NUMBA_CACHE_DIR` when set).
"""

from numba import njit

FASTMATH = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})

JIT_OPTIONS = dict(fastmath=set(FASTMATH), error_model="numpy", cache=True, nogil=True)


def kernel(fn):
    """Compile `fn` with the shared options; its `prange` loops run in parallel."""
    return njit(parallel=True, **JIT_OPTIONS)(fn)


def serial(fn=None, **extra):
    """Compile `fn` with the shared options for one thread (`prange` acts as `range`)."""
    if fn is None:
        return lambda f: njit(parallel=False, **JIT_OPTIONS, **extra)(f)
    return njit(parallel=False, **JIT_OPTIONS, **extra)(fn)
