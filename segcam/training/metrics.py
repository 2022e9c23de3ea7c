"""Segmentation metrics from a confusion matrix accumulated over all pixels (as PaddleSeg does)."""

from __future__ import annotations

import numpy as np

__all__ = ["ConfusionMatrix", "scores"]


class ConfusionMatrix:
    """Accumulates a ``num_classes x num_classes`` pixel confusion matrix (rows = truth).

    Args:
        num_classes: Number of classes.
        ignore_index: Ground-truth value skipped (PaddleSeg's 255).
    """

    def __init__(self, num_classes: int = 2, ignore_index: int = 255) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, pred: np.ndarray, label: np.ndarray) -> np.ndarray:
        """Add one prediction; returns that prediction's own confusion matrix.

        Raises:
            ValueError: If ``pred`` and ``label`` shapes differ.
        """
        pred = np.asarray(pred)
        label = np.asarray(label)
        if pred.shape != label.shape:
            raise ValueError(f"prediction shape {pred.shape} differs from label shape {label.shape}")
        keep = label != self.ignore_index
        idx = label[keep].astype(np.int64) * self.num_classes + pred[keep].astype(np.int64)
        one = np.bincount(idx, minlength=self.num_classes**2).reshape(self.num_classes, self.num_classes)
        self.matrix += one
        return one


def scores(matrix: np.ndarray, positive: int = 1) -> dict[str, float]:
    """mIoU, per-class IoU and precision / recall / F1 of the ``positive`` class.

    A class absent from both truth and prediction has IoU 1 (nothing to get
    wrong); precision, recall and F1 with an empty denominator are 0, except
    that an empty truth predicted empty gives recall/precision/F1 of 1.
    """
    m = np.asarray(matrix, dtype=np.float64)
    tp = np.diag(m)
    union = m.sum(0) + m.sum(1) - tp
    iou = np.where(union > 0, tp / np.maximum(union, 1), 1.0)
    tp_c = tp[positive]
    pred_c = m[:, positive].sum()
    true_c = m[positive].sum()
    if pred_c == 0 and true_c == 0:
        precision = recall = f1 = 1.0
    else:
        precision = tp_c / pred_c if pred_c else 0.0
        recall = tp_c / true_c if true_c else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    acc = tp.sum() / m.sum() if m.sum() else 1.0
    out = {"miou": float(iou.mean()), "crack_iou": float(iou[positive]), "precision": float(precision),
           "recall": float(recall), "f1": float(f1), "pixel_acc": float(acc)}
    out.update({f"iou_{c}": float(v) for c, v in enumerate(iou)})
    return out
