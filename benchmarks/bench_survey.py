"""Survey-scale costs of ``segcam explain``: saving, output size, the Ray engine and tiles.

Every number is a ratio of two runs made in this one invocation (the machine is noisy; read the ratios):

* ``save``: throughput of the batch pipeline writing the default artifacts over the same batch computing
  only (target >= 0.85), on N DeepCrack test frames, one layer (per-crack records off in both: their cost is
  ``bench_cracks.py``'s);
* ``bytes``: default output per image-layer at 544x384 (target <= 300 KB), and per artifact;
* ``ray2``: ``--engine ray`` with 2 workers over the local engine on the same photos (target >= 1.6x on
  2 cores); ``ray1``: Ray with 1 worker over the local engine (per-image overhead, target <= 10 %).
  Each engine runs with one Paddle thread per worker; Ray's start-up (ray.init, actors loading the model)
  is counted;
* ``tile``: pixel agreement of tiled and whole-photo prediction (tiles of 256 on 544x384 frames, and the default
  1024/128 on frames enlarged 3x, with two diagnostics of why they differ) and the seam ratio (see
  tests/test_survey.py); the crack IoU of ``segcam predict``'s 400x400 tiling against the network's own mask;
(Time and memory at the sizes of survey photos, 6000x4000 included, are ``bench_survey_sizes.py``'s.)

Usage: ``python benchmarks/bench_survey.py [--images 60] [--ray-images 100] [--model hrsegnet_b16]
[--skip ray tile] [--out benchmarks/results/survey.json]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from functools import partial
from pathlib import Path

import cv2
import numpy as np

import segcam
from segcam.data.datasets import data_root
from segcam.survey.batch import ExplainJob, compute_image, run_explain
from segcam.survey.ray_engine import RayOptions, ray_loop


def frames(n: int) -> list[Path]:
    paths = sorted((data_root() / "deepcrack" / "images" / "test").glob("*.jpg"))
    return [paths[i % len(paths)] for i in range(n)]


def unique_copies(paths: list[Path], folder: Path) -> list[Path]:
    """Symlinks with distinct names (the same frame may appear twice in a long list)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, p in enumerate(paths):
        link = folder / f"{i:04d}_{p.name}"
        link.symlink_to(p)
        out.append(link)
    return out


def bench_save(model, paths: list[Path], layer: str, tmp: Path) -> dict:
    # the files alone: the per-crack records (also on by default) have their own cost target in bench_cracks.py
    job = ExplainJob(model, (layer,), cracks=False)
    compute_image(job, paths[0], "warm")  # warm-up
    t = time.perf_counter()
    for i, p in enumerate(paths):
        compute_image(job, p, f"x{i}")
    compute_only = time.perf_counter() - t
    out = tmp / "save"
    t = time.perf_counter()
    run_explain(job, paths, out)
    with_save = time.perf_counter() - t
    sizes: dict[str, list[int]] = {"overlay": [], "heatmap": [], "raw": []}
    man = json.loads((out / "manifest.json").read_text())
    for rec in man["images"]:
        for key in sizes:
            sizes[key].append((out / rec["layers"][layer][key]).stat().st_size)
    per_layer = [sum(v) for v in zip(*sizes.values())]
    pred = np.mean([(out / r["prediction"]).stat().st_size for r in man["images"]])
    return {"images": len(paths), "layer": layer, "compute_only_s": compute_only, "with_save_s": with_save,
            "save_ratio": compute_only / with_save, "kb_per_image_layer": float(np.mean(per_layer)) / 1000,
            "kb_per_image_layer_max": float(np.max(per_layer)) / 1000,
            "kb_by_artifact": {k: float(np.mean(v)) / 1000 for k, v in sizes.items()},
            "kb_prediction_per_image": float(pred) / 1000}


