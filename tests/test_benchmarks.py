"""The comparison script runs end to end on a small slice (its numbers live in benchmarks/results)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_compare_models_writes_table_plot_and_training_budget(tmp_path, capsys) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import compare_models
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    assert compare_models.main(["--models", "hrsegnet_b16", "hrsegnet_b16.deepcrack", "hrsegnet_b32", "--limit", "2",
                                "--repeats", "1", "--out", str(tmp_path)]) == 0
    rows = {r["name"]: r for r in json.loads((tmp_path / "comparison.json").read_text())}
    from segcam.models.zoo import get_model_spec

    card = json.loads(get_model_spec("hrsegnet_b16").shipped_weights.with_suffix(".json").read_text())
    b16 = rows["hrsegnet_b16"]
    assert b16["images"] == 2 and 0 < b16["miou"] <= 1 and abs(b16["params"] - 0.609942) < 1e-6
    assert b16["budget"] == f"{card['iteration']} of {card['planned_iterations']} it, batch {card['batch_size']}"
    assert rows["hrsegnet_b16.deepcrack"]["data"] == "DeepCrack only" and b16["data"] == "six-set mix"
    table = (tmp_path / "comparison.md").read_text()
    assert table.count("\n") == 5 and "| hrsegnet_b16 | six-set mix | 0.61 |" in table
    if "miou" not in rows["hrsegnet_b32"]:  # no shipped weights: cost only, not in the plot
        assert "not trained" in table
    assert (tmp_path / "miou_vs_latency.png").stat().st_size > 1000 and (tmp_path / "miou_vs_latency.pdf").is_file()
    # --reuse-cost: the cost of an earlier row of the same network serves, and a bare name whose network now
    # has tagged rows is dropped as superseded (its weights are one of the tags)
    assert compare_models.main(["--models", "hrsegnet_b16.mix", "--reuse-cost", "--limit", "1", "--out",
                                str(tmp_path)]) == 0
    rows2 = {r["name"]: r for r in json.loads((tmp_path / "comparison.json").read_text())}
    assert set(rows2) == {"hrsegnet_b16.mix", "hrsegnet_b16.deepcrack", "hrsegnet_b32"}
    assert rows["hrsegnet_b16.deepcrack"]["latency_ms"] == b16["latency_ms"]  # one measurement per network
    assert rows2["hrsegnet_b16.mix"]["latency_ms"] == b16["latency_ms"] and rows2["hrsegnet_b16.mix"]["images"] == 1
    assert compare_models.default_rows()[:2] == ["bisenetv2.mix", "bisenetv2.deepcrack"]
