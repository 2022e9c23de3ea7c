"""Strict weight loading, and the sha256 of weight files for manifests."""

from __future__ import annotations

import hashlib
import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import paddle

__all__ = ["LoadReport", "UnsafeWeightsError", "WeightsError", "load_weights", "safe_load", "sha256_file"]


#: The command-line remedy a strict-load error ends with (pages without that flag leave it out).
PARTIAL_HINT = ", or pass --allow-partial to load what matches"


class WeightsError(ValueError):
    """A weights file that does not match the model (or cannot be read)."""


class UnsafeWeightsError(WeightsError):
    """A weights file whose pickle names a global outside the allowed numpy reconstruction functions."""


# The only globals a Paddle state dict (paddle.save of a dict of tensors) needs: numpy's array and scalar
# reconstruction (module moved to numpy._core in numpy 2) and OrderedDict. Anything else in a pickle can run
# code (``os.system`` via ``__reduce__``), so it is refused before it is imported.
_ALLOWED_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict"),
})


def _latin1_bytes(text: Any, encoding: Any = "latin1") -> bytes:
    """``_codecs.encode`` as pickle protocol 2 uses it (bytes written as ``encode(str, 'latin1')``), and only that."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafeWeightsError(f"_codecs.encode({type(text).__name__}, {encoding!r})")
    return text.encode("latin1")


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("_codecs", "encode"):  # protocol 2 (paddle.save(..., protocol=2)) stores bytes so
            return _latin1_bytes
        if (module, name) not in _ALLOWED_GLOBALS:
            raise UnsafeWeightsError(f"{module}.{name}")
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeWeightsError(f"persistent id {pid!r}")


def _check_tree(obj: Any, where: str, depth: int = 0) -> None:
    """Only dicts/lists/tuples of numpy arrays (numeric dtypes), strings and plain scalars."""
    if depth > 32:
        raise WeightsError(f"{where}: nesting deeper than 32 levels")
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise UnsafeWeightsError(f"an object array at {where}")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise WeightsError(f"{where}: key {k!r} is not a string")
            _check_tree(v, f"{where}[{k!r}]", depth + 1)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_tree(v, f"{where}[{i}]", depth + 1)
    elif not isinstance(obj, (str, bytes, int, float, bool, np.generic, type(None))):
        raise UnsafeWeightsError(f"a {type(obj).__name__} at {where}")


def safe_load(path: str | Path, tensors: bool = False) -> dict[str, Any]:
    """Read a ``.pdparams``/``.pdopt`` file without executing code (``torch.load(weights_only=True)``'s analogue).

    The file is unpickled with a restricted unpickler that admits only numpy
    arrays, dicts, lists and plain scalars; a pickle naming any other global
    (the way a crafted file runs code) is refused before that global is imported.

    Args:
        path: The file.
        tensors: Turn numpy arrays into ``paddle.Tensor`` (what ``paddle.load`` returns).

    Raises:
        FileNotFoundError: If the file does not exist.
        UnsafeWeightsError: If it names a global outside the allowed set (the message names it).
        WeightsError: If it is not a pickled dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist (or is not a regular file)")
    try:
        with open(path, "rb") as fh:
            obj = _RestrictedUnpickler(fh).load()
    except UnsafeWeightsError as exc:
        raise UnsafeWeightsError(
            f"weights file {path} was refused: it asks to load {exc}, which a state dict never needs and which "
            "can run code; only numpy arrays and plain values are loaded. Re-save the weights as a plain state "
            "dict (paddle.save(model.state_dict(), ...)) from a trusted copy") from None
    except WeightsError:
        raise
    except Exception as exc:  # pickle raises many types for a corrupt file
        raise WeightsError(f"weights file {path} cannot be read as a Paddle state dict ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, dict):
        raise WeightsError(f"weights file {path} holds a {type(obj).__name__}, not a state dict")
    try:
        _check_tree(obj, "state")
    except WeightsError as exc:
        raise type(exc)(f"weights file {path} was refused: {exc}") from None
    obj.pop("StructuredToParameterName@@", None)  # Paddle's own bookkeeping (paddle.load drops it too)
    if tensors:
        return _to_tensors(obj)
    return obj


def _to_tensors(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return paddle.to_tensor(obj)
    if isinstance(obj, dict):
        return {k: _to_tensors(v) for k, v in obj.items()}
    return obj


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
    """Load a ``.pdparams`` state dict into ``model``, strictly by default, without executing code.

    The file is read with :func:`safe_load` (numpy arrays and plain values only).

    fp16 checkpoints are cast to the model's dtype (the shipped weights are
    stored in fp16 to halve their size).

    Args:
        model: The network.
        path: ``.pdparams`` file.
        strict: Raise on any missing, unexpected or shape-mismatched key. With
            False, load what matches and warn loudly about the rest.

    Raises:
        FileNotFoundError: If the file does not exist.
        UnsafeWeightsError: If the file's pickle names anything but numpy arrays and plain values.
        WeightsError: If the file is not a Paddle state dict, or (strict) keys differ.
    """
    path = Path(path)
    state = safe_load(path)
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
            f"check that the model name/config matches the checkpoint{PARTIAL_HINT}"
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
