"""Seg-Grad-CAM (Vinogradova, Dibrov & Myers, AAAI 2020 student abstract, arXiv 2002.11434)."""

from __future__ import annotations

import numpy as np

from segcam.cam.methods.base import BaseCAM
from segcam.cam.methods.registry import register_method


@register_method
class SegGradCAM(BaseCAM):
    r"""Grad-CAM with the class score replaced by the summed logits of a region M.

    .. math::
        \alpha_k^c = \frac{1}{Z}\sum_{u,v} \frac{\partial \sum_{(i,j)\in M} y^c_{ij}}{\partial A^k_{uv}},
        \qquad L^c = \mathrm{ReLU}\Big(\sum_k \alpha_k^c A^k\Big)
    """

    name = "seg_grad_cam"
    display_name = "Seg-Grad-CAM"

    def weights(self, activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
        return grads.mean(axis=(2, 3))
