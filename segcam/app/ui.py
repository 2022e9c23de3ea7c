"""The segcam Streamlit app: browse, explain and compare crack heatmaps.

Run with ``segcam app`` or ``streamlit run apps/segcam_app.py``. The page is thin: every computation
goes through :mod:`segcam.app.core` and the segcam API.
"""

from __future__ import annotations

import io
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import paddle
import streamlit as st

from segcam.app import core as app_core
from segcam.cam.defaults import location_note, recipe_for
from segcam.cam.engine import SCORES
from segcam.cam.methods import display_name, list_methods
from segcam.cam.overlay import COLORMAPS, OVERLAY_MODES
from segcam.cam.targets import BoxTarget, ComponentTarget, MaskTarget, PixelTarget, PredictedTarget, TargetError
from segcam.data.images import ImageError, read_image, read_image_bytes
from segcam.models.weights import PARTIAL_HINT
from segcam.models.zoo import list_models
from segcam.viz.figures import FigureRow, cam_grid

# Paddle's C++ signal handlers print a "FatalError: Termination signal is detected" banner when the server is
# stopped with SIGTERM; the page needs none of them (a crash still ends the process).
paddle.disable_signal_handler()

#: The method/score choice that follows the target kind (segcam.cam.defaults).
AUTO = "auto"

LOG = logging.getLogger("segcam.app")
#: Widget keys whose values survive a visit to another mode (Streamlit drops the state of a widget that a run
#: does not draw): copied aside on every run, put back when Streamlit has dropped them.
PERSIST = ("m1_source", "m1_name", "m1_weights", "m1_config", "m1_cfg_weights", "m2_source", "m2_name",
           "m2_weights", "m2_config", "m2_cfg_weights", "layers", "method", "score", "category", "cmap", "alpha",
           "overlay", "norm", "img_source", "example", "target_kind", "px_x", "px_y", "box_x0", "box_y0", "box_x1",
           "box_y1", "comp_by", "comp_rank", "shown", "run_folder", "run_image", "run_all", "rv_folder", "rv_reviewer")
ERRORS = (ImageError, TargetError, FileNotFoundError, KeyError, ValueError, TypeError, OSError)


@st.cache_resource(show_spinner="Loading model...", max_entries=3)
def cached_model(name: str | None, weights: str | None, config: str | None) -> app_core.AppModel:
    """One model (and its lock) per (name, weights, config), shared by all sessions."""
    return app_core.load_model(name, weights, config)


@st.cache_resource(show_spinner=False, max_entries=3)
def cached_layers(_app_model: app_core.AppModel, key: str) -> list[str]:
    """Layer choices of a model (``key`` identifies it; the model itself is not hashed)."""
    return app_core.layer_choices(_app_model.model)


@st.cache_data(show_spinner=False, max_entries=16)
def cached_example(path: str) -> np.ndarray:
    """Decoded example photo."""
    return read_image(path)


def _views(res: Any, layer: str, cmap: str, alpha: float, norm: str, mode: str = "heat") -> app_core.Views:
    """Rendered views kept per (result, layer, look), so a rerun re-encodes nothing it has shown before."""
    key = (id(res), layer, cmap, alpha, norm, mode)
    cache = st.session_state.setdefault("views", {})
    if key not in cache:
        if len(cache) > 64:
            cache.clear()
        cache[key] = app_core.render(res, layer, cmap, alpha, norm, mode)
    return cache[key]


