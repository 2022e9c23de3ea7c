"""``segcam survey``: evidence export, crack-local records, export cache, resume, Ray (memory: bench_survey_sizes.py)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import EXAMPLES, small_crops

from segcam.cli import main

GEOMETRY = ("crack", "x0", "y0", "x1", "y1", "area", "length", "mean_width", "median_width", "max_width", "orientation")
EVIDENCE = ("evidence_on", "evidence_beside", "evidence_band", "evidence_contrast", "evidence_peak",
            "evidence_context_band", "mean_prob", "min_prob")


@pytest.fixture(scope="module")
def trained():
    import segcam

    return segcam.create_model("hrsegnet_b16.mix_wce600")  # fixed weights


def _rows(folder: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(open(folder / "cracks.csv", encoding="utf-8")))


def test_tiles_start_on_the_layer_grid_and_cover_the_canvas() -> None:
    from segcam.survey.passes import ALIGN, plan_tiles

    canvas, tiles = plan_tiles(4000, 6000, 1024, 128)
    assert canvas == (4000, 6016) and all(t.y % ALIGN == 0 and t.x % ALIGN == 0 for t in tiles)
    covered = np.zeros(canvas, np.int32)
    for t in tiles:
        covered[t.y:t.y + t.h, t.x:t.x + t.w] += 1
        assert (t.h, t.w) == (1024, 1024)
    assert covered.min() >= 1
    assert plan_tiles(384, 544, 1024, 128) == ((384, 544), [plan_tiles(384, 544, 1024, 128)[1][0]])
    assert plan_tiles(133, 133, 1024, 128, multiple=48)[0] == (144, 144)  # PSPNet's ONNX multiple
    with pytest.raises(ValueError, match="half the tile"):
        plan_tiles(4000, 6000, 1024, 600)


def test_a_window_of_the_upsampled_map_equals_the_whole_upsampled_map() -> None:
    import cv2

    from segcam.survey.local import upsample_window

    grid = np.random.default_rng(0).random((34, 47)).astype(np.float32)
    full = cv2.resize(grid, (190, 133), interpolation=cv2.INTER_LINEAR)
    box = (slice(7, 120), slice(0, 61))
    np.testing.assert_allclose(upsample_window(grid, (133, 190), box), full[box], atol=1e-5)


def test_the_evidence_export_gives_explains_layercam_maps(tmp_path, trained) -> None:
    """The head's backward, written as forward operations and exported to ONNX, equals Paddle's autograd."""
    import segcam
    from segcam.cam.targets import PredictedTarget
    from segcam.survey.passes import photo_pass
    from segcam.survey.photo import predictor_for

    rgb = segcam.read_image(EXAMPLES / "deepcrack_IMG_6472-1.jpg")
    res = photo_pass(trained, rgb, 1, ["seg3", "low3"], predictor_for(trained, cache=str(tmp_path)))
    ref = segcam.explain(trained, rgb, ["seg3", "low3"], PredictedTarget(1), "layer_cam", score="logit",
                         keep_activations=True)[0]
    assert (res.prediction == (ref.prediction == 1)).mean() >= 0.999 and res.engine == "export"
    for layer in ("seg3", "low3"):
        got, want = res.layers[layer], ref.maps[layer]
        assert got.raw.shape == want.raw.shape and want.raw.max() > 0
        np.testing.assert_allclose(got.raw, want.raw, atol=1e-4 * float(want.raw.max()))
        np.testing.assert_allclose(got.act, want.activations, atol=1e-3)


def test_crack_local_records_equal_the_whole_photo_records(tmp_path, trained) -> None:
    """Windows around each crack give analyse_cracks' zones records: geometry identical, evidence to rounding."""
    import segcam
    from segcam.cam.targets import PredictedTarget
    from segcam.survey.cracks import analyse_cracks
    from segcam.survey.photo import photo_cracks

    for name in ("deepcrack_IMG_6472-1.jpg", "cfd_001.jpg"):
        rgb = segcam.read_image(EXAMPLES / name)
        local, _ = photo_cracks(trained, rgb, cache=str(tmp_path))
        shared = segcam.explain(trained, rgb, ["seg3", "low3"], PredictedTarget(1), "layer_cam", score="logit",
                                keep_activations=True)[0]
        whole = analyse_cracks(trained, rgb, shared=shared)
        assert len(local.records) == len(whole.records) >= 1
        for a, b in zip(local.records, whole.records):
            assert {k: a[k] for k in GEOMETRY} == {k: b[k] for k in GEOMETRY}
            for k in EVIDENCE:
                assert a[k] == pytest.approx(b[k], abs=0.01, rel=0.01), (name, k)
        np.testing.assert_allclose(local.features, whole.features, atol=0.02)
        assert [w for w in local.feature_layers] == [w for w in whole.feature_layers]


