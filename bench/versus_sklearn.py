"""scikit-learn's MLPClassifier and MLPRegressor against nbnet's (nbnet.sklearn), side by side in
one run: the same data, the same settings, fit seconds and test score of each (accuracy for a
classifier, R^2 for a regressor). Data: MNIST (60,000 training and 10,000 test images, float32
pixels in [0, 1]); scikit-learn's 8x8 digits (1,437/360, float64 in [0, 1]); its diabetes set
(442 patients, 10 standardised features, 353/89); and a make_regression set (20,000 samples, 100
features, 16,000/4,000, float64), targets standardised.

nbnet's kernels are loaded (or compiled) by a small fit with the same settings before the
clock starts: a user pays compilation once per machine (bench/startup.py measures it).

    python bench/versus_sklearn.py                    # needs scikit-learn: pip install -e '.[sklearn]'
    python bench/versus_sklearn.py --json out.json --only adam,lbfgs-digits
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

SETTINGS = {  # name: (estimator, data set, the parameters both estimators get)
    "adam": ("classifier", "mnist", dict(hidden_layer_sizes=(100,), activation="relu", solver="adam",
                                         learning_rate_init=1e-3, batch_size=200, alpha=1e-4, max_iter=20)),
    "nielsen": ("classifier", "mnist", dict(hidden_layer_sizes=(100,), activation="logistic", solver="sgd",
                                            momentum=0.0, learning_rate_init=0.5, batch_size=10, alpha=0.0, max_iter=5)),
    "relu-sgd-32": ("classifier", "mnist", dict(hidden_layer_sizes=(100,), activation="relu", solver="sgd",
                                                learning_rate_init=0.01, batch_size=32, alpha=1e-4, max_iter=10)),
    "lbfgs-digits": ("classifier", "digits", dict(hidden_layer_sizes=(100,), solver="lbfgs", max_iter=200)),
    "lbfgs-mnist": ("classifier", "mnist", dict(hidden_layer_sizes=(100,), solver="lbfgs", max_iter=50)),
    "reg-adam": ("regressor", "regression", dict(hidden_layer_sizes=(100,), solver="adam", max_iter=20)),
    "reg-lbfgs": ("regressor", "regression", dict(hidden_layer_sizes=(100,), solver="lbfgs", max_iter=100)),
    "reg-lbfgs-diabetes": ("regressor", "diabetes", dict(hidden_layer_sizes=(20,), solver="lbfgs", max_iter=300,
                                                         alpha=10.0)),
}


def load(name, data_dir):
    """(X, y, X_test, y_test) of a data set of the module docstring."""
    import numpy as np
    from sklearn import datasets
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    if name == "mnist":
        from nbnet.data import load_mnist

        data = load_mnist(data_dir or mnist_dir())
        return data.X_train, data.y_train, data.X_test, data.y_test
    if name == "digits":
        X, y = datasets.load_digits(return_X_y=True)
        X_train, X_test, y_train, y_test = train_test_split(X / 16, y, test_size=0.2, random_state=0, stratify=y)
        return X_train, y_train, X_test, y_test
    if name == "diabetes":
        X, y = datasets.load_diabetes(return_X_y=True)
    else:
        X, y = datasets.make_regression(n_samples=20_000, n_features=100, n_informative=50, noise=10.0,
                                        random_state=0)
        X = X + 0.1 * np.sin(3 * X)  # a little curvature
    X_train, X_test, y_train, y_test = train_test_split(X, (y - y.mean()) / y.std(), test_size=0.2, random_state=0)
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), y_train, scaler.transform(X_test), y_test


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
    from sklearn import neural_network as theirs

    from nbnet import sklearn as ours

    names = args.only.split(",") if args.only else list(SETTINGS)
    print(f"scikit-learn {sklearn.__version__} vs nbnet.sklearn, {numba.get_num_threads()} threads (score: test "
          f"accuracy %, or R^2 x 100)")
    print(f"{'setting':<19} {'data':<10} {'iters':>5} {'batch':>5}  {'sklearn s':>9} {'score':>6}  {'nbnet s':>8} "
          f"{'score':>6}  {'speed-up':>8}")
    rows, loaded = [], {}
    for name in names:
        kind, data, params = SETTINGS[name]
        if data not in loaded:
            loaded[data] = load(data, args.data_dir)
        X, y, X_test, y_test = loaded[data]
        Sk, Nb = ((theirs.MLPClassifier, ours.MLPClassifier) if kind == "classifier" else
                  (theirs.MLPRegressor, ours.MLPRegressor))
        few = 2 * params.get("batch_size", 200)
        timed_fit(Nb(**params, random_state=0).set_params(max_iter=1), X[:few], y[:few], X_test[:10],
                  y_test[:10])  # kernels loaded, not timed
        sk_seconds, sk_score = timed_fit(Sk(**params, random_state=0, tol=0.0), X, y, X_test, y_test)
        nb_seconds, nb_score = timed_fit(Nb(**params, random_state=0, tol=0.0), X, y, X_test, y_test)
        batch = params.get("batch_size", "full" if params["solver"] == "lbfgs" else min(200, len(X)))
        rows.append(dict(setting=name, estimator=kind, data=data,
                         params={k: list(v) if isinstance(v, tuple) else v for k, v in params.items()},
                         sklearn_seconds=sk_seconds, sklearn_score=sk_score, nbnet_seconds=nb_seconds,
                         nbnet_score=nb_score, speedup=sk_seconds / nb_seconds))
        print(f"{name:<19} {data:<10} {params['max_iter']:>5} {batch:>5}  {sk_seconds:>9.2f} {100 * sk_score:>6.2f}  "
              f"{nb_seconds:>8.2f} {100 * nb_score:>6.2f}  {sk_seconds / nb_seconds:>7.1f}x", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
