"""Seg-Grad-CAM engine: correctness against independent computations, hooks, batching, errors."""

from __future__ import annotations

import warnings

import numpy as np
import paddle
import pytest

import segcam
from segcam.cam.engine import EmptyTargetWarning, LayerGradientError
from segcam.cam.hooks import count_hooks
from segcam.cam.layers import LayerNotFoundError
from segcam.cam.result import read_map
from segcam.cam.targets import BoxTarget, ImageTarget, MaskTarget, PixelTarget, PredictedTarget, TargetError
from segcam.data.images import normalize


def _rgb(rng: np.random.Generator, h: int = 12, w: int = 10) -> np.ndarray:
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _region_score(net, rgb: np.ndarray, mask: np.ndarray, category: int, layer, delta=None) -> float:
    """Sum of class logits over ``mask``; optionally add ``delta`` to ``layer``'s output."""
    handle = None
    if delta is not None:
        handle = layer.register_forward_post_hook(lambda layer, i, o: o + paddle.to_tensor(delta))
    try:
        with paddle.no_grad():
            logits = net(paddle.to_tensor(normalize(rgb)))[0].numpy()[0, category]
    finally:
        if handle is not None:
            handle.remove()
    return float((logits * mask).sum())


def test_matches_finite_differences(toy, rng) -> None:
    rgb = _rgb(rng)
    mask = np.zeros(rgb.shape[:2], bool)
    mask[2:7, 3:9] = True
    res = segcam.explain(toy, rgb, "feat", MaskTarget(1, mask, "box"))
    with paddle.no_grad():
        act = {}
        h = toy.feat.register_forward_post_hook(lambda layer, i, o: act.__setitem__("a", o.numpy()))
        toy(paddle.to_tensor(normalize(rgb)))
        h.remove()
    a = act["a"].astype(np.float64)
    grad = np.zeros_like(a)
    eps = 1e-2
    for idx in np.ndindex(*a.shape[1:]):
        d = np.zeros(a.shape, np.float32)
        d[(0, *idx)] = eps
        plus = _region_score(toy, rgb, mask, 1, toy.feat, d)
        minus = _region_score(toy, rgb, mask, 1, toy.feat, -d)
        grad[(0, *idx)] = (plus - minus) / (2 * eps)
    alpha = grad.mean(axis=(2, 3))
    expected = np.maximum(np.einsum("nk,nkhw->nhw", alpha, a), 0)[0]
    np.testing.assert_allclose(res[0].maps["feat"].raw, expected, rtol=1e-3, atol=1e-4)
    assert expected.max() > 0


def test_closed_form_for_layer_feeding_a_1x1_conv(toy, rng) -> None:
    # logits_c = sum_k W[c,k] A_k + b_c at input resolution, so d(sum_M y_c)/dA_k = W[c,k] * M
    rgb = _rgb(rng)
    mask = np.zeros(rgb.shape[:2], bool)
    mask[1:5, 2:8] = True
    for category in (0, 1):
        res = segcam.explain(toy, rgb, "feat", MaskTarget(category, mask))
        with paddle.no_grad():
            act = {}
            h = toy.feat.register_forward_post_hook(lambda layer, i, o: act.__setitem__("a", o.numpy()))
            toy(paddle.to_tensor(normalize(rgb)))
            h.remove()
        w = toy.cls.weight.numpy()[category, :, 0, 0]
        alpha = w * mask.sum() / mask.size
        expected = np.maximum(np.einsum("k,khw->hw", alpha, act["a"][0]), 0)
        np.testing.assert_allclose(res[0].maps["feat"].raw, expected, rtol=1e-4, atol=1e-5)


