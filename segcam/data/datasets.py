"""Crack datasets read in place from ``../shared/data`` (never copied into the repo).

A data spec is ``NAME:SPLIT`` (``deepcrack:test``, ``cfd:all``) or ``mix:SPLIT``
(that split of every set that has it). Masks on disk are 0/255;
:func:`load_mask` turns them into class ids {0, 1} (crack = 1), because
PaddleSeg treats 255 as ``ignore_index``.

Splits, for sets that do not define all three themselves:

* DeepCrack and CRACK500 ship a training split only (plus DeepCrack's test):
  every tenth training pair (sorted by path) is held out as ``valid`` and
  ``train`` excludes it. CRACK500's official test split is not in the data
  folder, so ``crack500`` has no ``test``.
* CrackForest (``cfd``) and masonry (``masonry_dais``) define no split: their
  pairs, sorted by image path, are permuted with a fixed seed
  (:data:`SPLIT_SEED`) and cut 20 % ``test``, 20 % ``valid``, 60 % ``train``
  (CFD 24/24/70, masonry 48/48/144). The three parts are disjoint and the same
  on every machine.

:data:`MIX_WEIGHTS` gives each set's share of the training draws in ``mix``
(per set, not per image, so the 942 GAPs crops do not drown the 70 CFD photos).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["DATASETS", "MIX_WEIGHTS", "SPLIT_SEED", "Pair", "data_root", "list_pairs", "load_mask", "mask_to_ids",
           "parse_data_spec", "parse_data_specs"]

#: Known sets and the licence note the model cards repeat.
DATASETS: dict[str, str] = {
    "deepcrack": "DeepCrack (Liu et al., Neurocomputing 338, 2019); non-commercial research and education only",
    "cfd": "CrackForest (Shi et al., IEEE T-ITS 17(12), 2016); non-commercial research only",
    "masonry_dais": "Masonry cracks (Dais et al., Automation in Construction 125, 2021); GPL-3.0",
    "gaps384_crops": "GAPs384 crops (Eisenbach et al., IJCNN 2017); GAPs terms, non-commercial research",
    "shadowcrack_crops": "ShadowCrack crops; no licence stated by the original authors",
    "crack500": "CRACK500 (Zhang et al., ICIP 2016; Yang et al., IEEE T-ITS 21(4), 2020), resized to 640x360; "
                "research use, no licence stated by the original authors",
}
#: Share of training draws per set in ``mix:train`` (normalised to sum to 1). DeepCrack counts double:
#: it is the main benchmark and its 544x384 frames hold the most crack pixels per photo.
MIX_WEIGHTS: dict[str, float] = {"deepcrack": 2.0, "cfd": 1.0, "masonry_dais": 1.0, "gaps384_crops": 1.0,
                                 "shadowcrack_crops": 1.0, "crack500": 1.0}
SPLITS = ("train", "valid", "test", "all")
#: Seed of the fixed train/valid/test permutation of the sets that define no split.
SPLIT_SEED = 20161
_SEEDED_FRACTIONS = (0.2, 0.2)  # test, valid; the rest is train
_HOLDOUT_EVERY = 10


@dataclass(frozen=True)
class Pair:
    """One image and its ground-truth mask (absolute paths)."""

    image: Path
    mask: Path


def data_root() -> Path:
    """Folder holding the data sets.

    ``$SEGCAM_DATA`` when set (and then only it); otherwise ``../shared/data``
    next to the current directory or next to this checkout.

    Raises:
        FileNotFoundError: If no data folder is found.
    """
    env = os.environ.get("SEGCAM_DATA")
    if env:
        if Path(env).is_dir():
            return Path(env)
        raise FileNotFoundError(f"SEGCAM_DATA={env} is not a folder; point it at the folder that holds deepcrack/, cfd/, ...")
    candidates = [Path.cwd().parent / "shared" / "data", Path(__file__).resolve().parents[3] / "shared" / "data"]
    for cand in candidates:
        if cand.is_dir():
            return cand
    raise FileNotFoundError(
        f"no crack data folder found (looked in {', '.join(map(str, candidates))}); "
        "set SEGCAM_DATA to the folder that holds deepcrack/, cfd/, ..."
    )


def _read_split_file(root: Path, name: str) -> list[Pair]:
    pairs = []
    for line in (root / name).read_text().splitlines():
        if line.strip():
            img, mask = line.split()
            pairs.append(Pair(root / img, root / mask))
    return pairs


def _seeded_split(pairs: list[Pair], split: str) -> list[Pair]:
    ordered = sorted(pairs, key=lambda p: str(p.image))
    perm = np.random.default_rng(SPLIT_SEED).permutation(len(ordered))
    n_test = round(_SEEDED_FRACTIONS[0] * len(ordered))
    n_valid = round(_SEEDED_FRACTIONS[1] * len(ordered))
    part = {"test": perm[:n_test], "valid": perm[n_test:n_test + n_valid], "train": perm[n_test + n_valid:]}[split]
    return [ordered[i] for i in sorted(part)]


def list_pairs(name: str, split: str) -> list[Pair]:
    """Pairs of one set and split, in a stable order.

    Args:
        name: Data set folder name, e.g. ``deepcrack``.
        split: ``train``, ``valid``, ``test`` or ``all``.

    Raises:
        ValueError: Unknown set or split, or a split the set does not define.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; available: {', '.join(DATASETS)} (or mix)")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} for {name}; use one of {', '.join(SPLITS)}")
    root = data_root() / name
    if not root.is_dir():
        raise FileNotFoundError(f"data set folder {root} does not exist; see the data folder's README")
    if split == "all" or not (root / "train.txt").is_file():
        with open(root / "manifest.csv", newline="") as fh:
            everything = [Pair(root / r["image"], root / r["mask"]) for r in csv.DictReader(fh)]
        return everything if split == "all" else _seeded_split(everything, split)
    if (root / f"{split}.txt").is_file() and not (split == "train" and not (root / "valid.txt").is_file()):
        return _read_split_file(root, f"{split}.txt")
    if split in ("train", "valid"):
        train = sorted(_read_split_file(root, "train.txt"), key=lambda p: str(p.image))
        held = [p for i, p in enumerate(train) if i % _HOLDOUT_EVERY == 0]
        return held if split == "valid" else [p for p in train if p not in held]
    have = sorted({p.stem for p in root.glob("*.txt")} | {"valid"}) if (root / "train.txt").is_file() else ["all"]
    raise ValueError(f"data set {name} has no {split!r} split; it has: {', '.join(have)}")


