"""Training loop with checkpoints and resume, and full-frame evaluation."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import paddle

import segcam.training.dataset  # noqa: F401  (registers CrackDataset for build_component)
import segcam.training.losses  # noqa: F401  (registers our losses)
from segcam.cam.engine import main_logits
from segcam.cam.hooks import ensure_dygraph
from segcam.data.datasets import Pair, load_mask
from segcam.data.images import normalize, read_image
from segcam.models.config import build_component, load_config
from segcam.models.weights import safe_load
from segcam.training.ema import WeightEMA
from segcam.training.metrics import ConfusionMatrix, scores
from segcam.utils.files import atomic_write
from segcam.utils.progress import NullProgress, Progress

__all__ = ["evaluate", "predict_mask", "train"]


def _optimizer(cfg: dict[str, Any], model: paddle.nn.Layer, iters: int) -> tuple[Any, Any]:
    sched_cfg = dict(cfg.get("lr_scheduler", {"type": "PolynomialDecay", "learning_rate": 0.01}))
    kind = sched_cfg.pop("type")
    if kind != "PolynomialDecay":
        raise ValueError(f"lr_scheduler type {kind!r} is not supported; use PolynomialDecay")
    warmup = int(sched_cfg.pop("warmup_iters", 0))
    warmup_start = float(sched_cfg.pop("warmup_start_lr", 1e-5))
    lr0 = float(sched_cfg.pop("learning_rate", 0.01))
    sched = paddle.optimizer.lr.PolynomialDecay(
        learning_rate=lr0, decay_steps=max(1, iters - warmup), end_lr=float(sched_cfg.pop("end_lr", 0.0)),
        power=float(sched_cfg.pop("power", 0.9)))
    if warmup:
        sched = paddle.optimizer.lr.LinearWarmup(sched, warmup, warmup_start, lr0)
    opt_cfg = dict(cfg.get("optimizer", {"type": "SGD", "momentum": 0.9, "weight_decay": 5e-4}))
    kind = opt_cfg.pop("type").lower()
    wd = opt_cfg.pop("weight_decay", None)
    reg = paddle.regularizer.L2Decay(float(wd)) if wd else None
    if kind in ("sgd", "momentum"):
        opt = paddle.optimizer.Momentum(sched, momentum=float(opt_cfg.pop("momentum", 0.9)),
                                        parameters=model.parameters(), weight_decay=reg)
    elif kind in ("adam", "adamw"):
        cls = paddle.optimizer.AdamW if kind == "adamw" else paddle.optimizer.Adam
        opt = cls(sched, parameters=model.parameters(), weight_decay=reg if kind == "adam" else (wd or 0.01))
    else:
        raise ValueError(f"optimizer type {kind!r} is not supported; use SGD (momentum), Adam or AdamW")
    return opt, sched


def _losses(cfg: dict[str, Any]) -> tuple[list[Any], list[float]]:
    loss_cfg = cfg.get("loss", {"types": [{"type": "CrossEntropyLoss"}], "coef": [1]})
    types = [build_component(t) for t in loss_cfg["types"]]
    coef = [float(c) for c in loss_cfg.get("coef", [1] * len(types))]
    if len(coef) != len(types):
        raise ValueError(f"loss has {len(types)} types but {len(coef)} coefficients")
    return types, coef


def _atomic_save_dir(tmp: Path, final: Path) -> None:
    """Replace ``final`` by the complete folder ``tmp`` so that a kill at any point leaves a resumable copy.

    States a kill can leave: ``final`` (+ a partial ``tmp``), ``final.old`` + ``tmp`` (between the two
    renames), or ``final`` + ``final.old`` (before the clean-up). :func:`_resume_dir` takes ``final``
    when it is complete, else ``final.old``; a leftover ``final.old`` is removed only while ``final`` is
    complete.
    """
    old = final.with_name(final.name + ".old")
    if _complete(final):
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    elif final.exists():
        shutil.rmtree(final)  # never complete: nothing to keep (a complete copy may be in old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def _complete(folder: Path) -> bool:
    """A checkpoint folder is complete when its ``state.json`` (written last) is there."""
    return (folder / "state.json").is_file()


def _resume_dir(save_dir: Path) -> Path | None:
    """The newest complete ``last`` checkpoint (``last``, else ``last.old``), or None."""
    for cand in (save_dir / "last", save_dir / "last.old"):
        if _complete(cand):
            return cand
    return None


def _trim_log(log_path: Path, last_iter: int) -> None:
    """Drop log lines of iterations after the checkpoint a run resumes from (they are redone)."""
    if not log_path.is_file():
        return
    keep = []
    for line in log_path.read_text().splitlines():
        try:
            if json.loads(line).get("iter", 0) > last_iter:
                continue
        except ValueError:
            continue  # a line cut by a kill
        keep.append(line)
    atomic_write(log_path, lambda p: p.write_text("".join(k + "\n" for k in keep)))


def _seed_iteration(seed: int, iteration: int) -> None:
    """Seed the augmentation RNGs (PaddleSeg transforms use ``random`` and ``np.random``) per iteration.

    Every random choice of iteration ``i`` then depends on ``(seed, i)`` only, so a resumed run
    repeats an uninterrupted one exactly.
    """
    import random

    s = int(np.random.SeedSequence([seed, iteration]).generate_state(1)[0])
    random.seed(s)
    np.random.seed(s)
    paddle.seed(s)


def _batch(ds: Any, indices: np.ndarray) -> tuple[paddle.Tensor, paddle.Tensor]:
    items = [ds[int(i)] for i in indices]
    return paddle.to_tensor(np.stack([im for im, _ in items])), paddle.to_tensor(np.stack([lb for _, lb in items]))


def validate(model: Any, val_ds: Any) -> dict[str, Any]:
    """Evaluate on every set of a validation data set; ``miou`` is the mean of the per-set mIoUs.

    Selecting checkpoints on the mean of per-set scores keeps a large set (GAPs) from outvoting a small one.
    """
    per_set = {s.name: evaluate(model, val_ds.pairs[s.start:s.stop]) for s in val_ds.sets if s.stop > s.start}
    return {"miou": float(np.mean([r["miou"] for r in per_set.values()])),
            "crack_iou": float(np.mean([r["crack_iou"] for r in per_set.values()])),
            "per_set": {k: {"miou": v["miou"], "crack_iou": v["crack_iou"]} for k, v in per_set.items()}}


def _opt_state_by_structure(model: Any, state: dict[str, Any], to_structured: bool) -> dict[str, Any]:
    """Rename optimizer accumulators between Paddle's global parameter names and structured names.

    Paddle keys accumulators by generated names (``conv2d_35.w_0_velocity_0``)
    that depend on how many layers the process built before; structured names
    (``seg1.h_conv1.0.weight``) make a checkpoint resumable anywhere.
    """
    pairs = [(p.name, n) for n, p in model.named_parameters()]
    if not to_structured:
        pairs = [(b, a) for a, b in pairs]
    pairs.sort(key=lambda ab: -len(ab[0]))
    out = {}
    for key, value in state.items():
        for src, dst in pairs:
            if key.startswith(src + "_"):
                key = dst + key[len(src):]
                break
        out[key] = value
    return out


def _save_checkpoint(save_dir: Path, name: str, model: Any, opt: Any | None, state: dict[str, Any],
                     ema: WeightEMA | None = None) -> None:
    tmp = save_dir / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    paddle.save(model.state_dict(), str(tmp / "model.pdparams"))
    if ema is not None:
        paddle.save(ema.shadow, str(tmp / "model_ema.pdparams"))
    if opt is not None:
        paddle.save(_opt_state_by_structure(model, opt.state_dict(), True), str(tmp / "model.pdopt"))
    (tmp / "state.json").write_text(json.dumps(state, indent=1))
    _atomic_save_dir(tmp, save_dir / name)


def train(config: str | Path, save_dir: str | Path, iters: int | None = None, batch_size: int | None = None,
          resume: bool = True, log_every: int = 10, save_every: int = 100, val_every: int | None = None,
          seed: int = 0, log: Callable[[dict[str, Any]], None] | None = None, threads: int | None = None,
          stop_after: int | None = None, ema_decay: float | None = None,
          init_weights: str | Path | None = None) -> dict[str, Any]:
    """Train the model of a PaddleSeg YAML; resumes from ``save_dir/last`` when present.

    Writes ``save_dir/train.log`` (one JSON object per line: iter, loss, lr,
    seconds; and validation mIoU), ``save_dir/last/`` (model, optimizer and
    state, replaced atomically) and ``save_dir/best_model/`` (best validation mIoU).

    Args:
        config: PaddleSeg YAML (model, train_dataset, val_dataset, loss, optimizer, lr_scheduler).
        save_dir: Output folder.
        iters: Overrides the config's ``iters``.
        batch_size: Overrides the config's ``batch_size``.
        resume: Continue from ``save_dir/last`` if it exists.
        log_every: Iterations between log lines.
        save_every: Iterations between checkpoints.
        val_every: Iterations between validations (default: ``save_every``; 0 = never).
        seed: Random seed for initialisation and data order.
        log: Called with every record written to ``train.log`` (and ``{"resumed_from": ..., "iter": ...}``).
        threads: CPU threads for Paddle's kernels (its default is one; 2 cores train B48 1.46x faster).
        stop_after: Stop after this iteration with a checkpoint, keeping the schedule of ``iters``
            (train a long run in time-boxed chunks; the next call resumes).
        ema_decay: Keep an exponential moving average of the weights with this decay (e.g. 0.99);
            validation and ``best_model`` then use the averaged weights, and ``last/model_ema.pdparams``
            carries it across a resume. A run resumed without it goes on without EMA.
        init_weights: Start from these weights (fine-tuning; strict load) instead of random
            initialisation; also the config's ``init_weights`` key. Ignored when resuming.

    Returns:
        The final state (iteration, last loss, best validation mIoU).
    """
    cfg = load_config(config)
    if threads:
        paddle.base.core.set_num_threads(int(threads))
    iters = int(iters or cfg.get("iters", 1000))
    batch_size = int(batch_size or cfg.get("batch_size", 8))
    val_every = save_every if val_every is None else val_every
    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    paddle.seed(seed)
    model = build_component(cfg["model"])
    train_ds = build_component(cfg["train_dataset"])
    val_ds = build_component(cfg["val_dataset"]) if cfg.get("val_dataset") and val_every else None
    losses, coef = _losses(cfg)
    opt, sched = _optimizer(cfg, model, iters)
    state: dict[str, Any] = {"iter": 0, "best_miou": -1.0, "best_iter": 0, "seconds": 0.0,
                             "config": str(config), "iters": iters, "batch_size": batch_size, "seed": seed}
    last = _resume_dir(save_dir) if resume else None
    if last is not None:
        model.set_state_dict(safe_load(last / "model.pdparams", tensors=True))
        opt.set_state_dict(_opt_state_by_structure(model, safe_load(last / "model.pdopt", tensors=True), False))
        state.update(json.loads((last / "state.json").read_text()))
        state["iters"] = iters
        seed = int(state.get("seed", seed))
        # the optimizer state carries the scheduler's position; step only what it lacks (never twice)
        while sched.last_epoch < state["iter"]:
            sched.step()
        if log is not None:
            log({"resumed_from": str(last), "iter": state["iter"]})
    else:
        init_weights = init_weights or cfg.get("init_weights")
        if init_weights:
            from segcam.models.weights import load_weights

            load_weights(model, init_weights)
            state["init_weights"] = str(init_weights)
    _trim_log(save_dir / "train.log", state["iter"])
    ema = None
    if ema_decay:
        saved = last / "model_ema.pdparams" if last is not None else None
        if saved is not None and saved.is_file() and state["iter"] > 0:
            ema = WeightEMA(model, ema_decay, safe_load(saved, tensors=True), state.get("ema_updates", 0))
        else:
            ema = WeightEMA(model, ema_decay)
            state["ema_started_at"] = state["iter"]
        state["ema_decay"] = ema_decay
    log_fh = open(save_dir / "train.log", "a")
    model.train()
    t_start = time.time() - state["seconds"]
    running: list[float] = []
    it = state["iter"]
    end = min(iters, stop_after) if stop_after else iters
    try:
        while it < end:
            _seed_iteration(seed, it)
            img, label = _batch(train_ds, train_ds.batch_indices(it, batch_size, seed))
            logits = model(img)
            if len(logits) < len(losses):
                raise ValueError(f"model returned {len(logits)} outputs but the config has {len(losses)} losses")
            loss = sum(c * fn(lg, label) for c, fn, lg in zip(coef, losses, logits))
            loss.backward()
            opt.step()
            opt.clear_grad()
            sched.step()
            if ema is not None:
                ema.update()
            it += 1
            running.append(float(loss))
            if it % log_every == 0 or it == iters:
                rec = {"iter": it, "loss": float(np.mean(running)), "lr": float(opt.get_lr()),
                       "seconds": round(time.time() - t_start, 1)}
                running.clear()
                log_fh.write(json.dumps(rec) + "\n")
                log_fh.flush()
                if log is not None:
                    log(rec)
            if it % save_every == 0 or it == end:
                state.update(iter=it, seconds=round(time.time() - t_start, 1))
                if ema is not None:
                    state["ema_updates"] = ema.updates
                if val_ds is not None and (it % val_every == 0 or it == iters):
                    with ema.applied() if ema is not None else contextlib.nullcontext():
                        res = validate(model, val_ds)
                        model.train()
                        rec = {"iter": it, "val_miou": res["miou"], "val_crack_iou": res["crack_iou"]}
                        if len(res["per_set"]) > 1:
                            rec["val_per_set"] = res["per_set"]
                        if ema is not None:
                            rec["ema"] = True
                        log_fh.write(json.dumps(rec) + "\n")
                        log_fh.flush()
                        if log is not None:
                            log(rec)
                        if res["miou"] > state["best_miou"]:
                            state.update(best_miou=res["miou"], best_iter=it)
                            _save_checkpoint(save_dir, "best_model", model, None, {**state, "val": res})
                _save_checkpoint(save_dir, "last", model, opt, state, ema)
    finally:
        log_fh.close()
    return state


def predict_mask(model: Any, rgb: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Argmax class map (H x W, uint8) of one RGB image; the model must be in eval mode.

    Args:
        model: A segmentation network in eval mode.
        rgb: H x W x 3 uint8 image.
        scale: Test-time scale: the image is resized by this factor (bilinear) before the network and the
            logits are resized back to H x W (bilinear) before the argmax. 1 runs the image as it is.

    Raises:
        ValueError: ``scale`` is not a positive number.
    """
    import cv2

    if not scale > 0:
        raise ValueError(f"scale must be a positive number, got {scale}")
    from segcam.models.zoo import NETWORK_SIZE_MULTIPLE

    ensure_dygraph()
    h, w = rgb.shape[:2]
    x = rgb if scale == 1 else cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))),
                                          interpolation=cv2.INTER_LINEAR)
    # a network that takes only multiples of k (DDRNet: 8) sees the image reflected to the next multiple; the
    # logits of the padding are cut off again
    k = NETWORK_SIZE_MULTIPLE.get(type(getattr(model, "network", model)).__name__, 1)
    xh, xw = x.shape[:2]
    if k > 1 and (xh % k or xw % k):
        x = cv2.copyMakeBorder(x, 0, -xh % k, 0, -xw % k, cv2.BORDER_REFLECT_101)
    with paddle.no_grad():
        logits = main_logits(model(paddle.to_tensor(normalize(x))))[:, :, :xh, :xw]
        if scale != 1:
            logits = paddle.nn.functional.interpolate(logits, size=[h, w], mode="bilinear", align_corners=False)
    return logits.argmax(axis=1)[0].numpy().astype(np.uint8)


def evaluate(model: Any, pairs: list[Pair], on_image: Callable[[Pair, dict[str, float]], None] | None = None,
             progress: Progress | None = None, scale: float = 1.0) -> dict[str, Any]:
    """Full-frame evaluation: pixel confusion accumulated over all pairs.

    Args:
        model: A segmentation network (set to eval mode here).
        pairs: Image/mask pairs.
        on_image: Called with each pair and its own scores (for per-image CSVs).
        progress: Told as each image is scored (:class:`segcam.utils.progress.Progress`).
        scale: Test-time scale for every image (see :func:`predict_mask`); scores are always taken at the
            original size against the original mask.

    Returns:
        ``scores`` of the accumulated matrix plus ``images`` (count).
    """
    model.eval()
    cm = ConfusionMatrix(2)
    progress = progress or NullProgress()
    progress.start(len(pairs), "evaluate")
    for pair in pairs:
        rgb = read_image(pair.image, max_side=8192)
        label = load_mask(pair.mask)
        pred = predict_mask(model, rgb, scale)
        one = cm.update(pred, label)
        if on_image is not None:
            on_image(pair, scores(one))
        progress.advance()
    progress.close()
    out: dict[str, Any] = scores(cm.matrix)
    out["images"] = len(pairs)
    return out
