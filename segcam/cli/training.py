"""``segcam train``, ``segcam evaluate`` and ``segcam release``: training, scores on the data sets, shipping weights."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from segcam.cli.common import UsageError, add_device_arg, add_model_args, load_model


def cmd_train(args: argparse.Namespace) -> int:
    from segcam.training.loop import train

    state = train(args.config, args.save_dir, iters=args.iters, batch_size=args.batch_size,
                  resume=not args.no_resume, log_every=args.log_every, save_every=args.save_every,
                  val_every=args.val_every, seed=args.seed, threads=args.threads, stop_after=args.stop_after,
                  ema_decay=args.ema_decay, init_weights=args.init_weights,
                  log=lambda rec: print(json.dumps(rec), file=sys.stderr))
    print(f"trained to iteration {state['iter']}; best validation mIoU {state['best_miou']:.4f} "
          f"at {state['best_iter']}; checkpoints in {args.save_dir}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from segcam.cli.progress import TerminalProgress
    from segcam.data.datasets import parse_data_specs
    from segcam.training.loop import evaluate
    from segcam.utils.files import save_csv, save_json

    if not 0 < args.scale <= 8:
        raise UsageError(f"--scale must be in (0, 8], got {args.scale}")
    sets = {k: v[: args.limit or None] for k, v in parse_data_specs(args.data).items()}
    model = load_model(args)
    print(f"segcam: model {model.name}: {model.describe_weights()}", file=sys.stderr)
    per_image: list[dict[str, Any]] = []
    results = {}
    for spec, pairs in sets.items():
        res = evaluate(model.network, pairs, progress=TerminalProgress(), scale=args.scale,
                       on_image=lambda p, s, spec=spec: per_image.append({"data": spec, "image": str(p.image), **s}))
        results[spec] = res
        at = f", scale {args.scale:g}" if args.scale != 1 else ""
        print(f"{spec} ({res['images']} images, {model.name}{at}): mIoU {res['miou']:.4f}  crack IoU "
              f"{res['crack_iou']:.4f}  precision {res['precision']:.4f}  recall {res['recall']:.4f}  F1 {res['f1']:.4f}")
    if len(results) > 1:
        mean = {k: sum(r[k] for r in results.values()) / len(results) for k in ("miou", "crack_iou", "recall", "f1")}
        results["mean"] = mean
        print(f"mean of {len(sets)} sets: mIoU {mean['miou']:.4f}  crack IoU {mean['crack_iou']:.4f}  "
              f"recall {mean['recall']:.4f}  F1 {mean['f1']:.4f}")
    if args.csv:
        save_csv(args.csv, per_image)
    if args.json:
        save_json(args.json, {"model": model.name, "tag": model.tag, "weights_sha256": model.weights_sha256,
                              "data": args.data, "scale": args.scale, "results": results})
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    from segcam.cli.progress import TerminalProgress
    from segcam.training.release import release

    info = release(args.run, args.name, args.config, args.checkpoint, out_dir=args.out, notes=args.notes,
                   tag=args.tag, into_package=args.into_package, progress=TerminalProgress())
    print(json.dumps({k: v for k, v in info.items() if k != "metrics"}, indent=1))
    return 0


def register(sub: Any, fmt: type[argparse.HelpFormatter]) -> None:
    """Add the 'train', 'evaluate' and 'release' commands to the ``segcam`` parser."""
    from segcam.training.release import DEFAULT_OUT

    p = sub.add_parser("train", help="train a model from a PaddleSeg YAML (resumes)", formatter_class=fmt)
    p.add_argument("--config", required=True, help="PaddleSeg YAML, e.g. configs/cpu/hrsegnet_b16_cpu.yml")
    p.add_argument("--save-dir", required=True, help="checkpoints and train.log go here")
    p.add_argument("--iters", type=int, default=None, help="override the config's iters")
    p.add_argument("--batch-size", type=int, default=None, help="override the config's batch_size")
    p.add_argument("--no-resume", action="store_true", help="start over even if SAVE_DIR/last exists")
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--save-every", type=int, default=100)
    p.add_argument("--val-every", type=int, default=None, help="default: --save-every; 0 disables")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="CPU threads for Paddle's kernels (Paddle's default: 1)")
    p.add_argument("--stop-after", type=int, default=None,
                   help="stop after this iteration (checkpointed), keeping the full schedule; run again to resume")
    p.add_argument("--ema-decay", type=float, default=None,
                   help="validate and keep as best_model an exponential moving average of the weights (e.g. 0.99)")
    p.add_argument("--init-weights", default=None,
                   help="start from these weights (fine-tuning; the config's init_weights otherwise; not on resume)")
    add_device_arg(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="mIoU, crack IoU, precision, recall, F1 on a data split", formatter_class=fmt)
    add_model_args(p)
    p.add_argument("--data", required=True, help="NAME:SPLIT, e.g. deepcrack:test, cfd:test, or mix:test (every set)")
    p.add_argument("--csv", default=None, help="write per-image scores here")
    p.add_argument("--json", default=None, help="write the per-set scores here")
    p.add_argument("--limit", type=int, default=0, help="use only the first N images (0 = all)")
    p.add_argument("--scale", type=float, default=1.0,
                   help="test-time scale: resize each image by this factor before the network and score the "
                        "prediction resized back to the original size (e.g. 2 for small crops; see the model cards)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("release", help="fp16 weights, metrics on every test split and a model card from a run",
                       formatter_class=fmt)
    p.add_argument("--run", required=True, type=Path, help="the --save-dir of segcam train")
    p.add_argument("--name", required=True, help="zoo model name, e.g. hrsegnet_b16")
    p.add_argument("--config", required=True, help="the run's training config")
    p.add_argument("--checkpoint", default="best_model")
    p.add_argument("--tag", default="mix", help="weights tag: NAME.TAG loads them")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    p.add_argument("--into-package", action="store_true",
                   help="write into segcam/models/pretrained/, replacing the shipped weights of this name and tag")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for evaluation")
    p.add_argument("--notes", default="", help="how the run went (interruptions, resumes), for the model card")
    p.set_defaults(func=cmd_release)
