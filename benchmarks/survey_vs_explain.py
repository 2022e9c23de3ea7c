"""Crack records of ``segcam survey`` against ``segcam explain``'s (whole-photo ``zones``) on the five test splits.

For every photo of the five test splits with ground truth (DeepCrack, CFD, masonry, GAPs crops, ShadowCrack crops)
the per-crack records are computed twice, in this process: as ``segcam explain`` does (dygraph explanation of the
whole photo, :func:`segcam.survey.cracks.analyse_cracks`) and as ``segcam survey`` does (the evidence export and
crack-local windows, :func:`segcam.survey.survey.photo_cracks`). Cracks are matched by photo and bounding box
(their predictions come from different engines and may differ on a few pixels). Printed: how many cracks match,
the Spearman correlation of every evidence column over the matched cracks (target >= 0.95), whether the
geometry columns are identical, and the AUROC of the shipped review score for "this crack is false" with each
engine's records (target: within 0.01).

Usage: ``python benchmarks/survey_vs_explain.py [--model hrsegnet_b16] [--limit 0]
[--out benchmarks/results/survey_vs_explain.json]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import segcam  # noqa: E402
from segcam.data.datasets import load_mask, parse_data_spec  # noqa: E402
from segcam.data.images import read_image  # noqa: E402
from segcam.survey.cracks import analyse_cracks  # noqa: E402
from segcam.survey.photo import photo_cracks  # noqa: E402
from segcam.survey.review import label_cracks, score_records  # noqa: E402

TEST = ["deepcrack:test", "cfd:test", "masonry_dais:test", "gaps384_crops:test", "shadowcrack_crops:test"]
EVIDENCE = ["evidence_on", "evidence_beside", "evidence_far", "evidence_band", "evidence_total", "evidence_contrast",
            "evidence_peak", "evidence_context_band", "mean_prob", "min_prob", "review_score"]
GEOMETRY = ["area", "length", "mean_width", "median_width", "max_width", "orientation"]
BOX = ("x0", "y0", "x1", "y1")


def spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    if len(set(a)) < 2 or len(set(b)) < 2:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def auroc(scores: list[float], labels: list[bool]) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores)) if 0 < sum(labels) < len(labels) else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="hrsegnet_b16")
    ap.add_argument("--limit", type=int, default=0, help="photos per split (0 = all)")
    ap.add_argument("--out", default="benchmarks/results/survey_vs_explain.json")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    model = segcam.create_model(args.model)
    pairs_of, seconds = {"explain": [], "survey": []}, {"explain": 0.0, "survey": 0.0}
    matched, photos, counts = [], 0, {"explain": 0, "survey": 0}
    for spec in TEST:
        for pair in parse_data_spec(spec)[: args.limit or None]:
            rgb = read_image(pair.image, max_side=8192)
            truth = load_mask(pair.mask)
            t = time.perf_counter()
            whole = analyse_cracks(model, rgb)
            score_records(whole.records)
            seconds["explain"] += time.perf_counter() - t
            t = time.perf_counter()
            local, _ = photo_cracks(model, rgb)
            seconds["survey"] += time.perf_counter() - t
            photos += 1
            for name, res in (("explain", whole), ("survey", local)):
                counts[name] += len(res.records)
                for rec, ok in zip(res.records, label_cracks(res.labels, truth)):
                    pairs_of[name].append((rec["review_score"], not ok))
            by_box = {tuple(r[k] for k in BOX): r for r in local.records}
            for rec in whole.records:
                other = by_box.get(tuple(rec[k] for k in BOX))
                if other is not None and other["area"] == rec["area"]:
                    matched.append((spec, rec, other))
        print(f"{spec}: {photos} photos so far, {len(matched)} matched cracks", file=sys.stderr, flush=True)
    result = {"model": args.model, "photos": photos, "cracks": counts, "matched": len(matched),
              "seconds_per_photo": {k: round(v / photos, 4) for k, v in seconds.items()},
              "spearman": {k: round(spearman([a[k] for _, a, _ in matched], [b[k] for _, _, b in matched]), 4)
                           for k in EVIDENCE},
              "max_abs_difference": {k: round(max(abs(float(a[k]) - float(b[k])) for _, a, b in matched), 4)
                                     for k in EVIDENCE if k != "evidence_total"},
              "geometry_identical": all(a[k] == b[k] for _, a, b in matched for k in GEOMETRY),
              "auroc_false": {k: round(auroc([s for s, _ in v], [f for _, f in v]), 4) for k, v in pairs_of.items()}}
    result["auroc_difference"] = round(result["auroc_false"]["survey"] - result["auroc_false"]["explain"], 4)
    print(json.dumps(result, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
