"""Streamlit-free logic of the segcam app, so it is unit-tested and timed without a browser.

The app computes the maps of *all* selected layers for the current image and target in one pass
(:func:`compute`) and renders views from that cache (:func:`render`): changing the shown layer,
alpha, colormap or normalisation never recomputes.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from segcam.cam.engine import explain, layer_prefix
from segcam.cam.layers import list_layers
from segcam.cam.overlay import heatmap, overlay
from segcam.cam.result import ImageExplanation
from segcam.cam.targets import Target

__all__ = ["AppModel", "Views", "allowed_file", "colorbar", "compute", "crack_table", "crack_thumbs",
           "example_images", "image_key", "inside", "is_slow", "layer_choices", "list_runs", "load_model",
           "load_run", "mark_target", "npy_bytes", "png_bytes", "private_copy", "read_png", "render", "runs_root",
           "serving_refusal", "target_key", "VERDICT_FILTERS", "weights_roots", "zero_map_reason"]

#: Largest image side the app computes on; larger uploads are downscaled with a notice.
APP_MAX_SIDE = 1024
#: Largest upload accepted, in megabytes (also Streamlit's server.maxUploadSize under ``segcam app``).
MAX_UPLOAD_MB = 50
#: Environment variables that ``segcam app`` sets from ``--weights-root`` / ``--runs-root``.
ENV_WEIGHTS_ROOTS = "SEGCAM_APP_WEIGHTS_ROOTS"
ENV_RUNS_ROOT = "SEGCAM_APP_RUNS_ROOT"
#: Set to 1 by ``segcam app --host ADDRESS`` (an explicit choice to serve beyond this machine).
ENV_ALLOW_REMOTE = "SEGCAM_APP_ALLOW_REMOTE"
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def weights_roots() -> list[Path]:
    """Folders the app may read weights and YAML configs from.

    ``$SEGCAM_APP_WEIGHTS_ROOTS`` (``os.pathsep``-separated; ``segcam app`` sets it from ``--weights-root``,
    default the working directory and the shipped weights) if set, else the shipped weights only (a bare
    ``streamlit run`` opens nothing of the working directory).
    """
    import os

    from segcam.models.zoo import PRETRAINED_DIR

    env = os.environ.get(ENV_WEIGHTS_ROOTS)
    roots = [Path(p) for p in env.split(os.pathsep) if p] if env else [PRETRAINED_DIR]
    return [r.resolve() for r in roots]


def runs_root() -> Path | None:
    """The folder under which the app browses run folders (``$SEGCAM_APP_RUNS_ROOT``, which ``segcam app`` sets).

    None when the page was started without it (a bare ``streamlit run``): then no run folder is served.
    """
    import os

    env = os.environ.get(ENV_RUNS_ROOT)
    return Path(env).resolve() if env else None


def list_runs(root: Path, limit: int = 200) -> list[str]:
    """Run folders (holding a ``manifest.json``) under ``root``, relative to it, newest first (two levels deep)."""
    found = []
    for depth in ("*/manifest.json", "*/*/manifest.json"):
        for man in root.glob(depth):
            try:
                inside(root, man.parent.relative_to(root))
            except ValueError:
                continue  # a symlink that leaves the root
            if man.is_file():
                found.append((man.stat().st_mtime, str(man.parent.relative_to(root))))
    return [rel for _, rel in sorted(found, reverse=True)[:limit]]


#: The verdicts the run browser's crack table filters on.
VERDICT_FILTERS = ("confirmed", "rejected", "unreviewed")


def crack_table(run_dir: str | Path) -> list[dict[str, Any]]:
    """A run's ``cracks.csv`` rows with their ``verdict``, the review queue first (lowest ``review_rank``), or []."""
    import csv

    from segcam.survey.verdicts import VerdictError, load_review, verdict_rows

    path = Path(run_dir) / "cracks.csv"
    if not path.is_file() or path.is_symlink():
        return []
    try:
        rows = list(verdict_rows(load_review(run_dir)))  # one read of cracks.csv, with each crack's verdict
    except (VerdictError, OSError):  # not a table verdicts can be kept for: shown as it is, without verdicts
        with open(path, newline="", encoding="utf-8") as fh:
            rows = [{**r, "verdict": ""} for r in csv.DictReader(fh)]
    rows = [{k: _typed(v) for k, v in r.items()} for r in rows]
    return sorted(rows, key=lambda r: r["review_rank"] if isinstance(r.get("review_rank"), int) else 10**9)


