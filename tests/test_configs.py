"""Every shipped config builds the zoo model it names and runs one training step (tiny batch, CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from segcam.models.config import load_config
from segcam.models.zoo import MODELS, create_model

CONFIGS = sorted(p for p in (ROOT / "configs").rglob("*.yml") if "_base_" not in p.parts)
BY_TYPE = {MODELS.get(n).paddleseg_type: n for n in MODELS.names()}


def test_every_model_has_a_config() -> None:
    types = {load_config(p)["model"]["type"] for p in CONFIGS}
    assert types == set(BY_TYPE), f"models without a config: {set(BY_TYPE) - types}"


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(ROOT / "configs")) for p in CONFIGS])
def test_config_trains_one_step_and_matches_the_zoo(path: Path, tmp_path) -> None:
    from segcam.models.config import build_component
    from segcam.training.loop import train

    cfg = load_config(path)
    def specs(section: dict) -> list[str]:
        entries = section["datasets"]
        entries = [entries] if isinstance(entries, (str, dict)) else entries
        names = [e["data"] if isinstance(e, dict) else e for e in entries]
        return [n if ":" in n else f"{n}:{section['split']}" for n in names]

    assert all(s.endswith(":train") for s in specs(cfg["train_dataset"])), specs(cfg["train_dataset"])
    assert all(s.endswith(":valid") for s in specs(cfg["val_dataset"])), "model selection must never see the test split"
    # the network a config trains loads strictly into the zoo model of the same name
    net = build_component(cfg["model"])
    zoo = create_model(BY_TYPE[cfg["model"]["type"]], weights="random").network
    assert {k: list(v.shape) for k, v in net.state_dict().items()} == \
           {k: list(v.shape) for k, v in zoo.state_dict().items()}
    tiny = dict(cfg)
    resize = [{"type": "Resize", "target_size": [64, 64]}, {"type": "Normalize"}]
    entries = cfg["train_dataset"]["datasets"]
    entries = entries if isinstance(entries, list) else [entries]
    tiny["train_dataset"] = {**cfg["train_dataset"], "limit": 2, "transforms": resize,  # per-set transforms too
                             "datasets": [{**e, "transforms": resize} if isinstance(e, dict) else e for e in entries]}
    small = tmp_path / "tiny.yml"
    small.write_text(yaml.safe_dump(tiny))
    state = train(small, tmp_path / "run", iters=1, batch_size=2, log_every=1, save_every=1, val_every=0)
    assert state["iter"] == 1 and (tmp_path / "run" / "last" / "model.pdparams").is_file()
