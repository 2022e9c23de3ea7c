"""The Seg-Grad-CAM engine: one forward and one backward pass for all layers and images."""

from __future__ import annotations

import warnings
from typing import Any, Callable, Sequence

import numpy as np
import paddle

from segcam.cam.hooks import ActivationCapture, ensure_dygraph, frozen_parameters
from segcam.cam.layers import resolve_layers
from segcam.cam.methods import get_method
from segcam.cam.methods.base import BaseCAM
from segcam.cam.result import Explanation, ImageExplanation, LayerMap
from segcam.cam.scores import SCORES, CamContext, main_logits, resize_maps, score_planes, softmax
from segcam.cam.targets import PredictedTarget, Target, TargetError
from segcam.data.images import normalize

__all__ = ["SCORES", "CamContext", "EmptyTargetWarning", "LayerGradientError", "check_input_size", "explain",
           "main_logits", "score_planes"]

class LayerGradientError(ValueError):
    """A hooked layer that does not reach the logits, so it gets no gradient."""


class EmptyTargetWarning(UserWarning):
    """The target region of an image is empty; its maps are all zero."""


def _as_batch(images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = [images]
    arrays = [np.asarray(im) for im in images]
    if not arrays:
        raise ValueError("no image given")
    for i, im in enumerate(arrays):
        if im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8:
            raise ValueError(f"image {i} must be H x W x 3 uint8 RGB (use segcam.read_image), "
                             f"got {im.dtype} array of shape {im.shape}")
    sizes = {im.shape for im in arrays}
    if len(sizes) > 1:
        raise ValueError(f"images in one batch must share one size, got {sorted(sizes)}; explain them one at a time")
    return np.stack(arrays)


def nearest_sizes(h: int, w: int, k: int) -> str:
    """The nearest H x W below and above whose sides are multiples of ``k`` (``96x96 or 104x104``)."""
    return f"{max(k, h // k * k)}x{max(k, w // k * k)} or {-(-h // k) * k}x{-(-w // k) * k}"


def layer_prefix(layer: str) -> str:
    """How :func:`explain` starts a method's warning about one layer (the app shows it on that layer's tile)."""
    return f"layer {layer}: "


def check_input_size(model: Any, size: Sequence[int]) -> None:
    """Refuse sizes the model cannot run (DDRNet needs multiples of 8), naming sizes that work.

    Raises:
        ValueError: With the nearest accepted sizes.
    """
    k = int(getattr(model, "size_multiple", 1))
    h, w = int(size[0]), int(size[1])
    if k > 1 and (h % k or w % k):
        raise ValueError(f"{getattr(model, 'name', 'this model')} needs input sides that are multiples of {k}, "
                         f"got {w}x{h} (W x H); resize or pad to H x W = {nearest_sizes(h, w, k)}")


def _target_weights(logits: np.ndarray, targets: list[Target], names: list[str]) -> tuple[np.ndarray, list[np.ndarray]]:
    """N x C x H x W weights (the target class plane of each image holds its region mask) and the masks."""
    n_classes = logits.shape[1]
    weight = np.zeros(logits.shape, dtype=np.float32)
    masks = []
    for i, t in enumerate(targets):
        if not 0 <= t.category < n_classes:
            raise TargetError(f"class {t.category} does not exist; the model has classes 0..{n_classes - 1}")
        m = t.mask(logits[i])
        masks.append(m)
        weight[i, t.category] = m
        if not m.any():
            warnings.warn(f"{names[i]}: the target region ({t.describe()}) is empty, so its maps are all zero; "
                          "choose another target (e.g. --target image)", EmptyTargetWarning, stacklevel=3)
    return weight, masks


def _image_maps(per_layer: dict[str, tuple[str, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]],
                i: int, empty: bool) -> dict[str, LayerMap]:
    """Image ``i``'s LayerMaps; an empty target gives all-zero maps (flagged), never NaN."""
    maps = {}
    for key, (real, raw, up, act, grad) in per_layer.items():
        raw_i, up_i = (np.zeros_like(raw[i]), np.zeros_like(up[i])) if empty else (raw[i], up[i])
        top = float(up_i.max())
        unit = (up_i / top).astype(np.float32) if top > 0 else np.zeros_like(up_i)
        maps[key] = LayerMap(key, real, raw_i, up_i, unit, top, empty, None if act is None else act[i],
                             None if grad is None else grad[i])
    return maps


def explain(model: Any, images: np.ndarray | Sequence[np.ndarray], layers: str | Sequence[str] = "seg_head",
            targets: Target | Sequence[Target] | None = None, method: str | BaseCAM = "seg_grad_cam",
            names: Sequence[str] | None = None, score: str = "logit", mean: Sequence[float] | None = None,
            std: Sequence[float] | None = None, progress: Callable[[str, int, int], None] | None = None,
            keep_activations: bool = False, input_scale: float = 1.0, **method_args: Any) -> Explanation:
    """Explain why the model marks pixels as crack, for every requested layer.

    All layers come from ONE forward and ONE backward pass over the whole batch.
    The model is used as it is: it must already be in eval mode, and neither
    its mode nor its parameters are changed (hooks are removed in ``finally``).

    Args:
        model: A :class:`segcam.models.zoo.ZooModel`, or a ``paddle.nn.Layer`` with ``mean``/``std`` given.
        images: One H x W x 3 uint8 RGB image or a sequence of same-sized ones.
        layers: Dotted sublayer names, aliases (``seg_head``), ``name[i]`` for one element of a tuple
            output, or the sublayer objects themselves.
        targets: One target per image, or one for all; default: predicted crack pixels.
        method: Method name (see :func:`segcam.list_methods`) or instance.
        names: Names of the images for output files; default ``image0``, ``image1``...
        score: What is summed over the target region (:data:`SCORES`, :func:`score_planes`): ``logit``
            (Seg-Grad-CAM's ``sum_M y_c``), ``margin`` (``sum_M y_c - logsumexp_{k!=c} y_k``) or ``prob``.
        mean: Input normalisation mean (RGB on [0, 1]); required for a bare network, whose training
            normalisation segcam cannot know (PaddleSeg's default is 0.5, 0.5, 0.5).
        std: Input normalisation std, with ``mean``.
        progress: Called as ``progress(stage, done, total)``: once after the forward pass, then for
            perturbation methods (Score-CAM, Ablation-CAM) after each of their forward passes; ``done`` and
            ``total`` count the passes of all layers together (one fraction for the whole explanation) and
            ``stage`` names the layer (``"layer 2 of 3 (low3)"``).
            An exception it raises (e.g. a cancelled web request) stops the explanation; hooks are removed.
        keep_activations: Keep each layer's activations (K x h x w float32) in :attr:`LayerMap.activations`,
            and with a gradient method the gradients of the score in :attr:`LayerMap.gradients` (per-crack
            evidence and feature vectors are computed from them without another pass).
        input_scale: Run the network on the photos enlarged (or shrunk) by this factor (bilinear); the logits,
            targets and maps stay at the photos' own size. For small crops with thin cracks: a network trained
            on 256 px crops drawn from 1-2x enlarged small photos sees their cracks thinner than it learnt them
            (README, *Small photos*).
        **method_args: Options of the method (``batch_size`` for Score-/Ablation-CAM, ``pool`` for XRes).

    Returns:
        An :class:`segcam.cam.result.Explanation`.

    Raises:
        ValueError: Model in train mode, bad images, a target count that does not match.
        segcam.cam.layers.LayerNotFoundError: Unknown layer.
        LayerGradientError: A layer that does not reach the logits.
        segcam.cam.targets.TargetError: A target that does not fit an image.
    """
    ensure_dygraph()
    net = getattr(model, "network", model)
    if net.training:
        raise ValueError("the model is in train mode; call model.eval() first (segcam never switches modes itself)")
    batch = _as_batch(images)
    check_input_size(model, batch.shape[1:3])
    n = len(batch)
    if targets is None:
        targets = [PredictedTarget()] * n
    elif isinstance(targets, Target):
        targets = [targets] * n
    targets = list(targets)
    if len(targets) != n:
        raise ValueError(f"got {len(targets)} targets for {n} images; give one target per image (or a single one for all)")
    names = list(names) if names is not None else [f"image{i}" for i in range(n)]
    if len(names) != n:
        raise ValueError(f"got {len(names)} names for {n} images")
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}; use one of {', '.join(SCORES)}")
    cam_method = get_method(method, **method_args)
    resolved = resolve_layers(model, [layers] if isinstance(layers, (str, paddle.nn.Layer)) else list(layers))
    by_name = {r.name: r.layer for r in resolved}
    if mean is None or std is None:
        if not (hasattr(model, "mean") and hasattr(model, "std")):
            raise ValueError(f"{type(model).__name__} is a bare network: segcam cannot know the normalisation it was "
                             "trained with; pass mean=..., std=... (PaddleSeg's default: 0.5, 0.5, 0.5), or build it "
                             "with segcam.create_model / segcam.load_paddleseg")
        mean, std = model.mean, model.std

    if not (isinstance(input_scale, (int, float)) and 0.1 <= input_scale <= 8):
        raise ValueError(f"input_scale must be a number in [0.1, 8], got {input_scale!r}")
    net_batch = batch
    if input_scale != 1:
        import cv2

        h, w = batch.shape[1:3]
        size_in = (max(1, round(w * input_scale)), max(1, round(h * input_scale)))
        net_batch = np.stack([cv2.resize(im, size_in, interpolation=cv2.INTER_LINEAR) for im in batch])
        check_input_size(model, net_batch.shape[1:3])
    x = paddle.to_tensor(normalize(net_batch, mean, std))
    # gradient methods: the backward graph starts at the explained layers (frozen parameters, captured
    # activations as leaves), so the layers before them keep no tensors for it (a 1024 px tile's memory)
    graph = frozen_parameters(net) if cam_method.uses_gradients else paddle.no_grad()
    size = (batch.shape[1], batch.shape[2])
    indices = {r.name: r.index for r in resolved if r.index is not None}
    with ActivationCapture(by_name, indices, leaves=cam_method.uses_gradients) as cap, graph:
        logits = main_logits(net(x), size)
    cap.check_single_calls()
    logits_np = logits.detach().numpy()
    acts = [cap.activations[r.name] for r in resolved]
    # perturbation methods: one count over every layer, so a caller shows one fraction and one estimate
    per_layer_passes = ([n * cam_method.passes(int(a.shape[1])) if len(a.shape) == 4 else 0 for a in acts]
                        if hasattr(cam_method, "passes") else [])
    grand_total, done = 1 + sum(per_layer_passes), [1]
    if progress is not None:
        progress("forward pass", 1, grand_total)
    weight, masks = _target_weights(logits_np, targets, names)
    x_np = x.numpy()
    if cam_method.uses_gradients:
        total = (score_planes(logits, score) * paddle.to_tensor(weight)).sum()
        unique = list({id(a): a for a in acts}.values())  # two names for one tensor (alias and name)
        got = dict(zip((id(a) for a in unique), paddle.grad([total], unique, allow_unused=True)))
        grads = [got[id(a)] for a in acts]
        dead = [r.requested for r, g in zip(resolved, grads) if g is None]
        if dead:
            raise LayerGradientError(f"layer(s) {', '.join(dead)} do not reach the logits (no gradient); "
                                     "pick a layer on the path to the output, e.g. seg_head")
        grads_np = [g.numpy() for g in grads]
    else:
        grads_np = [None] * len(acts)

    per_layer = {}
    for li, (r, a, g) in enumerate(zip(resolved, acts, grads_np)):
        act = a.detach().numpy()
        if act.ndim != 4:
            raise LayerGradientError(f"layer {r.requested!r} outputs shape {list(act.shape)}, not N x K x h x w feature maps")
        on_pass = None
        if progress is not None and per_layer_passes:
            def on_pass(stage: str = f"layer {li + 1} of {len(resolved)} ({r.requested})") -> None:
                done[0] += 1
                progress(stage, done[0], grand_total)
        with warnings.catch_warnings(record=True) as said:  # a method's warning names the layer it concerns
            warnings.simplefilter("always")
            raw = cam_method.cam(act, g, CamContext(net, x_np, weight, r.layer, score, on_pass, out_size=size))
        for w in said:
            warnings.warn(f"{layer_prefix(r.requested)}{w.message}", w.category, stacklevel=2)
        kept = (act.astype(np.float32), None if g is None else g.astype(np.float32)) if keep_activations else (None, None)
        per_layer[r.requested] = (r.name, raw, resize_maps(raw, size), *kept)

    pred = logits_np.argmax(axis=1).astype(np.uint8)
    prob = softmax(logits_np, axis=1)
    results = [ImageExplanation(names[i], batch[i], pred[i], masks[i], targets[i].describe(), targets[i].category,
                                _image_maps(per_layer, i, empty=not masks[i].any()),
                                probability=prob[i, targets[i].category]) for i in range(n)]
    zm_meta = {"name": getattr(model, "name", type(net).__name__), "weights": getattr(model, "weights", None),
               "weights_sha256": getattr(model, "weights_sha256", None),
               "random_init": getattr(model, "random_init", None), "partial": getattr(model, "partial", False),
               "mean": list(mean), "std": list(std)}
    meta = {"model": zm_meta,
            "layers": [{"requested": r.requested, "name": r.name, "type": type(r.layer).__name__} for r in resolved],
            "target": sorted({t.describe() for t in targets}), "category": sorted({t.category for t in targets}),
            "score": {"name": score, "formula": SCORES[score]}}
    return Explanation(tuple(results), tuple(r.requested for r in resolved), cam_method.name, zm_meta["name"], meta)
