"""PaddleSeg YAML configs: reading (with ``_base_``) and building models from them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["build_component", "load_config"]


def load_config(path: str | Path) -> dict[str, Any]:
    """Parse a PaddleSeg YAML, merging ``_base_`` files, into a plain dict.

    Raises:
        FileNotFoundError: If the file is missing.
        ValueError: If it is not a YAML mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config {path} does not exist")
    from paddleseg.cvlibs.config import parse_from_yaml

    try:
        dic = parse_from_yaml(str(path))
    except Exception as exc:  # yaml errors come in many types
        raise ValueError(f"config {path} is not valid PaddleSeg YAML: {exc}") from exc
    if not isinstance(dic, dict):
        raise ValueError(f"config {path} must be a YAML mapping, got {type(dic).__name__}")
    return dic


def _build_value(v: Any) -> Any:
    if isinstance(v, dict) and "type" in v:
        return build_component(v)
    if isinstance(v, list) and v and all(isinstance(i, dict) and "type" in i for i in v):
        return [build_component(i) for i in v]
    return v


def build_component(spec: dict[str, Any]) -> Any:
    """Build a ``{type: Name, ...}`` dict with PaddleSeg's registries (nested dicts too).

    Importing :mod:`hrsegnet` and :mod:`segcam.training` first makes HrSegNet,
    ``CrackDataset`` and our losses known by name.

    Raises:
        ValueError: If ``spec`` has no ``type`` or the type is not registered.
    """
    from paddleseg.cvlibs import manager

    import hrsegnet  # noqa: F401  (registers HrSegNetB16/B32/B48)
    import segcam.training.dataset  # noqa: F401
    import segcam.training.losses  # noqa: F401

    if not isinstance(spec, dict) or "type" not in spec:
        raise ValueError(f"component spec must be a mapping with a 'type' key, got {spec!r}")
    registries = [manager.MODELS, manager.BACKBONES, manager.DATASETS, manager.LOSSES, manager.TRANSFORMS]
    kind = spec["type"]
    for reg in registries:
        if kind in reg.components_dict:
            kwargs = {k: _build_value(v) for k, v in spec.items() if k != "type"}
            return reg.components_dict[kind](**kwargs)
    import difflib

    known = sorted({n for reg in registries for n in reg.components_dict})
    close = difflib.get_close_matches(kind, known, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"component type {kind!r} is not registered in PaddleSeg{hint}")
