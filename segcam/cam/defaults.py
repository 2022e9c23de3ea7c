"""Default method, layer and score per target kind, chosen by measurement (``benchmarks/target_defaults.py``).

A region-summed Seg-Grad-CAM weights each channel by its gradient averaged over the *whole* feature map, so
for a small target (one crack of several, a pixel, a box) its map does not follow the target: on DeepCrack
test only 1-17 % of its energy lies within 15 px of the target at ``seg3`` (and at ``seg_head`` two
components' maps are identical, rank correlation 1.00). Element-wise methods (LayerCAM, HiResCAM) put all of
it there. The defaults below are, for each kind of target, the measured combination whose map follows the
target (energy near the target >= 0.9) and is the most faithful (deleting the pixels the map ranks first
lowers the target's score fastest, relative to a random order); for the predicted crack, where every
combination is equally faithful (1.56-1.58), the original Seg-Grad-CAM at the head stays. The numbers are in
``benchmarks/results/target_defaults/summary.json`` and the README.

The rank correlation of two targets' maps is reported but not used to choose: maps that are zero almost
everywhere share their zeros, which alone makes two well-separated maps correlate (LayerCAM, pixel targets:
0.997 with all energy at the right pixel).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from segcam.cam.targets import BoxTarget, ComponentTarget, PixelTarget

__all__ = ["DEFAULTS", "LOCATION_BLIND", "Recipe", "location_note", "recipe_for", "target_kind"]


@dataclass(frozen=True)
class Recipe:
    """What to explain a target kind with, and the measurement behind it.

    Attributes:
        method: CAM method name.
        layer: Layer alias.
        score: ``logit``, ``margin`` or ``prob``.
        own_energy: Measured share of the map's energy within 15 px of its own target (nan for ``pred``).
        spearman: Measured mean rank correlation of two disjoint targets' maps (nan for ``pred``).
        deletion: Measured deletion drop relative to a random order (higher is more faithful).
    """

    method: str
    layer: str
    score: str
    own_energy: float
    spearman: float
    deletion: float


_NAN = float("nan")

#: From benchmarks/results/target_defaults/summary.json: HrSegNet-B16 (mix weights), 5 DeepCrack test photos
#: with two or more predicted cracks, methods seg_grad_cam / seg_hires_cam / layer_cam x layers seg3 / seg_head
#: x scores logit / margin. (LayerCAM's logit and margin maps agree to three decimals; margin is kept because
#: it is the crack-vs-background evidence.)
DEFAULTS: dict[str, Recipe] = {
    "pred": Recipe("seg_grad_cam", "seg_head", "logit", _NAN, _NAN, 1.576),
    "component": Recipe("layer_cam", "seg3", "margin", 1.000, 0.858, 1.597),
    "pixel": Recipe("layer_cam", "seg3", "margin", 1.000, 0.997, 1.732),
    "box": Recipe("layer_cam", "seg3", "margin", 1.000, 0.938, 1.616),
}

#: Methods whose map does not follow a local target: the best share of its energy within 15 px of a crack
#: component target over the layers measured. seg_eigen_cam ignores the target altogether (no gradient).
LOCATION_BLIND: dict[str, float] = {"seg_grad_cam": 0.210}


def target_kind(target: Any) -> str:
    """``component``, ``pixel``, ``box``, or ``pred`` for every region-level target (prediction, mask...)."""
    if isinstance(target, ComponentTarget):
        return "component"
    if isinstance(target, PixelTarget):
        return "pixel"
    if isinstance(target, BoxTarget):
        return "box"
    return "pred"


def recipe_for(target: Any) -> Recipe:
    """The default :class:`Recipe` of ``target``'s kind."""
    return DEFAULTS[target_kind(target)]


def location_note(method: str, target: Any) -> str | None:
    """A sentence saying that ``method`` ignores where a local ``target`` is, or None when it does not."""
    kind = target_kind(target)
    if kind == "pred":
        return None
    if method == "seg_eigen_cam":
        return ("seg_eigen_cam uses no gradient: its map is the same for every target; "
                f"for a {kind} target use {DEFAULTS[kind].method} at {DEFAULTS[kind].layer}")
    if method in LOCATION_BLIND:
        r = DEFAULTS[kind]
        return (f"{method} averages the gradient over the whole feature map, so its map barely depends on where "
                f"the target is (at most {100 * LOCATION_BLIND[method]:.0f} % of its energy within 15 px of a crack "
                f"component target on DeepCrack test); for a {kind} target {r.method} at {r.layer} with the "
                f"{r.score} score follows it ({100 * r.own_energy:.0f} %)")
    return None
