"""Bad and unusual input images: each gets a one-line error naming the file and the fix."""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import EXAMPLES
from PIL import Image

from segcam.data.images import ImageError, normalize, read_image

PHOTO = EXAMPLES / "deepcrack_11215-9.jpg"


def _one_line(exc: pytest.ExceptionInfo, path) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_real_photo_reads_as_rgb_uint8() -> None:
    img = read_image(PHOTO)
    assert img.shape == (384, 544, 3) and img.dtype == np.uint8


def test_missing_file(tmp_path) -> None:
    with pytest.raises(ImageError) as exc:
        read_image(tmp_path / "nope.jpg")
    assert "not found" in _one_line(exc, tmp_path / "nope.jpg")


def test_unreadable_dangling_link_and_folder(tmp_path) -> None:
    link = tmp_path / "link.jpg"
    os.symlink(tmp_path / "gone.jpg", link)
    with pytest.raises(ImageError, match="not found"):
        read_image(link)
    with pytest.raises(ImageError, match="folder"):
        read_image(tmp_path)


def test_unreadable_without_permission(tmp_path, monkeypatch) -> None:
    path = tmp_path / "locked.jpg"
    path.write_bytes(PHOTO.read_bytes())

    def deny(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Image, "open", deny)  # root ignores chmod 000, so simulate the OS refusal
    with pytest.raises(ImageError) as exc:
        read_image(path)
    assert "permission" in _one_line(exc, path).lower()


def test_corrupt_file(tmp_path) -> None:
    path = tmp_path / "corrupt.jpg"
    data = bytearray(PHOTO.read_bytes())
    data[600:4000] = os.urandom(3400)
    path.write_bytes(bytes(data[:2]) + os.urandom(5000))
    with pytest.raises(ImageError) as exc:
        read_image(path)
    assert "not an image" in _one_line(exc, path) or "corrupt" in str(exc.value)


def test_truncated_file(tmp_path) -> None:
    path = tmp_path / "half.jpg"
    path.write_bytes(PHOTO.read_bytes()[:20000])
    with pytest.raises(ImageError) as exc:
        read_image(path)
    assert "truncated" in _one_line(exc, path)


def test_non_image_file(tmp_path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("this is not a picture\n")
    with pytest.raises(ImageError) as exc:
        read_image(path)
    assert "not an image" in _one_line(exc, path)


def test_grayscale_becomes_three_equal_channels(tmp_path) -> None:
    path = tmp_path / "gray.png"
    Image.open(PHOTO).convert("L").save(path)
    img = read_image(path)
    assert img.shape == (384, 544, 3)
    np.testing.assert_array_equal(img[..., 0], img[..., 2])


def test_16bit_is_rescaled_to_8bit(tmp_path) -> None:
    path = tmp_path / "deep.png"
    arr = np.linspace(1000, 41000, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(arr).save(path)
    assert Image.open(path).mode.startswith("I")
    img = read_image(path)
    assert img.dtype == np.uint8 and img.min() == 0 and img.max() == 255


def test_rgba_drops_alpha(tmp_path) -> None:
    path = tmp_path / "alpha.png"
    rgba = np.dstack([np.full((40, 40, 3), 200, np.uint8), np.zeros((40, 40), np.uint8)])
    Image.fromarray(rgba, "RGBA").save(path)
    img = read_image(path)
    assert img.shape == (40, 40, 3) and (img == 200).all()


def test_palette_image(tmp_path) -> None:
    path = tmp_path / "pal.png"
    Image.open(PHOTO).convert("P").save(path)
    assert Image.open(path).mode == "P"
    assert read_image(path).shape == (384, 544, 3)


def test_smaller_than_network_stride(tmp_path) -> None:
    path = tmp_path / "tiny.png"
    Image.new("RGB", (20, 60)).save(path)
    with pytest.raises(ImageError) as exc:
        read_image(path)
    assert "32" in _one_line(exc, path) and "pad" in str(exc.value)


def test_very_large_image_limit_and_downscale(tmp_path) -> None:
    path = tmp_path / "huge.png"
    Image.new("RGB", (3000, 200), (90, 90, 90)).save(path)
    with pytest.raises(ImageError) as exc:
        read_image(path)
    assert "--downscale" in _one_line(exc, path)
    img = read_image(path, downscale=True)
    assert max(img.shape[:2]) == 2048


def test_normalize_matches_paddleseg_defaults() -> None:
    x = normalize(np.array([[[0, 127, 255]]], np.uint8))
    assert x.shape == (1, 3, 1, 1)
    np.testing.assert_allclose(x.ravel(), [-1.0, 127 / 127.5 - 1, 1.0], rtol=1e-6)
