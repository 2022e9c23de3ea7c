"""Reading user images robustly and turning them into network input.

Every reader error is a :class:`ImageError` whose message names the file, what
is wrong and how to fix it, so a batch can record it and go on.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["IMAGE_SUFFIXES", "MAX_FILE_BYTES", "ImageError", "is_uri", "list_uri_images", "normalize", "read_image",
           "read_image_bytes", "read_image_uri", "source_identity", "source_key", "source_stem", "to_uint8_rgb"]

#: The one list of image suffixes: folder scans pick these, and a named file with another suffix is refused.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")
#: Images with more pixels than this are refused before decoding, even with ``downscale`` (memory).
MAX_DECODE_PIXELS = 100_000_000
#: Largest image file read, local or remote (1 GiB: a 100 MP photo as uncompressed 16-bit RGB TIFF is 600 MB).
MAX_FILE_BYTES = 1 << 30
#: Bytes per read of a remote file (bounded buffer; the size is checked before the first read).
URI_CHUNK_BYTES = 1 << 20
#: A remote read that makes no progress for this long fails (its image is a failed row, the batch goes on).
URI_STALL_SECONDS = 60.0
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


def source_key(source: str | Path) -> str:
    """How a run records where an image came from: the resolved path, or the URI as given."""
    return str(source) if is_uri(source) else str(Path(source).resolve())


def source_identity(source: str | Path) -> str | None:
    """A cheap content identity of an image file: ``"<size>:<mtime in ns>"`` (None if it cannot be read).

    Size and modification time, not a hash: they cost one ``stat`` (or one metadata request for a URI)
    and no read, so checking which photos of a 100k-photo survey are done stays fast, and any edit or
    replacement of a file changes them. A file rewritten with the same size and a forged mtime is not
    detected (pass ``--overwrite`` after such edits).
    """
    try:
        if is_uri(source):
            fs, path = _uri_fs(str(source))
            info = fs.get_file_info(path)
            return f"{info.size}:{info.mtime_ns}" if info.size is not None else None
        st = Path(source).stat()
        return f"{st.st_size}:{st.st_mtime_ns}"
    except (OSError, ImageError):
        return None


def _uri_fs(uri: str) -> tuple[object, str]:
    try:
        import pyarrow.fs as pafs
    except ImportError:
        raise ImageError(f"{uri}: reading URIs needs pyarrow (pip install \"segcam[ray]\")") from None
    try:
        return pafs.FileSystem.from_uri(uri)
    except Exception as exc:  # pyarrow raises ArrowInvalid, ArrowNotImplementedError, OSError...
        raise ImageError(f"{uri}: no file system for this URI ({exc})") from None


def _local_file_uri(uri: str) -> Path | None:
    from urllib.parse import unquote, urlparse

    parsed = urlparse(uri)
    return Path(unquote(parsed.path)) if parsed.scheme == "file" and parsed.netloc in ("", "localhost") else None


def list_uri_images(uri: str) -> list[str]:
    """The image files directly under a folder URI (sorted), or ``[uri]`` when it names an image file.

    A URI with an image suffix is taken as a file without contacting its store: an unreachable one
    then fails as its own row of the batch, not the whole run.

    Raises:
        ImageError: No file system for the URI, or a folder URI that cannot be listed.
    """
    from urllib.parse import urlparse

    import pyarrow.fs as pafs

    if Path(urlparse(uri).path).suffix.lower() in IMAGE_SUFFIXES:
        return [uri]
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


def _read_stream(fh: object, uri: str, size: int) -> bytes:
    """Read ``size`` bytes in bounded chunks on a helper thread, so the caller stays interruptible.

    The calling thread waits in short slices: Ctrl-C and SIGTERM handlers run between them even while
    the store does not answer, and a read that makes no progress for :data:`URI_STALL_SECONDS` fails.
    """
    import io
    import threading
    import time

    buf = io.BytesIO()
    state: dict[str, object] = {"error": None, "done": False, "progress": time.monotonic()}

    def pump() -> None:
        try:
            while buf.tell() <= size:
                chunk = fh.read(URI_CHUNK_BYTES)
                if not chunk:
                    break
                buf.write(chunk)
                state["progress"] = time.monotonic()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            state["error"] = exc
        finally:
            state["done"] = True

    worker = threading.Thread(target=pump, name="segcam-uri-read", daemon=True)
    worker.start()
    while not state["done"]:
        worker.join(0.2)
        if not state["done"] and time.monotonic() - float(state["progress"]) > URI_STALL_SECONDS:
            raise ImageError(f"{uri}: the read made no progress for {URI_STALL_SECONDS:.0f} s; check the store and retry")
    if isinstance(state["error"], BaseException):
        raise ImageError(f"{uri}: cannot be read ({state['error']})") from None
    if buf.tell() > size:
        raise ImageError(f"{uri}: the object grew while it was read (over {size} bytes); retry when it is complete")
    return buf.getvalue()


def read_image_uri(uri: str, max_side: int = MAX_SIDE, downscale: bool = False) -> np.ndarray:
    """Like :func:`read_image` for a URI, read through the pyarrow file system of its scheme.

    ``file://`` URIs are read as local paths (same checks). Otherwise the object's type and size are
    checked before any byte is read (folders and other non-files refused; at most
    :data:`MAX_FILE_BYTES`), and the bytes are streamed in :data:`URI_CHUNK_BYTES` chunks; the read
    stays interruptible and fails after :data:`URI_STALL_SECONDS` without progress.

    Raises:
        ImageError: As :func:`read_image`, or a URI pyarrow cannot open.
    """
    from urllib.parse import urlparse

    import pyarrow.fs as pafs

    suffix = Path(urlparse(uri).path).suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ImageError(f"{uri}: suffix {suffix or '(none)'} is not an image type segcam reads; "
                         f"use one of {', '.join(IMAGE_SUFFIXES)}")
    local = _local_file_uri(uri)
    if local is not None:
        return read_image(local, max_side=max_side, downscale=downscale)
    fs, path = _uri_fs(uri)
    try:
        info = fs.get_file_info(path)
    except OSError as exc:
        raise ImageError(f"{uri}: cannot be reached ({exc})") from None
    if info.type == pafs.FileType.NotFound:
        raise ImageError(f"{uri}: file not found; check the URI")
    if info.type == pafs.FileType.Directory:
        raise ImageError(f"{uri}: is a folder, not an image")
    if info.type != pafs.FileType.File:
        raise ImageError(f"{uri}: not a regular file (a FIFO, socket or device); give an image file")
    size = info.size if info.size is not None else MAX_FILE_BYTES
    _check_file_size(uri, size)
    try:
        with fs.open_input_stream(path) as fh:
            data = _read_stream(fh, uri, size)
    except FileNotFoundError:
        raise ImageError(f"{uri}: file not found; check the URI") from None
    except OSError as exc:
        raise ImageError(f"{uri}: cannot be read ({exc})") from None
    return read_image_bytes(data, uri, max_side, downscale)


def _check_file_size(name: str | Path, size: int) -> None:
    if size > MAX_FILE_BYTES:
        raise ImageError(f"{name}: the file is {size / 2**20:.0f} MiB, above the {MAX_FILE_BYTES / 2**20:.0f} MiB "
                         "segcam reads as one image; split it into tiles or compress it first")


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
        st = path.stat()
        mode = st.st_mode
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found; check the path") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot be read ({exc.strerror}); check the path and permissions") from None
    if stat.S_ISDIR(mode):
        raise ImageError(f"{path}: is a folder, not an image")
    if not stat.S_ISREG(mode):
        raise ImageError(f"{path}: not a regular file (a FIFO, socket or device); give an image file")
    _check_file_size(path, st.st_size)
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
        raise ImageError(f"{path}: not an image file PIL can read; give a JPEG, PNG, BMP, TIFF, WebP or GIF") from exc
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
    if min(w, h) < MIN_SIDE:  # first: tiles or a larger --max-side cannot help a 1x5000 strip
        raise ImageError(_too_small(name, w, h))
    if w * h > MAX_DECODE_PIXELS:
        raise ImageError(f"{name}: image is {w}x{h} ({w * h / 1e6:.0f} MP), above the {MAX_DECODE_PIXELS / 1e6:.0f} MP "
                         "that segcam decodes in one piece; split it into tiles first")
    if max(w, h) > max_side and not downscale:
        raise ImageError(f"{name}: image is {w}x{h}, above the {max_side}-pixel limit on the longest side; "
                         f"pass --tile 1024 to explain it at full resolution tile by tile, --downscale to shrink it to "
                         f"{max_side}, or raise --max-side (needs more memory)")


def _too_small(name: str, w: int, h: int) -> str:
    return (f"{name}: image is {w}x{h}, smaller than the networks' {MIN_SIDE}-pixel minimum side "
            f"(their lowest branch runs at 1/32); upscale or pad it to at least {MIN_SIDE}x{MIN_SIDE}")


def check_size(rgb: np.ndarray, name: str, max_side: int = MAX_SIDE, downscale: bool = False) -> np.ndarray:
    """Enforce the size limits on an RGB array (see :func:`read_image`)."""
    h, w = rgb.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise ImageError(_too_small(name, w, h))
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
    arr = np.asarray(rgb)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.dtype == np.uint8:  # a lookup table per channel: the same float32 values, a third of the time
        levels = np.arange(256, dtype=np.float32) / 255.0
        out = np.empty((arr.shape[0], 3, *arr.shape[1:3]), np.float32)
        for c in range(3):
            lut = (levels - np.float32(mean[c])) / np.float32(std[c])
            out[:, c] = lut[arr[..., c]]
        return out
    arr = (arr.astype(np.float32) / 255.0 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(arr.transpose(0, 3, 1, 2))
