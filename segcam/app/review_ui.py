"""The app's "Review a run" mode: one crack at a time in queue order, confirmed or rejected by button or key.

Every verdict is saved the moment it is clicked (:func:`segcam.survey.verdicts.record`: appended to the run's
journal, then ``verdicts.csv`` rebuilt); the page only draws. Keys: Y confirm, N reject, S skip, U undo (C and
R are Streamlit's own).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from segcam.app import core as app_core
from segcam.app.review_view import crack_views, photo_roots
from segcam.survey.verdicts import VerdictError, load_review, record

__all__ = ["pick_run_folder", "review_mode"]

KEYS = {"confirmed": "Y", "rejected": "N", "skipped": "S", "undo": "U"}


@st.cache_data(max_entries=2, show_spinner="Reading the photo...")
def _photo(path: str, identity: str) -> Any:  # identity: a changed file is read again
    from segcam.data.images import read_image
    from segcam.survey.batch import TILED_MAX_SIDE

    return read_image(path, max_side=TILED_MAX_SIDE)


def _pos_key(run_dir: Path) -> str:
    return f"rv_pos::{run_dir}"


def _hist_key(run_dir: Path) -> str:
    return f"rv_hist::{run_dir}"


def _decide(run_dir: Path, pos: int, name: str, crack: int, verdict: str) -> None:
    """Button callback: save the verdict first, then move on (a failed save says so and stays on the crack)."""
    try:
        state = record(run_dir, name, crack, verdict, reviewer=st.session_state.get("rv_reviewer") or "")
    except (OSError, VerdictError) as exc:
        st.session_state["rv_error"] = f"The verdict was NOT saved: {exc}"
        return
    st.session_state.setdefault(_hist_key(run_dir), []).append((name, crack))
    st.session_state[_pos_key(run_dir)] = state.next_index(pos + 1)


def _undo(run_dir: Path) -> None:
    """Button callback: take back this page's last verdict and show that crack again."""
    hist = st.session_state.get(_hist_key(run_dir)) or []
    if not hist:
        return
    name, crack = hist[-1]
    try:
        state = record(run_dir, name, crack, "undo", reviewer=st.session_state.get("rv_reviewer") or "")
    except (OSError, VerdictError) as exc:
        st.session_state["rv_error"] = f"Undo was NOT saved: {exc}"
        return
    hist.pop()
    st.session_state[_pos_key(run_dir)] = next((i for i, c in enumerate(state.cracks) if c.ident == (name, crack)), None)


def pick_run_folder(root: Path, prefix: str, hint: str) -> str:
    """A run folder under ``root``: picked from the list of runs or typed (widget keys ``{prefix}_pick/_folder``)."""
    runs = app_core.list_runs(root)
    if runs:
        picked = st.selectbox(f"Runs under {root}", ["", *runs], key=f"{prefix}_pick",
                              format_func=lambda r: r or "(choose a run, or type its folder below)")
        if picked and st.session_state.get(f"{prefix}_folder") != picked:
            st.session_state[f"{prefix}_folder"] = picked
    folder = st.text_input(f"Run folder (the --out of segcam survey or explain), relative to {root}",
                           key=f"{prefix}_folder")
    if not folder:
        st.info(hint)
    return folder


def _pick_run(root: Path) -> Path | None:
    folder = pick_run_folder(root, "rv", "Give the folder of a run with per-crack records to review its cracks one at "
                                         "a time.")
    if not folder:
        return None
    try:
        return app_core.inside(root, folder)
    except ValueError as exc:
        st.error(str(exc))
        return None


