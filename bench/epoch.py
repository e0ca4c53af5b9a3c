"""Seconds per MNIST epoch: nbnet's compiled loops against the NumPy reference, side by side.

For each configuration both train the same network from the same initial weights with the
same shuffles; the script checks that they end with matching weights, and prints medians of
several epochs, their ratio, GFLOP/s, the fraction of the sgemm rate measured in this run,
threads, and Numba's threading layer and version. Kernel compilation is timed on its own and
kept out of the epoch times.

The NumPy side runs in child processes, once with OpenBLAS's default thread count and once
with one BLAS thread (OpenBLAS threading slows small products); the faster is the baseline.
PyTorch (and JAX, as one jitted lax.scan per epoch) columns appear when they are installed.

    python bench/epoch.py                        # MNIST from $NBNET_DATA_DIR or ../shared/data/mnist
    python bench/epoch.py --quick                # a tenth of each epoch, fewer repeats
    python bench/epoch.py --json results.json
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import numba  # noqa: E402

from nbnet import Network, reference  # noqa: E402
from nbnet.data import load_mnist  # noqa: E402
from nbnet.train import prepare_kernels, set_threads, train_epoch  # noqa: E402

CONFIGS = [  # (hidden layers, batch size)
    ((100,), 1), ((100,), 10), ((100,), 128),
    ((800,), 10), ((800,), 128),
    ((500, 300), 10), ((500, 300), 128),
]
LR = 0.1


def mnist_dir():
    for candidate in (os.environ.get("NBNET_DATA_DIR"), HERE.parent.parent / "shared" / "data" / "mnist",
                      Path.home() / ".cache" / "nbnet" / "mnist"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    sys.exit("MNIST not found: set NBNET_DATA_DIR or pass --data-dir")


def flops_per_epoch(sizes, n_samples, batch_size):
    """2 flops per multiply-add: forward W a, backward W^T delta (not for layer 1), delta a^T;
    plus the update, 2 flops per parameter per step."""
    macs = 0
    for m, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        macs += n_in * n_out * (3 if m > 0 else 2)
    params = sum((n_in + 1) * n_out for n_in, n_out in zip(sizes[:-1], sizes[1:]))
    return 2 * macs * n_samples + 2 * params * -(-n_samples // batch_size)


def orders(n, epochs, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.permutation(n).astype(np.int64) for _ in range(epochs)]


def sgemm_gflops():
    """float32 matrix-product rate with NumPy's BLAS in this process (default threads)."""
    a = np.random.default_rng(0).random((1024, 1024), dtype=np.float32)
    a @ a
    times = []
    for _ in range(5):
        start = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - start)
    return 2 * 1024 ** 3 / min(times) / 1e9


# ----------------------------------------------------------------------------- workers
def time_nbnet(net, X, y, epoch_orders, batch_size):
    prepare_kernels(net, batch_size)  # compiled (or loaded) before the clock starts
    times = []
    for order in epoch_orders:
        start = time.perf_counter()
        train_epoch(net, X, y, order, batch_size, LR)
        times.append(time.perf_counter() - start)
    return times


