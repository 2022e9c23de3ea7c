"""Per-crack records: every predicted crack measured, its own explanation summarised, its features pooled.

A *crack* is a connected component of the predicted crack mask with 8-connectivity (the same components
as the ``component`` target) and at least :data:`MIN_AREA` pixels (smaller specks are counted per image,
not recorded: too small to have a length or a width).

Geometry (scikit-image and SciPy; all in pixels, and in millimetres with a pixel size):

* **length**: the skeleton (``skimage.morphology.skeletonize``) traced into paths between end points and
  junctions; each path's length is that of a polyline through every :data:`PATH_STEP`-th skeleton pixel
  (a raw 8-neighbour chain overestimates oblique runs by up to 8 %), spurs shorter than twice the crack's
  half-width at their junction are pruned, and each free end is extended by the distance from the
  skeleton's end to the crack's edge (a skeleton stops about half a width short of the end).
* **mean width** = area / length; **median / max width** = 2 x the Euclidean distance transform on the
  skeleton minus 1 (whole pixels: exact for odd widths, one pixel low for even ones).
* **orientation**: the major axis of the component's second moments, degrees anticlockwise from the
  image's horizontal, in [0, 180).

Evidence: the share of a crack's own map energy on the crack, beside it (within :data:`BESIDE_PX`) and
farther away, and within :data:`BAND_PX` of it, from the default local recipe of
:mod:`segcam.cam.defaults` (the ``component`` target: LayerCAM at ``seg3``), with the logit score
(:data:`EVIDENCE_SCORE`, so that ``segcam explain``'s own pass serves it). ``exact``
explains each crack on its own (one backward pass per crack); ``zones`` (the default, one pass) explains
the whole prediction once and gives each crack the part of that map that lies nearer to it than to any
other crack (``benchmarks/bench_cracks.py`` measures its cost and its agreement with ``exact``).

Features: each crack's activations of the evidence layer (and of ``low3`` where the model has it),
averaged over its pixels (area-weighted at each layer's resolution), and the same layers averaged over its
surroundings (:data:`RING_SUFFIX` blocks: the pixels within :data:`BESIDE_PX` of the crack that are nearer to
it than to any other crack and on no crack): the vectors the concept atlas clusters, saved per image so an
atlas never recomputes a run. The surroundings say what the crack lies on or beside (a mortar joint, a
shadow's edge, a road marking), which the crack's own pixels, mostly its confidence, do not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["BAND_PX", "BESIDE_PX", "CRACK_FIELDS", "EVIDENCE_MODES", "MIN_AREA", "RING_SUFFIX", "CrackAnalysis", "analyse_cracks",
           "crack_labels", "evidence_shares", "measure_crack", "read_crack_features", "read_crack_file",
           "read_crack_thumb", "records_for_csv", "skeleton_length", "skeleton_paths"]

#: Smallest component recorded as a crack, in pixels (a 4x4 speck has neither a length nor a width).
MIN_AREA = 16
#: Skeleton pixels between the points of the polyline a path's length is measured on.
PATH_STEP = 4
#: Evidence within this many pixels of a crack counts as "in its band" (cracks are 1-5 px wide and annotators
#: disagree by a pixel or two).
BAND_PX = 5
#: Evidence beyond the crack but within this many pixels is "beside" it; farther is "far".
BESIDE_PX = 15
EVIDENCE_MODES = ("zones", "exact")
#: The score of the evidence maps: the logit, the default explain job's own score, so that the evidence can come
#: from the job's pass (the component recipe's margin would need a second backward pass).
EVIDENCE_SCORE = "logit"
#: The feature layers pooled per crack, besides the evidence layer (where the model has them).
FEATURE_EXTRA_LAYERS = ("low3",)
#: Suffix of the feature blocks pooled around each crack (``seg3@beside``: ``seg3`` within BESIDE_PX, off the crack).
RING_SUFFIX = "@beside"


def crack_labels(mask: np.ndarray, min_area: int = MIN_AREA) -> tuple[np.ndarray, int]:
    """Label the cracks of a boolean mask (8-connectivity), dropping components under ``min_area`` pixels.

    Returns:
        An int32 label image (0 = background, 1..n = cracks ordered by area, largest first) and ``n``.
    """
    labels, n, _ = _label(mask, min_area)
    return labels, n


def _label(mask: np.ndarray, min_area: int) -> tuple[np.ndarray, int, int]:
    """:func:`crack_labels`, and the number of components before the minimum area was applied."""
    from scipy.ndimage import label

    # scikit-image's label(connectivity=2) of a bool mask is this (its numbering too), without an int64 copy
    lab, count = label(np.asarray(mask, bool), structure=np.ones((3, 3), bool), output=np.int32)
    if count == 0:
        return lab, 0, 0
    areas = np.bincount(lab.ravel())
    areas[0] = 0
    keep = [i for i in np.argsort(-areas, kind="stable") if areas[i] >= min_area]
    remap = np.zeros(len(areas), np.int32)
    remap[keep] = np.arange(1, len(keep) + 1, dtype=np.int32)
    return remap[lab], len(keep), int(count)


_OFFSETS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


def _neighbours(sk: np.ndarray) -> tuple[list[list[int]], np.ndarray, np.ndarray]:
    """The skeleton as a graph: each pixel's skeleton neighbours, and the pixels' ``ys`` and ``xs``.

    Pixels are numbered in row-major order and their neighbours listed in :data:`_OFFSETS` order. Plain ints
    and one array lookup per offset: tracing (y, x) tuples through dicts was most of the records' measuring
    time.
    """
    ys, xs = np.nonzero(sk)
    number = np.full((sk.shape[0] + 2, sk.shape[1] + 2), -1, np.int64)
    number[ys + 1, xs + 1] = np.arange(len(ys))
    table = np.stack([number[ys + 1 + dy, xs + 1 + dx] for dy, dx in _OFFSETS], axis=1).tolist()
    return [[q for q in row if q >= 0] for row in table], ys, xs


def _polyline_length(ys: np.ndarray, xs: np.ndarray, path: list[int], step: int = PATH_STEP) -> float:
    """Length of the polyline through every ``step``-th pixel of ``path`` (pixel numbers) and its last one."""
    if len(path) < 2:
        return 0.0
    if path[0] == path[-1]:  # a closed loop: at least three segments, or a small ring would measure 0
        step = max(1, min(step, (len(path) - 1) // 3))
    idx = path[::step]
    if (len(path) - 1) % step:
        idx.append(path[-1])
    dy, dx = np.diff(ys[idx]).astype(float), np.diff(xs[idx]).astype(float)
    return float(np.sqrt(dy * dy + dx * dx).sum())


def _run_out(comp: np.ndarray, end: tuple[int, int], inner: tuple[int, int]) -> float:
    """Distance from a skeleton end to the component's edge, going on in the direction ``inner`` -> ``end``."""
    dy, dx = end[0] - inner[0], end[1] - inner[1]
    norm = math.hypot(dy, dx)
    if norm == 0:
        return 0.0
    dy, dx = dy / norm, dx / norm
    h, w = comp.shape
    t = 0.0
    while True:
        y, x = round(end[0] + (t + 0.5) * dy), round(end[1] + (t + 0.5) * dx)
        if not (0 <= y < h and 0 <= x < w) or not comp[y, x]:
            return t + 0.5 if t > 0 else 0.5
        t += 0.5