def bench_ray(model, paths: list[Path], layer: str, tmp: Path, small: int = 20) -> dict:
    """Wall time of each engine on all ``paths`` and on the first ``small`` of them.

    The whole-job ratios count Ray's start-up (ray.init, actors importing Paddle and loading the model);
    the steady-state ratios divide the extra images by the extra time, ``(N - small) / (t_N - t_small)``,
    so start-up cancels out.
    """
    import paddle

    paddle.base.core.set_num_threads(1)
    job = ExplainJob(model, (layer,))
    res: dict = {"images": len(paths), "small": small}
    engines = {"local": {}, "ray1": {"engine": partial(ray_loop, opts=RayOptions(workers=1, batch_size=4, threads=1))},
               "ray2": {"engine": partial(ray_loop, opts=RayOptions(workers=2, batch_size=4, threads=1))}}
    for key, kw in engines.items():
        for n in (len(paths), small):
            t = time.perf_counter()
            run_explain(job, paths[:n], tmp / f"{key}_{n}", **kw)
            res[f"{key}_{n}_s"] = time.perf_counter() - t
        res[f"{key}_steady_img_per_s"] = (len(paths) - small) / (res[f"{key}_{len(paths)}_s"] - res[f"{key}_{small}_s"])
    n = len(paths)
    res["ray2_speedup"] = res[f"local_{n}_s"] / res[f"ray2_{n}_s"]
    res["ray1_overhead"] = res[f"ray1_{n}_s"] / res[f"local_{n}_s"] - 1
    res["ray2_speedup_steady"] = res["ray2_steady_img_per_s"] / res["local_steady_img_per_s"]
    res["ray1_overhead_steady"] = res["local_steady_img_per_s"] / res["ray1_steady_img_per_s"] - 1
    same = all((tmp / f"local_{n}" / f.name).read_bytes() == f.read_bytes()
               for f in (tmp / f"ray2_{n}").iterdir() if f.suffix in (".png", ".jpg", ".npz"))
    res["ray2_outputs_identical_to_local"] = same
    return res


def bench_tile(model, paths: list[Path]) -> dict:
    from segcam.survey.tiling import _network_forward, explain_tiled, fixed_size_forward, predict_tiled

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_survey import _border_and_inside_gradient

    fwd = _network_forward(model)
    # `segcam predict` runs an export of fixed 400x400 input over 400x400 tiles (overlap 64, smaller sides
    # reflection-padded); the same tiling of the network itself gives its masks (the export adds only float noise)
    fixed = fixed_size_forward(fwd, (400, 400))
    agree, seam, predict_iou = [], [], []
    for p in paths:
        rgb = segcam.read_image(p)
        whole = fwd(rgb).argmax(0)
        tiled = predict_tiled(fwd, rgb, 256, 64).argmax(0)
        agree.append(float((whole == tiled)[16:-16, 16:-16].mean()))
        own, mask = whole == 1, predict_tiled(fixed, rgb, (400, 400), 64).argmax(0) == 1
        predict_iou.append(float((own & mask).sum() / max((own | mask).sum(), 1)))
        wm = segcam.explain(model, rgb, ["seg3"])[0].maps["seg3"].normalized
        tm = explain_tiled(model, rgb, ["seg3"], tile=256, overlap=64).maps["seg3"].normalized
        (tb, ti), (wb, wi) = _border_and_inside_gradient(tm, 256, 64), _border_and_inside_gradient(wm, 256, 64)
        seam.append((tb / ti) / (wb / wi))
    # The CLI's default tiles (1024, overlap 128) on frames enlarged 3x (1632x1152): two tiles per side, so the
    # overlaps are exercised, while a whole-photo forward pass for the comparison stays quick on a CPU.
    big, control, window = [], [], []
    for p in paths[:4]:
        rgb = segcam.read_image(p)
        rgb = cv2.resize(rgb, (rgb.shape[1] * 3, rgb.shape[0] * 3), interpolation=cv2.INTER_CUBIC)
        whole = fwd(rgb).argmax(0)
        tiled = predict_tiled(fwd, rgb, 1024, 128).argmax(0)
        big.append(float((whole == tiled)[16:-16, 16:-16].mean()))
        # Why tiles disagree: HrSegNet resizes with align_corners=True (as the original), which maps a pixel to a
        # position that depends on the input's size, so the network is not shift-equivariant even by multiples of
        # 32. Evidence: (1) one tile-sized window passed alone (no seam, no blending) disagrees with the whole
        # photo as much; (2) the same weights with align_corners=False agree across tiles.
        crop = fwd(np.ascontiguousarray(rgb[:1024, :1024])).argmax(0)
        window.append(float((whole[:1024, :1024] == crop)[16:-16, 16:-16].mean()))
        with _align_corners_false():
            whole_f = fwd(rgb).argmax(0)
            tiled_f = predict_tiled(fwd, rgb, 1024, 128).argmax(0)
        control.append(float((whole_f == tiled_f)[16:-16, 16:-16].mean()))
    return {"frames": len(paths), "tile": 256, "overlap": 64, "agreement_mean": float(np.mean(agree)),
            "agreement_min": float(np.min(agree)), "seam_ratio_mean": float(np.mean(seam)),
            "seam_ratio_max": float(np.max(seam)),
            "predict_400_crack_iou": {"min": float(np.min(predict_iou)), "max": float(np.max(predict_iou)),
                                      "mean": float(np.mean(predict_iou))},
            "default_tile": {"frames": len(big), "size": "1632x1152", "tile": 1024, "overlap": 128,
                             "agreement_mean": float(np.mean(big)), "agreement_min": float(np.min(big)),
                             "one_window_agreement_mean": float(np.mean(window)),
                             "align_corners_false_agreement_mean": float(np.mean(control)),
                             "align_corners_false_agreement_min": float(np.min(control))}}


