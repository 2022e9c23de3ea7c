"""The concept atlas: what the network takes for crack, across a whole run.

Each predicted crack of a ``segcam explain`` run has a feature vector (its activations of the evidence
layer and of ``low3``, averaged over its pixels and over its surroundings; :mod:`segcam.survey.cracks`),
saved with the run, so the atlas never recomputes it. The atlas clusters :data:`ATLAS_BLOCKS`, ``low3``
inside the crack (HrSegNet's 1/32 branch, where the network's context lives); all columns for models
without it. Each block is standardised per dimension and weighted alike, rows are scaled to unit length,
and k-means clusters them (scikit-learn's ``MiniBatchKMeans``: bounded memory, so 100k cracks fit; seeded,
so the same run gives the same atlas).

Why ``low3`` (``benchmarks/atlas_recipe.py`` on the five valid splits: 921 predicted cracks, 212 false, base
rate 23 %; the purest concept of at least 20 cracks averaged over 10 seeds, one seed's being noisy): ``seg3``
inside the crack tells false from true better (5-fold AUROC 0.80 vs 0.72) and its purest concept is a little
purer (55 % vs 52 %), but it is mostly confidence (a linear fit recovers the mean probability with R^2 0.77,
against 0.35 from ``low3``; the probability alone has AUROC 0.78), which the review score already has: concepts
are meant to say *what kind of thing* the network marks. Of the sets that are not mostly confidence (R^2 <= 0.5,
the surroundings ``@beside`` included), the best, ``low3+seg3@beside``, beat ``low3`` by 0.026, less than the
standard error of the difference (0.029), so the simplest stays.
``k`` is one concept per :data:`CRACKS_PER_CONCEPT` predicted cracks, within :data:`K_MIN`..:data:`K_MAX`
(unless given). The features hold no natural number of concepts (``benchmarks/atlas_recipe.py``'s k study on
the five valid splits, 921 cracks: silhouette 0.07-0.08 and seed-to-seed adjusted Rand index 0.42-0.52 for every k
from 4 to 48), so k sets the granularity, and the valid splits say which helps: the purest concept of at least 20
cracks, against the same clustering with the true/false labels shuffled, holds +0.07 more false positives at
k = 4, +0.10 at k = 8-16, +0.14 to +0.16 at k = 20-40 (23-46 cracks a concept) and +0.13 at k = 48 (mean of 10
seeds), so about 40 cracks a concept; :data:`K_MAX` keeps the figure to 24 rows. The silhouette of the chosen
clustering is reported (how separate the concepts are).

Given ground-truth masks, each predicted crack is labelled true or false
(:func:`segcam.survey.review.label_cracks`, from the crack labels the run saved), so each concept gets
its share of false positives; images without a mask are skipped for that analysis (one line each). A run
made with ``segcam explain --masks`` also saved the ground-truth cracks it missed: the concepts are fitted
on the predicted cracks alone, and each missed crack is then placed in its nearest concept (``missed``:
what the network saw, in the terms of what it predicts, and did not mark).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["CRACKS_PER_CONCEPT", "K_MAX", "K_MIN", "Atlas", "AtlasError", "build_atlas", "default_k",
           "load_run_cracks"]

#: Predicted cracks per concept when k is not given (module docstring: measured on the valid splits).
CRACKS_PER_CONCEPT = 40
#: The range the default k is kept in: at least 4 concepts, at most 24 rows of the atlas figure.
K_MIN, K_MAX = 4, 24
#: The feature blocks the atlas clusters (their columns of the saved vectors, each block weighted alike), those
#: the model has; all columns where it has none of them.
ATLAS_BLOCKS: tuple[str, ...] = ("low3",)
#: Cracks the reported silhouette is computed on (a seeded sample; the score costs O(n^2)).
SILHOUETTE_SAMPLE = 3000
#: Example crops per concept in the figure.
EXAMPLES = 8


class AtlasError(ValueError):
    """A run folder the atlas or the report cannot use; the message says which command to rerun."""


@dataclass
class RunCracks:
    """Every crack of a run: records (with ``image`` and ``name``), features, labels per image.

    Thumbnails are read on demand (:meth:`thumb`), so a run of 100k cracks costs only its feature vectors.
    """

    folder: Path
    manifest: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)
    features: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    sources: list[tuple[Path, int]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    _paths: dict[str, Path] = field(default_factory=dict, repr=False)

    def thumb(self, i: int) -> dict[str, np.ndarray]:
        """Item ``i``'s thumbnails (photo, mask, map), read from its crack file."""
        from segcam.survey.cracks import read_crack_thumb

        path, k = self.sources[i]
        return read_crack_thumb(path, k, missed=self.records[i].get("kind") == "missed")

    def labels_of(self, name: str) -> np.ndarray | None:
        """Photo ``name``'s crack labels, read from its crack file now (None if it has none)."""
        if name in self.labels:
            return self.labels[name]
        if not self._paths:
            self._paths.update((r["name"], p) for r, (p, _) in zip(self.records, self.sources))
        path = self._paths.get(name)
        if path is None:
            return None
        with np.load(path, allow_pickle=False) as z:
            return z["labels"] if "labels" in z.files else None

    @property
    def cracks(self) -> list[int]:
        """Indices of the predicted cracks (the other items are missed ground-truth cracks)."""
        return [i for i, r in enumerate(self.records) if r.get("kind") != "missed"]


