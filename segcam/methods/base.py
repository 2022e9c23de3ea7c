"""Base class of the CAM methods: a method turns activations and gradients into maps."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np

if TYPE_CHECKING:
    from segcam.engine import CamContext

__all__ = ["BaseCAM"]


class BaseCAM:
    """A CAM method: subclasses override :meth:`weights` or, if element-wise, :meth:`cam`.

    Activations ``A`` and gradients ``G`` are N x K x h x w arrays: the hooked
    layer's output and the gradient of the target score (the summed class
    logits over the target region) with respect to it.
    """

    name: ClassVar[str] = ""
    #: Whether the engine must run the backward pass for this method.
    uses_gradients: ClassVar[bool] = True

    def weights(self, activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
        """Channel weights, N x K."""
        raise NotImplementedError

    def cam(self, activations: np.ndarray, grads: np.ndarray | None, ctx: CamContext | None = None) -> np.ndarray:
        """Raw map, N x h x w: ``ReLU(sum_k w_k A^k)``.

        Args:
            activations: N x K x h x w layer output.
            grads: Gradient of the target score w.r.t. it (None for gradient-free methods).
            ctx: Access to the model for perturbation methods (Score-CAM, Ablation-CAM).
        """
        w = self.weights(activations, grads)
        return np.maximum(np.einsum("nk,nkhw->nhw", w, activations), 0.0).astype(np.float32)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
