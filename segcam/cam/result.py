"""Result objects of an explanation and their on-disk format."""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from segcam.cam.overlay import DEFAULT_CMAP, DEFAULT_OVERLAY_MODE, heatmap, overlay, resolve_alpha
from segcam.utils.files import safe_name, save_jpg, save_json, save_npz, save_png

__all__ = ["ARTIFACTS", "NORMALIZATIONS", "SCHEMA_VERSION", "UPSAMPLE", "Explanation", "ImageExplanation", "LayerMap",
           "build_manifest", "parse_artifacts", "read_map", "upsample_map", "versions"]

#: 2: overlays are JPEG, raw maps are ``.npz`` at the layer's resolution (1: ``.npy`` at input size, PNG overlays).
SCHEMA_VERSION = 2
#: What ``save`` can write; all by default. ``prediction`` is per image, the others per image and layer.
ARTIFACTS = ("overlay", "heatmap", "raw", "prediction")
#: How a stored raw map becomes the full-size map (recorded in every manifest; :func:`upsample_map` does it).
UPSAMPLE = "cv2.resize(raw, (width, height), interpolation=cv2.INTER_LINEAR) on float32"
NORMALIZATIONS = {
    "per_map": "each map divided by its own maximum (0 stays 0); raw un-normalised maps are in the .npy files",
    "shared": "all maps of an image divided by the largest value among them, so layers are comparable; "
              "raw un-normalised maps are in the .npy files",
}


def versions() -> dict[str, str]:
    """Versions recorded in every manifest."""
    import paddle

    from segcam.version import __version__

    out = {"segcam": __version__, "paddle": paddle.__version__, "python": platform.python_version(),
           "numpy": np.__version__}
    try:
        import paddleseg

        out["paddleseg"] = paddleseg.__version__
    except ImportError:
        pass
    return out


def parse_artifacts(spec: str | Sequence[str]) -> tuple[str, ...]:
    """``"overlay,raw"`` (or a sequence) -> the artifacts to save, in :data:`ARTIFACTS` order.

    Raises:
        ValueError: An unknown artifact name, or none at all.
    """
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    bad = [s for s in items if s not in ARTIFACTS]
    if bad or not items:
        raise ValueError(f"--save {','.join(items) or '(empty)'}: {'unknown ' + ', '.join(bad) if bad else 'nothing chosen'}; "
                         f"choose from {','.join(ARTIFACTS)}")
    return tuple(a for a in ARTIFACTS if a in items)


