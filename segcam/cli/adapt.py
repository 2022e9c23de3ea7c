"""``segcam finetune``: the run's network fine-tuned on its reviewer's verdicts."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from segcam.cli.common import UsageError


def cmd_finetune(args: argparse.Namespace) -> int:
    from segcam.adapt.finetune import FinetuneError, finetune
    from segcam.survey.verdicts import VerdictError

    if args.iters < 1:
        raise UsageError(f"--iters must be >= 1, got {args.iters}")
    out = args.out or f"{args.run.rstrip('/')}_finetuned"
    try:
        rep = finetune(args.run, out, iters=args.iters, weights=args.weights, replay=args.replay, seed=args.seed, lr=args.lr,
                       crack_weight=args.crack_weight,
                       log=lambda msg: print(f"segcam: {msg}", file=sys.stderr))
    except (FinetuneError, VerdictError) as exc:
        raise UsageError(str(exc)) from None

    def f(v: Any) -> str:
        return "-" if v is None else f"{v:.3f}"

    print(f"{'held-back reviewed photos':<40}{'before':>8}{'after':>8}")
    for key, label in (("rejected_still", "rejected cracks still predicted"),
                       ("confirmed_kept", "confirmed crack pixels kept"), ("label_miou", "mIoU on verdict labels")):
        print(f"{label:<40}{f(rep.before.get(key)):>8}{f(rep.after.get(key)):>8}")
    print(f"segcam: {rep.iters} iterations in {rep.seconds / 60:.1f} min; weights {rep.weights}, card {rep.out / 'card.md'} "
          f"(next: segcam survey --model {rep.model} --weights {rep.weights} PHOTOS)", file=sys.stderr)
    return 0


def register(sub: Any, fmt: type[argparse.HelpFormatter]) -> None:
    """Add the 'finetune' command to the ``segcam`` parser."""
    from segcam.adapt.finetune import CRACK_WEIGHT, DEFAULT_ITERS, LR

    p = sub.add_parser("finetune", help="fine-tune a run's network on its verdicts (confirmed, rejected, missed "
                                        "cracks): weights adapted to this survey", formatter_class=fmt)
    p.add_argument("run", help="a reviewed run folder (segcam survey/explain --out, with verdicts)")
    p.add_argument("--out", default=None, help="output folder (default: RUN_finetuned; resumes a killed fine-tune)")
    p.add_argument("--iters", type=int, default=DEFAULT_ITERS, help="iterations of batch 8")
    p.add_argument("--weights", default=None, help="start from these weights instead of the run's")
    p.add_argument("--replay", default=None, metavar="mix:train|NAME:SPLIT|none",
                   help="data replayed so the network does not forget (default: what the base weights were trained on)")
    p.add_argument("--lr", type=float, default=LR, help="peak learning rate (SGD with momentum, poly decay)")
    p.add_argument("--crack-weight", type=float, default=CRACK_WEIGHT,
                   help="cross-entropy weight of crack pixels (background 1); lower trades recall for fewer false cracks")
    p.add_argument("--threads", type=int, default=2, help="CPU threads")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_finetune)
