"""Training labels from a reviewer's verdicts: what a fine-tune may learn from a reviewed photo.

Per reviewed photo (one with a verdict or a missed-crack mark), a label image with PaddleSeg's classes
(0 background, 1 crack, :data:`IGNORE` = 255 not learned from):

* a **confirmed** crack's pixels are crack, and a band of :data:`BAND_PX` around its edge is ignored (where the
  prediction's edge and the true edge disagree by a pixel or two);
* a **rejected** crack's pixels are background;
* every **unreviewed** predicted pixel (cracks without a verdict, specks below the records' minimum area) and
  everything within :data:`NEAR_PX` of one is ignored: nobody said what it is;
* a **missed** crack marked by the reviewer is crack (its polyline at its width), with the same edge band ignored;
* every other pixel, far from any unreviewed prediction, is background (the reviewer saw the photo and did not
  mark a crack there).
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

__all__ = ["BAND_PX", "IGNORE", "NEAR_PX", "verdict_label"]

IGNORE = 255
#: Ignored band around confirmed and marked cracks, in pixels.
BAND_PX = 2
#: Ignored distance around unreviewed predicted pixels, in pixels (a crack's own evidence reaches about 8 px).
NEAR_PX = 8


def _within(mask: np.ndarray, px: float) -> np.ndarray:
    """Pixels within ``px`` of ``mask`` (Euclidean), ``mask`` included."""
    import cv2

    if not mask.any():
        return np.zeros(mask.shape, bool)
    dist = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return dist <= px


def verdict_label(prediction: np.ndarray, labels: np.ndarray, confirmed: Iterable[int], rejected: Iterable[int],
                  missed: np.ndarray | None = None) -> np.ndarray:
    """The label image of one reviewed photo (see the module docstring).

    Args:
        prediction: H x W bool, every predicted crack pixel (the run's ``<stem>__prediction.png``).
        labels: H x W crack ids of the run's records (``<stem>__cracks.npz``'s ``labels``).
        confirmed: Ids of the confirmed cracks.
        rejected: Ids of the rejected cracks.
        missed: H x W bool, the reviewer's marks of missed cracks (or None).

    Returns:
        H x W uint8: 0 background, 1 crack, 255 ignored.
    """
    prediction = np.asarray(prediction, bool)
    conf = np.isin(labels, np.fromiter(confirmed, np.int64)) if labels.size else np.zeros(prediction.shape, bool)
    rej = np.isin(labels, np.fromiter(rejected, np.int64)) if labels.size else np.zeros(prediction.shape, bool)
    crack = conf | (np.asarray(missed, bool) if missed is not None else False)
    out = np.zeros(prediction.shape, np.uint8)
    out[_within(prediction & ~conf & ~rej, NEAR_PX)] = IGNORE
    out[_within(crack, BAND_PX)] = IGNORE
    out[rej & ~_within(crack, BAND_PX)] = 0
    out[crack] = 1
    return out