def test_survey_and_explain_record_the_same_cracks(tmp_path) -> None:
    survey, explain = tmp_path / "survey", tmp_path / "explain"
    assert main(["survey", "--cache", str(tmp_path / "cache"), "--out", str(survey), str(EXAMPLES)]) == 0
    assert main(["explain", "--model", "hrsegnet_b16", "--save", "prediction", "--out", str(explain), str(EXAMPLES)]) == 0
    s, e = _rows(survey), _rows(explain)
    assert len(s) == len(e) >= 5
    for a, b in zip(s, e):
        assert {k: a[k] for k in ("name", *GEOMETRY)} == {k: b[k] for k in ("name", *GEOMETRY)}
        assert float(a["review_score"]) == pytest.approx(float(b["review_score"]), abs=0.01)
    man = json.loads((survey / "manifest.json").read_text())
    assert man["schema"] == "segcam.explain" and all(r["layers"] == {} for r in man["images"])
    assert not list(survey.glob("*__overlay.jpg")) and len(list(survey.glob("*__cracks.npz"))) == 4
    # the survey's run folder is what atlas and report read
    assert main(["report", str(survey)]) == 0 and (survey / "report.html").is_file()


def test_crack_free_photos_and_bad_photos_in_a_survey(tmp_path, capsys) -> None:
    from PIL import Image

    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((200, 300, 3), 120 + 20 * i, np.uint8)).save(folder / f"blank{i}.png")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    assert main(["survey", "--cache", str(tmp_path / "cache"), "--out", str(out), str(folder)]) == 1
    err = capsys.readouterr().err
    assert "target region" not in err and "no crack" not in err and "broken.jpg" in err
    rows = list(csv.DictReader(open(out / "summary.csv")))
    assert sorted(r["status"] for r in rows) == ["error", "ok", "ok", "ok"]
    assert _rows(out) == []  # crack-free photos: zero cracks, a normal result


def test_explain_says_once_that_photos_had_no_crack(tmp_path, capsys) -> None:
    from PIL import Image

    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((128, 160, 3), 120 + 20 * i, np.uint8)).save(folder / f"blank{i}.png")
    assert main(["explain", "--model", "hrsegnet_b16", "--save", "prediction", "--out", str(tmp_path / "o"), str(folder)]) == 0
    err = capsys.readouterr().err
    assert err.count("no crack predicted") == 1 and "3 photos with no predicted crack" in err
    assert "choose another target" not in err


