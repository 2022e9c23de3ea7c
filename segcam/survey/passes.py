"""One photo's prediction and evidence-layer grids, in one pass or in tiles aligned to the layers' cells.

What a survey needs of a photo is its logits (the crack mask), and at each evidence layer a *grid*: the
layer's activations and the crack evidence map (LayerCAM of the predicted crack, :mod:`segcam.cam.defaults`),
at the layer's own resolution. Per-crack records (:mod:`segcam.survey.local`) then read small windows of them.

* **Prediction** runs on an export (:func:`segcam.models.export_cache.cached_predictor`, ONNX Runtime): a
  photo no larger than the tile in one pass at its own size (padded to the model's size multiple); a larger
  one on a canvas padded to a multiple of :data:`ALIGN` and cut into tiles that start on multiples of it,
  so every tile's layer cells fall on one photo-wide grid and tiles blend at the layers' resolution as
  well as at the photo's (:func:`segcam.survey.tiling.blend_window` ramps).
* **Evidence** for a network with an evidence split (:mod:`segcam.models.split`: HrSegNet) comes out of the
  same export call as the prediction: its activations and LayerCAM maps at the evidence layers, each tile
  explaining its own predicted crack. Other networks run :func:`segcam.explain` on the tiles that hold
  predicted crack, with the photo's stitched prediction as the target (the cost of ``segcam explain``).

"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from segcam.survey.tiling import blend_window, tile_starts

__all__ = ["ALIGN", "LayerGrid", "PhotoPass", "Tile", "photo_pass", "plan_tiles"]

#: Tiles of a tiled photo start on multiples of this (every stride of every zoo model's layers divides it).
ALIGN = 32


@dataclass
class LayerGrid:
    """One evidence layer of a photo, at the layer's resolution on the canvas.

    Attributes:
        act: K x h x w activations.
        raw: h x w evidence map (LayerCAM of the predicted crack), or None before it is computed.
    """

    act: np.ndarray
    raw: np.ndarray | None = None


@dataclass(frozen=True)
class Tile:
    """A window of the canvas: top-left ``y``, ``x`` and size ``h``, ``w`` (pixels), with its neighbours."""

    y: int
    x: int
    h: int
    w: int
    top: bool = False
    left: bool = False
    bottom: bool = False
    right: bool = False

    def window(self, overlap: float, stride: int = 1) -> np.ndarray:
        """Blending weights at ``stride`` (pixels per cell)."""
        return blend_window(self.h // stride, self.w // stride, int(round(overlap / stride)), self.top, self.left,
                            self.bottom, self.right)


@dataclass
class PhotoPass:
    """A photo's logits and evidence grids.

    Attributes:
        logits: C x H x W at the photo's size.
        prediction: H x W bool, the pixels predicted as the crack class.
        canvas: (H', W'), the photo padded at the bottom and right; layer grids cover the canvas.
        layers: Evidence layer alias -> :class:`LayerGrid`.
        tiles: Windows of the canvas the network ran on (one for a photo in one pass).
        engine: ``export`` (the evidence came with the prediction) or ``export+explain``.
    """

    logits: np.ndarray
    prediction: np.ndarray
    canvas: tuple[int, int]
    layers: dict[str, LayerGrid]
    tiles: list[Tile]
    engine: str


def _round_up(v: int, k: int) -> int:
    return -(-v // k) * k


def plan_tiles(height: int, width: int, tile: int, overlap: int, multiple: int = 1) -> tuple[tuple[int, int], list[Tile]]:
    """The canvas and the tiles of a photo.

    A photo whose sides are both at most ``tile`` is one tile: the photo padded to ``multiple``. A larger one
    is padded to a multiple of ``lcm(ALIGN, multiple)`` and tiled with tiles of that many pixels (at most
    ``tile``, rounded down to it) that start on multiples of :data:`ALIGN` and share at least about
    ``overlap`` pixels.

    Raises:
        ValueError: ``tile`` below 64 or ``overlap`` not within ``[0, tile / 2]``.
    """
    if tile < 64:
        raise ValueError(f"--tile {tile}: tiles must be at least 64 pixels")
    if not 0 <= overlap <= tile // 2:
        raise ValueError(f"--tile-overlap {overlap}: must be between 0 and half the tile ({tile // 2})")
    if height <= tile and width <= tile:
        canvas = (_round_up(height, multiple), _round_up(width, multiple))
        return canvas, [Tile(0, 0, *canvas)]
    step = ALIGN * multiple // math.gcd(ALIGN, multiple)
    canvas = (_round_up(height, step), _round_up(width, step))
    side = max(step, tile // step * step)
    th, tw = min(side, canvas[0]), min(side, canvas[1])

    def starts(length: int, t: int) -> list[int]:
        return sorted({s // ALIGN * ALIGN if s + t < length else length - t for s in tile_starts(length, t, overlap)})

    ys, xs = starts(canvas[0], th), starts(canvas[1], tw)
    tiles = [Tile(y, x, th, tw, y > ys[0], x > xs[0], y < ys[-1], x < xs[-1]) for y in ys for x in xs]
    return canvas, tiles


def _crop(rgb: np.ndarray, t: Tile) -> np.ndarray:
    """A tile of the canvas: the photo's pixels, reflected into the canvas's extra rows and columns (bottom, right).

    Cut per tile, so a padded copy of the whole photo is never made.
    """
    import cv2

    crop = np.ascontiguousarray(rgb[t.y:t.y + t.h, t.x:t.x + t.w])
    dy, dx = t.h - crop.shape[0], t.w - crop.shape[1]
    if not dy and not dx:
        return crop
    mode = cv2.BORDER_REFLECT_101 if min(crop.shape[:2]) > 1 else cv2.BORDER_REPLICATE
    return cv2.copyMakeBorder(crop, 0, dy, 0, dx, mode)


class _Grid:
    """Tiles' outputs at one layer's resolution: weighted sums and weights (blending), or one tile's output as is.

    A layer of a tiled photo must divide each tile into whole cells of ``stride`` pixels (:func:`_stride`); a
    photo in one pass keeps whatever grid the layer has (a 133 px crop's 34 cells).
    """

    def __init__(self, canvas: tuple[int, int], single: bool, name: str) -> None:
        self.canvas, self.single, self.name = canvas, single, name
        self.acc: np.ndarray | None = None
        self.wsum: np.ndarray | None = None
        self.stride = 1

    def add(self, tile: Tile, values: np.ndarray, overlap: float) -> None:
        """Add a tile's C x h x w output."""
        if self.single:
            self.acc = values.astype(np.float32)
            return
        if self.acc is None:
            self.stride = _stride(tile, values.shape, self.name)
            s = self.stride
            self.acc = np.zeros((values.shape[0], self.canvas[0] // s, self.canvas[1] // s), np.float32)
            self.wsum = np.zeros(self.acc.shape[1:], np.float32)
        s = self.stride
        win = tile.window(overlap, s)
        box = (slice(tile.y // s, tile.y // s + win.shape[0]), slice(tile.x // s, tile.x // s + win.shape[1]))
        self.acc[(slice(None), *box)] += values * win
        self.wsum[box] += win

    def result(self) -> np.ndarray:
        """The blended C x h x w grid (in place: the sums become the result)."""
        if not self.single and self.wsum is not None:
            np.maximum(self.wsum, 1e-12, out=self.wsum)
            self.acc /= self.wsum
            self.wsum = None
        return self.acc


def _stride(tile: Tile, shape: Sequence[int], name: str) -> int:
    """Pixels per cell of a layer output of ``shape`` (K x h x w) on ``tile``; tiles must hold whole cells."""
    h, w = int(shape[-2]), int(shape[-1])
    if tile.h % h or tile.w % w or tile.h // h != tile.w // w:
        raise ValueError(f"layer {name}: its {w}x{h} output does not divide the {tile.w}x{tile.h} tile into whole "
                         "cells; choose another --tile")
    return tile.h // h


def photo_pass(model: Any, rgb: np.ndarray, category: int, layers: Sequence[str], predictor: Callable[[tuple[int, int]], Any],
               tile: int = 1024, overlap: int = 128, progress: Callable[[int, int], None] | None = None,
               evidence: bool = True) -> PhotoPass:
    """Predict a photo and compute its evidence grids (see the module docstring).

    Args:
        model: A :class:`segcam.models.zoo.ZooModel`.
        rgb: H x W x 3 uint8.
        category: The crack class (the evidence's target is its predicted pixels).
        layers: Evidence layer aliases (an evidence export's must be its layers, ``meta["layers"]``).
        predictor: ``predictor(size)`` -> an export predictor of that input size (:class:`segcam.models.export.Predictor`):
            an ``evidence`` export gives the grids with the prediction; a ``logits`` one, the prediction only
            (the grids then come from :func:`segcam.explain` on each tile with predicted crack).
        tile: Largest tile side.
        overlap: Pixels shared by neighbouring tiles.
        progress: Called with (steps done, steps in all): a step per tile, and with a ``logits`` export a
            second step per tile for the evidence.
        evidence: False: the prediction only (``layers`` is ignored; no explanation pass for a ``logits`` export).
    """
    from segcam.cam.scores import class_mask
    from segcam.data.images import normalize
    from segcam.utils.memory import release_freed_memory

    multiple = _lcm(int(getattr(model, "size_multiple", 1)), int(getattr(model, "onnx_size_multiple", 1)))
    height, width = rgb.shape[:2]
    canvas, tiles = plan_tiles(height, width, tile, overlap, multiple)
    single = len(tiles) == 1
    grids: dict[str, _Grid] = {"logits": _Grid(canvas, single, "logits")}
    names: list[str] = ["logits"]
    total = len(tiles)
    for k, t in enumerate(tiles):
        crop = _crop(rgb, t)
        pred = predictor((t.h, t.w))
        outs = pred.run(normalize(crop, pred.mean, pred.std), release=k == len(tiles) - 1)
        if k == 0:
            exported = pred.meta.get("outputs") == "evidence"
            if exported:  # logits, each layer's activations, then each layer's map
                names += [*pred.meta["layers"], *(f"{n}:map" for n in pred.meta["layers"])]
                grids.update({n: _Grid(canvas, single, n) for n in names[1:]})
            elif evidence:
                total = 2 * len(tiles)
        for name, out in zip(names, outs):
            grids[name].add(t, out[0] if out.ndim == 4 else out, overlap)
        if progress is not None:
            progress(k + 1, total)
    release_freed_memory()  # the tiles' buffers: the photo-sized stages that follow need the room
    full = grids["logits"].result()
    target = class_mask(full, category)
    target[height:], target[:, width:] = False, False  # the canvas's padding is no crack of the photo
    if exported:
        out_grids = {n: LayerGrid(grids[n].result(), grids[f"{n}:map"].result()[0]) for n in names[1:] if ":" not in n}
        engine = "export"
    elif evidence:
        out_grids = _explain_grids(model, rgb, target, category, tiles, overlap, layers, progress, len(tiles), total)
        engine = "export+explain"
    else:
        out_grids, engine = {}, "export"
    return PhotoPass(full[:, :height, :width], target[:height, :width], canvas, out_grids, tiles, engine)


def _lcm(a: int, b: int) -> int:
    return a * b // math.gcd(a, b)


def _explain_grids(model: Any, rgb: np.ndarray, target: np.ndarray, category: int, tiles: list[Tile], overlap: int,
                   layers: Sequence[str], progress: Callable[[int, int], None] | None, done: int,
                   total: int) -> dict[str, LayerGrid]:
    """Evidence maps and activations from :func:`segcam.explain` on each tile that holds predicted crack."""
    from segcam.cam.defaults import DEFAULTS
    from segcam.cam.engine import EmptyTargetWarning, explain
    from segcam.cam.targets import MaskTarget
    from segcam.survey.cracks import EVIDENCE_SCORE

    single = len(tiles) == 1
    acts = {n: _Grid(target.shape, single, n) for n in layers}
    raws = {n: _Grid(target.shape, single, n) for n in layers}
    for k, t in enumerate(tiles):
        region = target[t.y:t.y + t.h, t.x:t.x + t.w]
        if region.any() or k == 0:  # the first tile always runs: every grid gets its shape
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", EmptyTargetWarning)
                res = explain(model, _crop(rgb, t), list(layers),
                              MaskTarget(category, region, f"tile {t.x},{t.y}"), DEFAULTS["component"].method,
                              score=EVIDENCE_SCORE, keep_activations=True)[0]
            for n in layers:
                acts[n].add(t, res.maps[n].activations, overlap)
                raws[n].add(t, res.maps[n].raw[None], overlap)
        if progress is not None:
            progress(done + k + 1, total)
    return {n: LayerGrid(acts[n].result(), raws[n].result()[0]) for n in layers}
