"""Seg-Grad-CAM++: Grad-CAM++ (Chattopadhay et al., WACV 2018) with the region-summed logit score."""

from __future__ import annotations

import numpy as np

from segcam.methods.base import BaseCAM
from segcam.methods.registry import register_method


@register_method
class SegGradCAMPlusPlus(BaseCAM):
    r"""Pixel-weighted gradients, which favour several small activated regions (thin crack branches).

    .. math::
        a^k_{ij} = \frac{g^2}{2 g^2 + \sum_{ab} A^k_{ab}\, g^3}, \qquad
        w_k = \sum_{ij} a^k_{ij}\,\mathrm{ReLU}(g^k_{ij}), \qquad L = \mathrm{ReLU}\Big(\sum_k w_k A^k\Big)

    with g the gradient of the summed target logits (the exponential-score form used by pytorch-grad-cam).
    """

    name = "seg_grad_cam_pp"

    def weights(self, activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
        g2 = grads**2
        g3 = g2 * grads
        denom = 2 * g2 + activations.sum(axis=(2, 3), keepdims=True) * g3
        alpha = np.divide(g2, denom, out=np.zeros_like(g2), where=np.abs(denom) > 1e-12)
        return (alpha * np.maximum(grads, 0)).sum(axis=(2, 3))
