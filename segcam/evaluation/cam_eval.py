"""Rank CAM methods x layers by faithfulness on a labelled data split (``segcam evaluate-cam``)."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from segcam.cam.engine import explain
from segcam.cam.targets import ComponentTarget, PredictedTarget
from segcam.data.datasets import Pair, load_mask
from segcam.data.images import read_image
from segcam.evaluation import faithfulness as metrics
from segcam.utils.files import atomic_write, save_csv, save_json
from segcam.utils.progress import NullProgress, Progress

__all__ = ["METRICS", "evaluate_cam", "summarize", "write_reports"]

#: metric -> (column, higher is better, description)
METRICS: dict[str, tuple[bool, str]] = {
    "energy": (True, "energy-based pointing game: share of map energy on the GT crack (+ tolerance band)"),
    "pointing": (True, "pointing game hit rate: map maximum within 15 px of the GT crack"),
    "deletion_auc": (False, "deletion AUC, score = IoU of the re-predicted crack with the original (lower is better)"),
    "insertion_auc": (True, "insertion AUC on a blurred baseline, score = IoU as above (higher is better)"),
    "road": (True, "ROAD combined, noisy linear imputation, region logit: mean (LeRF - MoRF) / 2 (higher is better)"),
    "rand_spearman": (False, "rank correlation with the map of a re-initialised model (lower is better; > 0.5 fails)"),
    "target_spearman": (False, "rank correlation of the maps of the two largest predicted crack components "
                               "(lower: the map follows the target; images with < 2 components are left out)"),
    "target_own_energy": (True, "share of a component's map energy within 15 px of that component (higher is better)"),
    "seconds": (False, "seconds to compute the map"),
}


def evaluate_cam(model: Any, random_model: Any, pairs: Sequence[Pair], methods: Sequence[str], layers: Sequence[str],
                 tolerance: int = 2, steps: int = 10, road_percentiles: Sequence[int] = (20, 50, 80),
                 progress: Progress | None = None) -> list[dict[str, Any]]:
    """Per-image metrics for every method x layer; the target is the predicted crack.

    Args:
        model: The trained ZooModel.
        random_model: The same architecture re-initialised (for the randomisation check).
        pairs: Image/mask pairs.
        methods: Method names.
        layers: Layer names or aliases.
        tolerance: Band (px) around the GT crack for the energy pointing game (cracks are 1-5 px wide).
        steps: Deletion/insertion steps.
        road_percentiles: ROAD removal percentiles.
        progress: Told as each map is done (:class:`segcam.utils.progress.Progress`).
    """
    rows = []
    total = len(pairs) * len(methods)
    bar = progress or NullProgress()
    bar.start(total, "evaluate-cam")
    for pair in pairs:
        rgb = read_image(pair.image, max_side=8192)
        truth = load_mask(pair.mask)
        for method in methods:
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = explain(model, rgb, layers, PredictedTarget(), method)[0]
                rnd = explain(random_model, rgb, layers, PredictedTarget(), method)[0]
                seconds = (time.perf_counter() - t0) / 2 / len(layers)
                parts = _two_components(model, rgb, layers, method)
            for layer in layers:
                cam = res.maps[layer].normalized
                region = res.target_mask if res.target_mask.any() else truth > 0
                row = {"image": pair.image.name, "method": method, "layer": layer,
                       "empty_target": bool(res.empty_target),
                       "energy": metrics.energy_pointing_game(cam, truth, tolerance),
                       "pointing": float(metrics.pointing_game(cam, truth, 15)),
                       "deletion_auc": metrics.deletion_insertion(model, rgb, cam, region, "deletion", "iou",
                                                                  steps).auc,
                       "insertion_auc": metrics.deletion_insertion(model, rgb, cam, region, "insertion", "iou", steps,
                                                                   baseline="blur").auc,
                       "road": metrics.road(model, rgb, cam, region, road_percentiles)["combined"],
                       "rand_spearman": metrics.spearman(cam, rnd.maps[layer].normalized),
                       "seconds": seconds}
                sens = (metrics.target_sensitivity(parts[0].maps[layer].normalized, parts[1].maps[layer].normalized,
                                                   parts[0].target_mask, parts[1].target_mask)
                        if parts else {"spearman": float("nan"), "own_energy": float("nan")})
                row.update(target_spearman=sens["spearman"], target_own_energy=sens["own_energy"])
                rows.append(row)
            bar.advance()
    bar.close()
    return rows


def _two_components(model: Any, rgb: np.ndarray, layers: Sequence[str], method: str) -> tuple[Any, Any] | None:
    """Explanations of the two largest predicted crack components, or None if there are fewer than two."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = explain(model, rgb, layers, ComponentTarget(rank=1), method)[0]
        second = explain(model, rgb, layers, ComponentTarget(rank=2), method)[0]
    if not first.target_mask.any() or not second.target_mask.any():
        return None
    return first, second


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean of every metric per method x layer, with the rank of each row for each metric (1 = best)."""
    keys = sorted({(r["method"], r["layer"]) for r in rows}, key=lambda k: (k[0], k[1]))
    out = []
    for method, layer in keys:
        sel = [r for r in rows if r["method"] == method and r["layer"] == layer]
        out.append({"method": method, "layer": layer, "images": len(sel),
                    **{m: _mean([r[m] for r in sel]) for m in METRICS}})
    for m, (higher, _) in METRICS.items():
        order = sorted(range(len(out)), key=lambda i: (not np.isfinite(out[i][m]),
                                                        -out[i][m] if higher else out[i][m]))
        for rank, i in enumerate(order, 1):
            out[i][f"rank_{m}"] = rank
    return sorted(out, key=lambda r: sum(r[f"rank_{m}"] for m in METRICS if m != "seconds"))


def _mean(values: list[float]) -> float:
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def markdown_table(summary: list[dict[str, Any]]) -> str:
    """The summary as a markdown table (best mean rank first)."""
    cols = list(METRICS)
    head = "| method | layer | " + " | ".join(f"{c} ({'higher' if METRICS[c][0] else 'lower'})" for c in cols) + " |"
    lines = [head, "|" + "---|" * (len(cols) + 2)]
    for r in summary:
        lines.append(f"| {r['method']} | {r['layer']} | " + " | ".join(
            f"{r[c]:.3f} (#{r['rank_' + c]})" for c in cols) + " |")
    return "\n".join(lines) + "\n"


def write_reports(rows: list[dict[str, Any]], out_dir: str | Path, meta: dict[str, Any]) -> dict[str, Path]:
    """Write ``per_image.csv``, ``summary.csv``, ``summary.md``, ``summary.json`` and ``summary.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(rows)
    files = {
        "per_image": save_csv(out / "per_image.csv", rows),
        "summary_csv": save_csv(out / "summary.csv", summary),
        "summary_md": atomic_write(out / "summary.md", lambda p: p.write_text(
            "\n".join(f"- `{k}`: {v[1]}" for k, v in METRICS.items()) + "\n\n" + markdown_table(summary))),
        "summary_json": save_json(out / "summary.json", {**meta, "metrics": {k: v[1] for k, v in METRICS.items()},
                                                         "summary": summary}),
    }
    from segcam.viz.figures import metric_bars

    files["plot"] = metric_bars(summary, [m for m in METRICS if m != "seconds"], out / "summary.png")
    return files
