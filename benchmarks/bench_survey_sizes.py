"""``segcam survey`` and ``segcam explain`` against ``segcam predict`` at the sizes surveyors have.

Photos: mosaics of real DeepCrack test photos (distinct frames, row by row) of 6000x4000 (a 24 MP survey
photo) and 2000x1500, and 544x384 DeepCrack test frames as they are (``--frames`` of them, so that
per-photo costs outweigh the command's start-up). Each command runs as a child process of this script, as a
user runs it, one after the other in this one invocation (the machine is noisy: read the ratios):

* ``predict``: ``segcam predict`` with an ONNX export of the same network (tiles 1024 for the mosaics, the
  photo's own size for 544x384): the limit, since prediction is what every other command also does;
* ``survey``: ``segcam survey`` (default tiles, export cache warmed first: building an export is a one-off);
* ``explain``: ``segcam explain --tile 1024`` (default layer and method, per-crack records on), and ``explain_no_cracks``
  (``--no-cracks``), for the mosaics; ``explain`` without ``--tile`` for 544x384.

Printed per size and command: seconds, peak RSS (the child's ``ru_maxrss``), the ratio to predict and photos
per hour. Targets (issue "survey at the speed of prediction"; B16, 2 threads, 6000x4000): survey <= 2.0x
predict, explain --tile 1024 <= 4.0x, both <= 2 GB peak RSS; at 544x384 survey <= 1.5x predict.

Usage: ``python benchmarks/bench_survey_sizes.py [--model hrsegnet_b16] [--frames 60] [--sizes 6000x4000 2000x1500
544x384] [--skip-explain] [--out benchmarks/results/survey_sizes.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from segcam.data.datasets import data_root


def test_frames() -> list[Path]:
    return sorted((data_root() / "deepcrack" / "images" / "test").glob("*.jpg"))


def mosaic(width: int, height: int) -> np.ndarray:
    """DeepCrack test frames (544x384), distinct, tiled row by row and cut to ``width`` x ``height``."""
    frames = iter(test_frames())
    rows = []
    for _ in range(-(-height // 384)):
        rows.append(np.concatenate([np.asarray(Image.open(next(frames)).convert("RGB"))
                                    for _ in range(-(-width // 544))], axis=1))
    return np.concatenate(rows, axis=0)[:height, :width]


def run(cmd: list[str], env: dict) -> dict:
    """Run a segcam command in a child process; its wall time and peak RSS (from wait4's rusage)."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t
    err = proc.stderr.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-3000:]}")
    return {"seconds": round(seconds, 2), "peak_rss_gb": round(usage.ru_maxrss / 1024 ** 2, 3)}


def segcam(*args: str) -> list[str]:
    return [sys.executable, "-m", "segcam", *args]


def bench_size(size: str, args: argparse.Namespace, tmp: Path, env: dict) -> dict:
    w, h = (int(v) for v in size.split("x"))
    folder = tmp / size
    folder.mkdir()
    if (w, h) == (544, 384):
        photos = [str(p) for p in test_frames() if Image.open(p).size == (544, 384)][: args.frames]
        export_size = ["384", "544"]
    else:
        path = folder / f"mosaic_{size}.png"
        Image.fromarray(mosaic(w, h)).save(path)
        photos = [str(path)]
        export_size = ["1024", "1024"]
    model = ["--model", args.model]
    export = tmp / f"export_{'x'.join(export_size)}"
    if not export.exists():
        run(segcam("export", *model, "--format", "onnx", "--size", *export_size, "--out", str(export)), env)
    cache = tmp / "cache"
    run(segcam("survey", *model, "--cache", str(cache), "--out", str(folder / "warm"), photos[0]), env)  # builds the exports
    threads = ["--threads", str(args.threads)]
    commands = {"predict": segcam("predict", "--export", str(export), *threads, "--max-side", "16384",
                                  "--out", str(folder / "predict"), *photos),
                "survey": segcam("survey", *model, *threads, "--cache", str(cache), "--out", str(folder / "survey"),
                                 *photos)}
    if not args.skip_explain:
        tile = [] if (w, h) == (544, 384) else ["--tile", "1024"]
        base = segcam("explain", *model, *threads, "--max-side", "16384", *tile)  # the default layer and method
        commands["explain"] = [*base, "--out", str(folder / "explain"), *photos]
        commands["explain_no_cracks"] = [*base, "--no-cracks", "--out", str(folder / "explain_nc"), *photos]
    out: dict = {"photos": len(photos), "size": size}
    for name, cmd in commands.items():
        out[name] = r = run(cmd, env)
        r["photos_per_hour"] = round(3600 * len(photos) / r["seconds"], 1)
        print(f"{size} {name}: {r['seconds']:.1f} s, peak {r['peak_rss_gb']:.2f} GB, {r['photos_per_hour']:.0f} photos/h",
              flush=True)
    for name in commands:
        if name != "predict":
            out[name]["ratio_to_predict"] = round(out[name]["seconds"] / out["predict"]["seconds"], 2)
    survey = json.loads((folder / "survey" / "manifest.json").read_text())["images"]
    out["survey_cracks"] = sum(len(r.get("cracks", [])) for r in survey)
    out["survey_compute_s"] = round(sum(r["survey"]["seconds"] for r in survey), 2)  # prediction and records, no I/O
    print(f"{size}: survey {out['survey']['ratio_to_predict']:.2f}x predict"
          + (f", explain {out['explain']['ratio_to_predict']:.2f}x, explain --no-cracks "
             f"{out['explain_no_cracks']['ratio_to_predict']:.2f}x" if "explain" in out else "")
          + f"; {out['survey_cracks']} cracks; survey compute {out['survey_compute_s']} s", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="hrsegnet_b16")
    ap.add_argument("--frames", type=int, default=60, help="544x384 photos in the small-photo batch")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", nargs="+", default=["6000x4000", "2000x1500", "544x384"])
    ap.add_argument("--skip-explain", action="store_true")
    ap.add_argument("--out", default="benchmarks/results/survey_sizes.json")
    args = ap.parse_args()
    env = {**os.environ, "GLOG_minloglevel": "2"}
    tmp = Path(tempfile.mkdtemp(prefix="segcam-sizes-"))
    results: dict = {"model": args.model, "threads": args.threads, "cpus": os.cpu_count(), "sizes": {}}
    try:
        for size in args.sizes:
            results["sizes"][size] = bench_size(size, args, tmp, env)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
