"""The fine-tune's training loop: reviewed windows and replay crops, resumable from ``OUT/last``."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import paddle

__all__ = ["CROP_PX", "train_on_windows"]

#: Iterations of linear warm-up.
WARMUP = 10
#: Iterations between resumable checkpoints.
SAVE_EVERY = 25
#: Side of the training crops.
CROP_PX = 256


def _crop(img: np.ndarray, lab: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random :data:`CROP_PX` crop of a window (padded with ignore where the window is smaller), flipped at random."""
    h, w = lab.shape
    ph, pw = max(0, CROP_PX - h), max(0, CROP_PX - w)
    if ph or pw:
        img = np.pad(img, ((0, ph), (0, pw), (0, 0)))
        lab = np.pad(lab, ((0, ph), (0, pw)), constant_values=255)
        h, w = lab.shape
    y, x = rng.integers(0, h - CROP_PX + 1), rng.integers(0, w - CROP_PX + 1)
    img, lab = img[y:y + CROP_PX, x:x + CROP_PX], lab[y:y + CROP_PX, x:x + CROP_PX]
    if rng.random() < 0.5:
        img, lab = img[:, ::-1], lab[:, ::-1]
    return img, lab


def _batch(model: Any, wins: Sequence[tuple[np.ndarray, np.ndarray]], replay: Any, size: int, seed: int,
           it: int) -> tuple[paddle.Tensor, paddle.Tensor]:
    """Batch ``it``: a pure function of (seed, it). Half reviewed crops, half replay (all reviewed without replay)."""
    import random

    from segcam.data.images import normalize

    rng = np.random.default_rng([seed, it])
    n_rev = size - size // 2 if replay is not None else size
    imgs, labs = [], []
    for k in rng.integers(0, len(wins), n_rev):
        img, lab = _crop(*wins[int(k)], rng)
        imgs.append(normalize(np.ascontiguousarray(img)[None], model.mean, model.std)[0])
        labs.append(np.ascontiguousarray(lab).astype(np.int64))
    if replay is not None:
        s = int(np.random.SeedSequence([seed, it, 1]).generate_state(1)[0])
        random.seed(s)
        np.random.seed(s)  # PaddleSeg's transforms draw from these
        for i in replay.batch_indices(it, size // 2, seed):
            img, lab = replay[int(i)]
            imgs.append(img)
            labs.append(lab)
    return paddle.to_tensor(np.stack(imgs).astype(np.float32)), paddle.to_tensor(np.stack(labs))


def _lr(base: float, it: int, iters: int) -> float:
    if it < WARMUP:
        return base * (it + 1) / WARMUP
    return base * (1 - (it - WARMUP) / max(1, iters - WARMUP)) ** 0.9


def _save(out: Path, model: Any, opt: Any, state: dict[str, Any]) -> None:
    from segcam.training.loop import _atomic_save_dir, _opt_state_by_structure

    tmp = out / ".last.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    paddle.save(model.network.state_dict(), str(tmp / "model.pdparams"))
    paddle.save(_opt_state_by_structure(model.network, opt.state_dict(), True), str(tmp / "model.pdopt"))
    (tmp / "state.json").write_text(json.dumps(state))
    _atomic_save_dir(tmp, out / "last")


def train_on_windows(model: Any, wins: Sequence[tuple[np.ndarray, np.ndarray]], replay: Any, out: Path, iters: int,
                     batch_size: int, lr: float, seed: int, log: Callable[[str], None],
                     crack_weight: float = 3.0) -> dict[str, Any]:
    """Fine-tune ``model.network`` in place; writes ``out/weights.pdparams``; returns the final state.

    The loss is class-weighted cross-entropy (``crack_weight`` on crack pixels) plus soft Dice, over the pixels the
    labels do not ignore.

    Raises:
        ValueError: No window to learn from, or a resumable state of another fine-tune in ``out``.
    """
    from segcam.cam.engine import main_logits
    from segcam.models.weights import safe_load
    from segcam.training.loop import _opt_state_by_structure, _resume_dir
    from segcam.training.losses import CrossEntropyLoss, DiceLoss

    if not wins:
        raise ValueError("no reviewed window to learn from: the verdicts' cracks have no pixels in the run's labels")
    out.mkdir(parents=True, exist_ok=True)
    net = model.network
    params = [p for p in net.parameters() if not p.stop_gradient]
    opt = paddle.optimizer.Momentum(learning_rate=lr, momentum=0.9, parameters=params,
                                    weight_decay=paddle.regularizer.L2Decay(4e-5))
    state = {"iter": 0, "iters": iters, "seed": seed, "windows": len(wins), "seconds": 0.0}
    last = _resume_dir(out)
    if last is not None:
        saved = json.loads((last / "state.json").read_text())
        if (saved.get("windows"), saved.get("seed")) != (len(wins), seed):
            raise ValueError(f"{out} holds another fine-tune (other verdicts or seed); choose another --out")
        net.set_state_dict(safe_load(last / "model.pdparams", tensors=True))
        opt.set_state_dict(_opt_state_by_structure(net, safe_load(last / "model.pdopt", tensors=True), False))
        state.update(saved, iters=iters)
        log(f"resumed at iteration {state['iter']}")
    ce, dice = CrossEntropyLoss(weight=[1.0, crack_weight]), DiceLoss()
    net.train()
    for layer in net.sublayers():  # batch-norm statistics stay the base weights': a few hundred crops of one survey
        if isinstance(layer, paddle.nn.layer.norm._BatchNormBase):  # would move them far from what the rest expects
            layer.eval()
    t0 = time.time() - state["seconds"]
    try:
        for it in range(state["iter"], iters):
            img, lab = _batch(model, wins, replay, batch_size, seed, it)
            opt.set_lr(_lr(lr, it, iters))
            logits = main_logits(net(img), tuple(img.shape[2:]))
            loss = ce(logits, lab) + dice(logits, lab)
            loss.backward()
            opt.step()
            opt.clear_grad()
            state.update(iter=it + 1, seconds=round(time.time() - t0, 1), loss=float(loss))
            if (it + 1) % SAVE_EVERY == 0 or it + 1 == iters:
                _save(out, model, opt, state)
                log(f"iteration {it + 1}/{iters}, loss {float(loss):.3f}, {state['seconds'] / 60:.1f} min")
    finally:
        net.eval()
    from segcam.utils.files import atomic_write

    atomic_write(out / "weights.pdparams", lambda p: paddle.save(net.state_dict(), str(p)))
    return state
