"""``segcam survey``: every crack of a survey found, measured, explained and ranked at about the speed of prediction.

A :class:`SurveyJob` runs in the batch pipeline of :func:`segcam.survey.batch.run_explain` (the same run
folder, journal, resume, unique stems, kill safety and Ray engine as ``segcam explain``) and writes per photo
its prediction mask and ``<stem>__cracks.npz`` (thumbnails and features), and per run ``cracks.csv`` with the
review score and rank: what ``segcam atlas``, ``segcam report`` and the app's run browser read. It writes no
whole-photo heatmaps.

Per photo: :func:`segcam.survey.photo.photo_cracks` (:func:`segcam.survey.passes.photo_pass` on an export cached
per input size, large photos in tiles by default, then :func:`segcam.survey.local.local_cracks`: records from
windows around each crack).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from segcam.survey.batch import TILED_MAX_SIDE, model_meta
from segcam.survey.photo import DEFAULT_TILE, evidence_layers, photo_cracks
from segcam.utils.files import safe_name, save_png

__all__ = ["SurveyJob"]


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
