"""Small work, where most people meet a neural network: a tiny network, a small table, a script's
first fit. nbnet against scikit-learn (and PyTorch when it is installed), same-run ratios.

1. SimpleChains.jl's tiny-network benchmark (julialang.org, "SimpleChains.jl", 2022): a 4-32-16-4
   MLP, tanh, tanh, identity, squared loss, Adam, float32, full batch of 10,000 random 2x2
   matrices and their matrix exponentials. Microseconds per epoch (the time of a fit of E epochs
   minus one of a few, over the difference), beside SimpleChains' published 41 us per epoch on
   18 cores: 0.74 ms of core time, about 0.37 ms on two cores.
2. The same network per minibatch step, at batch 32 and 200.
3. scikit-learn's bundled small data sets with its default MLPClassifier() / MLPRegressor()
   (adam, one hidden layer of 100 relu units, batch min(200, n), up to 200 epochs with its
   stopping rule), and lbfgs on digits and diabetes: whole fit() seconds, best of 3 after a
   warm-up fit, and the test score of each (accuracy, or R^2). Features standardised (as
   scikit-learn's user guide asks for MLPs), diabetes' target too; a 75/25 split, seed 0.
4. A script's first fit and predict, in a fresh process with the kernel cache warm (iris): the
   estimator's import, its first fit() and its first predict() of 5 rows, for each library.

    python bench/small.py
    python bench/small.py --json bench/small.json
    python bench/small.py --skip-torch --only sets
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SIMPLECHAINS_CORE_MS = 0.041 * 18  # published per-epoch time x cores


def simplechains_data(n=10_000, seed=0):
    """X: n random 2x2 matrices as rows of 4, Y: their matrix exponentials (float32)."""
    from scipy.linalg import expm

    X = np.random.default_rng(seed).standard_normal((n, 4)).astype(np.float32)
    Y = np.stack([expm(x.reshape(2, 2).astype(np.float64)).ravel() for x in X]).astype(np.float32)
    return X, Y


def best(function, repeats=3):
    """The smallest of `repeats` timings of function() in seconds (and its last result)."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return min(times), result


def per_epoch(fit, short=3, long=60):
    """Seconds per epoch: (fit of `long` epochs - fit of `short`) / (long - short)."""
    fit(short)
    t_short, _ = best(lambda: fit(short))
    t_long, _ = best(lambda: fit(long))
    return max(t_long - t_short, 1e-9) / (long - short)


def sklearn_estimators(batch, activation="tanh"):
    """fit(epochs) functions for nbnet's and scikit-learn's MLPRegressor on the SimpleChains problem."""
    from sklearn import neural_network

    from nbnet import sklearn as ours

    X, Y = simplechains_data()
    settings = dict(hidden_layer_sizes=(32, 16), activation=activation, solver="adam", batch_size=batch,
                    learning_rate_init=1e-3, tol=0.0, n_iter_no_change=10 ** 9, random_state=0, shuffle=batch < len(X))

    def fitter(cls, **extra):
        def fit(epochs):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return cls(**settings, max_iter=epochs, **extra).fit(X, Y)
        return fit

    return fitter(ours.MLPRegressor, dtype="float32"), fitter(neural_network.MLPRegressor), X, Y


def torch_epoch(X, Y, batch, epochs, activation="tanh"):
    """Seconds per epoch of the same network in PyTorch (Adam, squared error), as many threads as nbnet."""
    import numba
    import torch

    torch.set_num_threads(numba.get_num_threads())
    torch.manual_seed(0)
    act = torch.nn.Tanh if activation == "tanh" else torch.nn.ReLU
    model = torch.nn.Sequential(torch.nn.Linear(4, 32), act(), torch.nn.Linear(32, 16), act(), torch.nn.Linear(16, 4))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)
    generator = np.random.default_rng(0)

    def epoch():
        order = torch.from_numpy(generator.permutation(len(X))) if batch < len(X) else None
        for first in range(0, len(X), batch):
            rows = order[first:first + batch] if order is not None else slice(None)
            optimizer.zero_grad()
            loss = ((model(Xt[rows]) - Yt[rows]) ** 2).mean() / 2
            loss.backward()
            optimizer.step()

    epoch()
    start = time.perf_counter()
    for _ in range(epochs):
        epoch()
    return (time.perf_counter() - start) / epochs


