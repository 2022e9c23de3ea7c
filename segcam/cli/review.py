"""``segcam review``: verdicts on a run's cracks from a file (scripted or external reviewers), and their summary."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from segcam.cli.common import UsageError


def cmd_review(args: argparse.Namespace) -> int:
    from segcam.survey.missed import import_missed, load_missed
    from segcam.survey.verdicts import VerdictError, import_verdicts, load_review, summarise

    if not args.import_file and not args.summary and not args.import_missed:
        args.summary = True  # `segcam review RUN` alone: what has been decided so far
    try:
        if args.import_missed:
            n = import_missed(args.run, args.import_missed, reviewer=args.reviewer or "")
            print(f"segcam: {n} missed cracks marked from {args.import_missed}", file=sys.stderr)
        if args.import_file:
            state, counts = import_verdicts(args.run, args.import_file, reviewer=args.reviewer or "")
            dup = f", {counts['duplicates']} duplicate rows applied once" if counts["duplicates"] else ""
            same = f", {counts['unchanged']} already so" if counts["unchanged"] else ""
            print(f"segcam: {counts['applied']} verdicts imported from {args.import_file}{same}{dup}", file=sys.stderr)
        else:
            state = load_review(args.run)
        marks, stale_marks = load_missed(args.run)
    except VerdictError as exc:
        raise UsageError(str(exc)) from None
    if args.summary:
        s = summarise(state)
        print(f"{'cracks':<12}{s['cracks']:>8}")
        for key in ("confirmed", "rejected", "unreviewed", "skipped"):
            print(f"{key:<12}{s[key]:>8}")
        print(f"{'missed':<12}{len(marks):>8}")
        for who, n in sorted(s["by_reviewer"].items()):
            print(f"  by {who}: {n}")
        if s["stale"]:
            print(f"segcam: {s['stale']} earlier verdicts no longer apply: their photo or crack changed in a rerun "
                  "(those cracks are unreviewed again)", file=sys.stderr)
        if stale_marks:
            print(f"segcam: {stale_marks} missed-crack marks no longer apply: their photo changed", file=sys.stderr)
        if s["unread_lines"]:
            print(f"segcam: {s['unread_lines']} lines of verdicts.jsonl could not be read (cut short by a crash?) "
                  "and were left out", file=sys.stderr)
    return 0


def register(sub: Any, fmt: type[argparse.HelpFormatter]) -> None:
    """Add the 'review' command to the ``segcam`` parser."""
    p = sub.add_parser("review", help="import verdicts (confirmed/rejected) on a run's cracks, or summarise them; "
                                      "`segcam app` reviews crack by crack", formatter_class=fmt)
    p.add_argument("run", help="a run folder (the --out of segcam survey or segcam explain)")
    p.add_argument("--import", dest="import_file", default=None, metavar="FILE.csv",
                   help="verdicts to apply: columns name,crack,verdict (confirmed or rejected), as cracks.csv names them")
    p.add_argument("--import-missed", default=None, metavar="FILE.geojson",
                   help="cracks the network missed: LineString features in pixel coordinates (x right, y down) with "
                        "properties name (the photo) and width (px)")
    p.add_argument("--reviewer", default=None, help="who gave the imported verdicts (saved with them)")
    p.add_argument("--summary", action="store_true", help="print the counts of confirmed, rejected and unreviewed cracks")
    p.set_defaults(func=cmd_review)
