"""``segcam atlas`` and ``segcam report``: what a whole run found, from the per-crack records it saved."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from segcam.cli.common import UsageError


def _mask_lookup(folders: list[str]) -> Any:
    """Image name (output stem) -> ground-truth mask, from ``<stem>.png`` files in the given folders."""
    from segcam.data.datasets import load_mask

    found: dict[str, Path] = {}
    for f in folders:
        folder = Path(f)
        if not folder.is_dir():
            raise UsageError(f"--masks {f} is not a folder of <image stem>.png masks")
        for p in folder.iterdir():
            if p.suffix.lower() in (".png", ".bmp", ".tif", ".tiff"):
                found.setdefault(p.stem, p)

    def lookup(name: str) -> Any:
        path = found.get(name)
        return load_mask(path) if path is not None else None

    return lookup


def cmd_atlas(args: argparse.Namespace) -> int:
    import json

    from segcam.survey.atlas import CRACKS_PER_CONCEPT, K_MAX, K_MIN, atlas_figure, build_atlas, load_run_cracks
    from segcam.utils.files import save_csv, save_json

    if args.k is not None and args.k < 1:
        raise UsageError(f"--k must be >= 1, got {args.k}")
    run = load_run_cracks(args.run, with_labels=bool(args.masks))
    masks = _mask_lookup(args.masks) if args.masks else None
    atlas = build_atlas(run, k=args.k, seed=args.seed, masks=masks,
                        warn=lambda msg: print(f"segcam: {msg}", file=sys.stderr))
    out = Path(args.out) if args.out else Path(args.run) / "atlas"
    out.mkdir(parents=True, exist_ok=True)
    save_json(out / "atlas.json", atlas.to_json())
    save_csv(out / "atlas.csv", [{"name": r["name"], "kind": r.get("kind", "crack"), "crack": r["crack"],
                                  "region": r.get("region", ""), "concept": int(c), "false": "" if f is None else int(f)}
                                 for r, c, f in zip(run.records, atlas.assignment, atlas.false)])
    atlas_figure(run, atlas, [out / "atlas.pdf", out / "atlas.png"])
    chosen = "given" if args.k else f"one per {CRACKS_PER_CONCEPT} cracks, within {K_MIN}-{K_MAX}"
    separation = "" if atlas.silhouette is None else f", silhouette {atlas.silhouette:.3f}"
    print(f"{'concept':>7} {'cracks':>7} {'missed':>7} {'FP share':>9} {'mean p':>7} {'length':>7} {'width':>6}")
    for c in atlas.concepts:
        fp = "-" if c["false_positive_share"] is None else f"{100 * c['false_positive_share']:.0f} %"
        print(f"{'C' + str(c['concept']):>7} {c['members']:>7} {c['missed']:>7} {fp:>9} {c['mean_prob']:>7.2f} "
              f"{c['mean_length']:>7.1f} {c['mean_width']:>6.2f}")
    missed = len(run.records) - len(run.cracks)
    print(f"segcam: {len(run.cracks)} cracks and {missed} missed regions, k = {atlas.k} ({chosen}{separation}); atlas in {out} "
          f"({json.dumps([p.name for p in sorted(out.iterdir())])})", file=sys.stderr)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from segcam.survey.report import write_report

    path = write_report(args.run, args.out)
    print(f"segcam: report in {path} ({path.stat().st_size / 1e6:.1f} MB); open it in a browser", file=sys.stderr)
    return 0


def register(sub: Any, fmt: type[argparse.HelpFormatter]) -> None:
    """Add the 'atlas' and 'report' commands to the ``segcam`` parser."""
    from segcam.survey.atlas import CRACKS_PER_CONCEPT, K_MAX, K_MIN

    p = sub.add_parser("atlas", help="concept atlas of a run's cracks: what the network takes for crack",
                       formatter_class=fmt)
    p.add_argument("run", help="the --out folder of a segcam explain run")
    p.add_argument("--masks", action="append", default=None, metavar="DIR",
                   help="folder of ground-truth <image stem>.png masks (repeatable): adds each concept's share of "
                        "false positives")
    p.add_argument("--k", type=int, default=None,
                   help=f"number of concepts (default: one per {CRACKS_PER_CONCEPT} predicted cracks, within {K_MIN}-{K_MAX})")
    p.add_argument("--seed", type=int, default=0, help="seed of k-means and of the silhouette sample")
    p.add_argument("--out", default=None, help="output folder (default: RUN/atlas)")
    p.set_defaults(func=cmd_atlas)

    p = sub.add_parser("report", help="one self-contained HTML report of a run (cracks, review queue, atlas)",
                       formatter_class=fmt)
    p.add_argument("run", help="the --out folder of a segcam explain run")
    p.add_argument("--out", default=None, help="the HTML file (default: RUN/report.html)")
    p.set_defaults(func=cmd_report)