def upsample_map(raw: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The full-size map of a raw layer map: :data:`UPSAMPLE`, bit-identical to what the engine computes.

    Args:
        raw: h x w map as stored (float32).
        size: (height, width) of the input image.
    """
    import cv2

    raw = np.ascontiguousarray(raw, dtype=np.float32)
    h, w = int(size[0]), int(size[1])
    if raw.shape == (h, w):
        return raw
    return cv2.resize(raw, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32)


def read_map(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read a saved raw map (``.npz`` of schema 2, or a schema-1 ``.npy``) and, with ``size``, upsample it.

    Raises:
        ValueError: The file holds no ``raw`` array or object data (never unpickled).
    """
    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            if "raw" not in data:
                raise ValueError(f"{path} holds no 'raw' array; is it a segcam map?")
            raw = data["raw"]
    else:
        raw = np.load(path, allow_pickle=False)
    return upsample_map(raw, size) if size is not None else raw.astype(np.float32)


def build_manifest(meta: dict[str, Any], method: str, records: list[dict[str, Any]], cmap: str, alpha: float | None,
                   normalization: str, arguments: dict[str, Any] | None = None,
                   overlay_mode: str = DEFAULT_OVERLAY_MODE) -> dict[str, Any]:
    """The ``manifest.json`` content of a run (``meta`` as in :attr:`Explanation.meta`).

    Raises:
        ValueError: Unknown normalisation.
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {normalization!r}; use one of {', '.join(NORMALIZATIONS)}")
    return {"schema": "segcam.explain", "schema_version": SCHEMA_VERSION, "versions": versions(),
            "arguments": arguments or {}, "model": meta.get("model", {}), "method": method,
            "layers": meta.get("layers", []), "target": meta.get("target"), "category": meta.get("category"),
            "score": meta.get("score", {"name": "logit"}),
            "normalization": {"mode": normalization, "description": NORMALIZATIONS[normalization]},
            "raw_maps": {"stored": "float32 at the layer's resolution, key 'raw' of each .npz",
                         "full_size": UPSAMPLE},
            "cmap": cmap, "alpha": resolve_alpha(alpha, overlay_mode), "overlay_mode": overlay_mode, "images": records}


@dataclass(frozen=True)
class LayerMap:
    """One layer's map for one image.

    Attributes:
        layer: The name requested (may be an alias such as ``seg_head``).
        layer_name: The real dotted sublayer name.
        raw: Un-normalised map at the layer's resolution (h x w, float32).
        upsampled: ``raw`` resized bilinearly to the input (H x W, float32).
        normalized: ``upsampled / max(upsampled)`` in [0, 1]; all zero if the max is 0.
        raw_max: Maximum of ``upsampled`` (comparable across images and layers).
        empty_target: True when the target region was empty (the map is all zero).
        activations: The layer's activations (K x h x w float32) when asked for (``keep_activations``), else None.
        gradients: The gradients of the score with respect to them (K x h x w float32), likewise.
    """

    layer: str
    layer_name: str
    raw: np.ndarray
    upsampled: np.ndarray
    normalized: np.ndarray
    raw_max: float
    empty_target: bool = False
    activations: np.ndarray | None = None
    gradients: np.ndarray | None = None


def _safe(name: str) -> str:
    return safe_name(name)


@dataclass(frozen=True)
class ImageExplanation:
    """Everything explained about one image.

    Attributes:
        name: Image name used for output files (the file stem).
        image: H x W x 3 uint8 RGB input.
        prediction: H x W uint8 argmax class map.
        target_mask: H x W bool region whose logits were summed.
        target: Description of the target.
        category: Class explained.
        maps: Requested layer name -> :class:`LayerMap`.
        probability: H x W float32 softmax probability of ``category`` (None where not computed).
    """

    name: str
    image: np.ndarray
    prediction: np.ndarray
    target_mask: np.ndarray
    target: str
    category: int
    maps: dict[str, LayerMap] = field(default_factory=dict)
    probability: np.ndarray | None = None

    @property
    def empty_target(self) -> bool:
        """True when the target region has no pixel."""
        return not bool(self.target_mask.any())

    def normalized(self, layer: str, normalization: str = "per_map") -> np.ndarray:
        """A layer's map in [0, 1] under ``per_map`` or ``shared`` normalisation.

        Raises:
            ValueError: Unknown normalisation.
        """
        if normalization == "per_map":
            return self.maps[layer].normalized
        if normalization == "shared":
            top = max(m.raw_max for m in self.maps.values())
            up = self.maps[layer].upsampled
            return (up / top).astype(np.float32) if top > 0 else np.zeros_like(up)
        raise ValueError(f"unknown normalization {normalization!r}; use one of {', '.join(NORMALIZATIONS)}")

    def with_fused(self) -> ImageExplanation:
        """This result plus two fused maps of all its layers, ``fused_mean`` and ``fused_product``.

        ``fused_mean`` is the mean of the per-layer normalised maps (pytorch-grad-cam's multi-layer
        aggregation); ``fused_product`` their element-wise product, renormalised to [0, 1] (RefineCAM's
        fusion: only what every layer agrees on survives). Both are at input resolution.
        """
        import dataclasses

        units = [m.normalized for k, m in self.maps.items() if not k.startswith("fused_")]
        if not units:
            return self
        names = ", ".join(m.layer_name for k, m in self.maps.items() if not k.startswith("fused_"))
        maps = dict(self.maps)
        for key, fused in (("fused_mean", np.mean(units, axis=0)), ("fused_product", np.prod(units, axis=0))):
            fused = fused.astype(np.float32)
            top = float(fused.max())
            unit = fused / top if top > 0 else np.zeros_like(fused)
            maps[key] = LayerMap(key, f"{key.split('_')[1]} of {names}", fused, fused, unit.astype(np.float32), top,
                                 self.empty_target)
        return dataclasses.replace(self, maps=maps)

    def save(self, out_dir: str | Path, cmap: str = DEFAULT_CMAP, alpha: float | None = None,
             normalization: str = "per_map", artifacts: Sequence[str] = ARTIFACTS, *,
             overlay_mode: str = DEFAULT_OVERLAY_MODE) -> dict[str, Any]:
        """Write the chosen artifacts, each atomically (sizes: a 544x384 photo, one layer).

        ``overlay_mode`` is :func:`segcam.cam.overlay.overlay`'s ``mode`` (heat-weighted by default).

        * ``prediction``: ``<name>__prediction.png``, the predicted crack mask (0/255, about 5 KB).
        * ``overlay``: ``<name>__<layer>__overlay.jpg``, heatmap over the photo (JPEG, about 100 KB).
        * ``heatmap``: ``<name>__<layer>__heatmap.png``, the coloured map alone (PNG, about 100 KB).
        * ``raw``: ``<name>__<layer>.npz``, the un-normalised map as computed at the layer's resolution
          (float32, compressed, about 25 KB); :func:`read_map` with the image size gives the full-size map
          bit-identically to :attr:`LayerMap.upsampled` (:data:`UPSAMPLE`).

        Returns:
            The image's manifest record (file names relative to ``out_dir``).

        Raises:
            ValueError: An unknown artifact or normalisation.
        """
        artifacts = parse_artifacts(artifacts)
        out = Path(out_dir)
        stem = _safe(self.name)
        pred_file = None
        if "prediction" in artifacts:
            pred_file = f"{stem}__prediction.png"
            save_png(out / pred_file, (self.prediction > 0).astype(np.uint8) * 255)
        layers: dict[str, Any] = {}
        for key, m in self.maps.items():
            base = f"{stem}__{_safe(key)}"
            entry: dict[str, Any] = {"layer_name": m.layer_name, "raw_max": m.raw_max,
                                     "feature_shape": list(m.raw.shape)}
            if "raw" in artifacts:
                save_npz(out / f"{base}.npz", raw=np.ascontiguousarray(m.raw, dtype=np.float32))
                entry["raw"] = f"{base}.npz"
            if "heatmap" in artifacts or "overlay" in artifacts:
                unit = self.normalized(key, normalization)
                if "heatmap" in artifacts:
                    save_png(out / f"{base}__heatmap.png", heatmap(unit, cmap))
                    entry["heatmap"] = f"{base}__heatmap.png"
                if "overlay" in artifacts:
                    save_jpg(out / f"{base}__overlay.jpg", overlay(self.image, unit, cmap, alpha, mode=overlay_mode))
                    entry["overlay"] = f"{base}__overlay.jpg"
            layers[key] = entry
        return {"name": self.name, "width": int(self.image.shape[1]), "height": int(self.image.shape[0]),
                "target": self.target, "category": self.category,
                "target_pixels": int(self.target_mask.sum()), "empty_target": self.empty_target,
                "prediction": pred_file, "layers": layers}


@dataclass(frozen=True)
class Explanation:
    """The result of :func:`segcam.explain`: one :class:`ImageExplanation` per input image.

    Attributes:
        images: Per-image results, in input order.
        layers: Requested layer names.
        method: CAM method name.
        model: Model name.
        meta: Model, weights and target details for the manifest.
    """

    images: tuple[ImageExplanation, ...]
    layers: tuple[str, ...]
    method: str
    model: str
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> ImageExplanation:
        return self.images[i]

    def save(self, out_dir: str | Path, cmap: str = DEFAULT_CMAP, alpha: float | None = None,
             normalization: str = "per_map", artifacts: Sequence[str] = ARTIFACTS, *,
             overlay_mode: str = DEFAULT_OVERLAY_MODE) -> Path:
        """Write every image's files (:meth:`ImageExplanation.save`) and a versioned ``manifest.json``.

        Returns:
            The manifest path.
        """
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"unknown normalization {normalization!r}; use one of {', '.join(NORMALIZATIONS)}")
        records = [im.save(out_dir, cmap, alpha, normalization, artifacts, overlay_mode=overlay_mode)
                   for im in self.images]
        manifest = build_manifest(self.meta, self.method, records, cmap, alpha, normalization,
                                  overlay_mode=overlay_mode)
        return save_json(Path(out_dir) / "manifest.json", manifest)
