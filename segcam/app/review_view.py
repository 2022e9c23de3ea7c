"""Streamlit-free pictures of one crack for the app's review mode (tested without a browser).

For a crack of a run: its window (the crack's box grown by the thumbnails' margin) as a large crop, the same
crop with the predicted crack outlined, the crack's own evidence map over it, and the photo (or the run's
prediction mask) downsized with the crack's box for context. The surveyed photo is read only when it lies inside
a folder the app may read (``segcam app --photos-root``) and is still the file the run read (size and
modification time); otherwise the run's own thumbnails and prediction stand in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["CrackViews", "VIEW_PX", "crack_views", "marking_view", "photo_roots", "readable_photo"]

#: The crop's long side is brought up to at least this many pixels (thin cracks are a few pixels wide).
VIEW_PX = 384
#: Longest side of the context picture.
CONTEXT_PX = 640
#: Environment variable that ``segcam app`` sets from ``--photos-root``.
ENV_PHOTOS_ROOTS = "SEGCAM_APP_PHOTOS_ROOTS"


@dataclass(frozen=True)
class CrackViews:
    """The review mode's pictures of one crack (RGB uint8 arrays) and where the crop came from."""

    crop: np.ndarray
    outline: np.ndarray
    evidence: np.ndarray
    context: np.ndarray
    source: str  # "photo" or "thumbnails"


def photo_roots() -> list[Path]:
    """Folders the review mode may read surveyed photos from (``$SEGCAM_APP_PHOTOS_ROOTS``, else the runs root)."""
    import os

    from segcam.app.core import runs_root

    env = os.environ.get(ENV_PHOTOS_ROOTS)
    if env:
        return [Path(p).resolve() for p in env.split(os.pathsep) if p]
    root = runs_root()
    return [root] if root is not None else []


def readable_photo(record: dict[str, Any], roots: Sequence[Path]) -> Path | None:
    """The surveyed photo of a manifest record, when it is inside ``roots`` and unchanged since the run."""
    from segcam.app.core import inside
    from segcam.data.images import source_identity

    image = record.get("image")
    if not isinstance(image, str) or not image:
        return None
    for root in roots:
        try:
            path = inside(root, Path(image))
        except ValueError:
            continue
        if path.is_file() and source_identity(path) == record.get("source_id"):
            return path
    return None


def _window(box: Sequence[int], shape: tuple[int, int]) -> tuple[int, int, int, int]:
    from segcam.survey.cracks import THUMB_PAD

    x0, y0, x1, y1 = (int(v) for v in box)
    h, w = shape
    return max(0, x0 - THUMB_PAD), max(0, y0 - THUMB_PAD), min(w, x1 + THUMB_PAD), min(h, y1 + THUMB_PAD)


