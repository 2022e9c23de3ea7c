"""``segcam export`` and ``segcam predict``: verified deployment exports and masks from them."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from segcam.cli.common import UsageError, add_model_args, collect_images, load_model


def cmd_export(args: argparse.Namespace) -> int:
    from segcam.data.images import read_image
    from segcam.models.export import export_model

    model = load_model(args)
    print(f"segcam: model {model.name}: {model.describe_weights()}", file=sys.stderr)
    h, w = args.size
    image = None
    if args.verify_image:
        image = read_image(args.verify_image, max_side=8192)
        if image.shape[:2] != (h, w):
            import cv2

            image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    rep = export_model(model, args.out, args.format, (h, w), image, overwrite=args.overwrite)
    print(f"exported {rep.model} as {rep.format} {h}x{w} to {rep.path}: max |exported - dygraph| = "
          f"{rep.max_abs_diff:.3g} (tolerance {rep.tolerance}), oneDNN {'on' if rep.onednn else 'off'}, {rep.seconds} s")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from segcam.cam.result import versions
    from segcam.data.images import ImageError, read_image
    from segcam.models.export import load_predictor
    from segcam.survey.batch import output_stems
    from segcam.survey.tiling import fixed_size_forward, predict_tiled, tile_starts
    from segcam.utils.files import save_csv, save_json, save_png

    pred = load_predictor(args.export, threads=args.threads, device=args.device)
    try:
        tile_starts(min(pred.size), min(pred.size), args.tile_overlap)
    except ValueError as exc:
        raise UsageError(f"{exc} (the export's input is {pred.size[1]}x{pred.size[0]})") from None
    images = collect_images(args.images)
    out = Path(args.out)
    if (out / "manifest.json").exists() and not args.overwrite:
        raise UsageError(f"{out} already holds a run (manifest.json); pass --overwrite or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    size = pred.size
    forward = fixed_size_forward(lambda crop: pred.predict_rgb(crop)[0], size)
    rows = []
    for path, name in tqdm(list(zip(images, output_stems(images))), desc="predict", unit="img", file=sys.stderr,
                           disable=None):
        t0 = time.time()
        row = {"image": str(path), "name": name, "status": "ok", "error": "", "width": "", "height": "",
               "crack_pixels": "", "seconds": ""}
        try:
            rgb = read_image(path, max_side=args.max_side, downscale=args.downscale)
            ih, iw = rgb.shape[:2]
            row.update(width=iw, height=ih)
            # full resolution: tiles of the export's size, cross-faded; smaller sides padded, never stretched
            logits = predict_tiled(forward, rgb, size, args.tile_overlap)
            mask = logits.argmax(axis=0) == args.category
            save_png(out / f"{name}__mask.png", mask.astype(np.uint8) * 255)
            over = rgb.copy()
            over[mask] = (0.4 * over[mask] + 0.6 * np.array([255, 40, 40])).astype(np.uint8)
            save_png(out / f"{name}__overlay.png", over)
            row["crack_pixels"] = int(mask.sum())
        except (ImageError, ValueError, OSError) as exc:
            row.update(status="error", error=str(exc))
            print(f"segcam: error: {exc}", file=sys.stderr)
        row["seconds"] = f"{time.time() - t0:.3f}"
        rows.append(row)
    save_csv(out / "summary.csv", rows)
    save_json(out / "manifest.json", {"schema": "segcam.predict", "schema_version": 1, "versions": versions(),
                                      "export": pred.meta, "arguments": {k: v for k, v in vars(args).items() if k != "func"},
                                      "images": rows})
    failed = sum(r["status"] != "ok" for r in rows)
    print(f"segcam: {len(rows) - failed}/{len(rows)} images predicted, {failed} failed; outputs in {out}", file=sys.stderr)
    return 1 if failed else 0


def register(sub: Any, fmt: type[argparse.HelpFormatter]) -> None:
    """Add the 'export', 'predict' commands to the ``segcam`` parser."""
    p = sub.add_parser("export", help="export a model for deployment (Paddle Inference or ONNX), verified",
                       formatter_class=fmt)
    add_model_args(p)
    p.add_argument("--format", default="paddle", help="paddle | onnx")
    p.add_argument("--size", type=int, nargs=2, default=[400, 400], metavar=("H", "W"), help="fixed input size")
    p.add_argument("--out", required=True, help="export folder (must not exist unless --overwrite)")
    p.add_argument("--verify-image", default=None, help="image used to verify the export (default: random)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("predict", help="crack masks and overlays from an exported model", formatter_class=fmt)
    p.add_argument("images", nargs="+", help="image files, folders or glob patterns")
    p.add_argument("--export", required=True, help="folder written by segcam export")
    p.add_argument("--out", default="segcam_predict", help="output folder")
    p.add_argument("--class", dest="category", type=int, default=1, help="class drawn as the mask (1 = crack)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                   help="gpu needs paddlepaddle-gpu (Paddle exports) or onnxruntime-gpu (ONNX exports)")
    p.add_argument("--tile-overlap", type=int, default=64, metavar="PX",
                   help="photos larger than the export's size are predicted in tiles of that size sharing PX pixels")
    p.add_argument("--max-side", type=int, default=4096)
    p.add_argument("--downscale", action="store_true")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_predict)
