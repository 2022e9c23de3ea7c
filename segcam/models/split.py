"""Networks split at their evidence layers: a trunk to export (fast, no gradients) and a tail with gradients.

A crack's evidence is a gradient map at a layer near the output (LayerCAM at HrSegNet's ``seg3``, with
``low3`` for context; :mod:`segcam.cam.defaults`). Only the layers *after* those need a backward pass,
so a network whose evidence layers sit within a few operations of its logits is split there:

* the **trunk** (input -> logits and the evidence layers' activations) is exported once with
  :func:`segcam.models.export.export_model` (``outputs="trunk"``) and run by ONNX Runtime, as fast as
  prediction;
* the **tail** (evidence activations -> logits) runs in dygraph, where the gradients of a crack's score
  with respect to those activations come from a pass over a few small layers.

For HrSegNet the tail is the last guidance step of ``seg3`` (``l2h_conv3`` of the resized ``low3``, added to
the high-resolution path) and the head: the gradients it gives equal those of the whole network, because
nothing else depends on ``seg3``'s output or on ``low3`` (tested against :func:`segcam.explain`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import paddle
import paddle.nn.functional as F

__all__ = ["TrunkSplit", "split_for"]


@dataclass(frozen=True)
class TrunkSplit:
    """How one network is split.

    Attributes:
        layers: The evidence layers, as zoo aliases, in the order of the trunk's feature outputs.
        trunk: ``trunk(net)`` -> a Layer returning ``(logits, *features)`` (logits at the input size).
        tail: ``tail(net, features, size)`` -> (N x C x H x W logits at ``size``, the tensors that stand for
            the layers): the gradients of a score of those logits with respect to those tensors are the layers'.
    """

    layers: tuple[str, ...]
    trunk: Callable[[paddle.nn.Layer], paddle.nn.Layer]
    tail: Callable[[paddle.nn.Layer, Sequence[paddle.Tensor], Sequence[int]], tuple[paddle.Tensor, list[paddle.Tensor]]]


def _resize(x: paddle.Tensor, size: Sequence[int]) -> paddle.Tensor:
    return F.interpolate(x, size=list(size), mode="bilinear", align_corners=True)  # as HrSegNet's own resizes


class _HrSegNetTrunk(paddle.nn.Layer):
    """HrSegNet's forward pass returning the main logits, ``seg3``'s output and ``low3`` (``seg3.l_conv3``)."""

    def __init__(self, net: paddle.nn.Layer) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: paddle.Tensor) -> tuple[paddle.Tensor, paddle.Tensor, paddle.Tensor]:
        n = self.net
        s3, low3 = n.seg3.forward_paths(n.seg2(n.seg1(n.stage2(n.stage1(x)))))
        return _resize(n.head(s3), x.shape[2:]), s3, low3


def _hrsegnet_tail(net: paddle.nn.Layer, features: Sequence[paddle.Tensor],
                   size: Sequence[int]) -> tuple[paddle.Tensor, list[paddle.Tensor]]:
    """Logits from ``seg3``'s output and ``low3``, through ``seg3``'s last guidance step and the head.

    ``seg3``'s output is rebuilt as (its value minus the ``low3`` term, held constant) plus the ``low3`` term,
    so a gradient reaches ``low3`` exactly as in the whole network; the value is unchanged.
    """
    s3, low3 = features
    guided = net.seg3.l2h_conv3(_resize(low3, s3.shape[2:]))
    out = (s3 - guided).detach() + guided
    return _resize(net.head(out), size), [out, low3]


_SPLITS: dict[str, TrunkSplit] = {
    "HrSegNet": TrunkSplit(("seg3", "low3"), _HrSegNetTrunk, _hrsegnet_tail),
}


def split_for(model: Any) -> TrunkSplit | None:
    """The split of a model's network (by its class name), or None where segcam has none."""
    net = getattr(model, "network", model)
    return _SPLITS.get(type(net).__name__)