def test_the_export_cache_is_keyed_and_a_stale_or_corrupt_export_is_rebuilt(tmp_path, trained, monkeypatch) -> None:
    import segcam
    from segcam.models.export_cache import cached_predictor

    said: list[str] = []
    cache = tmp_path / "cache"
    p1 = cached_predictor(trained, (96, 128), "evidence", cache=cache, warn=said.append)
    assert len(said) == 1 and "building" in said[0]
    cached_predictor(trained, (96, 128), "evidence", cache=cache, warn=said.append)
    assert len(said) == 1  # read from the cache
    other = segcam.create_model("hrsegnet_b16.deepcrack")  # other weights: another export
    cached_predictor(other, (96, 128), "evidence", cache=cache, warn=said.append)
    assert len(said) == 2 and len(list((cache / "exports").iterdir())) == 2
    folder = Path(p1.folder)
    (folder / "model.onnx").write_bytes((folder / "model.onnx").read_bytes()[:1000])  # cut short
    cached_predictor(trained, (96, 128), "evidence", cache=cache, warn=said.append)
    assert "rebuilding" in said[-1] and "sha256" in said[-1]
    meta = json.loads((folder / "segcam_export.json").read_text())
    meta["cache_key"]["segcam"] = "0.0.1"  # written by another version
    (folder / "segcam_export.json").write_text(json.dumps(meta))
    p2 = cached_predictor(trained, (96, 128), "evidence", cache=cache, warn=said.append)
    assert "another version" in said[-1]
    x = np.random.default_rng(0).standard_normal((1, 3, 96, 128)).astype(np.float32)
    np.testing.assert_allclose(p2(x), p1(x), atol=1e-5)
    blocked = tmp_path / "a_file"
    blocked.write_text("")
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    before = len(said)
    cached_predictor(trained, (96, 128), "evidence", cache=blocked / "cache", warn=said.append)
    assert "cannot be written" in said[before] and "SEGCAM_CACHE" in said[before]
    assert list((tmp_path / "tmp").glob("segcam-cache-*/exports/hrsegnet_b16-96x128-evidence-*/model.onnx"))


def _survey_cmd(out: Path, images: list[str], cache: Path) -> list[str]:
    return [sys.executable, "-m", "segcam", "survey", "--cache", str(cache), "--out", str(out), *images]


def _journal_count(folder: Path) -> int:
    path = folder / ".segcam-journal.jsonl"
    return max(0, len(path.read_text().splitlines()) - 1) if path.is_file() else 0