def _trace(nbrs: list[list[int]]) -> list[list[int]]:
    """The skeleton's paths (pixel numbers): node to node (nodes: degree != 2), plus closed loops without nodes.

    Paths start at nodes in pixel order and leave each by its first untraced edge: the same paths, in the
    same order and direction, whatever the skeleton's size.
    """
    n = len(nbrs)
    is_node = [len(q) != 2 for q in nbrs]
    seen: set[int] = set()  # traced edges, as min * n + max
    paths = []
    for start in range(n):
        if not is_node[start]:
            continue
        for first in nbrs[start]:
            edge = min(start, first) * n + max(start, first)
            if edge in seen:
                continue
            path, prev, cur = [start], start, first
            seen.add(edge)
            while True:
                path.append(cur)
                if is_node[cur]:
                    break
                a, b = nbrs[cur]  # not a node: two neighbours, one of them the pixel it came from
                nxt = b if a == prev else a
                edge = cur * n + nxt if cur < nxt else nxt * n + cur
                if edge in seen:
                    break
                seen.add(edge)
                prev, cur = cur, nxt
            paths.append(path)
    on_path = bytearray(n)
    for path in paths:
        for p in path:
            on_path[p] = 1
    for p in range(n):  # loops: every pixel has two neighbours
        if on_path[p]:
            continue
        path, prev, cur, inside = [p], -1, p, set()
        while True:
            nxt = [q for q in nbrs[cur] if q != prev and q not in inside]
            if not nxt or (nxt[0] == p and len(path) > 2):
                path.append(p)
                break
            prev, cur = cur, nxt[0]
            if cur == p:
                path.append(p)
                break
            path.append(cur)
            inside.add(cur)
        for q in path:
            on_path[q] = 1
        paths.append(path)
    return paths


