"""kill -9 at random moments, inside epochs and inside checkpoint writes: the checkpoint is
always loadable, and `nbnet train --resume PATH` alone ends with the uninterrupted run's
weights, bit for bit (the harness is bench/chaos.py, which runs 50 kills on MNIST)."""

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from chaos import run_to_completion, same_weights  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from nbnet.cli import main  # noqa: E402


def test_random_kills_lose_nothing(tmp_path):
    train_args = ["--epochs", "6", "--hidden", "12", "--batch-size", "7"]
    straight = tmp_path / "straight.npz"  # (in this process: its kernels are loaded already)
    result = CliRunner().invoke(main, ["train", *train_args, "--save", str(straight), "-q", "--plot",
                                       str(tmp_path / "straight.png")])
    assert result.exit_code == 0, result.output
    tally = run_to_completion(train_args, tmp_path / "chaos.npz", 3, random.Random(4), slow=0.1, window=0.8)
    assert tally["kills"] >= 2 and tally["unloadable"] == 0, tally  # (a kill can come after the run ended)
    assert tally["resumed"] >= 1, tally  # (the second kill comes after two epoch rows: after a checkpoint)
    assert same_weights(straight, tmp_path / "chaos.npz")
    assert not list(tmp_path.glob(".chaos.npz.*"))  # what killed writes left, the later writes removed