def _typed(value: str) -> Any:
    """A CSV cell as an int or float where it is one (sortable columns in the app's table)."""
    for cast in (int, float):
        try:
            return cast(value)
        except (TypeError, ValueError):
            continue
    return value


def crack_thumbs(run_dir: str | Path, name: str, crack: int) -> dict[str, np.ndarray] | None:
    """The thumbnails (photo, mask, map) the run saved for one crack, or None."""
    from segcam.survey.cracks import read_crack_features, read_crack_thumb
    from segcam.utils.files import safe_name

    path = inside(Path(run_dir), f"{safe_name(name)}__cracks.npz")
    if not path.is_file():
        return None
    ids = list(read_crack_features(path)["crack"])
    return read_crack_thumb(path, ids.index(crack) + 1) if crack in ids else None


def serving_refusal(server_address: str | None, client_ip: str | None, allow_remote: bool) -> str | None:
    """Why the page must not be served to this visitor, or None.

    The page is served beyond this machine only when ``segcam app --host`` said so (``allow_remote``).
    A server bound to every interface without that (a ``streamlit run`` outside the repository's
    ``.streamlit/config.toml``) still answers only visitors from 127.0.0.1 / ::1.
    """
    if allow_remote:
        return None
    if client_ip is not None and client_ip not in LOOPBACK and not client_ip.startswith("::ffff:127."):
        return (f"This segcam app serves only this machine (your address {client_ip} is not local). Whoever started "
                "it can allow other machines with `segcam app --host ADDRESS`.")
    return None


def inside(root: Path, rel: str | Path) -> Path:
    """``root / rel`` resolved (symlinks too), refused unless it stays inside ``root``.

    Raises:
        ValueError: An absolute path or ``..`` that leaves ``root``.
    """
    root = Path(root).resolve()
    target = (root / rel).resolve()
    if target != root and root not in target.parents:
        raise ValueError(f"{rel} is outside {root}; only paths inside it are served")
    return target


def allowed_file(path: str, what: str, roots: Sequence[Path] | None = None) -> Path:
    """A user-typed weights/config path, accepted only as a regular file inside one of ``roots``.

    Raises:
        ValueError: Outside every allowed folder, or not a regular file.
    """
    roots = list(roots) if roots is not None else weights_roots()
    for root in roots:
        try:
            cand = inside(root, path)
        except ValueError:
            continue
        if cand.is_file():
            return cand
    raise ValueError(f"{what} {path!r} is not a file inside the folders this app may read "
                     f"({', '.join(map(str, roots))}); start it with `segcam app --weights-root DIR` to allow another")


@dataclass
class AppModel:
    """A model shared by every session, with the lock that serialises hook use on it."""

    model: Any
    lock: threading.Lock
    key: str


