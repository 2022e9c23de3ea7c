"""Atomic file writes: a reader never sees a half-written output."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = ["atomic_write", "safe_name", "save_csv", "save_json", "save_npy", "save_png"]


def safe_name(name: str, limit: int = 120) -> str:
    """A file-name-safe version of ``name``: Unicode letters, digits, ``_ . -`` kept, every other run -> ``_``."""
    import re
    import unicodedata

    clean = re.sub(r"[^\w.-]+", "_", unicodedata.normalize("NFC", name)).strip("._") or "image"
    return clean[:limit]


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path``.

    The temporary file sits in the same folder (same file system) and is
    removed if ``write`` fails.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; outputs get the usual permissions
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_png(path: str | Path, rgb: np.ndarray) -> Path:
    """Write an H x W (x 3) uint8 array as PNG, atomically."""
    from PIL import Image

    return atomic_write(path, lambda p: Image.fromarray(np.asarray(rgb)).save(p, format="PNG"))


def save_npy(path: str | Path, arr: np.ndarray) -> Path:
    """Write a numpy array as ``.npy``, atomically."""
    def write(p: Path) -> None:
        with open(p, "wb") as fh:
            np.save(fh, arr)

    return atomic_write(path, write)


def save_json(path: str | Path, obj: Any) -> Path:
    """Write JSON (indented, UTF-8), atomically."""
    return atomic_write(path, lambda p: p.write_text(json.dumps(obj, indent=2, default=str) + "\n", encoding="utf-8"))


def save_csv(path: str | Path, rows: list[dict[str, Any]]) -> Path:
    """Write dict rows as CSV (header from the first row's keys), atomically."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else [])
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write(path, lambda p: p.write_text(buf.getvalue(), encoding="utf-8"))
