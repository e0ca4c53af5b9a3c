"""Test-session setup: one kernel cache per pytest-xdist worker.

The tests run in two worker processes (`-n 2` in pyproject.toml). Numba's cache index is
updated by read-modify-write, so two processes that compile different signatures of one
kernel into the same directory at the same moment could lose an entry or pair it with the
wrong code file; each worker (and the child processes its tests start) therefore compiles
into its own subdirectory of NUMBA_CACHE_DIR. This runs before any test imports Numba.
"""

import os
import tempfile

worker = os.environ.get("PYTEST_XDIST_WORKER")
if worker:
    base = os.environ.get("NUMBA_CACHE_DIR") or tempfile.mkdtemp(prefix="nbnet-numba-cache-")
    os.environ["NUMBA_CACHE_DIR"] = os.path.join(base, worker)
