"""The ladder from the textbook loops to nbnet's fast kernels, one rung at a time, on MNIST.

Each rung is a runnable training configuration, timed on the same samples in the same run:

  numpy             vectorised NumPy (nbnet.reference: matrix products by BLAS), the baseline
  loops, 1 thread   nbnet/loops.py, the plain loop of each equation (`nbnet train --kernels loops`)
  loops             the same, on all threads (prange over the index that owns each output)
  + blocked         the three products by the fast kernels: weighted_sum (4 rows of W at a time,
                    tiles of samples), hidden_delta (pairs of samples, 4 rows at a time),
                    weight_gradient (4 samples at a time); the rest still the plain loops
  + fast exp        activate and output_delta from kernels.py (float32 exp as SIMD arithmetic)
  + fused step      kernels.gradient_step: dJ/dW formed and applied row by row, never stored
  compiled driver   kernels.train_batches, today's default: the whole epoch in one compiled call
                    (no Python between kernels), gathered minibatches, layer 1's step fused with
                    the next batch's z^1, one-thread twins for calls too small for threads
  ... 1 thread      the compiled driver on one thread (what the threads add)

The rungs "+ blocked" to "+ fused step" run a Python driver (below) calling one kernel per
equation, as `--kernels loops` does. The tricks inside "compiled driver" live in one compiled
function and cannot be switched apart without editing it; they are one rung.

Every rung is first checked in float64 against the NumPy baseline over 20 minibatches (max
weight difference below 1e-9); timings are float32, medians of --repeats measurements of a
pass over --samples samples (each measurement repeats its pass to last at least a second),
reported per 60,000-sample epoch, with GFLOP/s and the share of the sgemm rate measured in
this run. The NumPy baseline uses OpenBLAS's default threads (bench/epoch.py also tries one).

    python bench/ladder.py                       # MNIST from $NBNET_DATA_DIR or ../shared/data/mnist
    python bench/ladder.py --samples 60000 --json bench/ladder.json
"""

import argparse
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import numba  # noqa: E402

from epoch import flops_per_epoch, mnist_dir, sgemm_gflops  # noqa: E402
from nbnet import Network, kernels, loops, reference  # noqa: E402
from nbnet.data import load_mnist  # noqa: E402
from nbnet.optimizers import Optimizer  # noqa: E402
from nbnet.train import set_threads, train_epoch  # noqa: E402

NETWORKS = ((100,), (800,))
BATCH_SIZES = (1, 10, 128)
LR = 0.1


def blocked_step(delta, a_prev, lr, W, b):
    """dJ/dW^m, dJ/db^m by the blocked kernels.weight_gradient, then loops.sgd_step."""
    grad_W, grad_b = np.empty_like(W), np.empty_like(b)
    kernels.weight_gradient(delta, a_prev, W, 0.0, grad_W, grad_b)
    loops.sgd_step(grad_W, grad_b, lr, W, b)


def fused_step(delta, a_prev, lr, W, b):
    kernels.gradient_step(delta, a_prev, lr, 0.0, W, b)


BLOCKED = SimpleNamespace(weighted_sum=kernels.weighted_sum, hidden_delta=kernels.hidden_delta,
                          activate=loops.activate, output_delta=loops.output_delta, step=blocked_step)
FAST_EXP = SimpleNamespace(**{**vars(BLOCKED), "activate": kernels.activate, "output_delta": kernels.output_delta})
FUSED = SimpleNamespace(**{**vars(FAST_EXP), "step": fused_step})


def python_driver(F):
    """An epoch of SGD from Python, each equation computed by F's function for it."""
    def epoch(net, X, y, order, batch_size):
        W, b, acts, cost, L = net.weights, net.biases, net.acts, net.cost_function.code, len(net.weights)
        for first in range(0, len(order), batch_size):
            rows = order[first:first + batch_size]
            x, labels = X[rows], y[rows]
            z = [np.empty((len(rows), W_m.shape[0]), W_m.dtype) for W_m in W]
            a, delta = [np.empty_like(z_m) for z_m in z], [np.empty_like(z_m) for z_m in z]
            for m in range(L):  # z^m = W^m a^(m-1) + b^m, a^m = f(z^m)
                F.weighted_sum(W[m], b[m], x if m == 0 else a[m - 1], z[m])
                F.activate(z[m], acts[m], a[m])
            F.output_delta(z[-1], a[-1], labels, acts[-1], cost, delta[-1])
            for m in range(L - 2, -1, -1):
                F.hidden_delta(W[m + 1], delta[m + 1], z[m], a[m], acts[m], delta[m])
            for m in range(L - 1, -1, -1):
                F.step(delta[m], x if m == 0 else a[m - 1], LR, W[m], b[m])
    return epoch


