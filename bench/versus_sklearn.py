"""scikit-learn's MLPClassifier against nbnet's (nbnet.sklearn.MLPClassifier), side by side
in one run: the same MNIST split (60,000 training and 10,000 test images, float32 pixels in
[0, 1]), the same settings, fit seconds and test accuracy of each.

nbnet's kernels are loaded (or compiled) by a small fit with the same settings before the
clock starts: a user pays compilation once per machine (bench/startup.py measures it).

    python bench/versus_sklearn.py                    # needs scikit-learn: pip install -e '.[sklearn]'
    python bench/versus_sklearn.py --json out.json --only adam
"""

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from epoch import mnist_dir  # noqa: E402

SETTINGS = {  # name: the parameters both estimators get
    "adam": dict(hidden_layer_sizes=(100,), activation="relu", solver="adam", learning_rate_init=1e-3,
                 batch_size=200, alpha=1e-4, max_iter=20),  # scikit-learn's defaults, 20 epochs
    "nielsen": dict(hidden_layer_sizes=(100,), activation="logistic", solver="sgd", momentum=0.0,
                    learning_rate_init=0.5, batch_size=10, alpha=0.0, max_iter=5),
    "relu-sgd-32": dict(hidden_layer_sizes=(100,), activation="relu", solver="sgd", learning_rate_init=0.01,
                        batch_size=32, alpha=1e-4, max_iter=10),  # momentum 0.9, Nesterov's (the default)
}


def timed_fit(model, X, y, X_test, y_test):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: a fixed number of epochs is asked for
        start = time.perf_counter()
        model.fit(X, y)
        seconds = time.perf_counter() - start
    return seconds, float(model.score(X_test, y_test))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--only", default=None, help="comma-separated setting names")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    import numba
    import sklearn
    from sklearn.neural_network import MLPClassifier as SkMLP

    from nbnet.data import load_mnist
    from nbnet.sklearn import MLPClassifier as NbMLP

    data = load_mnist(args.data_dir or mnist_dir())
    X, y, X_test, y_test = data.X_train, data.y_train, data.X_test, data.y_test
    names = args.only.split(",") if args.only else list(SETTINGS)
    print(f"scikit-learn {sklearn.__version__} MLPClassifier vs nbnet.sklearn.MLPClassifier, MNIST 60,000/10,000, "
          f"float32, {numba.get_num_threads()} threads")
    print(f"{'setting':<12} {'epochs':>6} {'batch':>5}  {'sklearn s':>9} {'acc %':>6}  {'nbnet s':>8} {'acc %':>6}  "
          f"{'speed-up':>8}")
    rows = []
    for name in names:
        params = SETTINGS[name]
        timed_fit(NbMLP(**params, random_state=0).set_params(max_iter=1), X[:2 * params["batch_size"]],
                  y[:2 * params["batch_size"]], X_test[:10], y_test[:10])  # kernels loaded, not timed
        sk_seconds, sk_accuracy = timed_fit(SkMLP(**params, random_state=0, tol=0.0), X, y, X_test, y_test)
        nb_seconds, nb_accuracy = timed_fit(NbMLP(**params, random_state=0, tol=0.0), X, y, X_test, y_test)
        rows.append(dict(setting=name, params={k: list(v) if isinstance(v, tuple) else v for k, v in params.items()},
                         sklearn_seconds=sk_seconds, sklearn_accuracy=sk_accuracy, nbnet_seconds=nb_seconds,
                         nbnet_accuracy=nb_accuracy, speedup=sk_seconds / nb_seconds))
        print(f"{name:<12} {params['max_iter']:>6} {params['batch_size']:>5}  {sk_seconds:>9.2f} "
              f"{100 * sk_accuracy:>6.2f}  {nb_seconds:>8.2f} {100 * nb_accuracy:>6.2f}  "
              f"{sk_seconds / nb_seconds:>7.1f}x", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
