"""The paper's comparison redone on our data: params, FLOPs, CPU latency and DeepCrack test mIoU.

Writes ``OUT/comparison.md`` (markdown table), ``OUT/comparison.json`` and the mIoU-versus-latency
scatter ``OUT/miou_vs_latency.{png,pdf}`` (drawn by segcam.viz.figures, the same style as the CAM panels).
Models are evaluated with their shipped weights, or with ``--weights NAME=PATH``; a model without
weights is listed with its cost only (no mIoU, not in the plot). Latency: 1x3x400x400, dygraph,
``paddle.no_grad``, median of interleaved repeats on this machine's CPU.

Usage: ``python benchmarks/compare_models.py [--models ...] [--weights bisenetv2=runs/b/best_model/model.pdparams]
[--limit 0] [--out benchmarks/results]``
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import paddle

import segcam
from segcam.data.datasets import parse_data_spec
from segcam.training.loop import evaluate
from segcam.viz.figures import comparison_scatter


def _flops(net, size: int) -> float | None:
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(paddle.flops(net, [1, 3, size, size], print_detail=False))
    except Exception:
        return None


def _budget(weights: str | None) -> str:
    """Training budget of a weights file, from its model card (shipped) or the run's state.json beside it."""
    if not weights:
        return "-"
    w = Path(weights)
    card, state = w.with_suffix(".json"), w.parent / "state.json"
    try:
        if card.is_file():
            info = json.loads(card.read_text())
            it, planned, batch = info["iteration"], info.get("planned_iterations"), info.get("batch_size")
        elif state.is_file():
            info = json.loads(state.read_text())
            it, planned, batch = info["iter"], info.get("iters"), info.get("batch_size")
        else:
            return "-"
    except (KeyError, ValueError):
        return "-"
    return f"{it} of {planned} it, batch {batch}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=segcam.list_models())
    ap.add_argument("--weights", nargs="*", default=[], help="NAME=PATH overrides")
    ap.add_argument("--data", default="deepcrack:test")
    ap.add_argument("--limit", type=int, default=0, help="first N test images (0 = all 237)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--reuse-cost", action="store_true",
                    help="keep params, FLOPs and the (uncontended) latency of OUT/comparison.json and re-evaluate only "
                         "the quality of --models (for new weights: cost does not depend on them); other rows stay")
    args = ap.parse_args(argv)
    overrides = dict(w.split("=", 1) for w in args.weights)
    pairs = parse_data_spec(args.data)[: args.limit or None]
    x = paddle.to_tensor(np.random.default_rng(0).standard_normal((1, 3, 400, 400)).astype(np.float32))
    old = {r["name"]: r for r in json.loads((Path(args.out) / "comparison.json").read_text())} if args.reuse_cost else {}
    rows = []
    for name in args.models:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = segcam.create_model(name, weights=overrides.get(name))
        net = model.network
        if name in old:
            cost = {k: old[name][k] for k in ("params", "gflops", "latency_ms")}
        else:
            params = sum(int(np.prod(p.shape)) for p in net.parameters() if not p.stop_gradient)
            with paddle.no_grad():
                net(x)
                times = []
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    net(x)
                    times.append(time.perf_counter() - t0)
            cost = {"params": params / 1e6, "gflops": (_flops(net, 400) or 0) / 1e9,
                    "latency_ms": statistics.median(times) * 1000}
        row = {"name": name, **cost, "weights": model.weights, "weights_sha256": model.weights_sha256,
               "budget": _budget(model.weights)}
        if not model.random_init:
            res = evaluate(net, pairs)
            row.update(miou=res["miou"], crack_iou=res["crack_iou"], f1=res["f1"], images=res["images"])
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    done = {r["name"] for r in rows}
    rows = sorted(rows + [r for n, r in old.items() if n not in done], key=lambda r: r["name"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"| model | params (M) | GFLOPs @400 (paddle.flops) | CPU latency @400 (ms) | training (256x256 crops) "
             f"| {args.data} mIoU | crack IoU | F1 |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        q = (f"{r['miou']:.4f} | {r['crack_iou']:.4f} | {r['f1']:.4f}" if "miou" in r else "not trained | - | -")
        lines.append(f"| {r['name']} | {r['params']:.2f} | {r['gflops']:.2f} | {r['latency_ms']:.0f} | {r['budget']} | {q} |")
    (out / "comparison.md").write_text("\n".join(lines) + "\n")
    (out / "comparison.json").write_text(json.dumps(rows, indent=2))
    trained = [r for r in rows if "miou" in r]
    if trained:
        comparison_scatter(trained, [out / "miou_vs_latency.png", out / "miou_vs_latency.pdf"], dpi=300)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
