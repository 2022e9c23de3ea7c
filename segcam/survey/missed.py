"""Cracks the network missed, marked by a reviewer: polylines with a width, saved with the verdicts.

A mark is a ``missed`` event in the run's verdict journal (:mod:`segcam.survey.verdicts`: appended in one write,
never lost): the photo's name and source identity, the points along the crack (pixel coordinates, x right, y
down) and its width in pixels. ``unmark`` takes one back. A mark on a photo that a rerun changed no longer
applies (counted as stale). Marks come from the app's review mode or from a GeoJSON file
(``segcam review RUN --import-missed FILE``: LineString / MultiLineString features in pixel coordinates, as
``cracks.geojson`` writes them, each with ``properties.name`` and optionally ``properties.width``).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from segcam.survey.verdicts import MAX_TEXT, VerdictError, append_events, read_events, source_ids

__all__ = ["DEFAULT_WIDTH_PX", "MissedMark", "import_missed", "load_missed", "mark_missed", "rasterise", "unmark_missed"]

#: Width of a mark given without one, in pixels (DeepCrack's median crack is about 3 px wide).
DEFAULT_WIDTH_PX = 3.0
#: Most points kept per mark.
MAX_POINTS = 10_000


@dataclass(frozen=True)
class MissedMark:
    """One missed crack: a polyline with a width on a photo."""

    id: str
    name: str
    points: tuple[tuple[float, float], ...]
    width: float
    time: str = ""
    reviewer: str = ""


def _photos(folder: Path) -> dict[str, tuple[int, int, str]]:
    """Each surveyed photo's width, height and source identity, from one read of the run's manifest."""
    try:
        man = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(r["name"]): (int(r.get("width", 0)), int(r.get("height", 0)), str(r.get("source_id", "")))
            for r in man.get("images", []) if isinstance(r, dict) and "name" in r and r.get("status", "ok") == "ok"}


def _check(name: str, points: Sequence[Sequence[float]], width: float,
           photos: dict[str, tuple[int, int, str]]) -> tuple[tuple[tuple[float, float], ...], float]:
    if name not in photos:
        raise VerdictError(f"photo {name!r} is not a photo of this run (names are cracks.csv's name column)")
    w, h, _ = photos[name]
    try:
        pts = tuple((float(x), float(y)) for x, y in points)
        width = float(width)
    except (TypeError, ValueError):
        raise VerdictError(f"a mark on {name!r} needs points as (x, y) number pairs and a width in pixels") from None
    if not 2 <= len(pts) <= MAX_POINTS:
        raise VerdictError(f"a mark on {name!r} needs 2 to {MAX_POINTS} points, got {len(pts)}")
    if not all(np.isfinite(v) for p in pts for v in p) or not (0 < width <= 200):
        raise VerdictError(f"a mark on {name!r}: points must be finite and the width in (0, 200] px, got {width}")
    if w and h and not all(0 <= x <= w and 0 <= y <= h for x, y in pts):
        raise VerdictError(f"a mark on {name!r} leaves the photo ({w}x{h} px); coordinates are pixels, x right, y down")
    return pts, width


def _event(name: str, pts: Sequence[tuple[float, float]], width: float, source_id: str, reviewer: str,
           **extra: Any) -> dict[str, Any]:
    return {"verdict": "missed", "id": uuid.uuid4().hex, "name": name, "points": [list(p) for p in pts],
            "width": width, "source_id": source_id, "reviewer": str(reviewer)[:MAX_TEXT],
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra}


def mark_missed(folder: str | Path, name: str, points: Sequence[Sequence[float]], width: float = DEFAULT_WIDTH_PX,
                reviewer: str = "") -> MissedMark:
    """Save a missed crack on photo ``name`` (points in pixels along it, its width in pixels); returns the mark.

    Raises:
        VerdictError: An unknown photo, fewer than two points, points outside the photo or a bad width.
    """
    folder = Path(folder)
    photos = _photos(folder)
    pts, width = _check(name, points, width, photos)
    ev = _event(name, pts, width, photos[name][2], reviewer)
    append_events(folder, [ev])
    return MissedMark(ev["id"], name, pts, width, ev["time"], ev["reviewer"])


def unmark_missed(folder: str | Path, mark_id: str) -> None:
    """Take back a missed-crack mark (by its id)."""
    append_events(Path(folder), [{"verdict": "unmark", "id": str(mark_id), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}])


def load_missed(folder: str | Path) -> tuple[list[MissedMark], int]:
    """The marks that apply now (in the order they were made), and how many no longer do (their photo changed)."""
    folder = Path(folder)
    events, _ = read_events(folder)
    removed = {str(e.get("id")) for e in events if e.get("verdict") == "unmark"}
    sources = source_ids(folder)
    marks, stale = [], 0
    for e in events:
        if e.get("verdict") != "missed" or str(e.get("id")) in removed:
            continue
        try:
            mark = MissedMark(str(e["id"]), str(e["name"]), tuple((float(x), float(y)) for x, y in e["points"]),
                              float(e["width"]), str(e.get("time", "")), str(e.get("reviewer", "")))
        except (KeyError, TypeError, ValueError):
            continue
        if sources.get(mark.name) != e.get("source_id"):
            stale += 1
            continue
        marks.append(mark)
    return marks, stale


def import_missed(folder: str | Path, path: str | Path, reviewer: str = "") -> int:
    """Add the missed cracks of a GeoJSON file (see the module docstring) as one batch; returns how many.

    Every feature is checked first; any problem is an error naming the feature, and then nothing is added.

    Raises:
        VerdictError: Not GeoJSON, a feature without a (Multi)LineString or a ``name`` of this run, bad points.
    """
    import shapely.geometry

    folder, path = Path(folder), Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8-sig"))
        features = doc["features"] if doc.get("type") == "FeatureCollection" else [doc]
    except (OSError, ValueError, AttributeError, KeyError, TypeError) as exc:
        raise VerdictError(f"{path} is not a GeoJSON FeatureCollection ({exc})") from None
    photos, events, errors = _photos(folder), [], []
    batch = uuid.uuid4().hex
    for i, feat in enumerate(features, 1):
        try:
            props = feat.get("properties") or {}
            geom = shapely.geometry.shape(feat["geometry"])
            lines = list(geom.geoms) if geom.geom_type == "MultiLineString" else [geom]
            if any(g.geom_type != "LineString" for g in lines):
                raise VerdictError(f"a {geom.geom_type}, not a LineString or MultiLineString")
            for line in lines:
                name = str(props.get("name", ""))
                pts, width = _check(name, [c[:2] for c in line.coords], props.get("width", DEFAULT_WIDTH_PX), photos)
                events.append(_event(name, pts, width, photos[name][2], reviewer, batch=batch, via="import"))
        except VerdictError as exc:
            errors.append(f"feature {i}: {exc}")
        except (KeyError, TypeError, ValueError, AttributeError, shapely.errors.GEOSException) as exc:
            errors.append(f"feature {i}: not a GeoJSON feature with a geometry ({type(exc).__name__}: {exc})")
    if errors:
        more = f" (and {len(errors) - 10} more)" if len(errors) > 10 else ""
        raise VerdictError(f"{path}: nothing imported; fix these features:\n  " + "\n  ".join(errors[:10]) + more)
    if events:
        append_events(folder, [*events, {"batch_end": batch, "count": len(events)}])
    return len(events)


def rasterise(marks: Sequence[MissedMark], shape: tuple[int, int]) -> np.ndarray:
    """The marks as a boolean mask of ``shape``.

    A mark covers the pixels whose centre lies within ``(width - 1) / 2`` of its polyline (odd widths exactly that
    many pixels across; round ends). Work is done in each mark's box.
    """
    import cv2

    out = np.zeros(shape, bool)
    h, w = shape
    for m in marks:
        pts = np.asarray(m.points, np.float64) - 0.5  # pixel (col, row) has its centre at (col + 0.5, row + 0.5)
        r = (m.width - 1) / 2
        x0, y0 = (np.floor(pts.min(0) - r - 1).astype(int)).clip(0)
        x1, y1 = np.ceil(pts.max(0) + r + 2).astype(int)
        x1, y1 = min(x1, w), min(y1, h)
        if x1 <= x0 or y1 <= y0:
            continue
        line = np.full((y1 - y0, x1 - x0), 255, np.uint8)
        sub = np.round((pts - (x0, y0)) * 16).astype(np.int32)  # 4 fractional bits: sub-pixel points
        cv2.polylines(line, [sub], False, 0, 1, cv2.LINE_8, shift=4)
        dist = cv2.distanceTransform(line, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        out[y0:y1, x0:x1] |= dist <= r + 1e-6
    return out
