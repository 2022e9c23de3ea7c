"""Deployment export (Paddle Inference and ONNX) verified against dygraph, and segcam predict."""

from __future__ import annotations

import csv
import json
import os

import cv2
import numpy as np
import paddle
import pytest
from conftest import EXAMPLES

import segcam
from segcam.cli import main
from segcam.data.images import normalize
from segcam.models.export import ExportError, export_model, load_predictor


@pytest.fixture(scope="module")
def model():
    paddle.seed(5)
    return segcam.create_model("hrsegnet_b16", weights="random")


@pytest.mark.parametrize("fmt", ["paddle", "onnx"])
def test_export_reload_and_compare(model, crack_rgb, tmp_path, fmt, monkeypatch) -> None:
    if fmt == "onnx":
        pytest.importorskip("paddle2onnx", reason="pip install 'segcam[export]'")
    monkeypatch.delenv("POLYGRAPHY_AUTOINSTALL_DEPS", raising=False)
    img = np.ascontiguousarray(crack_rgb[:96, :128])
    rep = export_model(model, tmp_path / fmt, fmt, (96, 128), img)
    # paddle2onnx's Polygraphy pass would allow pip installs at run time; segcam must not run it
    assert "POLYGRAPHY_AUTOINSTALL_DEPS" not in os.environ
    assert rep.max_abs_diff <= 1e-3
    pred = load_predictor(tmp_path / fmt)
    other = np.ascontiguousarray(crack_rgb[32:128, 32:160])  # not the verification image
    with paddle.no_grad():
        ref = model.network(paddle.to_tensor(normalize(other)))[0].numpy()
    np.testing.assert_allclose(pred.predict_rgb(other), ref, atol=1e-3)
    assert json.loads((tmp_path / fmt / "segcam_export.json").read_text())["verification"]["max_abs_diff"] <= 1e-3


def test_paddle_export_runs_with_onednn_and_restores_pir(model, crack_rgb, tmp_path) -> None:
    """The classic program (not PIR's model.json) is what lets Paddle 3.3.1 run it with oneDNN."""
    img = np.ascontiguousarray(crack_rgb[:64, :96])
    rep = export_model(model, tmp_path / "p", "paddle", (64, 96), img)
    assert (tmp_path / "p" / "model.pdmodel").is_file() and not (tmp_path / "p" / "model.json").exists()
    assert rep.onednn and load_predictor(tmp_path / "p", threads=1).onednn
    assert json.loads((tmp_path / "p" / "segcam_export.json").read_text())["program"] == "classic"
    _assert_pir_on()
    with pytest.raises(ExportError, match="unknown device 'tpu'; use cpu or gpu"):
        load_predictor(tmp_path / "p", device="tpu")
    if not paddle.is_compiled_with_cuda():
        with pytest.raises(ExportError, match="needs a CUDA build of Paddle"):
            load_predictor(tmp_path / "p", device="gpu")


def test_models_that_need_pir_fall_back_to_a_pir_program(tmp_path) -> None:
    """BiSeNetV2's sigmoid does not convert to a classic program in Paddle 3.3.1: saved under PIR, still verified."""
    bis = segcam.create_model("bisenetv2", weights="random")
    rep = export_model(bis, tmp_path / "b", "paddle", (64, 64))
    assert rep.max_abs_diff <= 1e-3 and (tmp_path / "b" / "model.json").is_file()
    assert json.loads((tmp_path / "b" / "segcam_export.json").read_text())["program"] == "pir"
    _assert_pir_on()


def _assert_pir_on() -> None:
    assert paddle.get_flags(["FLAGS_enable_pir_api"])["FLAGS_enable_pir_api"]
    assert paddle.base.framework.global_var._use_pir_api_ and paddle.static.Program is paddle.pir.Program
    assert paddle.in_dynamic_mode()


def test_classic_program_switch_is_undone_after_an_error() -> None:
    from segcam.models.export import _classic_program

    with pytest.raises(RuntimeError, match="boom"), _classic_program():
        assert not paddle.base.framework.global_var._use_pir_api_
        raise RuntimeError("boom")
    _assert_pir_on()


