"""Seg-XRes-CAM (Hasany, Petitjean & Meriaudeau, CVPR workshops 2023)."""

from __future__ import annotations

import numpy as np

from segcam.cam.methods.base import BaseCAM
from segcam.cam.methods.registry import register_method


@register_method
class SegXResCAM(BaseCAM):
    r"""Gradients average-pooled in s x s windows, upsampled back (nearest), times the activations.

    .. math:: L = \mathrm{ReLU}\Big(\sum_k U\big(\mathrm{Pool}_s(G^k)\big) \odot A^k\Big)

    ``pool=1`` gives Seg-HiRes-CAM; a pool as large as the map gives Seg-Grad-CAM (up to scale).

    Args:
        pool: Window size s in feature-map pixels.
    """

    name = "seg_xres_cam"
    display_name = "Seg-XRes-CAM"

    def __init__(self, pool: int = 2) -> None:
        if pool < 1:
            raise ValueError(f"pool must be >= 1, got {pool}")
        self.pool = pool

    def cam(self, activations: np.ndarray, grads: np.ndarray, ctx: object = None) -> np.ndarray:
        n, k, h, w = grads.shape
        s = self.pool
        hp, wp = -(-h // s) * s, -(-w // s) * s
        padded = np.full((n, k, hp, wp), np.nan, grads.dtype)
        padded[:, :, :h, :w] = grads
        pooled = np.nanmean(padded.reshape(n, k, hp // s, s, wp // s, s), axis=(3, 5))
        up = pooled.repeat(s, axis=2).repeat(s, axis=3)[:, :, :h, :w]
        return np.maximum((up * activations).sum(axis=1), 0.0).astype(np.float32)
