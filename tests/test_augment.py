"""Training on pixel bytes and on distorted images (--augment): the same model as float
inputs, the same bits for any thread count and after a resume, and the ways in."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest
from click.testing import CliRunner

from nbnet import Network
from nbnet.cli import main
from nbnet.data import Split, load_digits
from nbnet.options import TrainConfig
from nbnet.train import train

from interrupts import ctrl_c_in_epoch
from test_pixels import digit_like


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def same_parameters(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a.weights + a.biases, b.weights + b.biases))


def byte_split(n_train=90, n_test=30, side=8):
    """A Split of uint8 images (bright blobs) labelled by which quarter their blob is in."""
    X = digit_like(n_train + n_test, side, seed=5)
    ink = X.reshape(-1, side, side).astype(float)
    r, c = np.mgrid[0:side, 0:side]
    y = ((ink * r).sum((1, 2)) / ink.sum((1, 2)) > side / 2) * 2 + ((ink * c).sum((1, 2)) / ink.sum((1, 2)) > side / 2)
    return Split(X[:n_train], y[:n_train].astype(np.int64), X[n_train:], y[n_train:].astype(np.int64),
                 image_shape=(side, side))


def trained(split, config, threads=None):
    before = numba.get_num_threads()
    numba.set_num_threads(threads or numba.config.NUMBA_NUM_THREADS)
    try:
        net = config.network(split.X_train.shape[1], 4)
        return net, train(net, split, config)
    finally:
        numba.set_num_threads(before)


CONFIG = TrainConfig(hidden=(9,), batch_size=7, epochs=3, lr=0.3, optimizer="momentum", dropout=0.2, seed=2)


def test_pixel_bytes_train_the_same_model_as_their_float_inputs():
    split = byte_split()
    floats = Split(*(X.astype(np.float32) / np.float32(255) if X.dtype == np.uint8 else X
                     for X in (split.X_train, split.y_train, split.X_test, split.y_test)))
    for config in (CONFIG, CONFIG.but(optimizer="sgd", batch_size=1, train_metrics="running")):
        (a, history_a), (b, history_b) = trained(split, config), trained(floats, config)
        assert same_parameters(a, b)
        assert [m.test_cost for m in history_a] == [m.test_cost for m in history_b]
        assert [m.train_cost for m in history_a] == [m.train_cost for m in history_b]


def test_augmented_training_is_the_same_for_one_or_two_threads_and_differs_from_plain():
    split, config = byte_split(side=28), CONFIG.but(augment=True)
    one, history = trained(split, config, threads=1)
    assert same_parameters(one, trained(split, config, threads=2)[0])
    assert not same_parameters(one, trained(split, CONFIG)[0])
    assert not same_parameters(one, trained(split, config.but(elastic_alpha=20))[0])
    assert all(np.isfinite(m.test_cost) for m in history)


def test_augment_needs_images():
    split = byte_split()
    with pytest.raises(ValueError, match="no square image"):
        trained(Split(split.X_train[:, :60], split.y_train, split.X_test[:, :60], split.y_test), CONFIG.but(augment=True))


def test_an_augmented_run_resumed_equals_the_uninterrupted_run(tmp_path, monkeypatch):
    common = ["--epochs", 3, "--batch-size", 16, "--hidden", 12, "--augment", "--rotate", 15, "-q"]
    assert invoke("train", *common, "--save", tmp_path / "straight.npz", "--plot", tmp_path / "a.png").exit_code == 0
    ctrl_c_in_epoch(monkeypatch, 2)
    result = invoke("train", *common, "--save", tmp_path / "run.npz", "--checkpoint-every", 1,
                    "--metrics", tmp_path / "m.csv", "--plot", tmp_path / "b.png")
    assert result.exit_code == 130
    ctrl_c_in_epoch(monkeypatch, None)
    result = invoke("train", "--resume", tmp_path / "run.npz", "--save", tmp_path / "resumed.npz",
                    "--plot", tmp_path / "c.png", "-q")
    assert result.exit_code == 0, result.output
    assert same_parameters(Network.load(tmp_path / "straight.npz"), Network.load(tmp_path / "resumed.npz"))


def test_augment_on_a_table_is_a_one_line_error(tmp_path):
    data = load_digits()
    np.savez(tmp_path / "t.npz", X=data.X_train[:, :60], y=data.y_train)
    result = invoke("train", "--dataset", tmp_path / "t.npz", "--augment", "--plot", tmp_path / "p.png")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--augment distorts images" in result.output.strip().splitlines()[-1]
    result = invoke("augment-preview", "--dataset", tmp_path / "t.npz", "-o", tmp_path / "a.png")
    assert result.exit_code == 2 and "--augment distorts images" in result.output.strip().splitlines()[-1]
    assert not (tmp_path / "a.png").exists()


def test_the_pixel_loops_run_as_plain_python():
    """The loop bodies of nbnet.pixels run by the Python interpreter (NUMBA_DISABLE_JIT=1)
    against the NumPy/SciPy twin, on small images."""
    code = """if True:
        import numpy as np
        from nbnet import pixels, reference as R
        from nbnet.augment import Augmentation
        from test_pixels import digit_like
        X, order = digit_like(2, 6), np.arange(2)
        a = Augmentation(rotate=20, elastic_alpha=40, elastic_sigma=3)
        settings, taps = a.settings((6, 6)), a.taps((6, 6))
        for kernel in (pixels.distorted_rows, pixels.distort_naive):
            out = np.empty((2, 36), np.float32)
            kernel(X, order, 0, 6, 6, 255, 1, 2, settings, taps, out)
            np.testing.assert_allclose(out, R.distort(X, order, 6, 6, 255, 1, 2, settings, taps, np.float32), atol=1e-5)
        np.testing.assert_array_equal(pixels.inputs(X, np.float32), X.astype(np.float32) / np.float32(255))
        print('ok')"""
    env = dict(os.environ, NUMBA_DISABLE_JIT="1", PYTHONWARNINGS="ignore")
    result = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_augment_preview_draws_originals_beside_their_distortions(tmp_path):
    result = invoke("augment-preview", "--images", 3, "--epochs", 4, "--rotate", 20, "-o", tmp_path / "a.png")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"Preview: {tmp_path / 'a.png'}"
    from matplotlib.image import imread
    assert imread(tmp_path / "a.png").shape[1] > imread(tmp_path / "a.png").shape[0]  # 5 columns, 3 rows
    result = invoke("augment-preview", "--scale", 1.5, "-o", tmp_path / "b.png")
    assert result.exit_code == 2 and "--scale" in result.output and not (tmp_path / "b.png").exists()


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_the_estimators_augment_image_data():
    pytest.importorskip("sklearn")
    from nbnet.sklearn import MLPClassifier
    data = load_digits(dtype="float64")  # (float64, one thread, adam: the drivers test_sklearn.py compiles)
    X, y = data.X_train, data.y_train
    model = MLPClassifier(max_iter=8, random_state=0, threads=1, augment=True, learning_rate_init=0.003).fit(X, y)
    assert model.score(data.X_test, data.y_test) > 0.85
    again = MLPClassifier(**model.get_params()).fit(X, y)
    assert all(np.array_equal(a, b) for a, b in zip(model.coefs_, again.coefs_))  # seeded by random_state
    plain = MLPClassifier(**dict(model.get_params(), augment=False)).fit(X, y)
    assert not np.array_equal(plain.coefs_[0], model.coefs_[0])
    with pytest.raises(ValueError, match="needs solver 'sgd' or 'adam'"):
        MLPClassifier(solver="lbfgs", augment=True).fit(X, y)
    with pytest.raises(ValueError, match="no square image"):
        MLPClassifier(augment=True, max_iter=1).fit(X[:, :60], y)


def test_the_documented_augment_commands_run_as_written(tmp_path, monkeypatch):
    """The pages' augment-preview and recipe commands, as written but for the data directory
    (small 28x28 IDX files here), then what a user does next: look at the preview, evaluate
    the model."""
    from documents import documented
    from idx_files import write_mnist

    text = documented()
    preview = "augment-preview --dataset mnist --data-dir ../shared/data/mnist"
    recipe = re.search(r"nbnet (train --dataset mnist --data-dir \.\./shared/data/mnist [^\n]*--augment[^\n]*)", text)
    assert "nbnet " + preview in text and recipe
    (tmp_path / "mnist").mkdir()
    write_mnist(tmp_path / "mnist", n_train=64, n_test=16, side=28)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("nbnet.passes.PARALLEL_RUN_WORK", 10 ** 12)  # one-thread drivers: less to compile, same bits
    here = lambda command: [word.replace("../shared/data/mnist", str(tmp_path / "mnist")) for word in command.split()]  # noqa: E731
    result = invoke(*here(preview))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "plots" / "mnist-augment.png").read_bytes().startswith(b"\x89PNG")
    result = invoke(*here(recipe.group(1)))
    assert result.exit_code == 0, result.output
    saved = re.search(r"--save (\S+)", recipe.group(1)).group(1)
    evaluate = f"evaluate {saved} --plot augment-eval.png"
    assert "nbnet " + evaluate in text
    result = invoke(*evaluate.split())
    assert result.exit_code == 0, result.output
    assert "(16 images)" in result.output and (tmp_path / "augment-eval.png").read_bytes().startswith(b"\x89PNG")
