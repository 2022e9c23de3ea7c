"""Reading user images robustly and turning them into network input.

Every reader error is a :class:`ImageError` whose message names the file, what
is wrong and how to fix it, so a batch can record it and go on.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["IMAGE_SUFFIXES", "ImageError", "is_uri", "list_uri_images", "normalize", "read_image", "read_image_bytes",
           "read_image_uri", "source_stem", "to_uint8_rgb"]

#: The one list of image suffixes: folder scans pick these, and a named file with another suffix is refused.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")
#: Images with more pixels than this are refused before decoding, even with ``downscale`` (memory).
MAX_DECODE_PIXELS = 100_000_000
#: Smallest side accepted: HrSegNet's lowest branch works at 1/32 of the input.
MIN_SIDE = 32
#: Default limit on the longest side (memory for a CAM pass grows with the pixel count).
MAX_SIDE = 2048


class ImageError(ValueError):
    """An input image that cannot be used; the message says why and how to fix it."""


def to_uint8_rgb(im: Image.Image, name: str = "image") -> np.ndarray:
    """Convert any PIL mode (L, LA, P, RGBA, I;16, I, F, CMYK...) to H x W x 3 uint8 RGB.

    16-bit and 32-bit images are rescaled linearly from their own min..max to
    0..255 (a 16-bit crack photo rarely uses the full range); alpha is dropped.

    Raises:
        ImageError: For modes that cannot be converted.
    """
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float32)  # float32: a 9400x9400 16-bit scan needs 350 MB, not 700
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        gray = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    try:
        rgb = im.convert("RGB")
    except (ValueError, OSError) as exc:
        raise ImageError(f"{name}: cannot convert PIL mode {im.mode} to RGB ({exc}); save it as an 8-bit RGB PNG") from exc
    return np.asarray(rgb, dtype=np.uint8).copy()


def read_image_bytes(data: bytes, name: str = "upload", max_side: int = MAX_SIDE, downscale: bool = False) -> np.ndarray:
    """Like :func:`read_image` for in-memory bytes (uploads); ``name`` appears in error messages."""
    import io

    return _decode(lambda: Image.open(io.BytesIO(data)), name, max_side, downscale)


def is_uri(source: str | Path) -> bool:
    """True for ``scheme://...`` sources (``s3://``, ``gs://``, ``file://``...), read through pyarrow."""
    return isinstance(source, str) and "://" in source


def source_stem(source: str | Path) -> str:
    """The file stem of a path or URI (``s3://b/x/img.jpg`` -> ``img``)."""
    from pathlib import PurePosixPath
    from urllib.parse import urlparse

    return PurePosixPath(urlparse(source).path).stem if is_uri(source) else Path(source).stem


def _uri_fs(uri: str) -> tuple[object, str]:
    try:
        import pyarrow.fs as pafs
    except ImportError:
        raise ImageError(f"{uri}: reading URIs needs pyarrow (pip install \"segcam[ray]\")") from None
    try:
        return pafs.FileSystem.from_uri(uri)
    except Exception as exc:  # pyarrow raises ArrowInvalid, ArrowNotImplementedError, OSError...
        raise ImageError(f"{uri}: no file system for this URI ({exc})") from None


def list_uri_images(uri: str) -> list[str]:
    """The image files directly under a folder URI (sorted), or ``[uri]`` when it names a file.

    Raises:
        ImageError: No file system for the URI, or it cannot be listed.
    """
    import pyarrow.fs as pafs

    fs, path = _uri_fs(uri)
    try:
        info = fs.get_file_info(path)
        if info.type != pafs.FileType.Directory:
            return [uri]
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=False))
    except OSError as exc:
        raise ImageError(f"{uri}: cannot be listed ({exc})") from None
    base = uri.rstrip("/")
    return sorted(f"{base}/{i.base_name}" for i in infos
                  if i.type == pafs.FileType.File and Path(i.base_name).suffix.lower() in IMAGE_SUFFIXES)


def read_image_uri(uri: str, max_side: int = MAX_SIDE, downscale: bool = False) -> np.ndarray:
    """Like :func:`read_image` for a URI, read through the pyarrow file system of its scheme.

    Raises:
        ImageError: As :func:`read_image`, or a URI pyarrow cannot open.
    """
    from urllib.parse import urlparse

    suffix = Path(urlparse(uri).path).suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ImageError(f"{uri}: suffix {suffix or '(none)'} is not an image type segcam reads; "
                         f"use one of {', '.join(IMAGE_SUFFIXES)}")
    fs, path = _uri_fs(uri)
    try:
        with fs.open_input_file(path) as fh:
            data = fh.read()
    except FileNotFoundError:
        raise ImageError(f"{uri}: file not found; check the URI") from None
    except OSError as exc:
        raise ImageError(f"{uri}: cannot be read ({exc})") from None
    return read_image_bytes(data, uri, max_side, downscale)


