"""``segcam models``, ``segcam weights`` and ``segcam layers``: the zoo, where its weights are, a network's layers."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from segcam.cli.common import UsageError, add_model_args, load_model


def cmd_models(args: argparse.Namespace) -> int:
    from segcam.models.zoo import get_model_spec, list_models

    names = list_models(args.pattern)
    if not names:
        raise UsageError(f"no zoo model matches {args.pattern!r}; `segcam models` lists all {len(list_models())}")
    print(f"{'name':<24} {'weights':<18} {'seg_head':<14} description / training data of the tag")
    for name in names:
        spec = get_model_spec(name)
        default = f"tag {spec.default_tag}" if spec.default_tag else "random init"
        print(f"{name:<24} {default:<18} {spec.aliases['seg_head']:<14} {spec.description}")
        for tag, path in spec.tags.items():
            info = spec.tag_info(tag)
            flag = "default" if tag == spec.default_tag else ""
            flag += "" if path.is_file() else (", " if flag else "") + "weights get"
            print(f"{'  ' + name + '.' + tag:<24} {flag:<18} {'':<14} {info.get('train_data', '?')}")
    return 0


def cmd_layers(args: argparse.Namespace) -> int:
    from segcam.cam.layers import list_layers

    if args.size[0] < 32 or args.size[1] < 32:
        raise UsageError("--size must be at least 32 32")
    model = load_model(args)
    rows = list_layers(model, tuple(args.size))
    if args.aliases_only:
        rows = [r for r in rows if r.aliases]
    width = max(len(r.name) for r in rows) + 2
    print(f"{'name':<{width}} {'alias':<20} {'type':<18} output shape (1x3x{args.size[0]}x{args.size[1]} input)")
    for r in rows:
        shape = "x".join(map(str, r.shape)) if r.shape else "-"
        print(f"{r.name:<{width}} {','.join(r.aliases):<20} {r.type:<18} {shape}")
    return 0


def cmd_weights(args: argparse.Namespace) -> int:
    from segcam.models import store
    from segcam.models.zoo import get_model_spec, list_models

    every = [f"{n}.{t}" for n in list_models() for t in get_model_spec(n).tags]
    if args.action == "list":
        if args.names or args.all:
            raise UsageError("`segcam weights list` takes no names; `segcam weights get NAME.TAG` fetches")
        print(f"{'weights':<28} {'where':<10} path")
        for name_tag in every:
            path = store.find_weights(name_tag)
            where = ("missing" if path is None else "cache" if store.PRETRAINED_DIR not in path.parents else
                     "wheel" if name_tag in store.IN_WHEEL else "checkout")
            print(f"{name_tag:<28} {where:<10} {path or '-> segcam weights get ' + name_tag}")
        return 0
    wanted = every if args.all else args.names
    if not wanted:
        raise UsageError("name the weights to fetch (NAME.TAG, as `segcam weights list` shows them) or pass --all")
    unknown = [n for n in wanted if n not in every]
    if unknown:
        raise UsageError(f"no model card for {', '.join(unknown)}; `segcam weights list` shows the tags")
    base = store.base_url(args.url)  # a missing or bad base URL stops before any download
    failed = 0
    for name_tag in wanted:
        try:
            path = store.fetch(name_tag, url=base, force=args.force)
        except (OSError, ValueError) as exc:  # the next tag still gets its chance
            failed += 1
            print(f"segcam: {name_tag}: not fetched from {base}: {exc}", file=sys.stderr)
            continue
        print(f"{name_tag}: {path}")
    return 1 if failed else 0


def register(sub: Any, fmt: type[argparse.HelpFormatter]) -> None:
    """Add the 'models', 'weights' and 'layers' commands to the ``segcam`` parser."""
    p = sub.add_parser("models", help="list the zoo models", formatter_class=fmt)
    p.add_argument("pattern", nargs="?", default=None, help="a substring (b48) or a shell wildcard ('hrsegnet_*')")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("weights", formatter_class=fmt,
                       help="list the trained weights and where they are; fetch those the wheel leaves out",
                       description="`segcam weights list`; `segcam weights get NAME.TAG [...] [--url URL]`: download "
                                   "once, check against the card's sha256, cache (segcam never downloads on its own).")
    p.add_argument("action", choices=["list", "get"])
    p.add_argument("names", nargs="*", metavar="NAME.TAG", help="weights to fetch, e.g. hrsegnet_b48.deepcrack")
    p.add_argument("--all", action="store_true", help="fetch every tag that is not here yet")
    p.add_argument("--url", default=None,
                   help="base URL of the weights files (else $SEGCAM_WEIGHTS_URL, else [weights] base_url in segcam.ini)")
    p.add_argument("--force", action="store_true", help="download again even if a checked copy is here")
    p.set_defaults(func=cmd_weights)

    p = sub.add_parser("layers", help="list a model's layers, aliases and output shapes", formatter_class=fmt)
    add_model_args(p)
    p.add_argument("--size", type=int, nargs=2, default=[256, 256], metavar=("H", "W"), help="input size")
    p.add_argument("--aliases-only", action="store_true", help="show only the layers that have an alias")
    p.set_defaults(func=cmd_layers, weights="random")
