"""Deployment export: Paddle inference models and ONNX, each verified against dygraph right after writing.

``export_model`` writes into a temporary folder next to the destination, runs the exported model on a
real image, compares its logits with the dygraph network's and only then renames the folder into place:
an export that fails verification leaves nothing behind.

The Paddle program is written in the classic ``model.pdmodel`` format, not Paddle 3's PIR ``model.json``:
Paddle 3.3.1's PIR executor cannot run these graphs with oneDNN (``NotImplementedError:
ConvertPirAttribute2RuntimeAttribute`` on the bilinear resize attributes), while the classic program runs
with oneDNN on its old executor and matches dygraph to about 1e-6. Folders holding a ``model.json`` (older
exports) still load, with oneDNN off when it fails. Models whose layers do not convert to a classic program
(BiSeNetV2's sigmoid in Paddle 3.3.1) are saved as PIR programs, recorded as ``"program": "pir"``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import paddle

from segcam.cam.engine import check_input_size, nearest_sizes
from segcam.cam.hooks import ensure_dygraph
from segcam.data.images import normalize

__all__ = ["FORMATS", "TOLERANCE", "ExportError", "ExportReport", "Predictor", "export_model", "load_predictor"]

FORMATS = ("paddle", "onnx")
#: Largest |exported - dygraph| logit difference accepted (float32 kernels differ in summation order).
TOLERANCE = 1e-3


class ExportError(ValueError):
    """An export request that cannot be honoured, or an export that failed verification."""


@dataclass(frozen=True)
class ExportReport:
    """What was exported and how well it matches dygraph."""

    model: str
    format: str
    size: tuple[int, int]
    path: str
    max_abs_diff: float
    tolerance: float
    onednn: bool
    seconds: float


class Predictor:
    """Runs an exported model (Paddle Inference or onnxruntime) on normalised N x 3 x H x W float32 input."""

    def __init__(self, folder: str | Path, threads: int = 2, onednn: bool = True, device: str = "cpu") -> None:
        folder = Path(folder)
        _check_device(device)
        self.device = device
        meta_file = folder / "segcam_export.json"
        if not meta_file.is_file():
            raise ExportError(f"{folder} is not a segcam export (no segcam_export.json); run segcam export first")
        self.meta = json.loads(meta_file.read_text())
        self.folder = folder
        self.format = self.meta["format"]
        self.size = tuple(self.meta["size"])
        self.mean, self.std = tuple(self.meta["mean"]), tuple(self.meta["std"])
        self.onednn = False
        if self.format == "onnx":
            try:
                import onnxruntime as ort
            except ImportError:
                raise ExportError("running ONNX exports needs onnxruntime: pip install 'segcam[export]'") from None
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.log_severity_level = 3  # errors only (not the unused-initializer notes of paddle2onnx graphs)
            providers = ["CPUExecutionProvider"]
            if device == "gpu":
                if "CUDAExecutionProvider" not in ort.get_available_providers():
                    raise ExportError("onnxruntime here has no CUDA provider; pip install onnxruntime-gpu for --device gpu")
                providers.insert(0, "CUDAExecutionProvider")
            self.session = ort.InferenceSession(str(folder / "model.onnx"), opts, providers=providers)
            self.input_name = self.session.get_inputs()[0].name
        else:
            self.predictor, self.onednn = _paddle_predictor(folder, threads, onednn and device == "cpu", device)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Logits N x C x H x W for normalised input of the exported size."""
        return self.run(x)[0]

    def run(self, x: np.ndarray, release: bool = False) -> list[np.ndarray]:
        """Every output for normalised input of the exported size.

        The logits, then (an evidence export) the activations of the layers in ``meta["layers"]`` and their
        LayerCAM maps of the predicted ``meta["category"]``. ``release``: give the runtime's working memory
        back after this run (the last tile of a photo: the next stage needs the memory, and the next photo's
        first tile takes it again).
        """
        x = np.ascontiguousarray(x, dtype=np.float32)
        if tuple(x.shape[2:]) != self.size:
            raise ExportError(f"this export takes {self.size[0]}x{self.size[1]} (H x W) input, got {x.shape[2]}x{x.shape[3]}")
        if self.format == "onnx":
            options = None
            if release:
                import onnxruntime as ort

                options = ort.RunOptions()
                options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "gpu:0" if self.device == "gpu" else "cpu:0")
            return self.session.run(None, {self.input_name: x}, options)
        p = self.predictor
        h = p.get_input_handle(p.get_input_names()[0])
        h.reshape(list(x.shape))
        h.copy_from_cpu(x)
        p.run()
        outs = [p.get_output_handle(name).copy_to_cpu() for name in p.get_output_names()]
        if release:
            p.try_shrink_memory()
        return outs

    def predict_rgb(self, rgb: np.ndarray) -> np.ndarray:
        """Logits for one H x W x 3 uint8 image of the exported size."""
        return self(normalize(rgb, self.mean, self.std))


