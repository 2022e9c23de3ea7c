"""PaddleSeg YAML configs: reading (with ``_base_``) and building models from them, without running code.

Two holes of PaddleSeg's own path are closed here:

* PaddleSeg parses YAML with PyYAML's ``FullLoader`` (which constructs some Python objects); we read
  with ``yaml.safe_load`` and merge ``_base_`` files with PaddleSeg's own (pure) merge rule.
* A ``pretrained:`` key on any model or backbone makes PaddleSeg call ``paddle.load`` (a full unpickle:
  a crafted file runs code) or download a URL. :func:`build_component` takes every ``pretrained`` key
  out of the spec before PaddleSeg sees it, refuses URLs, and loads local files itself through the one
  safe loader (:func:`segcam.models.weights.load_weights`) into the layer that key belongs to, in the order
  PaddleSeg would (a backbone's before its model's). While PaddleSeg builds, ``paddle.load`` and its
  download helper are replaced by refusing stand-ins, so a code path we did not foresee fails closed.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any, Iterator

__all__ = ["PRETRAINED_KEYS", "ConfigError", "build_component", "load_config", "pretrained_paths"]

#: Keys through which PaddleSeg models and backbones load weights (every constructor of PaddleSeg 2.8's
#: MODELS and BACKBONES registries that loads weights names its argument ``pretrained``).
PRETRAINED_KEYS = ("pretrained",)
_BASE_KEY = "_base_"
_MAX_BASE_DEPTH = 16


class ConfigError(ValueError):
    """A config that cannot be used as it is; the message names the file, the key and the fix."""


def _read_yaml(path: Path, depth: int = 0) -> Any:
    import yaml
    from paddleseg.cvlibs.config import merge_config_dicts

    if depth > _MAX_BASE_DEPTH:
        raise ConfigError(f"config {path}: _base_ files nest deeper than {_MAX_BASE_DEPTH} levels (a cycle?)")
    if not path.is_file():
        raise FileNotFoundError(f"config {path} does not exist")
    try:
        dic = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config {path} is not valid YAML (tags that build Python objects are refused): {exc}") from None
    if not isinstance(dic, dict):
        raise ConfigError(f"config {path} must be a YAML mapping, got {type(dic).__name__}")
    bases = dic.pop(_BASE_KEY, None)
    if bases:
        for bf in [bases] if isinstance(bases, str) else list(bases):
            base = _read_yaml(path.parent / str(bf), depth + 1)
            dic = merge_config_dicts(dic, base)
    return dic


def load_config(path: str | Path) -> dict[str, Any]:
    """Parse a PaddleSeg YAML, merging ``_base_`` files, into a plain dict (``yaml.safe_load``, no Python tags).

    Raises:
        FileNotFoundError: If the file (or a ``_base_`` file) is missing.
        ConfigError: If it is not a YAML mapping (a ValueError).
    """
    return _read_yaml(Path(path))


def _is_url(value: str) -> bool:
    from urllib.parse import urlparse

    return bool(urlparse(value).netloc) or "://" in value


def pretrained_paths(spec: Any, where: str = "model") -> list[tuple[str, Any]]:
    """Every ``pretrained`` value in a spec, at any depth, with its key path (``model.backbone.pretrained``)."""
    found: list[tuple[str, Any]] = []
    if isinstance(spec, dict):
        for k, v in spec.items():
            if k in PRETRAINED_KEYS and v is not None:
                found.append((f"{where}.{k}", v))
            else:
                found += pretrained_paths(v, f"{where}.{k}")
    elif isinstance(spec, list):
        for i, v in enumerate(spec):
            found += pretrained_paths(v, f"{where}[{i}]")
    return found


def _check_pretrained(key: str, value: Any) -> Path:
    if not isinstance(value, (str, Path)):
        raise ConfigError(f"{key}: expected a weights file path, got {type(value).__name__} {value!r}")
    if _is_url(str(value)):
        raise ConfigError(f"{key}: {value} is a URL; segcam never downloads weights at run time. Download the "
                          "file yourself, check it, and give its local path (or remove the key)")
    path = Path(value).expanduser()
    if not path.is_file():
        raise ConfigError(f"{key}: {value} is not a weights file (missing, a folder, or not a regular file); "
                          "give the path of a .pdparams file or remove the key")
    return path


_GUARD_LOCK = threading.RLock()


@contextlib.contextmanager
def _no_unsafe_loads() -> Iterator[None]:
    """Replace ``paddle.load`` and PaddleSeg's downloader by refusals while PaddleSeg builds a component."""
    import paddle
    from paddleseg.utils import utils as ps_utils

    def refuse_load(path: Any, *args: Any, **kwargs: Any) -> Any:
        raise ConfigError(f"a PaddleSeg component tried to unpickle {path} with paddle.load while being built; "
                          "segcam refuses that (it can run code). Give weights through a `pretrained:` key or "
                          "--weights, which use segcam's safe loader")

    def refuse_download(url: Any, *args: Any, **kwargs: Any) -> Any:
        raise ConfigError(f"a PaddleSeg component tried to download {url}; segcam never downloads at run time")

    with _GUARD_LOCK:
        saved = paddle.load, ps_utils.download_pretrained_model
        paddle.load, ps_utils.download_pretrained_model = refuse_load, refuse_download
        try:
            yield
        finally:
            paddle.load, ps_utils.download_pretrained_model = saved


