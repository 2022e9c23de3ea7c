"""``segcam explain``: photos -> maps, overlays, raw maps and a run folder (local or Ray engine)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from segcam.cli.common import (
    UsageError,
    add_engine_args,
    add_model_args,
    check_engine_args,
    collect_images,
    load_model,
    parse_method_args,
)


def _split_layers_and_images(layers: list[str] | None, images: list[str]) -> tuple[list[str], list[str]]:
    """``--layer seg1 seg3 img.jpg``: values that are files, folders, globs or image names are images, not layers."""
    from segcam.data.images import IMAGE_SUFFIXES

    keep, moved = [], []
    for value in layers or []:
        looks_like_image = (Path(value).exists() or Path(value).suffix.lower() in IMAGE_SUFFIXES
                            or any(ch in value for ch in "*?") or "/" in value)
        (moved if looks_like_image else keep).append(value)
    return keep, moved + list(images)


def _check_target_fits(target: Any, images: list[Path]) -> None:
    """A box or pixel target outside an image is a usage error before the batch starts (header sizes only)."""
    from PIL import Image

    from segcam.cam.targets import BoxTarget, PixelTarget

    if not isinstance(target, (BoxTarget, PixelTarget)):
        return
    for path in images:
        try:
            with Image.open(path) as im:
                w, h = im.size
        except (OSError, ValueError):
            continue  # an unreadable image is reported per image
        x_hi, y_hi = (target.x1, target.y1) if isinstance(target, BoxTarget) else (target.x + 1, target.y + 1)
        if x_hi > w or y_hi > h:
            raise UsageError(f"--target {target.describe()} lies outside {path} ({w}x{h}); "
                             f"coordinates are pixels with x < {w}, y < {h}")


def parse_pixel_size(value: str | None) -> tuple[float | None, tuple[tuple[str, float], ...]]:
    """``--pixel-size``: a positive number of millimetres per pixel, or a CSV of ``image,pixel_size`` rows."""
    if value is None:
        return None, ()
    path = Path(value)
    if path.suffix.lower() == ".csv" or path.is_file():
        import csv

        if not path.is_file():
            raise UsageError(f"--pixel-size {value}: no such CSV file; give millimetres per pixel or a CSV with "
                             "columns image,pixel_size")
        rows = []
        with open(path, newline="", encoding="utf-8") as fh:
            for n, row in enumerate(csv.DictReader(fh), 2):
                try:
                    mm = float(row["pixel_size"])
                    name = row["image"].strip()
                except (KeyError, TypeError, ValueError, AttributeError):
                    raise UsageError(f"--pixel-size {value}, line {n}: need columns image,pixel_size with a number") from None
                if not mm > 0 or not name:
                    raise UsageError(f"--pixel-size {value}, line {n}: pixel_size must be a positive number of millimetres")
                rows.append((Path(name).name, mm))
        return None, tuple(rows)
    try:
        mm = float(value)
    except ValueError:
        raise UsageError(f"--pixel-size must be a positive number of millimetres per pixel (or a CSV), got {value!r}") from None
    if not mm > 0 or mm != mm or mm == float("inf"):
        raise UsageError(f"--pixel-size must be a positive number of millimetres per pixel, got {value!r}")
    return mm, ()


def cmd_explain(args: argparse.Namespace) -> int:
    import segcam
    from segcam.cam.defaults import location_note, recipe_for, target_kind
    from segcam.cam.layers import LayerNotFoundError, resolve_layers
    from segcam.cam.overlay import check_cmap
    from segcam.cam.result import NORMALIZATIONS, parse_artifacts
    from segcam.cam.targets import parse_target
    from segcam.cli.progress import TerminalProgress
    from segcam.data.images import MIN_SIDE
    from segcam.survey.batch import ExplainJob, check_output_dir, run_explain
    from segcam.survey.tiling import tile_starts

    check_cmap(args.cmap)
    if args.alpha is not None and not 0 <= args.alpha <= 1:
        raise UsageError(f"--alpha must be in [0, 1], got {args.alpha}")
    if not 0.1 <= args.input_scale <= 8:
        raise UsageError(f"--input-scale must be in [0.1, 8], got {args.input_scale}")
    if args.input_scale != 1 and args.tile:
        raise UsageError("--input-scale works on whole photos; leave out --tile (large photos need no enlarging)")
    if args.normalization not in NORMALIZATIONS:
        raise UsageError(f"--normalization must be one of {', '.join(NORMALIZATIONS)}")
    if args.max_side < MIN_SIDE:
        raise UsageError(f"--max-side must be at least {MIN_SIDE} (pixels on the longest side), got {args.max_side}")
    try:
        artifacts = parse_artifacts(args.save)
        if args.tile is not None:
            tile_starts(args.tile, args.tile, args.tile_overlap)  # checks the tile size and the overlap
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    check_engine_args(args)
    pixel_size, pixel_sizes = parse_pixel_size(args.pixel_size)
    if args.masks is not None and not Path(args.masks).exists():
        raise UsageError(f"--masks {args.masks} does not exist; give a mask file or a folder of <image stem>.png masks")
    target = parse_target(args.target, args.category)
    recipe = recipe_for(target)
    chosen = [f"{k} {v}" for k, v, given in (("method", recipe.method, args.method), ("score", recipe.score, args.score))
              if given is None]
    args.method = args.method or recipe.method
    args.score = args.score or recipe.score
    method_args = parse_method_args(args.method_arg)
    try:
        segcam.get_method(args.method, **method_args)
    except TypeError as exc:
        raise UsageError(str(exc)) from exc
    layers, inputs = _split_layers_and_images(args.layer, args.images)
    if not layers:
        chosen.append(f"layer {recipe.layer}")
    if not inputs:
        raise UsageError("no input image given; name image files, folders or globs after the options")
    args.images = inputs
    args.layer = layers  # the manifest's arguments: the layers as parsed, not the paths that followed --layer
    out = Path(args.out)
    check_output_dir(out)  # a file, a read-only disk...: one line before the model loads
    images = collect_images(args.images, out)
    _check_target_fits(target, images)
    model = load_model(args)
    print(f"segcam: model {model.name}: {model.describe_weights()}", file=sys.stderr)
    if not layers:  # the recipe's layer where the model has it (every zoo model has seg_head)
        try:
            resolve_layers(model, [recipe.layer])
            layers = [recipe.layer]
        except LayerNotFoundError:
            layers = ["seg_head"]
    if chosen:
        print(f"segcam: {target_kind(target)} target: {', '.join(chosen)} (the measured defaults for this target "
              "kind; README 'Choosing a method')", file=sys.stderr)
    note = location_note(args.method, target)
    if note:
        print(f"segcam: note: {note}", file=sys.stderr)
    progress = TerminalProgress()
    job = ExplainJob(model, tuple(layers), args.method, method_args, target, args.target, args.category, args.cmap,
                     args.alpha, args.normalization, args.max_side, args.downscale, score=args.score, fuse=args.fuse,
                     artifacts=artifacts, tile=args.tile, tile_overlap=args.tile_overlap, cracks=args.cracks,
                     crack_evidence=args.crack_evidence, pixel_size=pixel_size, pixel_sizes=pixel_sizes,
                     truth=args.masks, overlay_mode=args.overlay, input_scale=args.input_scale, on_step=progress.step)
    arguments = {k: v for k, v in vars(args).items() if k != "func"}
    engine = None
    if args.engine == "ray":  # Ray is imported only when chosen
        from functools import partial

        from segcam.survey.ray_engine import RayOptions, ray_loop

        engine = partial(ray_loop, opts=RayOptions(args.ray_address, args.workers, args.batch_size, args.threads or 1,
                                                   gpus=1.0 if args.paddle_device == "gpu" else 0.0))
    summary = run_explain(job, images, out, overwrite=args.overwrite, arguments=arguments, progress=progress,
                          warn=lambda msg: print(f"segcam: {msg}", file=sys.stderr), engine=engine)
    resumed = f" ({summary.skipped} already done by an earlier run)" if summary.skipped else ""
    print(f"segcam: {summary.total - summary.failed}/{summary.total} images explained{resumed}, {summary.failed} "
          f"failed; outputs in {out}", file=sys.stderr)
    return 1 if summary.failed else 0


def register(sub: Any, fmt: type[argparse.HelpFormatter]) -> None:
    """Add the 'explain' command to the ``segcam`` parser."""
    from segcam.cam.methods import list_methods
    from segcam.cam.overlay import OVERLAY_MODES
    from segcam.cam.result import ARTIFACTS

    p = sub.add_parser("explain", help="explain images (files, folders, globs)", formatter_class=fmt)
    add_model_args(p)
    p.add_argument("images", nargs="*", help="image files, folders or glob patterns")
    p.add_argument("--layer", "--layers", dest="layer", nargs="+", action="extend", metavar="LAYER",
                   help="one or more layer names, aliases or name[i] (default: the measured one for the target kind)")
    p.add_argument("--method", default=None,
                   help="CAM method (default: the measured one for the target kind, see README): "
                        + ", ".join(list_methods()))
    p.add_argument("--score", default=None, choices=["logit", "margin", "prob"],
                   help="summed over the target: logit y_c, margin y_c - logsumexp(others), or softmax prob "
                        "(default: the measured one for the target kind)")
    p.add_argument("--fuse", action="store_true",
                   help="also write two fused maps of all layers: fused_mean (mean of the per-layer normalised maps) "
                        "and fused_product (their product, renormalised)")
    p.add_argument("--method-arg", action="append", metavar="KEY=VALUE",
                   help="method option, e.g. batch_size=32 (seg_score_cam, ablation_cam) or pool=4 (seg_xres_cam)")
    p.add_argument("--target", default="pred",
                   help="pred | image | box:X0,Y0,X1,Y1 | pixel:X,Y | mask:PATH | component[:RANK|:X,Y] | skeleton | "
                        "border[:W] | tp:PATH | fp:PATH | fn:PATH (PATH: a mask file or a folder of <stem>.png)")
    p.add_argument("--class", dest="category", type=int, default=1, help="class explained (1 = crack)")
    p.add_argument("--out", default="segcam_out", help="output folder")
    p.add_argument("--cmap", default="inferno", help="matplotlib colormap (inferno, viridis, turbo, jet...)")
    p.add_argument("--alpha", type=float, default=None,
                   help="heatmap weight in the overlay (at full heat for --overlay heat); default 0.85 for heat, "
                        "0.5 for blend")
    p.add_argument("--overlay", choices=OVERLAY_MODES, default="heat",
                   help="heat: the heatmap's weight follows the heat, so the photo shows unchanged where the map "
                        "is zero (default); blend: one weight everywhere (the classic picture, darkens the photo)")
    p.add_argument("--normalization", default="per_map", help="per_map | shared (across the layers of an image)")
    p.add_argument("--input-scale", type=float, default=1.0, metavar="S",
                   help="run the network on each photo enlarged S times (maps stay at the photo's size); e.g. 1.5-2 "
                        "for crops under 256 px with thin cracks (a warning says when)")
    p.add_argument("--max-side", type=int, default=2048, help="largest image side accepted")
    p.add_argument("--downscale", action="store_true", help="shrink larger images to --max-side instead of failing")
    p.add_argument("--overwrite", action="store_true", help="write into an --out that already holds a run")
    p.add_argument("--save", default=",".join(ARTIFACTS), metavar="LIST",
                   help="what to write, comma-separated: overlay (JPEG), heatmap (PNG), raw (.npz map at the "
                        "layer's resolution), prediction (PNG mask)")
    p.add_argument("--tile", type=int, default=None, metavar="PX",
                   help="explain photos larger than PX per side tile by tile at full resolution (e.g. 1024)")
    p.add_argument("--tile-overlap", type=int, default=128, metavar="PX", help="pixels shared by neighbouring tiles")
    p.add_argument("--no-cracks", dest="cracks", action="store_false",
                   help="skip the per-crack records (cracks.csv, <stem>__cracks.npz: length, width, confidence, "
                        "evidence, review score, atlas features)")
    p.add_argument("--crack-evidence", choices=("zones", "exact"), default="zones",
                   help="each crack's own map: zones = one pass for the photo, each crack keeping the part nearest to "
                        "it; exact = one backward pass per crack")
    p.add_argument("--pixel-size", default=None, metavar="MM|CSV",
                   help="millimetres per pixel (adds *_mm columns to cracks.csv), or a CSV with columns image,pixel_size")
    p.add_argument("--masks", default=None, metavar="PATH",
                   help="ground-truth masks (a file or a folder of <image stem>.png): cracks.csv gets a truth column "
                        "and missed cracks are recorded for segcam atlas")
    add_engine_args(p)
    p.set_defaults(func=cmd_explain)