def _check_device(device: str) -> None:
    if device not in ("cpu", "gpu"):
        raise ExportError(f"unknown device {device!r}; use cpu or gpu")
    if device == "gpu" and not paddle.is_compiled_with_cuda():
        raise ExportError("--device gpu needs a CUDA build of Paddle (paddlepaddle-gpu); this one is CPU-only")


def _paddle_predictor(folder: Path, threads: int, onednn: bool, device: str = "cpu") -> tuple[Any, bool]:
    from paddle import inference

    program = _program_file(folder)
    probe = np.zeros((1, 3, *json.loads((folder / "segcam_export.json").read_text())["size"]), np.float32)
    for use_onednn in ([True, False] if onednn else [False]):
        cfg = inference.Config(str(program), str(folder / "model.pdiparams"))
        if program.suffix == ".pdmodel":
            cfg.enable_new_ir(False)  # a classic program runs on the classic executor (oneDNN works there)
        if device == "gpu":
            cfg.enable_use_gpu(256, 0)  # 256 MB initial pool on GPU 0
        else:
            cfg.disable_gpu()
        cfg.disable_glog_info()
        cfg.set_cpu_math_library_num_threads(threads)
        if use_onednn:
            cfg.enable_mkldnn()
        else:
            cfg.disable_mkldnn()
        pred = inference.create_predictor(cfg)
        try:  # PIR programs (model.json) fail with oneDNN in Paddle 3.3.1 (bilinear resize attributes)
            h = pred.get_input_handle(pred.get_input_names()[0])
            h.reshape(list(probe.shape))
            h.copy_from_cpu(probe)
            pred.run()
            return pred, use_onednn
        except (NotImplementedError, RuntimeError, ValueError):
            if not use_onednn:
                raise
    raise ExportError("could not create a Paddle Inference predictor")  # pragma: no cover


def _program_file(folder: Path) -> Path:
    return folder / "model.json" if (folder / "model.json").is_file() else folder / "model.pdmodel"


@contextlib.contextmanager
def _classic_program() -> Any:
    """Make ``paddle.jit.save`` write a classic ``.pdmodel`` program; PIR is switched back on afterwards.

    Paddle's own ``OldIrGuard`` also enters static mode, which ``jit.save`` of a dygraph layer refuses,
    so only the IR switch is taken from it.
    """
    from paddle import pir_utils

    was_pir = bool(paddle.get_flags(["FLAGS_enable_pir_api"])["FLAGS_enable_pir_api"])
    if was_pir:
        paddle.set_flags({"FLAGS_enable_pir_api": False})
        pir_utils._switch_to_old_ir_()
    try:
        yield
    finally:
        if was_pir:
            paddle.set_flags({"FLAGS_enable_pir_api": True})
            pir_utils._switch_to_pir_()


def load_predictor(folder: str | Path, threads: int = 2, onednn: bool = True, device: str = "cpu") -> Predictor:
    """Open an export folder written by :func:`export_model`.

    Args:
        folder: The export folder (holds ``segcam_export.json``).
        threads: CPU threads (Paddle Inference math library, onnxruntime intra-op).
        onednn: Use oneDNN kernels for Paddle Inference on CPU (falls back to plain kernels if they fail).
        device: ``cpu`` or ``gpu`` (a CUDA build of Paddle; onnxruntime-gpu for ONNX).
    """
    return Predictor(folder, threads, onednn, device)


