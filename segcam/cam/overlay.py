"""Heatmaps and overlays as uint8 RGB arrays (no pyplot, no global state)."""

from __future__ import annotations

import numpy as np

__all__ = ["COLORMAPS", "DEFAULT_ALPHA", "OVERLAY_MODES", "check_cmap", "check_overlay_mode", "heatmap", "overlay",
           "resolve_alpha"]

#: Suggested colormaps: perceptually uniform first; jet/turbo to match older papers.
COLORMAPS = ("inferno", "viridis", "magma", "plasma", "cividis", "turbo", "jet")
DEFAULT_CMAP = "inferno"
#: How a heatmap is laid over a photo. ``heat`` (the default): each pixel's heatmap weight is ``alpha`` times its
#: heat, so the photo shows unchanged where the map is zero (a uniform blend darkens the whole photo with the
#: colormap's black); ``blend``: one weight ``alpha`` everywhere (the classic Grad-CAM picture).
OVERLAY_MODES = ("heat", "blend")
DEFAULT_OVERLAY_MODE = "heat"
#: The heatmap weight when none is given: the heat-weighted overlay needs more at full heat (the crack's evidence
#: sits at 0.5-0.7 of a map's maximum, so at 0.5 it would be barely visible) and leaves the rest of the photo as it is.
DEFAULT_ALPHA = {"heat": 0.85, "blend": 0.5}
#: Rows blended at a time (bounds the temporary arrays for a 24-megapixel photo to a few MB per row block).
_ROWS = 512


def check_cmap(name: str) -> str:
    """Return ``name`` if matplotlib knows it.

    Raises:
        ValueError: Unknown colormap, listing close matches.
    """
    import matplotlib

    if name in matplotlib.colormaps:
        return name
    from segcam.utils.registry import unknown_name_message

    raise ValueError(unknown_name_message("colormap", name, list(COLORMAPS)) + "; any matplotlib colormap name works")


def resolve_alpha(alpha: float | None, mode: str = DEFAULT_OVERLAY_MODE) -> float:
    """``alpha``, or the mode's default when None.

    Raises:
        ValueError: An alpha outside [0, 1] or an unknown mode.
    """
    if alpha is None:
        return DEFAULT_ALPHA[check_overlay_mode(mode)]
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return float(alpha)


def check_overlay_mode(mode: str) -> str:
    """Return ``mode`` if it is one of :data:`OVERLAY_MODES`.

    Raises:
        ValueError: Unknown mode, listing the known ones.
    """
    if mode in OVERLAY_MODES:
        return mode
    from segcam.utils.registry import unknown_name_message

    raise ValueError(unknown_name_message("overlay mode", mode, list(OVERLAY_MODES)))


def _unit(cam: np.ndarray) -> np.ndarray:
    """The map as float32 (no copy when it is one), checked to lie in [0, 1] (up to 1 + 1e-6)."""
    cam = np.asarray(cam, dtype=np.float32)
    if cam.ndim != 2:
        raise ValueError(f"a CAM must be a 2-D H x W array, got shape {cam.shape}")
    lo, hi = float(cam.min(initial=0.0)), float(cam.max(initial=0.0))
    if not (np.isfinite(lo) and np.isfinite(hi)):  # NaN and infinities propagate into min and max
        raise ValueError("the CAM contains NaN or infinite values")
    if lo < 0 or hi > 1.0 + 1e-6:
        raise ValueError(f"the CAM must be normalised to [0, 1] (got {lo:.3g}..{hi:.3g}); "
                         "use LayerMap.normalized or divide by its maximum")
    return cam


def _lut(cmap: str) -> tuple[np.ndarray, int]:
    """The colormap's N x 3 uint8 lookup table (its own entries, rounded) and N."""
    import matplotlib

    cm = matplotlib.colormaps[check_cmap(cmap)]
    return np.rint(cm(np.arange(cm.N))[:, :3] * 255).astype(np.uint8), cm.N


def heatmap(cam: np.ndarray, cmap: str = DEFAULT_CMAP) -> np.ndarray:
    """Colour a [0, 1] map with a matplotlib colormap; returns H x W x 3 uint8 RGB.

    Indexes the colormap's own table as matplotlib does (``int(x * N)``, the top bin for 1.0), without its
    float64 RGBA intermediate, and in row blocks: 3 bytes per pixel instead of 35, which matters for a
    24-megapixel map.
    """
    unit = _unit(cam)
    lut, n = _lut(cmap)
    out = np.empty((*unit.shape, 3), np.uint8)
    for r in range(0, unit.shape[0], _ROWS):  # row blocks: the float and index temporaries of one block only
        out[r:r + _ROWS] = lut[np.minimum((unit[r:r + _ROWS] * np.float32(n)).astype(np.intp), n - 1)]
    return out


def overlay(image: np.ndarray, cam: np.ndarray, cmap: str = DEFAULT_CMAP, alpha: float | None = None,
            bgr: bool = False, mode: str = DEFAULT_OVERLAY_MODE) -> np.ndarray:
    """Lay a heatmap over an image.

    ``mode="heat"`` (default): ``(1 - w) * image + w * heatmap`` with ``w = alpha * heat`` per pixel, so the
    photo is untouched where the map is zero and the strongest evidence gets weight ``alpha``;
    ``mode="blend"``: the same with ``w = alpha`` everywhere.

    Args:
        image: H x W x 3 RGB, uint8 or float in [0, 1] (set ``bgr=True`` for OpenCV BGR input).
        cam: H x W map in [0, 1], same size as the image.
        cmap: Matplotlib colormap name (default ``inferno``, perceptually uniform).
        alpha: Heatmap weight in [0, 1] (at full heat for ``mode="heat"``); None: :data:`DEFAULT_ALPHA` of the mode.
        bgr: The image is in OpenCV's BGR order.
        mode: One of :data:`OVERLAY_MODES`.

    Returns:
        H x W x 3 uint8 RGB.

    Raises:
        ValueError: Wrong shapes, alpha outside [0, 1], an unknown mode or an image outside its range.
    """
    check_overlay_mode(mode)
    alpha = resolve_alpha(alpha, mode)
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image must be H x W x 3, got shape {img.shape}")
    if bgr:
        img = img[..., ::-1]
    if img.dtype != np.uint8:
        img = img.astype(np.float32)
        if img.min() < 0 or img.max() > 1:
            raise ValueError("a float image must be in [0, 1]; pass uint8 for 0..255 images")
        img = np.rint(img * 255.0).astype(np.uint8)
    img = np.ascontiguousarray(img)
    unit = _unit(cam)
    heat = heatmap(unit, cmap)
    if heat.shape != img.shape:
        raise ValueError(f"CAM size {heat.shape[:2]} differs from image size {img.shape[:2]}")
    import cv2

    if mode == "blend":  # uint8 in, uint8 out, rounded: no float copies of a large photo
        return cv2.addWeighted(img, 1.0 - alpha, heat, alpha, 0.0)
    out = np.empty_like(img)
    for r in range(0, img.shape[0], _ROWS):  # row blocks: float32 temporaries of one block only
        w = (np.minimum(unit[r:r + _ROWS], np.float32(1)) * np.float32(alpha))[..., None]
        block = img[r:r + _ROWS].astype(np.float32)
        out[r:r + _ROWS] = np.rint(block + w * (heat[r:r + _ROWS].astype(np.float32) - block)).astype(np.uint8)
    return out
