"""Ablation-CAM (Desai & Ramaswamy, WACV 2020) with the region-summed logit score."""

from __future__ import annotations

import numpy as np

from segcam.methods.base import BaseCAM
from segcam.methods.registry import register_method


@register_method
class AblationCAM(BaseCAM):
    r"""Gradient-free: zero one channel of the layer at a time and measure the drop of the target score.

    .. math:: w_k = \frac{y - y_{\setminus k}}{|y| + \epsilon}, \qquad L = \mathrm{ReLU}\Big(\sum_k w_k A^k\Big)

    y is the summed class logit over the target region. Ablated copies run ``batch_size`` per forward.

    Args:
        batch_size: Ablated channels per forward pass.
    """

    name = "ablation_cam"
    uses_gradients = False

    def __init__(self, batch_size: int = 16) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size

    def cam(self, activations: np.ndarray, grads: np.ndarray | None, ctx: object = None) -> np.ndarray:
        if ctx is None:
            raise ValueError("ablation_cam needs the model: call it through segcam.explain")
        n, k = activations.shape[:2]
        out = np.zeros((n, *activations.shape[2:]), np.float32)
        for i in range(n):
            y = ctx.region_scores(i, ctx.x[i:i + 1])[0]
            dropped = np.concatenate([ctx.ablation_scores(i, list(range(j, min(k, j + self.batch_size))))
                                      for j in range(0, k, self.batch_size)])
            w = (y - dropped) / (abs(y) + 1e-7)
            out[i] = np.maximum(np.einsum("k,khw->hw", w, activations[i]), 0.0)
        return out