def _warn(msg: str) -> None:
    import warnings

    warnings.warn(msg, stacklevel=3)


RERUN = ("rerun `segcam explain` with this segcam into a new --out (per-crack records are written by default; "
         "--no-cracks turns them off)")


def load_run_cracks(folder: str | Path, with_labels: bool = False,
                    warn: Callable[[str], None] | None = None) -> RunCracks:
    """Read the per-crack records, features and thumbnails a run saved.

    A photo whose crack file is missing, cut short or damaged is left out with a warning (``warn``, default
    :func:`warnings.warn`) naming the file; the names of those photos are in ``RunCracks.skipped``.

    Raises:
        AtlasError: No manifest, or a run written without per-crack records (the message names the command).
    """
    from segcam.survey.cracks import read_crack_features

    folder = Path(folder)
    path = folder / "manifest.json"
    if not path.is_file():
        raise AtlasError(f"{folder} holds no manifest.json; give the --out folder of a segcam explain run")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise AtlasError(f"{path} is not valid JSON ({exc})") from None
    images = [r for r in manifest.get("images", []) if isinstance(r, dict) and r.get("status", "ok") == "ok"]
    if images and not any("crack_file" in r for r in images):
        raise AtlasError(f"{folder} was written before per-crack records existed (or with --no-cracks); {RERUN}")
    run = RunCracks(folder, manifest)
    feats = []
    for rec in images:
        if not rec.get("crack_file"):
            continue
        crack_path = (folder / rec["crack_file"]).resolve()
        if crack_path.parent != folder.resolve():
            continue  # only the run's own files
        try:
            data = read_crack_features(crack_path, with_labels=with_labels)
            if len(data["crack"]) != len(rec.get("cracks") or []):
                raise ValueError(f"{crack_path} holds {len(data['crack'])} cracks where manifest.json records "
                                 f"{len(rec.get('cracks') or [])}; rerun into a new --out")
        except ValueError as exc:
            (warn or _warn)(f"{rec['name']} left out: {exc}")
            run.skipped.append(rec["name"])
            continue
        for k, (crack, row) in enumerate(zip(data["crack"], rec.get("cracks", [])), 1):
            run.records.append({**row, "image": rec.get("image", ""), "name": rec["name"], "crack": int(crack),
                                "kind": "crack"})
            run.sources.append((crack_path, k))
        if len(data["features"]):
            feats.append(data["features"])
        missed = rec.get("missed_regions") or []
        if missed and data.get("missed_features") is not None and len(data["missed_features"]) == len(missed):
            for k, row in enumerate(missed, 1):
                run.records.append({**row, "image": rec.get("image", ""), "name": rec["name"], "crack": "",
                                    "kind": "missed"})
                run.sources.append((crack_path, k))
            feats.append(data["missed_features"])
        if with_labels and data.get("labels") is not None:
            run.labels[rec["name"]] = data["labels"]
    run.features = np.concatenate(feats).astype(np.float32) if feats else np.zeros((0, 0), np.float32)
    return run


def _atlas_columns(run: RunCracks, blocks: Sequence[str] | None = None) -> list[np.ndarray]:
    """The feature blocks ``blocks`` (default :data:`ATLAS_BLOCKS`) of the run's vectors, those the run has.

    All columns as one block when the run has none of them (a model without those layers) or its vectors
    cannot be told apart.
    """
    blocks = ATLAS_BLOCKS if blocks is None else tuple(blocks)
    images = [r for r in run.manifest.get("images", []) if isinstance(r, dict) and r.get("crack_features")]
    widths = images[0]["crack_features"] if images else []
    found, start = {}, 0
    for layer, width in widths:
        if layer in blocks and start + int(width) <= run.features.shape[1]:
            found[layer] = run.features[:, start:start + int(width)]
        start += int(width)
    return [found[b] for b in blocks if b in found] or [run.features]