def load_model(name: str | None = None, weights: str | None = None, config: str | None = None) -> AppModel:
    """Build a zoo model (``name``) or a PaddleSeg YAML (``config`` + ``weights``) for the app.

    Raises:
        KeyError, FileNotFoundError, ValueError, segcam.models.weights.WeightsError: As the loaders do.
    """
    import warnings

    from segcam.models.zoo import create_model, load_paddleseg

    if weights and weights != "random":
        weights = str(allowed_file(weights, "weights file"))
    if config:
        config = str(allowed_file(config, "config"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if config:
            model = load_paddleseg(config, weights or None)
        else:
            model = create_model(name or "hrsegnet_b48", weights=weights or None)
    return AppModel(model, threading.Lock(), f"{name}|{weights}|{config}")


def layer_choices(model: Any) -> list[str]:
    """Aliases first (``seg_head``...), then every single-tensor 4-D layer in network order."""
    aliases = list(getattr(model, "aliases", {}))
    rows = list_layers(model, (64, 64))
    names = [r.name for r in rows if r.shape is not None and len(r.shape) == 4]
    return aliases + [n for n in names if n not in aliases]


def target_key(target: Any) -> str:
    """Cache key of a target: its description plus a hash of any mask it carries (same name, new content)."""
    parts = [repr(type(target).__name__), repr({k: v for k, v in vars(target).items() if not isinstance(v, np.ndarray)})]
    for v in vars(target).values():
        if isinstance(v, np.ndarray):
            parts.append(image_key(v))
    return hashlib.sha1("|".join(parts).encode()).hexdigest()


def image_key(rgb: np.ndarray) -> str:
    """Content hash of an image (cache key)."""
    return hashlib.sha1(np.ascontiguousarray(rgb).tobytes() + str(rgb.shape).encode()).hexdigest()


def compute(app_model: AppModel, rgb: np.ndarray, layers: Sequence[str], target: Target, method: str,
            score: str = "logit", progress: Any = None) -> ImageExplanation:
    """All requested layers' maps for one image and target, in one pass, under the model's lock."""
    with app_model.lock:
        return explain(app_model.model, rgb, list(layers), target, method, score=score, progress=progress)[0]


def short_weights(model: Any) -> str:
    """A model's weights in a few words: the shipped tag or the file's name, and a 12-character sha256."""
    if model.weights is None:
        return "RANDOMLY INITIALISED (no weights)"
    name = f"{model.name}.{model.tag}" if model.tag else Path(model.weights).name
    return f"{name} · sha256 {model.weights_sha256[:12]}" + (" · PARTIAL load" if model.partial else "")


def predict(app_model: AppModel, rgb: np.ndarray) -> np.ndarray:
    """The model's class map of ``rgb`` (one no-grad forward pass), for choosing targets before explaining."""
    from segcam.training.loop import predict_mask

    with app_model.lock:
        return predict_mask(app_model.model, rgb)


def compute_with_notes(app_model: AppModel, rgb: np.ndarray, layers: Sequence[str], target: Target, method: str,
                       score: str = "logit", progress: Any = None) -> tuple[ImageExplanation, dict[str, list[str]]]:
    """:func:`compute`, with the warnings it raised sorted by the layer they name (``""``: the whole result).

    The page shows each on the tile it concerns instead of leaving it in the server log.
    """
    import warnings

    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        res = compute(app_model, rgb, layers, target, method, score, progress)
    notes: dict[str, list[str]] = {}
    for w in said:
        text = str(w.message)
        layer = next((lay for lay in layers if text.startswith(layer_prefix(lay))), "")
        if layer:
            text = text[len(layer_prefix(layer)):]
        if text not in notes.setdefault(layer, []):
            notes[layer].append(text)
    return res, notes


def private_copy(app_model: AppModel) -> AppModel:
    """A copy of the model with its own lock, for one session's long run (Score-CAM, Ablation-CAM).

    Perturbation methods make hundreds of forward passes; on the shared model they would hold its lock
    for minutes and every other session's cheap rerun would wait. The copy costs the model's memory once
    per session that runs such a method.
    """
    import copy

    from segcam.cam.hooks import ensure_dygraph

    ensure_dygraph()  # Paddle's mode is per thread, and Streamlit runs each session in its own
    with app_model.lock:
        model = copy.deepcopy(app_model.model)
    return AppModel(model, threading.Lock(), app_model.key)


def planned_passes(app_model: AppModel, layers: Sequence[str], method: str) -> list[tuple[str, int | None]]:
    """Forward passes a perturbation method will make per layer for one image (None: channels unknown).

    The channel counts come from one no-grad forward pass of a 64 x 64 input (they do not depend on the size),
    so the page can say how long a run is before Compute is pressed.
    """
    from segcam.cam.layers import resolve_layers
    from segcam.cam.methods import get_method

    cam_method = get_method(method)
    if not hasattr(cam_method, "passes"):
        return [(layer, 0) for layer in layers]
    with app_model.lock:
        resolved = resolve_layers(app_model.model, list(layers))
        shapes = {info.name: info.shape for info in list_layers(app_model.model, (64, 64))}
    out = []
    for r in resolved:
        shape = shapes.get(r.name)
        out.append((r.requested, cam_method.passes(int(shape[1])) if shape and len(shape) == 4 else None))
    return out


def progress_text(method_name: str, stage: str, done: int, total: int, spent: float) -> tuple[float, str]:
    """The bar of a long run: one fraction over all layers, the layer in hand and an estimate of the rest.

    The estimate is the time per pass so far times the passes left; it is left out until a perturbation pass
    has been timed (the first, unperturbed forward pass is not representative).
    """
    frac = min(done / max(total, 1), 1.0)
    left = ""
    if done > 1 and stage != "forward pass":
        left = f", about {spent / (done - 1) * (total - done):.0f} s left"
    return frac, f"{method_name} · {stage} · pass {done} of {total} · {spent:.0f} s{left}"


def is_slow(method: str) -> bool:
    """Methods that run one forward pass per batch of channels (seconds to minutes): run on request."""
    from segcam.cam.methods import get_method

    return not get_method(method).uses_gradients


@dataclass(frozen=True)
class Views:
    """Ready-to-show uint8 RGB arrays for one layer."""

    image: np.ndarray
    prediction: np.ndarray
    heatmap: np.ndarray
    overlay: np.ndarray
    target: np.ndarray


def render(res: ImageExplanation, layer: str, cmap: str = "inferno", alpha: float | None = None,
           normalization: str = "per_map", mode: str = "heat") -> Views:
    """Views of one layer from a computed result (no model call); ``mode`` is the overlay's."""
    unit = res.normalized(layer, normalization)
    pred = np.repeat(((res.prediction == res.category) * 255).astype(np.uint8)[..., None], 3, axis=2)
    return Views(res.image, pred, heatmap(unit, cmap), overlay(res.image, unit, cmap, alpha, mode=mode),
                 mark_target(res))


def zoom_inset(rgb: np.ndarray, x: int, y: int, half: int = 24, size: int = 192) -> np.ndarray:
    """A nearest-neighbour enlargement of the window around pixel ``x, y`` with the pixel ringed.

    A one-pixel target (and its map at a fine layer) is invisible at page size; the inset shows it at
    ``size / (2 * half)`` times.
    """
    import cv2

    h, w = rgb.shape[:2]
    x0, y0 = min(max(0, x - half), max(0, w - 2 * half)), min(max(0, y - half), max(0, h - 2 * half))
    win = np.ascontiguousarray(rgb[y0:y0 + 2 * half, x0:x0 + 2 * half])
    scale = size / max(win.shape[:2])
    big = cv2.resize(win, (round(win.shape[1] * scale), round(win.shape[0] * scale)), interpolation=cv2.INTER_NEAREST)
    cx, cy = int((x - x0 + 0.5) * scale), int((y - y0 + 0.5) * scale)
    cv2.circle(big, (cx, cy), max(4, int(scale)), (0, 229, 255), 2)
    return big


def _crack_labels(prediction: np.ndarray, category: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """8-connected labels of the predicted cracks, their stats, and the labels largest first.

    The order is the ``component:RANK`` order of :class:`segcam.cam.targets.ComponentTarget`.
    """
    import cv2

    _, labels, stats, _ = cv2.connectedComponentsWithStats((prediction == category).astype(np.uint8), connectivity=8)
    return labels, stats, np.argsort(-stats[1:, cv2.CC_STAT_AREA], kind="stable") + 1


def crack_pixel(prediction: np.ndarray, category: int = 1) -> tuple[int, int] | None:
    """A pixel well inside the largest predicted crack (its farthest point from the background), or None."""
    import cv2

    labels, _, order = _crack_labels(prediction, category)
    if not len(order):
        return None
    dist = cv2.distanceTransform((labels == order[0]).astype(np.uint8), cv2.DIST_L2, 3)
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return int(x), int(y)


def nearest_crack_pixel(prediction: np.ndarray, category: int, x: int, y: int) -> tuple[int, int]:
    """The predicted crack pixel nearest to ``x, y`` (itself if it is one).

    A click beside a thin crack still picks that crack; ``x, y`` is returned unchanged when nothing is predicted.
    """
    from scipy import ndimage

    mask = prediction == category
    h, w = mask.shape
    x, y = min(max(int(x), 0), w - 1), min(max(int(y), 0), h - 1)
    if mask[y, x] or not mask.any():
        return x, y
    _, (iy, ix) = ndimage.distance_transform_edt(~mask, return_indices=True)
    return int(ix[y, x]), int(iy[y, x])


def components(prediction: np.ndarray, category: int = 1) -> list[dict[str, int]]:
    """The predicted cracks, largest first (the ``component:RANK`` order): rank, area, a pixel and the box."""
    import cv2

    labels, stats, order = _crack_labels(prediction, category)
    _, first = np.unique(labels.ravel(), return_index=True)  # one pass: each label's first pixel in raster order
    out = []
    for rank, lab in enumerate(order, 1):
        y, x = divmod(int(first[lab]), labels.shape[1])
        x0, y0, w, h = (int(v) for v in stats[lab, :4])
        out.append({"rank": rank, "area": int(stats[lab, cv2.CC_STAT_AREA]), "x": x, "y": y,
                    "x0": x0, "y0": y0, "x1": x0 + w, "y1": y0 + h})
    return out


def mark_target(res: ImageExplanation) -> np.ndarray:
    """The image with the target tinted and outlined.

    A target of a few pixels also gets a ring that shows at any zoom (one pixel would otherwise be invisible).
    """
    import cv2

    tgt = res.image.copy()
    mask = res.target_mask
    tgt[mask] = (0.4 * tgt[mask] + 0.6 * np.array([0, 200, 255])).astype(np.uint8)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    thick = max(1, round(max(mask.shape) / 300))
    cv2.drawContours(tgt, contours, -1, (0, 255, 255), thick)
    if 0 < mask.sum() < 64:
        ys, xs = np.nonzero(mask)
        radius = max(6, round(max(mask.shape) / 40))
        cv2.circle(tgt, (int(xs.mean()), int(ys.mean())), radius, (255, 40, 40), thick + 1)
    return tgt


def colorbar(cmap: str, width: int = 256, height: int = 12, top: float | None = None) -> np.ndarray:
    """A horizontal colour scale (0 on the left, 1 on the right) for the views.

    With ``top`` (the raw value that 1 stands for), ticks at 0, 0.25 ... 1 are drawn under the bar, labelled
    with the fraction and the raw value (``0.5 = 1.2e-03``): the units of the map are score x activation.
    """
    bar = heatmap(np.tile(np.linspace(0.0, 1.0, width, dtype=np.float32), (height, 1)), cmap)
    if top is None:
        return bar
    import cv2

    pad, text_h = 36, 30
    canvas = np.full((height + text_h, width + 2 * pad, 3), 255, np.uint8)
    canvas[:height, pad:pad + width] = bar
    for f in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = pad + min(int(round(f * (width - 1))), width - 1)
        canvas[height:height + 4, x] = 0
        for line, text in enumerate((f"{f:g}", f"{f * top:.2g}")):
            (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.32, 1)
            cv2.putText(canvas, text, (x - tw // 2, height + 4 + th + 1 + line * (th + 3)), cv2.FONT_HERSHEY_SIMPLEX,
                        0.32, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas


def zero_map_reason(res: ImageExplanation, layer: str, method: str | None = None, score: str | None = None) -> str | None:
    """Why a map is all zero, or None if it is not; the advice names only what is not running already."""
    if res.maps[layer].raw_max > 0:
        return None
    if res.empty_target:
        return "the target region is empty, so there is nothing to explain: choose another target"
    tries = ["another layer"]
    if score != "margin":
        tries.append("the margin score")
    if method != "layer_cam":
        tries.append("an element-wise method (layer_cam)")
    relu = ("after the channel weighting every pixel is <= 0, and the ReLU keeps only evidence *for* the class"
            if method != "layer_cam" else "every gradient x activation product is <= 0 here")
    return (f"no positive evidence at {layer} for this target: {relu}. Try {', '.join(tries[:-1])}"
            f"{' or ' if len(tries) > 1 else ''}{tries[-1]}")


def png_bytes(rgb: np.ndarray) -> bytes:
    """PNG encoding for downloads."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def read_png(path: str | Path) -> np.ndarray:
    """A run's overlay or heatmap image (PNG/JPEG) as an RGB array.

    Decoded here, so a bad file is an error, not a media-server path.
    """
    from segcam.data.images import read_image

    return read_image(path, max_side=8192)


def npy_bytes(arr: np.ndarray) -> bytes:
    """``.npy`` encoding for downloads."""
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def example_images() -> list[Path]:
    """The bundled example photos (``examples/images`` of a source checkout)."""
    folder = Path(__file__).resolve().parents[2] / "examples" / "images"
    return sorted(folder.glob("*.jpg")) + sorted(folder.glob("*.png")) if folder.is_dir() else []


def load_run(folder: str | Path, root: Path | None = None) -> dict[str, Any]:
    """Read a ``segcam explain`` run folder's manifest (for browsing without recomputing).

    ``folder`` is taken relative to ``root`` (default :func:`runs_root`) and must stay inside it; every
    file a record names is resolved inside the run folder, and records naming any other path are dropped
    from ``images`` (counted in ``refused``).

    Raises:
        FileNotFoundError: No manifest.json there.
        ValueError: A folder outside the root, or not a segcam explain manifest of a supported version.
    """
    from segcam.cam.result import SCHEMA_VERSION

    root = root or runs_root()
    if root is None:
        raise ValueError("no runs folder was given to this app; start it with `segcam app --runs-root DIR`")
    run_dir = inside(root, folder)
    path = run_dir / "manifest.json"
    if path.is_symlink() or (path.exists() and path.resolve().parent != run_dir):
        raise ValueError(f"{folder}/manifest.json is a link to a file elsewhere; only a run folder's own manifest is read")
    if not path.is_file():
        raise FileNotFoundError(f"{folder} holds no manifest.json; give the --out folder of a segcam explain run "
                                f"(relative to {root})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{folder}/manifest.json is not valid JSON ({exc})") from None
    version = data.get("schema_version") if isinstance(data, dict) else None
    if not isinstance(data, dict) or data.get("schema") != "segcam.explain" or version not in (1, SCHEMA_VERSION):
        raise ValueError(f"{folder}/manifest.json is not a segcam explain manifest of schema version 1-{SCHEMA_VERSION}")
    if not isinstance(data.get("images", []), list):
        raise ValueError(f"{folder}/manifest.json: 'images' must be a list of image records, got "
                         f"{type(data.get('images')).__name__}; rerun segcam explain into a new --out")
    images, refused = [], 0
    for rec in data.get("images", []):
        if not isinstance(rec, dict) or not isinstance(rec.get("name"), str) or not isinstance(rec.get("layers", {}), dict):
            refused += 1
            continue
        try:
            for files in (rec.get("layers") or {}).values():
                files["raw_max"] = float(files.get("raw_max", float("nan")))  # a non-number: the record is refused
                for key in ("overlay", "heatmap"):  # either may be left out by --save
                    if key in files:
                        files[key] = str(inside(run_dir, files[key]))
            if rec.get("prediction"):
                rec["prediction"] = str(inside(run_dir, rec["prediction"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            refused += 1
            continue
        images.append(rec)
    data["images"], data["refused"] = images, refused
    data["folder"] = str(run_dir)
    model, norm = data.get("model"), data.get("normalization")
    data["caption"] = " · ".join(str(x) for x in (model.get("name") if isinstance(model, dict) else "?",
                                                   data.get("method", "?"),
                                                   norm.get("mode") if isinstance(norm, dict) else "?"))
    return data
