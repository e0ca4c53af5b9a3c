"""Reproduce nbnet's MNIST accuracy records: prints the test accuracy and the minutes taken.

    python bench/accuracy.py --recipe nielsen   # Nielsen's chapter-3 network: 784-100-10, lambda 5
    python bench/accuracy.py --recipe best      # 784-800-10 relu, momentum (no augmentation)
    python bench/accuracy.py --recipe wide-dropout   # 784-1000-1000-10, dropout 0.5: best without augmentation
    python bench/accuracy.py --recipe augment --seeds 2   # 784-800-800-10 on distorted images (--augment)
    python bench/accuracy.py --recipe nielsen --seeds 20   # seeds 0..19, with mean, sd, min and max

Each recipe is also given as the equivalent `nbnet train` command. MNIST comes from
--data-dir, $NBNET_DATA_DIR or ../shared/data/mnist.
"""

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402

from nbnet.data import load_mnist, split_for  # noqa: E402
from nbnet.options import TrainConfig  # noqa: E402
from nbnet.train import set_threads, train  # noqa: E402

MNIST = dict(dataset="mnist", output="softmax", activation="relu", init="he", optimizer="momentum", lr=0.05,
             schedule="cosine", train_size=60000)
RECIPES = {  # each a TrainConfig: exactly what `nbnet train` runs with the same options
    # Nielsen, "Neural Networks and Deep Learning", chapter 3: "97.92 percent on the validation
    # data". Like him, train on the first 50,000 images and report accuracy on the other 10,000
    # (his validation set) as well as on the test set; lambda/n is his, and so is the start
    # (net.large_weight_initializer(): N(0, 1) weights). His output layer is sigmoid with the
    # binary cross-entropy summed over the ten outputs.
    "nielsen": TrainConfig(dataset="mnist", hidden=(100,), activation="sigmoid", output="sigmoid", init="large",
                           optimizer="sgd", lr=0.5, l2=5.0, batch_size=10, epochs=30, train_size=50000),
    # 800 relu units (Simard et al. 2003 report 98.4 % for 800 hidden units, no augmentation)
    "best": TrainConfig(**MNIST, hidden=(800,), l2=5.0, batch_size=32, epochs=40),
    # the same with dropout on the hidden layer
    "best-dropout": TrainConfig(**MNIST, hidden=(800,), l2=5.0, batch_size=32, epochs=40, dropout=0.3),
    # towards the 98.8 % stretch goal: two wide relu layers, heavier dropout (Srivastava et al. 2014)
    "wide-dropout": TrainConfig(**MNIST, hidden=(1000, 1000), l2=1.0, batch_size=64, epochs=50, dropout=0.5),
    # distorted images (--augment: affine + elastic, drawn afresh each epoch; Simard et al. 2003
    # report 99.3 % for 784-800-10 so trained) through two hidden layers of 800
    "augment": TrainConfig(**MNIST, hidden=(800, 800), l2=1.0, batch_size=32, epochs=80, augment=True,
                           train_metrics="running"),
}


def command(recipe):
    """The `nbnet train` command line of a recipe: every option that differs from the default."""
    config, default = RECIPES[recipe], TrainConfig()
    words = ["nbnet train --data-dir DIR"]
    for name in config.differences(default):
        value = getattr(config, name)
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):  # a flag
            words.append(flag if value else "--no-" + flag[2:])
        else:
            words += [f"{flag} {size}" for size in value] if name == "hidden" else [f"{flag} {value}"]
    return " ".join(words)


def run(recipe, data, seed, verbose):
    """Train one network of `recipe` from `seed`; returns (test accuracy, best test accuracy
    of any epoch, validation accuracy or None, minutes in all, minutes training)."""
    config = RECIPES[recipe].but(seed=seed)
    net = config.network(784)
    start = time.perf_counter()
    split = split_for(data, config.train_size)
    history = train(net, split, config,
                    on_epoch=lambda m: verbose and print(f"  epoch {m.epoch:>3}: test accuracy {m.test_accuracy:.2%}, "
                                                         f"train cost {m.train_cost:.4f}", flush=True))
    minutes = (time.perf_counter() - start) / 60
    validation = None
    if config.train_size < len(data.X_train):  # the rest of the training file: Nielsen's validation set
        _, validation = net.evaluate(data.X_train[config.train_size:], data.y_train[config.train_size:])
    return (history[-1].test_accuracy, max(m.test_accuracy for m in history), validation, minutes,
            sum(m.seconds for m in history) / 60)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", choices=sorted(RECIPES), required=True)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=1, help="run seeds SEED..SEED+N-1 and summarise them")
    args = parser.parse_args()
    data_dir = args.data_dir or os.environ.get("NBNET_DATA_DIR") or HERE.parent.parent / "shared" / "data" / "mnist"
    r = RECIPES[args.recipe]  # a TrainConfig
    set_threads(None)
    data = load_mnist(data_dir, dtype="uint8")  # pixel bytes, as nbnet train reads them
    print(f"recipe {args.recipe}: {command(args.recipe)} --seed {args.seed}", flush=True)
    held_out = f"validation accuracy (training images {r.train_size:,}-{len(data.X_train) - 1:,})"
    results = []
    for seed in range(args.seed, args.seed + args.seeds):
        test, best, validation, minutes, training = run(args.recipe, data, seed, verbose=args.seeds == 1)
        results.append((test, validation))
        print(f"seed {seed}: test accuracy {test:.2%} after {r.epochs} epochs (best {best:.2%})"
              + (f"; {held_out} {validation:.2%}" if validation is not None else "")
              + f"; {minutes:.1f} minutes in all, {training:.1f} of them training", flush=True)
    if args.seeds > 1:
        for name, column in (("test accuracy", 0), (held_out, 1)):
            values = np.array([row[column] for row in results if row[column] is not None]) * 100
            if len(values):
                print(f"{name} over {len(values)} seeds: mean {values.mean():.2f} %, sd {values.std(ddof=1):.2f}, "
                      f"min {values.min():.2f} %, max {values.max():.2f} %")


if __name__ == "__main__":
    main()
