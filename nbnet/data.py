"""Image data sets: the bundled UCI 8x8 digits, and three sets of 28x28 images in MNIST's IDX
files (MNIST, Fashion-MNIST, Kuzushiji-MNIST), each with a checked download.

Every loader returns a `Dataset` with pixels scaled to [0, 1] in the requested dtype and
labels as int64 class ids. Problems with the files raise `DataError` with a one-line
message naming the file.
"""

import gzip
import hashlib
import os
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from .aligned import empty
from .files import MAX_DEFLATE_RATIO


class DataError(Exception):
    """A data file is missing, malformed or fails its checksum."""


@dataclass
class Dataset:
    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    image_shape: tuple  # None for a table of features (nbnet.tables)
    class_names: tuple = None  # the label of each class id; None: the digits 0..9
    targets: int = None  # a table of numeric targets (regression): how many per sample; y is then (n, targets)
    columns: object = None  # a table file's nbnet.tables.Columns: how its feature columns became X

    def label(self, class_id):
        return str(class_id) if self.class_names is None else self.class_names[class_id]

    @property
    def n_inputs(self):
        return self.X_train.shape[1]

    @property
    def n_classes(self):
        """The network's outputs: one per class, or per numeric target."""
        if self.targets is not None:
            return self.targets
        return 10 if self.class_names is None else len(self.class_names)

    def input_spec(self):
        """How inputs were made, stored with a model so `nbnet predict` can do the same (for
        images), and the names of its classes."""
        columns = {} if self.columns is None else dict(columns=self.columns.as_dict())
        if self.targets is not None:
            return dict(dataset=self.name, targets=self.targets, **columns)
        if self.image_shape is None:
            return dict(dataset=self.name, class_names=list(self.class_names), **columns)
        names = {} if self.class_names is None else dict(class_names=list(self.class_names))
        return dict(dataset=self.name, image_shape=list(self.image_shape), **INPUTS[self.name], **names)


# How each data set's images become network inputs: pixel values divided by pixel_max give
# [0, 1]; a digit's ink fills a square of digit_fraction of the image side, centred by its
# centre of mass (MNIST: 20x20 in 28x28; UCI digits: the whole 8x8 frame; a garment or a
# kana character: the whole 28x28 frame).
INPUTS = {
    "digits": dict(pixel_max=16.0, digit_fraction=1.0),
    "mnist": dict(pixel_max=255.0, digit_fraction=20 / 28),
    "fashion-mnist": dict(pixel_max=255.0, digit_fraction=1.0),
    "kmnist": dict(pixel_max=255.0, digit_fraction=1.0),
}


# ----------------------------------------------------------------------------- digits
def load_digits(test_fraction=0.2, seed=0, dtype="float32"):
    """The UCI optical-recognition digits (1797 8x8 images, values 0..16), bundled with nbnet,
    split into train and test by a seeded stratified split (each class keeps its proportion)."""
    with resources.files("nbnet").joinpath("data/digits.csv.gz").open("rb") as raw:
        table = np.loadtxt(gzip.open(raw), delimiter=",", dtype=np.int64)
    return Dataset("digits", *stratified_split((table[:, :-1] / 16.0).astype(dtype), table[:, -1], test_fraction,
                                               seed), (8, 8))


def hold_out(X, y, validation):
    """(X, y, X_validation, y_validation): the last N samples held out for validation, where
    N = validation, or that fraction of the samples when it is below 1."""
    held = int(round(validation * len(X))) if validation < 1 else int(validation)
    if not 1 <= held < len(X):
        raise DataError(f"a validation set of {validation:g} leaves no training or no validation samples of {len(X)}")
    return X[:-held], y[:-held], X[-held:], y[-held:]


@dataclass
class Split:
    """The arrays one training run uses: training samples, test samples, and the validation
    samples held out of the training set (None without validation)."""
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    X_validation: np.ndarray = None
    y_validation: np.ndarray = None
    image_shape: tuple = None  # (height, width) when the samples are images (what --augment distorts)


def split_for(data, train_size=None, validation=None):
    """The Split of a Dataset for a run: the first `train_size` training samples (all when
    None), with the last `validation` of them held out (see hold_out; none when None)."""
    X, y = data.X_train, data.y_train
    if train_size is not None:
        if train_size > len(X):
            raise DataError(f"--train-size {train_size} exceeds the {len(X)} training samples")
        X, y = X[:train_size], y[:train_size]
    if not validation:
        return Split(X, y, data.X_test, data.y_test, image_shape=data.image_shape)
    X, y, X_validation, y_validation = hold_out(X, y, validation)
    return Split(X, y, data.X_test, data.y_test, X_validation, y_validation, data.image_shape)


