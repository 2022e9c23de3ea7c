"""Scores (logit / margin / prob) and the Grad-CAM++ sign guard."""

from __future__ import annotations

import warnings

import numpy as np
import paddle
import pytest

import segcam
from segcam.cam.engine import SCORES, score_planes
from segcam.cam.targets import MaskTarget


def _region_score(logits: np.ndarray, mask: np.ndarray, c: int, score: str) -> float:
    planes = score_planes(paddle.to_tensor(logits), score).numpy()
    return float((planes[:, c] * mask).sum())


@pytest.mark.parametrize("score", list(SCORES))
def test_score_formulas_and_their_gradients_match_finite_differences(score) -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(1, 3, 4, 5)).astype(np.float64)
    mask = (rng.random((4, 5)) > 0.5).astype(np.float64)
    y = logits[0]
    want = {"logit": y[1],
            "margin": y[1] - np.log(np.exp(y[0]) + np.exp(y[2])),
            "prob": np.exp(y[1]) / np.exp(y).sum(0)}[score]
    assert _region_score(logits, mask, 1, score) == pytest.approx(float((want * mask).sum()), rel=1e-6)
    t = paddle.to_tensor(logits, stop_gradient=False)
    (score_planes(t, score)[:, 1] * paddle.to_tensor(mask)).sum().backward()
    grad = t.grad.numpy()
    eps = 1e-6
    for idx in [(0, 0, 1, 2), (0, 1, 1, 2), (0, 2, 3, 4), (0, 1, 0, 0)]:
        up, down = logits.copy(), logits.copy()
        up[idx] += eps
        down[idx] -= eps
        fd = (_region_score(up, mask, 1, score) - _region_score(down, mask, 1, score)) / (2 * eps)
        assert grad[idx] == pytest.approx(fd, abs=1e-6), idx


def test_two_class_margin_is_the_log_odds() -> None:
    logits = np.array([[[[2.0, -1.0]], [[0.5, 3.0]]]])
    np.testing.assert_allclose(score_planes(paddle.to_tensor(logits), "margin").numpy()[0, 1, 0], [-1.5, 4.0])


def test_margin_at_the_logit_layer_has_the_closed_form(toy) -> None:
    rgb = np.random.default_rng(0).integers(0, 255, (16, 20, 3), dtype=np.uint8)
    mask = np.zeros((16, 20), bool)
    mask[4:9, 5:12] = True
    res = segcam.explain(toy, rgb, "cls", MaskTarget(1, mask), "seg_grad_cam", score="margin")
    with paddle.no_grad():
        y = toy(paddle.to_tensor(segcam.data.images.normalize(rgb)))[0].numpy()[0]
    w = mask.mean()  # mean gradient: +1 on the crack plane, -1 on the background plane, inside M
    np.testing.assert_allclose(res[0].maps["cls"].raw, np.maximum(w * (y[1] - y[0]), 0), rtol=1e-4, atol=1e-6)
    assert res.meta["score"]["name"] == "margin"
    with pytest.raises(ValueError, match="unknown score"):
        segcam.explain(toy, rgb, "cls", MaskTarget(1, mask), score="odds")


def test_grad_cam_pp_no_longer_inverts_on_signed_activations() -> None:
    from segcam.cam.methods.seg_grad_cam_pp import GradCAMPlusPlusWarning, SegGradCAMPlusPlus

    # the logit map as the "layer": crack logit negative almost everywhere, positive on the crack
    crack = np.full((8, 8), -4.0)
    crack[3:5, :] = 3.0
    acts = np.stack([-crack, crack])[None].astype(np.float32)
    target = (crack > 0).astype(np.float32)
    grads = np.stack([np.zeros_like(target), target])[None]
    # the unguarded formula gives the crack channel a negative weight: the map lights everything but the crack
    g2, g3 = grads**2, grads**3
    alpha = np.divide(g2, 2 * g2 + acts.sum(axis=(2, 3), keepdims=True) * g3, out=np.zeros_like(g2), where=g2 > 0)
    naive = np.maximum(np.einsum("nk,nkhw->nhw", (alpha * np.maximum(grads, 0)).sum(axis=(2, 3)), acts), 0)[0]
    assert naive[target == 0].mean() > naive[target == 1].mean()
    with pytest.warns(GradCAMPlusPlusWarning, match="invert"):
        guarded = SegGradCAMPlusPlus().cam(acts, grads)[0]
    assert not (guarded[target == 0] > guarded[target == 1].max(initial=0)).any()
    with warnings.catch_warnings():  # non-negative activations: the paper's case, no warning
        warnings.simplefilter("error")
        SegGradCAMPlusPlus().cam(np.abs(acts), grads)


@pytest.mark.parametrize("name", segcam.list_models())
def test_every_listed_alias_of_every_zoo_model_explains(name) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = segcam.create_model(name, weights="random")
    rgb = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    res = segcam.explain(model, rgb, list(model.aliases), segcam.cam.targets.ImageTarget())
    for alias in model.aliases:
        m = res[0].maps[alias]
        assert m.upsampled.shape == (64, 64) and np.isfinite(m.upsampled).all(), alias


def test_layers_as_objects_and_tuple_elements(b16, crack_rgb) -> None:
    from segcam.cam.layers import LayerNotFoundError

    by_name = segcam.explain(b16, crack_rgb, ["seg3"])[0].maps["seg3"].raw
    by_object = segcam.explain(b16, crack_rgb, [b16.network.seg3])[0].maps["seg3"].raw
    np.testing.assert_array_equal(by_name, by_object)
    with pytest.raises(LayerNotFoundError, match="not a sublayer"):
        segcam.explain(b16, crack_rgb, [paddle.nn.Conv2D(1, 1, 1)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        unet = segcam.create_model("unet", weights="random")
    small = crack_rgb[:64, :64]
    res = segcam.explain(unet, small, ["encode[0]", "encoder"])
    np.testing.assert_array_equal(res[0].maps["encode[0]"].raw, res[0].maps["encoder"].raw)
    from segcam.cam.hooks import LayerOutputError

    with pytest.raises(LayerOutputError, match=r"pick one element, e.g. encode\[0\]"):
        segcam.explain(unet, small, ["encode"])
    with pytest.raises(LayerOutputError, match=r"\[5\] does not exist"):
        segcam.explain(unet, small, ["encode[5]"])
