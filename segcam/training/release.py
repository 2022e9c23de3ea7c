"""Turn a training run into release weights: fp16 ``.pdparams``, metrics JSON and a model card.

    segcam release --run runs/b16_mix --name hrsegnet_b16 --tag mix
        --config configs/cpu/hrsegnet_b16_mix_cpu.yml [--checkpoint best_model] [--out release/]

Evaluates the checkpoint on the test split of every crack set that has one (full frames), then writes
``<out>/<name>.<tag>.{pdparams,json,md}``. ``--out`` defaults to ``release/`` in the working directory;
the package's shipped weights (``segcam/models/pretrained/``) are written only with ``--into-package``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import paddle

from segcam.data.datasets import DATASETS, parse_data_spec
from segcam.models.weights import sha256_file
from segcam.models.zoo import PRETRAINED_DIR, create_model, get_model_spec
from segcam.training.loop import evaluate
from segcam.utils.files import atomic_write, save_json
from segcam.utils.progress import Progress

__all__ = ["release"]

#: Every set with a test split (CRACK500 has none here); DeepCrack first (the fp16 check uses it).
EVAL_SETS = ("deepcrack:test", "cfd:test", "masonry_dais:test", "gaps384_crops:test", "shadowcrack_crops:test")
DEFAULT_OUT = Path("release")
# the papers of the HrSegNet paper's baselines, for the model cards' network and citation lines
BASELINE_PAPERS = {
    "bisenetv2": "Yu et al., BiSeNet V2, IJCV 129, 2021",
    "ddrnet": "Hong et al., Deep Dual-resolution Networks, arXiv:2101.06085, 2021",
    "deeplabv3p": "Chen et al., DeepLabV3+, ECCV 2018",
    "ocrnet": "Yuan et al., Object-Contextual Representations, ECCV 2020",
    "pspnet": "Zhao et al., Pyramid Scene Parsing Network, CVPR 2017",
    "stdcseg": "Fan et al., Rethinking BiSeNet (STDC), CVPR 2021",
    "unet": "Ronneberger et al., U-Net, MICCAI 2015",
}


def describe_train_data(config: str | Path) -> str:
    """One line naming the training sets (and sampling weights) of a config, for model cards."""
    from segcam.models.config import load_config
    from segcam.training.dataset import CrackDataset

    cfg = dict(load_config(config)["train_dataset"])
    cfg.pop("type", None)
    cfg["transforms"] = [{"type": "Normalize"}]
    ds = CrackDataset(**{k: v for k, v in cfg.items() if k in ("datasets", "split", "mode")})
    if len(ds.sets) == 1 and ds.sets[0].name == "deepcrack:train":
        return "deepcrack:train (270 pairs; every 10th official train pair held out as deepcrack:valid)"
    total = sum(s.weight or 0 for s in ds.sets)
    parts = [f"{s.name} ({s.stop - s.start} pairs" + (f", {100 * s.weight / total:.0f} % of draws)" if total else ")")
             for s in ds.sets]
    return "; ".join(parts)


def release(run: Path, name: str, config: str, checkpoint: str = "best_model", out_dir: Path = DEFAULT_OUT,
            notes: str = "", limit: int = 0, tag: str = "mix", into_package: bool = False,
            progress: Progress | None = None) -> dict:
    """Evaluate ``run/checkpoint`` and write the fp16 weights, metrics and card for zoo model ``name``.

    Args:
        run: Training folder (``segcam train --save-dir``) with ``checkpoint/`` and ``last/``.
        name: Zoo model name (``hrsegnet_b48``, ``bisenetv2`` ...).
        config: The YAML the run was trained with (recorded in the card).
        checkpoint: ``best_model`` (validation-selected) or ``last``.
        out_dir: Where ``<name>.<tag>.{pdparams,json,md}`` go (not the package unless ``into_package``).
        notes: Free text on how the run went (interruptions, resumes), appended to the card.
        limit: Evaluate only the first N images of each set (a quick check; 0 = all, as shipped).
        tag: Weights tag (``mix``, ``deepcrack``); ``create_model("NAME.TAG")`` loads it.
        into_package: Write into ``segcam/models/pretrained/`` (replacing the shipped weights of that tag).
        progress: Told as the test images of each set are scored.

    Raises:
        ValueError: ``out_dir`` is the package folder but ``into_package`` was not given, or a bad tag.
    """
    if not tag.isidentifier():
        raise ValueError(f"tag {tag!r} must be a plain word (letters, digits, underscores), e.g. mix")
    out_dir = PRETRAINED_DIR if into_package else Path(out_dir)
    if not into_package and out_dir.resolve() == PRETRAINED_DIR.resolve():
        raise ValueError(f"{out_dir} holds the package's shipped weights; pass --into-package to replace them")
    ckpt = run / checkpoint / "model.pdparams"
    state = json.loads((run / checkpoint / "state.json").read_text())
    last = json.loads((run / "last" / "state.json").read_text())
    model = create_model(name, weights=str(ckpt))
    metrics = {}
    for spec in EVAL_SETS:
        t0 = time.time()
        res = evaluate(model.network, parse_data_spec(spec)[: limit or None], progress=progress)
        res["seconds"] = round(time.time() - t0, 1)
        metrics[spec] = res
    half = {k: paddle.to_tensor(v.numpy().astype(np.float16) if v.dtype == paddle.float32 else v.numpy())
            for k, v in model.network.state_dict().items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / f"{name}.{tag}.pdparams"
    atomic_write(weights, lambda p: paddle.save(half, str(p)))
    # the fp16 file is what users load: check it reproduces the fp32 test score
    check = evaluate(create_model(name, weights=str(weights)).network, parse_data_spec(EVAL_SETS[0])[: limit or None])
    info = {"model": name, "weights_sha256": sha256_file(weights), "storage": "float16 (loaded as float32)",
            "checkpoint": f"{run.name}/{checkpoint}", "iteration": state["iter"], "iterations_run": last["iter"],
            "planned_iterations": last.get("iters"), "batch_size": last.get("batch_size"),
            "train_seconds": last.get("seconds"), "best_val_miou": state.get("best_miou"), "config": config,
            "train_data": describe_train_data(config), "tag": tag, "init_weights": last.get("init_weights"),
            "val": state.get("val"), "metrics": metrics, "fp16_deepcrack_test_miou": check["miou"], "notes": notes,
            "ema_decay": state.get("ema_decay"), "ema_started_at": state.get("ema_started_at")}
    save_json(out_dir / f"{name}.{tag}.json", info)
    atomic_write(out_dir / f"{name}.{tag}.md", lambda p: p.write_text(_card(info)))
    return info


def _card(info: dict) -> str:
    m = info["metrics"]
    rows = "\n".join(f"| {k} | {v['images']} | {v['miou']:.4f} | {v['crack_iou']:.4f} | {v['precision']:.4f} | "
                     f"{v['recall']:.4f} | {v['f1']:.4f} |" for k, v in m.items())
    hours = (info["train_seconds"] or 0) / 3600
    hrsegnet = info["model"].startswith("hrsegnet")
    paper = BASELINE_PAPERS.get(info["model"])
    if hrsegnet:
        network = ('HrSegNet (Li et al. 2023, "Real-time high-resolution neural network with semantic guidance for '
                   'crack segmentation", Automation in Construction 156, 105112), implemented in `hrsegnet/`')
        recipe = ("the original HrSegNet recipe (SGD momentum 0.9, weight decay 5e-4, poly learning rate\n0.01 with "
                  "linear warm-up, OHEM cross-entropy on the main and two auxiliary heads with weights 1/0.5/0.5, "
                  "random\nscaling 0.5-2.0, crop, flip, colour distortion, mean = std = 0.5)")
    else:
        desc = get_model_spec(info["model"]).description.removesuffix(", from PaddleSeg")
        network = f"{desc}{f' ({paper})' if paper else ''}, from PaddleSeg 2.8, one of the HrSegNet paper's baselines"
        recipe = "the model's upstream PaddleSeg recipe (optimizer, losses and augmentation as in the config)"
    notes = f"\n**Run notes.** {info['notes']}\n" if info.get("notes") else ""
    ema = (f" The weights are the exponential moving average (decay {info['ema_decay']}) kept from iteration "
           f"{info['ema_started_at']} on (`--ema-decay`)." if info.get("ema_decay") else "")
    ema_arg = f" --ema-decay {info['ema_decay']}" if info.get("ema_decay") else ""
    cite = "HrSegNet" if hrsegnet else paper or "the network"
    tag = info.get("tag", "deepcrack")
    used = [n for n in DATASETS if n in info["train_data"]] or ["deepcrack"]
    licences = "\n".join(f"- {DATASETS[n]}" for n in used)
    mean = (f"| mean of {len(m)} sets | {sum(v['images'] for v in m.values())} | "
            f"{sum(v['miou'] for v in m.values()) / len(m):.4f} | {sum(v['crack_iou'] for v in m.values()) / len(m):.4f} "
            "| | | |\n" if len(m) > 1 else "")
    init = (f" Initialised from `{info['init_weights']}` (fine-tuning), not from random weights."
            if info.get("init_weights") else "")
    changes = "256x256 crops, batch 8, fewer iterations, warm-up and OHEM min_kept scaled"
    if info.get("init_weights"):
        changes = (f"fine-tuning from trained weights, with its own learning rate and loss; {changes}; the config's "
                   "header says what each change is and why")
    val = info.get("val") or {}
    val_rows = "".join(f"| {k} | {v['miou']:.4f} | {v['crack_iou']:.4f} |\n" for k, v in val.get("per_set", {}).items())
    val_table = (f"\n**Validation at the selected checkpoint** (what selected it: the mean of the per-set mIoUs)\n\n"
                 f"| data | mIoU | crack IoU |\n|---|---|---|\n{val_rows}" if val_rows else "")
    return f"""# Model card: {info['model']}.{tag}