def stratified_split(X, y, test_fraction, seed):
    """(X_train, y_train, X_test, y_test): a seeded stratified split, test_fraction of every class held out."""
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test fraction must lie strictly between 0 and 1, got {test_fraction}")
    test = stratified_test_mask(y, test_fraction, seed)
    return X[~test], y[~test], X[test], y[test]


def stratified_test_mask(y, test_fraction, seed):
    """Boolean mask choosing round(test_fraction * count) samples of every class, at random."""
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), dtype=bool)
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        test[members[:int(round(test_fraction * len(members)))]] = True
    return test


# ----------------------------------------------------------------------------- MNIST (IDX)
MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
LABELS_MAGIC, IMAGES_MAGIC = 2049, 2051


@dataclass(frozen=True)
class IdxSet:
    """A data set stored as MNIST is (four IDX files, 28x28 images, ten classes): the mirrors
    it downloads from, tried in order, the SHA-256 of each file, and the names of its classes."""
    title: str
    mirrors: tuple
    sha256: dict
    class_names: tuple = None


# The mirrors torchvision uses. Fashion-MNIST's label files were checked against the copies in
# github.com/zalandoresearch/fashion-mnist; the other digests are torchvision's (Ruby port).
IDX_SETS = {
    "mnist": IdxSet("MNIST", (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ), {
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    }),
    "fashion-mnist": IdxSet("Fashion-MNIST", ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",), {
        "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    }, ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")),
    "kmnist": IdxSet("Kuzushiji-MNIST", ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",), {
        "train-images-idx3-ubyte.gz": "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4",
        "train-labels-idx1-ubyte.gz": "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17",
        "t10k-images-idx3-ubyte.gz": "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5",
        "t10k-labels-idx1-ubyte.gz": "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c",
    }, ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")),  # the hiragana お き す つ な は ま や れ を
}

# Pixels per image, known before loading (every IDX set is 28x28).
N_INPUTS = {"digits": 8 * 8, **{name: 28 * 28 for name in IDX_SETS}}


def default_data_dir(name="mnist"):
    """Where data set `name`'s IDX files are: for MNIST $NBNET_DATA_DIR, else
    ~/.cache/nbnet/mnist; for the others ~/.cache/nbnet/NAME."""
    if name == "mnist" and os.environ.get("NBNET_DATA_DIR"):
        return Path(os.environ["NBNET_DATA_DIR"])
    return Path.home() / ".cache" / "nbnet" / name


def find_idx(directory, stem, name="mnist"):
    """The path of STEM.gz or STEM in `directory`."""
    for file_name in (stem + ".gz", stem):
        if (Path(directory) / file_name).is_file():
            return Path(directory) / file_name
    raise DataError(f"{stem}(.gz) not found in {directory} (try: nbnet download {name} --data-dir {directory})")


def read_idx(path, magic):
    """The array stored in one IDX file (gzipped or raw), after checking its header.

    Header: 4-byte big-endian magic (2049 labels, 2051 images), then one 4-byte count per
    dimension, then unsigned bytes. The header is checked against the file's size before the
    data are read, so a header that declares more than the file can hold (2^31 images of
    2^16 x 2^16 pixels, say) is an error, not an allocation.
    """
    path = Path(path)
    n_dims = 1 if magic == LABELS_MAGIC else 3
    header_size = 4 + 4 * n_dims
    try:
        file_size = path.stat().st_size
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as handle:
            header = handle.read(header_size)
            if len(header) < 8:
                raise DataError(f"{path}: too short to be an IDX file")
            found = int.from_bytes(header[:4], "big")
            if found != magic:
                raise DataError(f"{path}: magic number {found}, expected {magic}")
            if len(header) < header_size:
                raise DataError(f"{path}: header truncated")
            dims = [int.from_bytes(header[4 + 4 * i: 8 + 4 * i], "big") for i in range(n_dims)]
            expected = int(np.prod(dims, dtype=object))
            room = file_size * (MAX_DEFLATE_RATIO if path.suffix == ".gz" else 1)
            if expected > room:
                raise DataError(f"{path}: header says {' x '.join(map(str, dims))} = {expected} bytes, "
                                f"more than a file of {file_size} bytes can hold")
            content = empty(expected, np.uint8)  # read straight into the array: no second copy in memory
            got = _read_into(handle, memoryview(content))
            more = handle.read(1)
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"{path}: cannot read ({error})") from None
    if got != expected or more:
        raise DataError(f"{path}: header says {' x '.join(map(str, dims))} = {expected} bytes, "
                        f"file holds {got if got < expected else 'more'}")
    return content.reshape(dims)


