"""Strict weight loading, and the sha256 of weight files for manifests."""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import paddle

__all__ = ["LoadReport", "WeightsError", "load_weights", "sha256_file"]


class WeightsError(ValueError):
    """A weights file that does not match the model (or cannot be read)."""


@dataclass(frozen=True)
class LoadReport:
    """What a :func:`load_weights` call did."""

    path: str
    sha256: str
    loaded: int
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """True when every model entry was loaded and nothing was left over."""
        return not (self.missing or self.unexpected or self.mismatched)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _few(keys: list[str], n: int = 5) -> str:
    return ", ".join(keys[:n]) + (f", ... ({len(keys) - n} more)" if len(keys) > n else "")


def load_weights(model: paddle.nn.Layer, path: str | Path, strict: bool = True) -> LoadReport:
    """Load a ``.pdparams`` state dict into ``model``, strictly by default.

    fp16 checkpoints are cast to the model's dtype (the shipped weights are
    stored in fp16 to halve their size).

    Args:
        model: The network.
        path: ``.pdparams`` file.
        strict: Raise on any missing, unexpected or shape-mismatched key. With
            False, load what matches and warn loudly about the rest.

    Raises:
        FileNotFoundError: If the file does not exist.
        WeightsError: If the file is not a Paddle state dict, or (strict) keys differ.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    try:
        state = paddle.load(str(path))
    except Exception as exc:  # paddle raises many types for a bad file
        raise WeightsError(f"weights file {path} cannot be read as a Paddle state dict ({exc})") from exc
    if not isinstance(state, dict):
        raise WeightsError(f"weights file {path} holds a {type(state).__name__}, not a state dict")
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [f"{k} {list(state[k].shape)} vs model {list(own[k].shape)}"
                  for k in own if k in state and list(state[k].shape) != list(own[k].shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing: {_few(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected: {_few(unexpected)}")
    if mismatched:
        problems.append(f"{len(mismatched)} with another shape: {_few(mismatched)}")
    if problems and strict:
        raise WeightsError(
            f"weights file {path} does not match {type(model).__name__} ({'; '.join(problems)}); "
            "check that the model name/config matches the checkpoint, or pass --allow-partial to load what matches"
        )
    bad = {m.split(" ")[0] for m in mismatched}
    to_load = {}
    for k, v in state.items():
        if k in own and k not in bad:
            arr = v.numpy() if hasattr(v, "numpy") else np.asarray(v)
            to_load[k] = arr.astype(own[k].numpy().dtype, copy=False)
    model.set_state_dict(to_load)
    if problems:
        warnings.warn(
            f"PARTIAL LOAD of {path}: only {len(to_load)}/{len(own)} entries loaded ({'; '.join(problems)}); "
            "the rest of the model is randomly initialised and its explanations are not trustworthy",
            stacklevel=2,
        )
    return LoadReport(str(path), sha256_file(path), len(to_load), missing, unexpected, mismatched)
