"""Hyperparameter sweeps: one training run per combination of the swept option values, run
by any `concurrent.futures.Executor` (worker processes here, a Dask cluster with `nbnet[dask]`).

A run is a plain dict (`job`: a TrainConfig as a dict, the data directory and the threads it
may use), so any executor that can pickle a function and a dict can run `run_one`; results
come back as dicts in the order of the runs.
"""

import itertools
import math
import warnings

from .options import TrainConfig


def grid(base, values):
    """(the swept option names, one TrainConfig per combination of their values): `values`
    maps option names to the values to try; a name with one value sets it for every run."""
    swept = [name for name, tried in values.items() if len(tried) > 1]
    fixed = base.but(**{name: tried[0] for name, tried in values.items() if len(tried) == 1})
    return swept, [fixed.but(**dict(zip(swept, combination)))
                   for combination in itertools.product(*(values[name] for name in swept))]


def jobs(configs, data_dir, threads):
    """The plain dicts run_one takes."""
    return [dict(config=config.as_dict(), data_dir=str(data_dir) if data_dir else None, threads=threads)
            for config in configs]


def run_one(job):
    """Train one network as the job's config says; return its final train and held-out figures
    (and, as `warning`, a divergence warning's message, for the parent to print as one line)."""
    import numba

    from . import scaling
    from .data import split_for
    from .tables import load_any_dataset
    from .train import DivergenceWarning, train

    config = TrainConfig.from_dict(job["config"])
    numba.set_num_threads(min(job["threads"], numba.config.NUMBA_NUM_THREADS))
    data = load_any_dataset(config.dataset, job["data_dir"], config.test_fraction, config.seed, config.data_dtype,
                            config.label_column, config.targets, config.categorical)
    split = split_for(data, config.train_size, config.validation)
    net = config.network(data.n_inputs, data.n_classes)
    net.scaling = scaling.for_run(data, split, config, net.output)  # (as nbnet train's)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DivergenceWarning)
        history = train(net, split, config)
    diverging = [str(w.message) for w in caught if issubclass(w.category, DivergenceWarning)]
    for other in (w for w in caught if not issubclass(w.category, DivergenceWarning)):
        warnings.warn_explicit(other.message, other.category, other.filename, other.lineno)
    last = history[-1]
    held_out = "validation" if split.X_validation is not None else "test"
    return dict(job["config"], train_cost=last.train_cost, train_accuracy=last.train_accuracy, held_out=held_out,
                held_out_cost=getattr(last, f"{held_out}_cost"), held_out_accuracy=getattr(last, f"{held_out}_accuracy"),
                test_accuracy=last.test_accuracy, seconds=sum(m.seconds for m in history),
                train_costs=[m.train_cost for m in history], warning=diverging[0] if diverging else None)


def sweep(job_list, executor):
    """Results of run_one for every job, in order, run by `executor`."""
    return list(executor.map(run_one, job_list))


def prepare(job_list):
    """Compile, in this process, what the jobs will call (with the thread count each gets), so
    that the worker processes load it from the disk cache instead of all compiling the same
    kernels at once. Returns the seconds it took. A Dask cluster runs this once on every
    worker (nbnet sweep --scheduler)."""
    import time

    import numba

    from .train import optimizer_for
    from .warm import prepare_kernels

    start, threads, shapes = time.perf_counter(), numba.get_num_threads(), {}
    try:
        for job in job_list:
            config = TrainConfig.from_dict(job["config"])
            numba.set_num_threads(min(job["threads"], numba.config.NUMBA_NUM_THREADS))
            prepare_kernels(config.network(*data_shape(config, shapes)), config.batch_size, optimizer_for(config),
                            config.dropout, config.train_metrics, "matrix" if config.targets == "numbers" else "ids",
                            config.data_dtype == "uint8", config.augment)
    finally:
        numba.set_num_threads(threads)
    return time.perf_counter() - start


def data_shape(config, known):
    """(inputs, classes) of the config's data set: known beforehand for digits and the IDX sets;
    a .npz or .csv file is read once (`known` keeps what was read), since its shape decides
    whether the runs take the parallel drivers."""
    from .data import N_INPUTS
    from .tables import load_table

    if config.dataset in N_INPUTS:
        return N_INPUTS[config.dataset], 10
    key = (config.dataset, config.label_column, config.targets, config.categorical)
    if key not in known:
        data = load_table(config.dataset, config.test_fraction, config.seed, config.data_dtype, config.label_column,
                          config.targets, config.categorical)
        known[key] = data.n_inputs, data.n_classes
    return known[key]


def best(results):
    """The run with the lowest held-out cost."""
    return min(results, key=lambda row: row["held_out_cost"])


