"""LayerCAM (Jiang et al., IEEE TIP 30, 2021) with the region-summed logit score."""

from __future__ import annotations

import numpy as np

from segcam.cam.methods.base import BaseCAM
from segcam.cam.methods.registry import register_method


@register_method
class LayerCAM(BaseCAM):
    r"""Positive gradients as per-location weights; reliable on early, high-resolution layers.

    .. math:: L = \mathrm{ReLU}\Big(\sum_k \mathrm{ReLU}(G^k) \odot A^k\Big)
    """

    name = "layer_cam"
    display_name = "LayerCAM"

    def cam(self, activations: np.ndarray, grads: np.ndarray, ctx: object = None) -> np.ndarray:
        return np.maximum((np.maximum(grads, 0) * activations).sum(axis=1), 0.0).astype(np.float32)