def simplechains(with_torch):
    """Section 1 and 2: rows of (what, nbnet us, scikit-learn us, torch us or None)."""
    rows = []
    for batch, label, unit in ((10_000, "4-32-16-4 full batch, per epoch", 1), (32, "batch 32, per step", 10_000 // 32),
                               (200, "batch 200, per step", 10_000 // 200)):
        ours, theirs, X, Y = sklearn_estimators(batch)
        long = 200 if batch == 10_000 else 8
        nb = per_epoch(ours, short=2, long=long) / unit
        sk = per_epoch(theirs, short=2, long=max(6, long // 4)) / unit
        th = torch_epoch(X, Y, batch, max(5, long // 4)) / unit if with_torch else None
        rows.append(dict(case=label, nbnet_us=1e6 * nb, sklearn_us=1e6 * sk, torch_us=None if th is None else 1e6 * th))
    return rows


SETS = [  # name, estimator, data set, extra parameters
    ("iris", "classifier", "iris", {}),
    ("wine", "classifier", "wine", {}),
    ("breast cancer", "classifier", "breast_cancer", {}),
    ("digits", "classifier", "digits", {}),
    ("diabetes", "regressor", "diabetes", {}),
    ("digits lbfgs", "classifier", "digits", {"solver": "lbfgs"}),
    ("diabetes lbfgs", "regressor", "diabetes", {"solver": "lbfgs"}),
]


def load(name):
    """(X_train, y_train, X_test, y_test): standardised features (and diabetes' target), 75/25, seed 0."""
    from sklearn import datasets
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
    scaler = StandardScaler().fit(X_train)
    if name == "diabetes":
        mean, std = y_train.mean(), y_train.std()
        y_train, y_test = (y_train - mean) / std, (y_test - mean) / std
    return scaler.transform(X_train), y_train, scaler.transform(X_test), y_test


def small_sets():
    """Section 3: a row per case."""
    from sklearn import neural_network

    from nbnet import sklearn as ours

    rows = []
    for label, kind, data, params in SETS:
        X, y, X_test, y_test = load(data)
        Ours, Theirs = ((ours.MLPClassifier, neural_network.MLPClassifier) if kind == "classifier" else
                        (ours.MLPRegressor, neural_network.MLPRegressor))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning: scikit-learn's defaults do not always converge
            Ours(random_state=1, **params).fit(X, y)  # kernels loaded (or compiled) before the clock starts
            nb, fitted_nb = best(lambda: Ours(random_state=0, **params).fit(X, y))
            sk, fitted_sk = best(lambda: Theirs(random_state=0, **params).fit(X, y))
        rows.append(dict(case=label, sklearn_s=sk, sklearn_score=float(fitted_sk.score(X_test, y_test)),
                         sklearn_iters=int(fitted_sk.n_iter_), nbnet_s=nb,
                         nbnet_score=float(fitted_nb.score(X_test, y_test)), nbnet_iters=int(fitted_nb.n_iter_),
                         speedup=sk / nb))
    return rows


FIRST_CALL = """
import sys, time
import numpy as np
data = np.load(sys.argv[2])
X, y = data["X"], data["y"]
start = time.perf_counter()
if sys.argv[1] == "nbnet":
    from nbnet.sklearn import MLPClassifier
else:
    from sklearn.neural_network import MLPClassifier
imported = time.perf_counter()
model = MLPClassifier(random_state=0).fit(X, y)
fitted = time.perf_counter()
model.predict(X[:5])
predicted = time.perf_counter()
print(imported - start, fitted - imported, predicted - fitted)
"""


def first_calls(repeats=5):
    """Section 4: {library: (import s, first fit s, first predict s)}, medians of fresh processes
    (scikit-learn itself imported before the clock starts in both: loading the data needs it)."""
    import tempfile

    X, y, _, _ = load("iris")
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "iris.npz")
        np.savez(path, X=X, y=y)
        script = os.path.join(folder, "first.py")
        Path(script).write_text("import sklearn.base, sklearn.preprocessing\n" + FIRST_CALL)
        for library in ("nbnet", "sklearn"):
            subprocess.run([sys.executable, script, library, path], check=True, capture_output=True)  # cache warm
            runs = [list(map(float, subprocess.run([sys.executable, script, library, path], check=True,
                                                   capture_output=True, text=True).stdout.split()))
                    for _ in range(repeats)]
            results[library] = [statistics.median(run[i] for run in runs) for i in range(3)]
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--skip-torch", action="store_true", help="leave PyTorch out even when it is installed")
    parser.add_argument("--only", default="simplechains,sets,first", help="comma-separated sections")
    args = parser.parse_args()
    import numba
    import sklearn

    with_torch = not args.skip_torch
    if with_torch:
        try:
            import torch  # noqa: F401
        except ImportError:
            with_torch = False
    sections = args.only.split(",")
    print(f"nbnet bench/small.py: {numba.get_num_threads()} threads; numba {numba.__version__}, scikit-learn "
          f"{sklearn.__version__}" + (f", torch {sys.modules['torch'].__version__}" if with_torch else ""))
    results = {}
    if "simplechains" in sections:
        rows = results["simplechains"] = simplechains(with_torch)
        print("\nSimpleChains.jl's 4-32-16-4 tanh network, Adam, float32, 10,000 samples (microseconds)")
        print(f"{'case':<34} {'nbnet':>9} {'sklearn':>9} {'x':>6} {'torch':>9} {'x':>6}")
        for row in rows:
            torch_us = row["torch_us"]
            print(f"{row['case']:<34} {row['nbnet_us']:>9.1f} {row['sklearn_us']:>9.1f} "
                  f"{row['sklearn_us'] / row['nbnet_us']:>5.1f}x "
                  + (f"{torch_us:>9.1f} {torch_us / row['nbnet_us']:>5.1f}x" if torch_us else f"{'-':>9} {'-':>6}"))
        print(f"SimpleChains.jl published 41 us per full-batch epoch on 18 cores: {SIMPLECHAINS_CORE_MS:.2f} ms of core "
              f"time, {SIMPLECHAINS_CORE_MS / 2 * 1000:.0f} us on two cores")
    if "sets" in sections:
        rows = results["sets"] = small_sets()
        print("\nscikit-learn's small data sets, its default parameters (fit seconds, best of 3; test accuracy % or R^2 x 100)")
        print(f"{'case':<16} {'sklearn ms':>10} {'score':>6} {'iters':>5}  {'nbnet ms':>9} {'score':>6} {'iters':>5} "
              f"{'speed-up':>8}")
        for row in rows:
            print(f"{row['case']:<16} {1e3 * row['sklearn_s']:>10.1f} {100 * row['sklearn_score']:>6.2f} "
                  f"{row['sklearn_iters']:>5}  {1e3 * row['nbnet_s']:>9.1f} {100 * row['nbnet_score']:>6.2f} "
                  f"{row['nbnet_iters']:>5} {row['speedup']:>7.1f}x")
        geometric = float(np.exp(np.mean(np.log([row["speedup"] for row in rows]))))
        results["sets_geometric_mean"] = geometric
        print(f"geometric mean speed-up {geometric:.1f}x, smallest {min(row['speedup'] for row in rows):.1f}x; "
              f"largest score difference {max(abs(r['nbnet_score'] - r['sklearn_score']) for r in rows) * 100:.2f} points")
    if "first" in sections:
        firsts = results["first_call"] = first_calls()
        print("\nA script's first fit and predict (iris, fresh process, kernel cache warm; medians of 5)")
        print(f"{'library':<8} {'import ms':>9} {'first fit ms':>12} {'first predict ms':>16}")
        for library, (imported, fit, predict) in firsts.items():
            print(f"{library:<8} {1e3 * imported:>9.1f} {1e3 * fit:>12.1f} {1e3 * predict:>16.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