def review_mode() -> None:
    """Draw the review mode (see the module docstring)."""
    root = app_core.runs_root()
    if root is None:
        st.info("This app was started without a runs folder: start it with `segcam app --runs-root DIR`.")
        return
    run_dir = _pick_run(root)
    if run_dir is None:
        return
    try:
        state = load_review(run_dir)
        run = app_core.load_run(run_dir.relative_to(root), root)
    except (VerdictError, FileNotFoundError, ValueError, OSError) as exc:
        st.error(str(exc))
        return
    st.sidebar.text_input("Reviewer (saved with each verdict)", key="rv_reviewer")
    total = len(state.cracks)
    if not total:
        st.info("This run has no predicted crack to review.")
        return
    if _pos_key(run_dir) not in st.session_state:  # resume: the first crack nobody has decided or skipped
        st.session_state[_pos_key(run_dir)] = state.next_index(0)
    pos = st.session_state[_pos_key(run_dir)]
    if pos is not None and pos >= total:
        pos = state.next_index(0)
    st.progress(state.reviewed / total, text=f"{state.reviewed} of {total} reviewed")
    if state.stale:
        st.caption(f"{state.stale} earlier verdicts no longer apply (their photo or crack changed in a rerun).")
    error = st.session_state.pop("rv_error", None)
    if error:
        st.error(error)
    hist = st.session_state.get(_hist_key(run_dir)) or []
    if pos is None:
        st.success(f"All {total} cracks have a verdict. `segcam report {run_dir}` writes the hand-over report.")
        st.button("Undo", key="rv_undo", on_click=_undo, args=(run_dir,), disabled=not hist,
                  shortcut=KEYS["undo"])
        _missed_marker(run_dir, run, None)
        return
    c = state.cracks[pos]
    _buttons(run_dir, pos, c, bool(hist))
    rank = c.row.get("review_rank") or "-"
    st.markdown(f"**Crack {c.crack} of {c.name}** · queue #{rank} · review score {c.row.get('review_score') or '-'} · "
                f"length {c.row.get('length')} px · max width {c.row.get('max_width')} px · "
                f"now: **{state.verdict_of(*c.ident)}**")
    rec = next((r for r in run["images"] if r.get("name") == c.name), None)
    if rec is None:
        st.warning(f"{c.name} is not in this run's manifest; skip it.")
        return
    _pictures(run_dir, rec, c)
    _missed_marker(run_dir, run, c.name)


def _buttons(run_dir: Path, pos: int, c: Any, can_undo: bool) -> None:
    cols = st.columns(4)
    for col, (verdict, label, kind) in zip(cols, (("confirmed", "Confirm crack", "primary"),
                                                  ("rejected", "Reject (not a crack)", "secondary"),
                                                  ("skipped", "Skip", "tertiary"))):
        col.button(label, key=f"rv_{verdict}", type=kind, on_click=_decide,
                   args=(run_dir, pos, c.name, c.crack, verdict), shortcut=KEYS[verdict], width="stretch")
    cols[3].button("Undo", key="rv_undo", on_click=_undo, args=(run_dir,), disabled=not can_undo,
                   shortcut=KEYS["undo"], width="stretch")


def _photo_of(rec: dict[str, Any]) -> Any:
    """A record's photo from the page's cache when the app may read it (else None: the run's own pictures serve)."""
    from segcam.app.review_view import readable_photo

    found = readable_photo(rec, photo_roots())
    return _photo(str(found), str(rec.get("source_id"))) if found is not None else None


def _pictures(run_dir: Path, rec: dict[str, Any], c: Any) -> None:
    box = [int(c.row[k]) for k in ("x0", "y0", "x1", "y1")]
    try:
        views = crack_views(run_dir, rec, c.crack, box, photo=_photo_of(rec))
    except (ValueError, OSError) as exc:
        st.error(f"Cannot show this crack: {exc}")
        return
    left, mid, right = st.columns(3)
    left.image(views.crop, caption="crop", width="stretch")
    mid.image(views.outline, caption="prediction outline", width="stretch")
    right.image(views.evidence, caption=f"its own map ({rec.get('crack_evidence_layer') or 'evidence layer'})",
                width="stretch")
    st.image(views.context, caption=f"{c.name}: where the crack lies", width="content")
    if views.source != "photo":
        st.caption("The photo is not readable here (outside --photos-root, or changed since the run): the crop is "
                   "the run's thumbnail, enlarged.")


def _add_point(key: str, scale: float) -> None:
    """Click callback of the marking chart: the clicked point (in photo pixels) joins the polyline being drawn."""
    points = ((st.session_state.get("rv_mark_plot") or {}).get("selection") or {}).get("points") or []
    if points:
        st.session_state.setdefault(key, []).append((points[0]["x"] / scale + 0.5 / scale,
                                                     points[0]["y"] / scale + 0.5 / scale))


