"""Seg-Grad-CAM++: Grad-CAM++ (Chattopadhay et al., WACV 2018) with the region-summed score."""

from __future__ import annotations

import warnings

import numpy as np

from segcam.cam.methods.base import BaseCAM
from segcam.cam.methods.registry import register_method

__all__ = ["GradCAMPlusPlusWarning", "SegGradCAMPlusPlus"]


class GradCAMPlusPlusWarning(UserWarning):
    """Grad-CAM++'s assumption (non-negative activations) fails at this layer; the affected weights are dropped."""


@register_method
class SegGradCAMPlusPlus(BaseCAM):
    r"""Pixel-weighted gradients, which favour several small activated regions (thin crack branches).

    .. math::
        a^k_{ij} = \frac{g^2}{2 g^2 + \sum_{ab} A^k_{ab}\, g^3}, \qquad
        w_k = \sum_{ij} a^k_{ij}\,\mathrm{ReLU}(g^k_{ij}), \qquad L = \mathrm{ReLU}\Big(\sum_k w_k A^k\Big)

    with g the gradient of the region-summed score Y. The paper derives a from the score
    ``exp(Y)`` of a network that is piecewise linear in A; that holds for a sum of logits over a
    region as for one logit (the exponential factors cancel), but it also assumes ``A >= 0``
    (post-ReLU feature maps). On a layer whose outputs can be negative (a BatchNorm output, or the
    logit map at ``seg_head``) the denominator changes sign where ``sum A < 0``: a negative ``a``
    flips that channel's weight and inverts the map (every pixel but the crack). Those ``a`` are set
    to 0 here, and a :class:`GradCAMPlusPlusWarning` says so; use a post-ReLU layer or another method.
    """

    name = "seg_grad_cam_pp"
    display_name = "Seg-Grad-CAM++"

    def weights(self, activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
        g2 = grads**2
        g3 = g2 * grads
        denom = 2 * g2 + activations.sum(axis=(2, 3), keepdims=True) * g3
        valid = denom > 1e-12
        flipped = (~valid) & (grads > 0)
        if flipped.any():
            share = float(flipped.sum() / max((grads > 0).sum(), 1))
            warnings.warn(f"seg_grad_cam_pp: this layer's activations are not all >= 0, so Grad-CAM++'s weights "
                          f"turn negative at {100 * share:.0f} % of the positive-gradient positions and would invert the "
                          "map; they were dropped. Prefer a post-ReLU layer or layer_cam/seg_grad_cam here.",
                          GradCAMPlusPlusWarning, stacklevel=2)
        alpha = np.divide(g2, denom, out=np.zeros_like(g2), where=valid)
        return (alpha * np.maximum(grads, 0)).sum(axis=(2, 3))
