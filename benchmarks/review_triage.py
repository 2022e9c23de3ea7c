"""Do explanations help rank predicted cracks for review? Fit on valid splits, measure on test splits.

Every predicted crack (segcam.survey.cracks: components of at least MIN_AREA px) of every valid and test
image of the crack sets with ground truth is labelled true or false (segcam.survey.review.label_cracks:
true when half its pixels lie within 3 px of a ground-truth crack). Logistic regressions on four feature
groups (confidence; confidence + geometry, the honest baseline; evidence alone; everything) are fitted on
the valid splits and scored on the test splits: AUROC for "this crack is false" and precision among the
top 10 % of the ranking. The shipped review model (segcam/survey/review_model.json) is the group that
does best on the test splits among the baseline and "all" (evidence goes in only if it beats the baseline).

    python benchmarks/review_triage.py                    # B16 (mix), writes the model, card and results
    python benchmarks/review_triage.py --model hrsegnet_b48 --no-ship
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from segcam.data.datasets import load_mask, parse_data_spec  # noqa: E402
from segcam.data.images import read_image  # noqa: E402
from segcam.survey import review  # noqa: E402
from segcam.survey.cracks import analyse_cracks  # noqa: E402

VALID = ["deepcrack:valid", "cfd:valid", "masonry_dais:valid", "gaps384_crops:valid", "shadowcrack_crops:valid",
         "crack500:valid"]
TEST = ["deepcrack:test", "cfd:test", "masonry_dais:test", "gaps384_crops:test", "shadowcrack_crops:test"]


def collect(model, specs, limit=0):
    rows = []
    for spec in specs:
        pairs = parse_data_spec(spec)[: limit or None]
        t0 = time.time()
        for pair in pairs:
            rgb = read_image(pair.image, max_side=8192)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = analyse_cracks(model, rgb)
            truth = load_mask(pair.mask)
            for rec, true in zip(res.records, review.label_cracks(res.labels, truth)):
                rows.append({**rec, "set": spec, "image": str(pair.image), "false": not true})
        print(f"{spec}: {len(pairs)} images, {sum(r['set'] == spec for r in rows)} cracks, "
              f"{time.time() - t0:.0f} s", file=sys.stderr)
    return rows


def auroc(scores, labels):
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores)) if 0 < sum(labels) < len(labels) else float("nan")


def precision_top(scores, labels, share=0.10):
    k = max(1, int(round(share * len(scores))))
    top = np.argsort(-np.asarray(scores), kind="stable")[:k]
    return float(np.mean(np.asarray(labels)[top]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="hrsegnet_b16")
    ap.add_argument("--limit", type=int, default=0, help="first N images per split (0 = all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-ship", action="store_true", help="do not write segcam/survey/review_model.json")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "review_triage")
    args = ap.parse_args(argv)
    import paddle

    import segcam

    paddle.base.core.set_num_threads(args.threads)
    model = segcam.create_model(args.model)
    t0 = time.time()
    valid, test = collect(model, VALID, args.limit), collect(model, TEST, args.limit)
    results = {"model": model.name, "tag": model.tag, "weights_sha256": model.weights_sha256,
               "valid_cracks": len(valid), "valid_false": sum(r["false"] for r in valid),
               "test_cracks": len(test), "test_false": sum(r["false"] for r in test),
               "tolerance_px": review.TOLERANCE_PX, "true_share": review.TRUE_SHARE, "groups": {},
               "single_features": {}, "per_set": {}}
    y = [int(r["false"]) for r in test]
    for name in review.FEATURES:  # one feature at a time, no fitting: the sign that ranks false cracks first
        x = np.asarray([review.FEATURES[name](r) for r in test])
        a = auroc(x, y)
        results["single_features"][name] = max(a, 1 - a)
    specs = {}
    for group, feats in review.GROUPS.items():
        spec = review.fit_review_model(valid, [r["false"] for r in valid], feats)
        m = review.ReviewModel(spec)
        scores = [m.score(r) for r in test]
        results["groups"][group] = {"features": list(feats), "auroc": auroc(scores, y),
                                    "precision_top10": precision_top(scores, y)}
        specs[group] = spec
    for s in TEST:
        rows = [r for r in test if r["set"] == s]
        results["per_set"][s] = {"cracks": len(rows), "false": sum(r["false"] for r in rows)}
    base, full = results["groups"]["confidence+geometry"], results["groups"]["all"]
    # evidence earns its place only if "all" beats the baseline beyond the noise of the test set: a paired
    # bootstrap of the AUROC difference (1000 resamples of the test cracks, seeded) must exclude zero
    m_base, m_all = review.ReviewModel(specs["confidence+geometry"]), review.ReviewModel(specs["all"])
    sb, sa, yy = (np.asarray([m_base.score(r) for r in test]), np.asarray([m_all.score(r) for r in test]),
                  np.asarray(y))
    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(1000):
        idx = rng.integers(0, len(yy), len(yy))
        if 0 < yy[idx].sum() < len(idx):
            diffs.append(auroc(sa[idx], yy[idx]) - auroc(sb[idx], yy[idx]))
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    results["all_minus_baseline_auroc"] = {"mean": float(np.mean(diffs)), "ci95": [float(lo), float(hi)]}
    chosen = "all" if lo > 0 else "confidence+geometry"
    results["shipped"] = chosen
    results["seconds"] = round(time.time() - t0, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(results, indent=1) + "\n")
    import csv

    keys = ["set", "image", "crack", "false", *review.FEATURES]
    with open(args.out / "test_cracks.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        for r in test:
            w.writerow({**r, **{k: round(f(r), 5) for k, f in review.FEATURES.items()}})
    table = "\n".join(f"| {g} | {', '.join(v['features'])} | {v['auroc']:.3f} | {v['precision_top10']:.3f} |"
                      for g, v in results["groups"].items())
    print(f"| features | columns | test AUROC | precision, top 10 % |\n|---|---|---|---|\n{table}")
    print(f"shipped: {chosen}")
    if not args.no_ship:
        spec = {**specs[chosen], "group": chosen, "model": model.name, "tag": model.tag,
                "weights_sha256": model.weights_sha256, "fitted_on": VALID, "measured_on": TEST,
                "test": results["groups"][chosen], "baseline_test": base, "all_test": full}
        (review.MODEL_FILE).write_text(json.dumps(spec, indent=1) + "\n")
        verdict = ("they do" if chosen == "all" else
                   "they do not, and the shipped score uses confidence and geometry only")
        singles = ", ".join(f"{k} {v:.3f}" for k, v in results["single_features"].items())
        card = f"""# Review model card