def skeleton_length(component: np.ndarray, edt: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """The length of a crack component (see the module docstring) and its pruned skeleton.

    Args:
        component: H x W bool, one connected component.
        edt: Its Euclidean distance transform (computed if None).
    """
    from skimage.morphology import skeletonize

    comp = np.pad(np.asarray(component, bool), 1)
    edt = np.pad(edt, 1) if edt is not None else _edt(comp)
    sk = skeletonize(comp)
    if not sk.any():  # skeletonize keeps a pixel of every component; an empty mask has no length
        return (1.0 if comp.any() else 0.0), sk[1:-1, 1:-1]
    nbrs, ys, xs = _neighbours(sk)
    if len(nbrs) == 1:  # a blob whose skeleton is one pixel: its length is its extent
        return _blob_length(edt, sk), sk[1:-1, 1:-1]
    paths = _trace(nbrs)
    # prune spurs: a path from a free end to a junction shorter than the width there (corner artefacts of a
    # flat crack end), then thin again so the junction's pixel cluster becomes a plain end
    spur = np.zeros_like(sk)
    for path in paths:
        a, b = path[0], path[-1]
        if len(nbrs[a]) != 1:
            a, b, path = b, a, path[::-1]
        if len(nbrs[a]) == 1 and len(nbrs[b]) >= 3 and _polyline_length(ys, xs, path) < 2 * edt[ys[b], xs[b]]:
            spur[ys[path[:-1]], xs[path[:-1]]] = True
    if spur.any() and (sk & ~spur).any():
        sk = skeletonize(sk & ~spur)
        nbrs, ys, xs = _neighbours(sk)
        if len(nbrs) <= 1:  # every branch was a spur of a compact blob: measured as a blob
            return _blob_length(edt, sk), sk[1:-1, 1:-1]
        paths = _trace(nbrs)
    length = sum(_polyline_length(ys, xs, p) for p in paths)
    # free ends: a skeleton stops short of the crack's end (by half a width, more on oblique thin ends);
    # continue each end in its path's direction up to the crack's edge
    for path in paths:
        for end, back in ((path[0], path[1:1 + 2 * PATH_STEP]), (path[-1], path[-2:-2 - 2 * PATH_STEP:-1])):
            if len(nbrs[end]) == 1 and back:
                length += _run_out(comp, (int(ys[end]), int(xs[end])), (int(ys[back[-1]]), int(xs[back[-1]])))
    return float(length), sk[1:-1, 1:-1]


def skeleton_paths(sk: np.ndarray) -> list[np.ndarray]:
    """A skeleton's paths (node to node, and closed loops) as ``K x 2`` arrays of pixel ``(x, y)`` in path order."""
    nbrs, ys, xs = _neighbours(np.asarray(sk, bool))
    if len(nbrs) == 1:
        return [np.array([[xs[0], ys[0]]])]
    return [np.stack([xs[p], ys[p]], axis=1) for p in _trace(nbrs)]


def _blob_length(edt: np.ndarray, sk: np.ndarray) -> float:
    """The length of a blob whose skeleton is a point: the diameter of its largest inscribed disc (at least 1)."""
    return float(max(1.0, 2 * edt[sk].max() - 1)) if sk.any() else 1.0


def _orientation(component: np.ndarray) -> float:
    ys, xs = np.nonzero(component)
    if len(xs) < 2:
        return 0.0
    x, y = xs - xs.mean(), -(ys - ys.mean())  # y up
    cov = np.cov(np.stack([x, y]))
    vals, vecs = np.linalg.eigh(cov)
    vx, vy = vecs[:, int(np.argmax(vals))]
    return float(math.degrees(math.atan2(vy, vx)) % 180.0)


def measure_crack(component: np.ndarray, pixel_size: float | None = None) -> dict[str, float]:
    """Geometry of one crack component (see the module docstring for each quantity).

    Args:
        component: H x W bool mask of one connected crack (a crop is enough).
        pixel_size: Millimetres per pixel; adds ``length_mm`` and ``*_width_mm``.
    """
    comp = np.asarray(component, bool)
    area = int(comp.sum())
    edt = _edt(np.pad(comp, 1))[1:-1, 1:-1]
    length, sk = skeleton_length(comp, edt)
    local = 2 * edt[sk] - 1 if sk.any() else np.asarray([0.0])
    out = {"area": area, "length": round(length, 3),
           "mean_width": round(area / length, 3) if length > 0 else 0.0,
           "median_width": round(float(np.median(local)), 3), "max_width": round(float(local.max()), 3),
           "orientation": round(_orientation(comp), 2)}
    if pixel_size is not None:
        out.update({f"{k}_mm": round(out[k] * pixel_size, 4) for k in ("length", "mean_width", "median_width", "max_width")})
    return out


def _edt(mask: np.ndarray) -> np.ndarray:
    """Each True pixel's Euclidean distance to the nearest False one (``scipy.ndimage.distance_transform_edt``'s).

    OpenCV's exact transform (``DIST_MASK_PRECISE``, the same Felzenszwalb-Huttenlocher algorithm; equal to
    SciPy's to 3e-6): 6x faster than SciPy's on these crops, and two run per crack. Its float32 distances are
    made SciPy's float64 ones exactly (squared distances are whole numbers): the spur rule compares lengths
    with widths, and a tie such as sqrt(20) against 2 sqrt(5) must fall the same way.
    """
    import cv2

    d = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE).astype(np.float64)
    return np.sqrt(np.rint(d * d))


def _crop_distance(crack: np.ndarray) -> np.ndarray:
    """Each pixel's distance to the crack."""
    return _edt(~crack)


def _shares(energy: np.ndarray, dist: np.ndarray, total: float) -> dict[str, Any]:
    """On / beside / far / band shares of ``total`` (the crack's whole map energy) from its grown box."""
    if total <= 0:
        return {"evidence_total": 0.0, "evidence_on": 0.0, "evidence_beside": 0.0, "evidence_far": 0.0,
                "evidence_band": 0.0, "evidence_where": "none"}
    on = float(energy[dist == 0].sum()) / total
    beside = float(energy[(dist > 0) & (dist <= BESIDE_PX)].sum()) / total
    far = max(0.0, 1.0 - on - beside)
    band = float(energy[dist <= BAND_PX].sum()) / total
    where = max((("on", on), ("beside", beside), ("far", far)), key=lambda kv: kv[1])[0]
    return {"evidence_total": round(total, 6), "evidence_on": round(on, 4), "evidence_beside": round(beside, 4),
            "evidence_far": round(far, 4), "evidence_band": round(band, 4), "evidence_where": where}