def read_image(path: str | Path, max_side: int = MAX_SIDE, downscale: bool = False) -> np.ndarray:
    """Read an image file as H x W x 3 uint8 RGB, applying its EXIF orientation.

    Args:
        path: Image file.
        max_side: Longest side allowed.
        downscale: Shrink larger images to ``max_side`` instead of failing.

    Raises:
        ImageError: Missing, unreadable, corrupt or truncated file, a non-image,
            or an image smaller than 32 px or larger than ``max_side``.
    """
    import stat

    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found; check the path") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot be read ({exc.strerror}); check the path and permissions") from None
    if stat.S_ISDIR(mode):
        raise ImageError(f"{path}: is a folder, not an image")
    if not stat.S_ISREG(mode):
        raise ImageError(f"{path}: not a regular file (a FIFO, socket or device); give an image file")
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise ImageError(f"{path}: suffix {path.suffix or '(none)'} is not an image type segcam reads; "
                         f"use one of {', '.join(IMAGE_SUFFIXES)}")
    return _decode(lambda: Image.open(path), str(path), max_side, downscale)


def _decode(opener: object, path: str, max_side: int, downscale: bool) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with opener() as im:
                _check_header(im, path, max_side, downscale)  # before decoding: the header gives the size
                if downscale and max(im.size) > max_side:
                    im.draft("RGB", (max_side, max_side))  # JPEG decodes at 1/2, 1/4, 1/8 directly
                im.load()  # forces decoding: truncated and corrupt files fail here
                im = ImageOps.exif_transpose(im)
                rgb = to_uint8_rgb(im, path)
    except UnidentifiedImageError as exc:
        raise ImageError(f"{path}: not an image file PIL can read; give a JPEG, PNG, BMP or TIFF") from exc
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageError(f"{path}: image too large to decode safely ({exc}); downscale it first") from exc
    except PermissionError as exc:
        raise ImageError(f"{path}: not readable ({exc.strerror}); check the file permissions") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, ImageError):
            raise
        raise ImageError(f"{path}: corrupt or truncated image ({exc}); re-export or re-download it") from exc
    return check_size(rgb, path, max_side=max_side, downscale=downscale)


def _check_header(im: Image.Image, name: str, max_side: int, downscale: bool) -> None:
    w, h = im.size
    if w * h > MAX_DECODE_PIXELS:
        raise ImageError(f"{name}: image is {w}x{h} ({w * h / 1e6:.0f} MP), above the {MAX_DECODE_PIXELS / 1e6:.0f} MP "
                         "that segcam decodes in one piece; split it into tiles first")
    if max(w, h) > max_side and not downscale:
        raise ImageError(f"{name}: image is {w}x{h}, above the {max_side}-pixel limit on the longest side; "
                         f"pass --tile 1024 to explain it at full resolution tile by tile, --downscale to shrink it to "
                         f"{max_side}, or raise --max-side (needs more memory)")


def check_size(rgb: np.ndarray, name: str, max_side: int = MAX_SIDE, downscale: bool = False) -> np.ndarray:
    """Enforce the size limits on an RGB array (see :func:`read_image`)."""
    h, w = rgb.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise ImageError(
            f"{name}: image is {w}x{h}, smaller than the networks' {MIN_SIDE}-pixel minimum side "
            f"(their lowest branch runs at 1/32); upscale or pad it to at least {MIN_SIDE}x{MIN_SIDE}"
        )
    if max(h, w) > max_side:
        if not downscale:
            raise ImageError(
                f"{name}: image is {w}x{h}, above the {max_side}-pixel limit on the longest side; "
                f"pass --tile 1024 to explain it at full resolution tile by tile, --downscale to shrink it to "
                f"{max_side}, or raise --max-side (needs more memory)"
            )
        scale = max_side / max(h, w)
        size = (max(MIN_SIDE, round(w * scale)), max(MIN_SIDE, round(h * scale)))
        rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR))
    return rgb


def normalize(rgb: np.ndarray, mean: tuple[float, ...] = (0.5, 0.5, 0.5), std: tuple[float, ...] = (0.5, 0.5, 0.5)) -> np.ndarray:
    """H x W x 3 (or N x H x W x 3) uint8 RGB -> float32 N x 3 x H x W, ``(x/255 - mean) / std``.

    The defaults are PaddleSeg's ``Normalize`` defaults, used by HrSegNet.
    """
    arr = np.asarray(rgb, dtype=np.float32) / 255.0
    if arr.ndim == 3:
        arr = arr[None]
    arr = (arr - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(arr.transpose(0, 3, 1, 2))
