"""Ablation-CAM (Desai & Ramaswamy, WACV 2020) with the region-summed logit score."""

from __future__ import annotations

import numpy as np

from segcam.cam.methods.base import PerturbationCAM
from segcam.cam.methods.registry import register_method


@register_method
class AblationCAM(PerturbationCAM):
    r"""Gradient-free: zero one channel of the layer at a time and measure the drop of the target score.

    .. math:: w_k = \frac{y - y_{\setminus k}}{|y| + \epsilon}, \qquad L = \mathrm{ReLU}\Big(\sum_k w_k A^k\Big)

    y is the summed class logit over the target region. Ablated copies run ``batch_size`` per forward.

    Args:
        batch_size: Ablated channels per forward pass.
    """

    name = "ablation_cam"
    display_name = "Ablation-CAM"

    def image_weights(self, i: int, activations: np.ndarray, ctx: object) -> np.ndarray:
        y = ctx.region_scores(i, ctx.x[i:i + 1])[0]
        dropped = np.concatenate([ctx.ablation_scores(i, chans) for chans in self.batches(len(activations))])
        return (y - dropped) / (abs(y) + 1e-7)
