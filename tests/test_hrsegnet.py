"""HrSegNet: exact parameter counts, checkpoint key names, outputs, PaddleSeg registration."""

from __future__ import annotations

import numpy as np
import paddle
import pytest

import hrsegnet
from hrsegnet import HrSegNet, HrSegNetB16, HrSegNetB32, HrSegNetB48


def _trainable(model: paddle.nn.Layer) -> int:
    return sum(int(np.prod(p.shape)) for p in model.parameters() if not p.stop_gradient)


@pytest.mark.parametrize("cls, expected", [(HrSegNetB16, 609_942), (HrSegNetB32, 2_432_550), (HrSegNetB48, 5_467_830)])
def test_exact_parameter_counts(cls: type, expected: int) -> None:
    model = cls(num_classes=2)
    assert _trainable(model) == expected
    assert len(model.state_dict()) == 180


@pytest.mark.parametrize("base", [16, 32, 48, 64])
def test_closed_form_parameter_count(base: int) -> None:
    # params(b) = 2368.5 b^2 + 225 b + 6 for two classes (architecture notes, section 2.1)
    assert _trainable(HrSegNet(base=base)) == int(2368.5 * base**2 + 225 * base + 6)


def test_original_checkpoint_key_names() -> None:
    keys = set(HrSegNetB16().state_dict())
    for key in ["stage1.0.weight", "stage2.1._mean", "seg1.h_conv3.0.weight", "seg1.l_conv1.0.weight",
                "seg2.l_conv1.1.weight", "seg2.l_conv1.2._variance", "seg3.l_conv1.4.weight", "seg3.l_conv1.5.weight",
                "seg3.l2h_conv3.bias", "aux_head1.bn1.weight", "aux_head2.con_bn_relu.0.weight",
                "head.con_bn_relu.0.weight", "head.conv.weight", "head.conv.bias"]:
        assert key in keys, key
    assert isinstance(HrSegNetB16().head.con_bn_relu[0], paddle.nn.Conv2DTranspose)
    assert isinstance(HrSegNetB16().aux_head1.con_bn_relu[0], paddle.nn.Conv2D)


@pytest.mark.parametrize("size", [(64, 64), (67, 91), (33, 40)])
def test_train_and_eval_outputs(size: tuple[int, int]) -> None:
    model = HrSegNetB16()
    x = paddle.randn([2, 3, *size])
    model.train()
    out = model(x)
    assert isinstance(out, list) and len(out) == 3
    assert all(tuple(o.shape) == (2, 2, *size) for o in out)
    model.eval()
    with paddle.no_grad():
        out = model(x)
    assert len(out) == 1 and tuple(out[0].shape) == (2, 2, *size)


def test_intermediate_shapes_at_400() -> None:
    model = HrSegNetB16()
    model.eval()
    shapes = {}
    hooks = [getattr(model, n).register_forward_post_hook(lambda layer, i, o, n=n: shapes.__setitem__(n, tuple(o.shape)))
             for n in ["stage1", "stage2", "seg3"]]
    hooks.append(model.seg3.l_conv1.register_forward_post_hook(lambda layer, i, o: shapes.__setitem__("low", tuple(o.shape))))
    with paddle.no_grad():
        model(paddle.zeros([1, 3, 400, 400]))
    for h in hooks:
        h.remove()
    assert shapes == {"stage1": (1, 8, 200, 200), "stage2": (1, 16, 100, 100), "seg3": (1, 16, 100, 100),
                      "low": (1, 128, 13, 13)}


def test_avgpool_excludes_padding() -> None:
    pool = HrSegNetB16().seg2.l_conv1[0]
    out = pool(paddle.ones([1, 1, 4, 4]))
    np.testing.assert_allclose(out.numpy(), 1.0)  # exclusive=True: padded cells do not dilute the border


def test_registered_in_paddleseg_and_built_from_yaml(tmp_path) -> None:
    from paddleseg.cvlibs import manager
    from paddleseg.cvlibs.builder import Builder
    from paddleseg.cvlibs.config import Config
    from paddleseg.cvlibs.config_checker import ConfigChecker

    assert manager.MODELS["HrSegNetB48"] is hrsegnet.HrSegNetB48
    cfg_file = tmp_path / "m.yml"
    cfg_file.write_text("model:\n  type: HrSegNetB32\n  num_classes: 2\n")
    cfg = Config(str(cfg_file), checker=ConfigChecker([], allow_update=False))
    model = Builder(cfg, comp_list=[manager.MODELS]).build_component(cfg.model_cfg)
    assert isinstance(model, HrSegNetB32) and _trainable(model) == 2_432_550


def test_pretrained_argument_loads_strictly(tmp_path) -> None:
    src = HrSegNetB16()
    path = tmp_path / "b16.pdparams"
    paddle.save(src.state_dict(), str(path))
    dst = HrSegNetB16(pretrained=str(path))
    np.testing.assert_array_equal(dst.head.conv.weight.numpy(), src.head.conv.weight.numpy())


def test_bad_base_is_an_error() -> None:
    with pytest.raises(ValueError, match="base"):
        HrSegNet(base=15)
