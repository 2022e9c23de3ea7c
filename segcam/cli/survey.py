"""``segcam survey``, ``segcam atlas`` and ``segcam report``: a survey's cracks, and what a whole run found."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from segcam.cli.common import UsageError, add_engine_args, add_model_args, check_engine_args, collect_images, load_model


def cmd_survey(args: argparse.Namespace) -> int:
    from segcam.cli.explain import parse_pixel_size
    from segcam.cli.progress import TerminalProgress
    from segcam.survey.batch import check_output_dir, run_explain
    from segcam.survey.passes import plan_tiles
    from segcam.survey.survey import SurveyJob

    try:
        plan_tiles(args.tile + 1, args.tile + 1, args.tile, args.tile_overlap)  # checks the tile and the overlap
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be >= 1, got {args.threads}")
    check_engine_args(args)
    pixel_size, pixel_sizes = parse_pixel_size(args.pixel_size)
    if args.masks is not None and not Path(args.masks).exists():
        raise UsageError(f"--masks {args.masks} does not exist; give a mask file or a folder of <image stem>.png masks")
    if not args.images:
        raise UsageError("no input photo given; name image files, folders or globs")
    out = Path(args.out)
    check_output_dir(out)
    images = collect_images(args.images, out)
    model = load_model(args)
    print(f"segcam: model {model.name}: {model.describe_weights()}", file=sys.stderr)
    progress = TerminalProgress()
    job = SurveyJob(model, tile=args.tile, tile_overlap=args.tile_overlap, category=args.category, pixel_size=pixel_size,
                    pixel_sizes=pixel_sizes, truth=args.masks, threads=args.threads or 2, cache=args.cache,
                    on_step=progress.step)
    engine = None
    if args.engine == "ray":
        from functools import partial

        from segcam.survey.ray_engine import RayOptions, ray_loop

        engine = partial(ray_loop, opts=RayOptions(args.ray_address, args.workers, args.batch_size, args.threads or 1))
    arguments = {k: v for k, v in vars(args).items() if k != "func"}
    summary = run_explain(job, images, out, overwrite=args.overwrite, arguments=arguments, progress=progress,
                          warn=lambda msg: print(f"segcam: {msg}", file=sys.stderr), engine=engine)
    resumed = f" ({summary.skipped} already done by an earlier run)" if summary.skipped else ""
    print(f"segcam: {summary.total - summary.failed}/{summary.total} photos surveyed{resumed}, {summary.failed} failed; "
          f"cracks.csv and outputs in {out} (next: segcam report {out})", file=sys.stderr)
    return 1 if summary.failed else 0


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
    run = load_run_cracks(args.run, with_labels=bool(args.masks), warn=lambda msg: print(f"segcam: {msg}", file=sys.stderr))
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
    from segcam.survey.crackmap import parse_width_classes
    from segcam.survey.report import write_report
    from segcam.survey.verdicts import VerdictError

    try:
        edges = parse_width_classes(args.width_classes)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.pixel_size is not None and not args.pixel_size > 0:
        raise UsageError(f"--pixel-size must be a positive number of millimetres per pixel, got {args.pixel_size}")
    if args.maps < 0:
        raise UsageError(f"--maps must be >= 0, got {args.maps}")
    try:
        rep = write_report(args.run, args.out, pixel_size=args.pixel_size, width_classes=edges, maps=args.maps,
                           warn=lambda msg: print(f"segcam: {msg}", file=sys.stderr))
    except VerdictError as exc:
        raise UsageError(str(exc)) from None
    c = rep.counts
    print(f"segcam: report in {rep.html} ({rep.html.stat().st_size / 1e6:.1f} MB; {c['cracks']} cracks: "
          f"{c['confirmed']} confirmed, {c['rejected']} rejected, {c['unreviewed']} unreviewed; {rep.maps} crack maps) "
          f"and {rep.geojson.name}; open the report in a browser", file=sys.stderr)
    return 0


def register(sub: Any, fmt: type[argparse.HelpFormatter]) -> None:
    """Add the 'survey', 'atlas' and 'report' commands to the ``segcam`` parser."""
    from segcam.survey.atlas import CRACKS_PER_CONCEPT, K_MAX, K_MIN
    from segcam.survey.crackmap import WIDTH_CLASSES_MM
    from segcam.survey.photo import DEFAULT_TILE
    from segcam.survey.report import MAP_PHOTOS

    p = sub.add_parser("survey", help="every crack of a survey's photos found, measured, explained and ranked "
                                      "(cracks.csv, review queue; no heatmaps), at about prediction speed",
                       formatter_class=fmt)
    add_model_args(p, default_model="hrsegnet_b16")  # the fastest of the shipped networks, and the best on five sets
    p.add_argument("images", nargs="*", help="photo files, folders or glob patterns")
    p.add_argument("--out", default="segcam_survey", help="the run folder (resumes a killed run)")
    p.add_argument("--tile", type=int, default=DEFAULT_TILE, metavar="PX",
                   help="photos with a side above PX are predicted and explained in tiles of PX (a multiple of 32)")
    p.add_argument("--tile-overlap", type=int, default=128, metavar="PX", help="pixels shared by neighbouring tiles")
    p.add_argument("--class", dest="category", type=int, default=1, help="the crack class")
    p.add_argument("--pixel-size", default=None, metavar="MM|CSV",
                   help="millimetres per pixel (adds *_mm columns to cracks.csv), or a CSV with columns image,pixel_size")
    p.add_argument("--masks", default=None, metavar="PATH",
                   help="ground-truth masks (a file or a folder of <image stem>.png): cracks.csv gets a truth column")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="where exports are cached (default: $SEGCAM_CACHE, else ~/.cache/segcam)")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --out instead of resuming it")
    add_engine_args(p)
    p.set_defaults(func=cmd_survey)

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

    p = sub.add_parser("report", help="one self-contained HTML report of a run (verdicts, review queue, crack maps, "
                                      "width classes, atlas) and cracks.geojson",
                       formatter_class=fmt)
    p.add_argument("run", help="the --out folder of a segcam explain run")
    p.add_argument("--out", default=None, help="the HTML file (default: RUN/report.html)")
    p.add_argument("--pixel-size", type=float, default=None, metavar="MM",
                   help="millimetres per pixel for every photo (default: the run's own, if it was given one)")
    p.add_argument("--width-classes", default=",".join(f"{e:g}" for e in WIDTH_CLASSES_MM), metavar="MM,MM,...",
                   help="class edges of the maximum crack width in mm (default: hairline 0.1, then 0.2, 0.3 and 0.4 "
                        "as in ACI 224R and Eurocode 2 limits)")
    p.add_argument("--maps", type=int, default=MAP_PHOTOS, metavar="N", help="photos that get a crack map")
    p.set_defaults(func=cmd_report)
