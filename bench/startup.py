"""Time to result: wall time of whole `nbnet train` commands, as a user waits for them.

1. Cold start: each command run with an empty kernel cache (NUMBA_CACHE_DIR), so every
   kernel it uses is compiled; the median of --repeats runs. Reported: seconds from launch
   until training starts (the "Kernels ... in X s" note) and until the command exits; and,
   in turns with those runs, until training starts when one process compiles everything
   (NBNET_COMPILE_HELPER=0: no helper process for the backward half, see nbnet/warm.py).
2. Warm start: the default command again with the cache the cold runs filled.
3. Monitoring: Nielsen's chapter-3 run on MNIST (784-100-10, 30 epochs, batch 10, lr 0.5,
   L2 5) with each --train-metrics choice; the ratio of the whole command's wall time to the
   sum of the epochs' training seconds is what monitoring and start-up cost on top of
   training (1.0 would be free).
4. Compile time per function: the default command in one process with an empty cache, each
   compiled function's own seconds of compiling (Numba's compile events; callees not counted);
   then the same for the MNIST 784-100-10 command of section 1 (its parallel kernels).

    python bench/startup.py                    # all four; MNIST from $NBNET_DATA_DIR or ../shared/data/mnist
    python bench/startup.py --json bench/startup.json
    python bench/startup.py --skip-monitoring  # digits only
"""

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

MNIST = ["--dataset", "mnist", "--hidden", "100", "--epochs", "1"]
COLD = [  # (label, nbnet train arguments)
    ("default (digits, 30 epochs)", []),
    ("--optimizer adam --dropout 0.2", ["--optimizer", "adam", "--dropout", "0.2"]),
    ("--dtype float64", ["--dtype", "float64"]),
    ("mnist --hidden 100 --epochs 1", MNIST),
    ("--kernels loops --epochs 3", ["--kernels", "loops", "--epochs", "3"]),
]
NIELSEN = ["--dataset", "mnist", "--hidden", "100", "--epochs", "30", "--batch-size", "10", "--lr", "0.5",
           "--l2", "5"]


def mnist_dir():
    return Path(os.environ.get("NBNET_DATA_DIR") or HERE.parent.parent / "shared" / "data" / "mnist")


