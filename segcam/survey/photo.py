"""One photo through the cached export: its prediction, crack evidence and per-crack records.

What ``segcam survey`` does with each photo, and ``segcam explain`` with the crack records of a tiled photo:
:func:`predictor_for` (the export of each input size, built or read from the cache once per process),
:func:`segcam.survey.passes.photo_pass` and :func:`segcam.survey.local.local_cracks`, in :func:`photo_cracks`.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

import numpy as np

__all__ = ["DEFAULT_TILE", "MAX_PREDICTORS", "DygraphPredictor", "evidence_layers", "photo_cracks", "predictor_for"]

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

    def run(self, x: np.ndarray, release: bool = False) -> list[np.ndarray]:
        """The main logits of normalised N x 3 x H x W input, at its size (``release``: as for exports)."""
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