def _prepare(blocks: Sequence[np.ndarray], fit_rows: np.ndarray | None = None) -> np.ndarray:
    """Standardise, weight alike, concatenate and scale to unit length the feature blocks.

    Each block is standardised with the statistics of ``fit_rows`` (the predicted cracks) and divided by the
    square root of its width, so a 128-channel layer does not drown a 16-channel one.
    """
    parts = []
    for features in blocks:
        x = features.astype(np.float64)
        ref = x[fit_rows] if fit_rows is not None else x
        mean, std = ref.mean(axis=0), ref.std(axis=0)
        parts.append((x - mean) / np.where(std > 0, std, 1.0) / np.sqrt(max(x.shape[1], 1)))
    x = np.concatenate(parts, axis=1)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def default_k(n: int) -> int:
    """The number of concepts for ``n`` predicted cracks: ``n / CRACKS_PER_CONCEPT`` within ``K_MIN..K_MAX``."""
    return max(1, min(n, max(K_MIN, min(K_MAX, round(n / CRACKS_PER_CONCEPT)))))


def _silhouette(x: np.ndarray, labels: np.ndarray, seed: int) -> float | None:
    """Mean silhouette of a clustering on a seeded sample of at most :data:`SILHOUETTE_SAMPLE` rows."""
    from sklearn.metrics import silhouette_score

    rng = np.random.default_rng(seed)
    idx = np.arange(len(x)) if len(x) <= SILHOUETTE_SAMPLE else rng.choice(len(x), SILHOUETTE_SAMPLE, replace=False)
    if not 2 <= len(np.unique(labels[idx])) < len(idx):  # the score needs 2 to n - 1 clusters in its sample
        return None
    return round(float(silhouette_score(x[idx], labels[idx])), 4)


@dataclass(frozen=True)
class Atlas:
    """The concepts of a run.

    Attributes:
        concepts: One dict per concept (id, members, false-positive share where known, mean confidence,
            mean length and width, example crack indices), largest first.
        assignment: The concept of every crack (in :attr:`RunCracks.records` order).
        k: The number of concepts (given, or :func:`default_k`).
        silhouette: Mean silhouette of the concepts (a seeded sample; None below two concepts).
        false: Per crack: True/False against ground truth, or None without a mask.
    """

    concepts: list[dict[str, Any]]
    assignment: np.ndarray
    k: int
    silhouette: float | None
    false: list[bool | None]
    seed: int

    def to_json(self) -> dict[str, Any]:
        """The atlas as plain data (what ``atlas.json`` holds)."""
        return {"schema": "segcam.atlas", "schema_version": 2, "k": self.k, "seed": self.seed,
                "silhouette": self.silhouette, "concepts": self.concepts}


def _mean(run: RunCracks, idx: Sequence[int], key: str, digits: int) -> float:
    vals = [float(run.records[i].get(key, 0) or 0) for i in idx]
    return round(float(np.mean(vals)), digits) if vals else 0.0


def build_atlas(run: RunCracks, k: int | None = None, seed: int = 0,
                masks: Callable[[str], np.ndarray | None] | None = None,
                warn: Callable[[str], None] | None = None, blocks: Sequence[str] | None = None) -> Atlas:
    """Cluster a run's cracks into concepts (see the module docstring).

    Args:
        run: :func:`load_run_cracks` (with ``with_labels`` when ``masks`` is given).
        k: Number of concepts; None = :func:`default_k` of the number of predicted cracks.
        seed: Seed of k-means and of the silhouette sample (the same seed gives the same atlas).
        masks: Ground truth: image name -> mask (None when the image has none).
        warn: Called with one line per image skipped for the false-positive analysis.
        blocks: The feature blocks clustered (default :data:`ATLAS_BLOCKS`).

    Raises:
        AtlasError: Fewer than two cracks, or a bad ``k``.
    """
    from sklearn.cluster import MiniBatchKMeans

    from segcam.survey.review import label_cracks

    n = len(run.records)
    if n < 2:
        raise AtlasError(f"{run.folder} has {len(run.cracks)} predicted crack(s); an atlas needs at least two")
    cracks = np.asarray(run.cracks)  # the concepts are the predictions'; missed cracks are placed among them
    if len(cracks) < 2:
        raise AtlasError(f"{run.folder} has {len(cracks)} predicted crack(s); an atlas needs at least two")
    x = _prepare(_atlas_columns(run, blocks), cracks)
    if k is None:
        k = default_k(len(cracks))
    if not 1 <= k <= len(cracks):
        raise AtlasError(f"--k must be between 1 and the number of cracks ({len(cracks)}), got {k}")
    km = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=2048).fit(x[cracks])
    assign = km.predict(x)
    silhouette = _silhouette(x[cracks], assign[cracks], seed)
    false: list[bool | None] = [None] * n
    for i, r in enumerate(run.records):  # a run made with --masks labelled its cracks itself
        if r.get("kind") != "missed" and r.get("truth") in ("true", "false"):
            false[i] = r["truth"] == "false"
    if masks is not None:
        by_image: dict[str, list[int]] = {}
        for i, r in enumerate(run.records):
            if r.get("kind") != "missed" and false[i] is None:
                by_image.setdefault(r["name"], []).append(i)
        for name, idx in by_image.items():
            truth, labels = masks(name), run.labels.get(name)
            if truth is None or labels is None:
                if warn is not None:
                    warn(f"{name}: no ground-truth mask; skipped in the false-positive analysis")
                continue
            if truth.shape != labels.shape:
                if warn is not None:
                    warn(f"{name}: mask is {truth.shape[1]}x{truth.shape[0]}, the photo {labels.shape[1]}x"
                         f"{labels.shape[0]}; skipped in the false-positive analysis")
                continue
            verdict = label_cracks(labels.astype(np.int32), truth)
            for i in idx:
                false[i] = not verdict[run.records[i]["crack"] - 1]
    concepts = []
    dist = np.linalg.norm(x - km.cluster_centers_[assign], axis=1)
    for c in range(k):
        members = np.nonzero(assign == c)[0]
        if not len(members):
            continue
        known = [false[i] for i in members if false[i] is not None]
        n_missed = sum(run.records[i].get("kind") == "missed" for i in members)
        order = members[np.argsort(dist[members], kind="stable")]
        concepts.append({
            "members": int(len(members) - n_missed),
            "missed": int(n_missed),
            "false_positive_share": round(float(np.mean(known)), 4) if known else None,
            "labelled": len(known),
            "mean_prob": _mean(run, [i for i in members if run.records[i].get("kind") != "missed"], "mean_prob", 4),
            "mean_length": _mean(run, [i for i in members if run.records[i].get("kind") != "missed"], "length", 2),
            "mean_width": _mean(run, [i for i in members if run.records[i].get("kind") != "missed"], "mean_width", 2),
            "examples": [int(i) for i in order[:2 * EXAMPLES]],
            "_cluster": c,
        })
    concepts.sort(key=lambda d: (-(d["members"] + d["missed"]), d["_cluster"]))
    remap = np.zeros(k, np.int64)
    for new, d in enumerate(concepts):
        remap[d.pop("_cluster")] = new
        d["concept"] = new
    return Atlas(concepts, remap[assign], k, silhouette, false, seed)


