"""segcam: Seg-Grad-CAM explanations for crack-segmentation networks on PaddlePaddle.

Example:
    >>> import segcam
    >>> model = segcam.create_model("hrsegnet_b48")
    >>> result = segcam.explain(model, segcam.read_image("crack.jpg"), layers=["seg_head"])
    >>> result.save("out/")
"""

from __future__ import annotations

import os as _os
import warnings as _warnings

from segcam.version import __version__

# Paddle's C++ log lines ("New Executor is Running.", export-time warnings about graph conversion) would
# interleave with segcam's own output and read like errors; keep its errors. Read when paddle is imported, so it
# must be set before; a user's own setting wins (GLOG_minloglevel=0 brings them all back).
_os.environ.setdefault("GLOG_minloglevel", "2")

# Paddle warns at import time that ccache (a C++ build cache) is missing: noise for segcam users.
_warnings.filterwarnings("ignore", message="No ccache found", category=UserWarning)

try:
    import paddle  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "segcam needs PaddlePaddle: pip install paddlepaddle==3.3.1 (CPU) or the matching "
        "paddlepaddle-gpu wheel (see README, 'GPU')"
    ) from exc

from segcam.cam.engine import explain
from segcam.cam.layers import list_layers, resolve_layers
from segcam.cam.methods import get_method, list_methods
from segcam.cam.overlay import heatmap, overlay
from segcam.cam.result import Explanation, LayerMap, read_map
from segcam.cam.targets import BoxTarget, ImageTarget, MaskTarget, PixelTarget, PredictedTarget, parse_target
from segcam.data.images import ImageError, read_image
from segcam.models.weights import WeightsError, load_weights
from segcam.models.zoo import ZooModel, create_model, list_models, load_paddleseg

__all__ = [
    "BoxTarget", "Explanation", "ImageError", "ImageTarget", "LayerMap", "MaskTarget", "PixelTarget",
    "PredictedTarget", "WeightsError", "ZooModel", "__version__", "create_model", "explain", "get_method",
    "heatmap", "list_layers", "list_methods", "list_models", "load_paddleseg", "load_weights", "overlay",
    "parse_target", "read_image", "read_map", "resolve_layers",
]
