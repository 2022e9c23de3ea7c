"""Seg-Score-CAM: Score-CAM (Wang et al., CVPR workshops 2020) with a segmentation region score."""

from __future__ import annotations

import numpy as np

from segcam.methods.base import BaseCAM
from segcam.methods.registry import register_method


@register_method
class SegScoreCAM(BaseCAM):
    r"""Gradient-free: each channel's [0, 1]-scaled map masks the input; the score rise weighs it.

    .. math::
        H_k = \mathrm{norm}(\mathrm{Up}(A^k)),\quad s_k = f(x \odot H_k) - f(x_b),\quad
        w = \mathrm{softmax}(s),\quad L = \mathrm{ReLU}\Big(\sum_k w_k A^k\Big)

    f is the **mean** class logit over the target region (the mean keeps the softmax from saturating
    on large regions); x_b is the all-grey baseline (0 after normalisation). Masked inputs are
    forwarded ``batch_size`` at a time.

    Args:
        batch_size: Masked inputs per forward pass (1 = one channel at a time).
    """

    name = "seg_score_cam"
    uses_gradients = False

    def __init__(self, batch_size: int = 16) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size

    def cam(self, activations: np.ndarray, grads: np.ndarray | None, ctx: object = None) -> np.ndarray:
        if ctx is None:
            raise ValueError("seg_score_cam needs the model: call it through segcam.explain")
        n, k = activations.shape[:2]
        out = np.zeros((n, *activations.shape[2:]), np.float32)
        for i in range(n):
            masks = ctx.upsample_unit(activations[i])  # K x H x W in [0, 1]
            base = ctx.region_scores(i, np.zeros_like(ctx.x[i:i + 1]), mean=True)[0]
            scores = np.concatenate([
                ctx.region_scores(i, ctx.x[i:i + 1] * masks[j:j + self.batch_size, None], mean=True)
                for j in range(0, k, self.batch_size)])
            s = scores - base
            w = np.exp(s - s.max())
            w /= w.sum()
            out[i] = np.maximum(np.einsum("k,khw->hw", w, activations[i]), 0.0)
        return out
