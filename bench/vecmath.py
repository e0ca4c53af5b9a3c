"""nbnet.vecmath's exp, log, log1p and tanh: their largest error over every float32 (all 2^32 bit
patterns) and over float64 samples of every exponent, against NumPy in the next wider dtype,
and their speed in a compiled loop against libm's functions called from the same loop
(what Numba compiles np.exp and np.tanh to) and against NumPy's own SIMD ufuncs.

    python bench/vecmath.py                  # about 5 minutes (the float32 sweep)
    python bench/vecmath.py --float64 1e8    # more float64 samples
    python bench/vecmath.py --quick          # a sample of float32 instead of all of them
"""

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from vecmath_cases import FUNCTIONS, NUMPY, applier, measure, sample, ulp_errors  # noqa: E402


def every_float32(apply, chunk=1 << 24):
    """{name: (largest ulp error, wrong special results)} over all 2^32 float32 bit patterns."""
    worst = {name: (0.0, 0) for name in FUNCTIONS}
    out = np.empty((len(FUNCTIONS), chunk), np.float32)
    for start in range(0, 1 << 32, chunk):
        x = np.arange(start, start + chunk, dtype=np.uint64).astype(np.uint32).view(np.float32)
        apply(x, out)
        for f, name in enumerate(FUNCTIONS):
            with np.errstate(all="ignore"):
                error, wrong = ulp_errors(out[f], NUMPY[name](x.astype(np.float64)), np.float32)
            worst[name] = (max(worst[name][0], error), worst[name][1] + wrong)
    return worst


def speeds(dtype, n=1_000_000, repeats=20):
    """Nanoseconds per element of each function in a compiled loop, of libm's through Numba, and
    of NumPy's ufunc, on n arguments in (0.01, 5)."""
    from numba import njit

    from nbnet import vecmath
    from nbnet.config import KERNEL_FASTMATH

    def loop(fn):
        @njit(fastmath=set(KERNEL_FASTMATH), error_model="numpy")
        def apply(x, out):
            for i in range(x.shape[0]):
                out[i] = fn(x[i])
        return apply

    ours = {"exp": vecmath.exp, "log": vecmath.log, "log1p": vecmath.log1p, "tanh": vecmath.tanh}
    libm = {"exp": np.exp, "log": np.log, "log1p": np.log1p, "tanh": np.tanh}
    x = np.random.default_rng(0).uniform(0.01, 5, n).astype(dtype)
    out = np.empty_like(x)

    def timed(call):
        call()
        start = time.perf_counter()
        for _ in range(repeats):
            call()
        return (time.perf_counter() - start) / repeats / n * 1e9

    return {name: (timed(lambda f=loop(ours[name]): f(x, out)), timed(lambda f=loop(libm[name]): f(x, out)),
                   timed(lambda f=NUMPY[name]: f(x, out=out))) for name in FUNCTIONS}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--float64", type=float, default=2e7, help="float64 samples of each kind (default 2e7)")
    parser.add_argument("--quick", action="store_true", help="2e7 float32 samples instead of all 2^32")
    args = parser.parse_args()
    import numba

    from nbnet.config import KERNEL_FASTMATH

    apply = applier(KERNEL_FASTMATH)
    print(f"nbnet bench/vecmath.py: {platform.machine()}, numba {numba.__version__}, numpy {np.__version__}")
    start = time.perf_counter()
    f32 = measure(apply, sample(np.float32, 20_000_000)) if args.quick else every_float32(apply)
    f32_seconds = time.perf_counter() - start
    f64 = measure(apply, sample(np.float64, int(args.float64)))
    print(f"largest error in ulp (float32: {'a sample' if args.quick else 'all 2^32 values'}, "
          f"{f32_seconds:.0f} s; float64: {5 * int(args.float64):,} samples); 'specials wrong': results "
          f"that should be inf, -inf or NaN and are not, or the reverse")
    print(f"{'function':<9} {'float32 ulp':>11} {'specials wrong':>14}   {'float64 ulp':>11} {'specials wrong':>14}")
    for name in FUNCTIONS:
        print(f"{name:<9} {f32[name][0]:>11.3f} {f32[name][1]:>14d}   {f64[name][0]:>11.3f} {f64[name][1]:>14d}")
    print("\nspeed in a compiled loop, ns per element (1e6 arguments in (0.01, 5)); libm: the same loop calling "
          "np.exp etc., which Numba compiles to a libm call per element; NumPy: its own SIMD ufunc")
    print(f"{'function':<9} {'dtype':<8} {'vecmath':>8} {'libm':>8} {'NumPy':>8} {'libm / vecmath':>15}")
    for dtype in (np.float32, np.float64):
        for name, (mine, theirs, numpy) in speeds(dtype).items():
            print(f"{name:<9} {dtype.__name__:<8} {mine:>8.2f} {theirs:>8.2f} {numpy:>8.2f} {theirs / mine:>14.1f}x")


if __name__ == "__main__":
    main()
