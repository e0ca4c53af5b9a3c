"""Chaos test of checkpoints and resumption: SIGKILL `nbnet train --save PATH --checkpoint-every 1`
at random moments, check that PATH is loadable after every kill, resume with
`nbnet train --resume PATH` alone until the run finishes, and compare the final weights with
an uninterrupted run's, bit for bit. Prints the tally.

A kill -9 runs no handler (the out-of-memory killer, a preempted cluster node). To land kills
inside checkpoint writes as well as inside epochs, the child process sleeps for --slow seconds
just before and just after every rename onto an output file (the moments between writing the
temporary file and renaming it, and between the rename and the directory sync).

    python bench/chaos.py --kills 50                      # MNIST (784-30-10, 6 epochs), ~5 minutes
    python bench/chaos.py --kills 3 --dataset digits      # what tests/test_chaos.py runs
"""

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = """
import os, sys, time
slow = float(os.environ["NBNET_CHAOS_SLOW"])
real_replace = os.replace
def slow_replace(source, target):
    time.sleep(slow)  # written and fsynced, not yet renamed
    real_replace(source, target)
    time.sleep(slow)  # renamed, directory not yet synced
os.replace = slow_replace
from nbnet.cli import main
main(sys.argv[1:], prog_name="nbnet")
"""


def run_to_completion(train_args, path, kills, rng, slow, window, log=print):
    """Start `nbnet train *train_args --save path --checkpoint-every 1`, kill it up to `kills`
    times at random moments, resuming with `--resume path` alone after each kill; then let it
    finish. A kill lands after 0, 1 or 2 of the run's epoch rows (a row is printed before its
    epoch's checkpoint is written, so a kill after two rows always finds one) and a random
    further wait of up to `window` seconds. Returns the tally."""
    env = dict(os.environ, NBNET_CHAOS_SLOW=str(slow))
    tally = dict(kills=0, unloadable=0, resumed=0, restarted=0)
    first = ["train", *train_args, "--save", str(path), "--checkpoint-every", "1", "-q"]
    command = first
    for attempt in range(kills + 1):
        child = subprocess.Popen([sys.executable, "-c", CHILD, *command], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, env=env, cwd=path.parent)
        if attempt < kills and rows_read(child.stdout, rng.randrange(3)):
            time.sleep(rng.uniform(0, window))
            child.send_signal(signal.SIGKILL)
        output = child.communicate()[0]  # (the last run, or one that ended before its kill: all of it)
        killed = child.returncode == -signal.SIGKILL
        if child.returncode not in (0, -signal.SIGKILL):
            raise RuntimeError(f"a run failed ({child.returncode}):\n{output}")
        tally["kills"] += killed
        if not path.exists():
            command = first  # killed before the first checkpoint: start again
            tally["restarted"] += killed
        elif not loadable(path):
            tally["unloadable"] += 1
            log(f"run {attempt + 1}: {path} is not loadable")
            command = first
        else:
            command = ["train", "--resume", str(path), "-q"]
            tally["resumed"] += killed
        if not killed:
            return tally
    raise AssertionError("unreachable: the last run is never killed")


def rows_read(stdout, rows):
    """Read the run's output up to its header (kernels loaded, training starts) and `rows`
    epoch rows after it; False when the run ended first."""
    started = False
    for line in stdout:
        if line.lstrip().startswith("epoch"):
            started = True
        elif started and line.lstrip()[:1].isdigit():
            rows -= 1
        if started and rows <= 0:
            return True
    return False


def loadable(path):
    from nbnet import Network
    from nbnet.model_file import ModelError

    try:
        Network.load_with_metadata(path)
        return True
    except ModelError:
        return False


def same_weights(a, b):
    import numpy as np

    from nbnet import Network

    x, y = Network.load(a), Network.load(b)
    return all(np.array_equal(p, q) for p, q in zip(x.weights + x.biases, y.weights + y.biases))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--dataset", choices=["mnist", "digits"], default="mnist")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill times")
    parser.add_argument("--slow", type=float, default=0.2, help="seconds of sleep around each rename")
    args = parser.parse_args()
    if args.dataset == "mnist":
        sys.path.insert(0, str(HERE))
        from epoch import mnist_dir

        train_args = ["--dataset", "mnist", "--data-dir", str(args.data_dir or mnist_dir()), "--hidden", "30",
                      "--epochs", "6", "--train-size", "20000"]
        window = 1.0
    else:
        train_args, window = ["--epochs", "6", "--hidden", "12", "--batch-size", "7"], 0.8
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as directory:
        straight, chaotic = Path(directory) / "straight.npz", Path(directory) / "chaos.npz"
        subprocess.run([sys.executable, "-m", "nbnet", "train", *train_args, "--save", str(straight), "-q",
                        "--plot", str(Path(directory) / "straight.png")], check=True, capture_output=True)
        start = time.perf_counter()
        tally = dict(kills=0)
        while tally["kills"] < args.kills:  # several runs, each killed up to 5 times, so kills land in every epoch
            chaotic.unlink(missing_ok=True)
            part = run_to_completion(train_args, chaotic, min(5, args.kills - tally["kills"]), rng, args.slow, window)
            part["identical"] = int(same_weights(straight, chaotic))
            part["runs"] = 1
            for key, value in part.items():
                tally[key] = tally.get(key, 0) + value
            print(f"{tally['kills']}/{args.kills} kills: {tally}", flush=True)
    print(f"chaos: {tally['kills']} kills in {tally['runs']} runs ({time.perf_counter() - start:.0f} s): "
          f"{tally['unloadable']} unloadable files, {tally['resumed']} resumed from a checkpoint, "
          f"{tally['restarted']} restarted before the first; {tally['identical']}/{tally['runs']} runs ended "
          f"bit-identical to the uninterrupted run")


if __name__ == "__main__":
    main()
