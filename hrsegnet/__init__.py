"""HrSegNet crack-segmentation networks (B16 / B32 / B48), registered in PaddleSeg.

``import hrsegnet`` adds ``HrSegNetB16``, ``HrSegNetB32`` and ``HrSegNetB48`` to
PaddleSeg's ``manager.MODELS`` (when PaddleSeg is installed), so a PaddleSeg
YAML with ``model: {type: HrSegNetB48}`` builds the network.
"""

from __future__ import annotations

from typing import Any

from hrsegnet.model import HrSegNet, SegBlock, SegHead

__all__ = ["HrSegNet", "HrSegNetB16", "HrSegNetB32", "HrSegNetB48", "DDRNet_23_slim", "SegBlock", "SegHead"]


class HrSegNetB16(HrSegNet):
    """HrSegNet with base width 16 (609,942 trainable parameters for 2 classes)."""

    def __init__(self, in_channels: int = 3, base: int = 16, num_classes: int = 2, pretrained: str | None = None) -> None:
        super().__init__(in_channels=in_channels, base=base, num_classes=num_classes, pretrained=pretrained)


class HrSegNetB32(HrSegNet):
    """HrSegNet with base width 32 (2,432,550 trainable parameters for 2 classes)."""

    def __init__(self, in_channels: int = 3, base: int = 32, num_classes: int = 2, pretrained: str | None = None) -> None:
        super().__init__(in_channels=in_channels, base=base, num_classes=num_classes, pretrained=pretrained)


class HrSegNetB48(HrSegNet):
    """HrSegNet with base width 48 (5,467,830 trainable parameters for 2 classes)."""

    def __init__(self, in_channels: int = 3, base: int = 48, num_classes: int = 2, pretrained: str | None = None) -> None:
        super().__init__(in_channels=in_channels, base=base, num_classes=num_classes, pretrained=pretrained)


def _register_in_paddleseg() -> None:
    try:
        from paddleseg.cvlibs import manager
    except ImportError:  # PaddleSeg is optional for the networks themselves.
        return
    for cls in (HrSegNetB16, HrSegNetB32, HrSegNetB48, DDRNet_23_slim):
        if cls.__name__ not in manager.MODELS.components_dict:
            manager.MODELS.add_component(cls)


def DDRNet_23_slim(**kwargs: Any) -> Any:  # noqa: N802 (PaddleSeg's component naming, as its DDRNet_23)
    """DDRNet-23-slim (Hong et al. 2021): PaddleSeg's ``DualResNet`` at half DDRNet-23's width (5.7 M parameters).

    PaddleSeg registers only DDRNet-23 (20.2 M); the slim variant is the one segcam trains and ships, because
    DDRNet-23 takes 7.3 s per training iteration on the project's 2-core CPU and the slim one about 2 s.
    """
    from paddleseg.models.ddrnet import DualResNet

    return DualResNet(block_layers=[2, 2, 2, 2], planes=32, spp_planes=128, head_planes=64, **kwargs)


_register_in_paddleseg()