def _build_value(v: Any, where: str) -> Any:
    if isinstance(v, dict) and "type" in v:
        return _build(v, where)
    if isinstance(v, list) and v and all(isinstance(i, dict) and "type" in i for i in v):
        return [_build(i, f"{where}[{n}]") for n, i in enumerate(v)]
    return v


def _build(spec: dict[str, Any], where: str) -> Any:
    from paddleseg.cvlibs import manager

    registries = [manager.MODELS, manager.BACKBONES, manager.DATASETS, manager.LOSSES, manager.TRANSFORMS]
    kind = spec["type"]
    for reg in registries:
        if kind in reg.components_dict:
            weights = {k: _check_pretrained(f"{where}.{k}", spec[k]) for k in PRETRAINED_KEYS if spec.get(k) is not None}
            kwargs = {k: _build_value(v, f"{where}.{k}") for k, v in spec.items() if k != "type" and k not in weights}
            with _no_unsafe_loads():
                obj = reg.components_dict[kind](**kwargs)
            for key, path in weights.items():
                _load_pretrained(obj, f"{where}.{key}", path)
            return obj
    import difflib

    known = sorted({n for reg in registries for n in reg.components_dict})
    close = difflib.get_close_matches(kind, known, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(f"{where}: component type {kind!r} is not registered in PaddleSeg{hint}")


def _load_pretrained(obj: Any, key: str, path: Path) -> None:
    """PaddleSeg's ``load_pretrained_model`` semantics (matching keys load, the rest warn) through the safe loader."""
    import paddle

    from segcam.models.weights import WeightsError, load_weights

    if not isinstance(obj, paddle.nn.Layer):
        raise ConfigError(f"{key}: {type(obj).__name__} is not a network layer; weights cannot be loaded into it")
    try:
        load_weights(obj, path, strict=False)
    except WeightsError as exc:
        raise type(exc)(f"{key}: {exc}") from None


def build_component(spec: dict[str, Any], where: str = "model") -> Any:
    """Build a ``{type: Name, ...}`` dict with PaddleSeg's registries (nested dicts too), without running code.

    HrSegNet is registered here (:mod:`hrsegnet`); :mod:`segcam.training` registers ``CrackDataset`` and
    our losses when it is imported (it builds training configs). ``pretrained`` weights at any depth are
    loaded by segcam's safe loader (see the module docstring); URLs are refused.

    Args:
        spec: The component's mapping.
        where: Its key path, for error messages (``model``, ``train_dataset``...).

    Raises:
        ConfigError: No ``type``, an unregistered type, a ``pretrained`` URL or missing file.
        segcam.models.weights.UnsafeWeightsError: A ``pretrained`` file whose pickle could run code.
    """
    import hrsegnet  # noqa: F401  (registers HrSegNetB16/B32/B48)

    if not isinstance(spec, dict) or "type" not in spec:
        raise ConfigError(f"{where}: component spec must be a mapping with a 'type' key, got {spec!r}")
    return _build(spec, where)
