"""Reproduce nbnet's MNIST accuracy records: prints the test accuracy and the minutes taken.

    python bench/accuracy.py --recipe nielsen   # Nielsen's chapter-3 network: 784-100-10, lambda 5
    python bench/accuracy.py --recipe best      # nbnet's best plain MLP recipe (no augmentation)

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

from nbnet import Network  # noqa: E402
from nbnet.data import load_mnist  # noqa: E402
from nbnet.optimizers import Optimizer  # noqa: E402
from nbnet.schedules import learning_rate  # noqa: E402
from nbnet.train import prepare_kernels, set_threads, train  # noqa: E402

RECIPES = {
    # Nielsen, "Neural Networks and Deep Learning", chapter 3: 97.92 %. Like him, train on the
    # first 50,000 images (his other 10,000 are a validation set), so lambda/n is his.
    # His output layer is sigmoid with the binary cross-entropy summed over the ten outputs.
    "nielsen": dict(hidden=[100], activation="sigmoid", output="sigmoid", init="scaled", optimizer="sgd", lr=0.5, l2=5.0,
                    batch_size=10, epochs=30, schedule="constant", train_size=50000),
    # 800 relu units (Simard et al. 2003 report 98.4 % for 800 hidden units, no augmentation)
    "best": dict(hidden=[800], activation="relu", output="softmax", init="he", optimizer="momentum", lr=0.05, l2=5.0,
                 batch_size=32, epochs=40, schedule="cosine", train_size=60000),
    # the same with dropout on the hidden layer
    "best-dropout": dict(hidden=[800], activation="relu", output="softmax", init="he", optimizer="momentum", lr=0.05,
                         l2=5.0, batch_size=32, epochs=40, schedule="cosine", train_size=60000, dropout=0.3),
}


def command(recipe):
    r = RECIPES[recipe]
    return ("nbnet train --dataset mnist --data-dir DIR " + " ".join(f"--hidden {h}" for h in r["hidden"])
            + f" --activation {r['activation']} --output {r['output']} --init {r['init']} --optimizer {r['optimizer']} --lr {r['lr']} "
              f"--l2 {r['l2']} --batch-size {r['batch_size']} --epochs {r['epochs']} --schedule {r['schedule']}"
              f" --train-size {r['train_size']}" + (f" --dropout {r['dropout']}" if r.get("dropout") else ""))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", choices=sorted(RECIPES), required=True)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data_dir = args.data_dir or os.environ.get("NBNET_DATA_DIR") or HERE.parent.parent / "shared" / "data" / "mnist"
    r = RECIPES[args.recipe]
    set_threads(None)
    prepare_kernels("float32")
    data = load_mnist(data_dir)
    print(f"recipe {args.recipe}: {command(args.recipe)} --seed {args.seed}", flush=True)
    net = Network([784, *r["hidden"], 10], activation=r["activation"], output=r["output"], init=r["init"],
                  seed=args.seed)
    start = time.perf_counter()
    X, y = data.X_train[:r["train_size"]], data.y_train[:r["train_size"]]
    history = train(net, X, y, data.X_test, data.y_test, epochs=r["epochs"],
                    batch_size=r["batch_size"], lr=r["lr"], l2=r["l2"], seed=args.seed,
                    optimizer=Optimizer(r["optimizer"]), dropout=r.get("dropout", 0.0),
                    schedule=lambda epoch: learning_rate(r["schedule"], r["lr"], epoch, r["epochs"]),
                    on_epoch=lambda m: print(f"  epoch {m.epoch:>3}: test accuracy {m.test_accuracy:.2%}, "
                                             f"train cost {m.train_cost:.4f}", flush=True))
    minutes = (time.perf_counter() - start) / 60
    training_minutes = sum(m.seconds for m in history) / 60
    print(f"test accuracy {history[-1].test_accuracy:.2%} after {r['epochs']} epochs "
          f"(best {max(m.test_accuracy for m in history):.2%}); {minutes:.1f} minutes in all, "
          f"{training_minutes:.1f} of them training")


if __name__ == "__main__":
    main()
