"""nbnet's epoch time on this checkout against another commit, in the same run.

For each configuration of bench/epoch.py, a child process per checkout trains MNIST epochs
(kernels compiled or loaded before the clock starts); the two checkouts take turns, round
after round, so a slow spell of this shared machine hits both alike. Prints the median epoch
seconds of each and their ratio (above 1: this checkout is slower).

    python bench/against.py HEAD~1              # the commit before
    python bench/against.py HEAD~1 --rounds 5 --epochs 3 --only 10,128
    python bench/against.py HEAD~1 --optimizer adam
    python bench/against.py HEAD~1 --sets       # whole fits of the estimators on scikit-learn's small
                                                # data sets instead (bench/small.py's section 3)
    python bench/against.py HEAD~1 --compile    # seconds of compiling instead: cold runs, one process
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from epoch import CONFIGS, LR, mnist_dir  # noqa: E402

CHILD = """
import sys, time, numpy as np
from nbnet import Network
from nbnet.data import load_mnist
from nbnet.train import prepare_kernels, train_epoch
hidden, batch_size, epochs, data_dir = eval(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
name = sys.argv[5]
data = load_mnist(data_dir)
net = Network([784, *hidden, 10], seed=0)
X, y = net.as_inputs(data.X_train), net.as_labels(data.y_train, len(data.X_train))
if name == "sgd":
    optimizer, lr = None, LR
else:  # (a small rate, so that no run drifts into the slower arithmetic of huge or NaN values)
    from nbnet.optimizers import Optimizer
    optimizer, lr = Optimizer(name), 0.001
try:
    prepare_kernels(net, batch_size, optimizer)
except (TypeError, AttributeError):  # commits before lazy compilation: prepare_kernels(dtype)
    prepare_kernels("float32")
rng = np.random.default_rng(0)
train_epoch(net, X, y, rng.permutation(len(X)).astype(np.int64), batch_size, lr, optimizer=optimizer)  # warm
for _ in range(epochs):
    order = rng.permutation(len(X)).astype(np.int64)
    start = time.perf_counter()
    train_epoch(net, X, y, order, batch_size, lr, optimizer=optimizer)
    print(time.perf_counter() - start)
""".replace("LR", repr(LR))


# --sets: the best of 3 fits of each case of bench/small.py's SETS (this checkout's bench/, the
# other checkout's nbnet), after a fit that loads the kernels.
CHILD_SETS = """
import sys, warnings
sys.path.insert(0, sys.argv[1])
from small import SETS, best, load
from nbnet import sklearn as ours
for label, kind, data, params in SETS:
    X, y = load(data)[:2]
    Estimator = ours.MLPClassifier if kind == "classifier" else ours.MLPRegressor
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Estimator(random_state=1, **params).fit(X, y)
        print(label, "|", best(lambda: Estimator(random_state=0, **params).fit(X, y))[0], flush=True)
"""


def fit_seconds(tree):
    env = dict(os.environ, PYTHONPATH=str(tree))
    result = subprocess.run([sys.executable, "-c", CHILD_SETS, str(HERE)], cwd=tree, env=env, capture_output=True,
                            text=True, check=True)
    return dict((label, float(seconds)) for label, seconds in (line.split(" | ") for line in result.stdout.splitlines()))


def compare_sets(here, other, revision, rounds):
    print(f"nbnet estimator fit seconds (scikit-learn's small data sets, default parameters, no callbacks), this "
          f"checkout against {revision}; medians of {rounds} turns alternating, each the best of 3 fits")
    mine, theirs = [], []
    for _ in range(rounds):
        theirs.append(fit_seconds(other))
        mine.append(fit_seconds(here))
    print(f"{'case':<16} {'this ms':>9} {revision + ' ms':>11} {'this / other':>13}")
    ratios = []
    for label in mine[0]:
        a, b = (statistics.median(run[label] for run in runs) for runs in (mine, theirs))
        ratios.append(a / b)
        print(f"{label:<16} {1e3 * a:>9.2f} {1e3 * b:>11.2f} {a / b:>13.3f}")
    print(f"geometric mean of the ratios: {statistics.geometric_mean(ratios):.3f}")


# --compile: the seconds a process spends compiling (Numba's compile events, outermost only) for
# a cold run in an empty kernel cache, one process (no compile helper): the default `nbnet train`
# (digits), one MNIST 784-100-10 epoch, and a first scikit-learn fit (iris, then L-BFGS on diabetes).
CHILD_COMPILE = """
import sys, time, warnings
import numba.core.event as event
depth, total = [0], [0.0]
class Timer(event.Listener):
    def on_start(self, ev):
        if depth[0] == 0:
            self.start = time.perf_counter()
        depth[0] += 1
    def on_end(self, ev):
        depth[0] -= 1
        if depth[0] == 0:
            total[0] += time.perf_counter() - self.start
event.register("numba:compile", Timer())
case, plot = sys.argv[1], sys.argv[2]
if case in ("digits", "mnist"):
    from nbnet.cli import main
    extra = ["--dataset", "mnist", "--hidden", "100", "--epochs", "1", "--data-dir", sys.argv[3]] if case == "mnist" else []
    main(["train", "-q", "--plot", plot, *extra], standalone_mode=False)
else:
    from sklearn.datasets import load_diabetes, load_iris
    from nbnet.sklearn import MLPClassifier, MLPRegressor
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if case == "iris fit":
            MLPClassifier(random_state=0).fit(*load_iris(return_X_y=True))
        else:
            MLPRegressor(solver="lbfgs", random_state=0).fit(*load_diabetes(return_X_y=True))
print(total[0])
"""
COMPILE_CASES = ("digits", "mnist", "iris fit", "diabetes lbfgs")


def compile_seconds(tree, case, data_dir):
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, PYTHONPATH=str(tree), NUMBA_CACHE_DIR=cache, NBNET_COMPILE_HELPER="0")
        result = subprocess.run([sys.executable, "-c", CHILD_COMPILE, case, str(Path(cache) / "plot.png"),
                                 str(data_dir)], cwd=tree, env=env, capture_output=True, text=True, check=True)
    return float(result.stdout.split()[-1])


def compare_compiling(here, other, revision, rounds, data_dir):
    print(f"nbnet seconds of compiling a cold run in one process (empty kernel cache, no compile helper), this "
          f"checkout against {revision}; medians of {rounds} turns alternating")
    print(f"{'case':<16} {'this s':>8} {revision + ' s':>10} {'this / other':>13}")
    for case in COMPILE_CASES:
        mine, theirs = [], []
        for _ in range(rounds):
            theirs.append(compile_seconds(other, case, data_dir))
            mine.append(compile_seconds(here, case, data_dir))
        a, b = statistics.median(mine), statistics.median(theirs)
        print(f"{case:<16} {a:>8.2f} {b:>10.2f} {a / b:>13.3f}", flush=True)


def epoch_seconds(tree, hidden, batch_size, epochs, data_dir, optimizer="sgd"):
    env = dict(os.environ, PYTHONPATH=str(tree))
    result = subprocess.run([sys.executable, "-c", CHILD, repr(hidden), str(batch_size), str(epochs), str(data_dir),
                             optimizer],
                            cwd=tree, env=env, capture_output=True, text=True, check=True)
    return [float(line) for line in result.stdout.split()]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("revision", help="the commit to compare with (e.g. HEAD~1)")
    parser.add_argument("--rounds", type=int, default=3, help="turns each checkout takes per configuration")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per turn")
    parser.add_argument("--only", default=None, help="comma-separated batch sizes, e.g. 10,128")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--optimizer", default="sgd", help="the epochs' optimiser (sgd: lr 0.1; the others: lr 0.001)")
    parser.add_argument("--sets", action="store_true", help="estimator fits on small data sets instead of MNIST epochs")
    parser.add_argument("--compile", action="store_true", help="seconds of compiling cold runs instead of epochs")
    args = parser.parse_args()
    data_dir = None if args.sets else args.data_dir or mnist_dir()
    here = HERE.parent
    with tempfile.TemporaryDirectory() as other:
        subprocess.run(["git", "-C", str(here), "worktree", "add", "--detach", other, args.revision], check=True,
                       capture_output=True)
        try:
            revision = subprocess.run(["git", "-C", other, "rev-parse", "--short", "HEAD"], capture_output=True,
                                      text=True).stdout.strip()
            if args.sets:
                return compare_sets(here, Path(other), revision, args.rounds)
            if args.compile:
                return compare_compiling(here, Path(other), revision, args.rounds, data_dir)
            print(f"nbnet epoch seconds, MNIST, {args.optimizer}, this checkout against {args.revision} ({revision}); medians of "
                  f"{args.rounds} x {args.epochs} epochs, turns alternating")
            print(f"{'network':<16} {'batch':>5} {'this s':>8} {revision + ' s':>10} {'this / other':>13}")
            for hidden, batch_size in CONFIGS:
                if args.only and str(batch_size) not in args.only.split(","):
                    continue
                mine, theirs = [], []
                for _ in range(args.rounds):
                    theirs += epoch_seconds(Path(other), hidden, batch_size, args.epochs, data_dir, args.optimizer)
                    mine += epoch_seconds(here, hidden, batch_size, args.epochs, data_dir, args.optimizer)
                a, b = statistics.median(mine), statistics.median(theirs)
                name = "-".join(map(str, (784, *hidden, 10)))
                print(f"{name:<16} {batch_size:>5} {a:>8.3f} {b:>10.3f} {a / b:>13.3f}", flush=True)
        finally:
            subprocess.run(["git", "-C", str(here), "worktree", "remove", "--force", other], capture_output=True)


if __name__ == "__main__":
    main()
