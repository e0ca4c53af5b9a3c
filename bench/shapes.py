"""The products of one training step, shape by shape: nbnet's kernels against NumPy's BLAS on
the same matrices, and both against the BLAS's rate on a large square product.

bench/epoch.py reports each epoch's GFLOP/s as a fraction of the sgemm rate on 1024 x 1024
matrices. That rate is what the machine reaches on large, square work; a minibatch step is
three products with one side of S = batch-size rows. This script measures, in one run, what
the BLAS itself reaches on exactly those shapes (a row of the table is its best rate over
repeats, with its default threads):

    forward      z = a W^T          (S x n_in) times (n_in x n_out): kernels.weighted_sum
    gradient     G = delta^T a      (n_out x S) times (S x n_in):     kernels.weight_gradient
    step         W -= c delta^T a   the gradient and the update:      kernels.gradient_step

so the "% of sgemm" of an epoch can be read against what the BLAS does with the same shapes.
nbnet's columns are its parallel kernels on the same arrays (aligned, float32).

    python bench/shapes.py                      # 784 x 800 (layer 1 of 784-800-10), batches 1, 10, 32, 128
    python bench/shapes.py --sizes 784,100 --batches 10,128
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numba  # noqa: E402

from nbnet import kernels as K  # noqa: E402
from nbnet.aligned import aligned  # noqa: E402
from nbnet.train import set_threads  # noqa: E402


def best_rate(call, flops, seconds=0.3):
    """GFLOP/s of `call` (flops multiply-adds x 2 per call): the best of 5 timed runs of enough
    calls to take about `seconds` together."""
    call()
    start = time.perf_counter()
    call()
    repeats = max(1, int(seconds / 5 / max(time.perf_counter() - start, 1e-7)))
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            call()
        best = min(best, (time.perf_counter() - start) / repeats)
    return flops / best / 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="784,800", help="n_in,n_out of the layer (default: 784,800)")
    parser.add_argument("--batches", default="1,10,32,128", help="comma-separated batch sizes")
    args = parser.parse_args()
    n_in, n_out = (int(v) for v in args.sizes.split(","))
    threads = set_threads(None)
    rng = np.random.default_rng(0)
    square = rng.random((1024, 1024), dtype=np.float32)
    sgemm = best_rate(lambda: square @ square, 2 * 1024 ** 3)
    print(f"nbnet bench/shapes.py: a {n_in} -> {n_out} float32 layer; {os.cpu_count()} cores, nbnet threads "
          f"{threads}, numba {numba.__version__}, numpy {np.__version__}")
    print(f"sgemm 1024^3 (NumPy's BLAS, default threads): {sgemm:.0f} GFLOP/s; each cell: GFLOP/s (% of that)")
    header = f"{'batch':>5}  {'product':<9} {'BLAS':>14} {'nbnet':>14}"
    print(header)
    print("-" * len(header))
    W = aligned(rng.standard_normal((n_out, n_in)) * 0.03, np.float32)
    b = aligned(np.zeros(n_out), np.float32)
    for S in (int(v) for v in args.batches.split(",")):
        a = aligned(rng.random((S, n_in)), np.float32)
        delta = aligned(rng.standard_normal((S, n_out)) * 1e-6, np.float32)
        z, G, g = aligned(np.zeros((S, n_out)), np.float32), aligned(np.zeros_like(W)), aligned(np.zeros(n_out), np.float32)
        W_blas = W.copy()
        flops = 2 * S * n_in * n_out
        c = np.float32(1e-6)

        def blas_step():
            np.matmul(delta.T, a, out=G)
            np.multiply(G, c, out=G)
            np.subtract(W_blas, G, out=W_blas)

        cells = {
            "forward": (lambda: np.matmul(a, W.T, out=z), lambda: K.weighted_sum(W, b, a, z)),
            "gradient": (lambda: np.matmul(delta.T, a, out=G), lambda: K.weight_gradient(delta, a, W, 0.0, G, g)),
            "step": (blas_step, lambda: K.gradient_step(delta, a, 1e-6, 0.0, W, b)),
        }
        for name, (blas, kernel) in cells.items():
            rates = [best_rate(call, flops) for call in (blas, kernel)]
            print(f"{S:>5}  {name:<9} " + " ".join(f"{r:>7.0f} ({100 * r / sgemm:>3.0f}%)" for r in rates), flush=True)
    print("flops: 2 per multiply-add of the product (the step's update adds 2 per weight, not counted)")


if __name__ == "__main__":
    main()
