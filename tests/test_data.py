import gzip
import hashlib
import http.server
import os
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from nbnet.data import (DataError, download, load_digits, load_mnist, read_idx, stratified_test_mask)

from idx_files import idx_bytes, write_idx, write_mnist

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def test_digits_are_bundled_scaled_and_split_by_class():
    data = load_digits(test_fraction=0.2, seed=0)
    assert data.X_train.shape[1] == 64 and data.image_shape == (8, 8)
    assert len(data.X_train) + len(data.X_test) == 1797
    assert data.X_train.dtype == np.float32
    assert 0.0 <= data.X_train.min() and data.X_train.max() == 1.0
    train_counts = np.bincount(data.y_train, minlength=10)
    test_counts = np.bincount(data.y_test, minlength=10)
    # every class keeps its share: test fraction per class within one sample of 20 %
    assert np.all(np.abs(test_counts - 0.2 * (train_counts + test_counts)) <= 1)


def test_digits_split_is_seeded():
    a, b, c = load_digits(seed=1), load_digits(seed=1), load_digits(seed=2)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    np.testing.assert_array_equal(a.X_test, b.X_test)
    assert not np.array_equal(a.X_test, c.X_test)
    assert load_digits(dtype="float64").X_train.dtype == np.float64


def test_stratified_mask_rounds_per_class():
    y = np.array([0] * 10 + [1] * 5)
    mask = stratified_test_mask(y, 0.4, seed=0)
    assert mask[:10].sum() == 4 and mask[10:].sum() == 2


@pytest.mark.parametrize("compress", [True, False])
def test_mnist_reader_round_trip(tmp_path, compress):
    arrays = write_mnist(tmp_path, compress=compress)
    data = load_mnist(tmp_path, dtype="float64")
    assert data.image_shape == (4, 4)
    np.testing.assert_array_equal(data.y_train, arrays["train-labels-idx1-ubyte"])
    np.testing.assert_allclose(data.X_test, arrays["t10k-images-idx3-ubyte"].reshape(12, 16) / 255.0)
    assert data.X_train.dtype == np.float64 and data.X_train.max() <= 1.0


def corrupt(directory, stem, content):
    path = directory / (stem + ".gz")
    with gzip.open(path, "wb") as handle:
        handle.write(content)


CORRUPTIONS = {
    "wrong magic": ("train-labels-idx1-ubyte", lambda: idx_bytes(np.zeros(30), magic=2051), "magic number 2051"),
    "truncated": ("train-images-idx3-ubyte", lambda: idx_bytes(np.zeros((30, 4, 4)))[:-5], "file holds"),
    "short header": ("t10k-images-idx3-ubyte", lambda: (2051).to_bytes(4, "big") + b"\0\0", "too short"),
    "count mismatch": ("t10k-labels-idx1-ubyte", lambda: idx_bytes(np.zeros(11)), "12 images but"),
    "label 11": ("train-labels-idx1-ubyte", lambda: idx_bytes(np.full(30, 11)), "label 11 is out of range"),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_mnist_reader_rejects_corrupt_files_naming_them(tmp_path, case):
    write_mnist(tmp_path)
    stem, content, message = CORRUPTIONS[case]
    corrupt(tmp_path, stem, content())
    with pytest.raises(DataError) as error:
        load_mnist(tmp_path)
    text = str(error.value)
    assert message in text and stem in text and "\n" not in text


def test_mnist_reader_reports_missing_files_and_bad_gzip(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_mnist(tmp_path)
    bad = tmp_path / "x.gz"
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="cannot read"):
        read_idx(bad, 2049)


def test_mnist_dir_from_environment(tmp_path, monkeypatch):
    write_mnist(tmp_path)
    monkeypatch.setenv("NBNET_DATA_DIR", str(tmp_path))
    assert len(load_mnist().X_train) == 30


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="shared MNIST copy not present")
def test_real_mnist_loads():
    data = load_mnist(SHARED_MNIST)
    assert data.X_train.shape == (60000, 784) and data.X_test.shape == (10000, 784)
    assert set(np.unique(data.y_test)) == set(range(10))


# ----------------------------------------------------------------------------- download
class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def mirror(tmp_path):
    """An HTTP server on 127.0.0.1 serving a directory the test fills; yields (dir, base_url)."""
    served = tmp_path / "served"
    served.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def serve_mnist(served):
    write_mnist(served)
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in served.iterdir()}


def test_download_checks_and_renames_into_place(tmp_path, mirror):
    served, url = mirror
    checksums = serve_mnist(served)
    target = tmp_path / "mnist"
    seen = []
    download("mnist", target, mirrors=(url,), checksums=checksums, progress=lambda *a: seen.append(a))
    assert sorted(p.name for p in target.iterdir()) == sorted(checksums)
    assert len(load_mnist(target).X_train) == 30
    assert {name for name, _, _ in seen} == set(checksums)


def test_download_falls_back_to_next_mirror(tmp_path, mirror):
    served, url = mirror
    checksums = serve_mnist(served)
    download("mnist", tmp_path, mirrors=("http://127.0.0.1:9/nothing/", url), checksums=checksums, timeout=5)
    assert len(list(tmp_path.glob("*.gz"))) == 4


def test_download_checksum_mismatch_leaves_no_file(tmp_path, mirror):
    served, url = mirror
    checksums = serve_mnist(served)
    checksums["t10k-labels-idx1-ubyte.gz"] = "0" * 64
    target = tmp_path / "mnist"
    with pytest.raises(DataError, match="SHA-256 mismatch"):
        download("mnist", target, mirrors=(url,), checksums=checksums)
    names = {p.name for p in target.iterdir()}
    assert "t10k-labels-idx1-ubyte.gz" not in names
    assert not any(name.endswith(".part") for name in names)


def test_download_keeps_files_that_already_match(tmp_path, mirror):
    served, url = mirror
    checksums = serve_mnist(served)
    download("mnist", tmp_path, mirrors=(url,), checksums=checksums)
    for p in served.iterdir():
        os.unlink(p)  # the mirror is now empty: a second call must not need it
    download("mnist", tmp_path, mirrors=(url,), checksums=checksums)


def test_idx_writer_helper_matches_reader(tmp_path):
    path = write_idx(tmp_path / "a", np.arange(6).reshape(1, 2, 3), compress=False)
    np.testing.assert_array_equal(read_idx(path, 2051), np.arange(6).reshape(1, 2, 3))
