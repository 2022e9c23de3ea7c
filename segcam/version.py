"""segcam's version (a leaf module: manifests import it without importing the whole package)."""

__version__ = "0.3.1"
