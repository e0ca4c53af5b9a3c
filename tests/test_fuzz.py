"""Property-based fuzzing (Hypothesis) of every reader of outside bytes: IDX files (raw and
gzipped), model files and images (PNG, .npy). From valid files, truncated, bit-flipped, with
headers declaring huge sizes, wrong dtypes and ranks, object arrays, NaN, and from arbitrary
bytes: every example either reads or ends in nbnet's own error (which the CLI prints as one
line, exit 1), never another exception, and never allocates far more than the file holds.

Derandomised, NBNET_FUZZ_EXAMPLES examples per reader (500 by default, in CI; the slow run:
NBNET_FUZZ_EXAMPLES=10000 python -m pytest tests/test_fuzz.py).
"""

import gzip
import io
import json
import os
import tracemalloc
import zipfile

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from nbnet import Network  # noqa: E402
from nbnet.data import DataError, read_idx  # noqa: E402
from nbnet.images import ImageError, read_image  # noqa: E402
from nbnet.model_file import ModelError  # noqa: E402

EXAMPLES = int(os.environ.get("NBNET_FUZZ_EXAMPLES", "500"))
FUZZ = settings(max_examples=EXAMPLES, derandomize=True, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def idx_images(n=3, side=4):
    dims = (n, side, side)
    return ((2051).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
            + np.arange(n * side * side, dtype=np.uint8).tobytes())


def model_bytes():
    buffer = io.BytesIO()
    net = Network([4, 3, 2], seed=0)
    metadata = dict(format="nbnet-model", format_version=2, nbnet_version="0", sizes=[4, 3, 2],
                    activation="sigmoid", output="softmax", cost="cross-entropy", dtype="float32", init=None)
    np.savez(buffer, metadata=np.array(json.dumps(metadata)), W1=net.weights[0], b1=net.biases[0],
             W2=net.weights[1], b2=net.biases[1])
    return buffer.getvalue()


def png_bytes():
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.tile(np.arange(16, dtype=np.uint8) * 16, (16, 1))).save(buffer, format="PNG")
    return buffer.getvalue()


def npy_bytes():
    buffer = io.BytesIO()
    np.save(buffer, np.linspace(0, 1, 64).reshape(8, 8))
    return buffer.getvalue()


@st.composite
def mutated(draw, seed):
    """`seed` truncated, bit-flipped, overwritten with large 4-byte numbers, extended, or
    replaced by arbitrary bytes."""
    data = bytearray(seed)
    kind = draw(st.sampled_from(["truncate", "flip", "big", "extend", "random", "several"]))
    steps = draw(st.integers(2, 6)) if kind == "several" else 1
    for _ in range(steps):
        step = kind if kind != "several" else draw(st.sampled_from(["truncate", "flip", "big"]))
        if step == "truncate":
            data = data[:draw(st.integers(0, max(0, len(data) - 1)))]
        elif step == "flip" and data:
            at = draw(st.integers(0, len(data) - 1))
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif step == "big" and len(data) >= 4:
            at = draw(st.integers(0, len(data) - 4))
            data[at:at + 4] = draw(st.sampled_from([2 ** 31, 2 ** 32 - 1, 2 ** 16, 2 ** 24])).to_bytes(4, "big")
        elif step == "extend":
            data += draw(st.binary(min_size=1, max_size=64))
        elif step == "random":
            data = bytearray(draw(st.binary(max_size=256)))
    return bytes(data)


def read_bounded(read, path, errors):
    """read(path) ends in one of `errors` or succeeds, allocating no more than the file warrants
    (deflate expands at most ~1032 times) plus a few MB of working space."""
    size = path.stat().st_size
    tracemalloc.start()
    try:
        read(path)
    except errors:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak <= 1100 * size + 16 * 2 ** 20, f"{peak} bytes allocated for a file of {size}"


