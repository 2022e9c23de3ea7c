"""``CrackDataset``: a PaddleSeg data set over ``../shared/data`` with 0/255 masks turned into {0, 1}.

It reads one or several crack sets. A set given with a sampling ``weight``
(or ``mix:train``, which weights every set by :data:`segcam.data.datasets.MIX_WEIGHTS`)
makes :meth:`CrackDataset.sample_batch` draw that share of each batch from it,
whatever its size. Each set may carry its own transforms (small crops are
scaled up, never down, before the 256 px crop; see ``configs/cpu/*_mix_cpu.yml``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import paddle

from segcam.data.datasets import MIX_WEIGHTS, Pair, list_pairs, load_mask, parse_data_specs

__all__ = ["CrackDataset", "SetSlice"]


@dataclass(frozen=True)
class SetSlice:
    """One set inside a :class:`CrackDataset`: its label, pair range and sampling weight."""

    name: str
    start: int
    stop: int
    weight: float | None


class CrackDataset(paddle.io.Dataset):
    """Image/mask pairs of one or more crack sets, transformed with PaddleSeg transforms.

    Args:
        datasets: Set names, ``NAME:SPLIT`` strings (``deepcrack:train``, ``mix:train``), or mappings
            ``{data: NAME:SPLIT, weight: 2.0, transforms: [...]}`` (weight = share of the draws,
            transforms replace the common ones for that set).
        split: Split used for names given without one.
        transforms: A list of PaddleSeg transform objects or ``{type: ...}`` dicts.
        mode: ``train`` (label transformed with the image) or ``val``.
        limit: Use only the first N pairs of each set (0 = all), e.g. for smoke runs.
        num_classes: Kept for PaddleSeg compatibility (2).
        ignore_index: Kept for PaddleSeg compatibility (255).
        **unused: Other PaddleSeg keys (``dataset_root``...) are accepted and ignored.

    Raises:
        ValueError: A malformed entry, an unknown set or split, or a negative weight.
    """

    def __init__(self, datasets: str | list[Any] = "deepcrack", split: str = "train", transforms: list | None = None,
                 mode: str = "train", limit: int = 0, num_classes: int = 2, ignore_index: int = 255,
                 **unused: Any) -> None:
        from paddleseg.transforms import Compose

        entries = [datasets] if isinstance(datasets, (str, dict)) else list(datasets)
        common = Compose([_build_transform(t) for t in (transforms or [{"type": "Normalize"}])])
        self.pairs: list[Pair] = []
        self.sets: list[SetSlice] = []
        self._compose: list[Any] = []
        for entry in entries:
            for name, pairs, weight, own in _expand(entry, split):
                pairs = pairs[:limit] if limit else pairs
                self.sets.append(SetSlice(name, len(self.pairs), len(self.pairs) + len(pairs), weight))
                self.pairs += pairs
                self._compose.append(Compose([_build_transform(t) for t in own]) if own else common)
        self.mode = mode
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    @property
    def pair_weights(self) -> np.ndarray | None:
        """Probability of drawing each pair (None: every pair equally, shuffled epochs)."""
        if all(s.weight is None for s in self.sets):
            return None
        p = np.zeros(len(self.pairs))
        for s in self.sets:
            if s.stop > s.start:
                p[s.start:s.stop] = (1.0 if s.weight is None else s.weight) / (s.stop - s.start)
        return p / p.sum()

    def batch_indices(self, iteration: int, batch_size: int, seed: int) -> np.ndarray:
        """The pair indices of batch ``iteration``: a pure function of its arguments (resume-safe).

        Unweighted: shuffled epochs without replacement (epoch ``e`` permuted by seed ``(seed, e)``).
        Weighted: each draw picks a pair with :attr:`pair_weights` (with replacement).
        """
        n = len(self.pairs)
        if n < batch_size:
            raise ValueError(f"the training data has {n} pairs, fewer than one batch of {batch_size}")
        weights = self.pair_weights
        if weights is not None:
            return np.random.default_rng([seed, iteration]).choice(n, size=batch_size, p=weights)
        per_epoch = n // batch_size  # drop_last
        epoch, k = divmod(iteration, per_epoch)
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        return perm[k * batch_size:(k + 1) * batch_size]

    def set_of(self, idx: int) -> int:
        """Index into :attr:`sets` of pair ``idx``."""
        for i, s in enumerate(self.sets):
            if s.start <= idx < s.stop:
                return i
        raise IndexError(idx)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, idx: int) -> tuple[np.ndarray, np.ndarray]:
        pair = self.pairs[idx]
        label = load_mask(pair.mask)
        img = cv2.imread(str(pair.image), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"cannot read image {pair.image}")
        data: dict[str, Any] = {"img": img.astype("float32"), "label": label, "trans_info": [], "gt_fields": []}
        if self.mode == "train":
            data["gt_fields"].append("label")
        data = self._compose[self.set_of(idx)](data)
        return data["img"].astype("float32"), np.asarray(data["label"]).astype("int64")


def _expand(entry: Any, split: str) -> list[tuple[str, list[Pair], float | None, list | None]]:
    """One dataset entry -> [(name, pairs, weight, own transforms)]."""
    if isinstance(entry, str):
        spec = entry if ":" in entry else f"{entry}:{split}"
        if spec.startswith("mix:"):
            return [(k, v, MIX_WEIGHTS[k.partition(":")[0]], None) for k, v in parse_data_specs(spec).items()]
        name, _, set_split = spec.partition(":")
        return [(spec, list_pairs(name, set_split), None, None)]
    if not isinstance(entry, dict) or "data" not in entry:
        raise ValueError(f"dataset entry {entry!r} must be NAME:SPLIT or a mapping with a 'data' key")
    weight = entry.get("weight")
    if weight is not None and float(weight) < 0:
        raise ValueError(f"dataset entry {entry['data']}: weight {weight} must be >= 0")
    expanded = _expand(entry["data"], split)
    return [(n, p, float(weight) if weight is not None else w, entry.get("transforms")) for n, p, w, _ in expanded]


def _build_transform(spec: Any) -> Any:
    if not isinstance(spec, dict):
        return spec
    from paddleseg.cvlibs import manager

    spec = dict(spec)
    return manager.TRANSFORMS[spec.pop("type")](**spec)


def _register() -> None:
    try:
        from paddleseg.cvlibs import manager
    except ImportError:
        return
    if "CrackDataset" not in manager.DATASETS.components_dict:
        manager.DATASETS.add_component(CrackDataset)


_register()
