"""What the commands share: the usage error, the help formatter, model and device options, input lists."""

from __future__ import annotations

import argparse
import glob
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

__all__ = ["HelpFormatter", "UsageError", "add_device_arg", "add_model_args", "collect_images", "load_model",
           "parse_method_args", "set_device"]


class UsageError(Exception):
    """Bad arguments: reported with exit code 2."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each default once: not when the help already names it, nor for None/False defaults."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower() or action.default in (None, False, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


def collect_images(inputs: Sequence[str], out: Path | None = None) -> list[Path | str]:
    from segcam.data.images import IMAGE_SUFFIXES, ImageError, is_uri, list_uri_images

    found: list[Path | str] = []
    for item in inputs:
        if is_uri(item):  # s3://, gs://, file://...: listed and read through pyarrow's file systems
            try:
                found += list_uri_images(item)
            except ImageError as exc:
                raise UsageError(str(exc)) from None
            continue
        path = Path(item)
        if path.is_dir() and path.suffix.lower() not in IMAGE_SUFFIXES:
            if out is not None and path.resolve() == out.resolve():
                raise UsageError(f"--out {out} is also an input folder: its outputs would be read as photos by the "
                                 "next run; choose another --out")
            images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not images:
                print(f"segcam: warning: folder {path} holds no image files ({', '.join(IMAGE_SUFFIXES)})", file=sys.stderr)
            found += images
        elif any(ch in item for ch in "*?["):
            matches = sorted(Path(p) for p in glob.glob(item, recursive=True))
            if not matches:
                raise UsageError(f"the pattern {item!r} matches no file")
            found += [p for p in matches if p.is_file()]
        else:
            found.append(path)  # missing files (and a folder named x.jpg) are reported per image, the batch goes on
    if not found:
        raise UsageError("no input image found; give image files, folders or globs")
    return found


def load_model(args: argparse.Namespace) -> Any:
    from segcam.models.zoo import create_model, load_paddleseg

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = _build_model(args, create_model, load_paddleseg)
    for w in caught:  # the random-init notice is printed by each command; a partial load is shown in full
        if "PARTIAL LOAD" in str(w.message):
            print(f"segcam: WARNING: {w.message}", file=sys.stderr)
    return model


def _build_model(args: argparse.Namespace, create_model: Any, load_paddleseg: Any) -> Any:
    if args.config:
        if args.model:
            raise UsageError("give either --model or --config, not both")
        if not args.weights:
            raise UsageError("--config needs --weights (the .pdparams trained with that config)")
        return load_paddleseg(args.config, args.weights, strict=not args.allow_partial)
    model = args.model or getattr(args, "default_model", None) or "hrsegnet_b48"
    return create_model(model, weights=args.weights, strict=not args.allow_partial)


def parse_method_args(items: list[str] | None) -> dict[str, Any]:
    """``["batch_size=8", "pool=4"]`` -> ``{"batch_size": 8, "pool": 4}`` (ints and floats parsed)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--method-arg must look like KEY=VALUE, got {item!r}")
        for cast in (int, float):
            try:
                out[key] = cast(value)
                break
            except ValueError:
                continue
        else:
            out[key] = value
    return out


def add_model_args(p: argparse.ArgumentParser, default_model: str | None = None) -> None:
    default_model = default_model or "hrsegnet_b48"
    p.add_argument("--model", default=None, help=f"zoo model name (segcam models); default {default_model}")
    p.set_defaults(default_model=default_model)
    p.add_argument("--weights", default=None,
                   help="a .pdparams file; default: the weights shipped for the model, else random init; "
                        "'random' forces random init")
    p.add_argument("--config", default=None, help="a PaddleSeg YAML (with --weights) instead of --model")
    p.add_argument("--allow-partial", action="store_true",
                   help="load weights even if some keys are missing/unexpected (loudly warned; explanations untrustworthy)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for Paddle's kernels (Paddle's default: 1)")
    add_device_arg(p)


def add_engine_args(p: argparse.ArgumentParser) -> None:
    """``--engine local|ray`` and the Ray engine's options (``explain`` and ``survey``)."""
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: this process; ray: a Ray cluster (pip install \"segcam[ray]\")")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="with --engine ray: auto (the running cluster), ray://HOST:PORT, or unset for a local Ray")
    p.add_argument("--workers", type=int, default=2, help="with --engine ray: actors, each loads the model once")
    p.add_argument("--batch-size", type=int, default=4, help="with --engine ray: photos per actor call")


def check_engine_args(args: argparse.Namespace) -> None:
    """Refuse Ray options that do not fit (:func:`add_engine_args`)."""
    if args.engine == "ray" and (args.workers < 1 or args.batch_size < 1):
        raise UsageError(f"--workers and --batch-size must be >= 1, got {args.workers} and {args.batch_size}")
    if args.engine != "ray" and args.ray_address is not None:
        raise UsageError("--ray-address needs --engine ray")


def add_device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", dest="paddle_device", choices=("auto", "cpu", "gpu"), default="auto",
                   help="where Paddle runs the model: auto = Paddle's default (GPU 0 on a paddlepaddle-gpu build)")


def set_device(device: str) -> None:
    """Point Paddle's dygraph at ``device`` (``auto`` keeps Paddle's default)."""
    import paddle

    if device == "auto":
        return
    if device == "gpu" and not paddle.is_compiled_with_cuda():
        raise UsageError("--device gpu needs a CUDA build of Paddle (pip install paddlepaddle-gpu, see README 'GPU'); "
                         "this one is CPU-only: use --device cpu")
    paddle.set_device(device)
