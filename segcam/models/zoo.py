"""The model zoo: HrSegNet B16/B32/B48 and the paper's seven PaddleSeg baselines.

Every model is found by name (``list_models("hrsegnet_*")``) and declares a few
stable layer aliases. ``seg_head`` always names the layer whose output is the
final logit map (before the resize to the input size), so ``--layer seg_head``
works for every model.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import paddle

from segcam.cam.hooks import ensure_dygraph
from segcam.models.store import PRETRAINED_DIR, WeightsMissingError, card, find_weights, known_tags, missing_message
from segcam.models.weights import LoadReport, load_weights
from segcam.utils.registry import Registry

__all__ = ["DEFAULT_TAG_ORDER", "ModelSpec", "ZooModel", "create_model", "get_model_spec", "list_models",
           "load_paddleseg", "rebuild_model", "split_tag"]

#: Which shipped weights a bare model name loads, in order of preference: the crack-general weights
#: trained on every set (``mix``), else the DeepCrack-only ones. ``NAME.TAG`` picks one explicitly.
DEFAULT_TAG_ORDER = ("mix", "deepcrack")


@dataclass(frozen=True)
class ModelSpec:
    """How to build one zoo model and what its layers are called.

    Attributes:
        name: Zoo name (``hrsegnet_b48``).
        build: ``build(num_classes) -> paddle.nn.Layer``.
        aliases: Stable alias -> real dotted layer name; always has ``seg_head``.
        paddleseg_type: The class name a PaddleSeg YAML uses.
        description: One line for ``segcam models``.
        mean: Normalisation mean (RGB, on [0, 1]).
        std: Normalisation std.
        size_multiple: Input height and width must be multiples of this (DDRNet: 8, measured).
        onnx_size_multiple: ONNX exports need sides that are multiples of this (PSPNet: 48, so the
            1/8 feature map divides into its 1, 2, 3 and 6 pyramid bins; measured: 384 exact, 400 off by 1.14).
    """

    name: str
    build: Callable[[int], paddle.nn.Layer]
    aliases: dict[str, str]
    paddleseg_type: str
    description: str
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    size_multiple: int = 1
    onnx_size_multiple: int = 1

    @property
    def tags(self) -> dict[str, Path]:
        """Trained weights by tag, default first: every tag with a model card, and where its file is.

        The file beside the card (a checkout, or the wheel's :data:`segcam.models.store.IN_WHEEL`), else the
        fetched copy in the cache (:mod:`segcam.models.store`); where neither exists, the path a checkout keeps
        it at (:meth:`weights_path` then says how to get it).
        """
        tags = known_tags(self.name)
        order = [t for t in DEFAULT_TAG_ORDER if t in tags] + [t for t in tags if t not in DEFAULT_TAG_ORDER]
        return {t: find_weights(f"{self.name}.{t}") or PRETRAINED_DIR / f"{self.name}.{t}.pdparams" for t in order}

    def weights_path(self, tag: str) -> Path:
        """The weights file of one tag.

        Raises:
            WeightsMissingError: Not installed (a wheel without them, not fetched); the message names the command.
        """
        path = find_weights(f"{self.name}.{tag}")
        if path is None:
            raise WeightsMissingError(missing_message(f"{self.name}.{tag}"))
        return path

    @property
    def default_tag(self) -> str | None:
        """The tag a bare name loads: the first of :data:`DEFAULT_TAG_ORDER` that is shipped."""
        return next(iter(self.tags), None)

    @property
    def shipped_weights(self) -> Path | None:
        """The default trained weights shipped with segcam for this model, if any."""
        tag = self.default_tag
        return self.tags[tag] if tag else None

    def tag_info(self, tag: str) -> dict[str, Any]:
        """The model card JSON of one tag (training data, metrics), ``{}`` if it has none."""
        return card(f"{self.name}.{tag}")


@dataclass
class ZooModel:
    """A built network with what an explanation needs to know about it.

    Attributes:
        name: Zoo name, or the YAML's model type for ``load_paddleseg`` models.
        network: The ``paddle.nn.Layer`` in eval mode.
        aliases: Layer aliases (alias -> dotted name).
        mean: Normalisation mean.
        std: Normalisation std.
        weights: Weights file path, or None for a randomly initialised network.
        weights_sha256: sha256 of the weights file, or None.
        partial: True if the weights were only partly loaded.
        size_multiple: Input sides must be multiples of this.
        onnx_size_multiple: ONNX export sides must be multiples of this.
        tag: The shipped weights' tag (``mix``, ``deepcrack``), None for other weights.
        source: How to build this model again in another process (:func:`rebuild_model`): the arguments
            of :func:`create_model` or :func:`load_paddleseg`, plain data (no pickled network).
    """

    name: str
    network: paddle.nn.Layer
    aliases: dict[str, str] = field(default_factory=dict)
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    weights: str | None = None
    weights_sha256: str | None = None
    partial: bool = False
    size_multiple: int = 1
    onnx_size_multiple: int = 1
    tag: str | None = None
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def random_init(self) -> bool:
        """True when no weights were loaded."""
        return self.weights is None

    def describe_weights(self) -> str:
        """One line for logs and manifests."""
        if self.weights is None:
            return "RANDOMLY INITIALISED (no weights loaded): its explanations show an untrained network"
        partial = " (PARTIAL load)" if self.partial else ""
        shipped = f"shipped {self.name}.{self.tag} " if self.tag else ""
        return f"{shipped}weights {self.weights} sha256 {self.weights_sha256}{partial}"

    def __call__(self, x: paddle.Tensor) -> Any:
        return self.network(x)


MODELS: Registry[ModelSpec] = Registry("model")


def _quiet_paddleseg() -> None:
    """PaddleSeg prints INFO lines to stdout ("No pretrained model to load"); keep stdout clean."""
    try:
        from paddleseg.utils import logger
    except ImportError:
        return
    logger.log_level = min(logger.log_level, 1)


def _hrsegnet(base: int) -> Callable[[int], paddle.nn.Layer]:
    def build(num_classes: int) -> paddle.nn.Layer:
        from hrsegnet import HrSegNet

        return HrSegNet(base=base, num_classes=num_classes)

    return build


def _ddrnet_slim() -> paddle.nn.Layer:
    from hrsegnet import DDRNet_23_slim

    return DDRNet_23_slim(num_classes=2)


def _paddleseg(factory: Callable[[Any, Any], paddle.nn.Layer]) -> Callable[[int], paddle.nn.Layer]:
    def build(num_classes: int) -> paddle.nn.Layer:
        if num_classes != 2:
            raise ValueError(f"the PaddleSeg baselines are configured for num_classes=2, got {num_classes}")
        import paddleseg.models as psm
        from paddleseg.models import backbones as bb

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return factory(psm, bb)

    return build


_HRSEG_ALIASES = {"seg_head": "head", "seg_head_features": "head.con_bn_relu", "stem": "stage2",
                  "hr1": "seg1", "hr2": "seg2", "hr3": "seg3", "low3": "seg3.l_conv3"}

for _b in (16, 32, 48):
    MODELS.register(f"hrsegnet_b{_b}", ModelSpec(
        f"hrsegnet_b{_b}", _hrsegnet(_b), dict(_HRSEG_ALIASES), f"HrSegNetB{_b}",
        f"HrSegNet-B{_b} (Li et al. 2023), base width {_b}"))

_BASELINES: dict[str, tuple[Callable[[Any, Any], paddle.nn.Layer], dict[str, str], str, str]] = {
    "unet": (lambda m, b: m.UNet(num_classes=2, use_deconv=False),
             {"seg_head": "cls", "encoder": "encode[0]", "decoder": "decode"}, "UNet", "U-Net (no deconv)"),
    "ddrnet": (lambda m, b: _ddrnet_slim(),
               {"seg_head": "head", "spp": "spp", "high_res": "layer5_", "low_res": "layer5"},
               "DDRNet_23_slim", "DDRNet-23-slim"),
    "deeplabv3p": (lambda m, b: m.DeepLabV3P(
        num_classes=2, backbone=b.ResNet18_vd(output_stride=8, multi_grid=(1, 2, 4)), backbone_indices=(0, 3),
        aspp_ratios=(1, 12, 24, 36), aspp_out_channels=256),
        {"seg_head": "head", "backbone": "backbone[3]", "aspp": "head.aspp"}, "DeepLabV3P",
        "DeepLabV3+ (ResNet18_vd, output stride 8)"),
    "ocrnet": (lambda m, b: m.OCRNet(num_classes=2, backbone=b.HRNet_W18(), backbone_indices=[0]),
               {"seg_head": "head.cls_head", "backbone": "backbone", "ocr": "head.spatial_ocr"},
               "OCRNet", "OCRNet (HRNet_W18)"),
    "stdcseg": (lambda m, b: m.STDCSeg(num_classes=2, backbone=b.STDC1()),
                {"seg_head": "conv_out", "backbone": "cp[3]", "ffm": "ffm"}, "STDCSeg", "STDCSeg (STDC1)"),
    "bisenetv2": (lambda m, b: m.BiSeNetV2(num_classes=2),
                  {"seg_head": "head", "detail": "db", "semantic": "sb[4]", "bga": "bga"},
                  "BiSeNetV2", "BiSeNetV2"),
    "pspnet": (lambda m, b: m.PSPNet(num_classes=2, backbone=b.ResNet18_vd(output_stride=8),
                                     backbone_indices=[2, 3], enable_auxiliary_loss=True),
               {"seg_head": "head.conv", "backbone": "backbone[3]", "ppm": "head.psp_module"},
               "PSPNet", "PSPNet (ResNet18_vd, output stride 8)"),
}
#: Networks (by class name) whose input sides must be multiples of a number (measured: DDRNet's branches fuse
#: feature maps that disagree by a cell otherwise).
NETWORK_SIZE_MULTIPLE = {"DualResNet": 8}  # PaddleSeg's DDRNet classes

for _name, (_factory, _aliases, _type, _desc) in _BASELINES.items():
    MODELS.register(_name, ModelSpec(_name, _paddleseg(_factory), _aliases, _type, f"{_desc}, from PaddleSeg",
                                     size_multiple=8 if _name == "ddrnet" else 1,
                                     onnx_size_multiple=48 if _name == "pspnet" else 1))


def list_models(pattern: str | None = None) -> list[str]:
    """Zoo names, optionally filtered by a shell wildcard (``list_models("hrsegnet_*")``) or a substring (``"b48"``)."""
    return MODELS.names(pattern)


def split_tag(name: str) -> tuple[str, str | None]:
    """``"hrsegnet_b48.deepcrack"`` -> ``("hrsegnet_b48", "deepcrack")``; a bare name has tag None."""
    base, sep, tag = name.partition(".")
    return base, (tag if sep else None)


def get_model_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of a zoo name (a ``.TAG`` suffix is allowed and checked).

    Raises:
        KeyError: Unknown name or tag (the message lists close matches / the shipped tags).
    """
    base, tag = split_tag(name)
    spec = MODELS.get(base)
    if tag is not None and tag not in spec.tags:
        have = ", ".join(f"{base}.{t}" for t in spec.tags) or "none (random initialisation only)"
        raise KeyError(f"model {base} has no shipped weights tagged {tag!r}; shipped: {have}")
    return spec


def _finish(name: str, network: paddle.nn.Layer, aliases: dict[str, str], mean: tuple[float, ...],
            std: tuple[float, ...], weights: str | Path | None, strict: bool) -> ZooModel:
    report: LoadReport | None = load_weights(network, weights, strict=strict) if weights is not None else None
    network.eval()
    zm = ZooModel(name, network, aliases, mean, std)
    if report is not None:
        zm.weights, zm.weights_sha256, zm.partial = report.path, report.sha256, not report.complete
    else:
        warnings.warn(f"{name} is RANDOMLY INITIALISED: no weights were loaded, so its explanations "
                      "show an untrained network; pass weights=... (--weights)", stacklevel=3)
    return zm


def create_model(name: str, weights: str | Path | None = None, strict: bool = True) -> ZooModel:
    """Build a zoo model in eval mode.

    Args:
        name: Zoo name, see :func:`list_models`, optionally with a weights tag
            (``hrsegnet_b48.deepcrack``; a bare name takes the default tag).
        weights: ``None`` loads the weights shipped with segcam when there are
            any (else the model stays randomly initialised, with a warning);
            ``"random"`` forces random initialisation; a path loads that
            ``.pdparams`` file.
        strict: Require every key to match (see :func:`segcam.models.weights.load_weights`).

    Raises:
        KeyError: Unknown model name.
        FileNotFoundError: Missing weights file.
        segcam.models.weights.WeightsError: Weights that do not match the model.

    Example:
        >>> model = create_model("hrsegnet_b16", weights="random")
    """
    spec = get_model_spec(name)
    tag = split_tag(name)[1]
    if tag is not None and weights is not None:
        raise ValueError(f"{name} names shipped weights; give either a tag or weights={weights!r}, not both")
    ensure_dygraph()
    _quiet_paddleseg()
    paddle.seed(0)  # a random-init model is at least the same random model every time
    network = spec.build(2)
    if weights is None:
        tag = tag or spec.default_tag
        weights = spec.weights_path(tag) if tag else None
    elif str(weights) == "random":
        weights = None
    zm = _finish(spec.name, network, dict(spec.aliases), spec.mean, spec.std, weights, strict)
    zm.size_multiple, zm.onnx_size_multiple = spec.size_multiple, spec.onnx_size_multiple
    zm.tag = tag if weights is not None and tag is not None else None
    source_weights = None if zm.tag else str(Path(weights).resolve()) if weights is not None else "random"
    zm.source = {"kind": "zoo", "name": f"{spec.name}.{zm.tag}" if zm.tag else spec.name,
                 "weights": source_weights, "strict": strict}
    return zm


def load_paddleseg(config: str | Path, weights: str | Path | None, strict: bool = True) -> ZooModel:
    """Build any PaddleSeg model from its YAML and load its ``.pdparams``.

    Normalisation is read from the YAML's ``val_dataset`` ``Normalize``
    transform (PaddleSeg defaults mean = std = 0.5). Layer aliases come from
    the zoo when the YAML's model type is a zoo model.

    Raises:
        FileNotFoundError: Missing config or weights.
        ValueError: A YAML without a ``model`` section or with an unknown type.
        segcam.models.weights.WeightsError: Weights that do not match the model.
    """
    from segcam.models.config import build_component, load_config

    cfg = load_config(config)
    if "model" not in cfg:
        raise ValueError(f"config {config} has no 'model' section; it is not a PaddleSeg model config")
    ensure_dygraph()
    _quiet_paddleseg()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        network = build_component(cfg["model"])
    mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    for t in (cfg.get("val_dataset") or {}).get("transforms", []) or []:
        if isinstance(t, dict) and t.get("type") == "Normalize":
            mean = tuple(t.get("mean", mean))
            std = tuple(t.get("std", std))
    model_type = cfg["model"]["type"]
    aliases: dict[str, str] = {}
    multiple, onnx_multiple = 1, 1
    for spec in (MODELS.get(n) for n in MODELS.names()):
        if spec.paddleseg_type == model_type:
            aliases, multiple, onnx_multiple = dict(spec.aliases), spec.size_multiple, spec.onnx_size_multiple
    zm = _finish(model_type, network, aliases, mean, std, weights, strict)
    zm.size_multiple, zm.onnx_size_multiple = multiple, onnx_multiple
    zm.source = {"kind": "paddleseg", "config": str(Path(config).resolve()),
                 "weights": str(Path(weights).resolve()) if weights is not None else None, "strict": strict}
    return zm


def rebuild_model(source: dict[str, Any]) -> ZooModel:
    """Build the model a :attr:`ZooModel.source` describes (in a Ray worker, for example).

    Raises:
        ValueError: A source that is not a zoo or PaddleSeg model description.
        WeightsError, FileNotFoundError: As :func:`create_model` / :func:`load_paddleseg`.
    """
    kind = source.get("kind")
    if kind == "zoo":
        return create_model(source["name"], source.get("weights"), strict=source.get("strict", True))
    if kind == "paddleseg":
        return load_paddleseg(source["config"], source.get("weights"), strict=source.get("strict", True))
    raise ValueError(f"cannot rebuild a model from {source!r}: build it with create_model or load_paddleseg")
