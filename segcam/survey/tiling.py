"""Full-resolution prediction and explanation of large photos, tile by tile.

A 12-50 megapixel survey photo does not fit one forward/backward pass on a
small machine, and shrinking it erases the hairline cracks HrSegNet is built
for. Here the photo is cut into overlapping ``tile`` x ``tile`` windows:

1. **Prediction.** Each tile's logits are weighted by a window that is 1 in the
   tile's middle and falls smoothly to ~0 over ``overlap`` pixels towards each
   inner edge (:func:`blend_window`); the sum of weighted logits divided by the
   sum of weights is the photo's logit map, so overlapping tiles cross-fade and
   no tile border shows.
2. **Target.** The target (default: the predicted crack) is taken on the whole
   photo's stitched logits, exactly as for a photo explained in one piece.
3. **Maps.** Each tile is explained for the part of that target inside it
   (:class:`~segcam.cam.targets.MaskTarget` of the crop) and its full-resolution
   raw maps are blended with the same windows. Raw maps are never normalised
   per tile, so every tile is on the one scale of the method's raw units and a
   map's maximum means the same anywhere in the photo. Tiles without target
   pixels contribute zeros (no evidence was asked for there) without a pass.

Memory is bounded by one tile's forward/backward pass plus full-size float32
accumulators: per layer 4 bytes per pixel, and 16 bytes per pixel for the
logits, weights and target (``benchmarks/bench_survey.py`` measures a 6000x4000
photo).
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import paddle

from segcam.cam.result import ImageExplanation, LayerMap
from segcam.cam.targets import MaskTarget, PredictedTarget, Target
from segcam.utils.memory import release_freed_memory

__all__ = ["blend_window", "explain_tiled", "fixed_size_forward", "predict_tiled", "tile_starts", "tiles"]


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of ``tile`` pixels covering ``[0, length)`` with at least ``overlap`` shared.

    The last tile ends at ``length`` (never past it); a side shorter than ``tile`` is one tile.

    Raises:
        ValueError: ``overlap`` not in ``[0, tile / 2]`` or ``tile`` < 32.
    """
    if tile < 32:
        raise ValueError(f"--tile {tile}: tiles must be at least 32 pixels")
    if not 0 <= overlap <= tile // 2:
        raise ValueError(f"--tile-overlap {overlap}: must be between 0 and half the tile ({tile // 2})")
    if length <= tile:
        return [0]
    step = tile - overlap
    n = -(-(length - tile) // step) + 1
    # spread the tiles evenly so every overlap is at least `overlap` (the last one is not a sliver)
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def _pair(tile: int | tuple[int, int]) -> tuple[int, int]:
    return (int(tile), int(tile)) if isinstance(tile, (int, np.integer)) else (int(tile[0]), int(tile[1]))


def tiles(height: int, width: int, tile: int | tuple[int, int], overlap: int) -> Iterator[tuple[int, int, int, int]]:
    """``(y0, x0, h, w)`` of every tile of an image, row by row (``tile``: a side, or (tile H, tile W))."""
    th, tw = _pair(tile)
    for y0 in tile_starts(height, th, overlap):
        for x0 in tile_starts(width, tw, overlap):
            yield y0, x0, min(th, height), min(tw, width)


def blend_window(h: int, w: int, overlap: int, top: bool, left: bool, bottom: bool, right: bool) -> np.ndarray:
    """Blending weights (h x w) of one tile.

    1 inside, a raised-cosine ramp (near 0 at the edge, 1 at ``overlap`` pixels in) towards each edge
    that has a neighbouring tile (``top``... say which), and 1 up to the photo's own borders.

    Two tiles' ramps over their shared ``overlap`` pixels cross-fade, so neither tile's edge, where a
    network sees the least context, decides a pixel alone.
    """
    def ramp(n: int, lo: bool, hi: bool) -> np.ndarray:
        r = np.ones(n, np.float32)
        if overlap > 0:
            edge = 0.5 - 0.5 * np.cos(np.pi * (np.arange(overlap, dtype=np.float32) + 0.5) / overlap)
            k = min(overlap, n)
            if lo:
                r[:k] = np.minimum(r[:k], edge[:k])
            if hi:
                r[n - k:] = np.minimum(r[n - k:], edge[:k][::-1])
        return r

    return np.outer(ramp(h, top, bottom), ramp(w, left, right))


def _windows(height: int, width: int, tile: int | tuple[int, int],
             overlap: int) -> list[tuple[int, int, int, int, np.ndarray]]:
    out = []
    th, tw = _pair(tile)
    ys, xs = tile_starts(height, th, overlap), tile_starts(width, tw, overlap)
    for y0, x0, h, w in tiles(height, width, tile, overlap):
        win = blend_window(h, w, overlap, y0 > ys[0], x0 > xs[0], y0 < ys[-1], x0 < xs[-1])
        out.append((y0, x0, h, w, win))
    return out


def predict_tiled(forward: Callable[[np.ndarray], np.ndarray], rgb: np.ndarray, tile: int | tuple[int, int],
                  overlap: int, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """The photo's C x H x W logits from overlapping tiles, cross-faded by :func:`blend_window`.

    Args:
        forward: Maps an h x w x 3 uint8 tile to its C x h x w float32 logits (a network, an exported
            predictor...).
        rgb: H x W x 3 uint8 photo.
        tile: Tile side in pixels, or (tile H, tile W) (an export's fixed input size).
        overlap: Pixels shared by neighbouring tiles.
        progress: Called with (tiles done, tiles in all).
    """
    height, width = rgb.shape[:2]
    wins = _windows(height, width, tile, overlap)
    acc: np.ndarray | None = None
    wsum = np.zeros((height, width), np.float32)
    for k, (y0, x0, h, w, win) in enumerate(wins):
        logits = np.asarray(forward(np.ascontiguousarray(rgb[y0:y0 + h, x0:x0 + w])), np.float32)
        if acc is None:
            acc = np.zeros((logits.shape[0], height, width), np.float32)
        acc[:, y0:y0 + h, x0:x0 + w] += logits * win
        wsum[y0:y0 + h, x0:x0 + w] += win
        if progress is not None:
            progress(k + 1, len(wins))
    acc /= wsum
    return acc


def fixed_size_forward(predict: Callable[[np.ndarray], np.ndarray],
                       size: tuple[int, int]) -> Callable[[np.ndarray], np.ndarray]:
    """Wrap a predictor that takes only ``size`` (H, W) inputs (an export).

    A smaller crop is padded by reflection to ``size`` and its logits cropped back, so nothing is ever
    stretched.
    """
    h, w = size

    def forward(crop: np.ndarray) -> np.ndarray:
        ch, cw = crop.shape[:2]
        if (ch, cw) != (h, w):
            crop = np.pad(crop, ((0, h - ch), (0, w - cw), (0, 0)), mode="reflect" if min(ch, cw) > 1 else "edge")
        return np.asarray(predict(crop))[:, :ch, :cw]

    return forward


def _network_forward(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    from segcam.cam.engine import main_logits
    from segcam.data.images import normalize

    net = getattr(model, "network", model)

    def forward(crop: np.ndarray) -> np.ndarray:
        with paddle.no_grad():
            x = paddle.to_tensor(normalize(crop[None], model.mean, model.std))
            return main_logits(net(x), crop.shape[:2]).numpy()[0]

    return forward


def explain_tiled(model: Any, rgb: np.ndarray, layers: Sequence[str], target: Target | None = None,
                  method: str = "seg_grad_cam", name: str = "image0", tile: int = 1024, overlap: int = 128,
                  score: str = "logit", progress: Callable[[int, int], None] | None = None,
                  on_tile: Callable[[int, int, np.ndarray, ImageExplanation], None] | None = None,
                  keep_activations: bool = False, logits: np.ndarray | None = None, **method_args: Any) -> ImageExplanation:
    """Explain a large photo at full resolution, tile by tile (see the module docstring).

    Args:
        model: A :class:`segcam.models.zoo.ZooModel` in eval mode.
        rgb: H x W x 3 uint8 photo.
        layers: Layer names or aliases.
        target: Target on the whole photo; default: its predicted crack.
        method: CAM method name.
        name: Name for output files.
        tile: Tile side in pixels (a multiple of the model's ``size_multiple``).
        overlap: Pixels shared by neighbouring tiles (0 to ``tile // 2``).
        score: What is summed over the target (:data:`segcam.cam.engine.SCORES`).
        progress: Called with (passes done, passes in all): one prediction pass and one explanation
            pass per tile.
        on_tile: Called for every tile explained (see above).
        keep_activations: Keep each tile's layer activations (for ``on_tile``).
        logits: The photo's C x H x W logits when the caller has them (an export's tiled pass,
            :func:`segcam.survey.passes.photo_pass`): no prediction pass of its own.
        **method_args: Options of the method.

    ``on_tile(y0, x0, window, tile_result)`` is called for every tile explained (tiles without target
    pixels are skipped), with its blend window; with ``keep_activations`` the tile's maps carry their
    activations (per-crack features are pooled from them).

    Returns:
        An :class:`~segcam.cam.result.ImageExplanation` whose maps hold the stitched full-size raw maps
        (``raw`` and ``upsampled`` are the same array), and the class probability of the stitched logits.

    Raises:
        ValueError: A bad tile size or overlap; see :func:`segcam.explain` for the rest.
    """
    from segcam.cam.engine import EmptyTargetWarning, check_input_size, explain
    from segcam.cam.scores import class_mask, class_probability

    height, width = rgb.shape[:2]
    check_input_size(model, (min(tile, height), min(tile, width)))
    wins = _windows(height, width, tile, overlap)
    total = 2 * len(wins)
    step = (lambda k, _n: progress(k, total)) if progress is not None else None
    if logits is None:
        logits = predict_tiled(_network_forward(model), rgb, tile, overlap, progress=step)
    target = target or PredictedTarget()
    region = target.mask(logits)
    if not region.any():
        warnings.warn(f"{name}: the target region ({target.describe()}) is empty, so its maps are all zero; "
                      "choose another target (e.g. --target image)", EmptyTargetWarning, stacklevel=2)
    acc: dict[str, np.ndarray] = {}
    real: dict[str, str] = {}
    wsum = np.zeros((height, width), np.float32)
    for k, (y0, x0, h, w, win) in enumerate(wins):
        wsum[y0:y0 + h, x0:x0 + w] += win
        crop_region = region[y0:y0 + h, x0:x0 + w]
        if crop_region.any() or not real:  # the first tile always runs, to learn the layers' real names
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", EmptyTargetWarning)
                res = explain(model, np.ascontiguousarray(rgb[y0:y0 + h, x0:x0 + w]), list(layers),
                              MaskTarget(target.category, crop_region, f"tile {x0},{y0}"), method, score=score,
                              keep_activations=keep_activations, **method_args)[0]
            if on_tile is not None and crop_region.any():
                on_tile(y0, x0, win, res)
            for key, m in res.maps.items():
                real[key] = m.layer_name
                if key not in acc:
                    acc[key] = np.zeros((height, width), np.float32)
                if crop_region.any():
                    acc[key][y0:y0 + h, x0:x0 + w] += m.upsampled * win
        if progress is not None:
            progress(len(wins) + k + 1, total)
    release_freed_memory()  # the tiles' tensors, before the photo-sized maps below are made
    maps = {}
    for key, a in acc.items():
        a /= wsum
        top = float(a.max())
        unit = (a / top).astype(np.float32) if top > 0 else np.zeros_like(a)
        maps[key] = LayerMap(key, real[key], a, a, unit, top, not region.any())
    pred = class_mask(logits, 1).astype(np.uint8) if logits.shape[0] == 2 else logits.argmax(axis=0).astype(np.uint8)
    desc = f"{target.describe()} (tiled {tile}px, overlap {overlap}px)"
    return ImageExplanation(name, rgb, pred, region, desc, target.category, maps,
                            probability=class_probability(logits, target.category))