def _cached_compute(app_model: app_core.AppModel, rgb: np.ndarray, layers: tuple[str, ...], target: Any, method: str,
                    score: str, label: str = "") -> Any:
    """Results kept in the session per (model, image, layers, target, method, score): re-renders never recompute.

    Slow (perturbation) methods run only when the Compute button is pressed, on the session's own copy of the
    model (other sessions' cheap reruns do not wait for them), with a progress bar and an estimate; the Cancel
    button reruns the page, which stops the run at its next progress update. Returns None while waiting.
    """
    key = (app_model.key, app_core.image_key(rgb), layers, app_core.target_key(target), method, score)
    cache = st.session_state.setdefault("results", {})
    if key in cache:
        return cache[key]
    progress = None
    box = None
    if app_core.is_slow(method):
        name = display_name(method)
        box = st.empty()  # the notice, the buttons and the bar: gone once the result is shown
        panel = box.container()
        if st.session_state.pop(f"running_{label}", None):
            panel.warning(f"{name} was cancelled; press Compute to run it again.")
        try:
            planned = app_core.planned_passes(app_model, layers, method)
        except ERRORS:
            planned = []
        known = [p for _, p in planned if p is not None]
        per = " + ".join(f"{layer}: {p if p is not None else '?'}" for layer, p in planned)
        count = (f"{1 + sum(known)} forward passes ({per}, after the first one)" if len(known) == len(planned)
                 and planned else "one forward pass per batch of channels of every layer")
        panel.info(f"{name} makes {count}: seconds to minutes on a CPU, so it runs when you press Compute.")
        if not panel.button(f"Compute {name}", key=f"compute_{label}"):
            return None
        st.session_state[f"running_{label}"] = True
        panel.button("Cancel", key=f"cancel_{label}", help="stops the run at its next forward pass")
        bar = panel.progress(0.0, text=f"{name}: starting")
        t0 = time.monotonic()

        def progress(stage: str, done: int, total: int) -> None:
            frac, text = app_core.progress_text(name, stage, done, total, time.monotonic() - t0)
            bar.progress(frac, text=text)

        copies = st.session_state.setdefault("private_models", {})
        if app_model.key not in copies:
            copies.clear()  # one private copy per session at a time
            copies[app_model.key] = app_core.private_copy(app_model)
        app_model = copies[app_model.key]
    if len(cache) > 16:
        cache.clear()
        st.session_state.get("views", {}).clear()  # view keys hold ids of the dropped results
        st.session_state.get("notes", {}).clear()
    cache[key], notes = app_core.compute_with_notes(app_model, rgb, layers, target, method, score, progress=progress)
    st.session_state.setdefault("notes", {})[id(cache[key])] = notes
    st.session_state.pop(f"running_{label}", None)
    if box is not None:
        box.empty()
    return cache[key]


def _method_label(method: str) -> str:
    """A method as the list shows it: its name, and a mark on the slow (one pass per channel batch) ones."""
    if method == AUTO:
        return "auto (the measured default for the target)"
    return f"{display_name(method)}{' · slow: runs on Compute' if app_core.is_slow(method) else ''}"


def _keep_state() -> None:
    """Keep the settings across modes (:data:`PERSIST`).

    Widgets take their first values from the session state, never as arguments, so a restored value is never
    overridden and Streamlit has no default to warn about.
    """
    ss = st.session_state
    kept = ss.setdefault("_kept", {})
    for key in PERSIST:
        if key in ss:
            kept[key] = ss[key]
        elif key in kept:
            ss[key] = kept[key]


def _default(key: str, value: Any) -> None:
    """A widget's first value (before the widget is drawn)."""
    st.session_state.setdefault(key, value)


def _prediction(app_model: app_core.AppModel, rgb: np.ndarray) -> np.ndarray | None:
    """The model's mask of the photo, kept per (model, photo) in the session."""
    key = (app_model.key, app_core.image_key(rgb))
    kept = st.session_state.get("prediction")
    if kept is None or kept[0] != key:
        try:
            kept = (key, app_core.predict(app_model, rgb))
        except ERRORS as exc:
            LOG.warning("prediction failed: %s", exc)
            return None
        st.session_state["prediction"] = kept
    return kept[1]


def _error(msg: str) -> None:
    st.error(msg, icon="⚠️")


def _model_controls(prefix: str, default: str) -> tuple[str | None, str | None, str | None]:
    source = st.radio("Model source", ["Zoo", "PaddleSeg YAML"], key=f"{prefix}_source", horizontal=True)
    if source == "Zoo":
        models = list_models()
        if st.session_state.get(f"{prefix}_name") not in models:
            st.session_state[f"{prefix}_name"] = default
        name = st.selectbox("Model", models, key=f"{prefix}_name")
        weights = st.text_input("Weights (.pdparams, optional)", key=f"{prefix}_weights",
                                help="empty: the shipped weights, else random init; 'random' forces random init")
        return name, weights.strip() or None, None
    config = st.text_input("Config YAML path", key=f"{prefix}_config")
    weights = st.text_input("Weights (.pdparams)", key=f"{prefix}_cfg_weights")
    return None, weights.strip() or None, config.strip()  # "" = not given yet (never a silent zoo fallback)


def _load(name: str | None, weights: str | None, config: str | None) -> app_core.AppModel | None:
    if config is not None and not config:
        st.info("Give the path of a PaddleSeg YAML config (and its weights) in the sidebar.")
        return None
    try:
        am = cached_model(name, weights, config)
    except ERRORS as exc:
        _error(f"Cannot load the model: {str(exc).replace(PARTIAL_HINT, '')}")
        return None
    except Exception as exc:  # never show a traceback
        LOG.exception("model load failed")
        _error(f"Cannot load the model ({type(exc).__name__}: {exc})")
        return None
    m = am.model
    weights_text = (f"shipped {m.name}.{m.tag}" if m.tag else Path(m.weights).name) if m.weights else "random init"
    trained = ""
    if m.tag:
        from segcam.models.zoo import get_model_spec

        trained = f" · trained on {get_model_spec(m.name).tag_info(m.tag).get('train_data', '?')}"
    st.caption(f"Model **{m.name}** · weights {weights_text}"
               f"{f' (sha256 {m.weights_sha256[:12]})' if m.weights_sha256 else ''}",
               help=f"{m.describe_weights()}{trained}")
    if am.model.random_init:
        st.warning(f"{am.model.name} is RANDOMLY INITIALISED (no weights): its heatmaps show an untrained network.")
    return am


