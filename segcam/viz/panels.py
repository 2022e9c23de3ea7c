"""Build figure rows from a ``segcam explain`` run or directly from models (``segcam figure``)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from segcam.cam.methods import display_name
from segcam.cam.result import SCHEMA_VERSION, read_map
from segcam.data.datasets import load_mask
from segcam.data.images import read_image
from segcam.viz.figures import FigureError, FigureRow

__all__ = ["record_image", "rows_from_manifest", "rows_from_models"]


def _find_mask(masks: str | Path | None, image: Path) -> np.ndarray | None:
    if masks is None:
        return None
    masks = Path(masks)
    if not masks.is_dir():
        raise FigureError(f"mask folder {masks} does not exist")
    for suffix in (".png", ".bmp", ".tif"):
        cand = masks / f"{image.stem}{suffix}"
        if cand.is_file():
            return load_mask(cand)
    raise FigureError(f"no ground-truth mask for {image.name} in {masks} (expected {image.stem}.png)")


def record_image(rec: dict[str, Any], folder: Path) -> Path | None:
    """The source photo of a manifest record, wherever the run was made from.

    Tried in order: ``image_relative`` against the manifest's folder, the recorded absolute path,
    and (older manifests) ``image`` relative to the manifest's folder. None if none exists.
    """
    cands = []
    if rec.get("image_relative"):
        cands.append(folder / rec["image_relative"])
    image = Path(rec["image"])
    cands += [image] if image.is_absolute() else [folder / image, image]
    return next((c for c in cands if c.is_file()), None)


def rows_from_manifest(manifest: str | Path, masks: str | Path | None = None, images: Sequence[str] | None = None,
                       layers: Sequence[str] | None = None) -> tuple[list[FigureRow], list[str], dict[str, Any]]:
    """Rows (one per successfully explained image) and layer titles from a run's ``manifest.json``.

    Args:
        manifest: Path of ``manifest.json`` (or its folder).
        masks: Optional folder of ground-truth masks named ``<image stem>.png``.
        images: Keep only these image names (stems), in this order.
        layers: Keep only these layers, in this order.

    Raises:
        FigureError: Missing files, another schema version, unknown image or layer names.
    """
    path = Path(manifest)
    if path.is_dir():
        path = path / "manifest.json"
    if not path.is_file():
        raise FigureError(f"manifest {path} does not exist; give the manifest.json of a segcam explain run")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise FigureError(f"manifest {path} is not valid JSON ({exc})") from exc
    if data.get("schema") != "segcam.explain" or data.get("schema_version") not in (1, SCHEMA_VERSION):
        raise FigureError(f"manifest {path} has schema {data.get('schema')!r} version {data.get('schema_version')!r}; "
                          f"this segcam reads segcam.explain versions 1-{SCHEMA_VERSION}: re-run segcam explain")
    folder = path.parent
    records = [r for r in data.get("images", []) if r.get("status", "ok") == "ok"]
    if images:
        by_name = {r["name"]: r for r in records}
        missing = [n for n in images if n not in by_name]
        if missing:
            raise FigureError(f"images {missing} are not in {path}; it has {sorted(by_name)}")
        records = [by_name[n] for n in images]
    if not records:
        raise FigureError(f"manifest {path} lists no successfully explained image")
    all_layers = list(records[0]["layers"])
    layers = list(layers) if layers else all_layers
    unknown = [lay for lay in layers if lay not in all_layers]
    if unknown:
        raise FigureError(f"layers {unknown} are not in {path}; it has {all_layers}")
    rows = []
    for rec in records:
        img_path = record_image(rec, folder)
        if img_path is None:
            raise FigureError(f"image {rec['image']} listed in {path} no longer exists (looked relative to the "
                              "manifest's folder and at the recorded path)")
        rgb = read_image(img_path, max_side=8192)
        if rgb.shape[:2] != (rec["height"], rec["width"]):  # the run downscaled it
            rgb = np.asarray(Image.fromarray(rgb).resize((rec["width"], rec["height"]), Image.BILINEAR))
        maps = []
        for lay in layers:
            entry = rec["layers"][lay]
            stored = entry.get("raw") or entry.get("npy")  # schema 2 / schema 1
            if stored is None:
                raise FigureError(f"{path} has no raw map of layer {lay} (the run was saved without 'raw'); "
                                  "rerun segcam explain with --save including raw")
            npy = folder / stored
            if not npy.is_file():
                raise FigureError(f"map file {npy} listed in {path} is missing")
            maps.append(read_map(npy, (rec["height"], rec["width"])))
        pred_file = folder / rec["prediction"]
        pred = np.asarray(Image.open(pred_file)) > 0 if pred_file.is_file() else None
        rows.append(FigureRow(rec["name"], rgb, maps, _find_mask(masks, img_path), pred,
                              [bool(rec.get("empty_target"))] * len(maps)))
    return rows, layers, data


def rows_from_models(models: Sequence[Any], images: Sequence[str | Path], layers: Sequence[str],
                     methods: Sequence[str], sweep: str, masks: str | Path | None = None,
                     target: Any = None) -> tuple[list[FigureRow], list[str]]:
    """Compute maps for a sweep over layers, models or methods (the other two hold one item each).

    Raises:
        FigureError: A sweep that is not ``layer``, ``model`` or ``method``, or several items on a fixed axis.
    """
    from segcam.cam.engine import explain

    counts = {"layer": len(layers), "model": len(models), "method": len(methods)}
    if sweep not in counts:
        raise FigureError(f"sweep must be layer, model or method, got {sweep!r}")
    fixed = [k for k, n in counts.items() if k != sweep and n != 1]
    if fixed:
        raise FigureError(f"sweeping {sweep}s needs exactly one {' and one '.join(fixed)}; got {counts}")
    rows = []
    for img in images:
        img = Path(img)
        rgb = read_image(img)
        maps, titles, pred, empty = [], [], None, []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if sweep == "layer":
                res = explain(models[0], rgb, list(layers), target, methods[0])[0]
                maps = [res.maps[lay].upsampled for lay in layers]
                titles, pred, empty = list(layers), res.prediction, [res.empty_target] * len(layers)
            else:
                for model in models:
                    for method in methods:
                        res = explain(model, rgb, layers[0], target, method)[0]
                        maps.append(res.maps[layers[0]].upsampled)
                        empty.append(res.empty_target)
                        titles.append(model.name if sweep == "model" else display_name(method))
                        pred = res.prediction if pred is None else pred
        rows.append(FigureRow(img.stem, rgb, maps, _find_mask(masks, img), pred if sweep != "model" else None, empty))
    return rows, titles
