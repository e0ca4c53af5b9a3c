"""nbnet.quasi_newton, the compiled L-BFGS of narrow networks: the same iterates as SciPy's
L-BFGS-B (which it follows step for step), the same bits whether its iterations run in one call
or one per call, its stopping rules, its loops as plain Python, and a cache that keeps a caller
of parallel code loadable (nbnet.numba_cache.thread_start_passed_on)."""

import os
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest

from nbnet import lbfgs, quasi_newton
from nbnet.network import Network
from nbnet.train import set_threads


def regression(n=120, features=6, seed=7):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, features))
    y = np.tanh(X @ rng.standard_normal(features))[:, None] + 0.1 * rng.standard_normal((n, 1))
    return X, y


def problem(X, y, hidden=8, l2=0.1, seed=3):
    """A FullBatch of a narrow float64 regression network (the path scikit-learn's lbfgs takes)."""
    net = Network([X.shape[1], hidden, 1], activation="relu", output="identity", cost="quadratic", seed=seed,
                  dtype="float64")
    return lbfgs.FullBatch(net, net.as_inputs(X), net.as_labels(y, len(X)), l2=l2)


@pytest.fixture
def one_thread():
    set_threads(1)
    yield
    set_threads(None)


def test_the_iterates_are_scipys_lbfgsb(one_thread):
    """After 1, 5 and 40 iterations: the same point (to rounding: the direction is computed by the
    two-loop recursion, L-BFGS-B's by its compact form), the same J, and the same number of
    evaluations (the line search tries the same steps)."""
    pytest.importorskip("scipy")
    X, y = regression()
    for iterations in (1, 5, 40):
        ours = lbfgs.compiled_minimize(problem(X, y), iterations, 15000, 1e-5, False, None)
        theirs = lbfgs.scipy_minimize(problem(X, y), iterations, 15000, 1e-5, False, None)
        assert problem(X, y).net.family == "narrow"
        assert (ours.nit, ours.nfev, ours.status) == (theirs.nit, theirs.nfev, theirs.status) == (iterations,
                                                                                                ours.nfev, 1)
        np.testing.assert_allclose(ours.x, theirs.x, rtol=0, atol=1e-9 * np.abs(theirs.x).max())
        assert ours.fun == pytest.approx(theirs.fun, rel=1e-12)
    assert ours.message == "STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT"


def test_the_line_search_steps_are_minpacks(one_thread):
    """safeguarded_step against SciPy's own dcstep (scipy.optimize._dcsrch) on random triples of
    trial steps, with and without a bracket."""
    dcsrch = pytest.importorskip("scipy.optimize._dcsrch")
    rng = np.random.default_rng(0)
    for _ in range(300):
        stx, sty, stp = rng.uniform(0, 3, 3)
        fx, fy, fp = rng.standard_normal(3)
        dx, dy, dp = rng.standard_normal(3)
        brackt = bool(rng.integers(2))
        stpmin, stpmax = 0.0, 10.0
        ours = quasi_newton.safeguarded_step(stx, fx, dx, sty, fy, dy, stp, fp, dp, brackt, stpmin, stpmax)
        with np.errstate(all="ignore"):
            theirs = dcsrch.dcstep(stx, fx, dx, sty, fy, dy, stp, fp, dp, brackt, stpmin, stpmax)
        np.testing.assert_allclose(np.array(ours[:7], float), np.array(theirs[:7], float), rtol=1e-12, atol=1e-12,
                                   equal_nan=True)
        assert bool(ours[7]) == bool(theirs[7])


def test_one_iteration_per_call_gives_the_same_bits(one_thread):
    """With a callback (one compiled call per iteration) the fit ends at the same bits as in one
    call; the callback sees each iterate, and raising StopIteration stops the fit there."""
    X, y = regression()
    whole = lbfgs.compiled_minimize(problem(X, y), 30, 15000, 1e-5, False, None)
    seen = []
    stepped = lbfgs.compiled_minimize(problem(X, y), 30, 15000, 1e-5, False, seen.append)
    assert stepped.x.tobytes() == whole.x.tobytes() and stepped.fun == whole.fun and stepped.nfev == whole.nfev
    assert len(seen) == whole.nit == 30 and seen[-1].tobytes() == whole.x.tobytes()
    assert not np.array_equal(seen[0], seen[1])

    def stop_at_five(x):
        if len(seen) == 5:
            raise StopIteration
        seen.append(x)

    seen = []
    stopped = lbfgs.compiled_minimize(problem(X, y), 30, 15000, 1e-5, False, stop_at_five)
    assert stopped.nit == 6 and stopped.status == 2 and "StopIteration" in stopped.message
    assert stopped.x.tobytes() == lbfgs.compiled_minimize(problem(X, y), 6, 15000, 1e-5, False, None).x.tobytes()


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two threads")
def test_the_parallel_variant_on_two_threads_gives_the_same_bits():
    """Three chunks of a classifier's samples shared by two threads (the variant a fit on the
    digits takes) or run on one: the same fit, bit for bit (the chunks' sums are added in order)."""
    rng = np.random.default_rng(1)
    X, labels = rng.standard_normal((600, 6)), rng.integers(0, 3, 600)
    fits = []
    for threads, parallel in ((2, True), (1, False)):
        set_threads(threads)
        try:
            net = Network([6, 8, 3], activation="relu", output="softmax", cost="cross-entropy", seed=0, dtype="float64")
            fit = lbfgs.FullBatch(net, net.as_inputs(X), net.as_labels(labels, len(X)), l2=0.01)
            assert fit.narrow_arguments[8][0].shape[0] == 3  # (three chunks)
            fit.parallel = parallel
            fits.append(lbfgs.compiled_minimize(fit, 15, 15000, 1e-5, False, None))
        finally:
            set_threads(None)
    assert fits[0].x.tobytes() == fits[1].x.tobytes() and fits[0].nfev == fits[1].nfev and fits[0].nit == 15


