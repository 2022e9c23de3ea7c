"""``segcam finetune RUN``: the run's network fine-tuned on its reviewer's verdicts.

The reviewed photos (those with a verdict or a missed-crack mark) are split by photo into a training part and a
held-back part (:data:`HOLDOUT`, seeded). From the training part, windows of :data:`WINDOW_PX` around every
reviewed or marked crack are cut once (photo and :func:`segcam.adapt.labels.verdict_label`); each iteration
draws random 256 px crops of them (flipped at random) for half the batch, and the other half from the base
weights' own training data (**replay**, so the network does not forget what it knew: the six-set mix for ``mix``
weights, DeepCrack's train split for ``deepcrack`` ones; ``--replay none`` turns it off). The loss is
class-weighted cross-entropy plus soft Dice over the pixels the
labels do not ignore, with the crack pixels' weight lowered to :data:`CRACK_WEIGHT` (a reviewer's rejections are
what the base weights got wrong). SGD with momentum, a short warm-up and poly decay, from the run's own weights.

Resumable: ``OUT/last`` holds the model, the optimizer and the iteration (written atomically every
:data:`SAVE_EVERY` iterations); the same command goes on from there. The data order is a pure function of the
seed and the iteration. At the end it writes ``OUT/weights.pdparams``, ``OUT/finetune.json`` and ``OUT/card.md``:
the run, the base weights, the counts of verdicts and marks, the iterations, the time, and before/after on the
held-back photos: the share of their rejected cracks still predicted, the share of their confirmed crack
pixels still predicted, and the mIoU against their verdict labels.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from segcam.adapt.loop import CROP_PX, train_on_windows

__all__ = ["DEFAULT_ITERS", "FinetuneError", "FinetuneReport", "ReviewedPhoto", "finetune", "reviewed_photos"]

#: Iterations by default (batch 8: about 5 minutes for HrSegNet-B16 on two cores).
DEFAULT_ITERS = 150
#: Side of the windows cut around reviewed cracks (training crops of 256 px are drawn inside them).
WINDOW_PX = 384
#: Share of the reviewed photos held back for the before/after scores (at least one when there are two).
HOLDOUT = 0.2
#: Peak learning rate and cross-entropy weight of crack pixels (background 1). Chosen on masonry's reviewed half
#: (benchmarks/adapt.py, 200 verdicts, held-out half): lr 0.001 with the recall recipe's weight 3 left the false share
#: of reported cracks at 0.34 (before 0.33); 0.003 with 1: 0.29; 0.005 with 0.5: 0.29 by count, 0.18 by length (0.26
#: before), with more ground truth found (0.63 against 0.58) and mIoU 0.76 (0.71).
LR = 0.005
CRACK_WEIGHT = 0.5


class FinetuneError(ValueError):
    """A run that cannot be fine-tuned (the message says why and what to do)."""


@dataclass(frozen=True)
class ReviewedPhoto:
    """A photo with verdicts or marks."""

    name: str
    record: dict[str, Any] = field(repr=False)
    confirmed: tuple[int, ...]
    rejected: tuple[int, ...]
    marks: tuple[Any, ...]


@dataclass(frozen=True)
class FinetuneReport:
    """What ``segcam finetune`` did and measured (``save`` writes it as JSON and as a card)."""

    out: Path
    weights: Path
    run: str
    model: str
    base_weights: str
    iters: int
    seconds: float
    counts: dict[str, int]
    replay: str
    before: dict[str, float | None]
    after: dict[str, float | None]
    holdout: list[str]

    def save(self) -> None:
        """Write ``finetune.json`` and ``card.md`` into :attr:`out` (temporary file, then rename)."""
        from segcam.utils.files import atomic_write

        data = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}
        atomic_write(self.out / "finetune.json", lambda p: p.write_text(json.dumps(data, indent=1) + "\n"))
        atomic_write(self.out / "card.md", lambda p: p.write_text(_card(self), encoding="utf-8"))


def _card(r: FinetuneReport) -> str:
    c = r.counts

    def f(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    rows = "\n".join(f"| {label} | {f(r.before.get(k))} | {f(r.after.get(k))} |" for k, label in (
        ("rejected_still", "rejected cracks still predicted (share, lower is better)"),
        ("confirmed_kept", "confirmed crack pixels still predicted (share)"),
        ("label_miou", "mIoU against the verdict labels")))
    return (f"# {r.model} fine-tuned on the verdicts of {r.run}\n\n"
            f"- base weights: `{r.base_weights}`\n- verdicts: {c['confirmed']} confirmed, {c['rejected']} rejected, "
            f"{c['missed']} missed cracks marked, on {c['photos_train']} photos (training) + {c['photos_holdout']} "
            f"held back\n- {r.iters} iterations of batch 8 (half reviewed crops, half replay of `{r.replay}`), "
            f"{r.seconds / 60:.1f} min\n- use: `segcam survey --model {r.model} --weights {r.weights} PHOTOS`\n\n"
            f"Held-back reviewed photos ({', '.join(r.holdout) or 'none'}):\n\n| score | before | after |\n|---|---|---|\n"
            f"{rows}\n")


def reviewed_photos(run_dir: str | Path) -> list[ReviewedPhoto]:
    """The run's photos with verdicts or missed-crack marks, in the manifest's order.

    Raises:
        segcam.survey.verdicts.VerdictError: A run without ``cracks.csv``.
    """
    from segcam.survey.missed import load_missed
    from segcam.survey.verdicts import load_review

    run_dir = Path(run_dir)
    state = load_review(run_dir)
    marks, _ = load_missed(run_dir)
    man = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    decided: dict[tuple[str, str], list[int]] = {}  # (photo, verdict) -> crack ids, in one pass over the verdicts
    for (name, crack), v in state.verdicts.items():
        decided.setdefault((name, v.verdict), []).append(crack)
    marked: dict[str, list[Any]] = {}
    for m in marks:
        marked.setdefault(m.name, []).append(m)
    out = []
    for rec in man.get("images", []):
        if not isinstance(rec, dict) or rec.get("status", "ok") != "ok":
            continue
        name = rec.get("name")
        conf, rej = tuple(decided.get((name, "confirmed"), ())), tuple(decided.get((name, "rejected"), ()))
        own = tuple(marked.get(name, ()))
        if conf or rej or own:
            out.append(ReviewedPhoto(name, rec, conf, rej, own))
    return out


def _photo_and_label(run_dir: Path, p: ReviewedPhoto) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The photo (RGB), its verdict label image and its crack labels.

    Raises:
        FinetuneError: The photo changed since the run, or the run's files are missing.
    """
    import cv2

    from segcam.adapt.labels import verdict_label
    from segcam.data.images import read_image, source_identity
    from segcam.survey.batch import TILED_MAX_SIDE
    from segcam.survey.cracks import read_crack_features
    from segcam.survey.missed import rasterise

    image = p.record.get("image")
    if not image or source_identity(image) != p.record.get("source_id"):
        raise FinetuneError(f"{p.name}: the photo {image} is gone or changed since the run; fine-tuning needs the "
                            "photos the verdicts were given on")
    rgb = read_image(image, max_side=TILED_MAX_SIDE)
    pred = cv2.imread(str(run_dir / str(p.record.get("prediction", ""))), cv2.IMREAD_GRAYSCALE)
    if pred is None or pred.shape != rgb.shape[:2]:
        raise FinetuneError(f"{p.name}: the run's prediction mask is missing or of another size; rerun the survey")
    labels = read_crack_features(run_dir / str(p.record.get("crack_file", "")), with_labels=True)["labels"]
    if labels is None:
        labels = np.zeros(pred.shape, np.uint16)
    missed = rasterise(p.marks, pred.shape) if p.marks else None
    return rgb, verdict_label(pred > 0, labels, p.confirmed, p.rejected, missed), labels


