"""Seg-Score-CAM: Score-CAM (Wang et al., CVPR workshops 2020) with a segmentation region score."""

from __future__ import annotations

import numpy as np

from segcam.cam.methods.base import PerturbationCAM
from segcam.cam.methods.registry import register_method


@register_method
class SegScoreCAM(PerturbationCAM):
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
    display_name = "Seg-Score-CAM"

    def image_weights(self, i: int, activations: np.ndarray, ctx: object) -> np.ndarray:
        masks = ctx.upsample_unit(activations)  # K x H x W in [0, 1]
        base = ctx.region_scores(i, np.zeros_like(ctx.x[i:i + 1]), mean=True)[0]
        scores = np.concatenate([ctx.region_scores(i, ctx.x[i:i + 1] * masks[chans, None], mean=True)
                                 for chans in self.batches(len(activations))])
        s = scores - base
        w = np.exp(s - s.max())
        return w / w.sum()
