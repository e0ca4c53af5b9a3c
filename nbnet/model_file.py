"""Model files: one `.npz` holding the weights, the biases and a JSON metadata string.

    W1, W2, ...   weights[m-1], shape (n_out, n_in)
    b1, b2, ...   biases[m-1],  shape (n_out,)
    optimizer_*   optimiser state (momentum, RMSprop, Adam), in checkpoints only
    best_W*, best_b*  the weights of the best validation epoch so far (early stopping), in
                  checkpoints only
    metadata      JSON: format and nbnet versions, configuration (sizes, activations, cost,
                  dtype), how inputs were prepared (dataset, image shape, pixel scale), the
                  training history and, for files written by `nbnet train`, the checkpoint
                  (epoch, the run's TrainConfig, random generator state) that `--resume`
                  continues from.

Files load with `allow_pickle=False`: nothing in them can run code. Writes are atomic. This
module knows the format only; Network.save and Network.load (nbnet.network) turn a network
into arrays and back and check that they fit together.
"""

import json

import numpy as np

from .files import NUMPY_FILE_ERRORS, atomic_write, load_npz
from .version import __version__

FORMAT = "nbnet-model"
# 2: the checkpoint holds the run's TrainConfig as "config". 1 (read, upgraded on loading): it
# held the options of `nbnet train` as "options", in the same names.
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)


class ModelError(Exception):
    """A model file is missing, corrupt or from an incompatible version."""


def write_model_file(path, arrays, metadata):
    """Write named arrays and a JSON metadata dict (format and version added) to `path`, atomically."""
    metadata = dict(format=FORMAT, format_version=FORMAT_VERSION, nbnet_version=__version__, **metadata)
    content = dict(arrays, metadata=np.array(json.dumps(metadata)))

    def write(temporary):
        with open(temporary, "wb") as handle:  # a file object, so numpy adds no ".npz"
            np.savez(handle, **content)

    return atomic_write(path, write)


def read_model_file(path):
    """(named arrays, metadata) of a file written by write_model_file, in the current format
    (older versions upgraded); ModelError if it is not one."""
    try:
        arrays = load_npz(path)
    except FileNotFoundError:
        raise ModelError(f"{path}: no such model file") from None
    except NUMPY_FILE_ERRORS as error:
        raise ModelError(f"{path}: not an nbnet model file ({type(error).__name__})") from None
    if "metadata" not in arrays:
        raise ModelError(f"{path}: not an nbnet model file (no metadata)")
    try:
        metadata = json.loads(str(arrays.pop("metadata")))
    except (ValueError, RecursionError):
        raise ModelError(f"{path}: corrupt metadata") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ModelError(f"{path}: not an nbnet model file")
    version = metadata.get("format_version")
    if version not in READABLE_VERSIONS:
        raise ModelError(f"{path}: model format {version} written by nbnet {metadata.get('nbnet_version')}; "
                         f"this nbnet {__version__} reads formats {', '.join(map(str, READABLE_VERSIONS))}")
    if version == 1 and metadata.get("checkpoint"):
        metadata["checkpoint"]["config"] = metadata["checkpoint"].pop("options")
    metadata["format_version"] = FORMAT_VERSION
    return arrays, metadata