def test_the_stopping_rules(one_thread, capsys):
    """gtol reached at the start (no iteration), max_fun, max_iter 0, a relative reduction below
    ftol, and the verbose lines; the weights are the final point's."""
    X, y = regression()
    fit = lbfgs.compiled_minimize(problem(X, y), 50, 15000, 1e9, False, None)
    assert (fit.nit, fit.nfev, fit.status, fit.success) == (0, 1, 0, True) and "PGTOL" in fit.message

    fit = lbfgs.compiled_minimize(problem(X, y), 50, 3, 1e-5, False, None)
    assert fit.status == 1 and fit.nfev > 3 and fit.nit < 50 and "EVALUATIONS" in fit.message
    fit = lbfgs.compiled_minimize(problem(X, y), 0, 15000, 1e-5, False, None)  # (one iteration, as in SciPy)
    assert (fit.nit, fit.status) == (1, 1) and "ITERATIONS" in fit.message

    easy = problem(X, y, hidden=2, l2=10.0)
    fit = lbfgs.minimize(easy.net, easy.X, easy.y, l2=10.0, max_iter=500, tol=0.0, verbose=True)
    assert fit.status == 0 and fit.nit < 500 and "REDUCTION" in fit.message
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == fit.nit and lines[-1].startswith(f"Iteration {fit.nit}, loss = ")
    assert np.array_equal(easy.net.flat_parameters(), fit.x)


def test_as_plain_python_the_same_fit():
    """The loops run by the Python interpreter (NUMBA_DISABLE_JIT=1) reach the compiled fit's
    point after 8 iterations (to rounding: the compiled sums run in SIMD lanes)."""
    code = textwrap.dedent("""
        import numpy as np, sys
        sys.path.insert(0, ".")
        from test_quasi_newton import problem, regression
        from nbnet import lbfgs
        X, y = regression(n=40, features=3)
        fit = lbfgs.compiled_minimize(problem(X, y, hidden=3), 8, 15000, 1e-5, False, None)
        np.save(sys.argv[1], np.append(fit.x, [fit.nit, fit.nfev]))
    """)
    results = []
    for disable in ("1", "0"):
        path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"nbnet-qn-{os.getpid()}-{disable}.npy")
        run = subprocess.run([sys.executable, "-c", code, path], cwd=os.path.dirname(__file__), capture_output=True,
                             text=True, env=dict(os.environ, NUMBA_DISABLE_JIT=disable, NUMBA_NUM_THREADS="1"),
                             timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
        results.append(np.load(path))
        os.remove(path)
    plain, compiled = results
    assert plain[-2:].tolist() == compiled[-2:].tolist() == [8, compiled[-1]]
    np.testing.assert_allclose(plain, compiled, rtol=1e-9, atol=1e-12)


CALLER = """
import sys
import nbnet  # (its patches of Numba's cache)
import numpy as np
from numba import njit, prange

@njit(parallel=True, cache=True)
def inner(x):
    out = np.zeros(x.shape[0])
    for i in prange(x.shape[0]):
        out[i] = 2.0 * x[i]
    return out

@njit(cache=True)
def outer(x):
    return inner(x).sum()

x = np.arange(1000.0)
print(inner(x).sum() if sys.argv[1] == "inner" else outer(x))
"""


def test_a_caller_of_parallel_code_compiled_after_it_loads_from_the_cache(tmp_path):
    """One process compiles a parallel function, the next compiles a function that calls it (with
    the parallel one loaded from the cache), the third loads the caller and runs it first: it
    crashed before nbnet passed the threads' start-up on (Numba issue 8578)."""
    (tmp_path / "caller.py").write_text(CALLER)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(tmp_path))
    for which in ("inner", "outer", "outer"):
        run = subprocess.run([sys.executable, str(tmp_path / "caller.py"), which], capture_output=True, text=True,
                             env=env, timeout=300)
        assert run.returncode == 0, (which, run.returncode, run.stderr[-2000:])
        assert float(run.stdout) == 999000.0