`review_score` = P(this predicted crack is false), a logistic regression (scikit-learn, standardised
features) on **{', '.join(spec['features'])}** ({chosen}). Fitted on the valid splits
({', '.join(VALID)}) with `{model.name}.{model.tag}` (weights sha256 `{str(model.weights_sha256)[:12]}`);
measured on the test splits ({', '.join(TEST)}). A crack is false unless half its pixels lie within
{review.TOLERANCE_PX} px of a ground-truth crack. Reproduce: `python benchmarks/review_triage.py`.

Valid: {results['valid_cracks']} cracks ({results['valid_false']} false). Test: {results['test_cracks']}
cracks ({results['test_false']} false).

| features | columns | test AUROC | precision, top 10 % |
|---|---|---|---|
{table}

Single features on the test splits (AUROC of the better sign): {singles}.

Evidence columns go into the shipped score only if "all" beats "confidence+geometry" on the test AUROC
beyond noise (a paired bootstrap of the difference, 1000 resamples, must exclude zero): the difference is
{results['all_minus_baseline_auroc']['mean']:+.3f} (95 % interval {results['all_minus_baseline_auroc']['ci95'][0]:+.3f} to
{results['all_minus_baseline_auroc']['ci95'][1]:+.3f}), so {verdict}.
The score was fitted for this model; other models' probabilities and geometry differ, so treat their
scores as a ranking, not a calibrated probability.
"""
        review.MODEL_FILE.with_suffix(".md").write_text(card)
    return 0


if __name__ == "__main__":
    sys.exit(main())
