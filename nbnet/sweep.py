"""Hyperparameter sweeps: one training run per combination of values, run by any
`concurrent.futures.Executor` (worker processes here, a Dask cluster with `nbnet[dask]`).

Each run is a plain function of a plain dict (`run_one`), so any executor that can pickle a
function and a dict can run it; results come back as dicts in the order of the runs.
"""

import itertools
import math

SWEPT = ("l2", "lr", "hidden")


def combinations(base, values):
    """One run configuration per combination of the swept values ({"l2": [0, 5], ...})."""
    names = [name for name in SWEPT if values.get(name)]
    return [dict(base, **dict(zip(names, combo))) for combo in itertools.product(*(values[n] for n in names))]


def run_one(config):
    """Train one network as `config` says; return config plus final train/held-out metrics."""
    import numba

    from .data import hold_out, load_dataset
    from .network import Network
    from .optimizers import Optimizer
    from .train import train

    numba.set_num_threads(min(config["threads"], numba.config.NUMBA_NUM_THREADS))
    data = load_dataset(config["dataset"], config.get("data_dir"), config.get("test_fraction", 0.2),
                        config["seed"], "float32")
    X, y = data.X_train, data.y_train
    if config.get("train_size"):
        X, y = X[:config["train_size"]], y[:config["train_size"]]
    X_validation = y_validation = None
    if config.get("validation"):
        X, y, X_validation, y_validation = hold_out(X, y, config["validation"])
    net = Network([data.n_inputs, config["hidden"], 10], activation=config["activation"], seed=config["seed"])
    history = train(net, X, y, data.X_test, data.y_test, epochs=config["epochs"], batch_size=config["batch_size"],
                    lr=config["lr"], l2=config["l2"], seed=config["seed"], optimizer=Optimizer(config["optimizer"]),
                    X_validation=X_validation, y_validation=y_validation)
    last = history[-1]
    held_out = "validation" if X_validation is not None else "test"
    return dict(config, train_cost=last.train_cost, train_accuracy=last.train_accuracy, held_out=held_out,
                held_out_cost=getattr(last, f"{held_out}_cost"), held_out_accuracy=getattr(last, f"{held_out}_accuracy"),
                test_accuracy=last.test_accuracy, seconds=sum(m.seconds for m in history),
                train_costs=[m.train_cost for m in history])


def sweep(configs, executor):
    """Results of run_one for every configuration, in order, run by `executor`."""
    return list(executor.map(run_one, configs))


def prepare(configs):
    """Compile, in this process, what the runs of `configs` will call (with the thread count
    each gets), so that the worker processes load it from the disk cache instead of all
    compiling the same kernels at once. Returns the seconds it took. A Dask cluster runs this
    once on every worker (nbnet sweep --scheduler)."""
    import time

    import numba

    from .data import N_INPUTS
    from .network import Network
    from .optimizers import Optimizer
    from .train import prepare_kernels

    start, threads = time.perf_counter(), numba.get_num_threads()
    try:
        for config in configs:
            numba.set_num_threads(min(config["threads"], numba.config.NUMBA_NUM_THREADS))
            net = Network([N_INPUTS[config["dataset"]], config["hidden"], 10], activation=config["activation"])
            prepare_kernels(net, config["batch_size"], Optimizer(config["optimizer"]))
    finally:
        numba.set_num_threads(threads)
    return time.perf_counter() - start


def best(results):
    """The run with the lowest held-out cost."""
    return min(results, key=lambda row: row["held_out_cost"])


def plot_sweep(results, path, varied):
    """Final train and held-out cost and accuracy against the varied value, best marked, and
    the train cost of every run epoch by epoch (a too large learning rate overshoots: its
    cost jumps about or climbs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .files import atomic_write

    rows = sorted(results, key=lambda row: row[varied])
    x = [row[varied] for row in rows]
    held_out = rows[0]["held_out"]
    figure, (cost_axes, accuracy_axes, curve_axes) = plt.subplots(1, 3, figsize=(16, 4.2))
    for row in rows:
        curve_axes.plot(range(1, len(row["train_costs"]) + 1), row["train_costs"], "-o", ms=3,
                        label=f"{varied} = {row[varied]:g}")
    curve_axes.set(xlabel="epoch", ylabel="train cost", yscale="log", title="train cost per epoch, every run")
    curve_axes.grid(alpha=0.3)
    curve_axes.legend(fontsize=8)
    top = best(results)
    for axes, what, scale in ((cost_axes, "cost", 1), (accuracy_axes, "accuracy", 100)):
        axes.plot(x, [scale * row[f"train_{what}"] for row in rows], "-o", label=f"train {what}")
        axes.plot(x, [scale * row[f"held_out_{what}"] for row in rows], "-s", label=f"{held_out} {what}")
        axes.plot([top[varied]], [scale * top[f"held_out_{what}"]], "*", ms=16, color="crimson",
                  label=f"best ({varied} = {top[varied]:g})")
        axes.set(xlabel=varied, ylabel=what + (" (%)" if scale == 100 else ""))
        if varied in ("l2", "lr") and min(x) >= 0 and max(x) > 0:
            positive = [v for v in x if v > 0]
            axes.set_xscale("symlog" if 0 in x else "log", **({"linthresh": min(positive)} if 0 in x else {}))
        axes.grid(alpha=0.3)
        axes.legend()
    figure.suptitle(f"sweep over {varied}: final {held_out} results (best = lowest {held_out} cost)")
    figure.tight_layout()
    try:
        return atomic_write(path, lambda temporary: figure.savefig(temporary, dpi=110, format="png"))
    finally:
        plt.close(figure)


def threads_per_run(workers, cores):
    """Split the cores between concurrent runs so the machine is not oversubscribed."""
    return max(1, math.floor(cores / max(1, workers)))
