"""Base class of the CAM methods: a method turns activations and gradients into maps."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np

if TYPE_CHECKING:
    from segcam.cam.scores import CamContext

__all__ = ["BaseCAM", "PerturbationCAM"]


class BaseCAM:
    """A CAM method: subclasses override :meth:`weights` or, if element-wise, :meth:`cam`.

    Activations ``A`` and gradients ``G`` are N x K x h x w arrays: the hooked
    layer's output and the gradient of the target score (the summed class
    logits over the target region) with respect to it.
    """

    name: ClassVar[str] = ""
    #: How figures and pages title the method (one name per method everywhere).
    display_name: ClassVar[str] = ""
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


class PerturbationCAM(BaseCAM):
    """Gradient-free methods: channel weights from extra forward passes, ``batch_size`` inputs at a time.

    Subclasses override :meth:`image_weights` (the K channel weights of one image).

    Args:
        batch_size: Perturbed inputs per forward pass (1 = one channel at a time).
    """

    uses_gradients: ClassVar[bool] = False

    def __init__(self, batch_size: int = 16) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size

    def image_weights(self, i: int, activations: np.ndarray, ctx: CamContext) -> np.ndarray:
        """Channel weights (K,) of image ``i`` whose activations are K x h x w."""
        raise NotImplementedError

    def cam(self, activations: np.ndarray, grads: np.ndarray | None, ctx: CamContext | None = None) -> np.ndarray:
        if ctx is None:
            raise ValueError(f"{self.name} needs the model: call it through segcam.explain")
        out = np.zeros((activations.shape[0], *activations.shape[2:]), np.float32)
        for i, act in enumerate(activations):
            w = self.image_weights(i, act, ctx)
            out[i] = np.maximum(np.einsum("k,khw->hw", w, act), 0.0)
        return out

    def passes(self, k: int) -> int:
        """Forward passes per image for a layer of ``k`` channels (the unperturbed one and one per batch)."""
        return 1 + len(self.batches(k))

    def batches(self, k: int) -> list[list[int]]:
        """Channel indices split into forward batches."""
        return [list(range(j, min(k, j + self.batch_size))) for j in range(0, k, self.batch_size)]