def crack_views(run_dir: str | Path, record: dict[str, Any], crack: int, box: Sequence[int],
                roots: Sequence[Path] = (), photo: np.ndarray | None = None) -> CrackViews:
    """The pictures of crack ``crack`` (its ``cracks.csv`` id and box) of the photo a manifest ``record`` describes.

    Args:
        run_dir: The run folder (the crack file and prediction are read only from inside it).
        record: The photo's manifest record (``crack_file``, ``prediction``, ``image``, ``source_id``).
        crack: The crack id.
        box: Its ``x0, y0, x1, y1``.
        roots: Folders the photo may be read from.
        photo: The photo already read (RGB), to skip reading it again.

    Raises:
        ValueError: A crack file outside the run, damaged, or without this crack.
    """
    import cv2

    from segcam.app.core import inside
    from segcam.cam.overlay import overlay
    from segcam.survey.cracks import read_crack_features, read_crack_thumb

    run_dir = Path(run_dir)
    path = inside(run_dir, str(record.get("crack_file") or ""))
    data = read_crack_features(path, with_labels=True)
    ids = [int(i) for i in data["crack"]]
    if crack not in ids or data["labels"] is None:
        raise ValueError(f"{path.name} holds no crack {crack}; the run changed since this page was drawn: reload")
    labels = data["labels"]
    x0, y0, x1, y1 = _window(box, labels.shape)
    comp = (labels[y0:y1, x0:x1] == crack).astype(np.uint8)
    thumb = read_crack_thumb(path, ids.index(crack) + 1)
    source = "thumbnails"
    if photo is None:
        found = readable_photo(record, roots)
        if found is not None:
            from segcam.data.images import read_image
            from segcam.survey.batch import TILED_MAX_SIDE

            photo = read_image(found, max_side=TILED_MAX_SIDE)
    if photo is not None and photo.shape[:2] == labels.shape:
        crop, source = np.ascontiguousarray(photo[y0:y1, x0:x1]), "photo"
    else:
        crop = cv2.resize(thumb["photo"], (x1 - x0, y1 - y0), interpolation=cv2.INTER_CUBIC)
    scale = max(1, int(np.ceil(VIEW_PX / max(x1 - x0, y1 - y0))))
    size = ((x1 - x0) * scale, (y1 - y0) * scale)
    crop = cv2.resize(crop, size, interpolation=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA)
    big = cv2.resize(comp, size, interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    outline = cv2.polylines(crop.copy(), contours, True, (0, 255, 255), max(1, scale // 2 + 1), cv2.LINE_AA)
    heat = cv2.resize(thumb["map"], size, interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0
    evidence = overlay(crop, heat, "inferno")
    context = _context(run_dir, record, labels.shape, (x0, y0, x1, y1), photo)
    return CrackViews(crop, outline, evidence, context, source)


def _context(run_dir: Path, record: dict[str, Any], shape: tuple[int, int], window: tuple[int, int, int, int],
             photo: np.ndarray | None) -> np.ndarray:
    """The photo (else the prediction, else grey) downsized, with the crack's window boxed."""
    import cv2

    h, w = shape
    scale = min(1.0, CONTEXT_PX / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if photo is not None and photo.shape[:2] == shape:
        img = cv2.resize(photo, size, interpolation=cv2.INTER_AREA)
    else:
        img = np.full((size[1], size[0], 3), 40, np.uint8)
        pred = _prediction(run_dir, record)
        if pred is not None and pred.shape == shape:
            img[cv2.resize(pred, size, interpolation=cv2.INTER_AREA) > 0] = 200
    x0, y0, x1, y1 = window
    p0 = (int(x0 * scale), int(y0 * scale))
    p1 = (max(p0[0] + 3, int(x1 * scale)), max(p0[1] + 3, int(y1 * scale)))
    return cv2.rectangle(np.ascontiguousarray(img), p0, p1, (0, 255, 255), max(2, size[0] // 200))


#: Longest side of the picture missed cracks are marked on.
MARK_PX = 900


def _prediction(run_dir: str | Path, record: dict[str, Any]) -> np.ndarray | None:
    """The run's prediction mask of a photo (read only from inside the run folder), or None."""
    import cv2

    from segcam.app.core import inside

    try:
        return cv2.imread(str(inside(Path(run_dir), str(record.get("prediction") or ""))), cv2.IMREAD_GRAYSCALE)
    except ValueError:
        return None


def marking_view(run_dir: str | Path, record: dict[str, Any], roots: Sequence[Path] = (),
                 photo: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """The picture a reviewer marks missed cracks on (the photo, else its prediction), and its scale to the photo.

    ``photo``: the photo already read (RGB), to skip reading it again; else it is read when it is in ``roots``.
    """
    import cv2

    w, h = int(record.get("width") or 0), int(record.get("height") or 0)
    found = readable_photo(record, roots) if photo is None else None
    if found is not None:
        from segcam.data.images import read_image
        from segcam.survey.batch import TILED_MAX_SIDE

        photo = read_image(found, max_side=TILED_MAX_SIDE)
    if photo is not None:
        img = photo
    else:
        pred = _prediction(run_dir, record)
        img = np.full((max(h, 1), max(w, 1), 3), 40, np.uint8) if pred is None else np.repeat(pred[..., None], 3, 2)
    scale = min(1.0, MARK_PX / max(img.shape[:2]))
    if scale < 1:
        img = cv2.resize(img, (round(img.shape[1] * scale), round(img.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img), scale
