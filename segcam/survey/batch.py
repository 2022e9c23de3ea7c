"""The batch pipeline: read -> predict -> explain -> write outputs, manifest and summary rows.

``segcam explain`` (and anything else that explains a list of photos) calls
:func:`run_explain`, with the local engine (this process) or the Ray engine
(:mod:`segcam.survey.ray_engine`). Both run the one per-image loop,
:func:`explain_each` (:func:`compute_image` then :func:`write_image`, writing on
a thread while the next image is computed), and the output folder's
bookkeeping is :class:`RunFolder`:

* an exclusive lock on the folder (a second run into it is refused);
* a journal (``.segcam-journal.jsonl``) appended and flushed as each image
  finishes, from which ``manifest.json`` and ``summary.csv`` are rewritten
  atomically (at most every :data:`REWRITE_SECONDS` and at the end), so a
  killed run records what finished and a rerun of the same command resumes,
  skipping images whose outputs are complete;
* stale temporary files of a killed run are removed; ``overwrite`` removes the
  old run's files (and only those) first;
* output stems are unique after sanitising (Unicode letters kept; compared
  case-insensitively against every other final name).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
import warnings
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from segcam.cam.result import ARTIFACTS, ImageExplanation
from segcam.utils.files import safe_name, save_csv, save_csv_fields, save_json
from segcam.utils.progress import NullProgress, Progress

__all__ = ["BatchSummary", "EngineLoop", "ExplainJob", "RunFolder", "RunFolderError", "check_output_dir",
           "compute_image", "error_entry", "explain_each", "is_output_name", "local_loop", "ok_row", "output_stems", "preflight",
           "run_explain", "write_image"]

JOURNAL = ".segcam-journal.jsonl"
LOCK = ".segcam.lock"
#: The write probe of :func:`check_output_dir` (left behind only by a kill between its two calls).
PROBE_RE = re.compile(r"^\.segcam-probe-\d+\.tmp$")
#: Manifest and summary are rewritten at most this often (and at the end); the journal has every image at once.
REWRITE_SECONDS = 2.0
#: Largest side read when tiling (a 50 MP photo is 8660 x 5773); tiles keep memory bounded, not this.
TILED_MAX_SIDE = 16384
#: Images explained but not yet written that a batch may hold (bounds memory; writing overlaps computing).
MAX_PENDING_WRITES = 4
#: Suffixes of per-image outputs (``<stem>__...``): the only files besides RUN_FILES a run ever deletes.
OUTPUT_SUFFIXES = (".png", ".jpg", ".npz", ".npy")
#: Run-level files a run writes (and, with ``--overwrite``, removes).
RUN_FILES = ("manifest.json", "summary.csv", "cracks.csv", JOURNAL)
#: Files that describe a run and are made from it later (``segcam report``, ``segcam atlas``, the verdicts' table);
#: ``--overwrite`` removes them, so they never describe the old run. The verdict journal stays: a verdict applies
#: again wherever the photo and the crack are unchanged.
DERIVED_FILES = ("report.html", "cracks.geojson", "verdicts.csv", "atlas/atlas.json", "atlas/atlas.csv",
                 "atlas/atlas.pdf", "atlas/atlas.png")
SUMMARY_FIELDS = ("image", "name", "status", "error", "width", "height", "target_pixels", "empty_target", "seconds")


class RunFolderError(OSError):
    """The output folder cannot be used (locked, a file, not writable, another run's settings)."""


def output_stems(images: Sequence[str | Path], previous: Mapping[str, str | None] | None = None) -> list[str]:
    """Unique, file-system-safe output stems for ``images`` (in order).

    Characters other than Unicode letters, digits, ``_``, ``.`` and ``-`` become
    ``_`` (so ``"x y.jpg"`` -> ``x_y``, ``裂缝1.jpg`` -> ``裂缝1``). Clashes get
    ``-2``, ``-3``... chosen so that no stem equals, ignoring case, any other
    image's stem or any stem already given.

    Args:
        images: Paths or URIs.
        previous: Stems an earlier run into the same folder gave, mapped to their source
            (:func:`segcam.data.images.source_key`; None when unknown). An image from one of those sources
            gets its stem back; every other image avoids them, so a different photo with the same
            file name never takes over an earlier photo's outputs.
    """
    from segcam.data.images import source_key, source_stem

    previous = dict(previous or {})
    by_source: dict[str, str] = {}
    for stem, src in previous.items():
        if src is not None:
            by_source.setdefault(src, stem)
    bases = [safe_name(source_stem(p)) for p in images]
    base_count: dict[str, int] = {}
    for b in bases:
        base_count[b.casefold()] = base_count.get(b.casefold(), 0) + 1
    taken: set[str] = {n.casefold() for n in previous}
    out = []
    for p, b in zip(images, bases):
        again = by_source.pop(source_key(p), None) if by_source else None
        if again is not None:
            out.append(again)
            continue
        cand, k = b, 1
        while cand.casefold() in taken or (cand != b and cand.casefold() in base_count):
            k += 1
            cand = f"{b}-{k}"
        taken.add(cand.casefold())
        out.append(cand)
    return out


def is_output_name(file_name: str, stem: str) -> bool:
    """True if ``file_name`` is a name segcam's writers give an output of image ``stem`` in a run folder."""
    return ("/" not in file_name and "\\" not in file_name and file_name.startswith(f"{stem}__")
            and Path(file_name).suffix in OUTPUT_SUFFIXES)


@dataclass(frozen=True)
class ExplainJob:
    """What to do with each image of a batch (everything but the image itself).

    Attributes:
        model: The :class:`segcam.models.zoo.ZooModel`.
        layers: Layer names or aliases.
        method: CAM method name.
        method_args: Keyword arguments of the method.
        target: A parsed target (:func:`segcam.cam.targets.parse_target`); a ``(kind, path)`` tuple
            for per-image mask targets.
        target_spec: The target as the user wrote it (for the manifest).
        category: Class explained.
        cmap: Colormap of the PNGs.
        alpha: Heatmap weight in the overlay (at full heat for the heat-weighted overlay).
        overlay_mode: ``heat`` (transparent where the map is zero) or ``blend``
            (:data:`segcam.cam.overlay.OVERLAY_MODES`).
        input_scale: Run the network on each whole photo enlarged by this factor (maps and records stay at the
            photo's size); 1 = as it is, with a warning for photos smaller than :data:`SMALL_SIDE`.
        normalization: ``per_map`` or ``shared``.
        max_side: Longest image side accepted.
        downscale: Shrink larger images instead of refusing them.
        score: What is summed over the target (``logit``, ``margin``, ``prob``).
        fuse: Also write the fused maps of all layers (``fused_mean``, ``fused_product``).
        artifacts: What to write per image (:data:`segcam.cam.result.ARTIFACTS`).
        tile: Explain photos larger than this (pixels per side) tile by tile at full resolution
            (:mod:`segcam.survey.tiling`); None: whole photos only.
        tile_overlap: Overlap between tiles in pixels, blended smoothly.
        cracks: Also measure, explain and pool every predicted crack (:mod:`segcam.survey.cracks`):
            ``cracks.csv`` and a ``<stem>__cracks.npz`` per image.
        crack_evidence: ``zones`` (one pass) or ``exact`` (one backward pass per crack).
        pixel_size: Millimetres per pixel for every photo (adds the ``*_mm`` columns).
        pixel_sizes: Per-photo millimetres per pixel, ``(file name or stem, mm)`` pairs (a CSV's rows);
            they win over ``pixel_size``.
        truth: Ground-truth masks (a file, or a folder of ``<image stem>.png``): each crack is labelled
            true or false and missed cracks are recorded (:func:`segcam.survey.cracks.analyse_cracks`);
            a photo without a mask skips that, with one warning line.
    """

    model: Any
    layers: tuple[str, ...]
    method: str = "seg_grad_cam"
    method_args: dict[str, Any] = field(default_factory=dict)
    target: Any = None
    target_spec: str = "pred"
    category: int = 1
    cmap: str = "inferno"
    alpha: float | None = None
    normalization: str = "per_map"
    max_side: int = 2048
    downscale: bool = False
    score: str = "logit"
    fuse: bool = False
    artifacts: tuple[str, ...] = ARTIFACTS
    tile: int | None = None
    tile_overlap: int = 128
    cracks: bool = True
    crack_evidence: str = "zones"
    pixel_size: float | None = None
    pixel_sizes: tuple[tuple[str, float], ...] = ()
    truth: str | None = None
    overlay_mode: str = "heat"
    input_scale: float = 1.0
    #: Told (steps done, steps in all) within a tiled photo (not a setting: left out of the fingerprint and of Ray).
    on_step: Callable[[int, int], None] | None = field(default=None, compare=False, repr=False)

    def pixel_size_for(self, path: str | Path) -> float | None:
        """The pixel size of one photo: its row of ``pixel_sizes`` (file name, then stem), else ``pixel_size``."""
        from segcam.data.images import source_stem

        table = dict(self.pixel_sizes)
        name = Path(str(path)).name
        return table.get(name, table.get(source_stem(path), self.pixel_size))

    def compute(self, path: str | Path, name: str, warn: Callable[[str], None] | None = None) -> Any:
        """Read and explain one photo (and its cracks): what :meth:`write` writes.

        Raises:
            segcam.data.images.ImageError, FileNotFoundError, ValueError: A bad image or mask (the batch records it).
        """
        from segcam.utils.memory import release_freed_memory

        image, passed, photo = _compute(self, path, name, warn)
        cracks = compute_cracks(self, passed, path, warn=warn, photo=photo)
        release_freed_memory()  # the records' windows: the writer's images come next
        return image, cracks

    def write(self, computed: Any, path: str | Path, out: Path, identity: str | None = None) -> dict[str, Any]:
        """Write what :meth:`compute` returned; returns the photo's manifest record (see :func:`write_image`)."""
        image, cracks = computed
        return write_image(self, image, path, out, identity, cracks)

    def manifest_builder(self, arguments: dict[str, Any] | None = None) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
        """Check the settings on a blank image (:func:`preflight`) and return the run's manifest builder."""
        from segcam.cam.result import build_manifest

        meta_holder = preflight(self.model, self.layers, self.method, self.method_args, self.category, self.score)

        def manifest(records: list[dict[str, Any]]) -> dict[str, Any]:
            meta = {**meta_holder, "model": {**meta_holder.get("model", {}), **model_meta(self.model)},
                    "layers": meta_holder.get("layers", list(self.layers)), "target": self.target_spec,
                    "category": self.category}
            man = build_manifest(meta, self.method, records, self.cmap, self.alpha, self.normalization,
                                 arguments=arguments, overlay_mode=self.overlay_mode)
            man["settings"] = self.fingerprint()
            return man

        return manifest

    def fingerprint(self) -> dict[str, Any]:
        """The settings that decide the outputs: a rerun resumes only when they are the same."""
        m = self.model
        return {"model": m.name, "weights_sha256": m.weights_sha256, "layers": list(self.layers),
                "method": self.method, "method_args": dict(sorted(self.method_args.items())),
                "target": self.target_spec, "category": self.category, "cmap": self.cmap, "alpha": self.alpha,
                "overlay_mode": self.overlay_mode, "input_scale": self.input_scale,
                "normalization": self.normalization, "max_side": self.max_side, "downscale": self.downscale,
                "score": self.score, "fuse": self.fuse, "save": list(self.artifacts), "tile": self.tile,
                "tile_overlap": self.tile_overlap if self.tile else None,
                "cracks": {"evidence": self.crack_evidence, "pixel_size": self.pixel_size,
                           "pixel_sizes": [list(p) for p in self.pixel_sizes], "truth": self.truth}
                if self.cracks else None}


def model_meta(model: Any) -> dict[str, Any]:
    """The model as a run's manifest records it."""
    m = model
    return {"name": m.name, "tag": m.tag, "weights": m.weights, "weights_sha256": m.weights_sha256,
            "random_init": m.random_init, "partial": m.partial}


def load_truth(truth: str | None, path: str | Path, warn: Callable[[str], None] | None = None) -> np.ndarray | None:
    """The ground-truth mask of a photo from ``truth`` (a mask file or a folder of ``<stem>.png``), or None.

    A photo without a mask there gets None and one warning line.
    """
    from segcam.data.datasets import load_mask

    if not truth:
        return None
    try:
        return load_mask(_mask_for(Path(truth), path))
    except FileNotFoundError as exc:
        if warn is not None:
            warn(f"{Path(str(path)).name}: {exc}; its cracks are not labelled and missed cracks not recorded")
        return None


def _mask_for(target_dir: Path, image: str | Path) -> Path:
    from segcam.data.images import source_stem

    if target_dir.is_file():
        return target_dir
    stem = source_stem(image)
    for suffix in (".png", ".bmp", ".tif", ".jpg"):
        cand = target_dir / f"{stem}{suffix}"
        if cand.is_file():
            return cand
    raise FileNotFoundError(f"no mask named {stem}.png in {target_dir}; masks are matched by image stem")


def _target_for(job: ExplainJob, path: Path) -> Any:
    from segcam.cam.targets import ErrorRegionTarget, MaskTarget
    from segcam.data.datasets import load_mask

    if not isinstance(job.target, tuple):
        return job.target
    kind, where = job.target
    mpath = _mask_for(Path(where), path)
    truth = load_mask(mpath)
    if kind == "mask":
        return MaskTarget(job.category, truth, str(mpath))
    return ErrorRegionTarget(job.category, kind, truth, str(mpath))


def compute_image(job: ExplainJob, path: str | Path, name: str,
                  warn: Callable[[str], None] | None = None) -> ImageExplanation:
    """Read one image file and explain it (tile by tile when ``job.tile`` is set and the photo is larger).

    Raises:
        segcam.data.images.ImageError, FileNotFoundError, ValueError: A bad image or mask (the batch records it).
    """
    return _compute(job, path, name, warn)[0]


#: Photos whose shorter side is under this (the training crops' side) get :func:`small_photo_note`.
SMALL_SIDE = 256


class OncePerRun(str):
    """A warning line said for the first photo only (the same advice for every small crop of a survey).

    ``summary`` (with ``{n}``, the photos it concerned) is said once more at the end of the run when it
    concerned more than one photo.
    """

    summary = ""

    def __new__(cls, text: str, summary: str = "") -> OncePerRun:
        obj = super().__new__(cls, text)
        obj.summary = summary
        return obj


def small_photo_note(name: str, width: int, height: int) -> OncePerRun:
    """The warning for a photo smaller than the crops the networks were trained on (measured advice)."""
    return OncePerRun(f"{name} is {width}x{height}, smaller than the {SMALL_SIDE} px crops the networks were trained on, so "
            "thin cracks may be missed; try --input-scale 1.5 or 2 (the maps stay at the photo's size; measured "
            "with hrsegnet_b16 on the valid splits: GAPs crops mIoU 0.630 -> 0.667 at 1.5, ShadowCrack crops "
            "0.635 -> 0.680 at 2, masonry 224 px no gain; README 'Small photos'; said for the first such photo only)",
            f"{{n}} photos smaller than {SMALL_SIDE} px")


def no_crack_note(name: str) -> OncePerRun:
    """A photo with no predicted crack explained for its predicted crack: a normal result of a survey, said once."""
    return OncePerRun(f"{name}: no crack predicted, so its maps are all zero (a crack-free photo; the run's end counts "
                      "such photos)", "{n} photos with no predicted crack (their maps are all zero)")


def _compute(job: ExplainJob, path: str | Path, name: str,
             warn: Callable[[str], None] | None = None) -> tuple[ImageExplanation, ImageExplanation, Any]:
    """The explanation to write, the pass it came from, and for a tiled photo the export's pass.

    The pass keeps the crack analysis's layers when it shares them; the export's pass
    (:func:`segcam.survey.passes.photo_pass`) predicted a tiled photo (None otherwise).
    """
    from segcam.cam.engine import EmptyTargetWarning, explain
    from segcam.cam.targets import PredictedTarget
    from segcam.data.images import is_uri, read_image, read_image_uri

    max_side = job.max_side if not job.tile else max(job.max_side, TILED_MAX_SIDE)
    read = read_image_uri if is_uri(path) else read_image
    rgb = read(path, max_side=max_side, downscale=job.downscale)
    target = _target_for(job, path)
    photo = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", EmptyTargetWarning)
        if job.tile and max(rgb.shape[:2]) > job.tile:
            from segcam.survey.tiling import explain_tiled

            photo = _export_pass(job, rgb, warn)
            image = explain_tiled(job.model, rgb, list(job.layers), target, job.method, name=name,
                                  tile=job.tile, overlap=job.tile_overlap, score=job.score, progress=job.on_step,
                                  logits=photo.logits, **job.method_args)
            photo.logits = None  # 4 bytes a pixel a class: the explanation has what it needs of them
        else:
            extra = _shared_crack_layers(job, target)
            if job.input_scale == 1 and min(rgb.shape[:2]) < SMALL_SIDE and warn is not None:
                warn(small_photo_note(name, rgb.shape[1], rgb.shape[0]))
            image = explain(job.model, rgb, list(job.layers) + (extra or []), target, job.method, names=[name],
                            score=job.score, keep_activations=extra is not None, input_scale=job.input_scale,
                            **job.method_args)[0]
    for w in caught:
        if warn is None:
            continue
        predicted = target is None or isinstance(target, PredictedTarget)
        warn(no_crack_note(name) if issubclass(w.category, EmptyTargetWarning) and predicted else str(w.message))
    shown = _outputs_only(job, image)
    return (shown.with_fused() if job.fuse and len(job.layers) > 1 else shown), image, photo


def _export_pass(job: ExplainJob, rgb: np.ndarray, warn: Callable[[str], None] | None = None) -> Any:
    """A tiled photo's prediction by the model's cached export (and, for its crack records, the evidence grids)."""
    from segcam.survey.passes import photo_pass
    from segcam.survey.photo import evidence_layers, predictor_for

    records = job.cracks and job.crack_evidence == "zones"
    predictor = predictor_for(job.model, job.category, evidence=records, warn=warn)
    return photo_pass(job.model, rgb, job.category, evidence_layers(job.model), predictor, job.tile, job.tile_overlap,
                      evidence=records)


def _shares_pass(job: ExplainJob, target: Any) -> bool:
    """Whether the crack evidence can come from this job's own pass: the predicted target and a gradient method."""
    from segcam.cam.methods import get_method
    from segcam.cam.targets import PredictedTarget
    from segcam.survey.cracks import EVIDENCE_SCORE

    target = target if target is not None else PredictedTarget(job.category)
    return (job.cracks and isinstance(target, PredictedTarget) and target.category == job.category
            and job.score == EVIDENCE_SCORE and get_method(job.method, **job.method_args).uses_gradients)


def _shared_crack_layers(job: ExplainJob, target: Any) -> list[str] | None:
    """The crack analysis's layers that the job's own pass must add (hidden from its outputs).

    None when the crack analysis cannot share that pass (it then runs its own).
    """
    if not _shares_pass(job, target):
        return None
    from segcam.cam.defaults import DEFAULTS
    from segcam.cam.layers import LayerNotFoundError, resolve_layers
    from segcam.survey.cracks import FEATURE_EXTRA_LAYERS

    wanted = []
    for layer in (DEFAULTS["component"].layer, *FEATURE_EXTRA_LAYERS):
        try:
            resolve_layers(job.model, [layer])
        except LayerNotFoundError:
            continue
        wanted.append(layer)
    return [w for w in wanted if w not in job.layers]


def compute_cracks(job: ExplainJob, image: ImageExplanation, path: str | Path,
                   warn: Callable[[str], None] | None = None, photo: Any = None) -> Any:
    """The per-crack records of one explained photo (:func:`segcam.survey.cracks.analyse_cracks`), or None.

    ``photo``: the export's pass of a tiled photo (:func:`_export_pass`), whose evidence grids the records use.
    """
    if not job.cracks:
        return None
    from segcam.survey.cracks import analyse_cracks
    from segcam.survey.review import score_records

    truth = load_truth(job.truth, path, warn)
    if job.tile and max(image.image.shape[:2]) > job.tile and job.crack_evidence == "zones":
        # a large photo: records from windows around each crack, the evidence from an export's pass (the
        # explanation's own maps are of the job's layers and method); cracks as this explanation predicted them
        from segcam.survey.photo import photo_cracks

        return photo_cracks(job.model, image.image, job.category, job.tile, job.tile_overlap, job.pixel_size_for(path),
                            truth, warn=warn, prediction=image.prediction == job.category, probability=image.probability,
                            passed=photo)[0]
    analysis = analyse_cracks(job.model, image.image, job.category, pixel_size=job.pixel_size_for(path),
                              evidence=job.crack_evidence, tile=job.tile, tile_overlap=job.tile_overlap,
                              shared=image if any(m.gradients is not None for m in image.maps.values()) else None,
                              truth=truth)
    score_records(analysis.records)
    return analysis


def _outputs_only(job: ExplainJob, image: ImageExplanation) -> ImageExplanation:
    """The explanation without the layers added for the crack analysis, and without kept activations."""
    import dataclasses

    if all(k in job.layers and m.activations is None for k, m in image.maps.items()):
        return image
    maps = {k: dataclasses.replace(m, activations=None, gradients=None) for k, m in image.maps.items() if k in job.layers}
    return dataclasses.replace(image, maps=maps)


def write_image(job: ExplainJob, image: ImageExplanation, path: str | Path, out: Path,
                identity: str | None = None, cracks: Any = None) -> dict[str, Any]:
    """Write one explained image's artifacts into ``out``; returns its manifest record.

    ``identity`` (:func:`segcam.data.images.source_identity`, taken before the photo was read) is recorded as
    ``source_id``: a rerun skips the photo only while its source still has that identity.

    Raises:
        OSError: The outputs could not be written.
    """
    from segcam.data.images import is_uri

    rec = image.save(out, job.cmap, job.alpha, job.normalization, job.artifacts, overlay_mode=job.overlay_mode)
    rec["source_id"] = identity
    if cracks is not None:
        crack_file = f"{safe_name(image.name)}__cracks.npz"
        cracks.save(out / crack_file)
        ps = job.pixel_size_for(path)
        rec.update(crack_file=crack_file, cracks=[{**r, "pixel_size": ps if ps is not None else ""} for r in cracks.records],
                   small_components=cracks.small, crack_features=cracks.feature_layers,
                   crack_evidence_layer=cracks.evidence_layer)
        if cracks.missed:
            rec["missed_regions"] = cracks.missed
    if is_uri(path):  # a remote photo: recorded as given
        rec.update(image=str(path), image_relative=None, status="ok")
    else:
        rec.update(image=str(Path(path).resolve()),
                   image_relative=os.path.relpath(Path(path).resolve(), out.resolve()), status="ok")
    return rec


def preflight(model: Any, layers: Sequence[str], method: str, method_args: dict[str, Any], category: int = 1,
              score: str = "logit") -> dict[str, Any]:
    """Explain a blank 64x64 image once, so that setting errors fail before any image is touched.

    Unknown layers, layers without gradient, a bad method argument or a class the model lacks raise
    here. Returns the explanation's metadata.

    Raises:
        segcam.cam.layers.LayerNotFoundError, segcam.cam.engine.LayerGradientError, TypeError, ValueError.
    """
    from segcam.cam.engine import explain
    from segcam.cam.targets import ImageTarget

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = explain(model, np.zeros((64, 64, 3), np.uint8), list(layers), ImageTarget(category), method,
                      score=score, **method_args)
    return dict(res.meta)


def _record_files(rec: dict[str, Any]) -> list[str]:
    files = [rec[k] for k in ("prediction", "crack_file") if rec.get(k)]
    for layer in (rec.get("layers") or {}).values():
        if isinstance(layer, dict):
            files += [layer[k] for k in ("overlay", "heatmap", "raw", "npy") if layer.get(k)]
    return [f for f in files if isinstance(f, str)]


class RunFolder:
    """An output folder of a batch run, locked while a run writes into it.

    Use as a context manager: ``with RunFolder(out, fingerprint, images=paths) as run: ...``; inside,
    ``run.names`` holds each image's output stem (:func:`output_stems`, with the stems and sources of an
    earlier run in the folder, so a different photo never reuses another photo's stem).

    Only files segcam writes are ever deleted: temporaries of :func:`segcam.utils.files.atomic_write` for
    run files and per-image outputs, and with ``overwrite`` the outputs an earlier run recorded whose
    names have the ``<stem>__...`` form of this image's outputs (:func:`is_output_name`).

    Args:
        path: The folder (created if missing).
        fingerprint: The job's settings (:meth:`ExplainJob.fingerprint`).
        overwrite: Remove an earlier run's files first instead of resuming it.
        images: The photos of this run, in input order (the order of the manifest and summary rows).
        manifest: Builds ``manifest.json`` from the records in that order (None: no manifest).
        crack_rows: Also write ``cracks.csv`` (every record's ``cracks``, ranked for review).

    Raises:
        RunFolderError: The path is a file or under one, not writable, locked by another run, or holds
            a run made with other settings (without ``overwrite``).
    """

    def __init__(self, path: str | Path, fingerprint: dict[str, Any], overwrite: bool = False,
                 images: Sequence[str | Path] = (),
                 manifest: Callable[[list[dict[str, Any]]], dict] | None = None, crack_rows: bool = False) -> None:
        self.path = Path(path)
        self.fingerprint = fingerprint
        self.overwrite = overwrite
        self.images = list(images)
        self.names: list[str] = []
        self.manifest = manifest
        self.crack_rows = crack_rows
        self.records: dict[str, dict[str, Any]] = {}
        self.rows: dict[str, dict[str, Any]] = {}
        self._lock_fh: Any = None
        self._journal: Any = None
        self._last_write = 0.0

    # -- opening -------------------------------------------------------------------------------------------
    def __enter__(self) -> RunFolder:
        check_output_dir(self.path)
        self._lock()
        try:
            self._clean_temporaries()
            old = self._read_journal()
            if self.overwrite:
                self._remove_run(old or self._entries_from_manifest())
                old = []
            if old and old[0].get("fingerprint") != self.fingerprint:
                diff = sorted(k for k in self.fingerprint if old[0].get("fingerprint", {}).get(k) != self.fingerprint[k])
                raise RunFolderError(
                    f"{self.path} holds a segcam run made with other settings ({', '.join(diff) or 'format'} differ); "
                    "pass --overwrite to replace it, or choose another --out")
            if not old and (self.path / "manifest.json").exists() and not self.overwrite:
                raise RunFolderError(f"{self.path} holds a segcam run without a journal (an older segcam); "
                                     "pass --overwrite to replace it, or choose another --out")
            for entry in old[1:]:
                if isinstance(entry.get("name"), str) and isinstance(entry.get("record"), dict):
                    self.records[entry["name"]] = entry["record"]
                    self.rows[entry["name"]] = entry.get("row") or {}
            self.names = output_stems(self.images, {n: r.get("image") for n, r in self.records.items()})
            self._journal = open(self.path / JOURNAL, "a", encoding="utf-8")
            if not old:
                self._append({"fingerprint": self.fingerprint})
        except BaseException:
            self._unlock()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._journal is not None:
                self._journal.close()
        finally:
            self._unlock()

    def _lock(self) -> None:
        self._lock_fh = open(self.path / LOCK, "a+")
        try:
            import fcntl
        except ImportError:  # Windows: no advisory lock
            return
        try:
            fcntl.flock(self._lock_fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock_fh.close()
            self._lock_fh = None
            raise RunFolderError(f"another segcam run is writing to {self.path}; wait for it to finish or choose "
                                 "another --out") from None

    def _unlock(self) -> None:
        if self._lock_fh is not None:
            self._lock_fh.close()  # closing releases the flock
            self._lock_fh = None

    def _clean_temporaries(self) -> None:
        """Remove what a killed run left half-written: only atomic_write temporaries of names we write."""
        from segcam.utils.files import atomic_temp_target

        for p in self.path.iterdir():
            final = atomic_temp_target(p.name)
            ours = final is not None and (final in RUN_FILES or ("__" in final and Path(final).suffix in OUTPUT_SUFFIXES))
            if (ours or PROBE_RE.match(p.name)) and p.is_file() and not p.is_symlink():
                p.unlink(missing_ok=True)

    def _read_journal(self) -> list[dict[str, Any]]:
        path = self.path / JOURNAL
        if not path.is_file():
            return []
        entries = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # the line a kill cut short
            if isinstance(entry, dict):
                entries.append(entry)
        return entries if entries and "fingerprint" in entries[0] else []

    def _entries_from_manifest(self) -> list[dict[str, Any]]:
        """An older run without a journal: its manifest's records, shaped like journal entries."""
        try:
            data = json.loads((self.path / "manifest.json").read_text(encoding="utf-8"))
            return [{}] + [{"name": r.get("name"), "record": r} for r in data.get("images", []) if isinstance(r, dict)]
        except (OSError, ValueError, AttributeError):
            return []

    def _remove_run(self, entries: list[dict[str, Any]]) -> None:
        """``--overwrite``: delete the earlier run's outputs, only names of the form its writers give."""
        here = self.path.resolve()
        for entry in entries[1:]:
            rec = entry.get("record") or {}
            stem = entry.get("name") or rec.get("name")
            if not isinstance(stem, str) or not stem:
                continue
            for f in _record_files(rec):
                if not is_output_name(f, stem):
                    continue  # a name our writers never give: not ours, whatever the record says
                target = self.path / f
                if target.is_file() and not target.is_symlink() and target.resolve().parent == here:
                    target.unlink(missing_ok=True)
        for f in (*RUN_FILES, *DERIVED_FILES):
            target = self.path / f
            if not target.is_symlink() and here in target.resolve().parents:  # never through a link out of the run
                target.unlink(missing_ok=True)
        try:
            if not (self.path / "atlas").is_symlink():
                (self.path / "atlas").rmdir()  # only when empty: nothing but what segcam atlas wrote was there
        except OSError:
            pass

    # -- progress --------------------------------------------------------------------------------------------
    def is_done(self, name: str, source: str | Path) -> bool:
        """True when image ``name`` finished in an earlier run from this same ``source``, unchanged since.

        The source must match (resolved path or URI) and so must its identity
        (:func:`segcam.data.images.source_identity`: size and modification time), and every output file the
        record names must be there. A record without an identity (an older segcam) is redone.
        """
        from segcam.data.images import source_identity, source_key

        rec = self.records.get(name)
        if not rec or rec.get("status") != "ok" or rec.get("image") != source_key(source):
            return False
        if not rec.get("source_id") or rec["source_id"] != source_identity(source):
            return False
        return all((self.path / f).is_file() for f in _record_files(rec))

    def add(self, name: str, record: dict[str, Any], row: dict[str, Any]) -> None:
        """Record a finished image (journal at once; manifest/summary within :data:`REWRITE_SECONDS`)."""
        self.records[name] = record
        self.rows[name] = row
        self._append({"name": name, "record": record, "row": row})
        if time.monotonic() - self._last_write >= REWRITE_SECONDS:
            self.flush()

    def _append(self, entry: dict[str, Any]) -> None:
        self._journal.write(json.dumps(entry, default=str) + "\n")
        self._journal.flush()
        os.fsync(self._journal.fileno())

    def flush(self) -> None:
        """Rewrite ``summary.csv`` (and ``manifest.json`` through ``manifest``) atomically."""
        known = set(self.names)
        names = [n for n in self.names if n in self.records] + [n for n in self.records if n not in known]
        save_csv(self.path / "summary.csv", [{k: self.rows[n].get(k, "") for k in SUMMARY_FIELDS} for n in names])
        if self.crack_rows:
            from segcam.survey.cracks import CRACK_FIELDS, records_for_csv
            from segcam.survey.review import rank_rows

            rows = [row for n in names if self.records[n].get("status") == "ok"
                    for row in records_for_csv(self.records[n].get("image", ""), n, self.records[n].get("cracks") or [])]
            save_csv_fields(self.path / "cracks.csv", rank_rows(rows), CRACK_FIELDS)
        if self.manifest is not None:
            save_json(self.path / "manifest.json", self.manifest([self.records[n] for n in names]))
        self._last_write = time.monotonic()


def check_output_dir(path: Path) -> None:
    """Create ``path`` and check it is a writable folder, with one clear message otherwise.

    Raises:
        RunFolderError: It is a file, under a file, or cannot be created or written.
    """
    for parent in [path, *path.parents]:
        if parent.exists() and not parent.is_dir():
            raise RunFolderError(f"--out {path}: {parent} is a file, not a folder; choose another --out")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".segcam-probe-{os.getpid()}.tmp"  # PROBE_RE
        probe.write_bytes(b"x")
        probe.unlink()
    except OSError as exc:
        raise RunFolderError(f"--out {path} cannot be written ({exc.strerror or exc}); choose a writable folder") from None


@dataclass
class BatchSummary:
    """What a batch did: counts and the output folder."""

    out: Path
    total: int
    done: int = 0
    skipped: int = 0
    failed: int = 0


def explain_each(job: Any, todo: Iterable[tuple[Path, str]], out: Path,
                 on_done: Callable[[str, dict[str, Any], dict[str, Any]], None],
                 warn: Callable[[str], None] | None = None, writers: int = 1) -> None:
    """Explain and write each ``(path, name)``; ``on_done(name, record, row)`` as each one is finished.

    ``job`` is an :class:`ExplainJob` or a :class:`segcam.survey.survey.SurveyJob`: its ``compute(path, name,
    warn)`` and ``write(computed, path, out, identity)`` do the work. The one per-image loop of every engine
    (the local one, and each Ray actor). Images are explained one
    at a time; their files are written by ``writers`` threads meanwhile (PNG/JPEG encoding and zlib
    release the GIL), with at most :data:`MAX_PENDING_WRITES` explained images waiting in memory. A bad
    image is reported through ``on_done`` with status ``error`` and the loop goes on.

    Raises:
        OSError: Files could not be written (images finished before it are still reported).
        KeyboardInterrupt: Likewise: what was written before the interrupt is reported first.
    """
    from segcam.data.images import ImageError, source_identity

    pending: deque[tuple[str, Path, float, Future]] = deque()

    def finish_one() -> None:
        name, path, t0, fut = pending.popleft()
        rec = fut.result()
        on_done(name, rec, ok_row(path, name, rec, time.time() - t0))

    said: dict[str, int] = {}  # once-per-run lines by summary: how many photos they concerned

    def say(msg: str) -> None:  # the caller's warn, with once-per-run lines said once
        if isinstance(msg, OncePerRun):
            said[msg.summary] = said.get(msg.summary, 0) + 1
            if said[msg.summary] > 1:
                return
        if warn is not None:
            warn(msg)

    pool = ThreadPoolExecutor(max_workers=max(1, writers), thread_name_prefix="segcam-writer")
    try:
        for path, name in todo:
            t0 = time.time()
            identity = source_identity(path)  # before reading: an edit during the read makes the next run redo it
            try:
                computed = job.compute(path, name, warn=say)
            except (ImageError, FileNotFoundError, ValueError) as exc:
                on_done(name, *error_entry(path, name, exc, time.time() - t0))
                say(f"error: {exc}")
                continue
            pending.append((name, path, t0, pool.submit(job.write, computed, path, out, identity)))
            while pending and (pending[0][3].done() or len(pending) > MAX_PENDING_WRITES):
                finish_one()
        while pending:
            finish_one()
    finally:
        pool.shutdown(wait=True)
        with contextlib.suppress(OSError):
            while pending and pending[0][3].exception() is None:  # written before an interrupt: report them
                finish_one()
        for summary, n in said.items():
            if summary and n > 1 and warn is not None:
                warn(summary.format(n=n))


#: An engine: explains ``todo`` and journals each finished image in the run (see :func:`local_loop`).
EngineLoop = Callable[..., None]


def local_loop(job: Any, todo: list[tuple[Path, str]], run: RunFolder, summary: BatchSummary, out: Path,
               progress: Progress, warn: Callable[[str], None] | None, writers: int = 1) -> None:
    """The in-process engine: :func:`explain_each` over ``todo``, journalled in ``run``."""

    def on_done(name: str, rec: dict[str, Any], row: dict[str, Any]) -> None:
        run.add(name, rec, row)
        summary.done += rec.get("status") == "ok"
        progress.advance()

    explain_each(job, todo, out, on_done, warn=warn, writers=writers)


def ok_row(path: Path, name: str, rec: dict[str, Any], seconds: float) -> dict[str, Any]:
    """The summary row of an image explained and written."""
    return {"image": str(path), "name": name, "status": "ok", "error": "", "width": rec["width"],
            "height": rec["height"], "target_pixels": rec["target_pixels"], "empty_target": rec["empty_target"],
            "seconds": f"{seconds:.3f}"}


def error_entry(path: Path, name: str, exc: BaseException, seconds: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """The manifest record and summary row of an image that could not be explained."""
    from segcam.data.images import source_key

    rec = {"image": source_key(path), "name": name, "status": "error", "error": str(exc)}
    return rec, {**rec, "seconds": f"{seconds:.3f}"}


def run_explain(job: Any, images: Sequence[Path], out: str | Path, overwrite: bool = False,
                arguments: dict[str, Any] | None = None, progress: Progress | None = None,
                warn: Callable[[str], None] | None = None, writers: int = 1,
                engine: EngineLoop | None = None) -> BatchSummary:
    """Explain every image into ``out``, resuming a killed run of the same job (finished images are skipped).

    ``engine`` runs the images: :func:`local_loop` (this process, the default) or, chosen by the caller,
    :func:`segcam.survey.ray_engine.ray_loop` bound to its options; both write the same files, manifest
    and summary. A bad image is recorded (status ``error``) and the batch goes on; a file-system error
    while writing stops it (the images done so far stay recorded).

    Args:
        job: What to do with each image: an :class:`ExplainJob`, or a :class:`segcam.survey.survey.SurveyJob`
            (``segcam survey``).
        images: Paths or URIs.
        out: The run folder.
        overwrite: Replace an earlier run there instead of resuming it.
        arguments: The command line, for the manifest.
        progress: Told how many images are left and as each finishes (:class:`segcam.utils.progress.Progress`).
        warn: Called with one line per image-level problem.
        writers: Writer threads of the local engine.
        engine: ``engine(job, todo, run, summary, out, progress, warn)``.

    Raises:
        RunFolderError: See :class:`RunFolder`; also an OSError while writing outputs.
        KeyboardInterrupt: Ctrl-C/SIGTERM; what finished is recorded and a rerun resumes.
    """
    from segcam.data.images import is_uri

    out = Path(out)
    summary = BatchSummary(out, len(images))
    manifest = job.manifest_builder(arguments)
    with RunFolder(out, job.fingerprint(), overwrite, images=images, manifest=manifest, crack_rows=job.cracks) as run:
        run.flush()
        todo = []
        for path, name in zip(images, run.names):
            if run.is_done(name, path):
                summary.skipped += 1
            else:
                todo.append((path if is_uri(path) else Path(path), name))
        progress = progress or NullProgress()
        progress.start(len(todo), getattr(job, "verb", "explain"))
        try:
            if engine is None:
                local_loop(job, todo, run, summary, out, progress, warn, writers=writers)
            else:
                engine(job, todo, run, summary, out, progress, warn)
        finally:
            progress.close()
            with contextlib.suppress(OSError):
                run.flush()
    summary.failed = sum(r.get("status") != "ok" for r in run.rows.values())  # this run's and earlier runs' rows
    return summary
