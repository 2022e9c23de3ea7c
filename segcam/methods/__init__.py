"""CAM methods, one per module, found by name through :func:`get_method`."""

from segcam.methods import seg_grad_cam  # noqa: F401  (registers the method)
from segcam.methods.base import BaseCAM
from segcam.methods.registry import METHODS, get_method, list_methods, register_method

__all__ = ["METHODS", "BaseCAM", "get_method", "list_methods", "register_method"]
