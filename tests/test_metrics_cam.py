"""Faithfulness metrics on hand-built maps with known answers, crack targets, and evaluate-cam."""

from __future__ import annotations

import json

import numpy as np
import pytest

import segcam
from segcam.cam.targets import (
    BorderTarget,
    ComponentTarget,
    ErrorRegionTarget,
    SkeletonTarget,
    TargetError,
    parse_target,
    skeletonize,
)
from segcam.cli import main
from segcam.evaluation import faithfulness as metrics


def _truth() -> np.ndarray:
    t = np.zeros((40, 50), bool)
    t[18:21, 5:45] = True
    return t


def test_energy_pointing_game_known_answers() -> None:
    truth = _truth()
    assert metrics.energy_pointing_game(truth.astype(float), truth) == 1.0
    assert metrics.energy_pointing_game((~truth).astype(float), truth) == 0.0
    half = np.zeros_like(truth, float)
    half[19, 10] = 1.0
    half[0, 0] = 1.0
    assert metrics.energy_pointing_game(half, truth) == 0.5
    near = np.zeros_like(truth, float)
    near[22, 20] = 1.0  # 2 px below the crack (rows 18-20)
    assert metrics.energy_pointing_game(near, truth, tolerance=0) == 0.0
    assert metrics.energy_pointing_game(near, truth, tolerance=2) == 1.0
    assert metrics.energy_pointing_game(np.zeros_like(truth, float), truth) == 0.0
    with pytest.raises(ValueError, match="shape"):
        metrics.energy_pointing_game(np.zeros((3, 3)), truth)


def test_pointing_game() -> None:
    truth = _truth()
    cam = np.zeros_like(truth, float)
    cam[35, 25] = 1.0
    assert not metrics.pointing_game(cam, truth, tolerance=5)
    assert metrics.pointing_game(cam, truth, tolerance=15)
    assert metrics.pointing_game(truth.astype(float), truth, tolerance=0)


def test_randomization_check_flags_a_map_that_ignores_the_model() -> None:
    rng = np.random.default_rng(0)
    edges = rng.random((30, 30))
    flagged = metrics.randomization_check(edges, edges * 2 + 0.1)  # same ranking whatever the weights
    assert flagged["spearman"] == pytest.approx(1.0) and not flagged["passed"]
    assert metrics.randomization_check(edges, rng.random((30, 30)))["passed"]


def test_randomization_on_real_models(crack_rgb) -> None:
    import paddle

    a = segcam.create_model("hrsegnet_b16", weights="random")
    paddle.seed(99)
    net_b = segcam.create_model("hrsegnet_b16", weights="random")
    for p in net_b.network.parameters():  # another random model
        p.set_value(paddle.randn(p.shape) * 0.1)
    img = crack_rgb[:64, :64].copy()
    ma = segcam.explain(a, img, "seg2", segcam.ImageTarget())[0].maps["seg2"].normalized
    mb = segcam.explain(net_b, img, "seg2", segcam.ImageTarget())[0].maps["seg2"].normalized
    assert metrics.randomization_check(ma, mb)["spearman"] < 0.9


def test_noisy_linear_imputation_fills_smoothly() -> None:
    img = np.zeros((20, 20, 3), np.uint8)
    img[:, :, 0] = np.arange(20)[None] * 10  # linear ramp
    removed = np.zeros((20, 20), bool)
    removed[5:15, 5:15] = True
    out = metrics.noisy_linear_imputation(img, removed, noise=0.0)
    np.testing.assert_array_equal(out[~removed], img[~removed])
    assert np.abs(out[removed, 0].astype(int) - img[removed, 0].astype(int)).max() <= 2  # harmonic fill of a ramp


def test_deletion_insertion_and_road(b16, crack_rgb) -> None:
    img = crack_rgb[:64, :64].copy()
    res = segcam.explain(b16, img, "seg2", segcam.ImageTarget())[0]
    cam = res.maps["seg2"].normalized
    dele = metrics.deletion_insertion(b16, img, cam, res.target_mask, "deletion", "iou", steps=4)
    assert dele.fractions.tolist() == [0, 0.25, 0.5, 0.75, 1.0] and dele.scores[0] == 1.0 and 0 <= dele.auc <= 1
    ins = metrics.deletion_insertion(b16, img, cam, res.target_mask, "insertion", "logit", steps=4, baseline="blur")
    assert len(ins.scores) == 5
    r = metrics.road(b16, img, cam, res.target_mask, percentiles=(25, 50))
    assert len(r["morf"]) == 2 and np.isfinite(r["combined"])
    with pytest.raises(ValueError, match="score"):
        metrics.deletion_insertion(b16, img, cam, res.target_mask, score="dice")


def _logits_for(pred: np.ndarray) -> np.ndarray:
    return np.stack([~pred, pred]).astype(np.float32)


