"""Model zoo, strict weight loading, PaddleSeg YAML loading."""

from __future__ import annotations

import warnings

import numpy as np
import paddle
import pytest

import segcam
from segcam.models.weights import WeightsError, load_weights, sha256_file
from segcam.models.zoo import get_model_spec

ALL = ["bisenetv2", "ddrnet", "deeplabv3p", "hrsegnet_b16", "hrsegnet_b32", "hrsegnet_b48", "ocrnet", "pspnet",
       "stdcseg", "unet"]


def test_list_models_and_patterns() -> None:
    assert segcam.list_models() == ALL
    assert segcam.list_models("hrsegnet_*") == ["hrsegnet_b16", "hrsegnet_b32", "hrsegnet_b48"]


def test_unknown_model_lists_close_matches() -> None:
    with pytest.raises(KeyError, match="did you mean: hrsegnet_b48"):
        segcam.create_model("hrsegnet_b84")


@pytest.mark.parametrize("name", ALL)
def test_every_zoo_model_explains_seg_head(name: str, crack_rgb) -> None:
    with pytest.warns(UserWarning, match="RANDOMLY INITIALISED"):
        model = segcam.create_model(name, weights="random")
    assert model.random_init and not model.network.training
    img = np.ascontiguousarray(crack_rgb[:64, :64])
    res = segcam.explain(model, img, "seg_head", segcam.ImageTarget())
    m = res[0].maps["seg_head"]
    assert m.layer_name == get_model_spec(name).aliases["seg_head"]
    assert m.upsampled.shape == (64, 64) and np.isfinite(m.raw).all()
    # seg_head is the layer that outputs the logit map: it has num_classes channels
    with segcam.cam.hooks.ActivationCapture({m.layer_name: dict(model.network.named_sublayers())[m.layer_name]}) as cap:
        with paddle.no_grad():
            model.network(paddle.zeros([1, 3, 64, 64]))
    assert cap.activations[m.layer_name].shape[1] == 2


def _saved(model: paddle.nn.Layer, tmp_path, name: str = "w.pdparams", edit=None) -> str:
    state = {k: v for k, v in model.state_dict().items()}
    if edit:
        state = edit(state)
    path = tmp_path / name
    paddle.save(state, str(path))
    return str(path)


def test_strict_load_roundtrip_and_sha(tmp_path) -> None:
    src = segcam.create_model("hrsegnet_b16", weights="random").network
    for p in src.parameters():
        p.set_value(paddle.randn(p.shape))
    path = _saved(src, tmp_path)
    model = segcam.create_model("hrsegnet_b16", weights=path)
    assert model.weights_sha256 == sha256_file(path) and not model.partial and not model.random_init
    np.testing.assert_array_equal(model.network.seg3.l2h_conv3.weight.numpy(), src.seg3.l2h_conv3.weight.numpy())


def test_fp16_checkpoint_loads_as_fp32(tmp_path) -> None:
    src = segcam.create_model("hrsegnet_b16", weights="random").network
    path = _saved(src, tmp_path, edit=lambda s: {k: v.astype("float16") if v.dtype == paddle.float32 else v
                                               for k, v in s.items()})
    model = segcam.create_model("hrsegnet_b16", weights=path)
    assert model.network.head.conv.weight.dtype == paddle.float32
    np.testing.assert_allclose(model.network.head.conv.weight.numpy(), src.head.conv.weight.numpy(), atol=1e-3)


def test_missing_unexpected_and_mismatched_keys_are_listed(tmp_path) -> None:
    src = segcam.create_model("hrsegnet_b16", weights="random").network

    def edit(state):
        state = dict(state)
        del state["head.conv.weight"], state["head.conv.bias"]
        state["extra.weight"] = paddle.zeros([1])
        state["stage1.0.weight"] = paddle.zeros([1, 1, 1, 1])
        return state

    path = _saved(src, tmp_path, edit=edit)
    with pytest.raises(WeightsError) as exc:
        segcam.create_model("hrsegnet_b16", weights=path)
    msg = str(exc.value)
    assert "2 missing: head.conv.weight, head.conv.bias" in msg
    assert "1 unexpected: extra.weight" in msg and "1 with another shape: stage1.0.weight" in msg
    assert "--allow-partial" in msg


def test_wrong_model_for_checkpoint(tmp_path) -> None:
    path = _saved(segcam.create_model("hrsegnet_b32", weights="random").network, tmp_path)
    with pytest.raises(WeightsError, match=r"with another shape"):
        segcam.create_model("hrsegnet_b16", weights=path)


def test_partial_load_is_loud(tmp_path) -> None:
    src = segcam.create_model("hrsegnet_b16", weights="random").network
    path = _saved(src, tmp_path, edit=lambda s: {k: v for k, v in s.items() if not k.startswith("head.")})
    with pytest.warns(UserWarning, match="PARTIAL LOAD"):
        model = segcam.create_model("hrsegnet_b16", weights=path, strict=False)
    assert model.partial and "PARTIAL" in model.describe_weights()


def test_corrupt_and_missing_weights(tmp_path) -> None:
    bad = tmp_path / "bad.pdparams"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot be read"):
        load_weights(segcam.create_model("hrsegnet_b16", weights="random").network, bad)
    with pytest.raises(FileNotFoundError):
        segcam.create_model("hrsegnet_b16", weights=str(tmp_path / "none.pdparams"))


def test_load_paddleseg_yaml_and_weights(tmp_path) -> None:
    src = segcam.create_model("hrsegnet_b16", weights="random").network
    path = _saved(src, tmp_path)
    cfg = tmp_path / "b16.yml"
    cfg.write_text("model:\n  type: HrSegNetB16\n  num_classes: 2\nval_dataset:\n  transforms:\n"
                   "    - {type: Normalize, mean: [0.4, 0.4, 0.4], std: [0.2, 0.2, 0.2]}\n")
    model = segcam.load_paddleseg(cfg, path)
    assert model.name == "HrSegNetB16" and model.aliases["seg_head"] == "head"
    assert model.mean == (0.4, 0.4, 0.4) and model.std == (0.2, 0.2, 0.2)
    # a PaddleSeg baseline through the same path
    unet = segcam.create_model("unet", weights="random").network
    ucfg = tmp_path / "unet.yml"
    ucfg.write_text("model:\n  type: UNet\n  num_classes: 2\n  use_deconv: False\n")
    assert segcam.load_paddleseg(ucfg, _saved(unet, tmp_path, "u.pdparams")).aliases["seg_head"] == "cls"
    bad = tmp_path / "bad.yml"
    bad.write_text("model:\n  type: HrSegNetB61\n")
    with pytest.raises(ValueError, match="did you mean"):
        segcam.load_paddleseg(bad, path)


def test_random_init_is_announced() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = segcam.create_model("hrsegnet_b16", weights="random")
    assert any("RANDOMLY INITIALISED" in str(w.message) for w in caught)
    assert "RANDOMLY INITIALISED" in model.describe_weights()


def test_layers_listing(b16) -> None:
    rows = {r.name: r for r in segcam.list_layers(b16, (64, 96))}
    assert rows["head"].aliases == ("seg_head",) and rows["head"].shape == (1, 2, 32, 48)
    assert rows["seg3.l_conv1"].shape == (1, 128, 2, 3)
    assert rows["stage1"].type == "Sequential"
