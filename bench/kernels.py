"""Each kernel against its NumPy twin, timed alone, so a regression shows where it happens.

    python bench/kernels.py                      # 784-100-10 layer 1 shapes, batch 1, 10, 128
    python bench/kernels.py --n-in 784 --n-out 800 --batch 10 --batch 128

Times are medians of many calls in microseconds; compile time is excluded (one warm-up call).
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numba  # noqa: E402

from nbnet import kernels as K  # noqa: E402
from nbnet import reference as R  # noqa: E402
from nbnet.passes import hidden_delta_in_phases  # noqa: E402
from nbnet.train import set_threads  # noqa: E402


def median_us(call, repeats):
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1e6 * float(np.median(times))


def cases(n_samples, n_in, n_out, rng):
    f32 = np.float32
    W = (rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)).astype(f32)
    b = rng.standard_normal(n_out).astype(f32)
    a_prev = rng.random((n_samples, n_in)).astype(f32)
    z = np.empty((n_samples, n_out), f32)
    a = np.empty_like(z)
    delta = rng.standard_normal((n_samples, n_out)).astype(f32)
    z_below = rng.standard_normal((n_samples, n_in)).astype(f32)
    a_below = R.activate(z_below, K.SIGMOID)
    delta_below = np.empty_like(z_below)
    grad_W, grad_b = np.empty_like(W), np.empty_like(b)
    y = rng.integers(0, n_out, n_samples)
    return [
        ("weighted_sum", lambda: K.weighted_sum(W, b, a_prev, z), lambda: R.weighted_sum(W, b, a_prev)),
        ("activate sigmoid", lambda: K.activate(z, K.SIGMOID, a), lambda: R.activate(z, K.SIGMOID)),
        ("activate softmax", lambda: K.activate(z, K.SOFTMAX, a), lambda: R.activate(z, K.SOFTMAX)),
        ("output_delta", lambda: K.output_delta(z, a, y, K.SOFTMAX, K.CROSS_ENTROPY, delta),
         lambda: R.output_delta(z, a, y, K.SOFTMAX, K.CROSS_ENTROPY)),
        ("hidden_delta", lambda: hidden_delta_in_phases(W, delta, z_below, a_below, K.SIGMOID, delta_below),
         lambda: R.hidden_delta(W, delta, z_below, a_below, K.SIGMOID)),
        ("weight_gradient", lambda: K.weight_gradient(delta, a_prev, W, 0.0, grad_W, grad_b),
         lambda: R.weight_gradient(delta, a_prev, W, 0.0)),
        ("gradient_step", lambda: K.gradient_step(delta, a_prev, 1e-6, 0.0, W, b),
         lambda: R.gradient_step(delta, a_prev, 1e-6, 0.0, W, b)),
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-in", type=int, default=784)
    parser.add_argument("--n-out", type=int, default=100)
    parser.add_argument("--batch", type=int, action="append", help="repeatable (default 1, 10, 128)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    threads = set_threads(args.threads)
    print(f"kernels vs NumPy twins, float32, layer {args.n_in} -> {args.n_out}, {threads} threads, "
          f"numba {numba.__version__}; median microseconds per call (Python call overhead included)")
    print(f"{'kernel':<18} {'batch':>5} {'nbnet us':>9} {'numpy us':>9} {'speed-up':>8}")
    rng = np.random.default_rng(0)
    for batch in args.batch or [1, 10, 128]:
        for name, kernel_call, numpy_call in cases(batch, args.n_in, args.n_out, rng):
            nb, npy = median_us(kernel_call, args.repeats), median_us(numpy_call, args.repeats)
            print(f"{name:<18} {batch:>5} {nb:>9.1f} {npy:>9.1f} {npy / nb:>7.2f}x", flush=True)


if __name__ == "__main__":
    main()
