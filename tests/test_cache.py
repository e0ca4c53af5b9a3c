"""The on-disk kernel cache moved aside when the package is read-only; the compile lock held
only by runs that compile; a function compiled by one process at a time. (Fresh against cached
kernels: tests/test_compile.py, which compiles them in a cache of its own.)"""

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path


import nbnet

PACKAGE = Path(nbnet.__file__).parent


def run_python(code, env, cwd, *args):
    result = subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=cwd, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_read_only_package_caches_in_user_cache_dir(tmp_path):
    """Numba cannot write next to a read-only package; kernels must still compile, run and be
    cached in the user cache directory (~/.cache/numba via XDG_CACHE_HOME)."""
    copy = tmp_path / "site" / "nbnet"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    # root ignores permission bits, so also make `__pycache__` impossible to create
    (copy / "__pycache__").write_text("blocks the in-tree cache")
    for path in [copy, *copy.rglob("*")]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    cache_home = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update(PYTHONPATH=str(tmp_path / "site"), XDG_CACHE_HOME=str(cache_home))
    # (one small kernel, not a whole prediction: any nbnet function is cached the same way, and
    # this compiles in 1 s instead of 6-9)
    code = ("import numpy as np, nbnet; from nbnet import kernels as K; print(nbnet.__file__);"
            "z = np.zeros((2, 3), np.float32); a = z.copy(); K.activate.one_thread(z, K.SIGMOID, a);"
            "print(a.tolist())")
    try:
        output = run_python(code, env, tmp_path)
        assert str(copy) in output and "[[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]]" in output
        cached = list((cache_home / "numba").rglob("kernels.activate_rows*.nbi"))
        assert cached, "no kernel index in the user cache directory"
        assert list(cache_home.rglob("*.nbc"))
    finally:
        for path in [copy, *copy.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


def test_a_run_whose_code_is_cached_does_not_wait_for_another_compile():
    """Another process holding the compile lock (compiling its own kernels) does not hold up a
    run that only loads: with the lock held here, prepare_kernels of a cached run returns."""
    import threading

    from nbnet import Network
    from nbnet.cache import compile_lock
    from nbnet.warm import prepare_kernels, run_settings

    net = Network([64, 12, 10], seed=0)
    prepare_kernels(net, 10)  # (compiled or loaded: now in the disk cache)
    done = []
    with compile_lock(run_settings(net, 10)):  # (its own run's lock: a second open of the lock file, on
        # which flock makes even this process wait)
        loader = threading.Thread(target=lambda: done.append(prepare_kernels(net, 10)), daemon=True)
        loader.start()
        loader.join(timeout=120)
    assert done and done[0][1] is False  # returned, having compiled nothing


def test_the_same_run_compiles_once_and_other_runs_do_not_wait():
    """compile_lock is one lock per run: a process starting the run another is compiling waits
    for it (then loads); a process compiling another run goes ahead on its own core."""
    import threading

    from nbnet.cache import compile_lock

    def acquire(run, got):
        with compile_lock(run):
            got.append(run)

    got = []
    with compile_lock("run A"):
        same, other = (threading.Thread(target=acquire, args=(run, got), daemon=True) for run in ("run A", "run B"))
        same.start()
        other.start()
        other.join(timeout=60)
        same.join(timeout=0.5)
        assert got == ["run B"] and same.is_alive()
    same.join(timeout=60)
    assert got == ["run B", "run A"]


ACTIVATE_ROWS = """
import numpy as np
from nbnet import kernels as K
z = np.zeros((2, 3), np.float32)
K.activate.one_thread(z, K.SIGMOID, z.copy())  # (through K.activate.rows, which has no entry for Python)
stats = K.activate.rows.stats
print(sum(stats.cache_misses.values()), sum(stats.cache_hits.values()))
"""


def test_a_function_that_another_process_holds_is_waited_for_then_loaded(tmp_path):
    """numba_cache.compile_once_across_processes: while another process holds a function's
    compile lock (compiling it), a process that needs the function waits, then loads what the
    other saved instead of compiling it too."""
    import fcntl
    import time

    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    assert run_python(ACTIVATE_ROWS, env, tmp_path).split() == ["1", "0"]  # compiled and saved
    [lock] = tmp_path.rglob("*activate_rows*.compile-lock")
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        waiting = subprocess.Popen([sys.executable, "-c", ACTIVATE_ROWS], env=env, cwd=tmp_path,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(3)
        assert waiting.poll() is None  # (a load alone takes well under a second after start-up)
    out, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, err
    assert out.split() == ["0", "1"]  # loaded, not compiled


def test_the_garbage_collector_waits_while_nbnet_compiles():
    """numba_cache.collect_garbage_after_compiling: off during a compile of nbnet's, on after."""
    import gc

    import numba
    import numpy as np
    from numba.core import event

    from nbnet import kernels as K

    seen = []

    class Watch(event.Listener):
        def on_start(self, ev):
            seen.append(gc.isenabled())

        def on_end(self, ev):
            pass

    W = np.zeros((8, 6), dtype=np.float64)[:, ::2]  # (non-contiguous: a signature nothing else compiles)
    watch = Watch()
    event.register("numba:compile", watch)
    try:
        K.sum_rows.compile(tuple(numba.typeof(x) for x in (W, np.zeros(8), np.zeros((2, 3)), np.zeros((2, 8)), 0, 8,
                                                            0, 2)))
    finally:
        event.unregister("numba:compile", watch)
    assert seen and not any(seen) and gc.isenabled()



FIRST_FIT = """
import sys
import numpy as np
from numba.core import caching
loaded, load = [], caching.Cache._load_overload
caching.Cache._load_overload = lambda self, *args: loaded.append(self._name) or load(self, *args)
from nbnet.sklearn import MLPClassifier
X, y = np.random.default_rng(0).normal(size=(150, 4)), np.arange(150) % 3
MLPClassifier(random_state=0, max_iter=5).fit(X, y)
print(len(loaded))
"""


def test_a_small_fit_loads_its_drivers_not_each_kernel(tmp_path):
    """A script's first fit of a small table with the cache warm (bench/small.py's section 4): the
    drivers of nbnet.narrow hold copies of its small kernels (numba_cache.CALLED_MODULES), so a
    fresh process loads a couple of functions from the cache, not every kernel one by one (26,
    when they called the kernels as loaded: 25 ms more)."""
    run_python(FIRST_FIT, dict(os.environ), tmp_path)  # (the cache holds the fit's code after this)
    loaded = int(run_python(FIRST_FIT, dict(os.environ), tmp_path))
    assert 1 <= loaded <= 4, loaded