def export_model(model: Any, out_dir: str | Path, fmt: str = "paddle", size: tuple[int, int] = (400, 400),
                 verify_image: np.ndarray | None = None, overwrite: bool = False, outputs: str = "logits",
                 category: int = 1) -> ExportReport:
    """Export a ZooModel for deployment and verify it on ``verify_image``.

    Args:
        model: A :class:`segcam.models.zoo.ZooModel` (eval mode).
        out_dir: Destination folder (created; must not exist unless ``overwrite``).
        fmt: ``paddle`` (Paddle Inference program + params) or ``onnx``.
        size: Fixed input H, W.
        verify_image: H x W x 3 uint8 RGB of ``size`` (default: a fixed random image).
        overwrite: Replace an existing export.
        outputs: ``logits``, or ``evidence``: the logits, the activations of the network's evidence layers and
            their LayerCAM maps of the predicted ``category`` (:mod:`segcam.models.split`; ``meta["layers"]``
            names the layers), every output verified.
        category: The class an ``evidence`` export explains.

    Raises:
        ExportError: Unknown format, bad size, missing export dependencies, existing output, a network
            without an evidence split (``evidence``), or a verification difference above :data:`TOLERANCE` (nothing is
            left behind then).
    """
    from segcam.models.split import split_for

    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    split = split_for(model) if outputs == "evidence" else None
    if outputs not in ("logits", "evidence") or (outputs == "evidence" and split is None):
        raise ExportError(f"cannot export outputs={outputs!r} of {getattr(model, 'name', 'this model')}: use 'logits'"
                          + ("" if outputs != "evidence" else " (segcam exports the evidence of HrSegNet only)"))
    h, w = int(size[0]), int(size[1])
    if min(h, w) < 32:
        raise ExportError(f"export size {h}x{w} is below 32 px; every zoo model works from 32x32 up (400x400 is the paper's)")
    try:
        check_input_size(model, (h, w))
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise ExportError(f"{out} already exists; pass --overwrite or choose another --out")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)  # like every other command's --out
    except OSError as exc:
        raise ExportError(f"cannot create the parent folder {out.parent} of --out ({exc.strerror or exc})") from None
    k = int(getattr(model, "onnx_size_multiple", 1))
    if fmt == "onnx" and k > 1 and (h % k or w % k):
        raise ExportError(f"{getattr(model, 'name', 'this model')}'s ONNX export is exact only for sides that are "
                          f"multiples of {k} (its pyramid pooling); got {h}x{w}: use e.g. {nearest_sizes(h, w, k)}, "
                          "or --format paddle")
    if fmt == "onnx":
        try:
            import onnxruntime  # noqa: F401
            import paddle2onnx  # noqa: F401
        except ImportError:  # paddle2onnx would otherwise try to pip-install onnxruntime at run time
            raise ExportError("ONNX export needs paddle2onnx and onnxruntime: pip install 'segcam[export]'") from None
    ensure_dygraph()
    net = getattr(model, "network", model)
    if verify_image is None:
        verify_image = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    if verify_image.shape[:2] != (h, w):
        raise ExportError(f"verification image is {verify_image.shape[1]}x{verify_image.shape[0]}, export size is {w}x{h}")
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            spec = [paddle.static.InputSpec([1, 3, h, w], "float32", "x")]
            graph = split.graph(net, (h, w), category) if split is not None else _MainLogit(net)
            try:
                with _classic_program():
                    paddle.jit.save(graph, str(tmp / "model"), input_spec=spec)
                program = "classic"
            except Exception:  # noqa: BLE001 - some PaddleSeg layers (BiSeNetV2's sigmoid) only convert under PIR
                for f in tmp.iterdir():
                    f.unlink()
                paddle.jit.save(graph, str(tmp / "model"), input_spec=spec)
                program = "pir"
        meta = {"schema": "segcam.models.export", "schema_version": 1, "model": getattr(model, "name", type(net).__name__),
                "format": fmt, "size": [h, w], "mean": list(getattr(model, "mean", (0.5,) * 3)),
                "std": list(getattr(model, "std", (0.5,) * 3)), "weights_sha256": getattr(model, "weights_sha256", None),
                "tolerance": TOLERANCE, "program": program, "outputs": outputs,
                "layers": list(split.layers) if split is not None else [],
                "category": category if split is not None else None}
        (tmp / "segcam_export.json").write_text(json.dumps(meta, indent=2))
        if fmt == "onnx":
            import paddle2onnx

            program = _program_file(tmp)
            with contextlib.redirect_stdout(io.StringIO()), _quiet_fd_stdout():
                # paddle2onnx's default Polygraphy constant folding sets POLYGRAPHY_AUTOINSTALL_DEPS=1 and would
                # pip-install onnx_graphsurgeon at run time: skip it (onnxruntime folds constants itself)
                paddle2onnx.export(str(program), str(tmp / "model.pdiparams"), str(tmp / "model.onnx"),
                                   opset_version=17, enable_optimize=False, optimize_tool="none")
            for f in tmp.iterdir():
                if f.name not in ("model.onnx", "segcam_export.json"):
                    f.unlink()
        pred = Predictor(tmp)
        x = normalize(verify_image, meta["mean"], meta["std"])
        with paddle.no_grad():
            refs = graph(paddle.to_tensor(x))
            refs = [r.numpy() for r in (refs if isinstance(refs, (list, tuple)) else [refs])]
        got = pred.run(x)
        diff = max(float(np.abs(g - r).max()) for g, r in zip(got, refs)) if len(got) == len(refs) else float("inf")
        if not np.isfinite(diff) or diff > TOLERANCE:
            raise ExportError(f"export verification failed: max |exported - dygraph| = {diff:.3g} > {TOLERANCE}; "
                              "nothing was written")
        report = ExportReport(meta["model"], fmt, (h, w), str(out), diff, TOLERANCE, pred.onednn,
                              round(time.perf_counter() - t0, 2))
        meta["verification"] = {"max_abs_diff": diff, "onednn": pred.onednn}
        (tmp / "segcam_export.json").write_text(json.dumps(meta, indent=2))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
        return report
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _quiet_fd_stdout() -> Any:
    """Silence file descriptor 1 (paddle2onnx's C++ code prints there, below Python's sys.stdout)."""
    import sys

    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


class _MainLogit(paddle.nn.Layer):
    """Wraps a segmentation network so the exported graph returns only the main logit map."""

    def __init__(self, net: paddle.nn.Layer) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        out = self.net(x)
        return out[0] if isinstance(out, (list, tuple)) else out
