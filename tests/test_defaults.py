"""Defaults per target kind (segcam.cam.defaults): the measured choice follows the target; the CLI uses it."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from conftest import EXAMPLES

import segcam
from segcam.cam.defaults import DEFAULTS, LOCATION_BLIND, location_note, recipe_for, target_kind
from segcam.cam.targets import BoxTarget, ComponentTarget, PixelTarget, PredictedTarget, parse_target
from segcam.cli import main
from segcam.data.datasets import list_pairs
from segcam.evaluation import faithfulness as metrics

#: The README's level for the old default (seg_grad_cam): component maps correlate 0.99-1.00 with the pred map.
PRED_MAP_LEVEL = 0.99


def test_every_target_kind_has_a_measured_recipe() -> None:
    assert set(DEFAULTS) == {"pred", "component", "pixel", "box"}
    for kind, r in DEFAULTS.items():
        segcam.get_method(r.method)
        assert r.score in ("logit", "margin", "prob") and r.layer in ("seg3", "seg_head")
        if kind != "pred":
            assert r.own_energy >= 0.9 and r.method not in LOCATION_BLIND, (kind, r)  # the map follows the target
    assert target_kind(PredictedTarget()) == "pred"
    assert target_kind(parse_target(f"mask:{EXAMPLES.parent / 'masks'}", 1)) == "pred"
    assert target_kind(ComponentTarget(rank=2)) == "component"
    assert recipe_for(PixelTarget(1, 3, 4)) is DEFAULTS["pixel"] and recipe_for(BoxTarget(1, 0, 0, 9, 9)) is DEFAULTS["box"]
    assert location_note(DEFAULTS["pixel"].method, PixelTarget(1, 3, 4)) is None
    assert location_note("seg_grad_cam", PredictedTarget()) is None
    assert "barely depends on where the target is" in location_note("seg_grad_cam", PixelTarget(1, 3, 4))
    assert "same for every target" in location_note("seg_eigen_cam", BoxTarget(1, 0, 0, 9, 9))


@pytest.mark.needs_data
def test_default_for_a_component_target_gives_maps_that_follow_the_component() -> None:
    """Two crack components of one photo: the default's maps differ and each stays on its own component,
    where the old default (seg_grad_cam at seg_head) gives one map for both."""
    model = segcam.create_model("hrsegnet_b16")
    r = DEFAULTS["component"]
    chosen, old = [], []
    for pair in list_pairs("deepcrack", "test")[:12]:
        rgb = segcam.read_image(pair.image)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a, b = (segcam.explain(model, rgb, [r.layer], ComponentTarget(rank=k), r.method, score=r.score)[0]
                    for k in (1, 2))
            if not (a.target_mask.any() and b.target_mask.any()):
                continue
            oa, ob = (segcam.explain(model, rgb, ["seg_head"], ComponentTarget(rank=k), "seg_grad_cam")[0]
                      for k in (1, 2))
        chosen.append(metrics.target_sensitivity(a.maps[r.layer].normalized, b.maps[r.layer].normalized,
                                                 a.target_mask, b.target_mask))
        old.append(metrics.target_sensitivity(oa.maps["seg_head"].normalized, ob.maps["seg_head"].normalized,
                                              a.target_mask, b.target_mask))
        if len(chosen) == 3:
            break
    assert len(chosen) == 3
    assert np.mean([c["spearman"] for c in chosen]) < PRED_MAP_LEVEL, chosen
    assert np.mean([c["spearman"] for c in old]) > PRED_MAP_LEVEL, old  # the old default ignores the target
    assert min(c["own_energy"] for c in chosen) > 0.9 > max(o["own_energy"] for o in old), (chosen, old)


def test_cli_uses_the_recipe_of_the_target_kind(tmp_path, capsys) -> None:
    out = tmp_path / "o"
    assert main(["explain", "--model", "hrsegnet_b16", "--target", "pixel:200,150", "--out", str(out),
                 str(EXAMPLES / "deepcrack_11215-9.jpg")]) == 0
    man = json.loads((out / "manifest.json").read_text())
    r = DEFAULTS["pixel"]
    assert man["method"] == r.method and man["score"]["name"] == r.score
    assert [lay["requested"] for lay in man["layers"]] == [r.layer]
    assert "measured defaults" in capsys.readouterr().err
    out2 = tmp_path / "o2"
    assert main(["explain", "--model", "hrsegnet_b16", "--target", "pixel:200,150", "--method", "seg_grad_cam",
                 "--layer", "seg3", "--out", str(out2), str(EXAMPLES / "deepcrack_11215-9.jpg")]) == 0
    assert "barely depends on where the target is" in capsys.readouterr().err