def test_sigkill_mid_survey_then_rerun_gives_the_same_cracks_csv(tmp_path) -> None:
    images = [str(p) for p in small_crops(tmp_path / "in", 24)]
    killed, straight, cache = tmp_path / "killed", tmp_path / "straight", tmp_path / "cache"
    subprocess.run(_survey_cmd(tmp_path / "warm", images[:1], cache), capture_output=True, check=True, timeout=300)
    proc = subprocess.Popen(_survey_cmd(killed, images, cache), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while _journal_count(killed) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = _journal_count(killed)
    assert 2 <= done_before < 24, "the kill must land mid-survey"
    rerun = subprocess.run(_survey_cmd(killed, images, cache), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{done_before} already done by an earlier run" in rerun.stderr
    subprocess.run(_survey_cmd(straight, images, cache), capture_output=True, check=True, timeout=300)
    assert (killed / "cracks.csv").read_bytes() == (straight / "cracks.csv").read_bytes()
    assert not list(killed.glob(".*.tmp*"))


def test_ray_survey_writes_what_the_local_one_writes(tmp_path) -> None:
    from functools import partial

    import paddle

    import segcam
    from segcam.survey.batch import run_explain
    from segcam.survey.ray_engine import RayOptions, ray_loop
    from segcam.survey.survey import SurveyJob

    paddle.base.core.set_num_threads(1)
    images = small_crops(tmp_path / "in", 6)
    job = SurveyJob(segcam.create_model("hrsegnet_b16"), cache=str(tmp_path / "cache"), threads=1)
    run_explain(job, images, tmp_path / "local")
    run_explain(job, images, tmp_path / "ray", engine=partial(ray_loop, opts=RayOptions(workers=2, batch_size=2)))
    local, ray_rows = (tmp_path / "local" / "cracks.csv").read_bytes(), (tmp_path / "ray" / "cracks.csv").read_bytes()
    assert local == ray_rows and local.count(b"\n") > 1


def _peak_rss_gb(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Run ``cmd``; its own peak resident memory (wait4's rusage of that child) and its stderr."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    err = proc.stderr.read().decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, err[-2000:]
    assert "could not be exported" not in err, err[-2000:]  # the export's path, not the dygraph fallback
    return usage.ru_maxrss / 1024 ** 2, err


def test_a_6000x4000_photo_stays_under_2_gb(tmp_path) -> None:
    """Peak resident memory of ``segcam survey`` and ``segcam explain --tile 1024`` on a 24 MP photo.

    Not a timing test: ``benchmarks/bench_survey_sizes.py`` measures the times (and these peaks) as ratios.
    """
    from PIL import Image

    frames = [np.asarray(Image.open(p).convert("RGB").resize((544, 384))) for p in sorted(EXAMPLES.glob("*.jpg"))]
    rows = [np.concatenate([frames[(r + c) % len(frames)] for c in range(12)], axis=1) for r in range(11)]
    photo = tmp_path / "survey_6000x4000.png"
    Image.fromarray(np.concatenate(rows, axis=0)[:4000, :6000]).save(photo, compress_level=1)
    warm = tmp_path / "warm.png"  # builds the 1024 px exports first: the commands' own memory is what is measured
    Image.fromarray(np.concatenate(rows, axis=0)[:1100, :1100]).save(warm)
    env = {**os.environ, "GLOG_minloglevel": "2", "SEGCAM_CACHE": str(tmp_path / "cache")}
    explain = [sys.executable, "-m", "segcam", "explain", "--model", "hrsegnet_b16", "--tile", "1024"]
    for cmd in (_survey_cmd(tmp_path / "warm", [str(warm)], tmp_path / "cache"),
                [*explain, "--out", str(tmp_path / "warm_explain"), str(warm)]):
        subprocess.run(cmd, check=True, capture_output=True, timeout=600, env=env)
    survey_gb, err = _peak_rss_gb(_survey_cmd(tmp_path / "out", [str(photo)], tmp_path / "cache"), env)
    assert survey_gb < 2.0, f"survey: peak RSS {survey_gb:.2f} GB; {err[-1500:]}"
    assert len(_rows(tmp_path / "out")) > 50
    explain_gb, err = _peak_rss_gb([*explain, "--out", str(tmp_path / "explain"), str(photo)], env)
    assert explain_gb < 2.0, f"explain --tile 1024: peak RSS {explain_gb:.2f} GB; {err[-1500:]}"
    assert (tmp_path / "explain" / "survey_6000x4000__seg_head__overlay.jpg").is_file()


def test_a_network_without_an_evidence_export_is_surveyed_through_explain(tmp_path) -> None:
    """BiSeNetV2: the export predicts, segcam.explain gives the evidence on the tiles with crack."""
    out = tmp_path / "out"
    assert main(["survey", "--model", "bisenetv2", "--cache", str(tmp_path / "cache"), "--out", str(out),
                 str(EXAMPLES / "cfd_001.jpg")]) == 0
    man = json.loads((out / "manifest.json").read_text())
    assert man["images"][0]["survey"]["engine"] == "export+explain"
    rows = _rows(out)
    assert rows and all(float(r["length"]) > 0 and r["review_score"] for r in rows)
    assert man["survey"]["evidence_layers"] == ["seg_head"]


def test_a_network_that_cannot_be_exported_is_surveyed_in_dygraph(tmp_path, monkeypatch, capsys) -> None:
    import segcam.models.export_cache as cache_mod
    from segcam.models.export import ExportError
    from segcam.survey import photo as survey

    def refuse(*args, **kwargs):
        raise ExportError("this network does not convert")

    monkeypatch.setattr(cache_mod, "cached_predictor", refuse)
    monkeypatch.setattr(survey, "_PREDICTORS", {})
    out = tmp_path / "out"
    assert main(["survey", "--model", "hrsegnet_b16.mix_wce600", "--out", str(out), str(EXAMPLES / "cfd_001.jpg")]) == 0
    err = capsys.readouterr().err
    assert "could not be exported" in err and "dygraph" in err
    man = json.loads((out / "manifest.json").read_text())
    assert man["images"][0]["survey"]["engine"] == "export+explain" and _rows(out)
