"""Writers of small IDX files for tests (the format MNIST uses)."""

import gzip

import numpy as np


def idx_bytes(array, magic=None):
    """IDX encoding of a uint8 array: magic (2049 for 1-d labels, 2051 for 3-d images), dims, data."""
    array = np.asarray(array, dtype=np.uint8)
    magic = magic if magic is not None else {1: 2049, 3: 2051}[array.ndim]
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def write_idx(path, array, magic=None, compress=True):
    content = idx_bytes(array, magic)
    if compress:
        with gzip.open(path, "wb") as handle:
            handle.write(content)
    else:
        path.write_bytes(content)
    return path


def write_mnist(directory, n_train=30, n_test=12, side=4, seed=0, compress=True):
    """A tiny but well-formed MNIST directory; returns the arrays written."""
    rng = np.random.default_rng(seed)
    suffix = ".gz" if compress else ""
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, side, side)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, side, side)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test),
    }
    for stem, array in arrays.items():
        write_idx(directory / (stem + suffix), array, compress=compress)
    return arrays
