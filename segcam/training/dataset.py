"""``CrackDataset``: a PaddleSeg data set over ``../shared/data`` with 0/255 masks turned into {0, 1}."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import paddle

from segcam.data import list_pairs, load_mask

__all__ = ["CrackDataset"]


class CrackDataset(paddle.io.Dataset):
    """Image/mask pairs of one or more crack sets, transformed with PaddleSeg transforms.

    Args:
        datasets: Data set names, or ``NAME:SPLIT`` strings (``deepcrack:train``).
        split: Split used for names given without one.
        transforms: A list of PaddleSeg transform objects or ``{type: ...}`` dicts.
        mode: ``train`` (label transformed with the image) or ``val``.
        limit: Use only the first N pairs (0 = all), e.g. for smoke runs.
        num_classes: Kept for PaddleSeg compatibility (2).
        ignore_index: Kept for PaddleSeg compatibility (255).
        **unused: Other PaddleSeg keys (``dataset_root``...) are accepted and ignored.
    """

    def __init__(self, datasets: str | list[str] = "deepcrack", split: str = "train", transforms: list | None = None,
                 mode: str = "train", limit: int = 0, num_classes: int = 2, ignore_index: int = 255,
                 **unused: Any) -> None:
        from paddleseg.transforms import Compose

        names = [datasets] if isinstance(datasets, str) else list(datasets)
        self.pairs = []
        for name in names:
            set_name, _, set_split = name.partition(":")
            self.pairs += list_pairs(set_name, set_split or split)
        if limit:
            self.pairs = self.pairs[:limit]
        self.transforms = Compose([_build_transform(t) for t in (transforms or [{"type": "Normalize"}])])
        self.mode = mode
        self.num_classes = num_classes
        self.ignore_index = ignore_index

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
        data = self.transforms(data)
        return data["img"].astype("float32"), np.asarray(data["label"]).astype("int64")


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
