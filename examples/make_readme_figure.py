"""Build the README's Seg-Grad-CAM figures from the shipped weights on DeepCrack test images.

Rows: three DeepCrack test photos (examples/images, with their ground truth in examples/masks), one shared
colorbar, per-map normalisation. Columns, by default: input | ground truth | prediction | Seg-Grad-CAM of stage2,
seg1, seg2, seg3 and the head (how attention moves from the stem to the semantic head). With ``--model`` given
several times: input | ground truth | Seg-Grad-CAM of each model's ``seg_head`` (where each network finds crack
evidence).

    python examples/make_readme_figure.py [--model hrsegnet_b16] [--out docs/figures/seg_grad_cam_layers]
    python examples/make_readme_figure.py --model hrsegnet_b48 --model bisenetv2 --model stdcseg \
        --out docs/figures/seg_grad_cam_models

Writes PNG and PDF; --format (repeatable) picks the formats instead (--format svg: SVG alone).
Uses the weights shipped with segcam (falls back to random init with a warning).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import segcam
from segcam.viz.figures import cam_grid
from segcam.viz.panels import rows_from_models

HERE = Path(__file__).resolve().parent
IMAGES = ["deepcrack_11215-9.jpg", "deepcrack_11218-3.jpg", "deepcrack_IMG_6472-1.jpg"]
LAYERS = ["stage2", "seg1", "seg2", "seg3", "seg_head"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", help="zoo model; several = one column each (default hrsegnet_b16)")
    ap.add_argument("--out", default=str(HERE.parent / "docs" / "figures" / "seg_grad_cam_layers"))
    ap.add_argument("--format", dest="formats", action="append", choices=["pdf", "svg", "png"],
                    help="repeat for several (default: png and pdf)")
    args = ap.parse_args(argv)
    models = [segcam.create_model(name) for name in args.model or ["hrsegnet_b16"]]
    for model in models:
        print(f"{model.name}: {model.describe_weights()}", file=sys.stderr)
    sweep, layers = ("model", ["seg_head"]) if len(models) > 1 else ("layer", LAYERS)
    rows, titles = rows_from_models(models, [HERE / "images" / n for n in IMAGES], layers, ["seg_grad_cam"], sweep,
                                    masks=HERE / "masks")
    for r in rows:
        r.label = r.label.replace("deepcrack_", "")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    outs = cam_grid(rows, titles, [f"{args.out}.{ext}" for ext in (args.formats or ["png", "pdf"])], width="double", dpi=200,
                    colorbar_label=f"Seg-Grad-CAM {models[0].name if sweep == 'layer' else 'seg_head'}")
    for o in outs:
        print(o)
    return 0


if __name__ == "__main__":
    sys.exit(main())
