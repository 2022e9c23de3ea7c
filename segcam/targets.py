"""Targets: which output pixels (and which class) an explanation is about.

A target turns one image's logits (C x H x W, numpy) into a pixel mask M;
Seg-Grad-CAM then back-propagates the summed logits of class ``category`` over M.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["BoxTarget", "ImageTarget", "MaskTarget", "PixelTarget", "PredictedTarget", "Target",
           "TargetError", "parse_target"]

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
        return logits.argmax(axis=0) == self.category

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


_SYNTAX = "pred | image | box:X0,Y0,X1,Y1 | pixel:X,Y | mask:PATH (a mask file, or a folder of <image stem>.png masks)"


def parse_target(spec: str, category: int = CRACK) -> Target | str:
    """Parse a CLI target spec.

    Returns a :class:`Target`, or for ``mask:PATH`` the path string (the CLI
    loads the matching mask per image).

    Raises:
        TargetError: If the spec does not follow ``pred | image | box:... | pixel:... | mask:PATH``.
    """
    spec = spec.strip()
    kind, _, arg = spec.partition(":")
    kind = kind.lower()
    if kind in ("pred", "predicted") and not arg:
        return PredictedTarget(category)
    if kind in ("image", "all") and not arg:
        return ImageTarget(category)
    if kind in ("box", "pixel"):
        nums = re.fullmatch(r"\s*(-?\d+)\s*(,\s*-?\d+\s*)*", arg or "")
        values = [int(v) for v in arg.split(",")] if nums else []
        if kind == "box" and len(values) == 4:
            return BoxTarget(category, *values)
        if kind == "pixel" and len(values) == 2:
            return PixelTarget(category, *values)
    if kind == "mask" and arg:
        if not Path(arg).exists():
            raise TargetError(f"target mask path {arg} does not exist")
        return arg
    raise TargetError(f"cannot parse target {spec!r}; use {_SYNTAX}")
