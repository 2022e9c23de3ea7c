"""CAM methods, one per module, found by name through :func:`get_method`."""

from segcam.cam.methods import (  # noqa: F401  (importing registers each method)
    ablation_cam,
    layer_cam,
    seg_eigen_cam,
    seg_grad_cam,
    seg_grad_cam_pp,
    seg_hires_cam,
    seg_score_cam,
    seg_xres_cam,
)
from segcam.cam.methods.base import BaseCAM
from segcam.cam.methods.registry import METHODS, display_name, get_method, list_methods, register_method

__all__ = ["METHODS", "BaseCAM", "display_name", "get_method", "list_methods", "register_method"]