def _shape(energy: np.ndarray, dist: np.ndarray, crack: np.ndarray, top: float) -> dict[str, float]:
    """How peaked the map is on the crack.

    ``evidence_contrast``: the mean map on the crack over its mean in a ring 1..BESIDE_PX px around it;
    ``evidence_peak``: the map's maximum on the crack over its maximum anywhere it counts.
    """
    if top <= 0:
        return {"evidence_contrast": 0.0, "evidence_peak": 0.0}
    ring = (dist > 0) & (dist <= BESIDE_PX)
    inside, around = float(energy[crack].mean()), float(energy[ring].mean()) if ring.any() else 0.0
    return {"evidence_contrast": round(inside / (around + 1e-6 * top), 4),
            "evidence_peak": round(float(energy[crack].max()) / top, 4)}


def evidence_shares(cam: np.ndarray, crack: np.ndarray, zone: np.ndarray | None = None) -> dict[str, Any]:
    """Where a crack's own map puts its energy: on the crack, beside it, far away, and within the band.

    Args:
        cam: H x W non-negative map of this crack (its own target).
        crack: H x W bool, the crack.
        zone: H x W bool, the pixels that count (``zones`` mode: nearer to this crack than to any other);
            None = the whole image.
    """
    from scipy.ndimage import find_objects

    energy = np.clip(np.asarray(cam, np.float64), 0, None)
    if zone is not None:
        energy = np.where(zone, energy, 0.0)
    crack = np.asarray(crack, bool)
    if not crack.any():
        return _shares(energy, np.zeros_like(energy), 0.0)
    sl = find_objects(crack.astype(np.uint8))[0]
    pad = max(BESIDE_PX, BAND_PX) + 1
    grown = (slice(max(0, sl[0].start - pad), min(crack.shape[0], sl[0].stop + pad)),
             slice(max(0, sl[1].start - pad), min(crack.shape[1], sl[1].stop + pad)))
    return _shares(energy[grown], _crop_distance(crack[grown]), float(energy.sum()))


