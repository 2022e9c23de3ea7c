"""``segcam survey``: every crack of a survey found, measured, explained and ranked at about the speed of prediction.

A :class:`SurveyJob` runs in the batch pipeline of :func:`segcam.survey.batch.run_explain` (the same run
folder, journal, resume, unique stems, kill safety and Ray engine as ``segcam explain``) and writes per photo
its prediction mask and ``<stem>__cracks.npz`` (thumbnails and features), and per run ``cracks.csv`` with the
review score and rank: what ``segcam atlas``, ``segcam report`` and the app's run browser read. It writes no
whole-photo heatmaps.

Per photo: :func:`segcam.survey.passes.photo_pass` (an export cached per input size; large photos in tiles
by default) and :func:`segcam.survey.local.local_cracks` (records from windows around each crack).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np

from segcam.survey.batch import TILED_MAX_SIDE, model_meta
from segcam.utils.files import safe_name, save_png

__all__ = ["DEFAULT_TILE", "DygraphPredictor", "SurveyJob", "evidence_layers", "photo_cracks", "predictor_for"]

#: Photos with a side above this are predicted and explained in tiles of this side (``--tile``).
DEFAULT_TILE = 1024


def evidence_layers(model: Any) -> tuple[str, ...]:
    """The layers of a model's crack evidence and features.

    The ``component`` recipe's layer (``seg_head`` where the model lacks it), then ``low3`` where the model has it.
    """
    from segcam.cam.defaults import DEFAULTS
    from segcam.cam.layers import LayerNotFoundError, resolve_layers
    from segcam.survey.cracks import FEATURE_EXTRA_LAYERS

    out = []
    for layer in (DEFAULTS["component"].layer, *FEATURE_EXTRA_LAYERS):
        try:
            resolve_layers(model, [layer])
        except LayerNotFoundError:
            continue
        out.append(layer)
    return tuple(out) if out and out[0] == DEFAULTS["component"].layer else ("seg_head",)


#: Export predictors of this process, by model, weights, input size, outputs, class and threads (most recent last).
_PREDICTORS: dict[tuple[Any, ...], Any] = {}
#: Sessions kept open at most (photos of many sizes: the least recently built is closed).
MAX_PREDICTORS = 8


def predictor_for(model: Any, category: int = 1, threads: int = 2, cache: str | None = None,
                  warn: Callable[[str], None] | None = None, evidence: bool = True) -> Callable[[tuple[int, int]], Any]:
    """``size -> predictor`` of ``model``: its ``evidence`` export where it has one (and ``evidence``), else ``logits``.

    Each export is built or read from the cache (:func:`segcam.models.export_cache.cached_predictor`) once per
    process and size.
    """
    from segcam.models.export import ExportError
    from segcam.models.export_cache import cached_predictor
    from segcam.models.split import split_for

    outputs = "evidence" if evidence and split_for(model) is not None and category in (0, 1) else "logits"

    def get(size: tuple[int, int]) -> Any:
        key = (model.name, model.weights_sha256, tuple(size), outputs, category, threads, cache)
        if key not in _PREDICTORS:
            if len(_PREDICTORS) >= MAX_PREDICTORS:
                _PREDICTORS.pop(next(iter(_PREDICTORS)))
            try:
                _PREDICTORS[key] = cached_predictor(model, size, outputs, threads=threads, cache=cache, warn=warn,
                                                    category=category)
            except ExportError as exc:  # a network the exporters cannot convert still runs, at dygraph speed
                if warn is not None:
                    warn(f"{model.name} could not be exported for {size[1]}x{size[0]} inputs ({exc}); predicting "
                         "with Paddle's dygraph instead (slower)")
                _PREDICTORS[key] = DygraphPredictor(model)
        return _PREDICTORS[key]

    return get


class DygraphPredictor:
    """The interface of :class:`segcam.models.export.Predictor` (logits only) over the model itself."""

    meta: ClassVar[dict[str, Any]] = {"outputs": "logits"}

    def __init__(self, model: Any) -> None:
        self.model, self.mean, self.std = model, model.mean, model.std

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """The main logits of normalised N x 3 x H x W input, at its size."""
        import paddle

        from segcam.cam.scores import main_logits

        with paddle.no_grad():
            return [main_logits(self.model.network(paddle.to_tensor(x)), x.shape[2:]).numpy()]


def photo_cracks(model: Any, rgb: np.ndarray, category: int = 1, tile: int = DEFAULT_TILE, overlap: int = 128,
                 pixel_size: float | None = None, truth: np.ndarray | None = None, threads: int = 2,
                 cache: str | None = None, warn: Callable[[str], None] | None = None,
                 progress: Callable[[int, int], None] | None = None, prediction: np.ndarray | None = None,
                 probability: np.ndarray | None = None, passed: Any = None) -> tuple[Any, Any]:
    """One photo's crack records (:func:`segcam.survey.local.local_cracks`) from an export's pass.

    Args:
        model: A :class:`segcam.models.zoo.ZooModel`.
        rgb: H x W x 3 uint8.
        category: The crack class.
        tile: Largest side in one pass.
        overlap: Pixels shared by neighbouring tiles.
        pixel_size: Millimetres per pixel.
        truth: Ground-truth mask (labels each crack).
        threads: Threads of the export runtime.
        cache: Export cache folder.
        warn: Told when an export is built.
        progress: Steps within the photo.
        prediction: The crack mask to record (another pass's, e.g. ``segcam explain``'s); default: the export's.
        probability: The class probability map that goes with ``prediction``.
        passed: The photo's :class:`segcam.survey.passes.PhotoPass` when the caller made it (with evidence).

    Returns:
        The :class:`segcam.survey.cracks.CrackAnalysis` (review scores added) and the
        :class:`segcam.survey.passes.PhotoPass`.
    """
    from segcam.survey.local import local_cracks
    from segcam.survey.passes import photo_pass
    from segcam.survey.review import score_records

    layers = evidence_layers(model)
    res = passed if passed is not None else photo_pass(model, rgb, category, layers,
                                                       predictor_for(model, category, threads, cache, warn), tile,
                                                       overlap, progress=progress)
    analysis = local_cracks(rgb, res.logits, category, res.layers, res.canvas, layers[0], pixel_size=pixel_size,
                            truth=truth, prediction=res.prediction if prediction is None else prediction,
                            probability=probability)
    score_records(analysis.records)
    return analysis, res


@dataclass(frozen=True)
class SurveyJob:
    """What ``segcam survey`` does with each photo.

    Attributes:
        model: The :class:`segcam.models.zoo.ZooModel`.
        tile: Largest side predicted in one pass; larger photos are tiled (:func:`segcam.survey.passes.plan_tiles`).
        tile_overlap: Pixels shared by neighbouring tiles.
        category: The crack class.
        pixel_size: Millimetres per pixel of every photo.
        pixel_sizes: Per-photo millimetres per pixel (``(file name or stem, mm)`` pairs; they win).
        truth: Ground-truth masks (a file or a folder of ``<image stem>.png``): labels each crack true or false.
        threads: CPU threads of the export runtime.
        cache: The export cache folder (None: :func:`segcam.models.export_cache.cache_root`).
        max_side: Largest photo side read.
        on_step: Told (steps done, steps in all) within a photo (prediction and evidence per tile).
    """

    model: Any
    tile: int = DEFAULT_TILE
    tile_overlap: int = 128
    category: int = 1
    pixel_size: float | None = None
    pixel_sizes: tuple[tuple[str, float], ...] = ()
    truth: str | None = None
    threads: int = 2
    cache: str | None = None
    max_side: int = TILED_MAX_SIDE
    on_step: Callable[[int, int], None] | None = field(default=None, compare=False, repr=False)

    #: Written into ``cracks.csv``.
    cracks = True
    #: How progress names the work.
    verb = "survey"

    def spec(self) -> dict[str, Any]:
        """The job as plain data (for Ray workers): every setting but the model and the callbacks."""
        return {"kind": "survey", "tile": self.tile, "tile_overlap": self.tile_overlap, "category": self.category,
                "pixel_size": self.pixel_size, "pixel_sizes": [list(p) for p in self.pixel_sizes], "truth": self.truth,
                "threads": self.threads, "cache": self.cache, "max_side": self.max_side}

    @classmethod
    def from_spec(cls, model: Any, spec: dict[str, Any]) -> SurveyJob:
        """The job :meth:`spec` describes, for ``model``."""
        kw = {k: v for k, v in spec.items() if k != "kind"}
        kw["pixel_sizes"] = tuple((str(a), float(b)) for a, b in kw.get("pixel_sizes", ()))
        return cls(model=model, **kw)

    def pixel_size_for(self, path: str | Path) -> float | None:
        """The pixel size of one photo: its row of ``pixel_sizes`` (file name, then stem), else ``pixel_size``."""
        from segcam.data.images import source_stem

        table = dict(self.pixel_sizes)
        return table.get(Path(str(path)).name, table.get(source_stem(path), self.pixel_size))

    def fingerprint(self) -> dict[str, Any]:
        """The settings that decide the outputs: a rerun resumes only when they are the same."""
        m = self.model
        return {"kind": "survey", "model": m.name, "weights_sha256": m.weights_sha256, "tile": self.tile,
                "tile_overlap": self.tile_overlap, "category": self.category, "max_side": self.max_side,
                "cracks": {"evidence": "local", "pixel_size": self.pixel_size,
                           "pixel_sizes": [list(p) for p in self.pixel_sizes], "truth": self.truth}}

    def compute(self, path: str | Path, name: str, warn: Callable[[str], None] | None = None) -> Any:
        """Predict one photo and record its cracks: what :meth:`write` writes.

        Raises:
            segcam.data.images.ImageError, FileNotFoundError, ValueError: A bad photo or mask (the batch records it).
        """
        from segcam.data.images import is_uri, read_image, read_image_uri
        from segcam.survey.batch import load_truth

        rgb = (read_image_uri if is_uri(path) else read_image)(path, max_side=self.max_side)
        truth = load_truth(self.truth, path, warn)
        t0 = time.perf_counter()
        analysis, res = photo_cracks(self.model, rgb, self.category, tile=self.tile, overlap=self.tile_overlap,
                                     pixel_size=self.pixel_size_for(path), truth=truth, threads=self.threads,
                                     cache=self.cache, warn=warn, progress=self.on_step)
        timing = {"seconds": round(time.perf_counter() - t0, 3), "tiles": len(res.tiles), "engine": res.engine}
        return name, rgb.shape[:2], analysis, timing

    def write(self, computed: Any, path: str | Path, out: Path, identity: str | None = None) -> dict[str, Any]:
        """Write one photo's prediction mask and crack file; returns its manifest record.

        Raises:
            OSError: The outputs could not be written.
        """
        import os

        from segcam.data.images import is_uri

        name, (height, width), cracks, timing = computed
        stem = safe_name(name)
        pred = f"{stem}__prediction.png"
        save_png(out / pred, (cracks.labels > 0).astype(np.uint8) * 255)
        crack_file = f"{stem}__cracks.npz"
        cracks.save(out / crack_file)
        ps = self.pixel_size_for(path)
        n_pixels = int(sum(r["area"] for r in cracks.records))
        rec: dict[str, Any] = {"name": name, "width": int(width), "height": int(height),
                               "target": f"predicted crack (class {self.category})", "category": self.category,
                               "target_pixels": n_pixels, "empty_target": False, "prediction": pred, "layers": {},
                               "source_id": identity, "crack_file": crack_file,
                               "cracks": [{**r, "pixel_size": ps if ps is not None else ""} for r in cracks.records],
                               "small_components": cracks.small, "crack_features": cracks.feature_layers,
                               "crack_evidence_layer": cracks.evidence_layer, "survey": timing}
        if is_uri(path):
            rec.update(image=str(path), image_relative=None, status="ok")
        else:
            rec.update(image=str(Path(path).resolve()),
                       image_relative=os.path.relpath(Path(path).resolve(), out.resolve()), status="ok")
        return rec

    def manifest_builder(self, arguments: dict[str, Any] | None = None) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
        """The run's manifest builder: a ``segcam.explain`` manifest without maps, so every reader of runs reads it."""
        from segcam.cam.defaults import DEFAULTS
        from segcam.cam.result import build_manifest
        from segcam.cam.scores import SCORES
        from segcam.survey.cracks import EVIDENCE_SCORE

        layers = evidence_layers(self.model)
        meta = {"model": model_meta(self.model), "layers": [], "target": f"predicted crack (class {self.category})",
                "category": self.category, "score": {"name": EVIDENCE_SCORE, "formula": SCORES[EVIDENCE_SCORE]}}

        def manifest(records: list[dict[str, Any]]) -> dict[str, Any]:
            man = build_manifest(meta, DEFAULTS["component"].method, records, "inferno", None, "per_map",
                                 arguments=arguments)
            man["settings"] = self.fingerprint()
            man["survey"] = {"evidence_layers": list(layers), "tile": self.tile, "tile_overlap": self.tile_overlap}
            return man

        return manifest
