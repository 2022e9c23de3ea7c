"""The ``segcam`` command line: explain, models, layers, figure, evaluate-cam, train, evaluate, export, predict, app.

Exit codes: 0 every image done, 1 some image failed (the others are still
written), 2 usage error (unknown model, layer, method, colormap, bad target...).
Progress goes to stderr; stdout carries only tables and results.
"""

from __future__ import annotations

import argparse
import glob
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

__all__ = ["main"]

EPILOG = """examples:
  segcam explain --model hrsegnet_b48 --layer seg_head examples/images/deepcrack_IMG_6472-1.jpg
  segcam explain --model hrsegnet_b16 --layer seg_head --layer seg3 --target mask:masks/ --out runs/cam imgs/
  segcam layers --model hrsegnet_b48 --size 400 400
  segcam models
"""


class UsageError(Exception):
    """Bad arguments: reported with exit code 2."""


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each default once: not when the help already names it, nor for None/False defaults."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower() or action.default in (None, False, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


def _split_layers_and_images(layers: list[str] | None, images: list[str]) -> tuple[list[str], list[str]]:
    """``--layer seg1 seg3 img.jpg``: values that are files, folders, globs or image names are images, not layers."""
    from segcam.images import IMAGE_SUFFIXES

    keep, moved = [], []
    for value in layers or []:
        looks_like_image = (Path(value).exists() or Path(value).suffix.lower() in IMAGE_SUFFIXES
                            or any(ch in value for ch in "*?") or "/" in value)
        (moved if looks_like_image else keep).append(value)
    return keep, moved + list(images)


def _collect_images(inputs: Sequence[str], out: Path | None = None) -> list[Path | str]:
    from segcam.images import IMAGE_SUFFIXES, ImageError, is_uri, list_uri_images

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


def _load_model(args: argparse.Namespace) -> Any:
    from segcam.zoo import create_model, load_paddleseg

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
    return create_model(args.model or "hrsegnet_b48", weights=args.weights, strict=not args.allow_partial)


def _method_args(items: list[str] | None) -> dict[str, Any]:
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


def _check_target_fits(target: Any, images: list[Path]) -> None:
    """A box or pixel target outside an image is a usage error before the batch starts (header sizes only)."""
    from PIL import Image

    from segcam.targets import BoxTarget, PixelTarget

    if not isinstance(target, (BoxTarget, PixelTarget)):
        return
    for path in images:
        try:
            with Image.open(path) as im:
                w, h = im.size
        except (OSError, ValueError):
            continue  # an unreadable image is reported per image
        x_hi, y_hi = (target.x1, target.y1) if isinstance(target, BoxTarget) else (target.x + 1, target.y + 1)
        if x_hi > w or y_hi > h:
            raise UsageError(f"--target {target.describe()} lies outside {path} ({w}x{h}); "
                             f"coordinates are pixels with x < {w}, y < {h}")