def parse_data_specs(spec: str) -> dict[str, list[Pair]]:
    """Resolve a data spec into pairs per set, ``{"deepcrack:test": [...], ...}``.

    ``mix:SPLIT`` expands to that split of every set in :data:`MIX_WEIGHTS`
    that has it (``mix:test`` skips CRACK500, which has no test split here).

    Raises:
        ValueError: If the spec is malformed or names an unknown set or split.
    """
    name, sep, split = spec.partition(":")
    if not sep:
        raise ValueError(f"data spec {spec!r} must look like NAME:SPLIT, e.g. deepcrack:test or mix:valid")
    if name != "mix":
        return {spec: list_pairs(name, split)}
    out = {}
    for set_name in MIX_WEIGHTS:
        try:
            out[f"{set_name}:{split}"] = list_pairs(set_name, split)
        except ValueError:
            if split not in SPLITS:
                raise
    return out


def parse_data_spec(spec: str) -> list[Pair]:
    """Resolve ``NAME:SPLIT`` (``deepcrack:test``, ``mix:test``) into one list of pairs.

    Raises:
        ValueError: If the spec is malformed or names an unknown set or split.
    """
    return [p for pairs in parse_data_specs(spec).values() for p in pairs]


def load_mask(path: str | Path) -> np.ndarray:
    """Read a ground-truth mask as uint8 class ids {0, 1} (crack = 1).

    Masks stored as 0/255 (the data sets here) or 0/1 are both accepted; any
    value above 127 counts as crack in a 0/255 mask.

    Raises:
        FileNotFoundError: If the file is missing.
        ValueError: If the file is not a single-channel mask.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mask {path} does not exist")
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("L") if im.mode in ("RGB", "RGBA", "P", "LA") else im)
    except OSError as exc:
        raise ValueError(f"mask {path} cannot be read as an image ({exc}); give a PNG mask") from exc
    if arr.ndim != 2:
        raise ValueError(f"mask {path} has shape {arr.shape}; expected a single-channel H x W mask")
    return mask_to_ids(arr)


def mask_to_ids(arr: np.ndarray) -> np.ndarray:
    """The one mask rule: a 0/1 mask passes as it is, a 0/255 mask is crack above 127 (uint8 {0, 1})."""
    arr = np.asarray(arr)
    if arr.max(initial=0) <= 1:
        return arr.astype(np.uint8)
    return (arr > 127).astype(np.uint8)