def shown(value):
    """A swept value as text: 500,300 for an architecture, 0.5 for a number."""
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def numeric(results, name):
    """True when the swept option `name` takes numbers (drawn on a log axis) rather than
    choices or architectures (drawn as categories)."""
    return all(isinstance(row[name], (int, float)) and not isinstance(row[name], bool) for row in results)


def plot_sweep(results, path, swept):
    """Final train and held-out cost and accuracy against the first swept option (one line per
    value of the second, when two are swept; bars side by side when the option takes choices
    or architectures), best run marked, and the train cost of every run epoch by
    epoch (a too large learning rate overshoots: its cost jumps about or climbs)."""
    from .plots import pyplot, save_figure

    plt = pyplot()

    first = swept[0] if swept else "l2"
    grouped = {}  # one line per value of the options after the first
    for row in results:
        grouped.setdefault(tuple(shown(row[name]) for name in swept[1:]), []).append(row)
    groups = list(grouped.values())
    held_out = results[0]["held_out"]
    figure, (cost_axes, accuracy_axes, curve_axes) = plt.subplots(1, 3, figsize=(16, 4.4))
    for row in results:
        label = ", ".join(f"{name} = {shown(row[name])}" for name in swept) or "run"
        curve_axes.plot(range(1, len(row["train_costs"]) + 1), row["train_costs"], "-o", ms=3, label=label)
    curve_axes.set(xlabel="epoch", ylabel="train cost", yscale="log", title="train cost per epoch, every run")
    curve_axes.legend(fontsize=7)
    for axes, what, scale in ((cost_axes, "cost", 1), (accuracy_axes, "accuracy", 100)):
        _final_results(axes, results, groups, swept, first, what, scale)
    for axes in (cost_axes, accuracy_axes, curve_axes):
        axes.grid(alpha=0.3)
    figure.suptitle(f"sweep over {' x '.join(swept) or 'one run'}: final {held_out} results "
                    f"(best = lowest {held_out} cost)")
    return save_figure(figure, path)


def _final_results(axes, results, groups, swept, first, what, scale):
    """One panel of plot_sweep: the final `what` (cost or accuracy, times `scale`) of every run
    against the first swept option, as lines over numbers or bars over categories."""
    x_values = [shown(row[first]) for row in groups[0]]
    categorical = not numeric(results, first)
    positions = list(range(len(x_values))) if categorical else [row[first] for row in groups[0]]
    held_out, top = results[0]["held_out"], best(results)
    series = [(rows, split) for rows in groups for split in ("train", "held_out")]
    width = 0.8 / len(series)  # categories: the bars of every series side by side around each tick
    for index, (rows, split) in enumerate(series):
        named = ", ".join(f"{name} = {shown(rows[0][name])}" for name in swept[1:])
        label = f"{split.replace('held_out', held_out)} {what}" + (f" ({named})" if named else "")
        heights = [scale * row[f"{split}_{what}"] for row in rows]
        if categorical:
            offset = (index - (len(series) - 1) / 2) * width
            bars = axes.bar([p + offset for p in positions[:len(rows)]], heights, width, label=label)
            axes.bar_label(bars, fmt="%.3g", fontsize=6)
        else:
            axes.plot(positions[:len(rows)], heights, "-o" if split == "train" else "-s", label=label)
    best_series = series.index((next(rows for rows in groups if top in rows), "held_out"))
    x_best = positions[x_values.index(shown(top[first]))] + (
        (best_series - (len(series) - 1) / 2) * width if categorical else 0)
    axes.plot([x_best], [scale * top[f"held_out_{what}"]], "*", ms=16, color="crimson",
              label="best: " + ", ".join(f"{n} = {shown(top[n])}" for n in swept))
    axes.set(xlabel=first, ylabel=what + (" (%)" if scale == 100 else ""))
    if categorical:
        axes.set_xticks(positions, x_values)
        if scale == 100:  # accuracies differ in their last percent: start the bars near the lowest
            low = min(scale * row[f"{split}_{what}"] for row in results for split in ("train", "held_out"))
            axes.set_ylim(bottom=max(0.0, low - 0.5 * (100 - low) - 1))
    elif min(positions) >= 0 and max(positions) > 0:
        nonzero = [v for v in positions if v > 0]
        axes.set_xscale("symlog" if 0 in positions else "log", **({"linthresh": min(nonzero)} if 0 in positions
                                                                   else {}))
    axes.legend(fontsize=7)


def threads_per_run(workers, cores):
    """Split the cores between concurrent runs so the machine is not oversubscribed."""
    return max(1, math.floor(cores / max(1, workers)))