def test_crack_targets() -> None:
    pred = np.zeros((30, 40), bool)
    pred[5:8, 2:30] = True  # big crack
    pred[20:22, 10:14] = True  # small crack
    logits = _logits_for(pred)
    big = ComponentTarget(1, 1).mask(logits)
    assert big.sum() == 3 * 28 and ComponentTarget(1, 2).mask(logits).sum() == 8
    assert ComponentTarget(1, 1, 11, 21).mask(logits).sum() == 8
    assert not ComponentTarget(1, 3).mask(logits).any()
    truth = np.zeros_like(pred)
    truth[5:8, 2:20] = True
    truth[25, 25] = True
    tp = ErrorRegionTarget(1, "tp", truth).mask(logits)
    fp = ErrorRegionTarget(1, "fp", truth).mask(logits)
    fn = ErrorRegionTarget(1, "fn", truth).mask(logits)
    assert tp.sum() == 54 and fp.sum() == pred.sum() - 54 and fn.sum() == 1
    assert not (tp & fp).any()
    skel = SkeletonTarget(1).mask(logits)
    assert skel.any() and (skel <= pred).all() and skel.sum() < pred.sum() / 2
    assert skel[6, 5:25].all()  # the centre line of the 3-px crack
    band = BorderTarget(1, 1).mask(logits)
    assert band[4, 10] and band[5, 10] and not band[15, 35]
    with pytest.raises(TargetError):
        ErrorRegionTarget(1, "xx", truth).mask(logits)


def test_skeleton_of_a_thick_line_is_thin() -> None:
    m = np.zeros((21, 40), bool)
    m[8:13, 3:37] = True
    skel = skeletonize(m)
    assert skel[10, 6:34].all() and skel[8, 6:34].sum() == 0 and skel[12, 6:34].sum() == 0


def test_parse_crack_targets(tmp_path) -> None:
    assert parse_target("component") == ComponentTarget(1, 1)
    assert parse_target("component:3") == ComponentTarget(1, 3)
    assert parse_target("component:10,20") == ComponentTarget(1, 1, 10, 20)
    assert parse_target("skeleton") == SkeletonTarget(1)
    assert parse_target("border:3") == BorderTarget(1, 3)
    (tmp_path / "gt").mkdir()
    assert parse_target(f"fn:{tmp_path / 'gt'}") == ("fn", str(tmp_path / "gt"))
    with pytest.raises(TargetError):
        parse_target("component:a")


def test_cli_fn_target_and_method(tmp_path) -> None:
    from conftest import EXAMPLE_MASKS, EXAMPLES

    out = tmp_path / "run"
    assert main(["explain", "--model", "hrsegnet_b16", "--weights", "random", "--method", "seg_score_cam",
                 "--method-arg", "batch_size=8", "--target", f"fn:{EXAMPLE_MASKS}", "--out", str(out),
                 str(EXAMPLES / "cfd_001.jpg")]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["method"] == "seg_score_cam" and "fn pixels" in manifest["images"][0]["target"]
    assert main(["explain", "--model", "hrsegnet_b16", "--weights", "random", "--method-arg", "nonsense",
                 "--out", str(tmp_path / "o2"), str(EXAMPLES / "cfd_001.jpg")]) == 2


@pytest.mark.needs_data
def test_evaluate_cam_cli(tmp_path, capsys) -> None:
    out = tmp_path / "ce"
    assert main(["evaluate-cam", "--model", "hrsegnet_b16", "--weights", "random", "--data", "deepcrack:test",
                 "--limit", "1", "--methods", "seg_grad_cam", "layer_cam", "--layers", "seg2", "seg_head",
                 "--steps", "2", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| method | layer |" in text and "layer_cam" in text
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["summary"]) == 4 and {"energy", "rank_energy", "rand_spearman"} <= set(summary["summary"][0])
    for name in ("per_image.csv", "summary.csv", "summary.md", "summary.png"):
        assert (out / name).is_file()


def test_target_sensitivity_known_answers() -> None:
    a = np.zeros((40, 40), bool)
    a[5:8, 5:15] = True
    b = np.zeros((40, 40), bool)
    b[30:33, 20:35] = True
    yy, xx = np.mgrid[:40, :40]
    near_a = np.exp(-((yy - 6) ** 2 + (xx - 10) ** 2) / 8.0)
    near_b = np.exp(-((yy - 31) ** 2 + (xx - 27) ** 2) / 8.0)
    follows = metrics.target_sensitivity(near_a, near_b, a, b, radius=5)
    assert follows["spearman"] < 0.5 and follows["own_energy"] > 0.95 and follows["other_energy"] < 0.01
    same = metrics.target_sensitivity(near_a + near_b, near_a + near_b, a, b, radius=5)
    assert same["spearman"] == pytest.approx(1.0) and same["own_energy"] == pytest.approx(0.5, abs=0.02)
    assert same["other_energy"] == pytest.approx(0.5, abs=0.02)
    with pytest.raises(ValueError, match="overlap"):
        metrics.target_sensitivity(near_a, near_b, a, a, radius=5)
    with pytest.raises(ValueError, match="non-empty"):
        metrics.target_sensitivity(near_a, near_b, a, np.zeros_like(a), radius=5)
