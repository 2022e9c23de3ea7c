"""Does `segcam finetune` learn from a reviewer? Measured on photos the fine-tune never saw.

Protocol (issue: the network learns from the reviewer). The DeepCrack-only weights (``hrsegnet_b16.deepcrack``)
play the generic network; CFD and masonry_dais, which they never saw, play two surveys. Each set's photos are
split in half (seeded): the **reviewed** half is surveyed (``segcam survey --masks``), and a simulated reviewer
built from the ground truth (the ``truth`` rule of the review model: a crack is true when 60 % of it lies within
3 px of a ground-truth crack) gives verdicts on the first N cracks of the review queue, and separately marks the
cracks the network missed (ground-truth crack farther than 3 px from any prediction, components of 16 px or more,
as their skeleton's paths with twice the median distance to the edge as width). Conditions, each fine-tuned from
the same weights with ``segcam.adapt`` (replay of DeepCrack's train split, as the weights were trained):

* ``verdicts N`` for N = 50, 100, 200 and all cracks;
* ``verdicts + missed``: all verdicts and every missed-crack mark;
* ``full masks``: the ground-truth masks of the same reviewed photos (the upper bound).

Scores on the **held-out** half (full frames): the share of predicted cracks that are false, by count and by
length; the ground-truth crack length found (the share of the ground truth's skeleton within 3 px of a prediction);
mIoU. Plus CPU minutes of each fine-tune (one thread unless ``--threads``).

Usage: ``python benchmarks/adapt.py [--sets cfd masonry_dais] [--iters 150] [--threads 1]
[--out benchmarks/results/adapt.json]``
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BASE = "hrsegnet_b16.deepcrack"
CRACK_WEIGHT = 0.5
TOL = 3


def _split(name: str, seed: int = 0) -> tuple[list, list]:
    from segcam.data.datasets import list_pairs

    pairs = sorted(list_pairs(name, "all"), key=lambda p: str(p.image))
    order = np.random.default_rng(seed).permutation(len(pairs))
    half = len(pairs) // 2
    return [pairs[i] for i in sorted(order[:half])], [pairs[i] for i in sorted(order[half:])]


def _segcam(*args: str, threads: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run([sys.executable, "-m", "segcam", *args], capture_output=True, text=True, env=env)
    if proc.returncode:
        raise RuntimeError(f"segcam {' '.join(args)} failed:\n{proc.stderr[-3000:]}")


def _survey(pairs: list, tmp: Path, threads: int) -> Path:
    photos, masks = tmp / "photos", tmp / "masks"
    photos.mkdir(parents=True)
    masks.mkdir()
    for p in pairs:
        os.symlink(p.image, photos / Path(p.image).name)
        os.symlink(p.mask, masks / f"{Path(p.image).stem}.png")
    run = tmp / "run"
    _segcam("survey", str(photos), "--model", BASE, "--masks", str(masks), "--out", str(run), "--threads",
            str(threads), threads=threads)
    return run


def _missed_marks(run: Path, pairs: list) -> list[tuple[str, list, float]]:
    """(photo name, points, width) of every ground-truth crack the run's prediction missed."""
    import cv2

    from segcam.data.datasets import load_mask
    from segcam.survey.cracks import crack_labels, skeleton_length, skeleton_paths

    man = json.loads((run / "manifest.json").read_text())
    by_image = {Path(r["image"]).resolve(): r for r in man["images"]}
    marks = []
    for p in pairs:
        rec = by_image[Path(p.image).resolve()]
        pred = cv2.imread(str(run / rec["prediction"]), cv2.IMREAD_GRAYSCALE) > 0
        gt = load_mask(p.mask) > 0
        near = cv2.distanceTransform((~pred).astype(np.uint8), cv2.DIST_L2, 5) <= TOL
        labels, n = crack_labels(gt & ~near)
        for k in range(1, n + 1):
            comp = labels == k
            edt = cv2.distanceTransform(comp.astype(np.uint8), cv2.DIST_L2, 5)
            _, sk = skeleton_length(comp)
            width = float(max(1.0, 2 * np.median(edt[sk]))) if sk.any() else 2.0
            for path in skeleton_paths(sk):
                if len(path) >= 2:
                    marks.append((rec["name"], (path + 0.5).tolist(), width))
    return marks


def _scores(weights: Path | None, pairs: list) -> dict[str, float]:
    """False share (count, length), ground-truth length found and mIoU of a model on held-out pairs."""
    import cv2
    from skimage.morphology import skeletonize

    import segcam
    from segcam.data.datasets import load_mask
    from segcam.data.images import read_image
    from segcam.survey.cracks import crack_labels, skeleton_length
    from segcam.survey.review import label_cracks
    from segcam.training.loop import predict_mask

    model = segcam.create_model("hrsegnet_b16", weights=str(weights) if weights else None) if weights else \
        segcam.create_model(BASE)
    n_false = n_all = 0
    len_false = len_all = 0.0
    found = total = 0
    inter, union = np.zeros(2), np.zeros(2)
    for p in pairs:
        pred = predict_mask(model.network, read_image(p.image)) == 1
        gt = load_mask(p.mask) > 0
        labels, n = crack_labels(pred)
        ok = label_cracks(labels, gt)
        for k, true in enumerate(ok, 1):
            length, _ = skeleton_length(labels == k)
            n_all += 1
            len_all += length
            if not true:
                n_false += 1
                len_false += length
        sk = skeletonize(gt)
        near = cv2.distanceTransform((~pred).astype(np.uint8), cv2.DIST_L2, 5) <= TOL
        found, total = found + int((sk & near).sum()), total + int(sk.sum())
        for c, (g, q) in enumerate(((~gt, ~pred), (gt, pred))):
            inter[c] += (g & q).sum()
            union[c] += (g | q).sum()
    return {"false_share_count": n_false / max(1, n_all), "false_share_length": len_false / max(1e-9, len_all),
            "gt_length_found": found / max(1, total), "miou": float(np.mean(inter / np.maximum(union, 1))),
            "cracks": n_all}


