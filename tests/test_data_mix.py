"""Crack-general training data: seeded splits, the weighted mix, Dice loss, weight tags and the release guard."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import paddle
import pytest

from segcam.data.datasets import MIX_WEIGHTS, list_pairs, parse_data_specs

pytestmark = pytest.mark.needs_data


@pytest.mark.parametrize("name,counts", [("cfd", (70, 24, 24)), ("masonry_dais", (144, 48, 48))])
def test_seeded_splits_are_fixed_disjoint_and_complete(name, counts) -> None:
    parts = [list_pairs(name, s) for s in ("train", "valid", "test")]
    assert tuple(len(p) for p in parts) == counts
    images = [{p.image for p in part} for part in parts]
    assert not images[0] & images[1] and not images[0] & images[2] and not images[1] & images[2]
    assert set().union(*images) == {p.image for p in list_pairs(name, "all")}
    assert [p.image for p in list_pairs(name, "test")] == [p.image for p in parts[2]]  # same on every call
    assert all(p.mask.stem == p.image.stem for part in parts for p in part)


def test_crack500_has_train_and_valid_only() -> None:
    train, valid = list_pairs("crack500", "train"), list_pairs("crack500", "valid")
    assert len(train) + len(valid) == 286 and not {p.image for p in train} & {p.image for p in valid}
    with pytest.raises(ValueError, match="no 'test' split"):
        list_pairs("crack500", "test")


def test_mix_spec_expands_to_every_set_with_that_split() -> None:
    test = parse_data_specs("mix:test")
    assert set(test) == {f"{n}:test" for n in MIX_WEIGHTS if n != "crack500"}
    assert set(parse_data_specs("mix:valid")) == {f"{n}:valid" for n in MIX_WEIGHTS}
    with pytest.raises(ValueError, match="unknown split"):
        parse_data_specs("mix:tset")


def test_sampling_weights_are_honoured() -> None:
    from segcam.training.dataset import CrackDataset

    ds = CrackDataset([{"data": "cfd:train", "weight": 3}, {"data": "gaps384_crops:train", "weight": 1}])
    assert [s.stop - s.start for s in ds.sets] == [70, 942]
    draws = np.concatenate([ds.batch_indices(i, 8, seed=0) for i in range(1500)])  # 12,000 draws
    share_cfd = np.mean(draws < ds.sets[0].stop)
    assert abs(share_cfd - 0.75) < 0.02, share_cfd  # per set, not per image (70 vs 942 pairs)
    np.testing.assert_array_equal(ds.batch_indices(7, 8, 0), ds.batch_indices(7, 8, 0))  # pure: resume-safe
    assert not np.array_equal(ds.batch_indices(7, 8, 0), ds.batch_indices(8, 8, 0))
    mix = CrackDataset(["mix:train"])
    weights = mix.pair_weights
    per_set = {s.name.partition(":")[0]: weights[s.start:s.stop].sum() for s in mix.sets}
    total = sum(MIX_WEIGHTS.values())
    for name, share in per_set.items():
        assert share == pytest.approx(MIX_WEIGHTS[name] / total)
    unweighted = CrackDataset(["deepcrack:train"])
    assert unweighted.pair_weights is None
    epoch = np.concatenate([unweighted.batch_indices(i, 10, 0) for i in range(27)])
    assert sorted(epoch) == list(range(270))  # one shuffled epoch, every pair once


def test_small_crops_get_their_own_transforms_and_ignore_padding() -> None:
    from segcam.models.config import load_config
    from segcam.training.dataset import CrackDataset

    cfg = load_config("configs/cpu/hrsegnet_b16_mix_cpu.yml")["train_dataset"]
    cfg = {k: v for k, v in cfg.items() if k != "type"}
    ds = CrackDataset(**cfg)
    gaps = next(s for s in ds.sets if s.name.startswith("gaps384"))
    np.random.seed(0)
    img, label = ds[gaps.start]
    assert img.shape == (3, 256, 256) and label.shape[-2:] == (256, 256)
    assert (label == 255).any() and set(np.unique(label)) <= {0, 1, 255}  # padding = ignore, never background
    assert (label != 255).sum() >= 133 * 133  # scaled up (1-2x), never down


def test_dice_loss_formula_and_ignore() -> None:
    from segcam.training.losses import DiceLoss

    rng = np.random.default_rng(0)
    logit = rng.normal(size=(2, 2, 5, 6)).astype(np.float32)
    label = rng.integers(0, 2, size=(2, 5, 6)).astype(np.int64)
    label[0, 0] = 255
    p = np.exp(logit[:, 1]) / np.exp(logit).sum(1)
    valid = label != 255
    g = (label == 1) & valid
    want = 1 - (2 * (p * g).sum() + 1) / ((p * valid).sum() + g.sum() + 1)
    got = float(DiceLoss()(paddle.to_tensor(logit), paddle.to_tensor(label)))
    assert got == pytest.approx(want, rel=1e-5)
    perfect = np.where(label[:, None] == np.arange(2)[None, :, None, None], 20.0, -20.0).astype(np.float32)
    assert float(DiceLoss(smooth=1e-6)(paddle.to_tensor(perfect), paddle.to_tensor(label))) < 1e-5


def test_weight_tags_select_shipped_weights() -> None:
    import segcam
    from segcam.models.zoo import get_model_spec

    spec = get_model_spec("hrsegnet_b16")
    assert "deepcrack" in spec.tags and spec.shipped_weights == spec.tags[spec.default_tag]
    model = segcam.create_model("hrsegnet_b16.deepcrack")
    assert model.tag == "deepcrack" and model.weights.endswith("hrsegnet_b16.deepcrack.pdparams")
    assert "hrsegnet_b16.deepcrack" in model.describe_weights()
    assert segcam.create_model("hrsegnet_b16").tag == spec.default_tag
    with pytest.raises(KeyError, match="shipped: hrsegnet_b16"):
        segcam.create_model("hrsegnet_b16.imagenet")
    with pytest.raises(ValueError, match="not both"):
        segcam.create_model("hrsegnet_b16.deepcrack", weights="random")
    assert spec.tag_info("deepcrack")["train_data"].startswith("deepcrack:train")


def test_models_command_lists_tags_with_training_data_and_refuses_no_match() -> None:
    run = subprocess.run([sys.executable, "-m", "segcam", "models", "hrsegnet_*"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "hrsegnet_b48.deepcrack" in run.stdout and "deepcrack:train (270 pairs" in run.stdout
    none = subprocess.run([sys.executable, "-m", "segcam", "models", "nomatch*"], capture_output=True, text=True)
    assert none.returncode == 2 and "no zoo model matches" in none.stderr


def test_release_never_writes_into_the_package_unless_told(tmp_path, monkeypatch) -> None:
    from segcam.cli import main
    from segcam.models.zoo import PRETRAINED_DIR
    from segcam.training.release import release

    before = {p.name: p.stat().st_mtime_ns for p in PRETRAINED_DIR.iterdir()}
    with pytest.raises(ValueError, match="--into-package"):
        release(tmp_path, "hrsegnet_b16", "configs/cpu/hrsegnet_b16_cpu.yml", out_dir=PRETRAINED_DIR, tag="deepcrack")
    assert main(["release", "--run", str(tmp_path), "--name", "hrsegnet_b16", "--config", "configs/cpu/hrsegnet_b16_cpu.yml",
                 "--out", str(PRETRAINED_DIR)]) == 2
    with pytest.raises(ValueError, match="plain word"):
        release(tmp_path, "hrsegnet_b16", "configs/cpu/hrsegnet_b16_cpu.yml", out_dir=tmp_path, tag="../x")
    assert {p.name: p.stat().st_mtime_ns for p in PRETRAINED_DIR.iterdir()} == before


def test_model_card_describes_the_mix() -> None:
    from segcam.training.release import describe_train_data

    text = describe_train_data("configs/cpu/hrsegnet_b16_mix_cpu.yml")
    assert "cfd:train (70 pairs, 14 % of draws)" in text and "deepcrack:train (270 pairs, 29 % of draws)" in text
    assert describe_train_data("configs/cpu/hrsegnet_b16_cpu.yml").startswith("deepcrack:train (270 pairs;")
