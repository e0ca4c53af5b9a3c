"""nbnet: a multi-layer perceptron whose backpropagation is readable loops compiled by Numba."""

from .network import Network
from .version import __version__

__all__ = ["Network", "__version__"]
