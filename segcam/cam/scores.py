"""What an explanation scores and back-propagates, and the context perturbation methods get.

The scores, the model's main logits, and :class:`CamContext` (re-scoring the target on changed inputs or
with channels ablated).

Kept apart from :mod:`segcam.cam.engine` so that the methods (which need :class:`CamContext`) and the
engine (which needs the methods) import only downwards.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import paddle

__all__ = ["SCORES", "CamContext", "class_mask", "class_probability", "main_logits", "resize_maps", "score_planes",
           "softmax"]


#: What is summed over the target region and back-propagated.
SCORES = {
    "logit": "the class logit y_c (Seg-Grad-CAM's original score)",
    "margin": "y_c - logsumexp_{k != c} y_k: the evidence for c against the other classes (two classes: the log-odds)",
    "prob": "the softmax probability of class c",
}


def score_planes(logits: paddle.Tensor, score: str = "logit") -> paddle.Tensor:
    """N x C x H x W per-pixel scores whose class-``c`` plane is the score of class ``c``.

    * ``logit``: ``s_c = y_c``.
    * ``margin``: ``s_c = y_c - log(sum_{k != c} exp(y_k))``; for two classes ``y_1 - y_0``, the log-odds of
      class 1. Unlike the logit alone it does not reward raising every class at once, which is what makes a
      head-layer map light up surface texture beside a crack.
    * ``prob``: ``s_c = softmax(y)_c`` (saturates where the network is sure, so gradients vanish there).

    Raises:
        ValueError: Unknown score.
    """
    if score == "logit":
        return logits
    if score == "prob":
        return paddle.nn.functional.softmax(logits, axis=1)
    if score == "margin":
        n_classes = logits.shape[1]
        planes = []
        for c in range(n_classes):
            others = paddle.concat([logits[:, k:k + 1] for k in range(n_classes) if k != c], axis=1)
            planes.append(logits[:, c:c + 1] - paddle.logsumexp(others, axis=1, keepdim=True))
        return paddle.concat(planes, axis=1)
    raise ValueError(f"unknown score {score!r}; use one of {', '.join(SCORES)}")


def main_logits(out: Any, size: tuple[int, int] | None = None) -> paddle.Tensor:
    """The main logit map of a model output (list or tensor), resized bilinearly to ``size`` if given."""
    if isinstance(out, (list, tuple)):
        if not out:
            raise ValueError("the model returned an empty list of logits")
        out = out[0]
    if not isinstance(out, paddle.Tensor) or out.ndim != 4:
        raise ValueError(f"the model must return N x C x H x W logits (or a list whose first item is), got {type(out).__name__}")
    if size is not None and tuple(out.shape[2:]) != tuple(size):
        out = paddle.nn.functional.interpolate(out, size=list(size), mode="bilinear", align_corners=False)
    return out


def class_mask(logits: np.ndarray, category: int) -> np.ndarray:
    """``logits.argmax(axis=0) == category`` for C x H x W logits (ties to the lower class).

    Two classes are compared directly, without the argmax's int64 array (192 MB at 24 MP).
    """
    if logits.shape[0] == 2 and category in (0, 1):
        return logits[1] > logits[0] if category == 1 else logits[0] >= logits[1]
    return logits.argmax(axis=0) == category


def class_probability(logits: np.ndarray, category: int) -> np.ndarray:
    """``softmax(logits, axis=0)[category]`` (float32), with one full-size array for two classes."""
    if logits.shape[0] == 2 and category in (0, 1):
        p = np.subtract(logits[1 - category], logits[category], dtype=np.float32)
        np.clip(p, -80.0, 80.0, out=p)  # exp stays finite in float32
        np.exp(p, out=p)
        p += 1.0
        return np.reciprocal(p, out=p)
    return softmax(logits, axis=0)[category]


def softmax(logits: np.ndarray, axis: int = 0) -> np.ndarray:
    """Class probabilities of numpy logits along ``axis`` (float32), computed stably."""
    z = np.exp(logits - logits.max(axis=axis, keepdims=True))
    return (z / z.sum(axis=axis, keepdims=True)).astype(np.float32)


def resize_maps(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """K x h x w float maps resized bilinearly to ``size`` (H, W), float32."""
    h, w = size
    return np.stack([cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR) for m in maps]).astype(np.float32)


class CamContext:
    """What perturbation methods (Score-CAM, Ablation-CAM) may do with the model during one explanation.

    Args:
        net: The network (eval mode).
        x: Normalised input batch, N x 3 x H x W float32.
        weight: N x C x H x W target weights (the class-c plane holds the region mask).
        layer: The hooked layer of the current map.
    """

    def __init__(self, net: paddle.nn.Layer, x: np.ndarray, weight: np.ndarray, layer: paddle.nn.Layer | None = None,
                 score: str = "logit", on_pass: Any = None, out_size: tuple[int, int] | None = None) -> None:
        self.net = net
        self.x = x
        # the photo's size, where the logits are scored (the input may be an enlarged copy of it)
        self.out_size = tuple(out_size) if out_size is not None else tuple(x.shape[2:])
        self.weight = weight
        self.layer = layer
        self.score = score
        self.on_pass = on_pass  # called after every forward pass (progress reporting)

    def region_scores(self, i: int, inputs: np.ndarray, mean: bool = False) -> np.ndarray:
        """Target score of image ``i``'s region for each of B inputs (B x 3 x H x W); sum (or mean) of logits."""
        with paddle.no_grad():
            out = self.net(paddle.to_tensor(np.ascontiguousarray(inputs, dtype=np.float32)))
            logits = score_planes(main_logits(out, self.out_size), self.score)
        w = self.weight[i]
        scores = (logits.numpy() * w[None]).sum(axis=(1, 2, 3))
        if self.on_pass is not None:
            self.on_pass()
        return scores / max(float(w.sum()), 1.0) if mean else scores

    def ablation_scores(self, i: int, channels: list[int]) -> np.ndarray:
        """Target score of image ``i`` with one channel of ``layer`` zeroed per copy, one copy per channel."""
        if self.layer is None:
            raise ValueError("ablation needs the hooked layer")
        keep = None

        def hook(layer: paddle.nn.Layer, inputs: object, output: paddle.Tensor) -> paddle.Tensor:
            nonlocal keep
            if keep is None:
                k = output.shape[1]
                arr = np.ones((len(channels), k, 1, 1), np.float32)
                arr[np.arange(len(channels)), channels] = 0.0
                keep = paddle.to_tensor(arr)
            return output * keep

        handle = self.layer.register_forward_post_hook(hook)
        try:
            return self.region_scores(i, np.repeat(self.x[i:i + 1], len(channels), axis=0))
        finally:
            handle.remove()

    def upsample_unit(self, maps: np.ndarray) -> np.ndarray:
        """K x h x w maps resized to the input and each min-max scaled to [0, 1]."""
        up = resize_maps(maps.astype(np.float32), self.x.shape[2:])
        lo = up.min(axis=(1, 2), keepdims=True)
        span = up.max(axis=(1, 2), keepdims=True) - lo
        return np.divide(up - lo, span, out=np.zeros_like(up), where=span > 0)
