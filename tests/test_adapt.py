"""Learning from the reviewer: verdict labels, missed-crack marks and `segcam finetune`."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from segcam.adapt.labels import BAND_PX, IGNORE, NEAR_PX, verdict_label
from segcam.cli import main
from segcam.survey.missed import load_missed, mark_missed, rasterise, unmark_missed
from segcam.survey.verdicts import VerdictError, load_review, record


def test_verdict_labels_learn_only_what_the_reviewer_said() -> None:
    pred = np.zeros((100, 200), bool)
    labels = np.zeros((100, 200), np.uint16)
    labels[20:23, 10:60] = 1  # confirmed
    labels[60:63, 10:60] = 2  # rejected
    labels[20:23, 130:180] = 3  # unreviewed
    pred[labels > 0] = True
    pred[90, 190] = True  # a speck below the records' minimum area: unreviewed too
    missed = np.zeros_like(pred)
    missed[80:82, 100:150] = True
    out = verdict_label(pred, labels, [1], [2], missed)
    assert (out[labels == 1] == 1).all() and (out[missed] == 1).all()
    assert (out[labels == 2] == 0).all()  # rejected: background
    assert (out[labels == 3] == IGNORE).all() and out[20, 130 - NEAR_PX] == IGNORE and out[90, 190] == IGNORE
    assert out[20 - BAND_PX, 30] == IGNORE and out[20 - BAND_PX - 1, 30] == 0  # the confirmed crack's edge band
    assert out[5, 100] == 0 and out[50, 100] == 0  # far from every unreviewed prediction: background
    assert out[20, 130 - NEAR_PX - 2] == 0


@pytest.fixture
def run(run_copy):
    return run_copy


def test_missed_marks_are_checked_saved_undone_and_go_stale(run, tmp_path, capsys) -> None:
    with pytest.raises(VerdictError, match="not a photo of this run"):
        mark_missed(run, "nosuch", [(0, 0), (5, 5)])
    with pytest.raises(VerdictError, match="leaves the photo"):
        mark_missed(run, "cfd_001", [(0, 0), (5000, 5)])
    with pytest.raises(VerdictError, match="2 to"):
        mark_missed(run, "cfd_001", [(1, 1)])
    a = mark_missed(run, "cfd_001", [(10, 10), (60, 40)], width=4)
    b = mark_missed(run, "cfd_001", [(100.5, 10.5), (160.5, 10.5)], width=3)
    assert [m.id for m in load_missed(run)[0]] == [a.id, b.id]
    unmark_missed(run, a.id)
    assert [m.id for m in load_missed(run)[0]] == [b.id]
    mask = rasterise(load_missed(run)[0], (320, 480))
    assert mask[10, 100:161].all() and list(mask[7:14, 130]) == [0, 0, 1, 1, 1, 0, 0] and not mask[40, 60]
    assert load_review(run).unread_lines == 0  # marks share the journal without confusing the verdicts
    assert main(["review", str(run)]) == 0
    assert "missed             1" in capsys.readouterr().out
    man = json.loads((run / "manifest.json").read_text())
    for rec in man["images"]:
        rec["source_id"] = "1:1" if rec["name"] == "cfd_001" else rec["source_id"]
    (run / "manifest.json").write_text(json.dumps(man))
    assert load_missed(run) == ([], 1)


def test_missed_cracks_import_from_geojson_and_bad_files_apply_nothing(run, tmp_path, capsys) -> None:
    assert main(["report", str(run)]) == 0
    doc = json.loads((run / "cracks.geojson").read_text())
    lines = []
    for f in doc["features"]:  # our own centre lines, as another tool would send missed cracks
        line = f["geometry"]["geometries"][0]
        lines.append({"type": "Feature", "geometry": line, "properties": {"name": f["properties"]["name"], "width": 3}})
    good = tmp_path / "missed.geojson"
    good.write_text(json.dumps({"type": "FeatureCollection", "features": lines}))
    assert main(["review", str(run), "--import-missed", str(good)]) == 0
    parts = sum(1 if f["geometry"]["type"] == "LineString" else len(f["geometry"]["coordinates"]) for f in lines)
    assert f"{parts} missed cracks marked" in capsys.readouterr().err and len(load_missed(run)[0]) == parts
    bad = tmp_path / "bad.geojson"
    bad.write_text(json.dumps({"type": "FeatureCollection", "features": [
        lines[0], {"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 2]}, "properties": {"name": "cfd_001"}},
        {**lines[0], "properties": {"name": "nosuch"}}]}))
    assert main(["review", str(run), "--import-missed", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "feature 2: a Point" in err and "feature 3: photo 'nosuch'" in err and "nothing imported" in err
    assert len(load_missed(run)[0]) == parts
    (tmp_path / "notjson.geojson").write_text("name,crack\n")
    assert main(["review", str(run), "--import-missed", str(tmp_path / "notjson.geojson")]) == 2
    assert "is not a GeoJSON FeatureCollection" in capsys.readouterr().err


def _review_from_truth(run) -> None:
    with open(run / "cracks.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            record(run, r["name"], int(r["crack"]), "confirmed" if r["truth"] == "true" else "rejected")


def test_finetune_needs_verdicts_and_the_run_s_photos(run, capsys) -> None:
    assert main(["finetune", str(run), "--out", str(run.parent / "ft"), "--iters", "2"]) == 2
    assert "has no verdicts yet: review its cracks first" in capsys.readouterr().err
    _review_from_truth(run)
    man = json.loads((run / "manifest.json").read_text())
    for rec in man["images"]:
        rec["image"] = str(run.parent / "moved" / "photo.jpg")  # the photos moved away after the run
    (run / "manifest.json").write_text(json.dumps(man))
    assert main(["finetune", str(run), "--out", str(run.parent / "ft"), "--iters", "2", "--replay", "none"]) == 2
    assert "is gone or changed since the run" in capsys.readouterr().err


def test_finetune_writes_weights_a_card_and_resumes_to_the_same_weights(run, tmp_path, monkeypatch, capsys) -> None:
    import segcam
    from segcam.adapt import finetune as ft
    from segcam.adapt import loop
    from segcam.models.weights import safe_load

    _review_from_truth(run)
    mark_missed(run, "cfd_001", [(10, 300), (200, 310)], width=3)
    whole = tmp_path / "whole"
    rep = ft.finetune(run, whole, iters=4, replay="deepcrack:train")
    assert rep.weights.is_file() and rep.counts["missed"] == 1 and rep.iters == 4
    assert rep.counts["confirmed"] + rep.counts["rejected"] == len(load_review(run).cracks)
    assert rep.counts["photos_holdout"] == 1 and rep.before and rep.after
    card = (whole / "card.md").read_text()
    assert f"{rep.counts['confirmed']} confirmed" in card and "--weights" in card
    tuned = segcam.create_model("hrsegnet_b16", weights=str(rep.weights))  # loads strictly
    base = segcam.create_model("hrsegnet_b16")
    changed = [k for k, v in tuned.network.state_dict().items()
               if not np.allclose(v.numpy(), base.network.state_dict()[k].numpy())]
    assert changed and not any("_mean" in k or "_variance" in k for k in changed)  # BN statistics kept
    # a fine-tune killed after its checkpoint at iteration 2 resumes to the same weights
    monkeypatch.setattr(loop, "SAVE_EVERY", 2)
    real = loop._batch

    def dies_at_3(model, wins, replay, size, seed, it):
        if it == 3:
            raise KeyboardInterrupt
        return real(model, wins, replay, size, seed, it)

    monkeypatch.setattr(loop, "_batch", dies_at_3)
    with pytest.raises(KeyboardInterrupt):
        ft.finetune(run, tmp_path / "killed", iters=4, replay="deepcrack:train")
    monkeypatch.setattr(loop, "_batch", real)
    ft.finetune(run, tmp_path / "killed", iters=4, replay="deepcrack:train", log=print)
    assert "resumed at iteration 2" in capsys.readouterr().out
    a, b = safe_load(whole / "weights.pdparams"), safe_load(tmp_path / "killed" / "weights.pdparams")
    assert a.keys() == b.keys() and all(np.allclose(a[k], b[k], atol=1e-5) for k in a)