def cmd_explain(args: argparse.Namespace) -> int:
    import segcam
    from segcam.batch import ExplainJob, RayOptions, check_output_dir, run_explain
    from segcam.defaults import location_note, recipe_for, target_kind
    from segcam.images import MIN_SIDE
    from segcam.layers import LayerNotFoundError, resolve_layers
    from segcam.overlay import check_cmap
    from segcam.result import NORMALIZATIONS, parse_artifacts
    from segcam.targets import parse_target
    from segcam.tiling import tile_starts

    check_cmap(args.cmap)
    if not 0 <= args.alpha <= 1:
        raise UsageError(f"--alpha must be in [0, 1], got {args.alpha}")
    if args.normalization not in NORMALIZATIONS:
        raise UsageError(f"--normalization must be one of {', '.join(NORMALIZATIONS)}")
    if args.max_side < MIN_SIDE:
        raise UsageError(f"--max-side must be at least {MIN_SIDE} (pixels on the longest side), got {args.max_side}")
    try:
        artifacts = parse_artifacts(args.save)
        if args.tile is not None:
            tile_starts(args.tile, args.tile, args.tile_overlap)  # checks the tile size and the overlap
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.engine == "ray" and (args.workers < 1 or args.batch_size < 1):
        raise UsageError(f"--workers and --batch-size must be >= 1, got {args.workers} and {args.batch_size}")
    if args.engine != "ray" and (args.ray_address is not None):
        raise UsageError("--ray-address needs --engine ray")
    target = parse_target(args.target, args.category)
    recipe = recipe_for(target)
    chosen = [f"{k} {v}" for k, v, given in (("method", recipe.method, args.method), ("score", recipe.score, args.score))
              if given is None]
    args.method = args.method or recipe.method
    args.score = args.score or recipe.score
    method_args = _method_args(args.method_arg)
    try:
        segcam.get_method(args.method, **method_args)
    except TypeError as exc:
        raise UsageError(str(exc)) from exc
    layers, inputs = _split_layers_and_images(args.layer, args.images)
    if not layers:
        chosen.append(f"layer {recipe.layer}")
    if not inputs:
        raise UsageError("no input image given; name image files, folders or globs after the options")
    args.images = inputs
    out = Path(args.out)
    check_output_dir(out)  # a file, a read-only disk...: one line before the model loads
    images = _collect_images(args.images, out)
    _check_target_fits(target, images)
    model = _load_model(args)
    print(f"segcam: model {model.name}: {model.describe_weights()}", file=sys.stderr)
    if not layers:  # the recipe's layer where the model has it (every zoo model has seg_head)
        try:
            resolve_layers(model, [recipe.layer])
            layers = [recipe.layer]
        except LayerNotFoundError:
            layers = ["seg_head"]
    if chosen:
        print(f"segcam: {target_kind(target)} target: {', '.join(chosen)} (the measured defaults for this target "
              "kind; README 'Choosing a method')", file=sys.stderr)
    note = location_note(args.method, target)
    if note:
        print(f"segcam: note: {note}", file=sys.stderr)
    job = ExplainJob(model, tuple(layers), args.method, method_args, target, args.target, args.category, args.cmap,
                     args.alpha, args.normalization, args.max_side, args.downscale, score=args.score, fuse=args.fuse,
                     artifacts=artifacts, tile=args.tile, tile_overlap=args.tile_overlap)
    arguments = {k: v for k, v in vars(args).items() if k != "func"}
    ray_options = RayOptions(args.ray_address, args.workers, args.batch_size, args.threads or 1,
                             gpus=1.0 if args.paddle_device == "gpu" else 0.0)
    summary = run_explain(job, images, out, overwrite=args.overwrite, arguments=arguments,
                          warn=lambda msg: print(f"segcam: {msg}", file=sys.stderr), engine=args.engine,
                          ray_options=ray_options)
    resumed = f" ({summary.skipped} already done by an earlier run)" if summary.skipped else ""
    print(f"segcam: {summary.total - summary.failed}/{summary.total} images explained{resumed}, {summary.failed} "
          f"failed; outputs in {out}", file=sys.stderr)
    return 1 if summary.failed else 0


