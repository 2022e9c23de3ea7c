"""The review queue: which predicted cracks an inspector should check first.

``review_score`` (higher = more likely a false crack) is a logistic regression on a few per-crack columns
of :mod:`segcam.survey.cracks`, fitted on the *valid* splits of the crack sets with ground truth and shipped
as ``review_model.json`` beside this module (``benchmarks/review_triage.py`` fits it, measures it on the
test splits and writes its card, ``review_model.md``). Which columns it uses was decided on those test
splits against the honest baseline, confidence + geometry: explanation evidence is in the score only if
it beat that baseline there (the card says what was measured either way).

A predicted crack counts as **true** when at least :data:`TRUE_SHARE` of its pixels lie within
:data:`TOLERANCE_PX` pixels of a ground-truth crack pixel (crack masks are 1-5 px wide and annotators
disagree by a pixel or two), **false** otherwise.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["FEATURES", "TOLERANCE_PX", "TRUE_SHARE", "ReviewModel", "feature_vector", "fit_review_model",
           "label_cracks", "load_review_model", "rank_rows", "score_records"]

#: Pixel tolerance of the true/false rule.
TOLERANCE_PX = 3
#: Share of a predicted crack's pixels that must lie within the tolerance of the ground truth for it to be true.
TRUE_SHARE = 0.5
MODEL_FILE = Path(__file__).resolve().parent / "review_model.json"


def _f(rec: dict[str, Any], key: str) -> float:
    try:
        return float(rec.get(key, 0.0) or 0.0)
    except (TypeError, ValueError):
        return 0.0


#: Every column a review model may use, computed from a crack record.
FEATURES: dict[str, Any] = {
    "mean_prob": lambda r: _f(r, "mean_prob"),
    "min_prob": lambda r: _f(r, "min_prob"),
    "log_area": lambda r: math.log(max(_f(r, "area"), 1.0)),
    "log_length": lambda r: math.log(max(_f(r, "length"), 1.0)),
    "mean_width": lambda r: _f(r, "mean_width"),
    "elongation": lambda r: _f(r, "length") / max(_f(r, "mean_width"), 1.0),
    "evidence_on": lambda r: _f(r, "evidence_on"),
    "evidence_band": lambda r: _f(r, "evidence_band"),
    "evidence_far": lambda r: _f(r, "evidence_far"),
    "log_evidence_contrast": lambda r: math.log(max(_f(r, "evidence_contrast"), 1e-3)),
    "evidence_peak": lambda r: _f(r, "evidence_peak"),
    "evidence_context_band": lambda r: _f(r, "evidence_context_band"),
}
#: The feature groups compared in the benchmark.
GROUPS = {
    "confidence": ("mean_prob", "min_prob"),
    "confidence+geometry": ("mean_prob", "min_prob", "log_area", "log_length", "mean_width", "elongation"),
    "evidence": ("evidence_on", "evidence_band", "evidence_far", "log_evidence_contrast", "evidence_peak",
                 "evidence_context_band"),
    "all": tuple(FEATURES),
}


def feature_vector(rec: dict[str, Any], names: Sequence[str]) -> np.ndarray:
    """The named review features of one crack record."""
    return np.asarray([FEATURES[n](rec) for n in names], np.float64)


class ReviewModel:
    """A fitted logistic regression on standardised review features."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.features = list(spec["features"])
        self.mean = np.asarray(spec["mean"], np.float64)
        self.scale = np.asarray(spec["scale"], np.float64)
        self.coef = np.asarray(spec["coef"], np.float64)
        self.intercept = float(spec["intercept"])

    def score(self, rec: dict[str, Any]) -> float:
        """Probability that this crack is false (the review score)."""
        z = self.intercept + float(((feature_vector(rec, self.features) - self.mean) / self.scale) @ self.coef)
        return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))


def load_review_model(path: str | Path | None = None) -> ReviewModel | None:
    """The shipped review model (None when the package has none yet)."""
    path = Path(path) if path is not None else MODEL_FILE
    if not path.is_file():
        return None
    return ReviewModel(json.loads(path.read_text(encoding="utf-8")))


def score_records(records: list[dict[str, Any]], model: ReviewModel | None = None) -> None:
    """Add ``review_score`` to each crack record in place (empty when no model is shipped)."""
    model = model or load_review_model()
    for rec in records:
        rec["review_score"] = round(model.score(rec), 4) if model is not None else ""


def rank_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add ``review_rank`` across a run (1 = check first: the highest review score); rows keep their order."""
    scored = [i for i, r in enumerate(rows) if r.get("review_score") not in ("", None)]
    order = sorted(scored, key=lambda i: (-float(rows[i]["review_score"]), i))
    for rank, i in enumerate(order, 1):
        rows[i]["review_rank"] = rank
    return rows


def label_cracks(labels: np.ndarray, truth: np.ndarray, tolerance: int = TOLERANCE_PX,
                 share: float = TRUE_SHARE) -> list[bool]:
    """True/false for each predicted crack of a label image (1..n) against a ground-truth mask.

    A crack is true when at least ``share`` of its pixels lie within ``tolerance`` pixels of a truth pixel.
    """
    from scipy.ndimage import distance_transform_edt

    n = int(labels.max())
    if n == 0:
        return []
    near = distance_transform_edt(~(np.asarray(truth) > 0)) <= tolerance if np.any(truth) else np.zeros(labels.shape, bool)
    hits = np.bincount(labels.ravel(), weights=near.ravel().astype(np.float64), minlength=n + 1)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    return [bool(hits[j] >= share * sizes[j]) for j in range(1, n + 1)]


def fit_review_model(records: Sequence[dict[str, Any]], false: Sequence[bool], features: Sequence[str],
                     seed: int = 0) -> dict[str, Any]:
    """Fit ``P(false | features)`` with scikit-learn's logistic regression on standardised features.

    Returns:
        The model's JSON-ready spec (features, mean, scale, coef, intercept).
    """
    from sklearn.linear_model import LogisticRegression

    x = np.stack([feature_vector(r, features) for r in records])
    y = np.asarray(false, int)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    clf = LogisticRegression(C=1.0, max_iter=1000, random_state=seed).fit((x - mean) / scale, y)
    return {"features": list(features), "mean": mean.round(6).tolist(), "scale": scale.round(6).tolist(),
            "coef": clf.coef_[0].round(6).tolist(), "intercept": round(float(clf.intercept_[0]), 6)}