@contextlib.contextmanager
def _align_corners_false():
    """HrSegNet's resizes with align_corners=False, for the diagnosis only (the shipped network is the original's)."""
    import paddle.nn.functional as F

    import hrsegnet.model as hm

    shipped = hm._resize
    hm._resize = lambda x, size: F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    try:
        yield
    finally:
        hm._resize = shipped


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=60)
    ap.add_argument("--ray-images", type=int, default=100)
    ap.add_argument("--model", default="hrsegnet_b16")
    ap.add_argument("--layer", default="seg_head")
    ap.add_argument("--skip", nargs="*", default=[], choices=["save", "ray", "tile"])
    ap.add_argument("--out", default="benchmarks/results/survey.json")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    model = segcam.create_model(args.model)
    results: dict = {"model": args.model, "cpus": os.cpu_count(), "versions": segcam.cam.result.versions()}
    tmp = Path(tempfile.mkdtemp(prefix="segcam-bench-"))
    try:
        if "save" not in args.skip:
            results["save"] = r = bench_save(model, unique_copies(frames(args.images), tmp / "in"), args.layer, tmp)
            print(f"save: {r['save_ratio']:.2f} of compute-only throughput ({r['images']} images, "
                  f"{r['compute_only_s']:.1f} s vs {r['with_save_s']:.1f} s); {r['kb_per_image_layer']:.0f} KB per "
                  f"image-layer (max {r['kb_per_image_layer_max']:.0f}; {r['kb_by_artifact']})", flush=True)
        if "tile" not in args.skip:
            results["tile"] = r = bench_tile(model, frames(8))
            print(f"tile: agreement {r['agreement_mean']:.4f} (min {r['agreement_min']:.4f}); seam ratio "
                  f"{r['seam_ratio_mean']:.2f} (max {r['seam_ratio_max']:.2f}); segcam predict's 400x400 tiles vs "
                  f"the network's crack: IoU {r['predict_400_crack_iou']['min']:.3f}-{r['predict_400_crack_iou']['max']:.3f}; "
                  f"at the default tile 1024/128 on 1632x1152 "
                  f"frames: agreement {r['default_tile']['agreement_mean']:.4f} "
                  f"(min {r['default_tile']['agreement_min']:.4f}); one 1024 px window alone: "
                  f"{r['default_tile']['one_window_agreement_mean']:.4f}; tiles with align_corners=False: "
                  f"{r['default_tile']['align_corners_false_agreement_mean']:.4f}", flush=True)
        if "ray" not in args.skip:
            results["ray"] = r = bench_ray(model, unique_copies(frames(args.ray_images), tmp / "ray_in"), args.layer,
                                           tmp)
            print(f"ray: 2 workers {r['ray2_speedup']:.2f}x the local engine (steady state "
                  f"{r['ray2_speedup_steady']:.2f}x); 1 worker overhead {100 * r['ray1_overhead']:+.1f} % (steady "
                  f"{100 * r['ray1_overhead_steady']:+.1f} %) ({r})", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {}
    old.update(results)
    Path(args.out).write_text(json.dumps(old, indent=2, default=str) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