def _windows(rgb: np.ndarray, label: np.ndarray, labels: np.ndarray, p: ReviewedPhoto) -> list[tuple[np.ndarray, np.ndarray]]:
    """Windows of :data:`WINDOW_PX` around every reviewed crack and mark (long ones: along their box)."""
    from scipy.ndimage import find_objects

    h, w = label.shape
    boxes = []
    objs = find_objects(labels.astype(np.int32))
    for k in (*p.confirmed, *p.rejected):
        if k - 1 < len(objs) and objs[k - 1] is not None:
            sl = objs[k - 1]
            boxes.append((sl[1].start, sl[0].start, sl[1].stop, sl[0].stop))
    for m in p.marks:
        pts = np.asarray(m.points)
        boxes.append((int(pts[:, 0].min()), int(pts[:, 1].min()), int(pts[:, 0].max()) + 1, int(pts[:, 1].max()) + 1))
    out = []
    for x0, y0, x1, y1 in boxes:
        for cy in _centres(y0, y1):
            for cx in _centres(x0, x1):
                wy = int(np.clip(cy - WINDOW_PX // 2, 0, max(0, h - WINDOW_PX)))
                wx = int(np.clip(cx - WINDOW_PX // 2, 0, max(0, w - WINDOW_PX)))
                lab = label[wy:wy + WINDOW_PX, wx:wx + WINDOW_PX]
                if (lab != 255).any():
                    out.append((np.ascontiguousarray(rgb[wy:wy + WINDOW_PX, wx:wx + WINDOW_PX]), lab.copy()))
    return out


def _centres(a: int, b: int) -> list[int]:
    """Window centres along ``[a, b)``: its middle, or every half window along a longer span."""
    if b - a <= WINDOW_PX:
        return [(a + b) // 2]
    return list(range(a + WINDOW_PX // 2, b, WINDOW_PX // 2))


def _replay_data(spec: str) -> Any:
    """The replay data set (``mix``: the six-set recipe of configs/_base_/mix_256.yml; a ``NAME:SPLIT``), or None."""
    if spec == "none":
        return None
    from segcam.training.dataset import CrackDataset

    big = [{"type": "ResizeStepScaling", "min_scale_factor": 0.5, "max_scale_factor": 2.0, "scale_step_size": 0.25},
           {"type": "RandomPaddingCrop", "crop_size": [CROP_PX, CROP_PX]}, {"type": "RandomHorizontalFlip"},
           {"type": "Normalize"}]
    small = [{**big[0], "min_scale_factor": 1.0}, *big[1:]]
    if spec == "mix:train":
        sets = [{"data": "deepcrack:train", "weight": 2}, {"data": "cfd:train", "weight": 1},
                {"data": "crack500:train", "weight": 1},
                *({"data": f"{s}:train", "weight": 1, "transforms": small}
                  for s in ("masonry_dais", "gaps384_crops", "shadowcrack_crops"))]
        return CrackDataset(sets, transforms=big)
    return CrackDataset(spec, transforms=big)


def _default_replay(tag: str | None) -> str:
    return "deepcrack:train" if tag == "deepcrack" else "mix:train"


def _scores(model: Any, run_dir: Path, photos: list[ReviewedPhoto]) -> dict[str, float | None]:
    """Before/after scores on held-back reviewed photos (module docstring)."""
    from segcam.survey.tiling import _network_forward, predict_tiled

    still, rej, kept, conf = 0, 0, 0, 0
    inter, union = np.zeros(2), np.zeros(2)
    model.network.eval()
    for p in photos:
        rgb, label, labels = _photo_and_label(run_dir, p)
        pred = predict_tiled(_network_forward(model), rgb, 1024, 128).argmax(0) == 1
        for k in p.rejected:
            comp = labels == k
            rej += 1
            still += pred[comp].mean() >= 0.5
        conf_px = np.isin(labels, p.confirmed)
        kept, conf = kept + int(pred[conf_px].sum()), conf + int(conf_px.sum())
        valid = label != 255
        for c in (0, 1):
            g, q = (label == c) & valid, (pred == c) & valid
            inter[c] += (g & q).sum()
            union[c] += (g | q).sum()
    return {"rejected_still": still / rej if rej else None, "confirmed_kept": kept / conf if conf else None,
            "label_miou": float(np.mean(inter / np.maximum(union, 1))) if union.sum() else None}


def finetune(run_dir: str | Path, out: str | Path, iters: int = DEFAULT_ITERS, batch_size: int = 8,
             weights: str | Path | None = None, replay: str | None = None, lr: float = LR, seed: int = 0,
             log: Callable[[str], None] = lambda m: None, crack_weight: float = CRACK_WEIGHT) -> FinetuneReport:
    """Fine-tune the run's network on its verdicts (module docstring); returns the report (already saved).

    Args:
        run_dir: The reviewed run (``segcam survey`` or ``segcam explain`` with per-crack records).
        out: Output folder (resumes a killed fine-tune of the same run).
        iters: Iterations of ``batch_size``.
        batch_size: Crops per iteration (half reviewed, half replay).
        weights: Start from these weights instead of the run's.
        replay: ``mix:train``, a ``NAME:SPLIT`` or ``none`` (default: what the base weights were trained on).
        lr: Peak learning rate.
        crack_weight: Cross-entropy weight of crack pixels (background 1).
        seed: Seed of the split, the windows' crops and the replay draws.
        log: Called with progress lines.

    Raises:
        FinetuneError: No verdicts, photos that changed, a run without a model record.
    """
    run_dir, out = Path(run_dir), Path(out)
    photos = reviewed_photos(run_dir)
    if not photos:
        raise FinetuneError(f"{run_dir} has no verdicts yet: review its cracks first (`segcam app`, 'Review a run', "
                            f"or `segcam review {run_dir} --import FILE.csv`)")
    model = _run_model(run_dir, weights)
    order = np.random.default_rng(seed).permutation(len(photos))
    n_hold = int(round(HOLDOUT * len(photos))) if len(photos) >= 2 else 0
    n_hold = max(n_hold, 1) if len(photos) >= 2 else 0
    hold = [photos[i] for i in sorted(order[:n_hold])]
    train = [photos[i] for i in sorted(order[n_hold:])]
    wins = []
    for p in train:
        rgb, label, labels = _photo_and_label(run_dir, p)
        wins += _windows(rgb, label, labels, p)
    log(f"{len(wins)} windows from {len(train)} reviewed photos; {len(hold)} held back for before/after")
    before = _scores(model, run_dir, hold) if hold else {}
    replay = replay or _default_replay(model.tag)
    t0 = time.time()
    done = train_on_windows(model, wins, _replay_data(replay), out, iters, batch_size, lr, seed, log, crack_weight)
    after = _scores(model, run_dir, hold) if hold else {}
    counts = {"confirmed": sum(len(p.confirmed) for p in photos), "rejected": sum(len(p.rejected) for p in photos),
              "missed": sum(len(p.marks) for p in photos), "photos_train": len(train), "photos_holdout": len(hold)}
    report = FinetuneReport(out, out / "weights.pdparams", str(run_dir), model.name, str(model.weights), done["iter"],
                            round(time.time() - t0, 1), counts, replay, before, after, [p.name for p in hold])
    report.save()
    return report


def _run_model(run_dir: Path, weights: str | Path | None) -> Any:
    """The run's model with its weights (checked against the manifest's sha256), or with ``weights``."""
    from segcam.models.weights import sha256_file
    from segcam.models.zoo import create_model

    man = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    m = man.get("model") or {}
    if not m.get("name") or m.get("random_init"):
        raise FinetuneError(f"{run_dir}: the run's model is not a zoo model with weights; pass --weights")
    path = weights or m.get("weights")
    if weights is None and (not path or not Path(path).is_file() or sha256_file(path) != m.get("weights_sha256")):
        raise FinetuneError(f"{run_dir}: the run's weights {path} are gone or changed; pass --weights FILE")
    model = create_model(m["name"], weights=str(path))
    if weights is None:
        model.tag = m.get("tag")
    return model
