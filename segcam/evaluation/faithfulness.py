"""Faithfulness and localisation metrics for segmentation CAMs.

* :func:`energy_pointing_game`: share of the map's energy inside the ground-truth crack (plus a band).
* :func:`pointing_game`: does the map's maximum fall on the crack (within a tolerance)?
* :func:`deletion_insertion`: RISE-style curves; the score is the region logit or the IoU of the
  re-predicted crack mask with the original prediction.
* :func:`road`: ROAD (Rong et al., ICML 2022): remove pixels by noisy linear imputation instead of a
  constant, MoRF and LeRF, combined as ``mean_p (LeRF_p - MoRF_p) / 2`` (higher is better).
* :func:`randomization_check`: maps of the trained and of a re-initialised model should differ
  (Adebayo et al., NeurIPS 2018).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import cv2
import numpy as np
import paddle

from segcam.cam.engine import main_logits
from segcam.data.images import normalize

__all__ = ["CurveResult", "deletion_insertion", "energy_pointing_game", "noisy_linear_imputation", "pointing_game",
           "randomization_check", "road", "spearman", "target_sensitivity"]


def _band(truth: np.ndarray, tolerance: int) -> np.ndarray:
    truth = np.asarray(truth) > 0
    if tolerance <= 0:
        return truth
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * tolerance + 1, 2 * tolerance + 1))
    return cv2.dilate(truth.astype(np.uint8), kernel).astype(bool)


def _check(cam: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cam = np.asarray(cam, dtype=np.float64)
    truth = np.asarray(truth)
    if cam.shape != truth.shape:
        raise ValueError(f"map shape {cam.shape} differs from mask shape {truth.shape}")
    if (cam < 0).any():
        raise ValueError("maps must be non-negative (CAMs are ReLU'd)")
    return cam, truth


def energy_pointing_game(cam: np.ndarray, truth: np.ndarray, tolerance: int = 0) -> float:
    """``sum(L inside G) / sum(L)``, G dilated by ``tolerance`` pixels; 0 for an all-zero map.

    Raises:
        ValueError: Shapes differ or the map has negative values.
    """
    cam, truth = _check(cam, truth)
    total = cam.sum()
    return float(cam[_band(truth, tolerance)].sum() / total) if total > 0 else 0.0


def pointing_game(cam: np.ndarray, truth: np.ndarray, tolerance: int = 15) -> bool:
    """True if the map's maximum lies within ``tolerance`` pixels of the crack (Zhang et al. 2016)."""
    cam, truth = _check(cam, truth)
    if cam.max() <= 0:
        return False
    peak = np.unravel_index(int(cam.argmax()), cam.shape)
    return bool(_band(truth, tolerance)[peak])


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps (0 if either is constant)."""
    ra = np.argsort(np.argsort(np.ravel(a), kind="stable"), kind="stable").astype(np.float64)
    rb = np.argsort(np.argsort(np.ravel(b), kind="stable"), kind="stable").astype(np.float64)
    if np.ptp(np.ravel(a)) == 0 or np.ptp(np.ravel(b)) == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def target_sensitivity(map_a: np.ndarray, map_b: np.ndarray, region_a: np.ndarray, region_b: np.ndarray,
                       radius: int = 15) -> dict[str, float]:
    """How much a method's map depends on the target: maps of two disjoint targets A and B of one image.

    * ``spearman``: rank correlation of the two maps (1 = the map ignores where the target is; lower is better).
    * ``own_energy``: mean over A and B of the share of a map's energy within ``radius`` px of its own target
      (higher is better).
    * ``other_energy``: the same share near the *other* target (lower is better).

    Raises:
        ValueError: Shapes differ, negative maps, or regions that overlap or are empty.
    """
    map_a, region_a = _check(map_a, region_a)
    map_b, region_b = _check(map_b, region_b)
    region_a, region_b = np.asarray(region_a) > 0, np.asarray(region_b) > 0
    if not region_a.any() or not region_b.any():
        raise ValueError("both target regions must be non-empty")
    if (region_a & region_b).any():
        raise ValueError("the two target regions overlap; give disjoint targets")
    near_a, near_b = _band(region_a, radius), _band(region_b, radius)

    def share(cam: np.ndarray, near: np.ndarray) -> float:
        total = cam.sum()
        return float(cam[near].sum() / total) if total > 0 else 0.0

    return {"spearman": spearman(map_a, map_b),
            "own_energy": (share(map_a, near_a) + share(map_b, near_b)) / 2,
            "other_energy": (share(map_a, near_b) + share(map_b, near_a)) / 2}


def noisy_linear_imputation(image: np.ndarray, removed: np.ndarray, noise: float = 0.01,
                            seed: int = 0) -> np.ndarray:
    """Fill ``removed`` pixels from their neighbours (ROAD's noisy linear imputation).

    Each removed pixel equals the weighted mean of its 8 neighbours (1/6 edge, 1/12 diagonal), solved
    jointly as a sparse linear system, plus Gaussian noise of ``noise`` x 255.

    Args:
        image: H x W x 3 uint8.
        removed: H x W bool.
        noise: Noise standard deviation as a fraction of the value range.
        seed: Noise seed.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import splu

    img = np.asarray(image, dtype=np.float64)
    removed = np.asarray(removed, bool)
    h, w = removed.shape
    ys, xs = np.nonzero(removed)
    n = len(ys)
    if n == 0:
        return np.asarray(image).copy()
    index = -np.ones((h, w), np.int64)
    index[ys, xs] = np.arange(n)
    rows, cols, vals = [np.arange(n)], [np.arange(n)], [np.ones(n)]
    rhs = np.zeros((n, 3))
    wsum = np.zeros(n)
    for dy, dx, wt in [(-1, 0, 1 / 6), (1, 0, 1 / 6), (0, -1, 1 / 6), (0, 1, 1 / 6),
                       (-1, -1, 1 / 12), (-1, 1, 1 / 12), (1, -1, 1 / 12), (1, 1, 1 / 12)]:
        ny, nx = ys + dy, xs + dx
        inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        wsum[inside] += wt
        k = np.nonzero(inside)[0]
        nb = index[ny[k], nx[k]]
        unknown = nb >= 0
        rows.append(k[unknown])
        cols.append(nb[unknown])
        vals.append(np.full(unknown.sum(), -wt))
        known = k[~unknown]
        rhs[known] += wt * img[ny[known], nx[known]]
    # row i: wsum_i * v_i - sum_unknown wt v_j = sum_known wt v_q
    vals[0] = wsum
    a = coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)).tocsc()
    solved = splu(a).solve(rhs)
    solved += np.random.default_rng(seed).normal(0.0, noise * 255.0, solved.shape)
    out = img.copy()
    out[ys, xs] = solved
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class CurveResult:
    """A perturbation curve: ``scores`` at ``fractions`` of pixels removed/inserted and its trapezoid AUC."""

    fractions: np.ndarray
    scores: np.ndarray
    auc: float