def cmd_models(args: argparse.Namespace) -> int:
    from segcam.zoo import get_model_spec, list_models

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
    from segcam.layers import list_layers

    if args.size[0] < 32 or args.size[1] < 32:
        raise UsageError("--size must be at least 32 32")
    model = _load_model(args)
    rows = list_layers(model, tuple(args.size))
    if args.aliases_only:
        rows = [r for r in rows if r.aliases]
    width = max(len(r.name) for r in rows) + 2
    print(f"{'name':<{width}} {'alias':<20} {'type':<18} output shape (1x3x{args.size[0]}x{args.size[1]} input)")
    for r in rows:
        shape = "x".join(map(str, r.shape)) if r.shape else "-"
        print(f"{r.name:<{width}} {','.join(r.aliases):<20} {r.type:<18} {shape}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from segcam.training.loop import train

    state = train(args.config, args.save_dir, iters=args.iters, batch_size=args.batch_size,
                  resume=not args.no_resume, log_every=args.log_every, save_every=args.save_every,
                  val_every=args.val_every, seed=args.seed, threads=args.threads, stop_after=args.stop_after,
                  ema_decay=args.ema_decay, init_weights=args.init_weights)
    print(f"trained to iteration {state['iter']}; best validation mIoU {state['best_miou']:.4f} "
          f"at {state['best_iter']}; checkpoints in {args.save_dir}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from segcam.data import parse_data_specs
    from segcam.io_utils import save_csv, save_json
    from segcam.training.loop import evaluate

    if not 0 < args.scale <= 8:
        raise UsageError(f"--scale must be in (0, 8], got {args.scale}")
    sets = {k: v[: args.limit or None] for k, v in parse_data_specs(args.data).items()}
    model = _load_model(args)
    print(f"segcam: model {model.name}: {model.describe_weights()}", file=sys.stderr)
    per_image: list[dict[str, Any]] = []
    results = {}
    for spec, pairs in sets.items():
        res = evaluate(model.network, pairs, progress=True, scale=args.scale,
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


def cmd_evaluate_cam(args: argparse.Namespace) -> int:
    import segcam
    from segcam.batch import preflight
    from segcam.cam_eval import evaluate_cam, markdown_table, summarize, write_reports
    from segcam.data import parse_data_spec
    from segcam.zoo import create_model

    args.layers = args.layers or ["seg_head"]
    for m in args.methods:
        segcam.get_method(m)
    pairs = parse_data_spec(args.data)[: args.limit or None]
    model = _load_model(args)
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
    rows = evaluate_cam(model, random_model, pairs, args.methods, args.layers, steps=args.steps)
    meta = {"model": model.name, "weights": model.weights, "weights_sha256": model.weights_sha256, "data": args.data,
            "images": len(pairs), "methods": args.methods, "layers": args.layers, "steps": args.steps}
    write_reports(rows, args.out, meta)
    print(markdown_table(summarize(rows)))
    print(f"segcam: reports in {args.out}", file=sys.stderr)
    return 0


def cmd_figure(args: argparse.Namespace) -> int:
    from segcam.figures import cam_grid
    from segcam.methods import display_name
    from segcam.panels import rows_from_manifest, rows_from_models
    from segcam.targets import parse_target
    from segcam.zoo import create_model

    base, formats = args.out, args.formats
    suffix = Path(base).suffix.lower().lstrip(".")
    if suffix in ("pdf", "svg", "png"):  # --out fig.pdf means fig.pdf (that format only, unless --format says more)
        base = str(Path(base).with_suffix(""))
        formats = formats or [suffix]
    outs = [f"{base}.{fmt}" for fmt in (formats or ["pdf", "svg", "png"])]
    if args.manifest:
        if args.images_in:
            raise UsageError("give either --manifest or images, not both")
        rows, titles, data = rows_from_manifest(args.manifest, args.masks, args.select, args.layer)
        label = display_name(data.get("method") or "CAM")
    else:
        if not args.images_in:
            raise UsageError("give --manifest RUN/manifest.json, or image files with --model")
        names = args.model or ["hrsegnet_b48"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            models = [create_model(n, weights=args.weights if len(names) == 1 else None) for n in names]
        for m in models:
            print(f"segcam: model {m.name}: {m.describe_weights()}", file=sys.stderr)
        target = parse_target(args.target)
        if isinstance(target, tuple):
            raise UsageError("segcam figure takes pred, image, box, pixel, component, skeleton or border targets")
        rows, titles = rows_from_models(models, args.images_in, args.layer or ["seg_head"], args.method or ["seg_grad_cam"],
                                        args.sweep, args.masks, target)
        label = "CAM" if args.sweep == "method" else display_name((args.method or ["seg_grad_cam"])[0])
    written = cam_grid(rows, titles, outs, width=args.width, cmap=args.cmap, alpha=args.alpha,
                       normalization=args.normalization, dpi=args.dpi, colorbar_label=label)
    for path in written:
        print(path)
    return 0


def cmd_app(args: argparse.Namespace) -> int:
    import os
    import signal
    import subprocess

    try:
        import streamlit  # noqa: F401
    except ImportError:
        raise UsageError("the app needs Streamlit: pip install 'segcam[app]'") from None
    from segcam.app_core import ENV_ALLOW_REMOTE, ENV_RUNS_ROOT, ENV_WEIGHTS_ROOTS, LOOPBACK, MAX_UPLOAD_MB
    from segcam.zoo import PRETRAINED_DIR

    runs_root = Path(args.runs_root).resolve()
    if not runs_root.is_dir():
        raise UsageError(f"--runs-root {args.runs_root} is not a folder")
    env = dict(os.environ, **{ENV_RUNS_ROOT: str(runs_root)})
    env.pop(ENV_ALLOW_REMOTE, None)
    roots = [Path(r).resolve() for r in args.weights_root] if args.weights_root else [Path.cwd(), PRETRAINED_DIR]
    missing = [str(r) for r in roots if not r.is_dir()]
    if missing:
        raise UsageError(f"--weights-root {', '.join(missing)} is not a folder")
    env[ENV_WEIGHTS_ROOTS] = os.pathsep.join(map(str, roots))
    if args.host not in LOOPBACK:
        env[ENV_ALLOW_REMOTE] = "1"  # --host ADDRESS: the explicit choice to serve other machines
    script = Path(__file__).resolve().parent / "app_ui.py"
    cmd = [sys.executable, "-m", "streamlit", "run", str(script), "--server.headless", "true",
           "--server.address", args.host, "--server.port", str(args.port), "--server.maxUploadSize",
           str(MAX_UPLOAD_MB), "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal",
           *args.streamlit_args]
    shown = "localhost" if args.host in LOOPBACK else args.host
    print(f"segcam: serving the app on http://{shown}:{args.port} (runs under {runs_root})", file=sys.stderr)
    child = subprocess.Popen(cmd, env=env, preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)

    def stop(signum: int, frame: Any) -> None:  # SIGTERM/SIGHUP to segcam app stop its server too
        child.terminate()

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)
    try:
        return child.wait()
    except KeyboardInterrupt:
        child.terminate()
        child.wait(timeout=10)
        return 130
    finally:
        if child.poll() is None:
            child.kill()


def _die_with_parent() -> None:
    """In the app's server process: the kernel sends it SIGTERM when ``segcam app`` dies, even by SIGKILL."""
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM))


def cmd_export(args: argparse.Namespace) -> int:
    from segcam.export import export_model
    from segcam.images import read_image

    model = _load_model(args)
    print(f"segcam: model {model.name}: {model.describe_weights()}", file=sys.stderr)
    h, w = args.size
    image = None
    if args.verify_image:
        image = read_image(args.verify_image, max_side=8192)
        if image.shape[:2] != (h, w):
            import cv2

            image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    rep = export_model(model, args.out, args.format, (h, w), image, overwrite=args.overwrite)
    print(f"exported {rep.model} as {rep.format} {h}x{w} to {rep.path}: max |exported - dygraph| = "
          f"{rep.max_abs_diff:.3g} (tolerance {rep.tolerance}), oneDNN {'on' if rep.onednn else 'off'}, {rep.seconds} s")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from segcam.batch import output_stems
    from segcam.export import load_predictor
    from segcam.images import ImageError, read_image
    from segcam.io_utils import save_csv, save_json, save_png
    from segcam.result import versions
    from segcam.tiling import fixed_size_forward, predict_tiled, tile_starts

    pred = load_predictor(args.export, threads=args.threads, device=args.device)
    try:
        tile_starts(min(pred.size), min(pred.size), args.tile_overlap)
    except ValueError as exc:
        raise UsageError(f"{exc} (the export's input is {pred.size[1]}x{pred.size[0]})") from None
    images = _collect_images(args.images)
    out = Path(args.out)
    if (out / "manifest.json").exists() and not args.overwrite:
        raise UsageError(f"{out} already holds a run (manifest.json); pass --overwrite or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    size = pred.size
    forward = fixed_size_forward(lambda crop: pred.predict_rgb(crop)[0], size)
    rows = []
    for path, name in tqdm(list(zip(images, output_stems(images))), desc="predict", unit="img", file=sys.stderr,
                           disable=None):
        t0 = time.time()
        row = {"image": str(path), "name": name, "status": "ok", "error": "", "width": "", "height": "",
               "crack_pixels": "", "seconds": ""}
        try:
            rgb = read_image(path, max_side=args.max_side, downscale=args.downscale)
            ih, iw = rgb.shape[:2]
            row.update(width=iw, height=ih)
            # full resolution: tiles of the export's size, cross-faded; smaller sides padded, never stretched
            logits = predict_tiled(forward, rgb, size, args.tile_overlap)
            mask = logits.argmax(axis=0) == args.category
            save_png(out / f"{name}__mask.png", mask.astype(np.uint8) * 255)
            over = rgb.copy()
            over[mask] = (0.4 * over[mask] + 0.6 * np.array([255, 40, 40])).astype(np.uint8)
            save_png(out / f"{name}__overlay.png", over)
            row["crack_pixels"] = int(mask.sum())
        except (ImageError, ValueError, OSError) as exc:
            row.update(status="error", error=str(exc))
            print(f"segcam: error: {exc}", file=sys.stderr)
        row["seconds"] = f"{time.time() - t0:.3f}"
        rows.append(row)
    save_csv(out / "summary.csv", rows)
    save_json(out / "manifest.json", {"schema": "segcam.predict", "schema_version": 1, "versions": versions(),
                                      "export": pred.meta, "arguments": {k: v for k, v in vars(args).items() if k != "func"},
                                      "images": rows})
    failed = sum(r["status"] != "ok" for r in rows)
    print(f"segcam: {len(rows) - failed}/{len(rows)} images predicted, {failed} failed; outputs in {out}", file=sys.stderr)
    return 1 if failed else 0


def _add_model_args(p: argparse.ArgumentParser, default_model: str | None = None) -> None:
    p.add_argument("--model", default=default_model, help="zoo model name (segcam models); default hrsegnet_b48")
    p.add_argument("--weights", default=None,
                   help="a .pdparams file; default: the weights shipped for the model, else random init; "
                        "'random' forces random init")
    p.add_argument("--config", default=None, help="a PaddleSeg YAML (with --weights) instead of --model")
    p.add_argument("--allow-partial", action="store_true",
                   help="load weights even if some keys are missing/unexpected (loudly warned; explanations untrustworthy)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for Paddle's kernels (Paddle's default: 1)")
    _add_device_arg(p)


def _add_device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", dest="paddle_device", choices=("auto", "cpu", "gpu"), default="auto",
                   help="where Paddle runs the model: auto = Paddle's default (GPU 0 on a paddlepaddle-gpu build)")


def _set_device(device: str) -> None:
    """Point Paddle's dygraph at ``device`` (``auto`` keeps Paddle's default)."""
    import paddle

    if device == "auto":
        return
    if device == "gpu" and not paddle.is_compiled_with_cuda():
        raise UsageError("--device gpu needs a CUDA build of Paddle (pip install paddlepaddle-gpu, see README 'GPU'); "
                         "this one is CPU-only: use --device cpu")
    paddle.set_device(device)


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the ``segcam`` command."""
    import segcam
    from segcam.result import ARTIFACTS

    parser = argparse.ArgumentParser(prog="segcam", description="Seg-Grad-CAM explanations for crack segmentation.",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"segcam {segcam.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fmt = _Help

    p = sub.add_parser("explain", help="explain images (files, folders, globs)", formatter_class=fmt)
    _add_model_args(p)
    p.add_argument("images", nargs="*", help="image files, folders or glob patterns")
    p.add_argument("--layer", "--layers", dest="layer", nargs="+", action="extend", metavar="LAYER",
                   help="one or more layer names, aliases or name[i] (default: the measured one for the target kind)")
    p.add_argument("--method", default=None,
                   help="CAM method (default: the measured one for the target kind, see README): "
                        + ", ".join(segcam.list_methods()))
    p.add_argument("--score", default=None, choices=["logit", "margin", "prob"],
                   help="summed over the target: logit y_c, margin y_c - logsumexp(others), or softmax prob "
                        "(default: the measured one for the target kind)")
    p.add_argument("--fuse", action="store_true",
                   help="also write a fused map of all layers (mean of the per-layer normalised maps)")
    p.add_argument("--method-arg", action="append", metavar="KEY=VALUE",
                   help="method option, e.g. batch_size=32 (seg_score_cam, ablation_cam) or pool=4 (seg_xres_cam)")
    p.add_argument("--target", default="pred",
                   help="pred | image | box:X0,Y0,X1,Y1 | pixel:X,Y | mask:PATH | component[:RANK|:X,Y] | skeleton | "
                        "border[:W] | tp:PATH | fp:PATH | fn:PATH (PATH: a mask file or a folder of <stem>.png)")
    p.add_argument("--class", dest="category", type=int, default=1, help="class explained (1 = crack)")
    p.add_argument("--out", default="segcam_out", help="output folder")
    p.add_argument("--cmap", default="inferno", help="matplotlib colormap (inferno, viridis, turbo, jet...)")
    p.add_argument("--alpha", type=float, default=0.5, help="heatmap weight in the overlay")
    p.add_argument("--normalization", default="per_map", help="per_map | shared (across the layers of an image)")
    p.add_argument("--max-side", type=int, default=2048, help="largest image side accepted")
    p.add_argument("--downscale", action="store_true", help="shrink larger images to --max-side instead of failing")
    p.add_argument("--overwrite", action="store_true", help="write into an --out that already holds a run")
    p.add_argument("--save", default=",".join(ARTIFACTS), metavar="LIST",
                   help="what to write, comma-separated: overlay (JPEG), heatmap (PNG), raw (.npz map at the "
                        "layer's resolution), prediction (PNG mask)")
    p.add_argument("--tile", type=int, default=None, metavar="PX",
                   help="explain photos larger than PX per side tile by tile at full resolution (e.g. 1024)")
    p.add_argument("--tile-overlap", type=int, default=128, metavar="PX", help="pixels shared by neighbouring tiles")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: this process; ray: a Ray cluster (pip install \"segcam[ray]\")")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="with --engine ray: auto (the running cluster), ray://HOST:PORT, or unset for a local Ray")
    p.add_argument("--workers", type=int, default=2, help="with --engine ray: actors, each loads the model once")
    p.add_argument("--batch-size", type=int, default=4, help="with --engine ray: images per actor call")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("models", help="list the zoo models", formatter_class=fmt)
    p.add_argument("pattern", nargs="?", default=None, help="shell wildcard, e.g. 'hrsegnet_*'")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("layers", help="list a model's layers, aliases and output shapes", formatter_class=fmt)
    _add_model_args(p)
    p.add_argument("--size", type=int, nargs=2, default=[256, 256], metavar=("H", "W"), help="input size")
    p.add_argument("--aliases-only", action="store_true", help="show only the layers that have an alias")
    p.set_defaults(func=cmd_layers, weights="random")

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
    _add_device_arg(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="mIoU, crack IoU, precision, recall, F1 on a data split", formatter_class=fmt)
    _add_model_args(p)
    p.add_argument("--data", required=True, help="NAME:SPLIT, e.g. deepcrack:test, cfd:test, or mix:test (every set)")
    p.add_argument("--csv", default=None, help="write per-image scores here")
    p.add_argument("--json", default=None, help="write the per-set scores here")
    p.add_argument("--limit", type=int, default=0, help="use only the first N images (0 = all)")
    p.add_argument("--scale", type=float, default=1.0,
                   help="test-time scale: resize each image by this factor before the network and score the "
                        "prediction resized back to the original size (e.g. 2 for small crops; see the model cards)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("figure", help="publication figure: rows = images, columns = input | GT | prediction | CAMs",
                       formatter_class=fmt)
    p.add_argument("images_in", nargs="*", metavar="IMAGES", help="images (when not using --manifest)")
    p.add_argument("--manifest", default=None, help="manifest.json (or folder) of a segcam explain run")
    p.add_argument("--select", nargs="+", default=None, help="with --manifest: image names (stems) to show, in order")
    p.add_argument("--masks", default=None, help="folder of ground-truth masks <image stem>.png (adds a GT column)")
    p.add_argument("--model", action="append", help="zoo model; repeat with --sweep model")
    p.add_argument("--weights", default=None, help="weights for a single --model")
    p.add_argument("--layer", "--layers", dest="layer", nargs="+", action="extend", metavar="LAYER",
                   help="one or more layers; several with --sweep layer (default seg_head)")
    p.add_argument("--method", action="append", help="method; repeat with --sweep method (default seg_grad_cam)")
    p.add_argument("--sweep", default="layer", choices=["layer", "model", "method"], help="what the CAM columns vary")
    p.add_argument("--target", default="pred", help="target (see segcam explain)")
    p.add_argument("--out", default="segcam_figure",
                   help="output path; without a suffix every --format is written, fig.pdf writes just fig.pdf")
    p.add_argument("--format", dest="formats", action="append", choices=["pdf", "svg", "png"],
                   help="repeat for several (default: pdf, svg and png)")
    p.add_argument("--width", default="double", help="single (90 mm), onehalf (140), double (190) or millimetres")
    p.add_argument("--dpi", type=int, default=600, help="PNG resolution")
    p.add_argument("--cmap", default="inferno")
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--normalization", default="per_map", choices=["per_map", "shared"])
    _add_device_arg(p)
    p.set_defaults(func=cmd_figure)

    p = sub.add_parser("app", help="start the Streamlit app (needs the [app] extra)", formatter_class=fmt)
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; 0.0.0.0 serves every network interface (anyone who reaches it can "
                        "run models on this machine)")
    p.add_argument("--runs-root", default=".", help="'Browse a run' only opens run folders under this folder")
    p.add_argument("--weights-root", action="append", default=None,
                   help="folder the page may load weights/YAML from (repeatable; default: the working directory "
                        "and the shipped weights)")
    p.add_argument("streamlit_args", nargs=argparse.REMAINDER, help="extra arguments for streamlit run")
    p.set_defaults(func=cmd_app)

    p = sub.add_parser("export", help="export a model for deployment (Paddle Inference or ONNX), verified",
                       formatter_class=fmt)
    _add_model_args(p)
    p.add_argument("--format", default="paddle", help="paddle | onnx")
    p.add_argument("--size", type=int, nargs=2, default=[400, 400], metavar=("H", "W"), help="fixed input size")
    p.add_argument("--out", required=True, help="export folder (must not exist unless --overwrite)")
    p.add_argument("--verify-image", default=None, help="image used to verify the export (default: random)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("predict", help="crack masks and overlays from an exported model", formatter_class=fmt)
    p.add_argument("images", nargs="+", help="image files, folders or glob patterns")
    p.add_argument("--export", required=True, help="folder written by segcam export")
    p.add_argument("--out", default="segcam_predict", help="output folder")
    p.add_argument("--class", dest="category", type=int, default=1, help="class drawn as the mask (1 = crack)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                   help="gpu needs paddlepaddle-gpu (Paddle exports) or onnxruntime-gpu (ONNX exports)")
    p.add_argument("--tile-overlap", type=int, default=64, metavar="PX",
                   help="photos larger than the export's size are predicted in tiles of that size sharing PX pixels")
    p.add_argument("--max-side", type=int, default=4096)
    p.add_argument("--downscale", action="store_true")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("evaluate-cam", help="rank CAM methods x layers by faithfulness metrics", formatter_class=fmt)
    _add_model_args(p)
    p.add_argument("--data", required=True, help="NAME:SPLIT with ground-truth masks, e.g. deepcrack:test")
    p.add_argument("--methods", nargs="+", default=["seg_grad_cam", "seg_hires_cam", "layer_cam"])
    p.add_argument("--layer", "--layers", dest="layers", nargs="+", action="extend", metavar="LAYER",
                   help="one or more layers (default seg_head)")
    p.add_argument("--limit", type=int, default=10, help="first N images of the split (0 = all)")
    p.add_argument("--steps", type=int, default=10, help="deletion/insertion steps")
    p.add_argument("--out", default="segcam_cam_eval", help="output folder for CSV, markdown, JSON and plot")
    p.set_defaults(func=cmd_evaluate_cam)
    return parser


class _Terminated(KeyboardInterrupt):
    """SIGTERM, turned into the same orderly stop as Ctrl-C."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code.

    0 ok, 1 some images failed, 2 usage error, 3 the output could not be written (file-system error),
    130 interrupted (Ctrl-C), 143 terminated (SIGTERM); an interrupted batch records what finished and the
    same command resumes it.
    """
    import signal

    parser = build_parser()
    args = parser.parse_args(argv)
    if threading_main():
        signal.signal(signal.SIGTERM, _on_sigterm)
    from segcam.batch import RunFolderError
    from segcam.distributed import RayUnavailableError
    from segcam.engine import LayerGradientError
    from segcam.export import ExportError
    from segcam.figures import FigureError
    from segcam.hooks import LayerOutputError
    from segcam.layers import LayerNotFoundError
    from segcam.targets import TargetError
    from segcam.weights import WeightsError

    try:
        threads = getattr(args, "threads", None)
        if threads is not None:
            if threads < 1:
                raise UsageError(f"--threads must be >= 1, got {threads}")
            import paddle

            paddle.base.core.set_num_threads(threads)
        _set_device(getattr(args, "paddle_device", "auto"))
        return args.func(args)
    except BrokenPipeError:  # `segcam models | head`
        sys.stderr.close()
        return 0
    except (UsageError, LayerNotFoundError, TargetError, LayerGradientError, LayerOutputError, FigureError,
            ExportError, RayUnavailableError) as exc:
        print(f"segcam: error: {exc}", file=sys.stderr)
        return 2
    except KeyError as exc:  # unknown model / method names
        print(f"segcam: error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    except (WeightsError, FileNotFoundError, ValueError) as exc:
        print(f"segcam: error: {exc}", file=sys.stderr)
        return 2
    except RunFolderError as exc:
        print(f"segcam: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        what = "terminated" if isinstance(exc, _Terminated) else "interrupted"
        kept = {"explain": "finished images are recorded", "train": "the last checkpoint is kept"}.get(args.command)
        resume = f"{kept}; run the same command again to resume" if kept else "nothing was left half-written"
        print(f"segcam: {what}; {resume}", file=sys.stderr)
        return 143 if isinstance(exc, _Terminated) else 130
    except OSError as exc:
        print(f"segcam: error: cannot write the output ({exc}); free space or choose another --out", file=sys.stderr)
        return 3


def threading_main() -> bool:
    """True in the main thread (only there can a signal handler be installed)."""
    import threading

    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