def _read_into(handle, buffer, chunk=1 << 20):
    """Fill `buffer` from `handle` a megabyte at a time (gzip's readinto makes a temporary copy
    of what it is asked for); the number of bytes read."""
    got = 0
    while got < len(buffer):
        n = handle.readinto(buffer[got:got + chunk])
        if not n:
            break
        got += n
    return got


def read_idx_pair(images_path, labels_path, dtype):
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if len(images) != len(labels):
        raise DataError(f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise DataError(f"{labels_path}: label {labels.max()} is out of range 0..9")
    if np.dtype(dtype) == np.uint8:  # the pixel bytes themselves (nbnet.pixels scales them as it trains)
        return images.reshape(len(images), -1), labels.astype(np.int64), images.shape[1:]
    X = empty((len(images), int(np.prod(images.shape[1:]))), dtype)  # aligned: see nbnet.aligned
    np.divide(images.reshape(len(images), -1), np.float32(255), out=X)
    return X, labels.astype(np.int64), images.shape[1:]


def load_idx_set(name, data_dir=None, dtype="float32"):
    """The four IDX files of data set `name` (a key of IDX_SETS) from `data_dir` (default:
    see default_data_dir). Inputs are pixel / 255 in `dtype`, or with dtype "uint8" the pixel
    bytes themselves (a quarter of the memory; nbnet's training and evaluation read them as
    pixel / 255)."""
    directory = Path(data_dir) if data_dir else default_data_dir(name)
    paths = {key: find_idx(directory, stem, name) for key, stem in MNIST_FILES.items()}
    X_train, y_train, shape = read_idx_pair(paths["train_images"], paths["train_labels"], dtype)
    X_test, y_test, test_shape = read_idx_pair(paths["test_images"], paths["test_labels"], dtype)
    if shape != test_shape:
        raise DataError(f"train images are {shape} but test images are {test_shape}")
    return Dataset(name, X_train, y_train, X_test, y_test, tuple(shape), IDX_SETS[name].class_names)


def load_mnist(data_dir=None, dtype="float32"):
    """The four standard MNIST IDX files from `data_dir` (default: see default_data_dir)."""
    return load_idx_set("mnist", data_dir, dtype)


def load_dataset(name, data_dir=None, test_fraction=0.2, seed=0, dtype="float32"):
    """Data set `name`: the digits, or an IDX set (whose dtype may be "uint8": see load_idx_set;
    the digits then come as float32)."""
    if name == "digits":
        return load_digits(test_fraction, seed, "float32" if dtype == "uint8" else dtype)
    if name in IDX_SETS:
        return load_idx_set(name, data_dir, dtype)
    raise DataError(f"unknown dataset {name!r}; choose digits, {', '.join(IDX_SETS)}")


# ----------------------------------------------------------------------------- download
def download(name="mnist", data_dir=None, mirrors=None, checksums=None, progress=None, timeout=30):
    """Fetch each missing file of IDX data set `name` into `data_dir`: stream to FILE.part,
    check its SHA-256, then rename into place. A file whose checksum does not match is deleted
    and the next mirror tried. `progress(file, done_bytes, total_bytes)` is called while bytes
    arrive. mirrors and checksums default to IDX_SETS[name]'s. Returns the directory."""
    mirrors = IDX_SETS[name].mirrors if mirrors is None else mirrors
    checksums = IDX_SETS[name].sha256 if checksums is None else checksums
    directory = Path(data_dir) if data_dir else default_data_dir(name)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"cannot create {directory}: {error.strerror}") from None
    for name, sha256 in checksums.items():
        target = directory / name
        if target.is_file() and _sha256(target) == sha256:
            continue
        failures = []
        for mirror in mirrors:
            failure = _fetch_checked(mirror + name, target, sha256, progress, timeout)
            if failure is None:
                break
            failures.append(failure)
        else:
            raise DataError(f"could not download {name}: " + "; ".join(failures))
    return directory


def _fetch_checked(url, target, sha256, progress, timeout):
    """Download url to target via target.part; return None on success or why it failed."""
    part = target.with_name(target.name + ".part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            while chunk := response.read(1 << 16):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress:
                    progress(target.name, done, total)
        if digest.hexdigest() != sha256:
            part.unlink()
            return f"{url}: SHA-256 mismatch"
        os.replace(part, target)
        return None
    except (urllib.error.URLError, OSError, ValueError) as error:
        part.unlink(missing_ok=True)
        return f"{url}: {getattr(error, 'reason', error)}"


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
