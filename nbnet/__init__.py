"""nbnet: a multi-layer perceptron whose backpropagation is readable loops compiled by Numba."""

__version__ = "0.1.0"

from .network import Network  # noqa: E402

__all__ = ["Network", "__version__"]
