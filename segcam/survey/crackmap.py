"""Crack maps and width classes: what an inspection report shows per photo and per crack.

**Width classes.** A crack is classed by its maximum width in millimetres (``max_width_mm``: inspection practice
reads a crack's widest point with a crack gauge). The default class edges :data:`WIDTH_CLASSES_MM`,
0.1 / 0.2 / 0.3 / 0.4 mm, follow the limits inspectors work to: "hairline" is commonly under 0.1 mm; ACI 224R-01
(Table 4.1) tolerates about 0.10 mm (water-retaining structures), 0.15 mm (seawater, wetting and drying),
0.18 mm (de-icing chemicals), 0.30 mm (humid air, soil) and 0.41 mm (dry air); Eurocode 2 (EN 1992-1-1, Table
7.1N) limits design crack widths to 0.3 mm in most exposure classes and 0.4 mm in the driest. Other edges:
``segcam report --width-classes``. A width in millimetres needs a pixel size (``--pixel-size``); without one,
cracks are not classed.

**Crack map.** The photo downsized (at most :data:`MAP_SIDE` pixels a side), each crack outlined at full
resolution and drawn scaled, numbered with its ``cracks.csv`` id and coloured by :data:`VERDICT_COLOURS`;
unreviewed cracks are coloured by their review score (yellow: likely a crack, magenta: check first). The photo is
read only while it is the file the run surveyed (its size and modification time match the run's record);
otherwise the prediction mask the run saved stands in for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["MAP_SIDE", "VERDICT_COLOURS", "WIDTH_CLASSES_MM", "class_labels", "crack_colour", "crack_map",
           "parse_width_classes", "width_class"]

#: Default class edges of the maximum crack width, in mm (module docstring: hairline, ACI 224R, Eurocode 2).
WIDTH_CLASSES_MM: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4)
#: Longest side of a crack map, in pixels.
MAP_SIDE = 640
#: Outline colours (RGB) of confirmed and rejected cracks.
VERDICT_COLOURS = {"confirmed": (0, 200, 83), "rejected": (120, 144, 156)}


def parse_width_classes(text: str) -> tuple[float, ...]:
    """``"0.1,0.2,0.3,1.0"`` -> class edges in mm (increasing, positive).

    Raises:
        ValueError: Not comma-separated positive increasing numbers.
    """
    try:
        edges = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise ValueError(f"--width-classes {text!r}: expected comma-separated widths in mm such as 0.1,0.2,0.3,0.4") from None
    if not edges or any(e <= 0 or not np.isfinite(e) for e in edges) or list(edges) != sorted(set(edges)):
        raise ValueError(f"--width-classes {text!r}: the edges must be positive and increasing, such as 0.1,0.2,0.3,0.4")
    return edges


def class_labels(edges: Sequence[float]) -> list[str]:
    """The names of the classes the edges make: ``< 0.1``, ``0.1-0.2``, ..., ``>= 0.4`` (mm)."""
    fmt = "{:g}".format
    return ([f"< {fmt(edges[0])}"] + [f"{fmt(a)}-{fmt(b)}" for a, b in zip(edges, edges[1:])]
            + [f">= {fmt(edges[-1])}"])


def width_class(width_mm: Any, edges: Sequence[float]) -> str:
    """The class name of a maximum width in mm, or ``""`` without one."""
    try:
        w = float(width_mm)
    except (TypeError, ValueError):
        return ""
    if not np.isfinite(w):
        return ""
    return class_labels(edges)[int(np.searchsorted(np.asarray(edges), w, side="right"))]


def crack_colour(verdict: str, score: Any) -> tuple[int, int, int]:
    """A crack's outline colour: by verdict, else by review score (0 yellow ... 1 magenta)."""
    if verdict in VERDICT_COLOURS:
        return VERDICT_COLOURS[verdict]
    try:
        t = float(np.clip(float(score), 0.0, 1.0))
    except (TypeError, ValueError):
        t = 0.5
    return 255, int(214 * (1 - t)), int(255 * t)


def _background(photo: str | Path | None, identity: str | None, prediction: Path | None, shape: tuple[int, int],
                side: int) -> tuple[np.ndarray, str]:
    """The downsized background of a map and what it is (``photo`` or ``prediction``)."""
    import cv2

    from segcam.data.images import source_identity

    h, w = shape
    scale = min(1.0, side / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if photo and identity and source_identity(photo) == identity:
        # JPEG decoding at 1/2, 1/4 or 1/8 scale: a 24 MP photo reads in a tenth of the time
        flag = next((flag for f, flag in ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
                                          (2, cv2.IMREAD_REDUCED_COLOR_2)) if max(h, w) / f >= side), cv2.IMREAD_COLOR)
        img = cv2.imread(str(photo), flag)
        if img is not None:
            return cv2.cvtColor(cv2.resize(img, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB), "photo"
    grey = np.full((size[1], size[0], 3), 40, np.uint8)
    if prediction is not None and prediction.is_file():
        pred = cv2.imread(str(prediction), cv2.IMREAD_GRAYSCALE)
        if pred is not None and pred.shape == (h, w):
            grey[cv2.resize(pred, size, interpolation=cv2.INTER_AREA) > 0] = 110
    return grey, "prediction"


def crack_map(labels: np.ndarray, rows: Sequence[dict[str, Any]], photo: str | Path | None = None,
              identity: str | None = None, prediction: Path | None = None, side: int = MAP_SIDE) -> tuple[np.ndarray, str]:
    """A photo's crack map (module docstring) and what its background is (``photo`` or ``prediction``).

    Args:
        labels: The photo's crack labels (ids as in ``rows``).
        rows: Its cracks: ``crack``, ``x0``..``y1``, ``verdict`` and ``review_score``.
        photo: The surveyed photo's path (as the manifest records it).
        identity: Its recorded source identity (the photo is used only while it still has it).
        prediction: The run's prediction mask of the photo (the background otherwise).
        side: Longest side of the map.
    """
    import cv2

    h, w = labels.shape
    img, kind = _background(photo, identity, prediction, (h, w), side)
    scale = img.shape[1] / w
    thick = max(1, round(img.shape[1] / 360))
    for r in rows:
        x0, y0, x1, y1, k = (int(r[c]) for c in ("x0", "y0", "x1", "y1", "crack"))
        comp = (labels[y0:y1, x0:x1] == k).astype(np.uint8)
        contours, _ = cv2.findContours(comp, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        colour = crack_colour(str(r.get("verdict", "")), r.get("review_score"))
        pts = [np.round((c[:, 0, :] + (x0, y0) + 0.5) * scale - 0.5).astype(np.int32) for c in contours]
        cv2.polylines(img, pts, True, colour, thick, cv2.LINE_AA)
        _number(img, str(k), (int(x0 * scale), int(y0 * scale)), colour)
    return img, kind


def _number(img: np.ndarray, text: str, at: tuple[int, int], colour: tuple[int, int, int]) -> None:
    import cv2

    font, size = cv2.FONT_HERSHEY_SIMPLEX, max(0.45, img.shape[1] / 1000)
    (tw, th), base = cv2.getTextSize(text, font, size, 1)
    x = int(np.clip(at[0], 0, max(0, img.shape[1] - tw - 4)))
    y = int(np.clip(at[1], th + 4, img.shape[0] - 2))
    cv2.rectangle(img, (x, y - th - 4), (x + tw + 4, y + base - 2), (0, 0, 0), -1)
    cv2.putText(img, text, (x + 2, y - 2), font, size, colour, 1, cv2.LINE_AA)
