"""Which method, layer and score to use for each target kind: the evidence behind ``segcam.cam.defaults``.

For DeepCrack test photos whose prediction has at least two crack components, and for every method x layer x
score of the grid, it explains two disjoint targets of each kind and measures:

* ``spearman``: rank correlation of the two targets' maps (1 = the map ignores where the target is; lower is
  better), and ``own_energy``: the share of each map's energy within 15 px of its own target (higher is better);
  for ``pred`` (one target per image) these are not defined;
* ``deletion``: faithfulness, how fast the target region's mean class logit falls when the map's most
  relevant pixels are greyed first: ``(s0 - AUC_map) / (s0 - AUC_random)`` with ``s0`` the unperturbed score
  and AUC_random that of a random order (above 1: the map finds the pixels the target's score depends on;
  higher is better).

Targets: ``pred`` = the predicted crack; ``component`` = the two largest predicted components; ``pixel`` = the
crack pixel nearest each component's centroid; ``box`` = a 48x48 box centred there. Pixels and boxes of the two
components are disjoint by construction (images where they are not are left out).

Usage: ``python benchmarks/target_defaults.py [--model hrsegnet_b48] [--images 6] [--steps 4]
[--out benchmarks/results/target_defaults]``; prints one table per target kind and writes CSV + JSON.
"""

from __future__ import annotations

import argparse
import itertools
import time
import warnings
from pathlib import Path

import cv2
import numpy as np

import segcam
from segcam.cam.targets import BoxTarget, ComponentTarget, PixelTarget, PredictedTarget
from segcam.data.datasets import list_pairs
from segcam.evaluation import faithfulness as metrics
from segcam.utils.files import save_csv, save_json

METHODS = ("seg_grad_cam", "seg_hires_cam", "layer_cam")
LAYERS = ("seg3", "seg_head")
SCORES = ("logit", "margin")
BOX = 48


def two_targets(pred: np.ndarray) -> dict[str, tuple] | None:
    """Two disjoint targets per kind from the two largest components of a predicted mask, or None."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(pred.astype(np.uint8), 8)
    if n < 3:
        return None
    order = np.argsort(-stats[1:, cv2.CC_STAT_AREA])[:2] + 1
    h, w = pred.shape
    comps, pixels, boxes = [], [], []
    for lab in order:
        ys, xs = np.nonzero(labels == lab)
        k = np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2)
        y, x = int(ys[k]), int(xs[k])
        comps.append(ComponentTarget(x=x, y=y))
        pixels.append(PixelTarget(1, x, y))
        x0, y0 = max(0, x - BOX // 2), max(0, y - BOX // 2)
        boxes.append(BoxTarget(1, x0, y0, min(w, x0 + BOX), min(h, y0 + BOX)))
    (a, b) = boxes
    if not (a.x1 <= b.x0 or b.x1 <= a.x0 or a.y1 <= b.y0 or b.y1 <= a.y0):
        return None  # the boxes overlap: the two components are too close for a clean comparison
    return {"component": tuple(comps), "pixel": tuple(pixels), "box": tuple(boxes)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    # the defaults are the README table's run (the B16 weights shipped as default when the defaults were chosen)
    ap.add_argument("--model", default="hrsegnet_b16.mix_ohem")
    ap.add_argument("--images", type=int, default=5)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/target_defaults")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    model = segcam.create_model(args.model)
    rows = []
    used = 0
    t_start = time.time()
    for pair in list_pairs("deepcrack", "test"):
        if used >= args.images:
            break
        rgb = segcam.read_image(pair.image)
        base = segcam.explain(model, rgb, ["seg_head"])[0]
        targets = two_targets(base.prediction == 1)
        if targets is None:
            continue
        used += 1
        targets = {"pred": (PredictedTarget(),), **targets}
        regions = {}
        for kind, ts in targets.items():
            regions[kind] = [t.mask(_logits_like(base)) if not isinstance(t, (PixelTarget, BoxTarget))
                             else _region(t, rgb.shape[:2]) for t in ts]
        rand = np.random.default_rng(0).random(rgb.shape[:2]).astype(np.float32)
        random_curve = {kind: metrics.deletion_insertion(model, rgb, rand, regions[kind][0], "deletion", "logit",
                                                         args.steps) for kind in targets}
        for method, score in itertools.product(METHODS, SCORES):
            maps = {kind: [segcam.explain(model, rgb, list(LAYERS), t, method, score=score)[0] for t in ts]
                    for kind, ts in targets.items()}
            for layer in LAYERS:
                for kind, ts in targets.items():
                    first = maps[kind][0].maps[layer].normalized
                    row = {"image": pair.image.name, "kind": kind, "method": method, "layer": layer, "score": score,
                           "spearman": float("nan"), "own_energy": float("nan")}
                    if len(ts) == 2:
                        sens = metrics.target_sensitivity(first, maps[kind][1].maps[layer].normalized,
                                                          regions[kind][0], regions[kind][1])
                        row.update(spearman=sens["spearman"], own_energy=sens["own_energy"])
                    curve = metrics.deletion_insertion(model, rgb, first, regions[kind][0], "deletion", "logit",
                                                       args.steps)
                    row["deletion"] = _drop(curve, random_curve[kind])
                    rows.append(row)
        print(f"{used} images, {time.time() - t_start:.0f} s", flush=True)
    summary = []
    for (kind, method, layer, score), group in _groups(rows):
        entry = {"kind": kind, "method": method, "layer": layer, "score": score, "images": len(group)}
        for key in ("spearman", "own_energy", "deletion"):
            vals = [r[key] for r in group if key in r and np.isfinite(r[key])]
            entry[key] = float(np.mean(vals)) if vals else float("nan")
        summary.append(entry)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_csv(out / "per_image.csv", rows)
    save_json(out / "summary.json", {"model": args.model, "images": used, "steps": args.steps, "rows": summary})
    for kind in ("pred", "component", "pixel", "box"):
        print(f"\n{kind}: method layer score | spearman own_energy deletion")
        for e in sorted((e for e in summary if e["kind"] == kind), key=lambda e: (e["spearman"], -e["deletion"])):
            print(f"  {e['method']:<14} {e['layer']:<9} {e['score']:<7} | {e['spearman']:.3f} {e['own_energy']:.3f} "
                  f"{e['deletion']:.3f}")


def _logits_like(res) -> np.ndarray:
    """Two-class pseudo-logits whose argmax is the prediction (what mask() of a prediction target reads)."""
    pred = (res.prediction == 1).astype(np.float32)
    return np.stack([1 - pred, pred])


def _region(target, size) -> np.ndarray:
    return target.mask(np.zeros((2, *size), np.float32))


def _drop(curve, random_curve) -> float:
    """How much faster than a random order the map's order lowers the target's score (higher is better)."""
    start = float(curve.scores[0])
    denom = start - random_curve.auc
    return float((start - curve.auc) / denom) if abs(denom) > 1e-6 else float("nan")


def _groups(rows):
    keys = sorted({(r["kind"], r["method"], r["layer"], r["score"]) for r in rows})
    for k in keys:
        yield k, [r for r in rows if (r["kind"], r["method"], r["layer"], r["score"]) == k]


if __name__ == "__main__":
    main()
