"""``segcam figure``: publication figures from a run's manifest or from photos and models."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import warnings
from pathlib import Path
from typing import Any

from segcam.cli.common import UsageError, add_device_arg


def cmd_figure(args: argparse.Namespace) -> int:
    from segcam.cam.methods import display_name
    from segcam.cam.overlay import resolve_alpha
    from segcam.cam.targets import parse_target
    from segcam.models.zoo import create_model
    from segcam.utils.files import save_json
    from segcam.viz.figures import cam_grid
    from segcam.viz.panels import rows_from_manifest, rows_from_models

    base, formats = args.out, args.formats
    suffix = Path(base).suffix.lower().lstrip(".")
    if suffix in ("pdf", "svg", "png"):  # --out fig.pdf means fig.pdf (that format only, unless --format says more)
        base = str(Path(base).with_suffix(""))
        formats = formats or [suffix]
    outs = [f"{base}.{fmt}" for fmt in (formats or ["pdf", "svg", "png"])]
    if args.manifest:
        if args.images_in:
            raise UsageError("give either --manifest or images, not both")
        rows, titles, data = rows_from_manifest(args.manifest, args.masks, args.select, args.layer)
        label = display_name(data.get("method") or "CAM")
    else:
        if not args.images_in:
            raise UsageError("give --manifest RUN/manifest.json, or image files with --model")
        names = args.model or ["hrsegnet_b48"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            models = [create_model(n, weights=args.weights if len(names) == 1 else None) for n in names]
        for m in models:
            print(f"segcam: model {m.name}: {m.describe_weights()}", file=sys.stderr)
        target = parse_target(args.target)
        if isinstance(target, tuple):
            raise UsageError("segcam figure takes pred, image, box, pixel, component, skeleton or border targets")
        rows, titles = rows_from_models(models, args.images_in, args.layer or ["seg_head"], args.method or ["seg_grad_cam"],
                                        args.sweep, args.masks, target)
        label = "CAM" if args.sweep == "method" else display_name((args.method or ["seg_grad_cam"])[0])
    names = [r.label for r in rows]
    if args.labels is not None:
        labels = [t.strip() for t in args.labels.split(",")]
        if len(labels) != len(rows):
            raise UsageError(f"--labels gives {len(labels)} label(s) for {len(rows)} row(s); give one per row, "
                             "comma-separated, in the rows' order")
        rows = [dataclasses.replace(r, label=lab) for r, lab in zip(rows, labels)]
    written = cam_grid(rows, titles, outs, width=args.width, cmap=args.cmap, alpha=args.alpha,
                       normalization=args.normalization, dpi=args.dpi, colorbar_label=label,
                       overlay_mode=args.overlay)
    # the figure's manifest: what each row and column is, by its full name (labels are shortened to fit)
    record = {"schema": "segcam.figure", "schema_version": 1, "files": [Path(p).name for p in written],
              "rows": [{"label": r.label, "image": n} for r, n in zip(rows, names)], "columns": list(titles),
              "settings": {"width": args.width, "cmap": args.cmap, "alpha": resolve_alpha(args.alpha, args.overlay),
                           "overlay": args.overlay,
                           "normalization": args.normalization, "dpi": args.dpi}}
    written.append(save_json(Path(f"{base}.json"), record))
    for path in written:
        print(path)
    return 0


def register(sub: Any, fmt: type[argparse.HelpFormatter]) -> None:
    """Add the 'figure' command to the ``segcam`` parser."""
    from segcam.cam.overlay import OVERLAY_MODES

    p = sub.add_parser("figure", help="publication figure: rows = images, columns = input | GT | prediction | CAMs",
                       formatter_class=fmt)
    p.add_argument("images_in", nargs="*", metavar="IMAGES", help="images (when not using --manifest)")
    p.add_argument("--manifest", default=None, help="manifest.json (or folder) of a segcam explain run")
    p.add_argument("--select", nargs="+", default=None, help="with --manifest: image names (stems) to show, in order")
    p.add_argument("--masks", default=None, help="folder of ground-truth masks <image stem>.png (adds a GT column)")
    p.add_argument("--model", action="append", help="zoo model; repeat with --sweep model")
    p.add_argument("--weights", default=None, help="weights for a single --model")
    p.add_argument("--layer", "--layers", dest="layer", nargs="+", action="extend", metavar="LAYER",
                   help="one or more layers; several with --sweep layer (default seg_head)")
    p.add_argument("--method", action="append", help="method; repeat with --sweep method (default seg_grad_cam)")
    p.add_argument("--sweep", default="layer", choices=["layer", "model", "method"], help="what the CAM columns vary")
    p.add_argument("--target", default="pred", help="target (see segcam explain)")
    p.add_argument("--out", default="segcam_figure",
                   help="output path; without a suffix every --format is written, fig.pdf writes just fig.pdf")
    p.add_argument("--format", dest="formats", action="append", choices=["pdf", "svg", "png"],
                   help="repeat for several (default: pdf, svg and png)")
    p.add_argument("--labels", default=None, metavar="A,B,...",
                   help="row labels, comma-separated, one per row (default: the photos' names, shortened at the end "
                        "to fit; the full names go to OUT.json)")
    p.add_argument("--width", default="double", help="single (90 mm), onehalf (140), double (190) or millimetres")
    p.add_argument("--dpi", type=int, default=600, help="PNG resolution")
    p.add_argument("--cmap", default="inferno")
    p.add_argument("--alpha", type=float, default=None,
                   help="heatmap weight (at full heat for --overlay heat); default 0.85 for heat, 0.5 for blend")
    p.add_argument("--overlay", choices=OVERLAY_MODES, default="heat",
                   help="heat: transparent where the map is zero (default); blend: one weight everywhere")
    p.add_argument("--normalization", default="per_map", choices=["per_map", "shared"])
    add_device_arg(p)
    p.set_defaults(func=cmd_figure)
