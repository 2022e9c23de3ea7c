"""Exponential moving average (EMA) of a model's weights, validated and saved instead of the raw weights.

Small-batch CPU runs (batch 8) swing a lot from one checkpoint to the next; the EMA of the weights
smooths those swings, as PaddleSeg's ``use_ema`` and timm's ``ModelEma`` do.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import paddle

__all__ = ["WeightEMA"]


class WeightEMA:
    """Shadow copy ``s <- d s + (1 - d) w`` of every float parameter and buffer (others are copied).

    The decay warms up as ``d_t = min(decay, (1 + t) / (10 + t))`` so the first updates follow the
    model closely (t counts updates, and is kept in checkpoints so a resumed run continues the schedule).

    Args:
        model: The layer being trained.
        decay: Target decay in (0, 1); 0.99 averages over about the last 100 updates.
        shadow: A saved shadow state to continue from (default: the model's current weights).
        updates: How many updates ``shadow`` has seen.
    """

    def __init__(self, model: paddle.nn.Layer, decay: float, shadow: dict[str, paddle.Tensor] | None = None,
                 updates: int = 0) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.model, self.decay, self.updates = model, float(decay), int(updates)
        current = model.state_dict()
        if shadow is not None and set(shadow) != set(current):
            raise ValueError("the saved EMA weights do not match the model's state keys")
        src = shadow if shadow is not None else current
        self.shadow = {k: paddle.to_tensor(src[k].numpy()) for k in current}

    def update(self) -> None:
        """Fold the model's current weights into the shadow."""
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        self.updates += 1
        with paddle.no_grad():
            for k, v in self.model.state_dict().items():
                if paddle.is_floating_point(v):
                    self.shadow[k] = self.shadow[k] * d + v.detach() * (1.0 - d)
                else:
                    self.shadow[k] = v.detach().clone()

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Load the shadow weights into the model for the block, then restore the trained weights."""
        backup = {k: paddle.to_tensor(v.numpy()) for k, v in self.model.state_dict().items()}
        self.model.set_state_dict(self.shadow)
        try:
            yield
        finally:
            self.model.set_state_dict(backup)
