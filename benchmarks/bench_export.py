"""Deployment speed: images per second at 1x3xSxS for dygraph, Paddle Inference and onnxruntime.

Every backend runs in the same process, interleaved, on the same input (medians after warm-up); the
ratio to dygraph is printed per model. CPU only here; on a GPU machine pass ``--device gpu`` for
dygraph. Usage: ``python benchmarks/bench_export.py [--models hrsegnet_b16 ...] [--size 400] [--threads 2]``
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
from segcam.export import export_model, load_predictor
from segcam.images import normalize


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
    args = ap.parse_args(argv)
    rgb = np.random.default_rng(0).integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
    x = normalize(rgb)
    print("| model | dygraph img/s | Paddle Inference img/s (oneDNN) | onnxruntime img/s | PI / dygraph | ORT / dygraph |")
    print("|---|---|---|---|---|---|")
    for name in args.models:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = segcam.create_model(name, weights="random")
        with tempfile.TemporaryDirectory() as tmp:
            export_model(model, Path(tmp) / "pd", "paddle", (args.size, args.size), rgb)
            export_model(model, Path(tmp) / "onnx", "onnx", (args.size, args.size), rgb)
            pi = load_predictor(Path(tmp) / "pd", threads=args.threads)
            ort = load_predictor(Path(tmp) / "onnx", threads=args.threads)

            def dy() -> None:
                with paddle.no_grad():
                    model.network(paddle.to_tensor(x))

            d = _ips(dy, args.repeats)
            p = _ips(lambda: pi(x), args.repeats)
            o = _ips(lambda: ort(x), args.repeats)
        print(f"| {name} | {d:.2f} | {p:.2f} ({'on' if pi.onednn else 'off'}) | {o:.2f} | {p / d:.2f} | {o / d:.2f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
