"""Forward hooks that capture layer outputs, always removed (also after an exception)."""

from __future__ import annotations

import contextlib
from types import TracebackType
from typing import Iterator

import paddle

__all__ = ["ActivationCapture", "LayerOutputError", "count_hooks", "ensure_dygraph", "frozen_parameters"]


def ensure_dygraph() -> None:
    """Switch the current thread to Paddle's dynamic-graph mode.

    Paddle keeps its mode per thread and a new thread (a Streamlit script run, a web worker) starts in
    static mode, where calling a dygraph model fails with "must be Value, but got EagerParamBase".
    """
    if not paddle.in_dynamic_mode():
        paddle.disable_static()


@contextlib.contextmanager
def frozen_parameters(net: paddle.nn.Layer) -> Iterator[None]:
    """Within the block no parameter of ``net`` asks for a gradient; each one's own setting comes back after.

    With frozen parameters and an input that stops gradients, a forward records no backward graph for the
    layers before the first captured activation (see :class:`ActivationCapture`'s ``leaves``), so it keeps
    none of their intermediate tensors.
    """
    params = [p for p in net.parameters() if not p.stop_gradient]
    try:
        for p in params:
            p.stop_gradient = True
        yield
    finally:
        for p in params:
            p.stop_gradient = False


class LayerOutputError(ValueError):
    """A hooked layer whose output cannot be explained (not one tensor, or run several times)."""


class ActivationCapture:
    """Context manager recording the output tensor of each given layer during a forward.

    Only forward-post hooks are added; the model's mode and parameters are not
    touched. Hooks are removed in ``__exit__``, whether or not an exception
    was raised, and the exception is never swallowed.

    Args:
        layers: Dotted name -> layer.
        indices: Name -> element index, for layers whose output is a tuple/list (``backbone[3]``).
        leaves: Make each captured layer's float inputs that record no gradient leaves that do, so that a
            forward under :func:`frozen_parameters` builds the backward graph from the captured layers' inputs on
            only: gradients with respect to their outputs are the same (paths inside a layer, such as a backbone
            whose later stages use an output it returns, are kept), and the layers before keep no tensors for it.

    Example:
        >>> with ActivationCapture({"head": net.head}) as cap:
        ...     logits = net(x)
        >>> cap.activations["head"].shape
    """

    def __init__(self, layers: dict[str, paddle.nn.Layer], indices: dict[str, int] | None = None,
                 leaves: bool = False) -> None:
        self.layers = dict(layers)
        self.leaves = leaves
        self.indices = dict(indices or {})
        self.activations: dict[str, paddle.Tensor] = {}
        self.calls: dict[str, int] = {}
        self._handles: list = []

    def _hook(self, name: str):  # noqa: ANN202 - Paddle hook signature
        def hook(layer: paddle.nn.Layer, inputs: object, output: object) -> None:
            self.calls[name] = self.calls.get(name, 0) + 1
            index = self.indices.get(name)
            if index is not None:
                if not isinstance(output, (list, tuple)) or not 0 <= index < len(output):
                    n = len(output) if isinstance(output, (list, tuple)) else 1
                    raise LayerOutputError(f"layer {name!r}: its output has {n} element(s), so [{index}] does not exist")
                output = output[index]
            if isinstance(output, (list, tuple)) and len(output) == 1:
                output = output[0]
            if not isinstance(output, paddle.Tensor):
                kind = f"{type(output).__name__} of {len(output)}" if isinstance(output, (list, tuple)) else type(output).__name__
                raise LayerOutputError(
                    f"layer {name!r} returns a {kind}, not one tensor; pick one element, e.g. {name}[0], or one of "
                    "its sublayers (segcam layers --model ...)"
                )
            self.activations[name] = output

        return hook

    @staticmethod
    def _make_leaves(layer: paddle.nn.Layer, inputs: object) -> None:
        stack = [inputs]
        while stack:
            item = stack.pop()
            if isinstance(item, (list, tuple)):
                stack.extend(item)
            elif isinstance(item, paddle.Tensor) and item.stop_gradient and item.is_floating_point():
                item.stop_gradient = False

    def __enter__(self) -> ActivationCapture:
        try:
            for name, layer in self.layers.items():
                if self.leaves:
                    self._handles.append(layer.register_forward_pre_hook(self._make_leaves))
                self._handles.append(layer.register_forward_post_hook(self._hook(name)))
        except BaseException:
            self.remove()
            raise
        return self

    def remove(self) -> None:
        """Remove every hook this object added (idempotent)."""
        while self._handles:
            self._handles.pop().remove()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.remove()

    def check_single_calls(self) -> None:
        """Raise if a layer did not run, or ran more than once, in the forward.

        Raises:
            LayerOutputError: Naming the layer and the number of calls.
        """
        for name in self.layers:
            n = self.calls.get(name, 0)
            if n == 0:
                raise LayerOutputError(
                    f"layer {name!r} did not run in the forward pass (it is unused in eval mode); pick another layer"
                )
            if n > 1:
                raise LayerOutputError(
                    f"layer {name!r} runs {n} times per forward (a shared module), so its output is ambiguous; "
                    "pick a layer that runs once, e.g. its parent block"
                )


def count_hooks(model: paddle.nn.Layer) -> int:
    """Number of forward pre/post hooks on ``model`` and all its sublayers (for tests and checks)."""
    layers = [model, *model.sublayers()]
    return sum(len(getattr(m, "_forward_post_hooks", {})) + len(getattr(m, "_forward_pre_hooks", {})) for m in layers)
