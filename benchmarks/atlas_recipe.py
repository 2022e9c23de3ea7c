"""Which feature columns the atlas clusters, checked on the valid splits (never on test).

Reads the run of `python benchmarks/five_set_atlas.py --split valid` (the five valid splits explained with
--masks) and prints, per column set of the saved crack features (the evidence layer `seg3` and `low3`, each
pooled over the crack and over its surroundings, `@beside`, alone and combined):
how well they tell false from true cracks (5-fold logistic-regression AUROC), how much of the crack's mean
probability they encode (5-fold R^2 of a linear fit: a concept made of confidence adds nothing to the review
score, which already has it), and the false-positive share of the purest concept of at least 20 cracks of the
atlas built on them (the default k; mean and standard deviation over SEEDS seeds, one seed's purest concept
being noisy at 212 false cracks); then the set the rule below chooses (the atlas ships it as
segcam.survey.atlas.ATLAS_BLOCKS). Then the study behind the default k (segcam.survey.atlas.default_k), on the
shipped set: per k, the silhouette, the agreement between seeds (adjusted Rand index against seed 0) and the purest
concept's false-positive share against the same clustering with the true/false labels shuffled (the gap is what
the concepts find beyond chance). Writes benchmarks/results/atlas_recipe.json.

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
#: Seeds the purest concept is averaged over.
SEEDS = 10
#: The numbers of concepts of the k study, and label shuffles per seed for its chance level.
K_STUDY = (4, 8, 12, 16, 20, 24, 28, 32, 40, 48)
SHUFFLES = 10

sys.path.insert(0, str(ROOT))

from segcam.survey import atlas as atlas_mod  # noqa: E402
from segcam.survey.cracks import RING_SUFFIX  # noqa: E402


def _purest_share(assign: np.ndarray, false: np.ndarray) -> float:
    """The false-positive share of the purest concept of at least 20 cracks (0 when none is that big)."""
    count, fp = np.bincount(assign), np.bincount(assign, weights=false.astype(np.float64))
    big = count >= 20
    return float((fp[big] / count[big]).max()) if big.any() else 0.0


def k_study(run, cracks: np.ndarray, false: np.ndarray) -> dict:
    """Silhouette, seed agreement and purity beyond chance of the shipped atlas per k (module docstring)."""
    from sklearn.metrics import adjusted_rand_score

    rng = np.random.default_rng(0)
    out = {}
    for k in K_STUDY:
        atlases = [atlas_mod.build_atlas(run, k=k, seed=seed) for seed in range(SEEDS)]
        assigns = [a.assignment[cracks] for a in atlases]
        real = [_purest_share(a, false) for a in assigns]
        chance = [_purest_share(a, rng.permutation(false)) for a in assigns for _ in range(SHUFFLES)]
        out[str(k)] = {"silhouette": atlases[0].silhouette,
                       "seed_ari": round(float(np.mean([adjusted_rand_score(assigns[0], a) for a in assigns[1:]])), 3),
                       "purest_share": round(float(np.mean(real)), 3), "chance": round(float(np.mean(chance)), 3),
                       "gap": round(float(np.mean(real) - np.mean(chance)), 3)}
        print(k, out[str(k)], file=sys.stderr, flush=True)
    return out


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
        shares = []
        for seed in range(SEEDS):
            atlas = atlas_mod.build_atlas(run, seed=seed, blocks=blocks)
            shares.append(_purest_share(atlas.assignment[cracks], false))
        result["column_sets"][name] = {
            "columns": int(x.shape[1]), "false_vs_true_auroc": round(float(auroc), 3),
            "mean_prob_r2": round(float(r2), 3), "k": atlas.k,
            "purest_share_mean": round(float(np.mean(shares)), 3), "purest_share_sd": round(float(np.std(shares)), 3)}
    # the rule: among the sets that are not mostly confidence (R^2 of the mean probability <= MAX_R2), the one whose
    # purest concept of >= 20 cracks holds the largest mean share of false positives, if it beats the shipped set
    # by more than the standard error of the difference (else the shipped set, the simplest, stays)
    sets_ = result["column_sets"]
    ok = {n: v for n, v in sets_.items() if v["mean_prob_r2"] <= MAX_R2}
    shipped = "+".join(atlas_mod.ATLAS_BLOCKS)
    best = max(ok, key=lambda n: ok[n]["purest_share_mean"]) if ok else shipped
    se = float(np.hypot(sets_[best]["purest_share_sd"], sets_[shipped]["purest_share_sd"]) / np.sqrt(SEEDS))
    margin = sets_[best]["purest_share_mean"] - sets_[shipped]["purest_share_mean"]
    result["rule"] = (f"mean_prob_r2 <= {MAX_R2}, then the largest mean purest-concept false-positive share over "
                      f"{SEEDS} seeds, if it beats the shipped set by more than the standard error of the difference")
    result["best"], result["margin_over_shipped"], result["standard_error"] = best, round(margin, 3), round(se, 3)
    result["chosen"] = best if margin > se else shipped
    result["shipped"] = shipped
    result["default_k"] = atlas_mod.default_k(len(cracks))
    result["k_study"] = k_study(run, cracks, false)
    out = ROOT / "benchmarks" / "results" / "atlas_recipe.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