**Network.** {network}, two classes (background, crack).

**Weights.** `{info['model']}.{tag}.pdparams` (load with `create_model("{info['model']}.{tag}")` or
`--model {info['model']}.{tag}`), sha256 `{info['weights_sha256']}`, stored as {info['storage']}.
Checkpoint `{info['checkpoint']}`: iteration {info['iteration']} (best validation mIoU {info['best_val_miou']:.4f}) of a run
that reached iteration {info['iterations_run']} of {info['planned_iterations']} planned, batch {info['batch_size']},
{hours:.2f} h of training on a 2-core CPU (shared with other jobs).{ema}{init} The fp16 file scores
{info['fp16_deepcrack_test_miou']:.4f} mIoU on DeepCrack test (fp32 checkpoint: {m['deepcrack:test']['miou']:.4f}).

**Training data.** {info['train_data']}. No test split was used for training or model selection.
Licences of the training data:
{licences}

**The weights inherit the most restrictive of these: non-commercial research and education only.**

**Recipe.** `{info['config']}`: {recipe} with the changes stated in the config ({changes}).

**Evaluation.** Full-size frames, no resizing; intersections and unions accumulated over all pixels of the set (as
PaddleSeg does); mIoU averages background and crack IoU; each set's test split (CFD and masonry: the seeded
20 % of `segcam.data.datasets`). A set that is not in the training data above is an out-of-domain check.

| data | images | mIoU | crack IoU | precision | recall | F1 |
|---|---|---|---|---|---|---|
{rows}
{mean}{val_table}
Reproduce: `segcam train --config {info['config']} --iters {info['planned_iterations']}{ema_arg} --save-dir runs/...` then
`segcam evaluate --model {info['model']}.{tag} --data mix:test`.
Cite DeepCrack (Liu et al., Neurocomputing 338, 2019) and {cite} when you use these weights.
{notes}"""
