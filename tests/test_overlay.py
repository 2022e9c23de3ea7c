"""Heatmaps and overlays: colormaps, alpha, RGB/BGR, input checks."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest

from segcam.cam.overlay import heatmap, overlay


def test_heatmap_uses_the_named_colormap() -> None:
    cam = np.array([[0.0, 0.5, 1.0]])
    for name in ("inferno", "jet", "turbo"):
        expected = np.rint(matplotlib.colormaps[name](cam)[..., :3] * 255).astype(np.uint8)
        np.testing.assert_array_equal(heatmap(cam, name), expected)
    assert not np.array_equal(heatmap(cam, "inferno"), heatmap(cam, "jet"))
    tall = np.random.default_rng(1).random((1100, 5))  # more rows than one block of the lookup
    tall[7, 2], tall[1099, 4] = 1.0, 1.0 + 5e-7  # the top bin, and rounding just above 1
    expected = np.rint(matplotlib.colormaps["inferno"](np.minimum(tall, 1.0))[..., :3] * 255).astype(np.uint8)
    np.testing.assert_array_equal(heatmap(tall), expected)


def test_alpha_extremes_and_blend() -> None:
    img = np.full((2, 3, 3), 100, np.uint8)
    cam = np.full((2, 3), 1.0)
    np.testing.assert_array_equal(overlay(img, cam, alpha=0.0), img)
    np.testing.assert_array_equal(overlay(img, cam, alpha=1.0), heatmap(cam))
    mid = overlay(img, cam, alpha=0.25).astype(float)
    np.testing.assert_allclose(mid, np.rint(0.75 * 100 + 0.25 * heatmap(cam).astype(float)), atol=0.5)
    for mode in ("heat", "blend"):  # at full heat both modes are the same blend
        np.testing.assert_allclose(overlay(img, cam, alpha=0.25, mode=mode).astype(float), mid, atol=1)


def test_heat_weighted_overlay_leaves_cold_pixels_untouched() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (1100, 7, 3), dtype=np.uint8)  # more rows than one block of the blend
    cam = np.zeros((1100, 7))
    cam[600:, 3] = 0.5
    cam[1099, 6] = 1.0
    out = overlay(img, cam, alpha=0.8)  # the default mode
    cold = cam == 0
    np.testing.assert_array_equal(out[cold], img[cold])
    half = img[600, 3].astype(float) + 0.4 * (heatmap(cam)[600, 3].astype(float) - img[600, 3])
    np.testing.assert_allclose(out[600, 3], np.rint(half), atol=0.5)
    full = img[1099, 6].astype(float) + 0.8 * (heatmap(cam)[1099, 6].astype(float) - img[1099, 6])
    np.testing.assert_allclose(out[1099, 6], np.rint(full), atol=0.5)
    blend = overlay(img, cam, alpha=0.8, mode="blend")  # the classic blend darkens the cold pixels too
    assert not np.array_equal(blend[cold], img[cold])


def test_bgr_input_is_flipped_and_float_images_accepted() -> None:
    rgb = np.zeros((1, 1, 3), np.uint8)
    rgb[..., 0] = 255  # red
    cam = np.zeros((1, 1))
    np.testing.assert_array_equal(overlay(rgb[..., ::-1], cam, alpha=0.0, bgr=True), rgb)
    np.testing.assert_array_equal(overlay(rgb / 255.0, cam, alpha=0.0), rgb)


@pytest.mark.parametrize("kwargs, match", [
    ({"cmap": "infreno"}, "did you mean: inferno"),
    ({"alpha": 1.5}, "alpha"),
    ({"mode": "heta"}, "did you mean: heat"),
])
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        overlay(np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2)), **kwargs)


def test_bad_maps_and_images() -> None:
    img = np.zeros((2, 2, 3), np.uint8)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        overlay(img, np.full((2, 2), 3.0))
    for bad in (np.nan, np.inf, -np.inf):
        cam = np.zeros((2, 2))
        cam[1, 0] = bad
        with pytest.raises(ValueError, match="NaN"):
            overlay(img, cam)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        heatmap(np.full((2, 2), -0.1))
    with pytest.raises(ValueError, match="size"):
        overlay(img, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="float image"):
        overlay(np.full((2, 2, 3), 2.0), np.zeros((2, 2)))
