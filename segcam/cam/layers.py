"""Finding layers by dotted name or alias, and listing a model's layers with output shapes."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

import paddle

from segcam.cam.hooks import ensure_dygraph

__all__ = ["LayerInfo", "LayerNotFoundError", "ResolvedLayer", "list_layers", "resolve_layers"]


class LayerNotFoundError(KeyError):
    """An unknown layer name or alias; the message lists close matches."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


@dataclass(frozen=True)
class ResolvedLayer:
    """A requested layer: what the user asked for and the real sublayer.

    Attributes:
        requested: The name or alias asked for (a layer object is named by its dotted name).
        name: The real dotted name, with ``[i]`` when one element of a tuple output is meant.
        layer: The sublayer.
        index: Which element of the layer's tuple/list output (``backbone[3]``), or None for one tensor.
    """

    requested: str
    name: str
    layer: paddle.nn.Layer
    index: int | None = None


@dataclass(frozen=True)
class LayerInfo:
    """One row of :func:`list_layers`."""

    name: str
    aliases: tuple[str, ...]
    type: str
    shape: tuple[int, ...] | None


def _network(model: Any) -> paddle.nn.Layer:
    return getattr(model, "network", model)


def resolve_layers(model: Any, names: str | paddle.nn.Layer | list[Any], aliases: dict[str, str] | None = None
                   ) -> list[ResolvedLayer]:
    """Map layer names, aliases or layer objects to sublayers.

    Args:
        model: A :class:`segcam.models.zoo.ZooModel` or a ``paddle.nn.Layer``.
        names: One or more dotted names from ``named_sublayers()``, aliases, ``name[i]`` for element ``i``
            of a layer that returns a tuple (``backbone[3]``), or the sublayer objects themselves
            (``model.network.seg3``, as pytorch-grad-cam users pass ``target_layers``).
        aliases: Alias table; defaults to the ZooModel's.

    Raises:
        LayerNotFoundError: For an unknown name, listing close matches.
        ValueError: If no layer is requested.
    """
    net = _network(model)
    aliases = dict(getattr(model, "aliases", {}) if aliases is None else aliases)
    names = [names] if isinstance(names, (str, paddle.nn.Layer)) else list(names)
    if not names:
        raise ValueError("no layer requested; give at least one (e.g. seg_head)")
    table = dict(net.named_sublayers())
    by_id = {id(layer): name for name, layer in table.items()}
    out = []
    for req in names:
        if isinstance(req, paddle.nn.Layer):
            if id(req) not in by_id:
                raise LayerNotFoundError(f"the {type(req).__name__} object given as a layer is not a sublayer of "
                                         f"{type(net).__name__}; pass one of model.network's sublayers or its name")
            req = by_id[id(req)]
        if not isinstance(req, str):
            raise TypeError(f"a layer must be a name or a paddle.nn.Layer, got {type(req).__name__}")
        real = aliases.get(req, req)
        index = None
        match = re.fullmatch(r"(.+)\[(\d+)\]", real)
        if match and match.group(1) in table:
            real, index = match.group(1), int(match.group(2))
        if real not in table:
            options = list(aliases) + list(table)
            close = difflib.get_close_matches(req, options, n=5, cutoff=0.5)
            hint = f"; did you mean: {', '.join(close)}?" if close else ""
            raise LayerNotFoundError(
                f"unknown layer {req!r} for {type(net).__name__}{hint} (aliases: {', '.join(aliases) or 'none'}; "
                "all names: segcam layers --model NAME)"
            )
        out.append(ResolvedLayer(req, real if index is None else f"{real}[{index}]", table[real], index))
    return out


def list_layers(model: Any, size: tuple[int, int] = (256, 256)) -> list[LayerInfo]:
    """Every sublayer with its aliases, type and output shape for a 1 x 3 x H x W input.

    Shapes are measured by one forward pass with hooks (no gradients); a layer
    that returns several tensors, or does not run in eval mode, has shape None.
    """
    ensure_dygraph()
    net = _network(model)
    aliases = getattr(model, "aliases", {})
    by_name: dict[str, list[str]] = {}
    for alias, real in aliases.items():
        by_name.setdefault(re.sub(r"\[\d+\]$", "", real), []).append(alias)
    named = list(net.named_sublayers())
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []

    def make(name: str):  # noqa: ANN202
        def hook(layer: paddle.nn.Layer, inputs: object, output: object) -> None:
            if isinstance(output, paddle.Tensor):
                shapes.setdefault(name, tuple(output.shape))
            elif isinstance(output, (list, tuple)) and len(output) == 1 and isinstance(output[0], paddle.Tensor):
                shapes.setdefault(name, tuple(output[0].shape))

        return hook

    try:
        for name, layer in named:
            handles.append(layer.register_forward_post_hook(make(name)))
        with paddle.no_grad():
            net(paddle.zeros([1, 3, int(size[0]), int(size[1])]))
    finally:
        for h in handles:
            h.remove()
    return [LayerInfo(n, tuple(by_name.get(n, ())), type(layer).__name__, shapes.get(n)) for n, layer in named]

