"""HrSegNet (Li et al. 2023), written from the paper and the architecture notes.

"Real-time High-Resolution Neural Network with Semantic Guidance for Crack
Segmentation", Automation in Construction 156 (2023) 105112, arXiv 2307.00270.

The network keeps one high-resolution path at 1/4 of the input and, in each of
three ``SegBlock`` stages, a low-resolution semantic path (1/8, 1/16, 1/32)
whose features are upsampled, projected by a 1x1 convolution and added to the
high-resolution path ("semantic guidance"). Attribute names follow the
original code exactly so that checkpoints trained with it load strictly.
"""

from __future__ import annotations

import math

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

__all__ = ["HrSegNet", "SegBlock", "SegHead"]


def _cbr(in_ch: int, out_ch: int, stride: int = 1) -> list[nn.Layer]:
    """Conv3x3 -> BatchNorm -> ReLU as a list of layers (conv bias kept on)."""
    return [nn.Conv2D(in_ch, out_ch, 3, stride=stride, padding=1), nn.BatchNorm2D(out_ch), nn.ReLU()]


def _resize(x: paddle.Tensor, size: list[int] | tuple[int, int]) -> paddle.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


class SegBlock(nn.Layer):
    """One stage: a 1/4 high-resolution path guided by a low-resolution path.

    Args:
        base: Width ``b`` of the high-resolution path.
        stage_index: 1, 2 or 3; the low path has ``b * 2**stage_index`` channels
            at 1/8, 1/16 or 1/32 of the input.
    """

    def __init__(self, base: int = 32, stage_index: int = 1) -> None:
        super().__init__()
        if stage_index not in (1, 2, 3):
            raise ValueError(f"stage_index must be 1, 2 or 3, got {stage_index}")
        low = base * 2**stage_index
        self.h_conv1 = nn.Sequential(*_cbr(base, base))
        self.h_conv2 = nn.Sequential(*_cbr(base, base))
        self.h_conv3 = nn.Sequential(*_cbr(base, base))
        if stage_index == 1:
            first = _cbr(base, low, stride=2)
        elif stage_index == 2:
            first = [nn.AvgPool2D(3, stride=2, padding=1), *_cbr(base, low, stride=2)]
        else:
            first = [nn.AvgPool2D(3, stride=2, padding=1), *_cbr(base, low, stride=2), *_cbr(low, low, stride=2)]
        self.l_conv1 = nn.Sequential(*first)
        self.l_conv2 = nn.Sequential(*_cbr(low, low))
        self.l_conv3 = nn.Sequential(*_cbr(low, low))
        self.l2h_conv1 = nn.Conv2D(low, base, 1)
        self.l2h_conv2 = nn.Conv2D(low, base, 1)
        self.l2h_conv3 = nn.Conv2D(low, base, 1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.forward_paths(x)[0]

    def forward_paths(self, x: paddle.Tensor) -> tuple[paddle.Tensor, paddle.Tensor]:
        """The block's output (the high-resolution path) and its last low-resolution features (``l_conv3``'s)."""
        size = x.shape[2:]
        h, low = x, x
        steps = (
            (self.h_conv1, self.l_conv1, self.l2h_conv1),
            (self.h_conv2, self.l_conv2, self.l2h_conv2),
            (self.h_conv3, self.l_conv3, self.l2h_conv3),
        )
        for h_conv, l_conv, l2h_conv in steps:
            low = l_conv(low)
            # Guidance flows low -> high only: resize first, then the 1x1 conv, then add.
            h = h_conv(h) + l2h_conv(_resize(low, size))
        return h, low


class SegHead(nn.Layer):
    """Pre-activation head: BN -> ReLU -> conv (or 2x transposed conv) -> BN -> ReLU -> 1x1 conv.

    Args:
        inplanes: Input channels.
        interplanes: Hidden channels.
        outplanes: Number of classes.
        aux_head: True for the 3x3 conv auxiliary head at 1/4; False for the
            main head, which upsamples x2 with a transposed convolution.
    """

    def __init__(self, inplanes: int, interplanes: int, outplanes: int, aux_head: bool = False) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2D(inplanes)
        self.relu = nn.ReLU()
        if aux_head:
            first = nn.Conv2D(inplanes, interplanes, 3, stride=1, padding=1)
        else:
            first = nn.Conv2DTranspose(inplanes, interplanes, 3, stride=2, padding=1, output_padding=1)
        self.con_bn_relu = nn.Sequential(first, nn.BatchNorm2D(interplanes), nn.ReLU())
        self.conv = nn.Conv2D(interplanes, outplanes, 1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.conv(self.con_bn_relu(self.relu(self.bn1(x))))


class HrSegNet(nn.Layer):
    """HrSegNet with a configurable width ``base`` (16, 32 and 48 in the paper).

    Train mode returns ``[main, aux1, aux2]`` logits, eval mode ``[main]``; each
    is N x num_classes x H x W at the input resolution (raw logits, no softmax).

    Args:
        in_channels: Input image channels.
        base: Width of the high-resolution path.
        num_classes: Output classes (2 for crack / background).
        pretrained: Optional path of a whole-model ``.pdparams`` checkpoint,
            loaded strictly after initialisation.
    """

    def __init__(self, in_channels: int = 3, base: int = 32, num_classes: int = 2, pretrained: str | None = None) -> None:
        super().__init__()
        if base < 2 or base % 2:
            raise ValueError(f"base must be an even integer >= 2, got {base}")
        self.base = base
        self.num_classes = num_classes
        self.stage1 = nn.Sequential(*_cbr(in_channels, base // 2, stride=2))
        self.stage2 = nn.Sequential(*_cbr(base // 2, base, stride=2))
        self.seg1 = SegBlock(base, 1)
        self.seg2 = SegBlock(base, 2)
        self.seg3 = SegBlock(base, 3)
        self.aux_head1 = SegHead(base, base, num_classes, aux_head=True)
        self.aux_head2 = SegHead(base, base, num_classes, aux_head=True)
        self.head = SegHead(base, base, num_classes, aux_head=False)
        self.init_weight()
        if pretrained:
            from segcam.models.weights import load_weights

            load_weights(self, pretrained)

    def forward(self, x: paddle.Tensor) -> list[paddle.Tensor]:
        size = x.shape[2:]
        s1 = self.seg1(self.stage2(self.stage1(x)))
        s2 = self.seg2(s1)
        s3 = self.seg3(s2)
        logits = [self.head(s3)]
        if self.training:
            logits += [self.aux_head1(s1), self.aux_head2(s2)]
        return [_resize(logit, size) for logit in logits]

    def init_weight(self) -> None:
        """Kaiming-normal (fan_in) convs, BN gamma=1 / beta=0, as the original.

        ``Conv2DTranspose`` is not a ``Conv2D`` subclass in Paddle and keeps its
        default Xavier-uniform initialisation, exactly like the original code.
        """
        for layer in self.sublayers():
            if isinstance(layer, nn.Conv2D):
                fan_in = layer.weight.shape[1] * layer.weight.shape[2] * layer.weight.shape[3]
                std = math.sqrt(2.0 / fan_in)
                layer.weight.set_value(paddle.normal(0.0, std, layer.weight.shape).astype(layer.weight.dtype))
            elif isinstance(layer, nn.BatchNorm2D):
                layer.weight.set_value(paddle.ones_like(layer.weight))
                layer.bias.set_value(paddle.zeros_like(layer.bias))
