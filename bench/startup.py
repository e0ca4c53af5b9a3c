"""Cold and warm start of `nbnet train`: seconds from launching the command to the moment
training begins (the "Kernels ... in X s" note), first with an empty kernel cache (every
kernel compiled), then again with the cache the first run filled.

    python bench/startup.py                 # bundled digits
    python bench/startup.py --dataset mnist # MNIST from $NBNET_DATA_DIR or ../shared/data/mnist
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def launch(args, env):
    """Seconds until the kernels are ready, total seconds, and the kernel note."""
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "nbnet", "train", *args], cwd=HERE.parent, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ready, note = None, ""
    for line in process.stderr:
        if line.startswith("Kernels") and ready is None:
            ready, note = time.perf_counter() - start, line.strip()
    process.wait()
    if process.returncode != 0 or ready is None:
        sys.exit(f"nbnet train failed (exit code {process.returncode})")
    return ready, time.perf_counter() - start, note


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="digits", choices=["digits", "mnist"])
    parser.add_argument("--warm-runs", type=int, default=3)
    args = parser.parse_args()
    train_args = ["--epochs", "1", "--dataset", args.dataset, "--plot", os.devnull + ".png"]
    if args.dataset == "mnist":
        data_dir = os.environ.get("NBNET_DATA_DIR") or HERE.parent.parent / "shared" / "data" / "mnist"
        train_args += ["--data-dir", str(data_dir), "--hidden", "100"]
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as plots:
        train_args[train_args.index("--plot") + 1] = str(Path(plots) / "p.png")
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        print(f"nbnet train {' '.join(train_args)}   (NUMBA_CACHE_DIR={cache})")
        ready, total, note = launch(train_args, env)
        print(f"cold (empty cache):  training starts {ready:5.1f} s after launch, run {total:5.1f} s   [{note}]")
        for _ in range(args.warm_runs):
            ready, total, note = launch(train_args, env)
            print(f"warm (cache filled): training starts {ready:5.1f} s after launch, run {total:5.1f} s   [{note}]")


if __name__ == "__main__":
    main()