def _input_image() -> tuple[np.ndarray | None, str]:
    source = st.radio("Image", ["Example", "Upload"], key="img_source", horizontal=True)
    if source == "Example":
        examples = app_core.example_images()
        if not examples:
            st.info("No bundled examples found (they live in examples/images of a source checkout).")
            return None, ""
        names = [p.name for p in examples]
        # first view: a DeepCrack photo, which the default network segments well
        if st.session_state.get("example") not in names:
            st.session_state["example"] = next((n for n in names if n.startswith("deepcrack_11215")), names[0])
        choice = st.selectbox("Example image", names, key="example")
        path = next(p for p in examples if p.name == choice)
        return cached_example(str(path)), path.stem
    up = st.file_uploader("Upload an image", type=["png", "jpg", "jpeg", "bmp", "tif", "tiff", "webp", "gif"],
                          key="upload")
    if up is None:
        kept = st.session_state.get("upload_kept")  # the uploader forgets its file when another mode was shown
        if kept is None:
            return None, ""
        st.caption(f"Showing {kept[0]}, uploaded earlier; upload another photo to replace it.")
        name, data = kept
    else:
        if up.size > app_core.MAX_UPLOAD_MB * 1024 * 1024:
            _error(f"{up.name} is {up.size / 1e6:.0f} MB, above the {app_core.MAX_UPLOAD_MB} MB upload limit")
            return None, ""
        name, data = up.name, up.getvalue()
        st.session_state["upload_kept"] = (name, data)
    try:
        from PIL import Image

        rgb = read_image_bytes(data, name, max_side=app_core.APP_MAX_SIDE, downscale=True)
        with Image.open(io.BytesIO(data)) as im:  # header only: the original size, for the notice
            w, h = im.size
            if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # rotated by its EXIF orientation, as read_image does
                w, h = h, w
    except (ImageError, OSError) as exc:
        _error(str(exc).replace("pass --downscale to shrink it", "the app shrinks it").split("; pass --")[0])
        return None, ""
    if (rgb.shape[1], rgb.shape[0]) != (w, h):
        st.info(f"{name} is {w}x{h}; downscaled to {rgb.shape[1]}x{rgb.shape[0]} for the app. To explain it at "
                "full resolution, use the command line (segcam explain).")
    return rgb, Path(name).stem


