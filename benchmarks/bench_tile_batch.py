"""Should ``segcam explain --tile`` batch its tiles? One tile per pass against batches of 2 and 4, measured.

The tiles are 1024 px crops of the 6000x4000 mosaic of ``bench_survey_sizes.py`` (real DeepCrack test photos)
explained for their predicted crack with the default layer and method, in one
process, alternating the batch sizes round by round (the machine is noisy: read the ratios). Printed: seconds
per tile for each batch size and its ratio to one tile per pass.

Usage: ``python benchmarks/bench_tile_batch.py [--model hrsegnet_b16] [--threads 2] [--tiles 8] [--rounds 3]
[--out bench_out/tile_batch.json]``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import paddle
from bench_survey_sizes import mosaic  # a sibling script (run from benchmarks/ or as benchmarks/...)

import segcam
from segcam.utils.memory import keep_freed_memory


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="hrsegnet_b16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tiles", type=int, default=8, help="tiles explained per batch size and round (a multiple of 4)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("bench_out/tile_batch.json"))
    args = ap.parse_args()
    keep_freed_memory()  # as the command line runs
    paddle.base.core.set_num_threads(args.threads)
    model = segcam.create_model(args.model)
    photo = mosaic(6000, 4000)
    crops = [np.ascontiguousarray(photo[y:y + 1024, x:x + 1024]) for y in range(0, 2976, 992) for x in range(0, 4976, 996)]
    crops = crops[: args.tiles]
    segcam.explain(model, crops[:4], ["seg_head"])  # warm-up: kernels and the allocator
    per_tile: dict[int, list[float]] = {1: [], 2: [], 4: []}
    for _ in range(args.rounds):
        for size in per_tile:
            t = time.perf_counter()
            for i in range(0, len(crops), size):
                segcam.explain(model, crops[i:i + size], ["seg_head"])
            per_tile[size].append((time.perf_counter() - t) / len(crops))
    result = {"model": args.model, "threads": args.threads, "tile": 1024, "tiles": len(crops), "rounds": args.rounds,
              "seconds_per_tile": {str(k): round(float(np.median(v)), 3) for k, v in per_tile.items()}}
    base = result["seconds_per_tile"]["1"]
    result["ratio_to_single"] = {k: round(v / base, 2) for k, v in result["seconds_per_tile"].items()}
    for k, v in result["seconds_per_tile"].items():
        print(f"batch {k}: {v:.3f} s per tile ({result['ratio_to_single'][k]:.2f}x one tile per pass)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
