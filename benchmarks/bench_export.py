"""Deployment speed: images per second at 1x3xSxS for dygraph, Paddle Inference and onnxruntime.

Every backend runs in the same process, interleaved, on the same input (medians after warm-up); the
ratio to dygraph is printed per model. On a GPU machine (paddlepaddle-gpu, onnxruntime-gpu) pass
``--device gpu``: dygraph, Paddle Inference and onnxruntime then all run on GPU 0 (not measured here: this
project had no GPU). Usage: ``python benchmarks/bench_export.py [--models hrsegnet_b16 ...] [--size 400]
[--threads 2] [--device cpu|gpu]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import paddle

import segcam
from segcam.data.images import normalize
from segcam.models.export import ExportError, export_model, load_predictor


def _ips(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1.0 / statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=segcam.list_models())
    ap.add_argument("--size", type=int, default=400)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    args = ap.parse_args(argv)
    paddle.set_device(args.device)
    paddle.base.core.set_num_threads(args.threads)  # dygraph on as many threads as the exported backends
    rgb = np.random.default_rng(0).integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
    x = normalize(rgb)
    print(f"All backends on {args.device}" + (f" ({args.threads} threads)" if args.device == "cpu" else "")
          + f", 1x3x{args.size}x{args.size}, medians of {args.repeats}.")
    print("| model | dygraph img/s | Paddle Inference img/s | onnxruntime img/s | PI / dygraph | ORT / dygraph |")
    print("|---|---|---|---|---|---|")
    for name in args.models:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = segcam.create_model(name, weights="random")
        with tempfile.TemporaryDirectory() as tmp:

            def dy() -> None:
                with paddle.no_grad():
                    model.network(paddle.to_tensor(x))[0].numpy()  # .numpy() waits for a GPU to finish

            d = _ips(dy, args.repeats)
            cells = []
            for fmt in ("paddle", "onnx"):
                try:
                    export_model(model, Path(tmp) / fmt, fmt, (args.size, args.size), rgb)
                except ExportError as exc:  # reported, not hidden: the export is refused
                    cells.append((None, str(exc).split(";")[0].replace("export verification failed: ", "")))
                    continue
                pred = load_predictor(Path(tmp) / fmt, threads=args.threads, device=args.device)
                cells.append((_ips(lambda pred=pred: pred(x), args.repeats), "oneDNN on" if pred.onednn else
                              ("oneDNN off" if fmt == "paddle" else "")))
        shown = [f"{v:.2f}" + (f" ({note})" if note else "") if v else f"refused: {note}" for v, note in cells]
        ratios = [f"{v / d:.2f}" if v else "-" for v, _ in cells]
        print(f"| {name} | {d:.2f} | {shown[0]} | {shown[1]} | {ratios[0]} | {ratios[1]} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
