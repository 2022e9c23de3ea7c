"""Crack evidence inside the exported graph: the prediction and its evidence maps from one ONNX Runtime call.

A crack's evidence is LayerCAM of the predicted crack at a layer near the output (HrSegNet's ``seg3``, with
``low3`` for context; :mod:`segcam.cam.defaults`): the activations times the positive gradients of the crack's
summed logit. Only the layers *after* those need differentiating, and for HrSegNet that is a handful of
operations: ``seg3``'s last guidance step (``l2h_conv3`` of the resized ``low3``, added to the high-resolution
path) and the head (BN, ReLU, 3x3 transposed convolution, BN, ReLU, 1x1 convolution, bilinear resize). Their
backward pass is written here as forward operations (the transpose of each: a strided convolution for the
transposed one, constant resize matrices for the resizes, masks for the ReLUs, scales for the BNs), so the
whole explanation exports with the network (:func:`segcam.models.export.export_model`, ``outputs="evidence"``)
and runs at the speed of prediction: no dygraph, no autograd.

The target is the graph's own prediction (the pixels whose argmax is the evidence class): for a photo in one
pass, exactly the target of :func:`segcam.explain` with the predicted crack, and the maps equal its LayerCAM
maps (tested); a tile of a large photo explains the tile's own prediction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import paddle
import paddle.nn.functional as F

__all__ = ["EvidenceSplit", "resize_matrix", "split_for"]


@dataclass(frozen=True)
class EvidenceSplit:
    """How one network's evidence is exported.

    Attributes:
        layers: The evidence layers, as zoo aliases.
        graph: ``graph(net, size, category)`` -> a Layer whose forward on a 1 x 3 x H x W input of ``size``
            returns the logits, the layers' activations and the layers' LayerCAM maps of the predicted
            ``category`` (each at the layer's resolution, N x h x w).
    """

    layers: tuple[str, ...]
    graph: Callable[[paddle.nn.Layer, Sequence[int], int], paddle.nn.Layer]


def resize_matrix(n_out: int, n_in: int) -> np.ndarray:
    """The n_out x n_in matrix of a bilinear resize with ``align_corners=True`` along one axis.

    ``R_y @ X @ R_x.T`` resizes an image ``X``; ``R_y.T @ M @ R_x`` takes a weight ``M`` on the resized image back
    to the input (the resize's transpose): a sum of the resized image over ``M`` is the input's sum over it.
    """
    r = np.zeros((n_out, n_in), np.float32)
    pos = np.arange(n_out) * ((n_in - 1) / (n_out - 1)) if n_out > 1 else np.zeros(1)
    lo = np.minimum(np.floor(pos).astype(int), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = (pos - lo).astype(np.float32)
    np.add.at(r, (np.arange(n_out), lo), 1 - frac)
    np.add.at(r, (np.arange(n_out), hi), frac)
    return r


def _resize(x: paddle.Tensor, size: Sequence[int]) -> paddle.Tensor:
    return F.interpolate(x, size=list(size), mode="bilinear", align_corners=True)  # as HrSegNet's own resizes


def _bn_scale(bn: paddle.nn.Layer) -> paddle.Tensor:
    """d(output)/d(input) of an eval-mode BatchNorm, per channel, shaped 1 x K x 1 x 1."""
    return (bn.weight / paddle.sqrt(bn._variance + bn._epsilon)).reshape([1, -1, 1, 1])


def _layer_cam(act: paddle.Tensor, grad: paddle.Tensor) -> paddle.Tensor:
    return F.relu((F.relu(grad) * act).sum(axis=1))


def _sizes(size: Sequence[int], factor: int) -> list[int]:
    """Sides after ``factor`` halvings by HrSegNet's stride-2 3x3 convolutions (ceil) and average pools."""
    out = list(size)
    for _ in range(factor):
        out = [(v + 1) // 2 for v in out]
    return out


class _Matrices(paddle.nn.Layer):
    """Constant resize matrices of one input size, kept as buffers (exported as constants)."""

    def __init__(self, **mats: np.ndarray) -> None:
        super().__init__()
        for name, m in mats.items():
            self.register_buffer(name, paddle.to_tensor(m))


class _HrSegNetEvidence(paddle.nn.Layer):
    """HrSegNet -> (logits, ``seg3``, ``low3``, LayerCAM at ``seg3``, LayerCAM at ``low3``) of the predicted class."""

    def __init__(self, net: paddle.nn.Layer, size: Sequence[int], category: int) -> None:
        super().__init__()
        self.net = net
        self.category = category
        h4, h32 = _sizes(size, 2), _sizes(_sizes(size, 2), 3)
        if net.num_classes != 2:
            raise ValueError("the exported evidence graph is written for two classes (background, crack)")
        h2 = [2 * v for v in h4]  # the head's transposed convolution doubles 1/4
        # the last resize (head -> input) and the guidance resize (low3 -> 1/4), as matrices for their transposes
        self.mats = _Matrices(ry=resize_matrix(size[0], h2[0]).T.copy(), rx=resize_matrix(size[1], h2[1]),
                              ly=resize_matrix(h4[0], h32[0]).T.copy(), lx=resize_matrix(h4[1], h32[1]))

    def forward(self, x: paddle.Tensor) -> tuple[paddle.Tensor, ...]:
        n, head = self.net, self.net.head
        s3, low3 = n.seg3.forward_paths(n.seg2(n.seg1(n.stage2(n.stage1(x)))))
        a1 = head.bn1(s3)
        convt, bn2 = head.con_bn_relu[0], head.con_bn_relu[1]
        a2 = bn2(convt(F.relu(a1)))
        z = head.conv(F.relu(a2))
        logits = _resize(z, x.shape[2:])
        c, other = self.category, 1 - self.category
        picked = logits[:, c] > logits[:, other] if c == 1 else logits[:, c] >= logits[:, other]
        target = picked.astype("float32")
        m = self.mats
        weight = paddle.matmul(paddle.matmul(m.ry, target), m.rx)  # the target taken back through the last resize
        # d(sum of the class-c logit over the target)/d(seg3), layer by layer backwards
        g = head.conv.weight[c].reshape([1, -1, 1, 1]) * weight.unsqueeze(1)
        g = g * (a2 > 0).astype("float32") * _bn_scale(bn2)
        g = F.conv2d(g, convt.weight, stride=2, padding=1)  # the transposed convolution's transpose
        g_s3 = g * (a1 > 0).astype("float32") * _bn_scale(head.bn1)
        # d/d(low3): through l2h_conv3 (1x1) and the guidance resize, both linear (the resize's transpose first)
        g_small = paddle.matmul(paddle.matmul(m.ly, g_s3), m.lx)
        l2h = n.seg3.l2h_conv3.weight  # out x in x 1 x 1
        g_low3 = F.conv2d(g_small, l2h.transpose([1, 0, 2, 3]))
        return logits, s3, low3, _layer_cam(s3, g_s3), _layer_cam(low3, g_low3)


_SPLITS: dict[str, EvidenceSplit] = {
    "HrSegNet": EvidenceSplit(("seg3", "low3"), _HrSegNetEvidence),
}


def split_for(model: Any) -> EvidenceSplit | None:
    """The evidence split of a model's network (by its class name), or None where segcam has none."""
    net = getattr(model, "network", model)
    return _SPLITS.get(type(net).__name__)