def atlas_figure(run: RunCracks, atlas: Atlas, outs: Sequence[str | Path], width_mm: float = 190,
                 dpi: int = 300) -> list[Path]:
    """The atlas figure: one row per concept, :data:`EXAMPLES` crops each with its own map over it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from segcam.cam.overlay import overlay

    rows, cols = len(atlas.concepts), EXAMPLES
    cell = width_mm / 25.4 / (cols + 1.6)
    fig = plt.figure(figsize=(width_mm / 25.4, cell * rows + 0.3))
    grid = fig.add_gridspec(rows, cols + 1, width_ratios=[1.6] + [1] * cols, wspace=0.05, hspace=0.12,
                            left=0.01, right=0.99, top=1 - 0.3 / (cell * rows + 0.3), bottom=0.01)
    for r, concept in enumerate(atlas.concepts):
        ax = fig.add_subplot(grid[r, 0])
        ax.axis("off")
        fp = concept["false_positive_share"]
        text = (f"C{concept['concept']}\n{concept['members']} cracks\n"
                + (f"+{concept['missed']} missed\n" if concept.get("missed") else "")
                + (f"FP {100 * fp:.0f} %\n" if fp is not None else "") + f"p {concept['mean_prob']:.2f}")
        ax.text(0.0, 0.5, text, fontsize=6, va="center", ha="left", transform=ax.transAxes)
        for j, i in enumerate(concept["examples"][:cols]):
            t = run.thumb(i)
            ax = fig.add_subplot(grid[r, j + 1])
            ax.set_xticks([])
            ax.set_yticks([])
            if t.get("photo") is None:
                continue
            unit = t["map"].astype(np.float32) / 255.0
            ax.imshow(overlay(t["photo"], unit, "inferno"))
            ax.contour(t["mask"] > 127, levels=[0.5], colors=["#38e4ff"], linewidths=0.4)
            edge = ("#1f77b4" if run.records[i].get("kind") == "missed" else "#d62728" if atlas.false[i]
                    else "#2ca02c" if atlas.false[i] is False else "0.6")
            for s in ax.spines.values():
                s.set_edgecolor(edge)
                s.set_linewidth(1.2)
    fig.suptitle("Concept atlas: example cracks per concept with their own map (frame: red false, green true, "
                 "blue a missed crack)",
                 fontsize=7, y=0.999, va="top")
    written = []
    from segcam.utils.files import atomic_write

    for out in outs:
        out = Path(out)
        atomic_write(out, lambda p, out=out: fig.savefig(p, dpi=dpi, format=out.suffix.lstrip(".")))
        written.append(out)
    plt.close(fig)
    return written
