"""The hand-over at survey sizes: `segcam review --import`, `segcam report` and `cracks.geojson`.

Two runs, each made with ``segcam survey --masks`` (so every crack has a ``truth``):

* ``deepcrack_test``: the 237 DeepCrack test photos (544x384);
* ``mosaics``: three 6000x4000 mosaics of DeepCrack test frames (24 MP photos, as a DSLR survey has).

On each, a scripted reviewer (the ``truth`` column: a true crack confirmed, a false one rejected) gives a verdict on
every crack by ``segcam review --import``; then ``segcam report --pixel-size 0.1``. Printed per run: photos,
cracks, the wall time and peak RSS of the survey, the import and the report (child processes), the sizes of
``report.html`` and ``cracks.geojson``, and whether the GeoJSON has one valid feature per crack (shapely).

Usage: ``python benchmarks/bench_handover.py [--out benchmarks/results/handover.json] [--threads 2]``
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from bench_survey_sizes import run, segcam, test_frames  # noqa: E402

from segcam.data.datasets import data_root  # noqa: E402


def _photos(kind: str, folder: Path) -> tuple[Path, Path]:
    """A folder of photos and one of their masks."""
    photos, masks = folder / "photos", folder / "masks"
    photos.mkdir(parents=True)
    masks.mkdir()
    if kind == "deepcrack_test":
        for f in test_frames():
            os.symlink(f, photos / f.name)
            os.symlink(data_root() / "deepcrack" / "masks" / "test" / f"{f.stem}.png", masks / f"{f.stem}.png")
        return photos, masks
    frames = test_frames()
    for k in range(3):  # distinct frames per mosaic: rotate the list
        rot = frames[k * 40:] + frames[:k * 40]
        img = mosaic_from(rot, 6000, 4000, rgb=True)
        Image.fromarray(img).save(photos / f"mosaic_{k}.jpg", quality=92)
        Image.fromarray(mosaic_from(rot, 6000, 4000, rgb=False)).save(masks / f"mosaic_{k}.png")
    return photos, masks


def mosaic_from(frames: list[Path], width: int, height: int, rgb: bool) -> np.ndarray:
    """Frames tiled row by row (as ``bench_survey_sizes.mosaic``) in a given order, of the photos or of their masks."""
    it = iter(frames)
    mask_dir = data_root() / "deepcrack" / "masks" / "test"
    rows = []
    for _ in range(-(-height // 384)):
        row = []
        for _ in range(-(-width // 544)):
            f = next(it)
            img = Image.open(f).convert("RGB") if rgb else Image.open(mask_dir / f"{f.stem}.png").convert("L")
            row.append(np.asarray(img))
        rows.append(np.concatenate(row, axis=1))
    return np.concatenate(rows, axis=0)[:height, :width]


def bench(kind: str, tmp: Path, env: dict, threads: int) -> dict:
    import shapely.geometry

    photos, masks = _photos(kind, tmp / kind)
    out = tmp / kind / "run"
    res = {"survey": run(segcam("survey", str(photos), "--out", str(out), "--masks", str(masks),
                                "--threads", str(threads)), env)}
    with open(out / "cracks.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    verdicts = tmp / kind / "verdicts.csv"
    with open(verdicts, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["name", "crack", "verdict"])
        for r in rows:
            w.writerow([r["name"], r["crack"], "confirmed" if r["truth"] == "true" else "rejected"])
    res["import"] = run(segcam("review", str(out), "--import", str(verdicts)), env)
    res["report"] = run(segcam("report", str(out), "--pixel-size", "0.1"), env)
    doc = json.loads((out / "cracks.geojson").read_text())
    valid = all(g.is_valid for f in doc["features"] for g in shapely.geometry.shape(f["geometry"]).geoms)
    res.update(photos=len(list(photos.iterdir())), cracks=len(rows),
               confirmed=sum(r["truth"] == "true" for r in rows),
               report_mb=round((out / "report.html").stat().st_size / 1e6, 2),
               geojson_mb=round((out / "cracks.geojson").stat().st_size / 1e6, 2),
               geojson_features=len(doc["features"]), geojson_valid=valid)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "handover.json"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    env = {**os.environ, "SEGCAM_CACHE": tempfile.mkdtemp(prefix="segcam-bench-cache-")}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("deepcrack_test", "mosaics"):
            results[kind] = r = bench(kind, Path(tmp), env, args.threads)
            print(f"{kind}: {r['photos']} photos, {r['cracks']} cracks ({r['confirmed']} true); survey "
                  f"{r['survey']['seconds']} s; review --import {r['import']['seconds']} s "
                  f"({r['import']['peak_rss_gb']} GB); report {r['report']['seconds']} s ({r['report']['peak_rss_gb']} GB), "
                  f"report.html {r['report_mb']} MB, cracks.geojson {r['geojson_mb']} MB with {r['geojson_features']} "
                  f"features (valid: {r['geojson_valid']})", flush=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
