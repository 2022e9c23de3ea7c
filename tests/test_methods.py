"""CAM methods against independent computations; gradient-free methods batched vs one by one."""

from __future__ import annotations

import numpy as np
import paddle
import pytest

import segcam
from segcam.cam.methods import get_method
from segcam.cam.targets import ImageTarget, MaskTarget
from segcam.data.images import normalize


def _acts(net, rgb: np.ndarray) -> np.ndarray:
    out = {}
    h = net.feat.register_forward_post_hook(lambda layer, i, o: out.__setitem__("a", o.numpy()))
    with paddle.no_grad():
        net(paddle.to_tensor(normalize(rgb)))
    h.remove()
    return out["a"][0]


@pytest.fixture()
def setup(toy, rng):
    rgb = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    mask = np.zeros((12, 16), bool)
    mask[3:9, 2:12] = True
    # d(sum_M y_c)/dA_k = W[c,k] * M, because `feat` feeds the 1x1 conv `cls` at input resolution
    w = toy.cls.weight.numpy()[1, :, 0, 0]
    grad = w[:, None, None] * mask[None]
    return rgb, mask, _acts(toy, rgb), grad


def test_all_methods_registered() -> None:
    assert set(segcam.list_methods()) == {"seg_grad_cam", "seg_grad_cam_pp", "seg_hires_cam", "seg_xres_cam",
                                          "layer_cam", "seg_eigen_cam", "seg_score_cam", "ablation_cam"}


def test_hires_cam_closed_form(toy, setup) -> None:
    rgb, mask, a, g = setup
    res = segcam.explain(toy, rgb, "feat", MaskTarget(1, mask), "seg_hires_cam")
    np.testing.assert_allclose(res[0].maps["feat"].raw, np.maximum((g * a).sum(0), 0), rtol=1e-4, atol=1e-5)


def test_layer_cam_closed_form(toy, setup) -> None:
    rgb, mask, a, g = setup
    res = segcam.explain(toy, rgb, "feat", MaskTarget(1, mask), "layer_cam")
    np.testing.assert_allclose(res[0].maps["feat"].raw, np.maximum((np.maximum(g, 0) * a).sum(0), 0), rtol=1e-4,
                               atol=1e-5)


def test_grad_cam_pp_closed_form(toy, setup) -> None:
    rgb, mask, a, g = setup
    res = segcam.explain(toy, rgb, "feat", MaskTarget(1, mask), "seg_grad_cam_pp")
    s = a.sum(axis=(1, 2))
    expected_w = np.zeros(len(s))
    for k in range(len(s)):
        gk = g[k][mask]  # constant W[1,k] on M, zero elsewhere
        alpha = gk**2 / (2 * gk**2 + s[k] * gk**3)
        expected_w[k] = (alpha * np.maximum(gk, 0)).sum()
    expected = np.maximum(np.einsum("k,khw->hw", expected_w, a), 0)
    np.testing.assert_allclose(res[0].maps["feat"].raw, expected, rtol=1e-3, atol=1e-5)


def test_xres_limits(toy, setup) -> None:
    rgb, mask, a, g = setup
    pool1 = segcam.explain(toy, rgb, "feat", MaskTarget(1, mask), "seg_xres_cam", pool=1)[0].maps["feat"].raw
    hires = segcam.explain(toy, rgb, "feat", MaskTarget(1, mask), "seg_hires_cam")[0].maps["feat"].raw
    np.testing.assert_allclose(pool1, hires, rtol=1e-5, atol=1e-6)
    whole = segcam.explain(toy, rgb, "feat", MaskTarget(1, mask), "seg_xres_cam", pool=16)[0].maps["feat"].raw
    grad = segcam.explain(toy, rgb, "feat", MaskTarget(1, mask), "seg_grad_cam")[0].maps["feat"].raw
    np.testing.assert_allclose(whole, grad, rtol=1e-4, atol=1e-6)  # one 16x16 window over the 12x16 map
    pool2 = segcam.explain(toy, rgb, "feat", MaskTarget(1, mask), "seg_xres_cam", pool=2)[0].maps["feat"].raw
    pooled = g.reshape(g.shape[0], 6, 2, 8, 2).mean(axis=(2, 4)).repeat(2, 1).repeat(2, 2)
    np.testing.assert_allclose(pool2, np.maximum((pooled * a).sum(0), 0), rtol=1e-4, atol=1e-5)


