"""Seg-Eigen-CAM (Chung & Ying, Applied Sciences 15(13) 7562, 2025)."""

from __future__ import annotations

import numpy as np

from segcam.cam.methods.base import BaseCAM
from segcam.cam.methods.registry import register_method


@register_method
class SegEigenCAM(BaseCAM):
    r"""First principal component of the gradient-weighted activations.

    ``|G| * A`` is reshaped to (pixels x channels), centred, and projected on its first right
    singular vector; the sign is chosen so that the largest magnitude is positive, then ReLU.
    """

    name = "seg_eigen_cam"
    display_name = "Seg-Eigen-CAM"

    def cam(self, activations: np.ndarray, grads: np.ndarray, ctx: object = None) -> np.ndarray:
        n, k, h, w = activations.shape
        out = np.zeros((n, h, w), np.float32)
        for i in range(n):
            x = (np.abs(grads[i]) * activations[i]).reshape(k, -1).T.astype(np.float64)
            x -= x.mean(axis=0, keepdims=True)
            if not np.any(x):
                continue
            _, _, vt = np.linalg.svd(x, full_matrices=False)
            proj = x @ vt[0]
            if abs(proj.min()) > abs(proj.max()):
                proj = -proj
            out[i] = np.maximum(proj.reshape(h, w), 0.0)
        return out