class _Scorer:
    """Scores perturbed images against the original prediction and target region."""

    def __init__(self, model: Any, image: np.ndarray, region: np.ndarray, category: int, score: str,
                 batch_size: int) -> None:
        if score not in ("logit", "iou"):
            raise ValueError(f"score must be 'logit' or 'iou', got {score!r}")
        self.net = getattr(model, "network", model)
        self.mean = getattr(model, "mean", (0.5, 0.5, 0.5))
        self.std = getattr(model, "std", (0.5, 0.5, 0.5))
        self.region = np.asarray(region, bool)
        self.category = category
        self.score = score
        self.batch_size = batch_size
        self.original = self._logits(image[None])[0].argmax(axis=0) == category

    def _logits(self, images: np.ndarray) -> np.ndarray:
        from segcam.cam.hooks import ensure_dygraph

        ensure_dygraph()
        out = []
        with paddle.no_grad():
            for j in range(0, len(images), self.batch_size):
                x = paddle.to_tensor(normalize(images[j:j + self.batch_size], self.mean, self.std))
                out.append(main_logits(self.net(x), images.shape[1:3]).numpy())
        return np.concatenate(out)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        logits = self._logits(images)
        if self.score == "logit":
            n = max(int(self.region.sum()), 1)
            return (logits[:, self.category] * self.region).sum(axis=(1, 2)) / n
        pred = logits.argmax(axis=1) == self.category
        inter = (pred & self.original).sum(axis=(1, 2))
        union = (pred | self.original).sum(axis=(1, 2))
        return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def _ranked(cam: np.ndarray, seed: int = 0) -> np.ndarray:
    """Pixel indices from most to least relevant (ties broken at random, reproducibly)."""
    flat = np.ravel(cam)
    jitter = np.random.default_rng(seed).random(flat.size) * 1e-9 * (np.ptp(flat) or 1.0)
    return np.argsort(-(flat + jitter), kind="stable")


