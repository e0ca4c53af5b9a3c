"""Where Numba keeps nbnet's compiled kernels, whether a cache directory can be written, and
the lock that makes processes starting the same run together compile it once. (How nbnet
adjusts Numba's use of the cache: nbnet.numba_cache.)"""

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager

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


@contextmanager
def compile_lock(run):
    """Hold an exclusive lock on compiling `run` (what is compiled, as something JSON can write,
    such as warm.run_settings' dict): the file nbnet-compile-HASH.lock in the kernel cache
    directory, one per run.

    Processes that start the same run together on a cold cache (a sweep's workers, two
    terminals) would otherwise all compile the same kernels at once, each paying the full
    compile time on shared cores. Under this lock they compile one at a time, and the later
    ones load what the first one wrote. Runs that differ (another depth, dtype or optimiser:
    mostly other code) hold other locks and compile at the same time, each on a core of its
    own. (That concurrent saves keep every cache entry is another lock's work:
    numba_cache.lock_numba_cache_index.) Does nothing where flock or the directory is not available."""
    name = f"nbnet-compile-{hashlib.sha256(json.dumps(run, sort_keys=True).encode()).hexdigest()[:12]}.lock"
    try:
        import fcntl
        handle = open(os.path.join(kernel_cache_dir(), name), "a")
    except (ImportError, OSError):
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
