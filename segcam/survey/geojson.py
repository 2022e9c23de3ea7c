"""``cracks.geojson``: every crack of a run as geometry that CAD and GIS tools load.

One GeoJSON ``Feature`` per crack (RFC 7946 structure). Its geometry is a ``GeometryCollection`` of

* the **centre line**: the crack's pruned skeleton (:func:`segcam.survey.cracks.skeleton_length`) traced into
  paths between ends and junctions, a ``LineString`` (one path) or a ``MultiLineString``, through pixel
  centres, simplified within :data:`SIMPLIFY_PX`;
* the **outline**: the union of the crack's pixels, a ``Polygon`` (a ``MultiPolygon`` where parts of a crack touch
  only at a pixel corner, as 8-connected cracks can), along pixel edges.

Coordinates are the photo's pixel coordinates: x to the right, y **down**, (0, 0) the top-left corner of the
top-left pixel, pixel ``(col, row)`` covering ``[col, col + 1] x [row, row + 1]``. With a pixel size they are
millimetres on the same axes (pixel coordinates x the size). Each photo has its own frame, so ``properties.name``
says which photo a crack is on. These are not longitudes and latitudes: load the file into a local
(engineering) coordinate system; in a GIS, flip y to draw photos upright.

``properties`` is the crack's ``cracks.csv`` row plus its ``verdict`` (``confirmed``, ``rejected`` or
``unreviewed``) and ``units`` (``px`` or ``mm``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["SIMPLIFY_PX", "crack_geometry", "write_geojson"]

#: Tolerance of the centre line's simplification, in pixels (a pixel chain has a point every pixel).
SIMPLIFY_PX = 0.5
#: Decimals of the coordinates written (pixels: centre lines at half pixels; millimetres: 1e-4 mm).
COORD_DECIMALS = 4


def _outline(component: np.ndarray) -> Any:
    """The union of a component's pixels (row runs as boxes: exact pixel edges, far fewer shapes than pixels)."""
    import shapely

    d = np.diff(np.pad(np.asarray(component, np.int8), ((0, 0), (1, 1))), axis=1)
    ys, starts = np.nonzero(d == 1)
    _, stops = np.nonzero(d == -1)  # row-major order: the n-th stop ends the n-th run
    boxes = shapely.box(starts, ys, stops, ys + 1)
    return shapely.union_all(boxes).simplify(0)  # drops the collinear corners the row runs leave


def _centre_line(component: np.ndarray, length: float, orientation: float) -> Any:
    from shapely.geometry import LineString, MultiLineString

    from segcam.survey.cracks import skeleton_length, skeleton_paths

    _, sk = skeleton_length(component)
    paths = [p + 0.5 for p in skeleton_paths(sk)] if sk.any() else []
    lines = [LineString(p).simplify(SIMPLIFY_PX) for p in paths if len(p) >= 2]
    if not lines:  # a blob measured by its extent: a segment of its length through its centre, along its axis
        ys, xs = np.nonzero(component)
        cx, cy = xs.mean() + 0.5, ys.mean() + 0.5
        t = np.deg2rad(orientation)
        dx, dy = 0.5 * max(length, 1.0) * np.cos(t), -0.5 * max(length, 1.0) * np.sin(t)  # y down: anticlockwise is -y
        return LineString([(cx - dx, cy - dy), (cx + dx, cy + dy)])
    return lines[0] if len(lines) == 1 else MultiLineString(lines)


def crack_geometry(labels: np.ndarray, crack: int, box: Sequence[int], length: float = 1.0,
                   orientation: float = 0.0, scale: float = 1.0) -> dict[str, Any]:
    """The GeoJSON geometry (centre line and outline) of crack ``crack`` of a label image.

    Args:
        labels: The photo's crack labels (0 background, ids as ``cracks.csv``'s ``crack``).
        crack: The crack id.
        box: Its ``x0, y0, x1, y1`` (pixels, x1/y1 exclusive), where the work is done.
        length: Its measured length (px), for blobs without a centre line.
        orientation: Its orientation (degrees), likewise.
        scale: Units per pixel (1 for pixels, the pixel size for millimetres).

    Raises:
        ValueError: The crack has no pixel in its box (labels and records disagree).
    """
    from shapely import affinity
    from shapely.geometry import GeometryCollection, mapping

    x0, y0, x1, y1 = (int(v) for v in box)
    comp = labels[y0:y1, x0:x1] == crack
    if not comp.any():
        raise ValueError(f"crack {crack} has no pixel in its box {x0},{y0},{x1},{y1}")
    parts = [_centre_line(comp, length, orientation), _outline(comp)]
    parts = [affinity.affine_transform(g, [scale, 0, 0, scale, x0 * scale, y0 * scale]) for g in parts]
    return _rounded(mapping(GeometryCollection(parts)), COORD_DECIMALS)


def _rounded(obj: Any, nd: int) -> Any:
    """GeoJSON coordinates rounded (``0.1 * 123`` is 12.3, not 12.300000000000001)."""
    if isinstance(obj, dict):
        return {k: _rounded(v, nd) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_rounded(v, nd) for v in obj]
    return round(obj, nd) if isinstance(obj, float) else obj


def _number(v: Any) -> Any:
    """A CSV cell as a JSON number where it is one (finite), else the text."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return v
    if not np.isfinite(f):
        return None
    return int(f) if f.is_integer() and "." not in str(v) else f


def write_geojson(labels_of: Callable[[str], np.ndarray | None], rows: Sequence[dict[str, Any]], out: str | Path,
                  pixel_size: Callable[[dict[str, Any]], float | None] = lambda r: None,
                  warn: Callable[[str], None] = lambda m: None) -> Path:
    """Write ``cracks.geojson`` for the rows of a run.

    Args:
        labels_of: A photo's crack labels by its name (called once per photo, rows of a photo being together),
            or None when the run has none.
        rows: Crack rows (``cracks.csv`` columns, ``verdict``), each with its ``name`` and ``crack``.
        out: The file to write (temporary file, then rename).
        pixel_size: A row's millimetres per pixel, or None (pixel coordinates).
        warn: Called once per photo whose labels are missing (its cracks are left out).
    """
    from segcam.utils.files import atomic_write

    features, name, labels = [], None, None
    order = {n: i for i, n in reversed(list(enumerate(r["name"] for r in rows)))}
    for r in sorted(rows, key=lambda r: order[r["name"]]):  # one photo's labels in memory at a time
        if r["name"] != name:
            name, labels = r["name"], labels_of(r["name"])
            if labels is None:
                warn(f"{name}: its crack file holds no crack labels; its cracks are not in cracks.geojson")
        if labels is None:
            continue
        size = pixel_size(r)
        geom = crack_geometry(labels, int(r["crack"]), (r["x0"], r["y0"], r["x1"], r["y1"]),
                              float(r.get("length") or 1.0), float(r.get("orientation") or 0.0), size or 1.0)
        props = {k: _number(v) for k, v in r.items() if k != "kind" and not k.startswith("_")}  # _: report-internal
        props["units"] = "mm" if size else "px"
        features.append({"type": "Feature", "id": f"{r['name']}#{r['crack']}", "geometry": geom, "properties": props})
    doc = {"type": "FeatureCollection", "features": features}
    text = json.dumps(doc, allow_nan=False)
    return atomic_write(out, lambda p: p.write_text(text, encoding="utf-8"))