def deletion_insertion(model: Any, image: np.ndarray, cam: np.ndarray, region: np.ndarray, mode: str = "deletion",
                       score: str = "iou", steps: int = 20, category: int = 1, baseline: str = "gray",
                       batch_size: int = 8) -> CurveResult:
    """Deletion (remove the most relevant pixels first; lower AUC is better) or insertion curve.

    Args:
        model: ZooModel or network in eval mode.
        image: H x W x 3 uint8.
        cam: H x W map (any scale).
        region: H x W target region used by the ``logit`` score.
        mode: ``deletion`` or ``insertion`` (reveal the most relevant pixels first on the baseline).
        score: ``logit`` (mean class logit over ``region``) or ``iou`` (re-predicted crack vs original).
        steps: Number of equal fraction steps (steps + 1 points from 0 to 1).
        category: Class scored.
        baseline: ``gray`` (128) or ``blur`` (Gaussian, sigma 10 px).
        batch_size: Perturbed images per forward.

    Raises:
        ValueError: Unknown mode, score or baseline, or mismatched shapes.
    """
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode must be 'deletion' or 'insertion', got {mode!r}")
    if baseline not in ("gray", "blur"):
        raise ValueError(f"baseline must be 'gray' or 'blur', got {baseline!r}")
    image = np.asarray(image)
    if cam.shape != image.shape[:2]:
        raise ValueError(f"map shape {cam.shape} differs from image size {image.shape[:2]}")
    base = (np.full_like(image, 128) if baseline == "gray" else cv2.GaussianBlur(image, (0, 0), 10))
    order = _ranked(cam)
    fractions = np.linspace(0.0, 1.0, steps + 1)
    counts = np.rint(fractions * order.size).astype(int)
    start, fill = (image, base) if mode == "deletion" else (base, image)
    frames = []
    for c in counts:
        frame = start.reshape(-1, 3).copy()
        frame[order[:c]] = fill.reshape(-1, 3)[order[:c]]
        frames.append(frame.reshape(image.shape))
    scorer = _Scorer(model, image, region, category, score, batch_size)
    scores = scorer(np.stack(frames))
    return CurveResult(fractions, scores, float(np.trapezoid(scores, fractions) if hasattr(np, "trapezoid")
                                                 else np.trapz(scores, fractions)))


def road(model: Any, image: np.ndarray, cam: np.ndarray, region: np.ndarray, percentiles: Sequence[int] = (20, 50, 80),
         score: str = "logit", category: int = 1, noise: float = 0.01, batch_size: int = 8) -> dict[str, Any]:
    """ROAD with noisy linear imputation: MoRF and LeRF score changes per removal percentile.

    Returns:
        ``{"morf": [...], "lerf": [...], "percentiles": [...], "combined": mean((lerf - morf) / 2)}``,
        each change being ``f(after) - f(before)``; higher ``combined`` is better.
    """
    image = np.asarray(image)
    scorer = _Scorer(model, image, region, category, score, batch_size)
    order = _ranked(cam)
    frames = []
    for p in percentiles:
        k = int(round(p / 100 * order.size))
        for chosen in (order[:k], order[order.size - k:]):  # MoRF, then LeRF
            removed = np.zeros(order.size, bool)
            removed[chosen] = True
            frames.append(noisy_linear_imputation(image, removed.reshape(cam.shape), noise))
    scores = scorer(np.stack([image, *frames]))
    before, after = scores[0], scores[1:]
    morf, lerf = after[0::2] - before, after[1::2] - before
    return {"percentiles": list(percentiles), "morf": morf.tolist(), "lerf": lerf.tolist(),
            "combined": float(np.mean((lerf - morf) / 2))}


def randomization_check(trained_map: np.ndarray, random_map: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """Model-randomisation sanity check on two maps of the same image, layer and method.

    Returns:
        ``{"spearman": rho, "passed": rho < threshold}``: a map that barely changes when the weights are
        re-initialised (high rank correlation) does not explain the trained model.
    """
    rho = spearman(trained_map, random_map)
    return {"spearman": rho, "passed": bool(rho < threshold)}
