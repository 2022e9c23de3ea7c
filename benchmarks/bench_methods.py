"""Cost of each CAM method relative to seg_grad_cam, and batched vs one-channel-at-a-time Score-CAM.

Same model, same real image, measured interleaved in one run (medians). Targets: seg_score_cam with
``batch_size=16`` at least 3x faster than ``batch_size=1``. Usage:
``python benchmarks/bench_methods.py [--model hrsegnet_b16] [--layer seg3] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import segcam

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="hrsegnet_b16")
    ap.add_argument("--layer", default="seg3")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--crop", type=int, default=256, help="square crop of the example photo")
    args = ap.parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = segcam.create_model(args.model, weights="random")
    rgb = segcam.read_image(ROOT / "examples" / "images" / "deepcrack_11215-9.jpg")[: args.crop, : args.crop].copy()
    target = segcam.ImageTarget()
    runs = {m: {} for m in segcam.list_methods()}
    runs["seg_score_cam"] = {"batch_size": 16}
    runs["seg_score_cam (batch 1)"] = {"batch_size": 1}
    runs["ablation_cam"] = {"batch_size": 16}
    runs["ablation_cam (batch 1)"] = {"batch_size": 1}
    times: dict[str, list[float]] = {k: [] for k in runs}
    for name, kw in runs.items():  # warm-up
        segcam.explain(model, rgb, args.layer, target, name.split(" ")[0], **kw)
    for _ in range(args.repeats):
        for name, kw in runs.items():
            t0 = time.perf_counter()
            segcam.explain(model, rgb, args.layer, target, name.split(" ")[0], **kw)
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["seg_grad_cam"]
    print(f"model {args.model}, layer {args.layer}, image {args.crop}x{args.crop}, medians of {args.repeats}")
    print("| method | ms | x seg_grad_cam |\n|---|---|---|")
    for k, v in sorted(med.items(), key=lambda kv: kv[1]):
        print(f"| {k} | {v * 1000:.0f} | {v / base:.1f} |")
    for m in ("seg_score_cam", "ablation_cam"):
        print(f"{m}: batch 16 is {med[m + ' (batch 1)'] / med[m]:.2f}x faster than one channel at a time (target >= 3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