def _save_mark(run_dir: Path, name: str, key: str) -> None:
    from segcam.survey.missed import mark_missed

    try:
        mark_missed(run_dir, name, st.session_state.get(key) or [], float(st.session_state.get("rv_mark_width", 3.0)),
                    reviewer=st.session_state.get("rv_reviewer") or "")
    except (OSError, VerdictError) as exc:
        st.session_state["rv_error"] = f"The mark was NOT saved: {exc}"
        return
    st.session_state[key] = []


def _missed_marker(run_dir: Path, run: dict[str, Any], current: str | None) -> None:
    """Mark cracks the network missed: click points along one on the photo, give its width, save."""
    from segcam.app.review_view import marking_view
    from segcam.survey.missed import load_missed, unmark_missed

    try:
        import plotly.express as px
        import plotly.graph_objects as go
    except ImportError:
        return
    names = [r["name"] for r in run["images"] if r.get("status", "ok") == "ok"]
    with st.expander("Mark a crack the network missed"):
        name = st.selectbox("Photo", names, index=names.index(current) if current in names else 0, key="rv_mark_photo")
        rec = next(r for r in run["images"] if r.get("name") == name)
        img, scale = marking_view(run_dir, rec, photo=_photo_of(rec))  # the cached photo: no second decode a rerun
        key = f"rv_pts::{run_dir}::{name}"
        pts = st.session_state.get(key) or []
        marks = [m for m in load_missed(run_dir)[0] if m.name == name]
        h, w = img.shape[:2]
        step = max(1, -(-max(h, w) // 160))
        ys, xs = np.mgrid[step // 2:h:step, step // 2:w:step]
        fig = px.imshow(img)
        fig.update_traces(hoverinfo="skip", hovertemplate=None, selector={"type": "image"})
        fig.add_trace(go.Scatter(x=xs.ravel(), y=ys.ravel(), mode="markers", showlegend=False, hoverinfo="none",
                                 marker={"size": max(4, step + 1), "opacity": 0}))
        for m in marks:
            mx, my = zip(*m.points)
            fig.add_trace(go.Scatter(x=[x * scale - 0.5 for x in mx], y=[y * scale - 0.5 for y in my], mode="lines",
                                     showlegend=False, hoverinfo="skip", line={"color": "lime", "width": 3}))
        if pts:
            px_, py_ = zip(*pts)
            fig.add_trace(go.Scatter(x=[x * scale - 0.5 for x in px_], y=[y * scale - 0.5 for y in py_],
                                     mode="lines+markers", showlegend=False, hoverinfo="skip",
                                     line={"color": "cyan", "width": 2}))
        fig.update_layout(margin={"l": 0, "r": 0, "t": 0, "b": 0}, height=420, dragmode="zoom", hovermode="closest")
        fig.update_xaxes(showticklabels=False)
        fig.update_yaxes(showticklabels=False)
        st.caption("Click points along the missed crack (zoom with a drag), give its width, then save it. Marks are "
                   "saved with the verdicts; `segcam finetune` learns from them.")
        st.plotly_chart(fig, on_select=lambda: _add_point(key, scale), selection_mode="points", key="rv_mark_plot")
        st.number_input("Width of the crack (photo pixels)", 1.0, 200.0, 3.0, 1.0, key="rv_mark_width")
        a, b, c = st.columns(3)
        a.button(f"Save this crack ({len(pts)} points)", key="rv_mark_save", disabled=len(pts) < 2,
                 on_click=_save_mark, args=(run_dir, name, key))
        b.button("Clear the points", key="rv_mark_clear", disabled=not pts,
                 on_click=lambda: st.session_state.update({key: []}))
        c.button("Remove the last saved mark", key="rv_mark_undo", disabled=not marks,
                 on_click=lambda: unmark_missed(run_dir, marks[-1].id))
        st.caption(f"{len(marks)} missed cracks marked on {name}.")
