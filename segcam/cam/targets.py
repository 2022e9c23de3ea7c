"""Targets: which output pixels (and which class) an explanation is about.

A target turns one image's logits (C x H x W, numpy) into a pixel mask M;
Seg-Grad-CAM then back-propagates the summed logits of class ``category`` over M.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

__all__ = ["BorderTarget", "BoxTarget", "ComponentTarget", "ErrorRegionTarget", "ImageTarget", "MaskTarget",
           "PixelTarget", "PredictedTarget", "SkeletonTarget", "Target", "TargetError", "parse_target", "skeletonize"]

CRACK = 1


class TargetError(ValueError):
    """A target that does not fit the image (outside it, wrong size) or cannot be parsed."""


@dataclass(frozen=True)
class Target:
    """Base class: ``category`` is the class whose logits are summed (1 = crack)."""

    category: int = CRACK

    def mask(self, logits: np.ndarray) -> np.ndarray:
        """Boolean H x W mask of the pixels explained, for logits of shape C x H x W."""
        raise NotImplementedError

    def describe(self) -> str:
        """Short text for manifests and titles."""
        raise NotImplementedError


@dataclass(frozen=True)
class PredictedTarget(Target):
    """Pixels the network predicts as ``category`` (argmax over classes). The default."""

    def mask(self, logits: np.ndarray) -> np.ndarray:
        from segcam.cam.scores import class_mask

        return class_mask(logits, self.category)

    def describe(self) -> str:
        return f"predicted class {self.category}"


@dataclass(frozen=True)
class ImageTarget(Target):
    """Every pixel of the image."""

    def mask(self, logits: np.ndarray) -> np.ndarray:
        return np.ones(logits.shape[1:], dtype=bool)

    def describe(self) -> str:
        return f"whole image, class {self.category}"


@dataclass(frozen=True)
class MaskTarget(Target):
    """A given mask (e.g. the ground truth); nonzero pixels are explained.

    Args:
        region: H x W array; must have the image's size.
        name: Where the mask came from (file name), for the manifest.
    """

    region: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), bool), compare=False)
    name: str = "mask"

    def mask(self, logits: np.ndarray) -> np.ndarray:
        region = np.asarray(self.region)
        if region.shape != logits.shape[1:]:
            h, w = logits.shape[1:]
            raise TargetError(
                f"target mask {self.name} is {region.shape[1] if region.ndim > 1 else '?'}x{region.shape[0]} "
                f"but the image is {w}x{h}; give a mask of the same size as the image"
            )
        return region > 0

    def describe(self) -> str:
        return f"mask {self.name}, class {self.category}"


@dataclass(frozen=True)
class BoxTarget(Target):
    """Pixels inside the box ``[x0, x1) x [y0, y1)`` (pixel coordinates, x = column)."""

    x0: int = 0
    y0: int = 0
    x1: int = 0
    y1: int = 0

    def mask(self, logits: np.ndarray) -> np.ndarray:
        h, w = logits.shape[1:]
        if not (0 <= self.x0 < self.x1 <= w and 0 <= self.y0 < self.y1 <= h):
            raise TargetError(
                f"box {self.x0},{self.y0},{self.x1},{self.y1} does not fit the {w}x{h} image; "
                f"need 0 <= x0 < x1 <= {w} and 0 <= y0 < y1 <= {h}"
            )
        m = np.zeros((h, w), dtype=bool)
        m[self.y0:self.y1, self.x0:self.x1] = True
        return m

    def describe(self) -> str:
        return f"box {self.x0},{self.y0},{self.x1},{self.y1}, class {self.category}"


@dataclass(frozen=True)
class PixelTarget(Target):
    """One pixel at column ``x``, row ``y``."""

    x: int = 0
    y: int = 0

    def mask(self, logits: np.ndarray) -> np.ndarray:
        h, w = logits.shape[1:]
        if not (0 <= self.x < w and 0 <= self.y < h):
            raise TargetError(f"pixel {self.x},{self.y} is outside the {w}x{h} image; need 0 <= x < {w}, 0 <= y < {h}")
        m = np.zeros((h, w), dtype=bool)
        m[self.y, self.x] = True
        return m

    def describe(self) -> str:
        return f"pixel {self.x},{self.y}, class {self.category}"


def _predicted(logits: np.ndarray, category: int) -> np.ndarray:
    return logits.argmax(axis=0) == category


def skeletonize(mask: np.ndarray) -> np.ndarray:
    """Morphological skeleton (Lantuejoul): union over n of erode^n(X) minus its opening."""
    img = mask.astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    skel = np.zeros_like(img)
    while img.any():
        eroded = cv2.erode(img, kernel)
        skel |= img - cv2.dilate(eroded, kernel)
        img = eroded
    return skel.astype(bool)


@dataclass(frozen=True)
class ComponentTarget(Target):
    """One connected crack component of the prediction (8-connectivity): explain one crack.

    Args:
        rank: 1 = the largest component, 2 = the second largest...; used when ``x``/``y`` are None.
        x: Column of a pixel inside the wanted component (with ``y``).
        y: Row of that pixel.
    """

    rank: int = 1
    x: int | None = None
    y: int | None = None

    def mask(self, logits: np.ndarray) -> np.ndarray:
        n, labels, stats, _ = cv2.connectedComponentsWithStats(_predicted(logits, self.category).astype(np.uint8), 8)
        if self.x is not None and self.y is not None:
            h, w = labels.shape
            if not (0 <= self.x < w and 0 <= self.y < h):
                raise TargetError(f"pixel {self.x},{self.y} is outside the {w}x{h} image")
            lab = labels[self.y, self.x]
            return labels == lab if lab > 0 else np.zeros_like(labels, bool)
        if self.rank < 1:
            raise TargetError(f"component rank must be >= 1, got {self.rank}")
        order = np.argsort(-stats[1:, cv2.CC_STAT_AREA], kind="stable") + 1
        return labels == order[self.rank - 1] if self.rank <= len(order) else np.zeros_like(labels, bool)

    def describe(self) -> str:
        where = f"at {self.x},{self.y}" if self.x is not None else f"rank {self.rank}"
        return f"crack component {where}, class {self.category}"


@dataclass(frozen=True)
class ErrorRegionTarget(Target):
    """True-positive, false-positive or false-negative pixels of the prediction against a ground truth.

    ``fp`` explains why the network saw a crack where there is none; ``fn`` why it missed one (the
    class-``category`` logits there are summed, so the map shows what argued *for* crack).

    Args:
        kind: ``tp``, ``fp`` or ``fn``.
        truth: H x W ground-truth mask (nonzero = class ``category``).
        name: Where the mask came from.
    """

    kind: str = "tp"
    truth: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), bool), compare=False)
    name: str = "ground truth"

    def mask(self, logits: np.ndarray) -> np.ndarray:
        if self.kind not in ("tp", "fp", "fn"):
            raise TargetError(f"error region kind must be tp, fp or fn, got {self.kind!r}")
        gt = MaskTarget(self.category, self.truth, self.name).mask(logits)
        pred = _predicted(logits, self.category)
        return {"tp": pred & gt, "fp": pred & ~gt, "fn": ~pred & gt}[self.kind]

    def describe(self) -> str:
        return f"{self.kind} pixels vs {self.name}, class {self.category}"


@dataclass(frozen=True)
class SkeletonTarget(Target):
    """The one-pixel skeleton of the predicted crack (its centre lines)."""

    def mask(self, logits: np.ndarray) -> np.ndarray:
        return skeletonize(_predicted(logits, self.category))

    def describe(self) -> str:
        return f"skeleton of predicted class {self.category}"


@dataclass(frozen=True)
class BorderTarget(Target):
    """A band of ``width`` pixels on both sides of the predicted crack's border."""

    width: int = 2

    def mask(self, logits: np.ndarray) -> np.ndarray:
        if self.width < 1:
            raise TargetError(f"border width must be >= 1, got {self.width}")
        pred = _predicted(logits, self.category).astype(np.uint8)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * self.width + 1, 2 * self.width + 1))
        return (cv2.dilate(pred, kernel) - cv2.erode(pred, kernel)).astype(bool)

    def describe(self) -> str:
        return f"{self.width}-px band around the predicted class {self.category} border"


