"""Seg-HiRes-CAM (Draelos & Carin 2020; segmentation form: Rheude et al., MELBA 2024)."""

from __future__ import annotations

import numpy as np

from segcam.cam.methods.base import BaseCAM
from segcam.cam.methods.registry import register_method


@register_method
class SegHiResCAM(BaseCAM):
    r"""Element-wise gradient times activation, no spatial averaging: keeps where each channel mattered.

    .. math:: L = \mathrm{ReLU}\Big(\sum_k \frac{\partial \sum_{M} y^c}{\partial A^k} \odot A^k\Big)
    """

    name = "seg_hires_cam"
    display_name = "Seg-HiRes-CAM"

    def cam(self, activations: np.ndarray, grads: np.ndarray, ctx: object = None) -> np.ndarray:
        return np.maximum((grads * activations).sum(axis=1), 0.0).astype(np.float32)