def test_bad_export_requests(model, tmp_path) -> None:
    with pytest.raises(ExportError, match="unknown export format"):
        export_model(model, tmp_path / "x", "tensorrt", (64, 64))
    with pytest.raises(ExportError, match="32"):
        export_model(model, tmp_path / "x", "paddle", (16, 64))
    ddr = segcam.create_model("ddrnet", weights="random")
    with pytest.raises(ExportError, match="multiples of 8.*96x96 or 104x104"):
        export_model(ddr, tmp_path / "x", "paddle", (100, 100))
    psp = segcam.create_model("pspnet", weights="random")
    with pytest.raises(ExportError, match="multiples of 48.*384x384 or 432x432"):
        export_model(psp, tmp_path / "x", "onnx", (400, 400))
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ExportError, match="parent folder"):
        export_model(model, tmp_path / "afile" / "x", "paddle", (64, 64))
    (tmp_path / "exists").mkdir()
    with pytest.raises(ExportError, match="already exists"):
        export_model(model, tmp_path / "exists", "paddle", (64, 64))
    assert not list(tmp_path.glob(".x.*"))


def test_failed_verification_leaves_nothing(model, tmp_path, monkeypatch) -> None:
    import segcam.models.export as ex

    monkeypatch.setattr(ex, "TOLERANCE", -1.0)  # any difference (even 0) now fails
    with pytest.raises(ExportError, match="verification failed"):
        export_model(model, tmp_path / "out", "paddle", (64, 64))
    assert not (tmp_path / "out").exists() and not list(tmp_path.iterdir())


def test_cli_export_and_predict(tmp_path, capsys) -> None:
    exp = tmp_path / "exports" / "b16"  # like the README example: the parent folder is created
    assert main(["export", "--model", "hrsegnet_b16", "--weights", "random", "--size", "128", "128", "--out", str(exp),
                 "--verify-image", str(EXAMPLES / "cfd_001.jpg")]) == 0
    assert "max |exported - dygraph|" in capsys.readouterr().out
    assert main(["export", "--model", "hrsegnet_b16", "--weights", "random", "--format", "trt", "--out",
                 str(tmp_path / "e2")]) == 2
    out = tmp_path / "pred"
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    code = main(["predict", "--export", str(exp), "--out", str(out), str(EXAMPLES / "cfd_001.jpg"),
                 str(tmp_path / "bad.jpg")])
    assert code == 1
    rows = {r["name"]: r for r in csv.DictReader(open(out / "summary.csv"))}
    assert rows["cfd_001"]["status"] == "ok" and rows["bad"]["status"] == "error"
    assert (out / "cfd_001__mask.png").is_file() and (out / "cfd_001__overlay.png").is_file()
    from PIL import Image

    assert Image.open(out / "cfd_001__mask.png").size == (480, 320)


def test_predict_tiles_at_full_resolution_and_matches_the_network(tmp_path) -> None:
    """An export of 400x400 predicts 544x384 photos tile by tile (no stretching): same mask as the network."""
    from PIL import Image

    import segcam

    exp = tmp_path / "b16"
    assert main(["export", "--model", "hrsegnet_b16.mix_wce600", "--out", str(exp)]) == 0  # the default 400x400
    images = [EXAMPLES / f"{n}.jpg" for n in ("deepcrack_11215-9", "deepcrack_11218-3", "deepcrack_IMG_6472-1")]
    out = tmp_path / "pred"
    assert main(["predict", "--export", str(exp), "--out", str(out), *map(str, images)]) == 0
    model = segcam.create_model("hrsegnet_b16.mix_wce600")  # the weights the 0.92-0.97 was measured with
    fwd = segcam.survey.tiling._network_forward(model)
    for img in images:
        rgb = segcam.read_image(img)
        mask = np.asarray(Image.open(out / f"{img.stem}__mask.png")) > 0
        own = fwd(rgb).argmax(0) == 1
        # what predict did before: stretch to the export's 400x400 and back
        small = fwd(cv2.resize(rgb, (400, 400), interpolation=cv2.INTER_LINEAR))
        stretched = np.stack([cv2.resize(c, (544, 384), interpolation=cv2.INTER_LINEAR) for c in small]).argmax(0) == 1
        iou = (mask & own).sum() / max((mask | own).sum(), 1)
        old = (stretched & own).sum() / max((stretched | own).sum(), 1)
        assert mask.shape == own.shape and iou > 0.9 and iou > old, (img.name, iou, old)  # measured 0.92-0.97
    assert main(["predict", "--export", str(exp), "--tile-overlap", "300", "--out", str(tmp_path / "x"),
                 str(images[0])]) == 2
    assert main(["predict", "--export", str(tmp_path), "--out", str(tmp_path / "p2"),
                 str(EXAMPLES / "cfd_001.jpg")]) == 2
