"""Cross-entropy losses written for Paddle 3, registered in PaddleSeg's ``manager.LOSSES``.

PaddleSeg 2.8's ``CrossEntropyLoss`` and ``OhemCrossEntropyLoss`` fail on
Paddle 3 (int64/float32 type promotion), so these replace them under the same
names: a PaddleSeg YAML with ``type: OhemCrossEntropyLoss`` reads unchanged.
"""

from __future__ import annotations

import warnings

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

__all__ = ["CrossEntropyLoss", "DiceLoss", "MixedLoss", "OhemCrossEntropyLoss"]


def _pixel_ce(logit: paddle.Tensor, label: paddle.Tensor, ignore_index: int) -> tuple[paddle.Tensor, paddle.Tensor]:
    """Per-pixel CE (N*H*W) and the float mask of valid pixels."""
    if label.ndim == 4:
        label = label.squeeze(1)
    label = label.astype("int64")
    valid = label != ignore_index
    safe = paddle.where(valid, label, paddle.zeros_like(label))
    ce = F.cross_entropy(logit.transpose([0, 2, 3, 1]), safe.unsqueeze(-1), reduction="none").squeeze(-1)
    return ce.flatten(), valid.flatten().astype(ce.dtype)


class CrossEntropyLoss(nn.Layer):
    """Pixel cross-entropy over non-ignored pixels, optionally class-weighted.

    With ``weight = (w_0, w_1, ...)`` each pixel's loss is multiplied by the
    weight of its true class and the sum is divided by the summed weights of the
    valid pixels (PaddleSeg's and PyTorch's weighted mean), so a crack weight
    above 1 raises the price of a missed crack pixel without changing the loss
    scale on crack-free batches.

    Args:
        weight: One weight per class, or None for the plain mean.
        ignore_index: Label value excluded from the loss (PaddleSeg's 255).

    Raises:
        ValueError: If a weight is negative or all weights are zero.
    """

    def __init__(self, weight: list[float] | None = None, ignore_index: int = 255, **unused: object) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        if weight is not None:
            weight = [float(w) for w in weight]
            if min(weight) < 0 or sum(weight) <= 0:
                raise ValueError(f"CrossEntropyLoss weight {weight}: weights must be >= 0 and not all zero")
        self.weight = weight

    def forward(self, logit: paddle.Tensor, label: paddle.Tensor) -> paddle.Tensor:
        ce, valid = _pixel_ce(logit, label, self.ignore_index)
        if self.weight is not None:
            if len(self.weight) != logit.shape[1]:
                raise ValueError(f"CrossEntropyLoss has {len(self.weight)} class weights for {logit.shape[1]} classes")
            lab = label.squeeze(1) if label.ndim == 4 else label
            lab = paddle.where(lab == self.ignore_index, paddle.zeros_like(lab), lab).astype("int64").flatten()
            valid = valid * paddle.to_tensor(self.weight, dtype=ce.dtype)[lab]
        return (ce * valid).sum() / paddle.clip(valid.sum(), min=1e-6)


class OhemCrossEntropyLoss(nn.Layer):
    """Online hard example mining cross-entropy (PaddleSeg semantics).

    Pixels whose true-class probability is below ``max(thresh, p_k)`` are kept,
    where ``p_k`` is the ``min_kept``-th smallest true-class probability, so at
    least ``min_kept`` pixels always contribute.

    Args:
        thresh: Probability threshold (0.7 in PaddleSeg).
        min_kept: Minimum number of pixels kept per batch.
        ignore_index: Label value excluded from the loss.
    """

    def __init__(self, thresh: float = 0.7, min_kept: int = 10000, ignore_index: int = 255, **unused: object) -> None:
        super().__init__()
        self.thresh = thresh
        self.min_kept = min_kept
        self.ignore_index = ignore_index

    def forward(self, logit: paddle.Tensor, label: paddle.Tensor) -> paddle.Tensor:
        ce, valid = _pixel_ce(logit, label, self.ignore_index)
        n_valid = int(valid.sum())
        if n_valid == 0:
            return ce.sum() * 0.0
        with paddle.no_grad():
            prob = paddle.exp(-ce)  # probability of the true class
            prob = paddle.where(valid > 0, prob, paddle.ones_like(prob) * 2.0)
            threshold = self.thresh
            k = min(self.min_kept, n_valid)
            if k > 0:
                kth = float(paddle.sort(prob)[k - 1])
                threshold = max(threshold, kth)
            keep = (prob <= threshold).astype(ce.dtype) * valid
        return (ce * keep).sum() / paddle.clip(keep.sum(), min=1.0)


class DiceLoss(nn.Layer):
    """Soft Dice loss of one class over the batch, ignoring ``ignore_index`` pixels.

    ``1 - (2 * sum(p * g) + s) / (sum(p) + sum(g) + s)`` with ``p`` the softmax
    probability of ``class_id`` and ``g`` its one-hot label, summed over every
    valid pixel of the batch. Unlike pixel cross-entropy it weighs a thin crack
    by its overlap, not by its (small) pixel count, which is why crack papers add it
    to cross-entropy for recall on hairline cracks.

    Args:
        class_id: The class scored (1 = crack).
        smooth: ``s``, keeps the loss defined on crack-free batches.
        ignore_index: Label value excluded from the loss.
    """

    def __init__(self, class_id: int = 1, smooth: float = 1.0, ignore_index: int = 255, **unused: object) -> None:
        super().__init__()
        self.class_id = class_id
        self.smooth = smooth
        self.ignore_index = ignore_index

    def forward(self, logit: paddle.Tensor, label: paddle.Tensor) -> paddle.Tensor:
        if label.ndim == 4:
            label = label.squeeze(1)
        valid = (label != self.ignore_index).astype(logit.dtype)
        prob = F.softmax(logit, axis=1)[:, self.class_id] * valid
        target = (label == self.class_id).astype(logit.dtype) * valid
        inter = (prob * target).sum()
        return 1.0 - (2.0 * inter + self.smooth) / (prob.sum() + target.sum() + self.smooth)


class MixedLoss(nn.Layer):
    """Weighted sum of losses on the same output (PaddleSeg's returns a list, which breaks on Paddle 3).

    Args:
        losses: Loss layers (or ``{type: ...}`` dicts already built by the config builder).
        coef: One weight per loss.
    """

    def __init__(self, losses: list[nn.Layer], coef: list[float]) -> None:
        super().__init__()
        if len(losses) != len(coef):
            raise ValueError(f"MixedLoss got {len(losses)} losses but {len(coef)} coefficients")
        self.losses = nn.LayerList(losses)
        self.coef = [float(c) for c in coef]

    def forward(self, logit: paddle.Tensor, label: paddle.Tensor) -> paddle.Tensor:
        total = None
        for c, fn in zip(self.coef, self.losses):
            term = fn(logit, label.astype("int64")) * c
            total = term if total is None else total + term
        return total


def _register() -> None:
    try:
        from paddleseg.cvlibs import manager
    except ImportError:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PaddleSeg warns when a name is replaced: that is the point here.
        manager.LOSSES.add_component([CrossEntropyLoss, DiceLoss, OhemCrossEntropyLoss, MixedLoss])


_register()
