"""Model files: one `.npz` holding the weights, the biases and a JSON metadata string.

    W1, W2, ...   weights[m-1], shape (n_out, n_in)
    b1, b2, ...   biases[m-1],  shape (n_out,)
    optimizer_*   optimiser state (momentum, RMSprop, Adam), in checkpoints only
    best_W*, best_b*  the weights of the best validation epoch so far (early stopping), in
                  checkpoints only
    metadata      JSON: format and nbnet versions, configuration (sizes, activations, cost,
                  dtype), how inputs were prepared (dataset, image shape, pixel scale), the
                  training history and, for files written by `nbnet train`, the checkpoint
                  (epoch, options, random generator state) that `--resume` continues from.

Files load with `allow_pickle=False`: nothing in them can run code. Writes are atomic.
"""

import json
import zipfile

import numpy as np

from . import __version__
from .files import atomic_write
from .network import Network

FORMAT = "nbnet-model"
FORMAT_VERSION = 1


class ModelError(Exception):
    """A model file is missing, corrupt or from an incompatible version."""


def save_model(net, path, history=(), inputs=None, checkpoint=None, state=None):
    """Write `net` (and optional history rows, input description, checkpoint, and named
    optimiser-state arrays) to `path`."""
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "nbnet_version": __version__,
        "sizes": net.sizes,
        "activation": net.activation,
        "output": net.output,
        "cost": net.cost_name,
        "dtype": net.dtype.name,
        "init": net.init,
        "inputs": inputs,
        "history": [row if isinstance(row, dict) else row.as_dict() for row in history],
        "checkpoint": checkpoint,
    }
    arrays = {f"W{m}": W for m, W in enumerate(net.weights, 1)}
    arrays.update({f"b{m}": b for m, b in enumerate(net.biases, 1)})
    arrays.update(state or {})
    arrays["metadata"] = np.array(json.dumps(metadata))

    def write(temporary):
        with open(temporary, "wb") as handle:  # a file object, so numpy adds no ".npz"
            np.savez(handle, **arrays)

    return atomic_write(path, write)


def load_model(path):
    """(Network, metadata) from a file written by save_model; ModelError if it is not one.
    Optimiser-state and best-epoch arrays, if any, are in metadata["state"]."""
    try:
        with np.load(path, allow_pickle=False) as content:
            arrays = {name: content[name] for name in content.files}
    except FileNotFoundError:
        raise ModelError(f"{path}: no such model file") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise ModelError(f"{path}: not an nbnet model file ({type(error).__name__})") from None
    if not isinstance(arrays, dict) or "metadata" not in arrays:
        raise ModelError(f"{path}: not an nbnet model file (no metadata)")
    try:
        metadata = json.loads(str(arrays["metadata"]))
    except ValueError:
        raise ModelError(f"{path}: corrupt metadata") from None
    if metadata.get("format") != FORMAT:
        raise ModelError(f"{path}: not an nbnet model file")
    version = metadata.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelError(f"{path}: model format {version} written by nbnet {metadata.get('nbnet_version')}; "
                         f"this nbnet {__version__} reads format {FORMAT_VERSION}")
    try:
        net = Network(metadata["sizes"], activation=metadata["activation"], output=metadata["output"],
                      cost=metadata["cost"], dtype=metadata["dtype"], init=metadata.get("init"))
        L = len(net.sizes) - 1
        for m in range(1, L + 1):
            W, b = arrays[f"W{m}"], arrays[f"b{m}"]
            if W.shape != net.weights[m - 1].shape or b.shape != net.biases[m - 1].shape:
                raise ModelError(f"{path}: W{m} or b{m} does not match the sizes {net.sizes}")
            if not (np.all(np.isfinite(W)) and np.all(np.isfinite(b))):
                raise ModelError(f"{path}: W{m} or b{m} holds NaN or infinite values")
            net.weights[m - 1][...] = W
            net.biases[m - 1][...] = b
    except (KeyError, TypeError, ValueError) as error:
        raise ModelError(f"{path}: incomplete or inconsistent model ({error})") from None
    metadata["state"] = {name: array for name, array in arrays.items() if name.startswith(("optimizer_", "best_"))}
    return net, metadata
