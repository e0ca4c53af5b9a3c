"""Measuring nbnet.vecmath against NumPy in higher precision: shared by tests/test_vecmath.py
(a dense sample, in CI) and bench/vecmath.py (every float32, and more float64 samples).

The reference for a float32 function is NumPy's float64 result, for a float64 function NumPy's
long double one (x86's 80-bit format: 11 more bits), so the error measured is the function's,
in units in the last place (ulp) of the exact result rounded to the dtype."""

import numpy as np
from numba import njit

from nbnet import vecmath

FUNCTIONS = ("exp", "log", "log1p", "tanh")
NUMPY = {"exp": np.exp, "log": np.log, "log1p": np.log1p, "tanh": np.tanh}
# The largest error each function may have, in ulp (bench/vecmath.py over every float32 and 1e8
# float64 samples: 1.02, 0.84, 1.44, 1.33; bench/vecmath.txt)
BOUNDS = {"exp": 1.1, "log": 1.0, "log1p": 1.5, "tanh": 1.5}
SPECIAL = (0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 0.625, -0.625, 88.72, 89.0, -87.3, -103.9, -104.0,
           709.78, 709.79, -745.1, -745.2, 1e-30, 1e-45, 5e-324, 2.2e-308, 3.4e38, -3.4e38, 1e308, -1e308)


def applier(fastmath):
    """A compiled loop out[f, i] = FUNCTIONS[f](x[i]) with these fast-math flags (the functions are
    inlined into it, as into the kernels)."""
    @njit(fastmath=set(fastmath), error_model="numpy")
    def apply(x, out):
        for i in range(x.shape[0]):
            out[0, i] = vecmath.exp(x[i])
            out[1, i] = vecmath.log(x[i])
            out[2, i] = vecmath.log1p(x[i])
            out[3, i] = vecmath.tanh(x[i])
    return apply


def reference(name, x):
    """NumPy's function of x in the next wider dtype."""
    wider = np.float64 if x.dtype == np.float32 else np.longdouble
    with np.errstate(all="ignore"):
        return NUMPY[name](x.astype(wider))


def ulp_errors(got, exact, dtype):
    """(largest error in ulp where the exact result is a finite `dtype` number, how many results
    differ where it is not: inf, -inf or NaN must match exactly)."""
    with np.errstate(all="ignore"):
        rounded = exact.astype(dtype)
        finite = np.isfinite(rounded)
        special_right = np.where(np.isnan(rounded), np.isnan(got), got == rounded)
        ulp = np.spacing(np.abs(rounded[finite])).astype(exact.dtype)
        error = np.abs(got[finite].astype(exact.dtype) - exact[finite]) / ulp
    error = np.where(np.isnan(error), np.inf, error)
    return float(error.max(initial=0.0)), int(np.count_nonzero(~special_right[~finite]))


def sample(dtype, n, seed=0):
    """n floats of random bit patterns (every exponent equally), n uniform in [-20, 20], n in
    [0, 3] and n near 0, and the special points."""
    rng = np.random.default_rng(seed)
    bits = np.int32 if dtype == np.float32 else np.int64
    random_bits = rng.integers(np.iinfo(bits).min, np.iinfo(bits).max, n, dtype=bits, endpoint=True).view(dtype)
    parts = [random_bits, rng.uniform(-20, 20, n), rng.uniform(0, 3, n), rng.uniform(-1e-3, 1e-3, n),
             rng.uniform(-750, 712, n), np.array(SPECIAL)]
    with np.errstate(over="ignore"):
        return np.concatenate([np.asarray(part).astype(dtype) for part in parts])


def measure(apply, x):
    """{name: (largest ulp error, wrong special results)} of the four functions on x."""
    out = np.empty((len(FUNCTIONS), x.size), x.dtype)
    apply(x, out)
    return {name: ulp_errors(out[f], reference(name, x), x.dtype) for f, name in enumerate(FUNCTIONS)}
