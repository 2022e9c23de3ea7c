"""Turn a training run into shipped weights: fp16 ``.pdparams``, metrics JSON and a model card.

    python -m segcam.training.release --run runs/hrsegnet_b16_cpu --name hrsegnet_b16
        --config configs/cpu/hrsegnet_b16_cpu.yml [--checkpoint best_model]

Evaluates the checkpoint on DeepCrack test (237 full frames) and, out of domain, CrackForest (cfd:all)
and masonry (masonry_dais:all), then writes ``segcam/pretrained/<name>.{pdparams,json,md}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import paddle

from segcam.data import DATASETS, parse_data_spec
from segcam.io_utils import atomic_write, save_json
from segcam.training.loop import evaluate
from segcam.weights import sha256_file
from segcam.zoo import PRETRAINED_DIR, create_model, get_model_spec

__all__ = ["release"]

EVAL_SETS = ("deepcrack:test", "cfd:all", "masonry_dais:all")
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


def release(run: Path, name: str, config: str, checkpoint: str = "best_model", out_dir: Path = PRETRAINED_DIR,
            notes: str = "", limit: int = 0) -> dict:
    """Evaluate ``run/checkpoint`` and write the fp16 weights, metrics and card for zoo model ``name``.

    Args:
        run: Training folder (``segcam train --save-dir``) with ``checkpoint/`` and ``last/``.
        name: Zoo model name (``hrsegnet_b48``, ``bisenetv2`` ...).
        config: The YAML the run was trained with (recorded in the card).
        checkpoint: ``best_model`` (validation-selected) or ``last``.
        out_dir: Where ``<name>.{pdparams,json,md}`` go.
        notes: Free text on how the run went (interruptions, resumes), appended to the card.
        limit: Evaluate only the first N images of each set (a quick check; 0 = all, as shipped).
    """
    ckpt = run / checkpoint / "model.pdparams"
    state = json.loads((run / checkpoint / "state.json").read_text())
    last = json.loads((run / "last" / "state.json").read_text())
    model = create_model(name, weights=str(ckpt))
    metrics = {}
    for spec in EVAL_SETS:
        t0 = time.time()
        res = evaluate(model.network, parse_data_spec(spec)[: limit or None], progress=True)
        res["seconds"] = round(time.time() - t0, 1)
        metrics[spec] = res
        print(spec, json.dumps(res), file=sys.stderr)
    half = {k: paddle.to_tensor(v.numpy().astype(np.float16) if v.dtype == paddle.float32 else v.numpy())
            for k, v in model.network.state_dict().items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / f"{name}.pdparams"
    atomic_write(weights, lambda p: paddle.save(half, str(p)))
    # the fp16 file is what users load: check it reproduces the fp32 test score
    check = evaluate(create_model(name, weights=str(weights)).network, parse_data_spec(EVAL_SETS[0])[: limit or None])
    info = {"model": name, "weights_sha256": sha256_file(weights), "storage": "float16 (loaded as float32)",
            "checkpoint": f"{run.name}/{checkpoint}", "iteration": state["iter"], "iterations_run": last["iter"],
            "planned_iterations": last.get("iters"), "batch_size": last.get("batch_size"),
            "train_seconds": last.get("seconds"), "best_val_miou": state.get("best_miou"), "config": config,
            "train_data": "deepcrack:train (270 pairs; every 10th official train pair held out as deepcrack:valid)",
            "metrics": metrics, "fp16_deepcrack_test_miou": check["miou"], "notes": notes,
            "ema_decay": state.get("ema_decay"), "ema_started_at": state.get("ema_started_at")}
    save_json(out_dir / f"{name}.json", info)
    atomic_write(out_dir / f"{name}.md", lambda p: p.write_text(_card(info)))
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
    return f"""# Model card: {info['model']}

**Network.** {network}, two classes (background, crack).

**Weights.** `{info['model']}.pdparams`, sha256 `{info['weights_sha256']}`, stored as {info['storage']}.
Checkpoint `{info['checkpoint']}`: iteration {info['iteration']} (best validation mIoU {info['best_val_miou']:.4f}) of a run
that reached iteration {info['iterations_run']} of {info['planned_iterations']} planned, batch {info['batch_size']},
{hours:.2f} h of training on a 2-core CPU (shared with other jobs).{ema} The fp16 file scores
{info['fp16_deepcrack_test_miou']:.4f} mIoU on DeepCrack test (fp32 checkpoint: {m['deepcrack:test']['miou']:.4f}).

**Training data.** {info['train_data']}. No test split was used for training or model selection.
{DATASETS['deepcrack']}. **The weights inherit that licence: non-commercial research and education only.**

**Recipe.** `{info['config']}`: {recipe} with the CPU-budget changes stated in the config
(256x256 crops, batch 8, fewer iterations, warm-up and OHEM min_kept scaled).

**Evaluation.** Full-size frames, no resizing; intersections and unions accumulated over all pixels of the set (as
PaddleSeg does); mIoU averages background and crack IoU. CFD and masonry are out-of-domain checks (never trained on).

| data | images | mIoU | crack IoU | precision | recall | F1 |
|---|---|---|---|---|---|---|
{rows}

Reproduce: `segcam train --config {info['config']} --iters {info['planned_iterations']}{ema_arg} --save-dir runs/...` then
`segcam evaluate --model {info['model']} --data deepcrack:test`.
Cite DeepCrack (Liu et al., Neurocomputing 338, 2019) and {cite} when you use these weights.
{notes}"""


def main(argv: list[str] | None = None) -> int:
    """Command line entry."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, type=Path)
    ap.add_argument("--name", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--checkpoint", default="best_model")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for evaluation")
    ap.add_argument("--notes", default="", help="how the run went (interruptions, resumes), for the model card")
    args = ap.parse_args(argv)
    if args.threads:
        paddle.base.core.set_num_threads(args.threads)
    info = release(args.run, args.name, args.config, args.checkpoint, notes=args.notes)
    print(json.dumps({k: v for k, v in info.items() if k != "metrics"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
