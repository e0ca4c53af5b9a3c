"""evaluate, predict, gradcheck, info, and the bad-input table of the README (each row here)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from nbnet.cli import main
from nbnet.data import load_digits

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(result, code, fragment):
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert fragment in result.output, result.output


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "digits.npz"
    result = invoke("train", "--epochs", 10, "--save", path, "--plot", path.with_suffix(".png"), "-q")
    assert result.exit_code == 0, result.output
    return path


def save_png(array, path, invert=False, scale=1):
    """A uint8 image of `array` (values in [0, 1], 1 = ink), optionally dark on light and enlarged."""
    pixels = (255 * (1 - array if invert else array)).astype(np.uint8)
    image = Image.fromarray(pixels)
    if scale != 1:
        image = image.resize((array.shape[1] * scale, array.shape[0] * scale), Image.NEAREST)
    image.save(path)
    return path


# ----------------------------------------------------------------------------- evaluate
def test_evaluate_reports_accuracy_confusion_and_plots(digits_model, tmp_path):
    result = invoke("evaluate", digits_model, "--plot", tmp_path / "eval.png")
    assert result.exit_code == 0, result.output
    data = load_digits()
    assert f"({len(data.y_test)} images)" in result.output and "per-class accuracy" in result.output
    matrix = [line.split()[1:] for line in result.output.splitlines()[4:14]]
    counts = np.array(matrix, dtype=int)
    assert counts.shape == (10, 10) and counts.sum() == len(data.y_test)
    assert np.trace(counts) / counts.sum() >= 0.9
    for name in ("eval.png", "eval-mistakes.png", "eval-weights.png"):
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG")


def test_evaluate_refuses_mismatched_data(digits_model, tmp_path):
    from idx_files import write_mnist
    write_mnist(tmp_path)
    assert_one_line_error(invoke("evaluate", digits_model, "--dataset", "mnist", "--data-dir", tmp_path), 1,
                          "takes 64 inputs")


# ----------------------------------------------------------------------------- predict
def test_predict_digits_from_enlarged_dark_on_light_pngs(digits_model, tmp_path):
    data = load_digits()
    paths, truth = [], []
    for i in range(30):
        paths.append(save_png(data.X_test[i].reshape(8, 8), tmp_path / f"d{i}.png", invert=True, scale=6))
        truth.append(int(data.y_test[i]))
    result = invoke("predict", digits_model, "--invert", *paths)
    assert result.exit_code == 0, result.output
    said = [int(line.split(": ")[1].split()[0]) for line in result.output.splitlines()]
    assert np.mean(np.array(said) == np.array(truth)) >= 0.8


def test_predict_top_k_and_npy(digits_model, tmp_path):
    data = load_digits()
    index = next(i for i in range(len(data.y_test)) if data.y_test[i] == 3)
    np.save(tmp_path / "d.npy", data.X_test[index].reshape(8, 8))
    result = invoke("predict", digits_model, "--top-k", 3, tmp_path / "d.npy")
    assert result.exit_code == 0, result.output
    line = result.output.strip()
    assert line.count("%") == 3 and line.split(": ")[1].startswith("3 (")


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="shared MNIST copy not present")
def test_predict_real_mnist_digits_of_any_size(tmp_path):
    model = tmp_path / "mnist.npz"
    result = invoke("train", "--dataset", "mnist", "--data-dir", SHARED_MNIST, "--hidden", 100, "--epochs", 1,
                    "--save", model, "--plot", tmp_path / "p.png", "-q", "--threads", 1)  # (compiles no parallel kernel)
    assert result.exit_code == 0, result.output
    from nbnet.data import load_mnist
    data = load_mnist(SHARED_MNIST)
    paths = []
    for i in range(40):  # 3x larger, dark ink on white paper, off centre on a wider page
        digit = Image.fromarray((255 - 255 * data.X_test[i].reshape(28, 28)).astype(np.uint8)).resize((84, 84))
        page = Image.new("L", (150, 110), 255)
        page.paste(digit, (50, 20))
        page.save(tmp_path / f"m{i}.png")
        paths.append(tmp_path / f"m{i}.png")
    result = invoke("predict", model, "--invert", *paths)
    said = [int(line.split(": ")[1].split()[0]) for line in result.output.splitlines()]
    assert np.mean(np.array(said) == data.y_test[:40]) >= 0.9


# ----------------------------------------------------------------------------- gradcheck, info
@pytest.mark.parametrize("args", [[], ["--activation", "relu", "--cost", "quadratic", "--output", "sigmoid",
                                       "--l2", "2"], ["--hidden", "3", "--hidden", "4", "--activation", "tanh"]])
def test_gradcheck_passes_per_layer(args):
    result = invoke("gradcheck", *args)
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output and "W1" in result.output and "b1" in result.output


def test_gradcheck_fails_when_gradients_are_wrong(monkeypatch):
    from nbnet.network import Network
    real = Network.gradients

    def off_by_a_bit(self, *args, **kwargs):
        grads_W, grads_b = real(self, *args, **kwargs)
        grads_W[0] = grads_W[0] * 1.01
        return grads_W, grads_b

    monkeypatch.setattr(Network, "gradients", off_by_a_bit)
    result = invoke("gradcheck")
    assert result.exit_code == 1 and "FAIL" in result.output


def test_info_reports_versions_threads_and_cache():
    result = invoke("info")
    assert result.exit_code == 0, result.output
    for word in ("nbnet", "numba", "threading layer", "kernel cache"):
        assert word in result.output


# ----------------------------------------------------------------------------- bad input table
def test_bad_images_are_one_line_errors(digits_model, tmp_path):
    (tmp_path / "text.png").write_text("not an image")
    np.save(tmp_path / "nan.npy", np.full((8, 8), np.nan))
    np.save(tmp_path / "cube.npy", np.zeros((2, 8, 8)))
    np.save(tmp_path / "tiny.npy", np.ones((1, 1)))
    save_png(np.zeros((20, 20)), tmp_path / "blank.png")
    cases = [("text.png", "not a readable image"), ("missing.png", "no such file"), ("nan.npy", "NaN"),
             ("cube.npy", "2-D array"), ("tiny.npy", "cannot be fitted"), ("blank.png", "blank")]
    for name, fragment in cases:
        assert_one_line_error(invoke("predict", digits_model, tmp_path / name), 1, fragment)


def test_light_page_without_invert_gets_a_hint(digits_model, tmp_path):
    data = load_digits()
    path = save_png(data.X_test[0].reshape(8, 8), tmp_path / "page.png", invert=True, scale=4)
    assert_one_line_error(invoke("predict", digits_model, path), 1, "--invert")


def test_unwritable_outputs_are_one_line_errors(digits_model, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a directory")
    assert_one_line_error(invoke("train", "--epochs", 1, "--save", blocker / "m.npz", "--plot", tmp_path / "p.png"),
                          1, "cannot write")
    assert_one_line_error(invoke("train", "--epochs", 1, "--metrics", blocker / "m.csv", "--plot", tmp_path / "p.png"),
                          1, "cannot write")
    assert_one_line_error(invoke("evaluate", digits_model, "--plot", blocker / "e.png"), 1, "cannot write")


@pytest.mark.parametrize("args,fragment", [
    (["train", "--batch-size", "0"], "--batch-size"),
    (["train", "--checkpoint-every", "0"], "--checkpoint-every"),
    (["predict", "--top-k", "0", "m.npz", "x.png"], "--top-k"),
    (["gradcheck", "--hidden", "0"], "--hidden"),
    (["gradcheck", "--cost", "hinge"], "--cost"),
    (["evaluate", "m.npz", "--dataset", "cifar"], "--dataset"),
    (["gradcheck", "--l2", "nan"], "--l2"),
    (["sweep", "--lr", "0.1", "--lr", "inf"], "--lr"),
])
def test_bad_numbers_and_unknown_names_are_usage_errors(args, fragment):
    assert_one_line_error(invoke(*args), 2, fragment)


def test_unwritable_kernel_cache_warns_once_and_still_trains(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(blocker))
    result = subprocess.run([sys.executable, "-m", "nbnet", "train", "--epochs", "1", "--plot", str(tmp_path / "p.png")],
                            env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("is not writable") == 1 and "Traceback" not in result.stderr