def _finetune(run: Path, out: Path, iters: int, threads: int, lr: float) -> tuple[Path, float]:
    t = time.time()
    _segcam("finetune", str(run), "--out", str(out), "--iters", str(iters), "--threads", str(threads), "--lr", str(lr),
            "--crack-weight", str(CRACK_WEIGHT), threads=threads)
    return out / "weights.pdparams", (time.time() - t) / 60


def _full_mask_finetune(run: Path, pairs: list, out: Path, iters: int, threads: int, lr: float) -> tuple[Path, float]:
    """The upper bound: the same loop on the reviewed photos' ground-truth masks (windows around their cracks)."""
    import paddle

    import segcam
    from segcam.adapt.finetune import WINDOW_PX, _replay_data
    from segcam.adapt.loop import train_on_windows
    from segcam.data.datasets import load_mask
    from segcam.data.images import read_image

    paddle.base.core.set_num_threads(threads)
    t = time.time()
    wins = []
    for p in pairs:
        rgb, gt = read_image(p.image), (load_mask(p.mask) > 0).astype(np.uint8)
        h, w = gt.shape
        for y in range(0, max(1, h - WINDOW_PX // 2), WINDOW_PX // 2):
            for x in range(0, max(1, w - WINDOW_PX // 2), WINDOW_PX // 2):
                wins.append((rgb[y:y + WINDOW_PX, x:x + WINDOW_PX], gt[y:y + WINDOW_PX, x:x + WINDOW_PX]))
    model = segcam.create_model(BASE)
    train_on_windows(model, wins, _replay_data("deepcrack:train"), out, iters, 8, lr, 0, lambda m: None, CRACK_WEIGHT)
    return out / "weights.pdparams", (time.time() - t) / 60


def _verdicts(run: Path, n: int | None, dst: Path) -> int:
    rows = sorted(csv.DictReader(open(run / "cracks.csv", newline="")), key=lambda r: int(r["review_rank"]))
    rows = rows if n is None else rows[:n]
    with open(dst, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["name", "crack", "verdict"])
        for r in rows:
            w.writerow([r["name"], r["crack"], "confirmed" if r["truth"] == "true" else "rejected"])
    return len(rows)


def bench_set(name: str, tmp: Path, args: argparse.Namespace) -> dict:
    from segcam.survey.missed import mark_missed

    reviewed, held = _split(name)
    base = _survey(reviewed, tmp / "survey", args.threads)
    res = {"reviewed_photos": len(reviewed), "held_out_photos": len(held),
           "cracks_in_reviewed": sum(1 for _ in open(base / "cracks.csv")) - 1,
           "before": _scores(None, held)}
    print(f"{name}: before {res['before']}", flush=True)
    conditions = [(f"verdicts {n}", n, False) for n in args.n] + [("verdicts all", None, False),
                                                                  ("verdicts + missed", None, True)]
    for label, n, missed in conditions:
        if args.conditions and label not in args.conditions:
            continue
        run = tmp / label.replace(" ", "_").replace("+", "and")
        shutil.copytree(base, run)
        given = _verdicts(run, n, tmp / "v.csv")
        _segcam("review", str(run), "--import", str(tmp / "v.csv"), threads=1)
        marks = 0
        if missed:
            for photo, pts, width in _missed_marks(run, reviewed):
                mark_missed(run, photo, pts, width)
                marks += 1
        weights, minutes = _finetune(run, tmp / f"{run.name}_ft", args.iters, args.threads, args.lr)
        res[label] = {"verdicts": given, "missed_marks": marks, "minutes": round(minutes, 2), **_scores(weights, held)}
        print(f"{name}: {label}: {res[label]}", flush=True)
    if args.conditions and "full masks" not in args.conditions:
        return res
    weights, minutes = _full_mask_finetune(base, reviewed, tmp / "full_ft", args.iters, args.threads, args.lr)
    res["full masks"] = {"minutes": round(minutes, 2), **_scores(weights, held)}
    print(f"{name}: full masks: {res['full masks']}", flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", nargs="+", default=["cfd", "masonry_dais"])
    ap.add_argument("--n", nargs="+", type=int, default=[50, 100, 200])
    ap.add_argument("--iters", type=int, default=150)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lr", type=float, default=0.005)
    ap.add_argument("--crack-weight", type=float, default=0.5)
    ap.add_argument("--conditions", nargs="+", default=None,
                    help="only these conditions (e.g. 'verdicts 200' 'full masks'); default all")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "adapt.json"))
    args = ap.parse_args()
    global CRACK_WEIGHT
    CRACK_WEIGHT = args.crack_weight
    results = {"base": BASE, "iters": args.iters, "threads": args.threads, "lr": args.lr, "crack_weight": CRACK_WEIGHT}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sets:
            results[name] = bench_set(name, Path(tmp) / name, args)
            Path(args.out).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
