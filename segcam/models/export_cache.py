"""Exports built on first use and cached: the survey's fast prediction engine.

``segcam survey`` predicts with ONNX Runtime (several times faster than dygraph on a CPU). An export has a
fixed input size, so one is built per input size the survey meets (a tile, or a small photo's own size),
verified against dygraph (:func:`segcam.models.export.export_model`) and kept in the cache folder:

* ``$SEGCAM_CACHE`` when set, else ``$XDG_CACHE_HOME/segcam`` (``~/.cache/segcam``), under ``exports/``;
* a folder per export whose name holds a hash of everything the export depends on: the model, the sha256 of
  its weights, the input size, the outputs, and the versions of segcam, Paddle and paddle2onnx;
* its ``segcam_export.json`` repeats that key and the sha256 of ``model.onnx``: an export whose key or file
  does not match (another version, other weights, a truncated copy) is rebuilt with a message, never used;
* a cache folder that cannot be written falls back to a temporary one, with a warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from segcam.models.export import ExportError, Predictor, export_model
from segcam.models.store import cache_root
from segcam.models.weights import sha256_file

__all__ = ["cache_root", "cached_predictor", "export_key"]


def export_key(model: Any, size: tuple[int, int], outputs: str, fmt: str = "onnx", category: int = 1) -> dict[str, Any]:
    """What an export depends on (its cache key)."""
    import paddle

    from segcam.version import __version__

    try:
        import paddle2onnx

        p2o = paddle2onnx.__version__
    except ImportError:  # ONNX exports then fail with the install hint of export_model
        p2o = None
    return {"model": getattr(model, "name", "?"), "weights_sha256": getattr(model, "weights_sha256", None),
            "size": [int(size[0]), int(size[1])], "outputs": outputs, "category": category, "format": fmt,
            "segcam": __version__,
            "paddle": paddle.__version__, "paddle2onnx": p2o}


def _digest(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
        return True
    except OSError:
        return False


def _valid(folder: Path, key: dict[str, Any]) -> str | None:
    """Why a cached export cannot be used, or None when it can."""
    try:
        meta = json.loads((folder / "segcam_export.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"its segcam_export.json cannot be read ({exc})"
    if meta.get("cache_key") != key:
        return "it was built for other weights or another version"
    model_file = folder / ("model.onnx" if key["format"] == "onnx" else "model.pdiparams")
    if not model_file.is_file() or sha256_file(model_file) != meta.get("file_sha256"):
        return f"{model_file.name} is missing or does not match its recorded sha256"
    return None


def cached_predictor(model: Any, size: tuple[int, int], outputs: str = "logits", threads: int = 2,
                     cache: str | Path | None = None, warn: Callable[[str], None] | None = None,
                     fmt: str = "onnx", category: int = 1) -> Predictor:
    """A predictor of ``model`` for inputs of ``size`` (H, W), from the cache or exported now.

    Args:
        model: A :class:`segcam.models.zoo.ZooModel`.
        size: Input height and width.
        outputs: ``logits`` or ``evidence`` (:func:`segcam.models.export.export_model`).
        threads: CPU threads of the runtime.
        cache: The cache folder (default :func:`cache_root`).
        warn: Told when an export is built, rebuilt, or the cache falls back to a temporary folder.
        fmt: ``onnx`` (ONNX Runtime) or ``paddle`` (Paddle Inference).
        category: The class an ``evidence`` export explains.

    Raises:
        ExportError: The model cannot be exported or its export fails verification.
    """
    say = warn or (lambda msg: None)
    root = Path(cache) if cache is not None else cache_root()
    folder_root = root / "exports"
    if not _writable(folder_root):
        fallback = Path(tempfile.gettempdir()) / f"segcam-cache-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
        say(f"the export cache {folder_root} cannot be written; using {fallback / 'exports'} for this run "
            "(set SEGCAM_CACHE to a writable folder to keep exports between runs)")
        folder_root = fallback / "exports"
        folder_root.mkdir(parents=True, exist_ok=True)
    key = export_key(model, size, outputs, fmt, category)
    folder = folder_root / f"{key['model']}-{size[0]}x{size[1]}-{outputs}-{_digest(key)}"
    if folder.exists():
        why = _valid(folder, key)
        if why is None:
            try:
                return Predictor(folder, threads=threads)
            except Exception as exc:  # noqa: BLE001 - a corrupt file: rebuilt below, whatever the runtime raised
                why = f"it cannot be loaded ({type(exc).__name__}: {exc})"
        say(f"rebuilding the cached export {folder.name}: {why}")
    else:
        say(f"building the {fmt} export of {key['model']} for {size[1]}x{size[0]} inputs (once; cached in {folder_root})")
    _build(model, folder, size, outputs, fmt, key, category)
    return Predictor(folder, threads=threads)


#: The child process of :func:`_export_in_child`: the export of the model its JSON argument describes.
_CHILD = ("import json, sys\n"
          "from segcam.models.export import export_model\n"
          "from segcam.models.zoo import rebuild_model\n"
          "a = json.loads(sys.argv[1])\n"
          "export_model(rebuild_model(a['source']), a['out'], a['fmt'], tuple(a['size']), overwrite=True, "
          "outputs=a['outputs'], category=a['category'])\n")


def _export_in_child(source: dict[str, Any], out: Path, fmt: str, size: tuple[int, int], outputs: str,
                     category: int) -> None:
    """:func:`segcam.models.export.export_model` of the model ``source`` describes, in a child Python process.

    Raises:
        ExportError: The export failed (the child's last error line).
    """
    import subprocess
    import sys

    arg = json.dumps({"source": source, "out": str(out), "fmt": fmt, "size": [int(size[0]), int(size[1])],
                      "outputs": outputs, "category": category})
    proc = subprocess.run([sys.executable, "-c", _CHILD, arg], capture_output=True, text=True,
                          env={**os.environ, "GLOG_minloglevel": os.environ.get("GLOG_minloglevel", "2")})
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        last = lines[-1] if lines else f"exit code {proc.returncode}"
        raise ExportError(last.split(": ", 1)[1] if last.startswith(("segcam.", "ValueError", "ExportError")) and ": " in last
                          else last)


def _build(model: Any, folder: Path, size: tuple[int, int], outputs: str, fmt: str, key: dict[str, Any],
           category: int) -> None:
    """Export into a temporary folder beside ``folder``, record the key, and rename it into place.

    A model that can be rebuilt from its ``source`` (every zoo and PaddleSeg model) is exported in a child
    process: tracing, converting and verifying hold several hundred megabytes that Paddle's and ONNX Runtime's
    allocators would otherwise keep for the rest of the run (a 24 MP survey's first photo went over 2 GB).
    """
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        source = getattr(model, "source", None)
        if source and not getattr(model, "random_init", False):  # random weights cannot be rebuilt elsewhere
            _export_in_child(dict(source), tmp / "export", fmt, size, outputs, category)
        else:
            export_model(model, tmp / "export", fmt, size, overwrite=True, outputs=outputs, category=category)
        built = tmp / "export"
        meta_path = built / "segcam_export.json"
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        model_file = built / ("model.onnx" if fmt == "onnx" else "model.pdiparams")
        meta.update(cache_key=key, file_sha256=sha256_file(model_file))
        meta_path.write_text(json.dumps(meta, indent=2), encoding="utf-8")
        if folder.exists():  # the stale one (or one another process just built): ours replaces it
            shutil.rmtree(folder, ignore_errors=True)
        try:
            os.replace(built, folder)
        except OSError:
            if _valid(folder, key) is not None:  # another process's export took the name and is not usable
                raise ExportError(f"cannot write the export cache folder {folder}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