def launch(args, cache, plots, helper=True):
    """(seconds until training starts, seconds until exit, sum of the epochs' training seconds)."""
    if "mnist" in args:
        args = [*args, "--data-dir", str(mnist_dir())]
    metrics = Path(plots) / "m.csv"
    command = [sys.executable, "-m", "nbnet", "train", *args, "--plot", str(Path(plots) / "p.png"),
               "--metrics", str(metrics)]
    start = time.perf_counter()
    env = dict(os.environ, NUMBA_CACHE_DIR=cache, NBNET_COMPILE_HELPER="1" if helper else "0")
    process = subprocess.Popen(command, cwd=HERE.parent, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ready = None
    for line in process.stderr:
        if line.startswith("Kernels") and ready is None:
            ready = time.perf_counter() - start
    process.wait()
    total = time.perf_counter() - start
    if process.returncode != 0 or ready is None:
        sys.exit(f"failed (exit code {process.returncode}): {' '.join(command)}")
    with open(metrics) as handle:
        training = sum(float(row["seconds"]) for row in csv.DictReader(handle))
    return ready, total, training


def median_of(repeats, args, cold, cache, plots, helper=True):
    runs = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as fresh:
            runs.append(launch(args, fresh if cold else cache, plots, helper))
    return [statistics.median(column) for column in zip(*runs)]


def cold_in_turns(repeats, args, plots):
    """Medians of (training starts, exits) with the compile helper, and of training starts
    without it, the two run in turns."""
    runs = [[], []]
    for _ in range(repeats):
        for helper in (True, False):
            runs[not helper].append(median_of(1, args, True, None, plots, helper))
    with_helper = [statistics.median(column) for column in zip(*runs[0])]
    return with_helper[0], with_helper[1], statistics.median(run[0] for run in runs[1])


# Section 4: the default command in one process (no helper) and an empty cache, with Numba's
# compile events timed: seconds of each compiled function's own compiling (its callees' not
# counted), the largest first.
COMPILE_TABLE = """
import collections, sys, time
from numba.core import event
stack, totals = [], collections.Counter()

class Listener(event.Listener):
    def on_start(self, ev):
        stack.append([ev.data["dispatcher"].py_func, time.perf_counter(), 0.0])

    def on_end(self, ev):
        function, start, inner = stack.pop()
        seconds = time.perf_counter() - start
        if stack:
            stack[-1][2] += seconds
        totals[f"{function.__module__}.{function.__qualname__}"] += seconds - inner

event.register("numba:compile", Listener())
from nbnet.cli import main
try:
    main(["train", "-q", "--plot", sys.argv[1], *sys.argv[3:]])
except SystemExit:
    pass
print(sum(totals.values()))
for name, seconds in totals.most_common(int(sys.argv[2])):
    print(f"{seconds:.2f} {name}")
"""


def compile_table(plots, rows=12, args=()):
    """(total seconds, [(seconds, function)]) of compiling the default command (with `args`) in one process."""
    if "mnist" in args:
        args = [*args, "--data-dir", str(mnist_dir())]
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, NBNET_COMPILE_HELPER="0")
        out = subprocess.run([sys.executable, "-c", COMPILE_TABLE, str(Path(plots) / "table.png"), str(rows), *args],
                             env=env, capture_output=True, text=True, check=True).stdout.split("\n")
    lines = [line for line in out if line.strip()][-(rows + 1):]
    return float(lines[0]), [(float(seconds), name) for seconds, name in (line.split(" ", 1) for line in lines[1:])]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="runs per cold and warm figure (median)")
    parser.add_argument("--skip-monitoring", action="store_true", help="no MNIST monitoring runs")
    parser.add_argument("--skip-cold", action="store_true", help="no cold starts (warm and monitoring only)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    parser.add_argument("--skip-compile-table", action="store_true", help="no compile time per function")
    args = parser.parse_args()
    import numba

    results = dict(machine=f"{platform.machine()}, {os.cpu_count()} cores", numba=numba.__version__,
                   repeats=args.repeats, cold=[], warm=None, monitoring=[])
    print(f"nbnet bench/startup.py: {results['machine']}, numba {numba.__version__}; medians of {args.repeats} runs")
    print(f"{'cold start (empty kernel cache)':<40} {'training starts':>16} {'command exits':>14} "
          f"{'one process':>12} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as plots:
        for label, train_args in [] if args.skip_cold else COLD:
            if "mnist" in train_args and not mnist_dir().is_dir():
                print(f"{label:<40} skipped: no MNIST in {mnist_dir()}")
                continue
            ready, total, alone = cold_in_turns(args.repeats, train_args, plots)
            results["cold"].append(dict(command=label, training_starts=ready, exits=total,
                                        training_starts_one_process=alone))
            print(f"{label:<40} {ready:>14.1f} s {total:>12.1f} s {alone:>10.1f} s {ready / alone:>6.2f}")
        launch([], cache, plots)  # fill the cache
        ready, total, _ = median_of(args.repeats, [], False, cache, plots)
        results["warm"] = dict(command="default (digits, 30 epochs)", training_starts=ready, exits=total)
        print(f"{'warm start: default (digits, 30 epochs)':<40} {ready:>14.1f} s {total:>12.1f} s")
        if not args.skip_monitoring and mnist_dir().is_dir():
            print(f"\nmonitoring: nbnet train {' '.join(NIELSEN)} (warm cache)")
            print(f"{'--train-metrics':<16} {'wall s':>8} {'training s':>11} {'wall / training':>16}")
            for choice in ("full", "running", "none"):  # fill the cache: each choice compiles its own variant
                launch([*NIELSEN, "--epochs", "1", "--train-metrics", choice], cache, plots)  # (last --epochs counts)
            for choice in ("full", "running", "none"):
                _, total, training = launch([*NIELSEN, "--train-metrics", choice], cache, plots)
                results["monitoring"].append(dict(train_metrics=choice, wall=total, training=training,
                                                  ratio=total / training))
                print(f"{choice:<16} {total:>8.1f} {training:>11.1f} {total / training:>16.2f}")
        if not args.skip_compile_table:
            tables = [("default command", [], "compile")]
            if mnist_dir().is_dir():
                tables.append(("mnist --hidden 100 --epochs 1 command", MNIST, "compile_mnist"))
            for label, train_args, key in tables:
                total, rows = compile_table(plots, args=train_args)
                results[key] = dict(total=total, functions=[dict(seconds=t, function=name) for t, name in rows])
                print(f"\ncompiling the {label} in one process (NBNET_COMPILE_HELPER=0, empty cache): {total:.1f} s "
                      f"of CPU; each function's own seconds (not its callees'), the largest {len(rows)}:")
                for seconds, name in rows:
                    print(f"{seconds:6.2f} s  {name}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
