"""The segcam CLI end to end on examples/, exit codes and bad input."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import EXAMPLE_MASKS, EXAMPLES, ROOT
from PIL import Image

from segcam.cam.result import read_map
from segcam.cli import main


def _rows(out: Path) -> list[dict]:
    with open(out / "summary.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_readme_command_exactly_as_written(tmp_path, monkeypatch, capsys) -> None:
    """`segcam explain --model hrsegnet_b48 --layer seg_head img.jpg` (writes to ./segcam_out)."""
    img = tmp_path / "img.jpg"
    shutil.copy(EXAMPLES / "deepcrack_IMG_6472-1.jpg", img)
    monkeypatch.chdir(tmp_path)
    assert main(["explain", "--model", "hrsegnet_b48", "--layer", "seg_head", "img.jpg"]) == 0
    out = tmp_path / "segcam_out"
    for name in ("img__seg_head__overlay.jpg", "img__seg_head__heatmap.png", "img__seg_head.npz",
                 "img__prediction.png", "manifest.json", "summary.csv"):
        assert (out / name).is_file(), name
    overlay = np.asarray(Image.open(out / "img__seg_head__overlay.jpg"))
    assert overlay.shape == (384, 544, 3)
    assert "hrsegnet_b48" in capsys.readouterr().err


def test_folder_glob_layers_mask_target_and_manifest(tmp_path) -> None:
    out = tmp_path / "run"
    code = main(["explain", "--model", "hrsegnet_b16", "--weights", "random", "--layer", "seg_head", "--layer", "seg3",
                 "--layer", "stage1", "--target", f"mask:{EXAMPLE_MASKS}", "--cmap", "turbo", "--alpha", "0.3",
                 "--out", str(out), str(EXAMPLES / "deepcrack_*.jpg"), str(EXAMPLES / "cfd_001.jpg")])
    assert code == 0
    rows = _rows(out)
    assert [r["status"] for r in rows] == ["ok"] * 4
    gt = (np.asarray(Image.open(EXAMPLE_MASKS / "cfd_001.png")) > 127).sum()
    assert int(rows[-1]["target_pixels"]) == gt
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["schema_version"] == 2
    assert set(manifest["versions"]) >= {"segcam", "paddle", "python"}
    assert manifest["model"]["name"] == "hrsegnet_b16" and manifest["model"]["random_init"] is True
    assert manifest["model"]["weights_sha256"] is None
    assert [lay["name"] for lay in manifest["layers"]] == ["head", "seg3", "stage1"]
    assert manifest["cmap"] == "turbo" and manifest["alpha"] == 0.3
    assert manifest["normalization"]["mode"] == "per_map"
    assert manifest["arguments"]["target"].startswith("mask:")
    for rec in manifest["images"]:
        for files in rec["layers"].values():
            assert (out / files["overlay"]).is_file() and (out / files["raw"]).is_file()
    assert not list(out.glob(".*tmp*"))


def test_weights_sha_in_manifest(tmp_path) -> None:
    import paddle

    import segcam

    net = segcam.create_model("hrsegnet_b16", weights="random").network
    wpath = tmp_path / "b16.pdparams"
    paddle.save(net.state_dict(), str(wpath))
    out = tmp_path / "run"
    assert main(["explain", "--model", "hrsegnet_b16", "--weights", str(wpath), "--out", str(out),
                 str(EXAMPLES / "cfd_001.jpg")]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["weights_sha256"] == segcam.models.weights.sha256_file(wpath)
    assert manifest["model"]["random_init"] is False


def _bad_inputs(folder: Path) -> None:
    shutil.copy(EXAMPLES / "cfd_001.jpg", folder / "good.jpg")
    (folder / "text.png").write_text("not an image")
    (folder / "truncated.jpg").write_bytes((EXAMPLES / "deepcrack_11215-9.jpg").read_bytes()[:15000])
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 20)
    Image.new("RGB", (16, 16)).save(folder / "tiny.png")
    Image.new("RGB", (2100, 40), (80, 80, 80)).save(folder / "huge.png")
    Image.open(EXAMPLES / "cfd_001.jpg").convert("L").save(folder / "gray.png")
    Image.open(EXAMPLES / "cfd_001.jpg").convert("RGBA").save(folder / "rgba.png")
    Image.open(EXAMPLES / "cfd_001.jpg").convert("P").save(folder / "palette.png")
    arr16 = (np.asarray(Image.open(EXAMPLES / "cfd_001.jpg").convert("L")).astype(np.uint16) * 200)
    Image.fromarray(arr16).save(folder / "sixteen.png")


def test_batch_goes_on_past_bad_items(tmp_path, capsys) -> None:
    src = tmp_path / "in"
    src.mkdir()
    _bad_inputs(src)
    out = tmp_path / "run"
    code = main(["explain", "--model", "hrsegnet_b16", "--weights", "random", "--out", str(out), str(src),
                 str(tmp_path / "missing.jpg")])
    assert code == 1
    rows = {r["name"]: r for r in _rows(out)}
    for ok in ("good", "gray", "rgba", "palette", "sixteen"):
        assert rows[ok]["status"] == "ok", rows[ok]
        assert (out / f"{ok}__seg_head__overlay.jpg").is_file()
    expected = {"text": "not an image", "truncated": "truncated", "corrupt": "", "tiny": "32",
                "huge": "--downscale", "missing": "not found"}
    for name, needle in expected.items():
        assert rows[name]["status"] == "error", name
        assert needle in rows[name]["error"] and "\n" not in rows[name]["error"]
        assert not list(out.glob(f"{name}__*")), f"half-written output for {name}"
    err = capsys.readouterr().err
    assert "text.png" in err and "5/11 images explained, 6 failed" in err.splitlines()[-1]
    assert not list(out.glob(".*tmp*"))


def test_downscale_flag(tmp_path) -> None:
    img = tmp_path / "huge.png"
    Image.new("RGB", (2100, 64), (80, 80, 80)).save(img)
    out = tmp_path / "run"
    assert main(["explain", "--model", "hrsegnet_b16", "--weights", "random", "--downscale", "--max-side", "256",
                 "--target", "image", "--out", str(out), str(img)]) == 0
    assert _rows(out)[0]["width"] == "256"


def test_empty_target_warns_and_writes_zero_map(tmp_path, capsys) -> None:
    mask = tmp_path / "empty.png"
    Image.new("L", (480, 320), 0).save(mask)
    out = tmp_path / "run"
    assert main(["explain", "--model", "hrsegnet_b16", "--weights", "random", "--target", f"mask:{mask}",
                 "--out", str(out), str(EXAMPLES / "cfd_001.jpg")]) == 0
    assert "empty" in capsys.readouterr().err
    row = _rows(out)[0]
    assert row["empty_target"] == "True" and row["target_pixels"] == "0"
    assert not read_map(out / "cfd_001__seg_head.npz").any()


@pytest.mark.parametrize("argv, needle", [
    (["--model", "hrsegnet_b84"], "did you mean: hrsegnet_b48"),
    (["--layer", "seg_haed"], "did you mean: seg_head"),
    (["--layer", "aux_head1"], "did not run"),
    (["--model", "pspnet", "--layer", "head.auxlayer"], "no gradient"),
    (["--target", "box:1,2,3"], "cannot parse target"),
    (["--target", "mask:/no/such/dir"], "does not exist"),
    (["--cmap", "infreno"], "did you mean: inferno"),
    (["--method", "gradcam"], "unknown method"),
    (["--alpha", "2"], "--alpha"),
    (["--config", "x.yml"], "--model or --config"),
    (["--threads", "0"], "--threads must be >= 1"),
])
def test_usage_errors_exit_2(argv: list[str], needle: str, tmp_path, capsys) -> None:
    base = ["explain", "--weights", "random", "--out", str(tmp_path / "o")]
    if "--model" not in argv:
        base += ["--model", "hrsegnet_b16"]
    code = main(base + argv + [str(EXAMPLES / "cfd_001.jpg")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert needle in err
    assert len([ln for ln in err.splitlines() if ln.startswith("segcam: error")]) == 1


def test_device_flag(tmp_path, capsys) -> None:
    import paddle

    assert main(["layers", "--model", "hrsegnet_b16", "--size", "32", "32", "--device", "cpu"]) == 0
    assert "seg_head" in capsys.readouterr().out
    if paddle.is_compiled_with_cuda():  # a GPU build: the flag must work, not fail
        return
    for argv in (["layers", "--model", "hrsegnet_b16"],
                 ["train", "--config", "configs/cpu/hrsegnet_b16_cpu.yml", "--save-dir", str(tmp_path / "run")]):
        assert main(argv + ["--device", "gpu"]) == 2
        assert "needs a CUDA build of Paddle" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # failed before any work


def test_rerun_resumes_other_settings_are_refused_and_overwrite_replaces(tmp_path, capsys) -> None:
    args = ["explain", "--model", "hrsegnet_b16", "--weights", "random", "--out", str(tmp_path), str(EXAMPLES / "cfd_001.jpg")]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 0  # the same command resumes: nothing left to do
    assert "1 already done by an earlier run" in capsys.readouterr().err
    assert main(args + ["--layer", "seg2"]) == 2
    assert "other settings (layers differ)" in capsys.readouterr().err
    assert main(args + ["--layer", "seg2", "--overwrite"]) == 0
    assert not list(tmp_path.glob("*seg_head*")) and list(tmp_path.glob("cfd_001__seg2__overlay.jpg"))


def test_models_and_layers_commands(capsys) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("hrsegnet_b48", "unet", "pspnet", "ocrnet"))
    assert main(["layers", "--model", "hrsegnet_b16", "--size", "64", "64"]) == 0
    out = capsys.readouterr().out
    head = [ln for ln in out.splitlines() if ln.startswith("head ")][0]
    assert "seg_head" in head and "SegHead" in head and "1x2x32x32" in head
    assert main(["layers", "--model", "unet", "--aliases-only"]) == 0
    assert "cls" in capsys.readouterr().out
    assert main(["layers", "--model", "nope"]) == 2


def test_python_dash_m_works() -> None:
    proc = subprocess.run([sys.executable, "-m", "segcam", "models", "hrsegnet_*"], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert sum(ln.startswith("hrsegnet_b") for ln in proc.stdout.splitlines()) == 3 and proc.stderr.strip() == ""


def test_allow_partial_is_loud_and_strict_is_default(tmp_path, capsys) -> None:
    import paddle

    import segcam

    net = segcam.create_model("hrsegnet_b16", weights="random").network
    path = tmp_path / "partial.pdparams"
    paddle.save({k: v for k, v in net.state_dict().items() if not k.startswith("head.")}, str(path))
    args = ["explain", "--model", "hrsegnet_b16", "--weights", str(path), "--out", str(tmp_path / "o"),
            str(EXAMPLES / "cfd_001.jpg")]
    assert main(args) == 2
    assert "missing: head." in capsys.readouterr().err
    assert main(args + ["--allow-partial"]) == 0
    err = capsys.readouterr().err
    assert "PARTIAL LOAD" in err and "missing" in err
    assert json.loads((tmp_path / "o" / "manifest.json").read_text())["model"]["partial"] is True


def test_layer_takes_several_names_and_layers_is_a_synonym(tmp_path, capsys) -> None:
    img = str(EXAMPLES / "cfd_001.jpg")
    out = tmp_path / "o"
    assert main(["explain", "--model", "hrsegnet_b16", "--weights", "random", "--out", str(out),
                 "--layer", "seg1", "seg3", img, "--score", "margin", "--fuse"]) == 0  # img is not a layer
    man = json.loads((out / "manifest.json").read_text())
    assert set(man["images"][0]["layers"]) == {"seg1", "seg3", "fused_mean", "fused_product"}
    assert man["score"]["name"] == "margin" and man["settings"]["score"] == "margin"
    fused = read_map(out / "cfd_001__fused_mean.npz", (320, 480))
    unit = [read_map(out / f"cfd_001__{k}.npz", (320, 480)) for k in ("seg1", "seg3")]
    unit = [u / u.max() if u.max() > 0 else u for u in unit]
    np.testing.assert_allclose(fused, np.mean(unit, axis=0), atol=1e-5)
    out2 = tmp_path / "o2"
    assert main(["explain", "--model", "hrsegnet_b16", "--weights", "random", "--out", str(out2),
                 "--layers", "seg1", "seg3", "--", img]) == 0
    assert set(json.loads((out2 / "manifest.json").read_text())["images"][0]["layers"]) == {"seg1", "seg3"}
    assert main(["explain", "--model", "hrsegnet_b16", "--layer", "seg1"]) == 2
    assert "no input image given" in capsys.readouterr().err


def test_help_prints_each_default_once(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["explain", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in text and "default hrsegnet_b48" in text
    assert text.count("(default: inferno)") == 1


def test_models_matches_substrings_and_globs_and_help_lists_exit_codes(capsys) -> None:
    assert main(["models", "b48"]) == 0
    out = capsys.readouterr().out
    assert "hrsegnet_b48" in out and "hrsegnet_b16 " not in out
    assert main(["models", "hrsegnet_b1*"]) == 0
    assert "hrsegnet_b16" in capsys.readouterr().out
    assert main(["models", "nosuchnet"]) == 2
    import pytest

    with pytest.raises(SystemExit):
        main(["--help"])
    assert "exit codes:" in capsys.readouterr().out


def test_small_photos_are_warned_about_once_and_input_scale_enlarges_them(tmp_path, capsys) -> None:
    import json

    from PIL import Image

    photo = np.asarray(Image.open(EXAMPLES / "deepcrack_11215-9.jpg").convert("RGB"))
    for k in range(3):  # three 160 x 120 crops: under the 256 px training crops
        Image.fromarray(photo[100 + 40 * k:220 + 40 * k, 150:310]).save(tmp_path / f"crop{k}.png")
    args = ["explain", "--model", "hrsegnet_b16", "--weights", "random", "--layer", "seg_head", "--no-cracks"]
    assert main([*args, "--out", str(tmp_path / "a"), *[str(tmp_path / f"crop{k}.png") for k in range(3)]]) == 0
    err = capsys.readouterr().err
    assert err.count("smaller than the 256 px crops") == 1 and "--input-scale 1.5 or 2" in err
    assert main([*args, "--input-scale", "2", "--out", str(tmp_path / "b"), str(tmp_path / "crop0.png")]) == 0
    err = capsys.readouterr().err
    assert "smaller than the 256 px" not in err
    man = json.loads((tmp_path / "b" / "manifest.json").read_text())
    rec = man["images"][0]
    assert (rec["width"], rec["height"]) == (160, 120)  # maps and files at the photo's own size
    assert rec["layers"]["seg_head"]["feature_shape"][-2:] == [120, 160]  # the network saw it at 2x (head: 1/2)
    assert main([*args, "--input-scale", "0", "--out", str(tmp_path / "c"), str(tmp_path / "crop0.png")]) == 2
    assert "--input-scale" in capsys.readouterr().err


def test_manifest_arguments_hold_the_layers_not_the_photo_after_them(tmp_path) -> None:
    import json

    photo = str(EXAMPLES / "cfd_001.jpg")
    assert main(["explain", "--model", "hrsegnet_b16", "--weights", "random", "--layer", "seg_head", photo,
                 "--no-cracks", "--out", str(tmp_path / "o")]) == 0
    args = json.loads((tmp_path / "o" / "manifest.json").read_text())["arguments"]
    assert args["layer"] == ["seg_head"] and args["images"] == [photo]
