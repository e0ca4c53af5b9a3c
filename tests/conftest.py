"""Test-session setup: one kernel cache for both pytest-xdist workers.

The tests run in two worker processes (`-n 2` in pyproject.toml) that share one kernel cache
(and so compile each kernel once, not once per worker): Numba's cache-index update, a
read-modify-write, runs under a file lock in every process that imports nbnet
(nbnet.numba_cache.lock_numba_cache_index), so concurrent saves neither lose nor mis-pair an
entry. This runs before any test imports Numba.
"""

import os
import tempfile

if os.environ.get("PYTEST_XDIST_WORKER") and not os.environ.get("NUMBA_CACHE_DIR"):
    os.environ["NUMBA_CACHE_DIR"] = os.path.join(tempfile.gettempdir(), f"nbnet-numba-cache-{os.getppid()}")

# No compile helper process (nbnet/warm.py) for runs in tests: the suite's two workers already keep
# both cores busy, so a helper there only adds a process start (~2 s of CPU each, about 35 s in
# all) to work this process would do anyway. tests/test_compile.py turns it back on for the runs
# that check it.
os.environ.setdefault("NBNET_COMPILE_HELPER", "0")

# The tests that compile in child processes with caches of their own (tens of seconds each):
# run first, so that the other worker takes the many short tests and neither is left with a
# long one at the end. (Not tests that compile into the shared cache: run first, they would
# compile what the other worker is compiling at the same time.)
LONG = ("test_compile.py::", "test_chaos.py::")


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: not any(name in item.nodeid for name in LONG))