def _nearest(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's distance to the nearest labelled pixel and that pixel's label (one distance transform)."""
    from scipy.ndimage import distance_transform_edt

    top = labels.max()
    if top == 0:
        return np.zeros(labels.shape, np.float64), labels
    if top == 1:  # one crack is everyone's nearest: the distances alone, without SciPy's slower feature transform
        return _edt(labels == 0), np.ones_like(labels)
    dist, idx = distance_transform_edt(labels == 0, return_indices=True)
    return dist, labels[idx[0], idx[1]]


def _ring(dist: np.ndarray, nearest: np.ndarray) -> np.ndarray:
    """Each label's surroundings: the unlabelled pixels within BESIDE_PX of it, nearer to it than to any other.

    ``dist`` and ``nearest`` are :func:`_nearest` of the labels.
    """
    return np.where((dist > 0) & (dist <= BESIDE_PX), nearest, 0).astype(nearest.dtype)


def _pool(act: np.ndarray, labels: np.ndarray, n: int, weight: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-label sums of a K x h x w activation over each label's pixels (area-weighted at h x w) and weights."""
    import cv2
    from scipy.ndimage import find_objects

    k, h, w = act.shape
    H, W = labels.shape
    sums = np.zeros((n, k), np.float64)
    mass = np.zeros(n, np.float64)
    # whole cells (the photo a multiple of the layer): each label's box, grown to whole cells, is resized alone,
    # the same cell means as the whole photo's at the cost of the box (4x less at 3 cracks, 10x at 40)
    whole = H % h == 0 and W % w == 0
    fy, fx = H // h, W // w
    boxes = find_objects(labels, max_label=n) if whole else [(slice(0, H), slice(0, W))] * n
    for j, sl in enumerate(boxes, 1):
        if sl is None:
            continue
        if whole:
            cy, cx = slice(sl[0].start // fy, -(-sl[0].stop // fy)), slice(sl[1].start // fx, -(-sl[1].stop // fx))
            box = (slice(cy.start * fy, cy.stop * fy), slice(cx.start * fx, cx.stop * fx))
        else:
            cy, cx, box = slice(0, h), slice(0, w), sl
        m = (labels[box] == j).astype(np.float32)
        if weight is not None:
            m *= weight[box]
        if not m.any():
            continue
        small = cv2.resize(m, (cx.stop - cx.start, cy.stop - cy.start), interpolation=cv2.INTER_AREA)
        sums[j - 1] = (act[:, cy, cx] * small[None]).reshape(k, -1).sum(axis=1)
        mass[j - 1] = small.sum()
    return sums, mass


@dataclass(frozen=True)
class CrackAnalysis:
    """The cracks of one photo.

    Attributes:
        records: One dict per crack (crack id = its rank by area, 1 = largest): bounding box, geometry,
            confidence and evidence (see the module docstring).
        features: N x D float32 pooled activations (rows in crack order), for the atlas (saved as float16).
        feature_layers: The layers (and their widths) concatenated in ``features``.
        labels: H x W int32 crack labels (0 = background; saved, so a crack can be checked against ground
            truth later without the model).
        small: Components under the minimum area (not recorded).
        thumbs: Per crack, its padded bounding box of the photo (RGB), of the crack mask and of its own map
            (uint8, longest side at most :data:`THUMB_PX`): what the review queue, the report and the atlas
            show without reading the photos again.
        evidence_layer: The layer of the evidence maps.
        missed: With a ground truth: one dict per missed ground-truth crack (region id, box, area, mean
            probability), with ``missed_features`` and ``missed_thumbs`` like the cracks'.
    """

    records: list[dict[str, Any]]
    features: np.ndarray
    feature_layers: list[list[Any]]
    labels: np.ndarray
    small: int
    thumbs: list[dict[str, np.ndarray]]
    evidence_layer: str = ""
    missed: list[dict[str, Any]] = field(default_factory=list)
    missed_features: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    missed_thumbs: list[dict[str, np.ndarray]] = field(default_factory=list)

    def save(self, path: Any) -> None:
        """Write the features and thumbnails as one compressed ``.npz`` (no pickled objects), atomically."""
        from segcam.utils.files import save_npz

        arrays: dict[str, np.ndarray] = {"features": self.features.astype(np.float16),
                                         "crack": np.asarray([r["crack"] for r in self.records], np.int32),
                                         "labels": self.labels.astype(np.uint16 if self.labels.max() < 65535 else np.uint32)}
        for k, t in enumerate(self.thumbs):
            for key, arr in t.items():
                arrays[f"{key}_{k + 1}"] = arr
        if self.missed:
            arrays["missed_features"] = self.missed_features.astype(np.float16)
            for k, t in enumerate(self.missed_thumbs):
                for key, arr in t.items():
                    arrays[f"missed_{key}_{k + 1}"] = arr
        save_npz(path, **arrays)


#: Longest side of a crack's thumbnails (photo, mask, map), in pixels.
THUMB_PX = 96
#: Context around a crack's bounding box in its thumbnails, in pixels.
THUMB_PAD = 12


def _thumbs(rgb: np.ndarray, crack: np.ndarray, cam: np.ndarray, origin: tuple[int, int],
            box: tuple[int, int, int, int]) -> dict[str, np.ndarray]:
    """Thumbnails of one crack.

    ``crack`` and ``cam`` are crops whose top-left pixel is ``origin`` (y, x) in the photo and that cover the
    crack's box grown by :data:`THUMB_PAD` (clamped to the photo).
    """
    import cv2

    x0, y0, x1, y1 = box
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = max(0, x0 - THUMB_PAD), max(0, y0 - THUMB_PAD), min(w, x1 + THUMB_PAD), min(h, y1 + THUMB_PAD)
    scale = min(1.0, THUMB_PX / max(x1 - x0, y1 - y0))
    size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
    oy, ox = origin
    win = (slice(y0 - oy, y1 - oy), slice(x0 - ox, x1 - ox))
    photo = cv2.resize(np.ascontiguousarray(rgb[y0:y1, x0:x1]), size, interpolation=cv2.INTER_AREA)
    mask = cv2.resize(crack[win].astype(np.uint8) * 255, size, interpolation=cv2.INTER_AREA)
    m = np.clip(cam[win], 0, None)
    top = float(m.max())
    unit = (m / top * 255).astype(np.uint8) if top > 0 else np.zeros(m.shape, np.uint8)
    return {"photo": photo, "mask": mask, "map": cv2.resize(unit, size, interpolation=cv2.INTER_AREA)}


def _feature_layers(model: Any, layer: str) -> list[str]:
    from segcam.cam.layers import LayerNotFoundError, resolve_layers

    out = [layer]
    for extra in FEATURE_EXTRA_LAYERS:
        try:
            resolve_layers(model, [extra])
            out.append(extra)
        except LayerNotFoundError:
            continue
    return out


def analyse_cracks(model: Any, rgb: np.ndarray, category: int = 1, pixel_size: float | None = None,
                   evidence: str = "zones", tile: int | None = None, tile_overlap: int = 128,
                   min_area: int = MIN_AREA, layer: str | None = None,
                   explain_fn: Callable[..., Any] | None = None, shared: Any = None,
                   truth: np.ndarray | None = None) -> CrackAnalysis:
    """Measure, explain and pool every predicted crack of one photo.

    Args:
        model: A :class:`segcam.models.zoo.ZooModel`.
        rgb: H x W x 3 uint8.
        category: The crack class.
        pixel_size: Millimetres per pixel (adds the ``*_mm`` columns).
        evidence: ``zones`` (one pass) or ``exact`` (one backward pass per crack).
        tile: Explain tile by tile above this side (as ``--tile``); None = the whole photo.
        tile_overlap: Pixels shared by neighbouring tiles.
        min_area: Smallest component recorded.
        layer: The evidence layer (default: the ``component`` recipe's, ``seg_head`` where the model lacks it).
        explain_fn: Replaces :func:`segcam.cam.engine.explain` (tests).
        shared: An explanation of the predicted-crack target of this photo that kept activations and
            gradients (``keep_activations``) of the evidence and feature layers: the evidence map is then
            the recipe's method applied to them, with no pass of its own (the batch pipeline adds these
            layers to its own pass when its score is :data:`EVIDENCE_SCORE`).
        truth: The photo's ground-truth mask: each crack gets ``truth`` (``true``/``false``, the rule of
            :func:`segcam.survey.review.label_cracks`), and every ground-truth crack the prediction missed
            (under half of it within the tolerance of a predicted pixel) becomes a *missed region* with its
            own features and thumbnails (whole photos only; tiled photos record no missed regions).

    Raises:
        ValueError: An unknown evidence mode, or a mask of another size.
    """
    import warnings

    from segcam.cam.defaults import DEFAULTS
    from segcam.cam.engine import EmptyTargetWarning, explain
    from segcam.cam.layers import LayerNotFoundError, resolve_layers
    from segcam.cam.targets import ComponentTarget, PredictedTarget
    from segcam.survey.tiling import explain_tiled

    if evidence not in EVIDENCE_MODES:
        raise ValueError(f"unknown crack evidence mode {evidence!r}; use one of {', '.join(EVIDENCE_MODES)}")
    explain_fn = explain_fn or explain
    recipe = DEFAULTS["component"]
    layer = layer or recipe.layer
    try:
        resolve_layers(model, [layer])
    except LayerNotFoundError:
        layer = "seg_head"
    feat_layers = _feature_layers(model, layer)
    tiled = tile is not None and max(rgb.shape[:2]) > tile
    pooled: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    labels_holder: dict[str, Any] = {}

    def pool_tile(y0: int, x0: int, win: np.ndarray, res: Any) -> None:
        lab = labels_holder.get("labels")
        if lab is None:
            return
        box = (slice(y0, y0 + win.shape[0]), slice(x0, x0 + win.shape[1]))
        for key in feat_layers:
            for name, crop in ((key, lab[box]), (key + RING_SUFFIX, labels_holder["ring"][box])):
                s, m = _pool(res.maps[key].activations, crop, labels_holder["n"], win)
                if name in pooled:
                    pooled[name] = (pooled[name][0] + s, pooled[name][1] + m)
                else:
                    pooled[name] = (s, m)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyTargetWarning)
        if shared is not None and not tiled and all(
                k in shared.maps and shared.maps[k].gradients is not None for k in feat_layers):
            res = _with_method_maps(shared, feat_layers, recipe.method)
        elif tiled:
            # the prediction first (the labels the tiles pool into), then the maps
            from segcam.survey.tiling import _network_forward, predict_tiled

            logits = predict_tiled(_network_forward(model), rgb, tile, tile_overlap)
            labels_holder["labels"], labels_holder["n"], labels_holder["total"] = _label(
                logits.argmax(axis=0) == category, min_area)
            labels_holder["nearest"] = _nearest(labels_holder["labels"])
            labels_holder["ring"] = _ring(*labels_holder["nearest"])
            res = explain_tiled(model, rgb, feat_layers, PredictedTarget(category), recipe.method, tile=tile,
                                overlap=tile_overlap, score=EVIDENCE_SCORE, on_tile=pool_tile, keep_activations=True)
        else:
            res = explain_fn(model, rgb, feat_layers, PredictedTarget(category), recipe.method, score=EVIDENCE_SCORE,
                             keep_activations=True)[0]
    pred = res.prediction == category
    if tiled:  # the tiles pooled into the labels of the same stitched prediction
        labels, n, components = labels_holder["labels"], labels_holder["n"], labels_holder["total"]
    else:
        labels, n, components = _label(pred, min_area)
    small = components - n
    missed_labels, m_missed = np.zeros_like(labels), 0
    if truth is not None:
        from segcam.survey.review import label_cracks

        truth = np.asarray(truth) > 0
        if truth.shape != labels.shape:
            raise ValueError(f"the ground-truth mask is {truth.shape[1]}x{truth.shape[0]} but the photo is "
                             f"{labels.shape[1]}x{labels.shape[0]}; give the photo's own mask")
        if not tiled:
            gt, n_gt = crack_labels(truth, min_area)
            found = label_cracks(gt, pred)
            keep = [j + 1 for j, hit in enumerate(found) if not hit]
            remap = np.zeros(n_gt + 1, np.int32)
            remap[keep] = np.arange(1, len(keep) + 1, dtype=np.int32)
            missed_labels, m_missed = remap[gt], len(keep)
    if not tiled:
        pool_labels = labels.copy()
        pool_labels[(missed_labels > 0) & (labels == 0)] = n + missed_labels[(missed_labels > 0) & (labels == 0)]
        nearest = _nearest(pool_labels)
        ring = _ring(*nearest)
        for key in feat_layers:
            pooled[key] = _pool(res.maps[key].activations, pool_labels, n + m_missed)
            pooled[key + RING_SUFFIX] = _pool(res.maps[key].activations, ring, n + m_missed)
    prob = res.probability if res.probability is not None else pred.astype(np.float32)
    # the zones are the nearest-crack map of the cracks alone: the pooling's one when no missed region was added
    if evidence != "zones":
        zones = None
    elif tiled:
        zones = labels_holder["nearest"][1]
    else:
        zones = nearest[1] if m_missed == 0 else _nearest(labels)[1]
    records: list[dict[str, Any]] = []
    thumbs: list[dict[str, np.ndarray]] = []
    from scipy.ndimage import find_objects

    boxes = find_objects(labels, max_label=n)
    context = [k for k in feat_layers if k != layer]
    ev_map = res.maps[layer].upsampled
    ctx_map = res.maps[context[0]].upsampled if context else None
    if zones is not None:  # per-zone totals and maxima of the maps, once per photo
        from scipy.ndimage import maximum

        pos = np.clip(ev_map, 0, None)
        totals = np.bincount(zones.ravel(), weights=pos.ravel(), minlength=n + 1)
        ctx_totals = (np.bincount(zones.ravel(), weights=np.clip(ctx_map, 0, None).ravel(), minlength=n + 1)
                      if ctx_map is not None else None)
        # both faster than np.maximum.at (16 ms at 544x384)
        tops = np.zeros(n + 1, np.float64)
        if n <= 8:  # a masked maximum per zone is cheaper than ndimage's sort for a few cracks
            for j in range(1, n + 1):
                tops[j] = float(pos[zones == j].max())
        else:
            tops[1:] = maximum(pos, labels=zones, index=np.arange(1, n + 1))
    pad = max(BESIDE_PX, BAND_PX) + 1
    h, w = labels.shape
    for j in range(1, n + 1):
        sl = boxes[j - 1]
        rec: dict[str, Any] = {"crack": j, "x0": int(sl[1].start), "y0": int(sl[0].start), "x1": int(sl[1].stop),
                               "y1": int(sl[0].stop)}
        # everything per crack is computed on its box grown by the farthest distance that matters
        grown = (slice(max(0, sl[0].start - pad), min(h, sl[0].stop + pad)),
                 slice(max(0, sl[1].start - pad), min(w, sl[1].stop + pad)))
        crack_c = labels[grown] == j
        inner = (slice(sl[0].start - grown[0].start, sl[0].stop - grown[0].start),
                 slice(sl[1].start - grown[1].start, sl[1].stop - grown[1].start))
        rec.update(measure_crack(crack_c[inner], pixel_size))
        p = prob[grown][crack_c]
        rec.update(mean_prob=round(float(p.mean()), 4), min_prob=round(float(p.min()), 4))
        box = (rec["x0"], rec["y0"], rec["x1"], rec["y1"])
        if evidence == "exact":
            ys, xs = np.nonzero(crack_c)
            target = ComponentTarget(category, x=int(xs[0]) + grown[1].start, y=int(ys[0]) + grown[0].start)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", EmptyTargetWarning)
                if tiled:
                    own = explain_tiled(model, rgb, [layer], target, recipe.method, tile=tile, overlap=tile_overlap,
                                        score=EVIDENCE_SCORE)
                else:
                    own = explain_fn(model, rgb, [layer], target, recipe.method, score=EVIDENCE_SCORE)[0]
            own_full = np.clip(own.maps[layer].upsampled.astype(np.float64), 0, None)
            own_c, total, top = own_full[grown], float(own_full.sum()), float(own_full.max())
            ctx_c = np.clip(ctx_map[grown], 0, None) if ctx_map is not None else None
            ctx_total = float(np.clip(ctx_map, 0, None).sum()) if ctx_map is not None else 0.0
        else:
            zone_c = zones[grown] == j
            own_c = np.where(zone_c, np.clip(ev_map[grown], 0, None), 0.0)
            total, top = float(totals[j]), float(tops[j])
            ctx_c = np.where(zone_c, np.clip(ctx_map[grown], 0, None), 0.0) if ctx_map is not None else None
            ctx_total = float(ctx_totals[j]) if ctx_totals is not None else 0.0
        dist = _crop_distance(crack_c)
        rec.update(_shares(own_c, dist, total))
        rec.update(_shape(own_c, dist, crack_c, top))
        if ctx_c is not None:  # the semantic layer's view of the same crack: does it also point at the crack?
            rec["evidence_context_band"] = _shares(ctx_c, dist, ctx_total)["evidence_band"]
        # the grown box (pad >= THUMB_PAD) holds the thumbnails' window: no full-photo arrays per crack
        thumbs.append(_thumbs(rgb, crack_c, own_c, (grown[0].start, grown[1].start), box))
        records.append(rec)
    if truth is not None:
        from segcam.survey.review import label_cracks

        for rec, ok in zip(records, label_cracks(labels, truth)):
            rec["truth"] = "true" if ok else "false"
    missed, missed_thumbs = [], []
    if m_missed:
        for k, sl in enumerate(find_objects(missed_labels, max_label=m_missed), 1):
            win = (slice(max(0, sl[0].start - THUMB_PAD), sl[0].stop + THUMB_PAD),
                   slice(max(0, sl[1].start - THUMB_PAD), sl[1].stop + THUMB_PAD))
            region = missed_labels[win] == k
            missed.append({"region": k, "x0": int(sl[1].start), "y0": int(sl[0].start), "x1": int(sl[1].stop),
                           "y1": int(sl[0].stop), "area": int(region.sum()),
                           "mean_prob": round(float(prob[win][region].mean()), 4)})
            box = (missed[-1]["x0"], missed[-1]["y0"], missed[-1]["x1"], missed[-1]["y1"])
            missed_thumbs.append(_thumbs(rgb, region, ev_map[win], (win[0].start, win[1].start), box))
    parts, widths = [], []
    total = n + m_missed
    for key in [*feat_layers, *(k + RING_SUFFIX for k in feat_layers)]:
        s, m = pooled.get(key, (np.zeros((total, 0)), np.zeros(total)))
        parts.append(s / np.maximum(m, 1e-12)[:, None])
        widths.append([key, int(s.shape[1])])
    features = np.concatenate(parts, axis=1).astype(np.float32) if parts else np.zeros((total, 0), np.float32)
    return CrackAnalysis(records, features[:n], widths, labels, small, thumbs, layer, missed, features[n:],
                         missed_thumbs)


def _with_method_maps(shared: Any, layers: Sequence[str], method: str) -> Any:
    """``shared`` with the maps of ``layers`` recomputed by ``method`` from their kept activations and gradients."""
    import dataclasses

    from segcam.cam.methods import get_method
    from segcam.cam.scores import resize_maps

    cam = get_method(method)
    size = shared.prediction.shape
    maps = dict(shared.maps)
    for key in layers:
        m = shared.maps[key]
        raw = cam.cam(m.activations[None], m.gradients[None])[0]
        up = resize_maps(raw[None], size)[0] if not shared.empty_target else np.zeros(size, np.float32)
        maps[key] = dataclasses.replace(m, raw=raw, upsampled=up)
    return dataclasses.replace(shared, maps=maps)


#: Columns of ``cracks.csv``, in order (``*_mm`` only with a pixel size; ``review_score`` and ``review_rank``
#: from :mod:`segcam.survey.review`).
CRACK_FIELDS = ("image", "name", "crack", "x0", "y0", "x1", "y1", "area", "length", "mean_width", "median_width",
                "max_width", "orientation", "mean_prob", "min_prob", "evidence_on", "evidence_beside", "evidence_far",
                "evidence_band", "evidence_where", "evidence_total", "evidence_contrast", "evidence_peak",
                "evidence_context_band", "truth", "pixel_size", "length_mm", "mean_width_mm",
                "median_width_mm", "max_width_mm", "review_score", "review_rank")


def records_for_csv(image: str, name: str, records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of ``cracks.csv``: the image and its output stem, then each crack's record (every column present)."""
    return [{k: {"image": image, "name": name, **r}.get(k, "") for k in CRACK_FIELDS} for r in records]


def read_crack_features(path: Any, with_labels: bool = False) -> dict[str, Any]:
    """Only the ``features`` and ``crack`` ids (and the crack labels) of a crack file: what an atlas needs.

    Raises:
        ValueError: Not a crack file of this segcam, or one cut short or damaged (the message names the file and
            what is wrong).
    """
    import zipfile

    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError("a single .npy array, not an .npz archive")
        with z:
            if "features" not in z.files or "crack" not in z.files:
                raise ValueError("no features")
            out = {"features": z["features"].astype(np.float32), "crack": z["crack"],
                   "missed_features": z["missed_features"].astype(np.float32) if "missed_features" in z.files else None}
            out["labels"] = z["labels"] if with_labels and "labels" in z.files else None
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path} is not a segcam crack file ({exc or type(exc).__name__}); rerun segcam explain "
                         "(or segcam survey) into a new --out") from None
    _check_crack_arrays(path, out)
    return out


