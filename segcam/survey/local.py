"""Per-crack records from windows around each crack: a cost that follows the cracks, not the photo's pixels.

The records are those of :func:`segcam.survey.cracks.analyse_cracks` (``zones`` evidence): the same geometry,
confidence, evidence shares and pooled features, with every computation confined to a window around the
crack instead of whole-photo maps, labels of the nearest crack and distance transforms:

* a crack's **zone** is the pixels nearer to it than to any other crack, as in ``zones``, but only within
  :data:`ZONE_PX` of it, plus the evidence of the specks (predicted components under the minimum area, part of
  the explained target) whose surroundings lie farther from every crack, given to the crack nearest to each
  speck. Its evidence beyond that is nil: a map at a layer is the gradient of the predicted crack's logits,
  which reaches a layer cell only through the layers after it, so it lies within their receptive field of the
  predicted pixels (HrSegNet's ``seg3``: the head, a 3x3 transposed convolution and a 1x1 one at
  1/4 resolution, plus the bilinear upsampling: about 12 px; ``low3``: one 1/32 cell each way through the
  guidance resize and the map's own upsampling, about 64 px). Measured on 20 DeepCrack test photos
  (``hrsegnet_b16``, whole-photo maps of the predicted crack): ``seg3``'s energy lies within 8 px of the
  crack (99.999 %), ``low3``'s 99.7 % within 48 px and 99.994 % within 64 px.
* a window's maps are the photo-wide bilinear upsampling of the layer grids, computed for that window only
  (:func:`upsample_window`); features are pooled over the layer cells the crack covers.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from segcam.survey.cracks import (
    BESIDE_PX,
    FEATURE_EXTRA_LAYERS,
    MIN_AREA,
    RING_SUFFIX,
    CrackAnalysis,
    _crop_distance,
    _edt,
    _label,
    _shape,
    _shares,
    _thumbs,
    measure_crack,
)

__all__ = ["ZONE_PX", "local_cracks", "upsample_window"]

#: A crack's zone reaches this far from it (pixels): beyond, its evidence maps are nil (see the module docstring).
ZONE_PX = 64
#: The per-crack box of the records (as in analyse_cracks): the crack's box grown by the farthest distance used.
_PAD = BESIDE_PX + 1


def _axis(n_in: int, size: int, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows ``start:stop`` of an ``n_in`` -> ``size`` bilinear resize (OpenCV's half-pixel rule).

    ``size`` is the canvas side the ``n_in`` cells cover. Returns the lower and upper source indices and the
    upper weight.
    """
    src = (np.arange(start, stop, dtype=np.float64) + 0.5) * (n_in / size) - 0.5
    src = np.clip(src, 0, n_in - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, (src - lo).astype(np.float32)


def upsample_window(grid: np.ndarray, canvas: tuple[int, int], box: tuple[slice, slice]) -> np.ndarray:
    """The window ``box`` of ``grid`` (h x w) resized bilinearly to the ``canvas`` (H', W') it covers.

    Equal to ``cv2.resize(grid, (W', H'), interpolation=cv2.INTER_LINEAR)[box]`` up to float rounding, at
    the cost of the window.
    """
    ylo, yhi, fy = _axis(grid.shape[0], canvas[0], box[0].start, box[0].stop)
    xlo, xhi, fx = _axis(grid.shape[1], canvas[1], box[1].start, box[1].stop)
    rows = grid[ylo] * (1 - fy)[:, None] + grid[yhi] * fy[:, None]
    return (rows[:, xlo] * (1 - fx)[None] + rows[:, xhi] * fx[None]).astype(np.float32)


def _grow(sl: tuple[slice, slice], by: int, shape: Sequence[int]) -> tuple[slice, slice]:
    return (slice(max(0, sl[0].start - by), min(shape[0], sl[0].stop + by)),
            slice(max(0, sl[1].start - by), min(shape[1], sl[1].stop + by)))


def _inside(outer: tuple[slice, slice], inner: tuple[slice, slice]) -> tuple[slice, slice]:
    """``inner`` in the coordinates of ``outer`` (both photo boxes)."""
    return (slice(inner[0].start - outer[0].start, inner[0].stop - outer[0].start),
            slice(inner[1].start - outer[1].start, inner[1].stop - outer[1].start))


def _zone(labels: np.ndarray, j: int, box: tuple[slice, slice], win: tuple[slice, slice]) -> tuple[np.ndarray, np.ndarray]:
    """Over ``win``: each pixel's distance to the nearest crack and whether that crack is ``j``.

    The nearest crack of a pixel within ZONE_PX of crack ``j`` lies within ZONE_PX of it, so the labels of
    ``win`` grown by ZONE_PX decide it exactly (SciPy's feature transform, as the whole-photo zones: ties
    fall the same way).
    """
    from scipy.ndimage import distance_transform_edt

    big = _grow(box, 2 * ZONE_PX, labels.shape)
    lab = labels[big]
    at = _inside(big, win)
    others = (lab != 0) & (lab != j)
    if not others.any():  # alone: the distances to it, by OpenCV's faster exact transform
        dist = _edt(lab == 0)[at]
        return dist, np.ones(dist.shape, bool)
    dist, idx = distance_transform_edt(lab == 0, return_indices=True)
    return dist[at], (lab[idx[0], idx[1]] == j)[at]


def _nearest_crack(labels: np.ndarray, y: int, x: int) -> int:
    """The label of the crack nearest to pixel (y, x), searched in windows that double until one holds a crack."""
    from scipy.ndimage import distance_transform_edt

    r = 4 * ZONE_PX
    while True:
        win = _grow((slice(y, y + 1), slice(x, x + 1)), r, labels.shape)
        lab = labels[win]
        if lab.any() or (win[0].stop - win[0].start, win[1].stop - win[1].start) == labels.shape:
            break
        r *= 2
    if not lab.any():
        return 0
    _, idx = distance_transform_edt(lab == 0, return_indices=True)
    oy, ox = y - win[0].start, x - win[1].start
    return int(lab[idx[0][oy, ox], idx[1][oy, ox]])


def _far_speck_energy(pred: np.ndarray, labels: np.ndarray, n: int, maps: list[np.ndarray],
                      canvas: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Map energy around the specks that lies beyond ZONE_PX of every crack, per crack that whole-photo zones give it to.

    Specks (predicted components under the minimum area) are part of the explained target but no crack: their own
    evidence falls in the zone of the crack nearest to them, as ``far`` evidence. Returns per map and crack
    (index 0 unused) the energy sums, and per crack the largest value of the first map.
    """
    from scipy.ndimage import distance_transform_edt, find_objects, label

    totals, tops = np.zeros((len(maps), n + 1)), np.zeros(n + 1)
    specks, m = label(pred & (labels == 0), structure=np.ones((3, 3), bool), output=np.int32)
    if not m or not n:
        return totals, tops
    taken = np.zeros(labels.shape, bool)  # a pixel near two specks counts once
    for k, sl in enumerate(find_objects(specks), 1):
        win = _grow(sl, ZONE_PX, labels.shape)
        big = _grow(sl, 2 * ZONE_PX, labels.shape)
        lab = labels[big]
        far = (distance_transform_edt(lab == 0)[_inside(big, win)] > ZONE_PX) if lab.any() else np.ones(taken[win].shape, bool)
        far &= ~taken[win]
        if not far.any():
            continue
        taken[win] |= far
        ys, xs = np.nonzero(specks[sl] == k)
        j = _nearest_crack(labels, sl[0].start + int(ys[0]), sl[1].start + int(xs[0]))
        for i, grid in enumerate(maps):
            e = np.clip(upsample_window(grid, canvas, win), 0, None)[far]
            totals[i, j] += float(e.sum(dtype=np.float64))
            if i == 0 and e.size:
                tops[j] = max(tops[j], float(e.max()))
    return totals, tops


def _cells(box: tuple[slice, slice], stride: int) -> tuple[slice, slice]:
    """The layer cells (``stride`` pixels each) that a photo box touches."""
    return (slice(box[0].start // stride, -(-box[0].stop // stride)),
            slice(box[1].start // stride, -(-box[1].stop // stride)))


def _pool_mask(act: np.ndarray, canvas: tuple[int, int], mask: np.ndarray, box: tuple[slice, slice]) -> tuple[np.ndarray, float]:
    """Sum of ``act`` (K x h x w on ``canvas``) over a mask given on the photo box ``box``, area-weighted per cell.

    The mask is averaged over each cell it touches (``cv2.INTER_AREA``), as :func:`segcam.survey.cracks._pool`.
    A grid that does not divide the canvas into whole cells (a small photo's odd size) is pooled on the
    whole canvas.
    """
    import cv2

    k, h, w = act.shape
    H, W = canvas
    m = mask.astype(np.float32)
    if H % h == 0 and W % w == 0 and H // h == W // w:
        s = H // h
        cy, cx = _cells(box, s)
        full = np.zeros(((cy.stop - cy.start) * s, (cx.stop - cx.start) * s), np.float32)
        oy, ox = box[0].start - cy.start * s, box[1].start - cx.start * s
        full[oy:oy + m.shape[0], ox:ox + m.shape[1]] = m
        small = cv2.resize(full, (cx.stop - cx.start, cy.stop - cy.start), interpolation=cv2.INTER_AREA)
        return (act[:, cy, cx] * small[None]).reshape(k, -1).sum(axis=1), float(small.sum())
    full = np.zeros((H, W), np.float32)
    full[box] = m
    small = cv2.resize(full, (w, h), interpolation=cv2.INTER_AREA)
    return (act * small[None]).reshape(k, -1).sum(axis=1), float(small.sum())


def _prob(logits: np.ndarray, category: int) -> np.ndarray:
    """Class probability of a C x h x w logits window."""
    from segcam.cam.scores import class_probability

    return class_probability(logits, category)


def local_cracks(rgb: np.ndarray, logits: np.ndarray, category: int, grids: dict[str, Any], canvas: tuple[int, int],
                 evidence_layer: str, pixel_size: float | None = None, truth: np.ndarray | None = None,
                 min_area: int = MIN_AREA, prediction: np.ndarray | None = None,
                 probability: np.ndarray | None = None) -> CrackAnalysis:
    """Measure, explain and pool every predicted crack of a photo from crack-local windows.

    Args:
        rgb: H x W x 3 uint8 photo.
        logits: C x H x W logits of the photo.
        category: The crack class.
        grids: Layer alias -> :class:`segcam.survey.passes.LayerGrid` (the evidence layer, and ``low3`` where
            the model has it).
        canvas: (H', W') the grids cover (the photo, padded at the bottom and right).
        evidence_layer: The layer whose map is each crack's evidence.
        pixel_size: Millimetres per pixel.
        truth: Ground-truth mask: each crack gets ``truth`` (missed regions are not recorded here).
        min_area: Smallest component recorded.
        prediction: The crack mask to record: default (None) that of ``logits`` (:func:`segcam.cam.scores.class_mask`).
        probability: H x W class probability going with ``prediction``; default: the softmax of ``logits``
            (computed in each crack's window only).

    Returns:
        A :class:`segcam.survey.cracks.CrackAnalysis` like :func:`segcam.survey.cracks.analyse_cracks`'s.
    """
    from scipy.ndimage import find_objects

    from segcam.cam.scores import class_mask

    pred = prediction if prediction is not None else class_mask(logits, category)
    labels, n, components = _label(pred, min_area)
    feat_layers = [evidence_layer, *(k for k in FEATURE_EXTRA_LAYERS if k in grids and k != evidence_layer)]
    context = feat_layers[1] if len(feat_layers) > 1 else None
    h, w = labels.shape
    records, thumbs = [], []
    feats = {k: np.zeros((n, grids[k].act.shape[0]), np.float64) for k in feat_layers}
    feats.update({k + RING_SUFFIX: np.zeros((n, grids[k].act.shape[0]), np.float64) for k in feat_layers})
    maps = [grids[evidence_layer].raw] + ([grids[context].raw] if context else [])
    speck_totals, speck_tops = _far_speck_energy(pred, labels, n, maps, canvas)
    for j, sl in enumerate(find_objects(labels, max_label=n), 1):
        win = _grow(sl, ZONE_PX, labels.shape)
        dist_any, mine = _zone(labels, j, sl, win)
        zone = mine & (dist_any <= ZONE_PX)
        ev = np.clip(upsample_window(grids[evidence_layer].raw, canvas, win), 0, None)
        ctx = np.clip(upsample_window(grids[context].raw, canvas, win), 0, None) if context else None
        grown = _grow(sl, _PAD, labels.shape)
        g = _inside(win, grown)
        crack_c = labels[grown] == j
        rec: dict[str, Any] = {"crack": j, "x0": int(sl[1].start), "y0": int(sl[0].start), "x1": int(sl[1].stop),
                               "y1": int(sl[0].stop)}
        rec.update(measure_crack(crack_c[_inside(grown, sl)], pixel_size))
        p = (probability[grown] if probability is not None else _prob(logits[(slice(None), *grown)], category))[crack_c]
        rec.update(mean_prob=round(float(p.mean()), 4), min_prob=round(float(p.min()), 4))
        zone_c = zone[g]
        own_c = np.where(zone_c, ev[g], 0.0)
        dist = _crop_distance(crack_c)
        total = float(ev[zone].sum(dtype=np.float64)) + speck_totals[0, j]
        rec.update(_shares(own_c.astype(np.float64), dist, total))
        rec.update(_shape(own_c, dist, crack_c, max(float(ev[zone].max()) if zone.any() else 0.0, speck_tops[j])))
        if ctx is not None:
            ctx_c = np.where(zone_c, ctx[g], 0.0).astype(np.float64)
            ctx_total = float(ctx[zone].sum(dtype=np.float64)) + speck_totals[1, j]
            rec["evidence_context_band"] = _shares(ctx_c, dist, ctx_total)["evidence_band"]
        thumbs.append(_thumbs(rgb, crack_c, own_c, (grown[0].start, grown[1].start),
                              (rec["x0"], rec["y0"], rec["x1"], rec["y1"])))
        records.append(rec)
        ring = mine[g] & (dist_any[g] > 0) & (dist_any[g] <= BESIDE_PX)
        for k in feat_layers:
            for name, mask in ((k, crack_c), (k + RING_SUFFIX, ring)):
                s, mass = _pool_mask(grids[k].act, canvas, mask, grown)
                feats[name][j - 1] = s / max(mass, 1e-12)
    if truth is not None:
        from segcam.survey.review import label_cracks

        truth = np.asarray(truth) > 0
        if truth.shape != labels.shape:
            raise ValueError(f"the ground-truth mask is {truth.shape[1]}x{truth.shape[0]} but the photo is {w}x{h}; "
                             "give the photo's own mask")
        for rec, ok in zip(records, label_cracks(labels, truth)):
            rec["truth"] = "true" if ok else "false"
    names = [*feat_layers, *(k + RING_SUFFIX for k in feat_layers)]
    features = np.concatenate([feats[k] for k in names], axis=1).astype(np.float32) if n else \
        np.zeros((0, sum(grids[k].act.shape[0] for k in feat_layers) * 2), np.float32)
    widths = [[k, int(feats[k].shape[1])] for k in names]
    return CrackAnalysis(records, features, widths, labels, components - n, thumbs, evidence_layer)