_SYNTAX = ("pred | image | box:X0,Y0,X1,Y1 | pixel:X,Y | mask:PATH | component[:RANK|:X,Y] | skeleton | border[:W] "
           "| tp:PATH | fp:PATH | fn:PATH (PATH: a mask file, or a folder of <image stem>.png masks)")


def parse_target(spec: str, category: int = CRACK) -> Target | tuple[str, str]:
    """Parse a CLI target spec (see ``_SYNTAX``).

    Returns a :class:`Target`, or for specs that need a mask per image (``mask:``, ``tp:``, ``fp:``,
    ``fn:``) a ``(kind, path)`` tuple; the CLI loads the matching mask for each image.

    Raises:
        TargetError: If the spec cannot be parsed or a mask path does not exist.
    """
    spec = spec.strip()
    kind, _, arg = spec.partition(":")
    kind = kind.lower()
    if kind in ("pred", "predicted") and not arg:
        return PredictedTarget(category)
    if kind in ("image", "all") and not arg:
        return ImageTarget(category)
    if kind == "skeleton" and not arg:
        return SkeletonTarget(category)
    nums = re.fullmatch(r"\s*(-?\d+)\s*(,\s*-?\d+\s*)*", arg or "")
    values = [int(v) for v in arg.split(",")] if nums else []
    if kind == "box" and len(values) == 4:
        return BoxTarget(category, *values)
    if kind == "pixel" and len(values) == 2:
        return PixelTarget(category, *values)
    if kind == "component" and (not arg or len(values) in (1, 2)):
        if len(values) == 2:
            return ComponentTarget(category, 1, *values)
        return ComponentTarget(category, values[0] if values else 1)
    if kind == "border" and (not arg or len(values) == 1):
        return BorderTarget(category, values[0] if values else 2)
    if kind in ("mask", "tp", "fp", "fn") and arg:
        if not Path(arg).exists():
            raise TargetError(f"target mask path {arg} does not exist")
        return kind, arg
    raise TargetError(f"cannot parse target {spec!r}; use {_SYNTAX}")