def time_numpy(net, X, y, epoch_orders, batch_size):
    weights = [W.copy() for W in net.weights]
    biases = [b.copy() for b in net.biases]
    n_batches = -(-len(epoch_orders[0]) // batch_size)
    times = []
    for order in epoch_orders:
        start = time.perf_counter()
        reference.train_batches(weights, biases, net.acts, net.cost_function.code, X, y, order, batch_size,
                                0, n_batches, LR, 0.0)
        times.append(time.perf_counter() - start)
    return times, weights, biases


def weights_agree(hidden, batch_size, X, y, order):
    """Do nbnet and the NumPy reference, trained from the same start on the same samples, end
    with the same weights? In float64 over 3,000 samples (or 300 steps): to 1e-9. In float32
    only over 20 steps, to 1e-5: float32 SGD amplifies rounding differences exponentially
    (784-800-10 at batch 10 drifts from 1e-7 to 1e-3 within 50 steps while float64 stays at 1e-12),
    so longer float32 runs cannot be compared element by element."""
    worst = {}
    for dtype, n, tolerance in (("float64", min(3000, 300 * batch_size), 1e-9), ("float32", 20 * batch_size, 1e-5)):
        net = Network([784, *hidden, 10], seed=0, dtype=dtype)
        Xn, yn, steps = X[order[:n]].astype(dtype), y[order[:n]], np.arange(n, dtype=np.int64)
        _, weights, biases = time_numpy(net, Xn, yn, [steps], batch_size)
        train_epoch(net, Xn, yn, steps, batch_size, LR)
        worst[dtype] = max(float(np.max(np.abs(a - b))) for a, b in zip(net.weights + net.biases, weights + biases))
        worst[dtype + "_ok"] = worst[dtype] < tolerance
    return worst


def thread_scaling(X, y, epoch_orders, threads):
    """784-800-10 at batch 128 on 1 thread and on `threads`: median seconds, and whether the
    weights come out bit-identical. The two alternate epoch by epoch, so a slow spell of the
    shared machine slows both rather than one."""
    nets = {count: Network([784, 800, 10], seed=0) for count in (1, threads)}
    times = {count: [] for count in nets}
    for order in epoch_orders:
        for count, net in nets.items():
            set_threads(count)
            times[count] += time_nbnet(net, X, y, [order], 128)
    identical = all(np.array_equal(a, b) for a, b in zip(nets[1].weights + nets[1].biases,
                                                         nets[threads].weights + nets[threads].biases))
    return float(np.median(times[1])), float(np.median(times[threads])), identical


def numpy_worker(args):
    """Child process: time the NumPy reference, save the epoch times."""
    hidden, batch_size, X, y, epoch_orders = setup(args)
    times, _, _ = time_numpy(Network([784, *hidden, 10], seed=0), X, y, epoch_orders, batch_size)
    np.save(args.out, np.array(times))


def setup(args):
    hidden = tuple(int(h) for h in args.hidden.split(","))
    data = load_mnist(args.data_dir)
    n = int(len(data.X_train) * args.fraction)
    X, y = np.ascontiguousarray(data.X_train[:n]), data.y_train[:n]
    return hidden, args.batch_size, X, y, orders(n, args.epochs)


def run_numpy_child(args, hidden, batch_size, blas_threads):
    env = dict(os.environ)
    if blas_threads:
        env.update(OPENBLAS_NUM_THREADS=str(blas_threads), OMP_NUM_THREADS=str(blas_threads),
                   MKL_NUM_THREADS=str(blas_threads))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "numpy.npy"
        subprocess.run([sys.executable, __file__, "--numpy-worker", "--hidden", ",".join(map(str, hidden)),
                        "--batch-size", str(batch_size), "--epochs", str(args.epochs), "--fraction",
                        str(args.fraction), "--data-dir", str(args.data_dir), "--out", str(out)],
                       env=env, check=True)
        return np.load(out)


def optional_frameworks():
    found = {}
    for name in ("torch", "jax"):
        try:
            found[name] = __import__(name)
        except ImportError:
            pass
    return found


def time_torch(torch, net, X, y, epoch_orders, batch_size):
    torch.set_num_threads(numba.get_num_threads())
    params = [torch.tensor(p.copy(), requires_grad=True) for p in net.weights + net.biases]
    L = len(net.weights)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    optimizer = torch.optim.SGD(params, lr=LR)
    times = []
    for order in epoch_orders:
        order_t = torch.from_numpy(order)
        start = time.perf_counter()
        for first in range(0, len(order), batch_size):
            idx = order_t[first:first + batch_size]
            a = Xt[idx]
            for m in range(L):
                z = a @ params[m].T + params[L + m]
                a = torch.sigmoid(z) if m < L - 1 else z
            loss = torch.nn.functional.cross_entropy(a, yt[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        times.append(time.perf_counter() - start)
    return times


def time_jax(jax, net, X, y, epoch_orders, batch_size):
    import jax.numpy as jnp

    L = len(net.weights)

    def loss(params, xb, yb):
        a = xb
        for m in range(L):
            z = a @ params[m].T + params[L + m]
            a = jax.nn.sigmoid(z) if m < L - 1 else z
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(a), yb[:, None], axis=1))

    @jax.jit
    def epoch(params, xs, ys):
        def step(params, batch):
            grads = jax.grad(loss)(params, *batch)
            return [p - LR * g for p, g in zip(params, grads)], None
        return jax.lax.scan(step, params, (xs, ys))[0]

    params = [jnp.asarray(p) for p in net.weights + net.biases]
    n_full = len(epoch_orders[0]) // batch_size * batch_size  # lax.scan needs equal batches
    times = []
    for i, order in enumerate(epoch_orders):
        xs = jnp.asarray(X[order[:n_full]].reshape(-1, batch_size, X.shape[1]))
        ys = jnp.asarray(y[order[:n_full]].reshape(-1, batch_size))
        if i == 0:
            jax.block_until_ready(epoch(params, xs, ys))  # compile outside the timing
        start = time.perf_counter()
        params = jax.block_until_ready(epoch(params, xs, ys))
        times.append(time.perf_counter() - start)
    return times


# ----------------------------------------------------------------------------- main
def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per configuration (median)")
    parser.add_argument("--fraction", type=float, default=1.0, help="share of the 60,000 samples per epoch")
    parser.add_argument("--quick", action="store_true", help="--fraction 0.1 --epochs 2")
    parser.add_argument("--only", default=None, help="comma-separated batch sizes to run, e.g. 10,128")
    parser.add_argument("--threads", type=int, default=None, help="Numba threads (default: all cores)")
    parser.add_argument("--json", type=Path, default=None, help="also write the table as JSON")
    parser.add_argument("--numpy-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--hidden", default="100", help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=10, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.fraction, args.epochs = 0.1, 2
    args.data_dir = args.data_dir or mnist_dir()
    if args.numpy_worker:
        return numpy_worker(args)

    threads = set_threads(args.threads)
    compile_seconds, compiled = prepare_kernels(Network([784, 100, 10]), 10)
    data = load_mnist(args.data_dir)
    n = int(len(data.X_train) * args.fraction)
    X, y = np.ascontiguousarray(data.X_train[:n]), data.y_train[:n]
    epoch_orders = orders(n, args.epochs)
    sgemm = sgemm_gflops()
    frameworks = optional_frameworks()
    configs = [c for c in CONFIGS if not args.only or str(c[1]) in args.only.split(",")]

    print(f"nbnet bench/epoch.py: MNIST {n} samples/epoch, float32, sigmoid hidden, softmax + cross-entropy, "
          f"plain SGD lr {LR}; median of {args.epochs} epochs")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; numba {numba.__version__}, "
          f"numpy {np.__version__}; sgemm {sgemm:.0f} GFLOP/s (1024^3, default BLAS threads)")
    print(f"kernels {'compiled' if compiled else 'loaded from cache'} in {compile_seconds:.1f} s (not in epoch times)")
    extra = "".join(f" {name + ' s':>9} {'x':>6}" for name in frameworks)
    header = (f"{'network':<16} {'batch':>5} {'nbnet s':>8} {'numpy s':>8} {'blas thr':>8} {'speed-up':>8} "
              f"{'GFLOP/s':>8} {'% sgemm':>7} {'weights':>8}{extra}")
    print(header)
    print("-" * len(header))
    rows = []
    for hidden, batch_size in configs:
        sizes = [784, *hidden, 10]
        net = Network(sizes, seed=0)
        nb_times = time_nbnet(net, X, y, epoch_orders, batch_size)
        numpy_runs = {b: run_numpy_child(args, hidden, batch_size, b) for b in (None, 1)}
        best_blas = min(numpy_runs, key=lambda b: np.median(numpy_runs[b]))
        np_times = numpy_runs[best_blas]
        agreement = weights_agree(hidden, batch_size, X, y, epoch_orders[0])
        matches = agreement["float64_ok"] and agreement["float32_ok"]
        nb, npy = float(np.median(nb_times)), float(np.median(np_times))
        gflops = flops_per_epoch(sizes, n, batch_size) / nb / 1e9
        row = dict(network="-".join(map(str, sizes)), batch=batch_size, nbnet_s=nb, numpy_s=npy,
                   numpy_blas_threads="1" if best_blas == 1 else "default", speedup=npy / nb, gflops=gflops,
                   sgemm_fraction=gflops / sgemm, weights_match=matches,
                   max_weight_difference_float64=agreement["float64"],
                   max_weight_difference_float32=agreement["float32"],
                   threads=threads, threading_layer=numba.threading_layer(), numba=numba.__version__,
                   numpy_default_blas_s=float(np.median(numpy_runs[None])),
                   numpy_one_blas_s=float(np.median(numpy_runs[1])))
        cells = ""
        for name, module in frameworks.items():
            timer = time_torch if name == "torch" else time_jax
            seconds = float(np.median(timer(module, Network(sizes, seed=0), X, y, epoch_orders, batch_size)))
            row[f"{name}_s"] = seconds
            cells += f" {seconds:>9.3f} {seconds / nb:>6.2f}"
        rows.append(row)
        print(f"{row['network']:<16} {batch_size:>5} {nb:>8.3f} {npy:>8.3f} {row['numpy_blas_threads']:>8} "
              f"{npy / nb:>7.2f}x {gflops:>8.1f} {100 * gflops / sgemm:>6.0f}% {'match' if matches else 'DIFFER':>8}"
              f"{cells}", flush=True)
    print(f"threads {threads}, threading layer {numba.threading_layer()}; speed-up = numpy s / nbnet s "
          f"(numpy: the faster of default and 1 BLAS thread); weights: nbnet and NumPy trained from the same "
          f"start on the same samples agree (float64: 3,000 samples, 1e-9; float32: 20 steps, 1e-5)")
    scaling = None
    if threads > 1 and not args.only:
        one, many, identical = thread_scaling(X, y, epoch_orders, threads)
        scaling = dict(one_thread_s=one, threads=threads, threads_s=many, speedup=one / many, identical=identical)
        print(f"thread scaling, 784-800-10 batch 128: 1 thread {one:.3f} s, {threads} threads {many:.3f} s, "
              f"{one / many:.2f}x; weights {'bit-identical' if identical else 'DIFFER'}")
    if args.json:
        args.json.write_text(json.dumps(dict(samples=n, epochs=args.epochs, sgemm_gflops=sgemm,
                                             compile_seconds=compile_seconds, rows=rows, scaling=scaling), indent=2))


if __name__ == "__main__":
    main()
