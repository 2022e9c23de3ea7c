"""``segcam evaluate-cam``: CAM methods x layers ranked by faithfulness metrics."""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Any

from segcam.cli.common import add_model_args, load_model


def cmd_evaluate_cam(args: argparse.Namespace) -> int:
    import segcam
    from segcam.data.datasets import parse_data_spec
    from segcam.evaluation.cam_eval import evaluate_cam, markdown_table, summarize, write_reports
    from segcam.models.zoo import create_model
    from segcam.survey.batch import preflight

    args.layers = args.layers or ["seg_head"]
    for m in args.methods:
        segcam.get_method(m)
    pairs = parse_data_spec(args.data)[: args.limit or None]
    model = load_model(args)
    print(f"segcam: model {model.name}: {model.describe_weights()}", file=sys.stderr)
    preflight(model, args.layers, "seg_grad_cam", {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if args.config:
            random_model = segcam.load_paddleseg(args.config, None)
        else:
            import paddle

            paddle.seed(1234)
            random_model = create_model(model.name, weights="random")
    from segcam.cli.progress import TerminalProgress

    rows = evaluate_cam(model, random_model, pairs, args.methods, args.layers, steps=args.steps,
                        progress=TerminalProgress(unit="map"))
    meta = {"model": model.name, "weights": model.weights, "weights_sha256": model.weights_sha256, "data": args.data,
            "images": len(pairs), "methods": args.methods, "layers": args.layers, "steps": args.steps}
    write_reports(rows, args.out, meta)
    print(markdown_table(summarize(rows)))
    print(f"segcam: reports in {args.out}", file=sys.stderr)
    return 0


def register(sub: Any, fmt: type[argparse.HelpFormatter]) -> None:
    """Add the 'evaluate-cam' command to the ``segcam`` parser."""
    p = sub.add_parser("evaluate-cam", help="rank CAM methods x layers by faithfulness metrics", formatter_class=fmt)
    add_model_args(p)
    p.add_argument("--data", required=True, help="NAME:SPLIT with ground-truth masks, e.g. deepcrack:test")
    p.add_argument("--methods", nargs="+", default=["seg_grad_cam", "seg_hires_cam", "layer_cam"])
    p.add_argument("--layer", "--layers", dest="layers", nargs="+", action="extend", metavar="LAYER",
                   help="one or more layers (default seg_head)")
    p.add_argument("--limit", type=int, default=10, help="first N images of the split (0 = all)")
    p.add_argument("--steps", type=int, default=10, help="deletion/insertion steps")
    p.add_argument("--out", default="segcam_cam_eval", help="output folder for CSV, markdown, JSON and plot")
    p.set_defaults(func=cmd_evaluate_cam)
