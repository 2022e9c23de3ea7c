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
from segcam.models.zoo import get_model_spec, split_tag
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


#: The training data of each compared tag (the card of each weights file has the exact mix).
DATA = {"mix": "six-set mix", "deepcrack": "DeepCrack only"}


def _data(tag: str | None) -> str:
    return DATA.get(tag or "", tag or "-")


def default_rows() -> list[str]:
    """Every model's ``mix`` and ``deepcrack`` weights (the like-with-like rows), or its bare name if it has none."""
    rows = []
    for name in segcam.list_models():
        tags = [t for t in DATA if t in get_model_spec(name).tags]
        rows += [f"{name}.{t}" for t in tags] or [name]
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=None,
                    help="models or NAME.TAG weights (default: every model's mix and deepcrack weights, like with like)")
    ap.add_argument("--weights", nargs="*", default=[], help="NAME=PATH overrides")
    ap.add_argument("--data", default="deepcrack:test")
    ap.add_argument("--limit", type=int, default=0, help="first N test images (0 = all 237)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--reuse-cost", action="store_true",
                    help="keep params, FLOPs and the (uncontended) latency of OUT/comparison.json and re-evaluate only "
                         "the quality of --models (for new weights: cost does not depend on them); other rows stay")
    args = ap.parse_args(argv)
    args.models = args.models or default_rows()
    overrides = dict(w.split("=", 1) for w in args.weights)
    pairs = parse_data_spec(args.data)[: args.limit or None]
    x = paddle.to_tensor(np.random.default_rng(0).standard_normal((1, 3, 400, 400)).astype(np.float32))
    old = {r["name"]: r for r in json.loads((Path(args.out) / "comparison.json").read_text())} if args.reuse_cost else {}
    # cost depends on the architecture only: any earlier row of the same network serves
    old_cost = {r.get("arch", split_tag(n)[0]): r for n, r in old.items()}
    rows = []
    for name in args.models:
        arch = split_tag(name)[0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = segcam.create_model(name, weights=overrides.get(name))
        net = model.network
        if arch in old_cost:
            cost = {k: old_cost[arch][k] for k in ("params", "gflops", "latency_ms")}
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
            old_cost[arch] = cost  # measured once per network: its other weights share it
        row = {"name": name, "arch": arch, "tag": model.tag, "data": _data(model.tag), **cost, "weights": model.weights,
               "weights_sha256": model.weights_sha256, "budget": _budget(model.weights)}
        if not model.random_init:
            res = evaluate(net, pairs)
            row.update(miou=res["miou"], crack_iou=res["crack_iou"], f1=res["f1"], images=res["images"])
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    done = {r["name"] for r in rows}
    tagged = {split_tag(n)[0] for n in [*done, *old] if split_tag(n)[1]}  # networks with NAME.TAG rows
    # an earlier row stays unless this run redid it, or it is a bare name whose network now has tagged rows
    kept = [r for n, r in old.items() if n not in done and not (split_tag(n)[1] is None and n in tagged)]
    rows = sorted(rows + kept, key=lambda r: r["name"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"| model | trained on | params (M) | GFLOPs @400 (paddle.flops) | CPU latency @400 (ms) "
             f"| training (256x256 crops) | {args.data} mIoU | crack IoU | F1 |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        q = (f"{r['miou']:.4f} | {r['crack_iou']:.4f} | {r['f1']:.4f}" if "miou" in r else "not trained | - | -")
        lines.append(f"| {r['name']} | {r.get('data', '-')} | {r['params']:.2f} | {r['gflops']:.2f} | "
                     f"{r['latency_ms']:.0f} | {r['budget']} | {q} |")
    (out / "comparison.md").write_text("\n".join(lines) + "\n")
    (out / "comparison.json").write_text(json.dumps(rows, indent=2))
    trained = [{**r, "hollow": r.get("tag") == "deepcrack"} for r in rows if "miou" in r]
    if trained:
        comparison_scatter(trained, [out / "miou_vs_latency.png", out / "miou_vs_latency.pdf"], dpi=300,
                           hollow_label="DeepCrack-only weights")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