def test_eigen_cam_recovers_a_rank_one_pattern() -> None:
    rng = np.random.default_rng(1)
    pattern = rng.random((6, 7))
    a = (rng.random(5)[:, None, None] + 0.5) * pattern[None]
    g = np.ones_like(a) * rng.random(5)[:, None, None]
    cam = get_method("seg_eigen_cam").cam(a[None], g[None])[0]
    centred = pattern - pattern.mean()
    if abs(centred.min()) > abs(centred.max()):  # the sign rule: the larger magnitude is positive
        centred = -centred
    centred = np.maximum(centred, 0)
    np.testing.assert_allclose(cam / cam.max(), centred / centred.max(), atol=1e-6)


def test_ablation_cam_closed_form_and_batching(toy, setup) -> None:
    rgb, mask, a, g = setup
    one = segcam.explain(toy, rgb, "feat", MaskTarget(1, mask), "ablation_cam", batch_size=1)[0].maps["feat"].raw
    many = segcam.explain(toy, rgb, "feat", MaskTarget(1, mask), "ablation_cam", batch_size=4)[0].maps["feat"].raw
    np.testing.assert_allclose(one, many, rtol=1e-4, atol=1e-5)
    # zeroing channel k removes W[1,k] * sum_M A_k from the region score y
    with paddle.no_grad():
        y = float((toy(paddle.to_tensor(normalize(rgb)))[0].numpy()[0, 1] * mask).sum())
    w = toy.cls.weight.numpy()[1, :, 0, 0] * (a * mask).sum(axis=(1, 2)) / abs(y)
    np.testing.assert_allclose(one, np.maximum(np.einsum("k,khw->hw", w, a), 0), rtol=1e-3, atol=1e-5)


def test_score_cam_independent_and_batched_equal(toy, setup) -> None:
    rgb, mask, a, _ = setup
    one = segcam.explain(toy, rgb, "feat", MaskTarget(1, mask), "seg_score_cam", batch_size=1)[0].maps["feat"].raw
    many = segcam.explain(toy, rgb, "feat", MaskTarget(1, mask), "seg_score_cam", batch_size=5)[0].maps["feat"].raw
    np.testing.assert_allclose(one, many, rtol=1e-4, atol=1e-6)
    x = normalize(rgb)

    def score(inp: np.ndarray) -> float:
        with paddle.no_grad():
            return float((toy(paddle.to_tensor(inp))[0].numpy()[0, 1] * mask).sum() / mask.sum())

    base = score(np.zeros_like(x))
    s = []
    for k in range(a.shape[0]):
        h = (a[k] - a[k].min()) / (np.ptp(a[k]) or 1)  # feat is already at input resolution
        s.append(score(x * h[None, None]) - base)
    w = np.exp(np.array(s) - max(s))
    w /= w.sum()
    np.testing.assert_allclose(one, np.maximum(np.einsum("k,khw->hw", w, a), 0), rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("method", ["seg_grad_cam", "seg_grad_cam_pp", "seg_hires_cam", "seg_xres_cam", "layer_cam",
                                    "seg_eigen_cam", "seg_score_cam", "ablation_cam"])
def test_every_method_on_hrsegnet(method: str, b16, crack_rgb) -> None:
    res = segcam.explain(b16, crack_rgb[:64, :64].copy(), ["seg_head", "seg2"], ImageTarget(), method)
    for m in res[0].maps.values():
        assert m.upsampled.shape == (64, 64) and np.isfinite(m.raw).all() and (m.raw >= 0).all()


def test_bad_method_options() -> None:
    with pytest.raises(TypeError, match="does not take options"):
        get_method("seg_grad_cam", batch_size=3)
    with pytest.raises(ValueError, match="batch_size"):
        get_method("seg_score_cam", batch_size=0)
