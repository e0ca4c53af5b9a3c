"""nbnet's version (its own module, so any module can name it without importing the package)."""

__version__ = "0.1.0"
