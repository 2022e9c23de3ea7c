"""Which feature columns the atlas clusters, checked on the valid splits (never on test).

Reads the run of `python benchmarks/five_set_atlas.py --split valid` (the five valid splits explained with
--masks) and prints, per column set of the saved crack features (the evidence layer `seg3` and `low3`, each
pooled over the crack and over its surroundings, `@beside`, alone and combined):
how well they tell false from true cracks (5-fold logistic-regression AUROC), how much of the crack's mean
probability they encode (5-fold R^2 of a linear fit: a concept made of confidence adds nothing to the review
score, which already has it), and the purest concept of at least 20 cracks of the atlas built on them
(seed 0, k by the silhouette rule); then the set the rule below chooses (the atlas ships it as
segcam.survey.atlas.ATLAS_BLOCKS). Writes benchmarks/results/atlas_recipe.json.

    python benchmarks/five_set_atlas.py --split valid && python benchmarks/atlas_recipe.py
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: A column set whose linear fit recovers the crack's mean probability better than this is "mostly confidence".
MAX_R2 = 0.5
sys.path.insert(0, str(ROOT))

from segcam.survey import atlas as atlas_mod  # noqa: E402
from segcam.survey.cracks import RING_SUFFIX  # noqa: E402


def main(argv=None) -> int:
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=ROOT / "runs" / "five_set_valid_masks")
    args = ap.parse_args(argv)
    run = atlas_mod.load_run_cracks(args.run, with_labels=True)
    cracks = np.asarray(run.cracks)
    false = np.array([run.records[i].get("truth") == "false" for i in cracks])
    prob = np.array([float(run.records[i]["mean_prob"]) for i in cracks])
    widths = next(r["crack_features"] for r in run.manifest["images"] if r.get("crack_features"))
    names = [layer for layer, _ in widths]
    inside = [b for b in names if RING_SUFFIX not in b]
    ring = [b for b in names if RING_SUFFIX in b]
    # each block alone, each layer inside + around, the semantic layer with each surrounding, and everything
    sets = {b: (b,) for b in names}
    sets.update({f"{b}+{b}{RING_SUFFIX}": (b, b + RING_SUFFIX) for b in inside if b + RING_SUFFIX in ring})
    sets.update({f"{inside[-1]}+{r}": (inside[-1], r) for r in ring if r != inside[-1] + RING_SUFFIX})
    sets["+".join(names)] = tuple(names)
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    result = {"run": str(args.run.relative_to(ROOT) if args.run.is_relative_to(ROOT) else args.run),
              "cracks": int(len(cracks)), "false": int(false.sum()),
              "mean_prob_auroc": round(float(roc_auc_score(false, -prob)), 3), "column_sets": {}}
    for name, blocks in sets.items():
        x = atlas_mod._prepare(atlas_mod._atlas_columns(run, blocks), cracks)[cracks]
        auroc = cross_val_score(make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=5000)), x, false,
                                cv=folds, scoring="roc_auc").mean()
        r2 = cross_val_score(make_pipeline(StandardScaler(), LinearRegression()), x, prob, cv=5, scoring="r2").mean()
        atlas = atlas_mod.build_atlas(run, seed=0, blocks=blocks)
        big = [c for c in atlas.concepts if c["members"] >= 20 and c["false_positive_share"] is not None]
        best = max(big, key=lambda c: c["false_positive_share"]) if big else None
        result["column_sets"][name] = {
            "columns": int(x.shape[1]), "false_vs_true_auroc": round(float(auroc), 3),
            "mean_prob_r2": round(float(r2), 3), "k": atlas.k,
            "purest_concept": {"members": best["members"], "false_positive_share": best["false_positive_share"]}
            if best else None}
    # the rule: among the sets that are not mostly confidence (R^2 of the mean probability <= MAX_R2), the one
    # whose purest concept of >= 20 cracks holds the largest share of false positives
    ok = {n: v for n, v in result["column_sets"].items() if v["mean_prob_r2"] <= MAX_R2 and v["purest_concept"]}
    result["rule"] = f"mean_prob_r2 <= {MAX_R2}, then the largest purest-concept false-positive share"
    result["chosen"] = max(ok, key=lambda n: ok[n]["purest_concept"]["false_positive_share"]) if ok else None
    result["shipped"] = "+".join(atlas_mod.ATLAS_BLOCKS)
    out = ROOT / "benchmarks" / "results" / "atlas_recipe.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
