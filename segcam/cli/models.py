"""``segcam models`` and ``segcam layers``: what the zoo holds and what a network's layers are."""

from __future__ import annotations

import argparse
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
        for tag in spec.tags:
            info = spec.tag_info(tag)
            flag = "shipped, default" if tag == spec.default_tag else "shipped"
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


def register(sub: Any, fmt: type[argparse.HelpFormatter]) -> None:
    """Add the 'models', 'layers' commands to the ``segcam`` parser."""
    p = sub.add_parser("models", help="list the zoo models", formatter_class=fmt)
    p.add_argument("pattern", nargs="?", default=None, help="a substring (b48) or a shell wildcard ('hrsegnet_*')")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("layers", help="list a model's layers, aliases and output shapes", formatter_class=fmt)
    add_model_args(p)
    p.add_argument("--size", type=int, nargs=2, default=[256, 256], metavar=("H", "W"), help="input size")
    p.add_argument("--aliases-only", action="store_true", help="show only the layers that have an alias")
    p.set_defaults(func=cmd_layers, weights="random")
