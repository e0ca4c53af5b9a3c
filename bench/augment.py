"""What pixel bytes and augmentation cost: MNIST epoch seconds of `train()` with float32
inputs, with uint8 pixel bytes (scaled as each block is gathered) and with bytes + --augment
(Simard's distortions, the defaults), measured in the same run; and the peak memory (RSS) of
a whole `nbnet train` run on bytes against the same run on float32 inputs.

Each variant trains in a child process of its own (kernels compiled or loaded before the
clock starts); the variants take turns, round after round, so a slow spell of this shared
machine hits them alike. Prints median epoch seconds and the ratios to the float32 epoch.

    python bench/augment.py                    # MNIST from $NBNET_DATA_DIR or ../shared/data/mnist
    python bench/augment.py --rounds 3 --epochs 2
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from epoch import mnist_dir  # noqa: E402

CONFIGS = [((100,), 10), ((800,), 32)]  # (hidden layers, batch size)
VARIANTS = ("float32", "bytes", "augment")

EPOCHS = """
import sys, numpy as np
from nbnet.data import load_mnist, split_for
from nbnet.options import TrainConfig
from nbnet.train import train
hidden, batch_size, epochs = eval(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
data_dir, variant = sys.argv[4], sys.argv[5]
data = load_mnist(data_dir, dtype="float32" if variant == "float32" else "uint8")
config = TrainConfig(dataset="mnist", hidden=hidden, batch_size=batch_size, lr=0.1, epochs=epochs + 1,
                     train_metrics="none", augment=variant == "augment")
net = config.network(784)
for m in train(net, split_for(data), config)[1:]:  # (the first epoch warms caches and pages)
    print(m.seconds)
"""

# the peak RSS of a whole run: `nbnet train` itself, or the same run with float32 inputs
PEAK = """
import resource, sys
from nbnet.cli import main
import nbnet.cli.train, nbnet.data
if sys.argv[1] == "float32":  # what nbnet train did before pixel bytes: load float32 inputs
    load = nbnet.cli.train.load_any_dataset
    nbnet.cli.train.load_any_dataset = lambda name, d, f, s, dtype, *rest: load(name, d, f, s, "float32", *rest)
try:
    main(sys.argv[2:])
except SystemExit:
    pass
print("PEAK", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""

# what a process holds before any data: the imports and Numba's first (cached) compiled call
BASE = """
import resource
import numpy as np
from nbnet.cli import main
from nbnet import pixels
pixels.inputs(np.zeros((1, 4), np.uint8), np.float32)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def child(code, *args):
    result = subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=HERE.parent, capture_output=True,
                            text=True, check=True)
    return result.stdout.split()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="turns each variant takes per configuration")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per turn")
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    data_dir = args.data_dir or mnist_dir()
    print(f"MNIST epoch seconds of train(): float32 inputs, pixel bytes, bytes + --augment; medians of "
          f"{args.rounds} x {args.epochs} epochs, turns alternating")
    print(f"{'network':<14} {'batch':>5} {'float32 s':>10} {'bytes s':>8} {'augment s':>10} {'bytes/f32':>10} "
          f"{'augment/f32':>12}")
    for hidden, batch_size in CONFIGS:
        seconds = {variant: [] for variant in VARIANTS}
        for _ in range(args.rounds):
            for variant in VARIANTS:
                seconds[variant] += map(float, child(EPOCHS, repr(hidden), batch_size, args.epochs, data_dir, variant))
        f, b, a = (statistics.median(seconds[variant]) for variant in VARIANTS)
        name = "-".join(map(str, (784, *hidden, 10)))
        print(f"{name:<14} {batch_size:>5} {f:>10.3f} {b:>8.3f} {a:>10.3f} {b / f:>10.2f} {a / f:>12.2f}", flush=True)
    print("\nPeak RSS of `nbnet train --dataset mnist --hidden 100 --epochs 1` (784-100-10), MB:")
    with tempfile.TemporaryDirectory() as scratch:
        command = ["train", "--dataset", "mnist", "--data-dir", data_dir, "--hidden", 100, "--epochs", 1, "-q",
                   "--plot", Path(scratch) / "cost.png"]
        for variant in ("float32", "bytes"):
            name = "float32 inputs (before)" if variant == "float32" else "pixel bytes (now)"
            print(f"  {name:<24} {float(child(PEAK, variant, *command)[-1]):8.0f}")
    print(f"  of which before any data: Python, NumPy, Numba and a first compiled call {float(child(BASE)[-1]):8.0f}")


if __name__ == "__main__":
    main()
