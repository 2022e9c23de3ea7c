"""Atomic file writes: a reader never sees a half-written output."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["atomic_temp_target", "atomic_write", "encode_image", "safe_name", "save_csv", "save_csv_fields", "save_jpg",
           "save_json", "save_npy", "save_npz", "save_png"]

#: PNG zlib level: 3 is within 10 % of the smallest size at a quarter of the time of level 9 (and of PIL's default).
PNG_LEVEL = 3
#: JPEG quality of photo-like outputs (overlays): 90 keeps the heatmap's colour steps visible at a fifth of a PNG.
JPEG_QUALITY = 90


def safe_name(name: str, limit: int = 120) -> str:
    """A file-name-safe version of ``name``: Unicode letters, digits, ``_ . -`` kept, every other run -> ``_``."""
    import re
    import unicodedata

    clean = re.sub(r"[^\w.-]+", "_", unicodedata.normalize("NFC", name)).strip("._") or "image"
    return clean[:limit]


#: The temporary names :func:`atomic_write` makes: ``.<final name>.<8 random characters of tempfile>.tmp<suffix>``.
_TEMP_RE = re.compile(r"^\.(?P<final>.+)\.[a-z0-9_]{8}\.tmp(?P<suffix>\.[^.]*)?$")


def atomic_temp_target(name: str) -> str | None:
    """The final file name if ``name`` is exactly a temporary name of :func:`atomic_write`, else None.

    A run's clean-up removes only such names (and only for final names it writes), never a user's
    ``.draft.tmp`` or ``.notes.tmpl``.
    """
    m = _TEMP_RE.match(name)
    if m is None or (m.group("suffix") or "") != Path(m.group("final")).suffix:
        return None
    return m.group("final")


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path``.

    The temporary file sits in the same folder (same file system) and is
    removed if ``write`` fails; its name is recognised by :func:`atomic_temp_target`.
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


def encode_image(rgb: np.ndarray, ext: str = ".png", quality: int = 0) -> bytes:
    """Encode an H x W (x 3) uint8 RGB array as PNG (zlib :data:`PNG_LEVEL`) or JPEG (``quality`` or :data:`JPEG_QUALITY`).

    OpenCV's encoders (libpng/libjpeg-turbo) release the GIL and are 3-5x faster than PIL's PNG writer,
    so a writer thread can encode while the next image is explained.

    Raises:
        ValueError: An extension other than ``.png``/``.jpg``, or an array that is not uint8 image data.
    """
    import cv2

    arr = np.asarray(rgb)
    if arr.dtype != np.uint8 or arr.ndim not in (2, 3):
        raise ValueError(f"encode_image needs H x W or H x W x 3 uint8, got {arr.dtype} {arr.shape}")
    if arr.ndim == 3:
        arr = cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_RGB2BGR)
    if ext == ".png":
        params = [cv2.IMWRITE_PNG_COMPRESSION, PNG_LEVEL]
    elif ext in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, quality or JPEG_QUALITY]
    else:
        raise ValueError(f"unsupported image extension {ext!r}; use .png or .jpg")
    ok, buf = cv2.imencode(ext, arr, params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {arr.shape} array as {ext}")
    return buf.tobytes()


def save_png(path: str | Path, rgb: np.ndarray) -> Path:
    """Write an H x W (x 3) uint8 RGB array as PNG, atomically."""
    data = encode_image(rgb, ".png")
    return atomic_write(path, lambda p: p.write_bytes(data))


def save_jpg(path: str | Path, rgb: np.ndarray) -> Path:
    """Write an H x W x 3 uint8 RGB array as JPEG (quality :data:`JPEG_QUALITY`), atomically."""
    data = encode_image(rgb, ".jpg")
    return atomic_write(path, lambda p: p.write_bytes(data))


def save_npz(path: str | Path, **arrays: np.ndarray) -> Path:
    """Write arrays into a zlib-compressed ``.npz`` (no pickled objects), atomically and reproducibly.

    Unlike ``np.savez_compressed``, every zip entry carries a fixed date (1980-01-01), so the same arrays
    give the same bytes whenever they are written (a resumed or Ray run is byte-identical to a plain one).
    """
    import zipfile

    def write(p: Path) -> None:
        with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
            for key, arr in arrays.items():
                info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                # streamed into the entry: no in-memory copy of a 24-megapixel map (two, with getvalue)
                arr = np.asanyarray(arr)
                with zf.open(info, "w", force_zip64=arr.nbytes + 4096 >= zipfile.ZIP64_LIMIT) as entry:
                    np.lib.format.write_array(entry, arr, allow_pickle=False)

    return atomic_write(path, write)


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
    return save_csv_fields(path, rows, list(rows[0]) if rows else [])


def save_csv_fields(path: str | Path, rows: list[dict[str, Any]], fields: Sequence[str]) -> Path:
    """Write dict rows as CSV with these columns (a header even with no rows), atomically."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write(path, lambda p: p.write_text(buf.getvalue(), encoding="utf-8"))
