"""Cost of Seg-Grad-CAM relative to the model's own forward+backward, for every zoo model.

For each model at 1x3xSxS (default 400, the paper's deployment size) it prints parameters, FLOPs
(``paddle.flops``), forward latency (no grad), and two ratios measured in the same run, interleaved:

* ``cam/fb``: one Seg-Grad-CAM call on the earliest of the four layers (the deepest backward, the worst
  case) divided by a plain forward + backward of the same target score to the input (target <= 1.10);
* ``4L/1L``: one call with four layers divided by one call with the earliest of them alone, i.e. the same
  backward depth (target <= 1.20). ``head/fb`` is a call on ``seg_head`` alone: its backward stops at the head.

Timings are medians of interleaved repeats after warm-up; the machine is noisy, so read the ratios, not the
milliseconds. Usage: ``python benchmarks/bench_cam.py [--models hrsegnet_b16 unet] [--repeats 5] [--out F.md]``
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import paddle

import segcam
from segcam.cam.engine import LayerGradientError
from segcam.cam.hooks import LayerOutputError
from segcam.data.images import normalize


def pick_layers(model, size: int) -> list[str]:
    """seg_head plus three single-tensor layers spread over the network's depth that reach the logits."""
    rows = [r for r in segcam.list_layers(model, (64, 64))
            if r.shape is not None and len(r.shape) == 4
            and "aux" not in r.name and r.name.count(".") <= 2 and r.name != model.aliases["seg_head"]]
    picked: list[str] = []
    probe = np.zeros((64, 64, 3), np.uint8)
    for frac in (0.15, 0.45, 0.75, 0.3, 0.6, 0.9, 0.05):
        if len(picked) == 3:
            break
        name = rows[int(frac * (len(rows) - 1))].name
        if name in picked:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                segcam.explain(model, probe, [name], segcam.ImageTarget())
            picked.append(name)
        except (LayerGradientError, LayerOutputError):
            continue
    order = [r.name for r in rows]
    return ["seg_head", *sorted(picked, key=order.index, reverse=True)]  # the earliest layer comes last


def flops(net, size: int) -> float | None:
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(paddle.flops(net, [1, 3, size, size], print_detail=False))
    except Exception:  # some PaddleSeg layers are unknown to paddle.flops
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=segcam.list_models())
    ap.add_argument("--size", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=None, help="also write the markdown table here")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
    target = segcam.ImageTarget()
    lines = [f"| model | params | GFLOPs @{args.size} | forward ms | fwd+bwd ms | CAM earliest layer ms | CAM 4 layers ms "
             "| cam/fb (<= 1.10) | 4L/1L (<= 1.20) | head/fb | layers (earliest last) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    print(lines[0], lines[1], sep="\n", flush=True)
    for name in args.models:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = segcam.create_model(name, weights="random")
        net = model.network
        params = sum(int(np.prod(p.shape)) for p in net.parameters() if not p.stop_gradient)
        gflops = flops(net, args.size)
        layers = pick_layers(model, args.size)
        x_np = normalize(img)

        def forward() -> None:
            with paddle.no_grad():
                net(paddle.to_tensor(x_np))

        def fwd_bwd() -> None:
            x = paddle.to_tensor(x_np)
            x.stop_gradient = False
            logits = net(x)[0]
            paddle.grad([logits[:, 1].sum()], [x])

        def cam1() -> None:
            segcam.explain(model, img, layers[-1:], target)

        def head() -> None:
            segcam.explain(model, img, layers[:1], target)

        def cam4() -> None:
            segcam.explain(model, img, layers, target)

        fns = {"fwd": forward, "fb": fwd_bwd, "cam1": cam1, "cam4": cam4, "head": head}
        for fn in fns.values():  # warm-up
            fn()
        times: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(args.repeats):
            for key, fn in fns.items():  # interleaved, so drift hits all four alike
                t0 = time.perf_counter()
                fn()
                times[key].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) * 1000 for k, v in times.items()}
        row = (f"| {name} | {params / 1e6:.2f} M | {gflops / 1e9:.2f} |" if gflops else f"| {name} | {params / 1e6:.2f} M | - |")
        row += (f" {med['fwd']:.0f} | {med['fb']:.0f} | {med['cam1']:.0f} | {med['cam4']:.0f} | "
                f"{med['cam1'] / med['fb']:.2f} | {med['cam4'] / med['cam1']:.2f} | {med['head'] / med['fb']:.2f} | "
                f"{', '.join(layers)} |")
        lines.append(row)
        print(row, flush=True)
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