def numpy_epoch(net, X, y, order, batch_size):
    reference.train_batches(net.weights, net.biases, net.acts, net.cost_function.code, X, y, order, batch_size, 0,
                            -(-len(order) // batch_size), LR, 0.0)


def nbnet_epoch(kernel_set):
    optimizer = Optimizer("sgd", kernels=kernel_set)
    return lambda net, X, y, order, batch_size: train_epoch(net, X, y, order, batch_size, LR, optimizer=optimizer)


RUNGS = (  # (name, epoch function, threads: None for all)
    ("numpy", numpy_epoch, None),
    ("loops, 1 thread", nbnet_epoch("loops"), 1),
    ("loops", nbnet_epoch("loops"), None),
    ("+ blocked", python_driver(BLOCKED), None),
    ("+ fast exp", python_driver(FAST_EXP), None),
    ("+ fused step", python_driver(FUSED), None),
    ("compiled driver", nbnet_epoch("fast"), None),
    ("compiled driver, 1 thread", nbnet_epoch("fast"), 1),
)


def agrees(run, hidden, batch_size, X, y):
    """Max |weight difference| from the NumPy baseline after 20 float64 minibatches from one start."""
    n = 20 * batch_size
    order = np.arange(n, dtype=np.int64)
    X64 = X[:n].astype(np.float64)
    want, got = Network([784, *hidden, 10], seed=0, dtype="float64"), Network([784, *hidden, 10], seed=0,
                                                                               dtype="float64")
    numpy_epoch(want, X64, y[:n], order, batch_size)
    run(got, X64, y[:n], order, batch_size)
    return max(float(np.max(np.abs(p - q))) for p, q in zip(got.weights + got.biases, want.weights + want.biases))


def timed(run, threads, hidden, batch_size, X, y, orders, at_least=1.0):
    """Median seconds of one pass over an order (after a warm-up pass that compiles). Each of the
    len(orders) measurements repeats its pass until it has run `at_least` seconds, so a fast rung
    is not timed on a few milliseconds of a noisy machine."""
    set_threads(threads)
    net = Network([784, *hidden, 10], seed=0)
    run(net, X, y, orders[0][:2 * batch_size], batch_size)  # compile (or load) before the clock starts
    start = time.perf_counter()
    run(net, X, y, orders[0], batch_size)
    passes = max(1, int(np.ceil(at_least / (time.perf_counter() - start))))
    times = []
    for order in orders:
        start = time.perf_counter()
        for _ in range(passes):
            run(net, X, y, order, batch_size)
        times.append((time.perf_counter() - start) / passes)
    set_threads(None)
    return float(np.median(times))


def ratio(slower, faster):
    return f"{slower / faster:.2f}x" if slower else "-"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--samples", type=int, default=6000, help="samples per timed pass (default: a tenth of an epoch)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default=None, help="comma-separated rung names to run (numpy is always run)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    data = load_mnist(args.data_dir or mnist_dir())
    X, y = data.X_train, data.y_train
    rng = np.random.default_rng(0)
    orders = [rng.permutation(len(X))[:args.samples].astype(np.int64) for _ in range(args.repeats)]
    sgemm = sgemm_gflops()
    print(f"MNIST, float32, SGD lr {LR}: seconds per 60,000-sample epoch (from {args.samples} samples, median of "
          f"{args.repeats}); {numba.config.NUMBA_NUM_THREADS} threads; sgemm {sgemm:.1f} GFLOP/s measured in this run")
    wanted = None if args.only is None else {"numpy", *args.only.split(",")}
    results = []
    for hidden in NETWORKS:
        for batch_size in BATCH_SIZES:
            sizes = [784, *hidden, 10]
            flops = flops_per_epoch(sizes, args.samples, batch_size)
            print(f"\n{'-'.join(map(str, sizes))}, batch {batch_size}")
            print(f"  {'rung':<27}{'s/epoch':>9}{'vs before':>11}{'vs loops':>10}{'GFLOP/s':>9}{'% sgemm':>9}"
                  f"{'max |dW| vs numpy (f64)':>25}")
            before = loops_time = None
            for name, run, threads in RUNGS:
                if wanted and name not in wanted:
                    continue
                seconds = timed(run, threads, hidden, batch_size, X, y, orders)
                difference = agrees(run, hidden, batch_size, X, y)
                per_epoch = seconds * 60_000 / args.samples
                loops_time = per_epoch if name == "loops" else loops_time
                gflops = flops / seconds / 1e9
                print(f"  {name:<27}{per_epoch:>9.2f}{ratio(before, per_epoch):>11}{ratio(loops_time, per_epoch):>10}"
                      f"{gflops:>9.2f}"
                      f"{100 * gflops / sgemm:>8.1f}%{difference:>25.1e}", flush=True)
                results.append(dict(sizes=sizes, batch_size=batch_size, rung=name, seconds_per_epoch=per_epoch,
                                    gflops=gflops, sgemm_share=gflops / sgemm, max_weight_difference=difference,
                                    agrees=difference < 1e-9))
                before = per_epoch if name != "compiled driver, 1 thread" else before
    if args.json:
        args.json.write_text(json.dumps(dict(samples=args.samples, repeats=args.repeats, sgemm_gflops=sgemm,
                                             threads=numba.config.NUMBA_NUM_THREADS, results=results), indent=1))


if __name__ == "__main__":
    main()
