"""Where Numba keeps nbnet's compiled kernels, and whether a cache directory can be written."""

import os
import tempfile


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