@FUZZ
@given(data=st.one_of(mutated(idx_images()), mutated(idx_images(2, 28))), zipped=st.booleans())
def test_idx_reader(tmp_path, data, zipped):
    path = tmp_path / ("x-idx3-ubyte.gz" if zipped else "x-idx3-ubyte")
    path.write_bytes(gzip.compress(data) if zipped else data)
    read_bounded(lambda p: read_idx(p, 2051), path, DataError)


@FUZZ
@given(data=mutated(idx_images()))
def test_idx_reader_on_a_corrupt_gzip_stream(tmp_path, data):
    """The gzip layer itself damaged: truncated, bit-flipped (CRC, deflate blocks)."""
    packed = bytearray(gzip.compress(idx_images()))
    if data:
        at = len(data) % len(packed)
        packed[at] ^= data[0] | 1
    path = tmp_path / "x-idx3-ubyte.gz"
    path.write_bytes(bytes(packed[:len(packed) - len(data) % 7]))
    read_bounded(lambda p: read_idx(p, 2051), path, DataError)


@FUZZ
@given(data=mutated(model_bytes()))
def test_model_file_reader(tmp_path, data):
    path = tmp_path / "m.npz"
    path.write_bytes(data)
    read_bounded(Network.load_with_metadata, path, ModelError)


@FUZZ
@given(arrays=st.dictionaries(st.sampled_from(["metadata", "W1", "b1", "W2", "b2", "other"]),
                              st.sampled_from(["object", "int64", "nan", "rank3", "string", "huge-meta", "deep"]),
                              max_size=5))
def test_model_file_with_wrong_arrays(tmp_path, arrays):
    """Valid zip and .npy layers, wrong contents: object arrays, dtypes, ranks, NaN, odd metadata."""
    contents = dict(np.load(io.BytesIO(model_bytes()), allow_pickle=False))
    for name, kind in arrays.items():
        if kind == "object":
            contents[name] = np.array([{"a": 1}, None], dtype=object)
        elif kind == "int64":
            contents[name] = np.ones((3, 4), dtype=np.int64)
        elif kind == "nan":
            contents[name] = np.full((3, 4), np.nan, dtype=np.float32)
        elif kind == "rank3":
            contents[name] = np.zeros((2, 3, 4), dtype=np.float32)
        elif kind == "string":
            contents[name] = np.array("not json")
        elif kind == "huge-meta":
            contents[name] = np.array(json.dumps(dict(format="nbnet-model", format_version=2, sizes=[2 ** 20] * 3,
                                                      activation="sigmoid", output="softmax",
                                                      cost="cross-entropy", dtype="float32")))
        else:
            contents[name] = np.array("[" * 100_000 + "]" * 100_000)
    path = tmp_path / "m.npz"
    with open(path, "wb") as handle:
        np.savez(handle, **{name: value for name, value in contents.items() if value.dtype != object})
    if any(value.dtype == object for value in contents.values()):  # np.savez refuses nothing; write it raw
        with zipfile.ZipFile(path, "a") as archive:
            for name, value in contents.items():
                if value.dtype == object:
                    buffer = io.BytesIO()
                    np.save(buffer, value, allow_pickle=True)
                    archive.writestr(name + ".npy", buffer.getvalue())
    read_bounded(Network.load_with_metadata, path, ModelError)


@FUZZ
@given(data=st.one_of(mutated(png_bytes()), mutated(npy_bytes())), suffix=st.sampled_from([".png", ".npy"]))
def test_image_reader(tmp_path, data, suffix):
    path = tmp_path / ("digit" + suffix)
    path.write_bytes(data)
    read_bounded(read_image, path, ImageError)


def test_a_png_bomb_is_refused_from_its_header(tmp_path):
    """A PNG whose header declares 10,000 x 5,000 pixels, in a few kilobytes."""
    from PIL import Image

    Image.new("1", (10_000, 5_000)).save(tmp_path / "bomb.png")
    assert (tmp_path / "bomb.png").stat().st_size < 1_000_000
    with pytest.raises(ImageError, match="more than 40,000,000 pixels"):
        read_bounded(read_image, tmp_path / "bomb.png", ())