def test_no_hooks_left_after_success_and_after_exception(b16, crack_rgb) -> None:
    net = b16.network
    assert count_hooks(net) == 0
    segcam.explain(b16, crack_rgb, ["seg_head", "seg3", "stage1"])
    assert count_hooks(net) == 0
    with pytest.raises(TargetError):
        segcam.explain(b16, crack_rgb, ["seg_head", "seg3"], PixelTarget(1, 10_000, 0))  # fails after the forward
    assert count_hooks(net) == 0
    with pytest.raises(ValueError, match="returns a list"):
        # OCR-style multi-output layer fails inside the forward pass (raised by the hook itself)
        class Multi(paddle.nn.Layer):
            def __init__(self) -> None:
                super().__init__()
                self.body = paddle.nn.Conv2D(3, 2, 1)

            def forward(self, x):
                return [self.body(x), self.body(x) * 2]

        class Wrap(paddle.nn.Layer):
            def __init__(self) -> None:
                super().__init__()
                self.multi = Multi()

            def forward(self, x):
                return [self.multi(x)[0]]

        wrap = Wrap()
        wrap.eval()
        flags = [p.stop_gradient for p in wrap.parameters()]
        try:
            segcam.explain(wrap, crack_rgb, "multi", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
        finally:
            assert count_hooks(wrap) == 0
            assert [p.stop_gradient for p in wrap.parameters()] == flags == [False, False]  # unfrozen again


def test_backward_graph_starts_at_the_explained_layers(b16, crack_rgb) -> None:
    """Layers before the first explained one record no graph (their outputs stop gradients), the rest do."""
    seen = {}

    def spy(name):
        return lambda layer, inputs, output: seen.__setitem__(name, output.stop_gradient)

    handles = [b16.network.stage2.register_forward_post_hook(spy("stage2")),
               b16.network.seg3.register_forward_post_hook(spy("seg3"))]
    try:
        segcam.explain(b16, crack_rgb, ["seg2"])
        assert seen == {"stage2": True, "seg3": False}
        segcam.explain(b16, crack_rgb, ["stage1", "seg2"])  # the earliest explained layer is where it starts
        assert seen == {"stage2": False, "seg3": False}
        segcam.explain(b16, crack_rgb, ["seg2"], method="seg_score_cam", batch_size=64)  # no gradients at all
        assert seen == {"stage2": True, "seg3": True}
    finally:
        for h in handles:
            h.remove()


def test_several_layers_in_one_call_equal_separate_calls(b16, crack_rgb) -> None:
    layers = ["seg_head", "seg3", "seg1.h_conv2", "stage1"]
    together = segcam.explain(b16, crack_rgb, layers, ImageTarget())
    for layer in layers:
        alone = segcam.explain(b16, crack_rgb, layer, ImageTarget())
        np.testing.assert_allclose(together[0].maps[layer].raw, alone[0].maps[layer].raw, rtol=1e-5, atol=1e-6)


def test_one_forward_and_one_backward_for_all_layers(b16, crack_rgb, monkeypatch) -> None:
    forwards = []
    handle = b16.network.register_forward_pre_hook(lambda layer, inp: forwards.append(1))
    grads = []
    real_grad = paddle.grad
    monkeypatch.setattr(paddle, "grad", lambda *a, **k: grads.append(1) or real_grad(*a, **k))
    try:
        segcam.explain(b16, np.stack([crack_rgb, crack_rgb[::-1].copy()]), ["seg_head", "seg3", "seg2", "stage2"])
    finally:
        handle.remove()
    assert len(forwards) == 1 and len(grads) == 1


def test_batch_equals_per_image_runs(b16, crack_rgb) -> None:
    second = np.ascontiguousarray(crack_rgb[::-1, ::-1])
    targets = [BoxTarget(1, 10, 20, 90, 100), PixelTarget(1, 40, 60)]
    batch = segcam.explain(b16, [crack_rgb, second], ["seg_head", "seg2"], targets)
    for i, (img, tgt) in enumerate(zip([crack_rgb, second], targets)):
        single = segcam.explain(b16, img, ["seg_head", "seg2"], tgt)
        for layer in ("seg_head", "seg2"):
            np.testing.assert_allclose(batch[i].maps[layer].raw, single[0].maps[layer].raw, rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(batch[i].target_mask, single[0].target_mask)


def test_target_count_mismatch_is_an_error(b16, crack_rgb) -> None:
    with pytest.raises(ValueError, match="2 targets for 3 images"):
        segcam.explain(b16, [crack_rgb] * 3, "seg_head", [ImageTarget(), ImageTarget()])


def test_empty_target_warns_and_gives_flagged_zero_maps(b16, crack_rgb) -> None:
    empty = MaskTarget(1, np.zeros(crack_rgb.shape[:2], bool), "empty.png")
    with pytest.warns(EmptyTargetWarning, match="empty"):
        res = segcam.explain(b16, crack_rgb, ["seg_head", "seg3"], empty)
    for m in res[0].maps.values():
        assert m.empty_target and m.raw_max == 0.0
        assert np.isfinite(m.normalized).all() and not m.normalized.any()


def test_layer_without_gradient_is_an_error(toy, rng) -> None:
    with pytest.raises(LayerGradientError, match="dead"):
        segcam.explain(toy, _rgb(rng), ["feat", "dead"], ImageTarget())


def test_unknown_layer_lists_close_matches(b16, crack_rgb) -> None:
    with pytest.raises(LayerNotFoundError, match="did you mean: seg_head"):
        segcam.explain(b16, crack_rgb, "seg_haed")


def test_model_is_not_mutated(b16, crack_rgb) -> None:
    before = {k: v.numpy().copy() for k, v in b16.network.state_dict().items()}
    flags = [p.stop_gradient for p in b16.network.parameters()]
    segcam.explain(b16, crack_rgb, ["seg_head", "seg1"])
    assert not b16.network.training
    assert flags == [p.stop_gradient for p in b16.network.parameters()]
    assert all(p.grad is None for p in b16.network.parameters())
    for k, v in b16.network.state_dict().items():
        np.testing.assert_array_equal(before[k], v.numpy())


def test_bare_network_needs_its_normalisation(rng) -> None:
    net = segcam.create_model("hrsegnet_b16", weights="random").network
    with pytest.raises(ValueError, match="bare network.*mean=..., std="):
        segcam.explain(net, _rgb(rng, 64, 64), "head")
    res = segcam.explain(net, _rgb(rng, 64, 64), "head", mean=(0.4, 0.4, 0.4), std=(0.2, 0.2, 0.2))
    assert res[0].maps["head"].raw.shape == (32, 32)


def test_train_mode_model_is_rejected(rng) -> None:
    net = segcam.create_model("hrsegnet_b16", weights="random").network
    net.train()
    with pytest.raises(ValueError, match="eval"):
        segcam.explain(net, _rgb(rng, 64, 64), "head")


def test_result_fields_and_normalisation(b16, crack_rgb) -> None:
    res = segcam.explain(b16, crack_rgb, ["seg_head", "seg3"], ImageTarget())
    im = res[0]
    head = im.maps["seg_head"]
    assert head.layer_name == "head"
    assert head.raw.shape == (64, 80)  # head output is at 1/2 resolution
    assert im.maps["seg3"].raw.shape == (32, 40)  # 1/4
    assert head.upsampled.shape == crack_rgb.shape[:2]
    assert head.raw_max == pytest.approx(float(head.upsampled.max()))
    assert head.normalized.max() == pytest.approx(1.0) and head.normalized.min() >= 0
    shared = [im.normalized(k, "shared") for k in im.maps]
    assert max(s.max() for s in shared) == pytest.approx(1.0)
    assert im.prediction.shape == crack_rgb.shape[:2] and im.target_mask.all()


def test_predicted_target_is_the_default(b16, crack_rgb) -> None:
    res = segcam.explain(b16, crack_rgb, "seg_head")
    np.testing.assert_array_equal(res[0].target_mask, res[0].prediction == 1)
    assert res[0].target == PredictedTarget().describe()


def test_class_outside_model_is_an_error(b16, crack_rgb) -> None:
    with pytest.raises(TargetError, match="class 5"):
        segcam.explain(b16, crack_rgb, "seg_head", ImageTarget(5))


def test_mismatched_mask_size_is_an_error(b16, crack_rgb) -> None:
    with pytest.raises(TargetError, match="same size"):
        segcam.explain(b16, crack_rgb, "seg_head", MaskTarget(1, np.ones((5, 5)), "gt.png"))


def test_unknown_method(b16, crack_rgb) -> None:
    with pytest.raises(KeyError, match="seg_grad_cam"):
        segcam.explain(b16, crack_rgb, "seg_head", method="seg_grad_cm")


def test_save_writes_files_and_manifest(b16, crack_rgb, tmp_path) -> None:
    import json

    res = segcam.explain(b16, crack_rgb, ["seg_head", "seg3"], names=["crack"])
    manifest = json.loads(res.save(tmp_path, cmap="turbo", alpha=0.3).read_text())
    assert manifest["schema_version"] == 2 and manifest["cmap"] == "turbo" and manifest["alpha"] == 0.3
    assert manifest["normalization"]["mode"] == "per_map"
    rec = manifest["images"][0]
    for layer in ("seg_head", "seg3"):
        files = rec["layers"][layer]
        for key in ("overlay", "heatmap", "raw"):
            assert (tmp_path / files[key]).is_file()
        # stored at the layer's resolution; the documented upsampling gives the engine's map bit for bit
        assert read_map(tmp_path / files["raw"]).shape == tuple(files["feature_shape"])
        h, w = res[0].image.shape[:2]
        assert np.array_equal(read_map(tmp_path / files["raw"], (h, w)), res[0].maps[layer].upsampled)
    assert not list(tmp_path.glob("*.tmp*"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="normalization"):
            res.save(tmp_path, normalization="global")


def test_input_scale_runs_the_network_enlarged_and_keeps_maps_at_the_photo_size(b16, crack_rgb, monkeypatch) -> None:
    """input_scale=2: the network sees a 2x copy (its input shape says so), every output stays at the photo's size,
    the maps differ from scale 1, and a perturbation method scores at the photo's size too."""
    import cv2

    import segcam

    seen = []
    real = type(b16.network).forward
    monkeypatch.setattr(type(b16.network), "forward", lambda self, x: seen.append(tuple(x.shape)) or real(self, x))
    h, w = crack_rgb.shape[:2]
    one = segcam.explain(b16, crack_rgb, ["seg3", "seg_head"])[0]
    two = segcam.explain(b16, crack_rgb, ["seg3", "seg_head"], input_scale=2)[0]
    assert seen[0][2:] == (h, w) and seen[1][2:] == (2 * h, 2 * w)
    for res in (one, two):
        assert res.prediction.shape == (h, w) and res.target_mask.shape == (h, w)
        assert all(m.upsampled.shape == (h, w) for m in res.maps.values())
    assert two.maps["seg3"].raw.shape[-2:] == tuple(2 * s for s in one.maps["seg3"].raw.shape[-2:])
    assert not np.allclose(one.maps["seg_head"].upsampled, two.maps["seg_head"].upsampled)
    # the same map as explaining the enlarged photo itself (image-wide target, which does not depend on the size):
    # only the scale differs (the score is summed over the photo's pixels, 4x fewer) and the logits' resampling
    target = segcam.ImageTarget(1)
    direct = segcam.explain(b16, crack_rgb, "seg_head", target, input_scale=2)[0].maps["seg_head"].raw
    big = cv2.resize(crack_rgb, (2 * w, 2 * h), interpolation=cv2.INTER_LINEAR)
    ref = segcam.explain(b16, big, "seg_head", target)[0].maps["seg_head"].raw
    assert direct.shape == ref.shape and np.corrcoef(direct.ravel(), ref.ravel())[0, 1] > 0.99
    sc = segcam.explain(b16, crack_rgb, "seg_head", target, "seg_score_cam", input_scale=1.5)[0]
    assert sc.maps["seg_head"].upsampled.shape == (h, w) and np.isfinite(sc.maps["seg_head"].raw).all()
    with pytest.raises(ValueError, match="input_scale"):
        segcam.explain(b16, crack_rgb, "seg_head", input_scale=0)