def _target(rgb: np.ndarray, category: int, prediction: np.ndarray | None = None) -> Any:
    """The target widgets; ``prediction`` (the model's mask of ``rgb``) seeds the pixel and lists the cracks."""
    kind = st.radio("Target", ["Predicted crack", "Crack component", "Ground-truth mask", "Pixel", "Box"],
                    key="target_kind", horizontal=True)
    h, w = rgb.shape[:2]
    if kind == "Predicted crack":
        return PredictedTarget(category)
    if kind == "Ground-truth mask":
        up = st.file_uploader("Ground-truth mask (PNG, 0/255 or 0/1)", type=["png", "bmp"], key="gt_upload")
        if up is None:
            st.info("Upload a mask to explain the ground-truth region.")
            return None
        try:
            from PIL import Image

            from segcam.data.datasets import mask_to_ids

            with Image.open(io.BytesIO(up.getvalue())) as im:
                gt = mask_to_ids(np.asarray(im.convert("L"))) > 0  # 0/1 and 0/255 masks, as the CLI reads them
        except (OSError, ValueError) as exc:
            _error(str(exc))
            return None
        if gt.shape != (h, w):
            _error(f"{up.name} is {gt.shape[1]}x{gt.shape[0]} but the image is {w}x{h}; give a mask of the same size")
            return None
        return MaskTarget(category, gt, up.name)
    ss = st.session_state
    image = app_core.image_key(rgb)
    if ss.get("_px_image") != image:  # a new photo: the pixel starts inside its largest predicted crack
        ss["_px_image"] = image
        start = app_core.crack_pixel(prediction, category) if prediction is not None else None
        if start is not None:
            ss["px_x"], ss["px_y"] = start
    defaults = {"px_x": w // 2, "px_y": h // 2, "box_x0": 0, "box_y0": 0, "box_x1": w, "box_y1": h}
    limits = {"px_x": (0, w - 1), "px_y": (0, h - 1), "box_x0": (0, w - 1), "box_y0": (0, h - 1), "box_x1": (1, w),
              "box_y1": (1, h)}
    for key, (lo, hi) in limits.items():  # keep picks valid when the image changes (set before the widgets exist)
        st.session_state[key] = int(min(max(st.session_state.get(key, defaults[key]), lo), hi))
    if kind == "Crack component":
        comps = app_core.components(prediction, category) if prediction is not None else []
        if not comps:
            st.info("The model predicts no crack in this photo, so there is no component to pick; try Box or Pixel.")
            return None
        by = st.radio("Pick the crack", ["by size rank", "by clicking it"], key="comp_by", horizontal=True)
        if by == "by size rank":
            _default("comp_rank", 1)
            ss["comp_rank"] = min(max(int(ss["comp_rank"]), 1), len(comps))
            rank = int(st.number_input(f"Rank (1 = the largest of {len(comps)} predicted cracks)", 1, len(comps),
                                       key="comp_rank"))
            c = comps[rank - 1]
            st.caption(f"Crack {rank}: {c['area']} px, box {c['x0']},{c['y0']} … {c['x1']},{c['y1']}")
            return ComponentTarget(category, rank=rank)
        _picker(rgb, "Click a crack to explain it (the nearest predicted crack pixel is taken). Drag to zoom in "
                "first on a thin crack; double-click zooms out.", click_grid=True)
        x, y = app_core.nearest_crack_pixel(prediction, category, int(ss["px_x"]), int(ss["px_y"]))
        return ComponentTarget(category, x=x, y=y)
    if kind == "Pixel":
        c1, c2 = st.columns(2)
        x = c1.number_input("x", *limits["px_x"], key="px_x")
        y = c2.number_input("y", *limits["px_y"], key="px_y")
        _picker(rgb, "Click the image to pick a pixel (to within half a grid step; refine with x/y). Drag to zoom "
                "in first on a thin crack; double-click zooms out.", click_grid=True)
        return PixelTarget(category, int(x), int(y))
    c1, c2, c3, c4 = st.columns(4)
    x0 = c1.number_input("x0", *limits["box_x0"], key="box_x0")
    y0 = c2.number_input("y0", *limits["box_y0"], key="box_y0")
    x1 = c3.number_input("x1", *limits["box_x1"], key="box_x1")
    y1 = c4.number_input("y1", *limits["box_y1"], key="box_y1")
    _picker(rgb, "Drag a box on the image to pick it")
    return BoxTarget(category, int(x0), int(y0), int(x1), int(y1))


def _apply_pick() -> None:
    """Selection callback of the picker: runs before the next script run, so it may set the inputs' state."""
    sel = (st.session_state.get("picker") or {}).get("selection") or {}
    boxes, points = sel.get("box") or [], sel.get("points") or []
    if boxes:
        bx, by = sorted(boxes[0]["x"]), sorted(boxes[0]["y"])
        x0, x1, y0, y1 = int(round(bx[0])), int(round(bx[1])) + 1, int(round(by[0])), int(round(by[1])) + 1
        st.session_state.update(box_x0=x0, box_x1=x1, box_y0=y0, box_y1=y1, px_x=(x0 + x1) // 2, px_y=(y0 + y1) // 2)
    elif points:
        st.session_state.update(px_x=int(round(points[0]["x"])), px_y=int(round(points[0]["y"])))


def _picker(rgb: np.ndarray, help_text: str, click_grid: bool = False) -> None:
    """The image as a plotly chart whose click / box selection fills the pixel or box inputs (needs plotly).

    Plotly image traces report no clicked points, so ``click_grid`` lays an invisible grid of markers (at most
    128 per side) over the image: a click selects the nearest one, and the image itself is left out of hovering.
    Streamlit turns click-selection off while dragging selects a box, so the pixel picker drags to zoom instead.
    """
    try:
        import plotly.express as px
        import plotly.graph_objects as go
    except ImportError:
        return
    st.caption(help_text)
    fig = px.imshow(rgb)
    if click_grid:
        h, w = rgb.shape[:2]
        step = max(1, -(-max(h, w) // 128))
        ys, xs = np.mgrid[step // 2:h:step, step // 2:w:step]
        fig.update_traces(hoverinfo="skip", hovertemplate=None, selector={"type": "image"})
        fig.add_trace(go.Scatter(x=xs.ravel(), y=ys.ravel(), mode="markers", showlegend=False, hoverinfo="none",
                                 marker={"size": max(4, step + 1), "opacity": 0}))
    ss = st.session_state
    if click_grid:  # the current pick, visible at any zoom
        fig.add_trace(go.Scatter(x=[ss.get("px_x", 0)], y=[ss.get("px_y", 0)], mode="markers", showlegend=False,
                                 hoverinfo="skip", marker={"symbol": "circle-open", "size": 18, "color": "red",
                                                           "line": {"width": 3}}))
    else:
        fig.add_shape(type="rect", x0=ss.get("box_x0", 0) - 0.5, y0=ss.get("box_y0", 0) - 0.5,
                      x1=ss.get("box_x1", 1) - 0.5, y1=ss.get("box_y1", 1) - 0.5, line={"color": "red", "width": 2})
    fig.update_layout(margin={"l": 0, "r": 0, "t": 0, "b": 0}, height=300, hovermode="closest",
                      dragmode="zoom" if click_grid else "select")
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    st.plotly_chart(fig, on_select=_apply_pick, selection_mode=("points", "box"), key="picker")


def _downloads(res: Any, layer: str, views: app_core.Views, name: str, cmap: str, alpha: float, norm: str,
               method: str, score: str, mode: str = "heat") -> None:
    c1, c2, c3 = st.columns(3)
    c1.download_button("Overlay PNG", app_core.png_bytes(views.overlay), f"{name}__{layer}__overlay.png", "image/png")
    c2.download_button("Raw map .npy", app_core.npy_bytes(res.maps[layer].upsampled), f"{name}__{layer}.npy")
    ss = st.session_state
    state = (name, app_core.image_key(res.image), app_core.image_key(res.target_mask.astype(np.uint8)),
             tuple(res.maps), cmap, alpha, norm, mode, method, score, ss.get("m1_name"), ss.get("m1_weights"))
    _pdf_panel(c3, "make_fig", "figure_pdf", "Figure panel (PDF)", f"{name}__panel.pdf", state,
               lambda: [FigureRow(name, res.image, [res.maps[k].upsampled for k in res.maps], None, res.prediction)],
               list(res.maps), cmap, alpha, norm, mode, method)


def _pdf_panel(where: Any, button_key: str, state_key: str, label: str, filename: str, state: tuple,
               rows: Any, layers: list[str], cmap: str, alpha: float, norm: str, mode: str, method: str) -> None:
    """A figure panel (PDF) built on request from ``rows()``.

    It is offered for download while ``state`` (what is on screen) is unchanged; any change asks for a new one.
    """
    import tempfile

    if where.button(label, key=button_key):
        with tempfile.TemporaryDirectory() as tmp:
            try:
                (pdf,) = cam_grid(rows(), layers, Path(tmp) / "panel.pdf", cmap=cmap, alpha=alpha, normalization=norm,
                                  overlay_mode=mode, colorbar_label=display_name(method))
                st.session_state[state_key] = (state, pdf.read_bytes())
            except ValueError as exc:
                _error(str(exc))
    built = st.session_state.get(state_key)
    if built and built[0] == state:
        where.download_button(f"Download {filename.split('__')[-1]}", built[1], filename, "application/pdf")


def _compare(both: tuple, layers: list[str], img_name: str, cmap: str, alpha: float, norm: str, method: str,
             score: str, mode: str = "heat") -> None:
    """Two models side by side: weights, prediction, then per layer the overlay with its scale and downloads."""
    scale_note = ("both models' maps of a layer divided by the larger maximum of the two (comparable across models)"
                  if norm == "shared" else "each map divided by its own maximum (compare shapes, not strengths)")
    st.caption(f"{display_name(method)} · score {score} · {both[0][2].target} · normalisation {norm}: {scale_note}")
    photo, *preds = st.columns(3)
    photo.image(both[0][2].image, caption=f"Input photo: {img_name}", width="stretch")
    for col, (label, am, r) in zip(preds, both):
        col.markdown(f"**{label}** · {app_core.short_weights(am.model)}", help=am.model.describe_weights())
        col.image(app_core.render(r, layers[0], cmap, alpha, norm).prediction, width="stretch",
                  caption=f"{label} prediction ({int((r.prediction == r.category).sum())} crack px)")
    _compare_pdf(both, layers, img_name, cmap, alpha, norm, method, mode)
    for layer in layers:
        st.markdown(f"**{layer}**")
        top = max(r.maps[layer].raw_max for _, _, r in both)
        cols = st.columns(2)
        for k, (col, (label, am, r)) in enumerate(zip(cols, both)):
            m = r.maps[layer]
            if norm == "shared":
                unit = m.upsampled / top if top > 0 else np.zeros_like(m.upsampled)
                scale = f"0 … 1 = {top:.3g} (the larger maximum of A and B)"
            else:
                unit = m.normalized
                scale = f"0 … 1 = {m.raw_max:.3g} (this map's maximum)"
            over = app_core.overlay(r.image, unit, cmap, alpha, mode=mode)
            col.image(over, caption=f"{label} · {layer} → {m.layer_name} · raw max {m.raw_max:.3g}", width="stretch")
            col.image(app_core.colorbar(cmap), caption=scale, width="stretch")
            reason = app_core.zero_map_reason(r, layer, method, score)
            if reason:
                col.info(f"All zero: {reason}.")
            stem = f"{img_name}__{am.model.name}__{layer}"
            d1, d2 = col.columns(2)
            d1.download_button("Overlay PNG", app_core.png_bytes(over), f"{stem}__overlay.png", "image/png",
                               key=f"cmp_png_{k}_{layer}")
            d2.download_button("Raw map .npy", app_core.npy_bytes(m.upsampled), f"{stem}.npy",
                               key=f"cmp_npy_{k}_{layer}")


def _compare_pdf(both: tuple, layers: list[str], img_name: str, cmap: str, alpha: float, norm: str, method: str,
                 mode: str) -> None:
    """A figure panel of the comparison: one row per model, the layers as columns (PDF, built on request)."""
    state = (img_name, tuple(layers), cmap, alpha, norm, method, mode,
             tuple(app_core.image_key(r.target_mask.astype(np.uint8)) for _, _, r in both),
             tuple(am.key for _, am, _ in both))
    _pdf_panel(st, "make_cmp_fig", "compare_pdf", "Comparison panel (PDF)", f"{img_name}__compare.pdf", state,
               lambda: [FigureRow(label.split(" ", 1)[-1] if label[:2] in ("A:", "B:") else label, r.image,
                                  [r.maps[k].upsampled for k in layers], None, r.prediction,
                                  [r.empty_target] * len(layers)) for label, _, r in both],
               layers, cmap, alpha, norm, mode, method)


def _browse_run() -> None:
    root = app_core.runs_root()
    if root is None:
        st.info("This app was started without a runs folder: start it with `segcam app --runs-root DIR` to browse "
                "the segcam explain runs under DIR.")
        return
    from segcam.app.review_ui import pick_run_folder

    folder = pick_run_folder(root, "run", "Give the folder of a segcam explain run to browse its overlays without "
                                          "recomputing.")
    if not folder:
        return
    try:
        run = app_core.load_run(folder, root)
    except (FileNotFoundError, ValueError, OSError) as exc:
        _error(str(exc))
        return
    if run["refused"]:
        st.warning(f"{run['refused']} entries of this manifest name files outside the run folder; they are not shown.")
    ok = [r for r in run["images"] if r.get("status", "ok") == "ok"]
    st.caption(f"{run['caption']} · {len(ok)} images")
    if not ok:
        st.info("This run has no successfully explained image.")
        return
    _crack_queue(run)
    names = [r["name"] for r in ok]
    if st.checkbox("Show every image", key="run_all"):
        shown = ok
    else:
        shown = [ok[names.index(st.selectbox("Image", names, key="run_image"))]]
    cmap = run.get("cmap") if isinstance(run.get("cmap"), str) and run.get("cmap") in COLORMAPS else "inferno"
    for rec in shown:
        if len(shown) > 1:
            st.markdown(f"**{rec['name']}**")
        pred = rec.get("prediction")
        cols = st.columns(len(rec["layers"]) + (1 if pred else 0))
        if pred:  # the predicted mask beside the maps
            try:
                cols[0].image(app_core.read_png(pred), caption="prediction", width="content")
            except (OSError, ValueError) as exc:
                cols[0].error(f"prediction: the file cannot be shown ({type(exc).__name__})")
            cols = cols[1:]
        for col, (layer, files) in zip(cols, rec["layers"].items()):
            shown_file = files.get("overlay") or files.get("heatmap")
            if shown_file is None:
                col.info(f"{layer}: this run saved no overlay or heatmap (--save); max {files['raw_max']:.3g}")
                continue
            try:
                # native size up to the column's width: a 224 px photo is not blown up into blocks
                col.image(app_core.read_png(shown_file), caption=f"{layer} (max {files['raw_max']:.3g})",
                          width="content")
                col.image(app_core.colorbar(cmap, 256, 10, float(files["raw_max"])), width="content",
                          caption="0 … 1 = this map's maximum; second row: raw value")
                col.download_button(f"{Path(shown_file).name}", Path(shown_file).read_bytes(), Path(shown_file).name,
                                    key=f"dl_{rec['name']}_{layer}")
            except (OSError, ValueError) as exc:
                col.error(f"{layer}: the overlay file cannot be shown ({type(exc).__name__})")


def _crack_queue(run: dict[str, Any]) -> None:
    """The run's predicted cracks (cracks.csv) and the review queue's first cracks with their thumbnails."""
    rows = app_core.crack_table(run["folder"])
    if not rows:
        st.caption("No per-crack records in this run (written with --no-cracks or by an older segcam).")
        return
    st.subheader(f"Cracks: {len(rows)} · review queue first (likeliest false crack at the top)")
    cols = ["review_rank", "review_score", "verdict", "name", "crack", "length", "mean_width", "max_width", "mean_prob",
            "evidence_band", "evidence_where"]
    shown = st.segmented_control("Verdict", ["all", *app_core.VERDICT_FILTERS], key="run_verdict", default="all")
    rows = [r for r in rows if shown in (None, "all") or r["verdict"] == shown]
    st.dataframe([{k: r.get(k, "") for k in cols} for r in rows[:1000]], hide_index=True, key="crack_table")
    top = [r for r in rows if r.get("review_rank")][:6]
    if top:
        tiles = st.columns(len(top))
        for col, r in zip(tiles, top):
            t = app_core.crack_thumbs(run["folder"], r["name"], int(r["crack"]))
            if t is None:
                continue
            from segcam.cam.overlay import overlay

            col.image(overlay(t["photo"], t["map"].astype(np.float32) / 255.0, "inferno"),
                      caption=f"#{r['review_rank']} {r['name']} · crack {r['crack']} · score {float(r['review_score']):.2f}",
                      width="stretch")


def main() -> None:
    """Draw the page; any unexpected error is one short message (details in the server log), never a traceback."""
    refusal = app_core.serving_refusal(st.get_option("server.address"), st.context.ip_address,
                                       os.environ.get(app_core.ENV_ALLOW_REMOTE) == "1")
    if refusal:
        st.error(refusal)
        return
    try:
        _page()
    except Exception as exc:  # noqa: BLE001 - the last line of defence (Streamlit's reruns are BaseExceptions)
        LOG.exception("the page failed")
        _error(f"Something went wrong ({type(exc).__name__}); the details are in the server log.")


def _page() -> None:
    st.set_page_config(page_title="segcam", layout="wide")
    _keep_state()
    st.title("segcam: why is this pixel a crack?")
    st.caption("Pick a photo and a target (the whole prediction, one crack, a pixel or a box); the overlay shows "
               "where the evidence for crack lies in the chosen layer. Settings are in the sidebar.")
    mode = st.sidebar.radio("Mode", ["Explain", "Compare models", "Browse a run", "Review a run"], key="mode")
    if mode == "Browse a run":
        _browse_run()
        return
    if mode == "Review a run":
        from segcam.app.review_ui import review_mode

        review_mode()
        return
    with st.sidebar:
        st.subheader("Model")
        name, weights, config = _model_controls("m1", os.environ.get("SEGCAM_APP_MODEL", "hrsegnet_b48"))
        if mode == "Compare models":
            st.subheader("Second model")
            name2, weights2, config2 = _model_controls("m2", "hrsegnet_b16")
    am = _load(name, weights, config)
    if am is None:
        return
    with st.sidebar:
        try:
            choices = cached_layers(am, am.key)
        except ERRORS as exc:
            _error(f"Cannot list the layers: {exc}")
            return
        if "layers" in st.session_state:  # kept from another model: only the layers this one has
            st.session_state["layers"] = [c for c in st.session_state["layers"] if c in choices]
        _default("layers", [c for c in ("seg_head",) if c in choices])
        layers = st.multiselect("Layers", choices, key="layers")
        method_choice = st.selectbox("Method", [AUTO, *list_methods()], key="method", format_func=_method_label,
                                     help="auto: the measured default for the target kind (README 'Choosing a method')")
        score_choice = st.radio("Score", [AUTO, *SCORES], key="score", horizontal=True,
                                help="summed over the target: logit, margin (crack vs the other classes) or "
                                     "probability; auto: the measured default for the target kind")
        _default("category", 1)
        category = int(st.number_input("Class", 0, 9, key="category"))
        cmap = st.selectbox("Colormap", list(COLORMAPS), key="cmap")
        over_mode = st.radio("Overlay", list(OVERLAY_MODES), key="overlay", horizontal=True,
                             format_func={"heat": "heat-weighted", "blend": "blend"}.get,
                             help="heat-weighted: the photo shows unchanged where the map is zero; blend: one "
                                  "weight everywhere (darkens the whole photo)")
        _default("alpha", 0.85)
        alpha = st.slider("Heatmap weight", 0.0, 1.0, step=0.05, key="alpha",
                          help="the heatmap's weight (at full heat for the heat-weighted overlay)")
        norm = st.radio("Normalisation", ["per_map", "shared"], key="norm", horizontal=True,
                        help="shared: every map shown is divided by the same maximum, so they are comparable")
    try:
        rgb, img_name = _input_image()
    except ERRORS as exc:
        _error(str(exc))
        return
    if rgb is None:
        return
    if not layers:
        st.info("Pick at least one layer in the sidebar.")
        return
    target = _target(rgb, category, _prediction(am, rgb))
    if target is None:
        return
    recipe = recipe_for(target)
    method = recipe.method if method_choice == AUTO else method_choice
    score = recipe.score if score_choice == AUTO else score_choice
    note = location_note(method, target)
    if note:
        st.info(f"Note: {note}.")
    try:
        res = _cached_compute(am, rgb, tuple(layers), target, method, score, "a")
    except ERRORS as exc:
        _error(f"Cannot explain {img_name}: {exc}")
        return
    except Exception as exc:  # an unexpected failure must not show a traceback
        LOG.exception("explain failed")
        _error(f"Unexpected error while explaining {img_name}: {type(exc).__name__}: {exc}")
        return
    if res is None:  # a slow method waiting for its Compute button
        return
    if res.empty_target:
        st.warning("The target region is empty, so every map is zero: choose another target.")
    if mode == "Compare models":
        am2 = _load(name2, weights2, config2)
        if am2 is None:
            return
        if not all(lay in cached_layers(am2, am2.key) for lay in layers):
            _error("The second model lacks some selected layers; choose aliases such as seg_head.")
            return
        try:
            res2 = _cached_compute(am2, rgb, tuple(layers), target, method, score, "b")
        except ERRORS as exc:
            _error(f"Cannot explain with the second model: {exc}")
            return
        if res2 is None:
            return
        _compare(((f"A: {am.model.name}", am, res), (f"B: {am2.model.name}", am2, res2)), layers, img_name, cmap,
                 alpha, norm, method, score, over_mode)
        return
    if st.session_state.get("shown") not in layers:
        st.session_state["shown"] = layers[0]
    shown = st.radio("Shown layer", layers, key="shown", horizontal=True)
    views = _views(res, shown, cmap, alpha, norm, over_mode)
    notes = st.session_state.get("notes", {}).get(id(res), {})
    for text in notes.get("", []):
        if "is empty" not in text:  # the empty target has its own warning above
            st.warning(text)
    m = res.maps[shown]
    scale = "its own maximum" if norm == "per_map" else "the largest maximum of the shown layers"
    top_raw = m.raw_max if norm == "per_map" else max(res.maps[k].raw_max for k in layers)
    left, right = st.columns(2)  # two panels a row: about 750 px each on a 1600 px screen
    left.image(views.target, caption="Image / target", width="stretch")
    right.image(views.overlay, caption="Overlay", width="stretch")
    right.image(app_core.colorbar(cmap, 384, 14, top_raw), width="stretch",
                caption=f"map value: 0 … 1 = {scale} ({norm}); second row: raw score x activation")
    for text in notes.get(shown, []):
        right.warning(f"{shown}: {text}")
    reason = app_core.zero_map_reason(res, shown, method, score)
    if reason:
        right.info(f"This map is all zero: {reason}.")
    left, right = st.columns(2)
    left.image(views.prediction, caption="Prediction", width="stretch")
    right.image(views.heatmap, caption="Heatmap", width="stretch")
    if isinstance(target, PixelTarget):
        st.image(app_core.zoom_inset(views.overlay, target.x, target.y), width=192,
                 caption=f"Overlay around pixel {target.x},{target.y} (x{192 // 48} zoom, ringed)")
    st.caption(f"{shown} → {m.layer_name} · feature map {m.raw.shape[1]}x{m.raw.shape[0]} · raw max {m.raw_max:.4g} "
               f"(units of score x activation: compare across images, not across layers) · "
               f"{res.target} ({int(res.target_mask.sum())} px) · {display_name(method)} · score {score}"
               f"{' (auto)' if score_choice == AUTO else ''} · class {res.category}")
    if len(layers) > 1:
        st.subheader("Layer strip")
        strip = st.columns(len(layers))
        for col, layer in zip(strip, layers):
            col.image(_views(res, layer, cmap, alpha, norm, over_mode).overlay, caption=layer, width="stretch")
            for text in notes.get(layer, []):
                col.warning(text)
            if res.maps[layer].raw_max == 0:
                col.caption("all zero")
    _downloads(res, shown, views, img_name, cmap, alpha, norm, method, score, over_mode)


if __name__ == "__main__":
    main()