def _check_crack_arrays(path: Any, data: dict[str, Any]) -> None:
    """Features of one row per crack id, finite; crack ids positive whole numbers found in the labels."""
    feats, ids = data["features"], np.asarray(data["crack"])
    bad = None
    if feats.ndim != 2 or ids.ndim != 1 or len(feats) != len(ids):
        bad = f"{len(feats)} feature rows for {len(ids)} crack ids"
    elif not np.issubdtype(ids.dtype, np.integer) or (len(ids) and ids.min() < 1):
        bad = "crack ids that are not positive whole numbers"
    elif not np.isfinite(feats).all() or (data.get("missed_features") is not None
                                          and not np.isfinite(data["missed_features"]).all()):
        bad = "features that are not finite numbers (NaN or infinity)"
    elif data.get("labels") is not None and len(ids) and (data["labels"].ndim != 2 or ids.max() > data["labels"].max()):
        bad = "crack ids that are not in its crack labels"
    if bad:
        raise ValueError(f"{path} is damaged ({bad}); rerun segcam explain (or segcam survey) into a new --out")


def read_crack_thumb(path: Any, k: int, missed: bool = False) -> dict[str, np.ndarray]:
    """The thumbnails (photo, mask, map) of the ``k``-th crack (1-based; ``missed``: of the k-th missed crack)."""
    prefix = "missed_" if missed else ""
    with np.load(path, allow_pickle=False) as z:
        return {key: z[f"{prefix}{key}_{k}"] for key in ("photo", "mask", "map") if f"{prefix}{key}_{k}" in z.files}


def read_crack_file(path: Any) -> dict[str, Any]:
    """Read a ``<stem>__cracks.npz``: ``features`` (N x D float32), ``crack`` ids and per-crack thumbnails.

    Raises:
        ValueError: Not a crack file of this segcam (the message names the file and the fix).
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} is not a segcam crack file ({exc}); rerun segcam explain into a new --out") from None
    if "features" not in data or "crack" not in data:
        raise ValueError(f"{path} is not a segcam crack file (no features); rerun segcam explain into a new --out")
    thumbs = []
    for k in range(1, len(data["crack"]) + 1):
        thumbs.append({key: data.get(f"{key}_{k}") for key in ("photo", "mask", "map")})
    return {"features": data["features"].astype(np.float32), "crack": data["crack"], "thumbs": thumbs,
            "labels": data.get("labels")}
