"""Streamlit-free logic of the segcam app, so it is unit-tested and timed without a browser.

The app computes the maps of *all* selected layers for the current image and target in one pass
(:func:`compute`) and renders views from that cache (:func:`render`): changing the shown layer,
alpha, colormap or normalisation never recomputes.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from segcam.engine import explain
from segcam.layers import list_layers
from segcam.overlay import heatmap, overlay
from segcam.result import ImageExplanation
from segcam.targets import Target

__all__ = ["AppModel", "Views", "compute", "example_images", "layer_choices", "load_model", "load_run", "png_bytes",
           "render", "npy_bytes", "image_key"]

#: Largest image side the app computes on; larger uploads are downscaled with a notice.
APP_MAX_SIDE = 1024


@dataclass
class AppModel:
    """A model shared by every session, with the lock that serialises hook use on it."""

    model: Any
    lock: threading.Lock
    key: str


def load_model(name: str | None = None, weights: str | None = None, config: str | None = None) -> AppModel:
    """Build a zoo model (``name``) or a PaddleSeg YAML (``config`` + ``weights``) for the app.

    Raises:
        KeyError, FileNotFoundError, ValueError, segcam.weights.WeightsError: As the loaders do.
    """
    import warnings

    from segcam.zoo import create_model, load_paddleseg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if config:
            model = load_paddleseg(config, weights or None)
        else:
            model = create_model(name or "hrsegnet_b48", weights=weights or None)
    return AppModel(model, threading.Lock(), f"{name}|{weights}|{config}")


def layer_choices(model: Any) -> list[str]:
    """Aliases first (``seg_head``...), then every single-tensor 4-D layer in network order."""
    aliases = list(getattr(model, "aliases", {}))
    rows = list_layers(model, (64, 64))
    names = [r.name for r in rows if r.shape is not None and len(r.shape) == 4]
    return aliases + [n for n in names if n not in aliases]


def image_key(rgb: np.ndarray) -> str:
    """Content hash of an image (cache key)."""
    return hashlib.sha1(np.ascontiguousarray(rgb).tobytes() + str(rgb.shape).encode()).hexdigest()


def compute(app_model: AppModel, rgb: np.ndarray, layers: Sequence[str], target: Target, method: str) -> ImageExplanation:
    """All requested layers' maps for one image and target, in one pass, under the model's lock."""
    with app_model.lock:
        return explain(app_model.model, rgb, list(layers), target, method)[0]


@dataclass(frozen=True)
class Views:
    """Ready-to-show uint8 RGB arrays for one layer."""

    image: np.ndarray
    prediction: np.ndarray
    heatmap: np.ndarray
    overlay: np.ndarray
    target: np.ndarray


def render(res: ImageExplanation, layer: str, cmap: str = "inferno", alpha: float = 0.5,
           normalization: str = "per_map") -> Views:
    """Views of one layer from a computed result (no model call)."""
    unit = res.normalized(layer, normalization)
    pred = np.repeat(((res.prediction == res.category) * 255).astype(np.uint8)[..., None], 3, axis=2)
    tgt = res.image.copy()
    tgt[res.target_mask] = (0.4 * tgt[res.target_mask] + 0.6 * np.array([0, 200, 255])).astype(np.uint8)
    return Views(res.image, pred, heatmap(unit, cmap), overlay(res.image, unit, cmap, alpha), tgt)


def png_bytes(rgb: np.ndarray) -> bytes:
    """PNG encoding for downloads."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def npy_bytes(arr: np.ndarray) -> bytes:
    """``.npy`` encoding for downloads."""
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def example_images() -> list[Path]:
    """The bundled example photos (``examples/images`` of a source checkout)."""
    folder = Path(__file__).resolve().parents[1] / "examples" / "images"
    return sorted(folder.glob("*.jpg")) + sorted(folder.glob("*.png")) if folder.is_dir() else []


def load_run(folder: str | Path) -> dict[str, Any]:
    """Read a ``segcam explain`` run folder's manifest (for browsing without recomputing).

    Raises:
        FileNotFoundError: No manifest.json there.
        ValueError: Not a segcam explain manifest of a supported version.
    """
    from segcam.result import SCHEMA_VERSION

    path = Path(folder) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder} holds no manifest.json; give the --out folder of a segcam explain run")
    data = json.loads(path.read_text())
    if data.get("schema") != "segcam.explain" or data.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{path} is not a segcam explain manifest of schema version {SCHEMA_VERSION}")
    data["folder"] = str(Path(folder))
    return data
