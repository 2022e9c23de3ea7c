"""Publication figures: CAM panel grids and model-comparison scatter plots.

Vector PDF/SVG (text as text, TrueType fonts embedded), PNG at a chosen dpi, width from the
journal column in mm, fonts of at least 7 pt, a perceptually uniform colormap by default, and
byte-identical output for identical inputs (fixed metadata and SVG hash salt). Matplotlib's global
state is never changed: everything runs inside ``rc_context``.
"""

from __future__ import annotations

import logging
import string
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from segcam.cam.overlay import DEFAULT_CMAP, DEFAULT_OVERLAY_MODE, check_cmap, check_overlay_mode, overlay
from segcam.utils.files import atomic_write

__all__ = ["COLUMN_WIDTHS_MM", "FigureError", "FigureRow", "cam_grid", "comparison_scatter", "metric_bars",
           "paper_rc", "resolve_width", "save_figure"]

#: Common journal column widths (Elsevier: single 90 mm, 1.5 column 140 mm, double 190 mm).
COLUMN_WIDTHS_MM = {"single": 90.0, "onehalf": 140.0, "double": 190.0}
MIN_PANEL_MM = 14.0
FONT_PT = 7.0
FORMATS = ("pdf", "svg", "png")
MM = 1 / 25.4
# fontTools logs every glyph subset at INFO when PDF/SVG fonts are embedded; Paddle's import sets the
# root logger to INFO, so without this every figure floods stderr.
logging.getLogger("fontTools").setLevel(logging.WARNING)


class FigureError(ValueError):
    """A figure request that cannot be drawn well (too many columns, mismatched sizes...)."""


def paper_rc(font_pt: float = FONT_PT) -> dict[str, Any]:
    """RcParams for paper figures (used inside ``matplotlib.rc_context``)."""
    if font_pt < 7:
        raise FigureError(f"font size {font_pt} pt is below the 7 pt minimum journals ask for")
    return {
        "pdf.fonttype": 42, "ps.fonttype": 42, "svg.fonttype": "none", "svg.hashsalt": "segcam",
        "font.family": "DejaVu Sans", "font.size": font_pt, "axes.titlesize": font_pt, "axes.labelsize": font_pt,
        "xtick.labelsize": font_pt, "ytick.labelsize": font_pt, "legend.fontsize": font_pt,
        "figure.titlesize": font_pt + 1, "axes.linewidth": 0.5, "image.interpolation": "nearest",
        "path.simplify": False,
    }


def resolve_width(width: str | float) -> float:
    """``single`` / ``onehalf`` / ``double`` or a number of millimetres -> millimetres.

    Raises:
        FigureError: Unknown name or a width outside 30..400 mm.
    """
    if isinstance(width, str) and width in COLUMN_WIDTHS_MM:
        return COLUMN_WIDTHS_MM[width]
    try:
        mm = float(width)
    except (TypeError, ValueError):
        raise FigureError(f"width must be single, onehalf, double or millimetres, got {width!r}") from None
    if not 30 <= mm <= 400:
        raise FigureError(f"width {mm} mm is outside 30..400 mm")
    return mm


def save_figure(fig: Any, path: str | Path, dpi: int = 600) -> Path:
    """Save deterministically (no dates, fixed producer), atomically; the suffix picks the format.

    Raises:
        FigureError: Unknown suffix.
    """
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise FigureError(f"unknown figure format {fmt!r} for {path}; use .pdf, .svg or .png")
    meta = {"pdf": {"CreationDate": None, "ModDate": None, "Producer": "segcam"}, "svg": {"Date": None},
            "png": {"Software": None}}[fmt]
    return atomic_write(path, lambda p: fig.savefig(p, format=fmt, dpi=dpi, metadata=meta))


@dataclass
class FigureRow:
    """One row of a CAM grid.

    Attributes:
        label: Row label (image name).
        image: H x W x 3 uint8 RGB.
        maps: One un-normalised H x W map per sweep column.
        truth: Optional H x W ground-truth mask.
        prediction: Optional H x W predicted mask.
        empty: Per map, True where its target region was empty (the panel is marked, not left blank).
    """

    label: str
    image: np.ndarray
    maps: list[np.ndarray] = field(default_factory=list)
    truth: np.ndarray | None = None
    prediction: np.ndarray | None = None
    empty: Sequence[bool] = ()


def _mask_rgb(mask: np.ndarray) -> np.ndarray:
    m = (np.asarray(mask) > 0).astype(np.uint8) * 255
    return np.repeat(m[..., None], 3, axis=2)


def cam_grid(rows: Sequence[FigureRow], map_titles: Sequence[str], out: str | Path | Sequence[str | Path],
             width: str | float = "double", cmap: str = DEFAULT_CMAP, alpha: float | None = None,
             normalization: str = "per_map", dpi: int = 600, colorbar_label: str = "Seg-Grad-CAM",
             font_pt: float = FONT_PT, keep_figure: list | None = None,
             overlay_mode: str = DEFAULT_OVERLAY_MODE) -> list[Path]:
    """Draw rows = images, columns = input | ground truth | prediction | one CAM overlay per sweep item.

    Args:
        rows: The images and their maps (every row has ``len(map_titles)`` maps of its image's size).
        map_titles: Titles of the CAM columns (layers, models or methods).
        out: One path or several (``fig.pdf``, ``fig.svg``, ``fig.png``).
        width: Journal column (``single``, ``onehalf``, ``double``) or millimetres.
        cmap: Colormap (default inferno; ``jet``/``turbo`` on request).
        alpha: Heatmap weight in the overlays.
        normalization: ``per_map`` (each map / its max) or ``shared`` (all maps / the largest value).
        dpi: Raster resolution of PNG output (and of images embedded in PDF/SVG stays native).
        colorbar_label: Colorbar text; the normalisation is appended.
        font_pt: Font size (>= 7 pt).
        keep_figure: A list to receive the open figure instead of saving it (layout tests measure its text).
        overlay_mode: ``heat`` (heat-weighted, the photo unchanged where the map is zero) or ``blend``.

    Returns:
        The written paths.

    Raises:
        FigureError: No rows, wrong map counts, mismatched sizes, or panels narrower than 14 mm.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    check_cmap(cmap)
    check_overlay_mode(overlay_mode)
    if not rows:
        raise FigureError("no rows to draw")
    if normalization not in ("per_map", "shared"):
        raise FigureError(f"normalization must be per_map or shared, got {normalization!r}")
    outs = [Path(out)] if isinstance(out, (str, Path)) else [Path(o) for o in out]
    has_gt = any(r.truth is not None for r in rows)
    has_pred = any(r.prediction is not None for r in rows)
    titles = ["Input"] + (["Ground truth"] if has_gt else []) + (["Prediction"] if has_pred else []) + list(map_titles)
    for r in rows:
        if len(r.maps) != len(map_titles):
            raise FigureError(f"row {r.label!r} has {len(r.maps)} maps for {len(map_titles)} columns")
        for name, arr in [("ground truth", r.truth), ("prediction", r.prediction), *[("map", m) for m in r.maps]]:
            if arr is not None and np.shape(arr)[:2] != r.image.shape[:2]:
                raise FigureError(f"row {r.label!r}: {name} is {np.shape(arr)[1]}x{np.shape(arr)[0]} but the image is "
                                  f"{r.image.shape[1]}x{r.image.shape[0]}; give masks of the image's size")
    width_mm = resolve_width(width)
    ncols, nrows = len(titles), len(rows)
    aspects = [r.image.shape[0] / r.image.shape[1] for r in rows]  # rows of different shapes: own heights
    aspect = sum(aspects) / nrows  # the mean row: what the colorbar's length follows
    top = max((float(m.max()) for r in rows for m in r.maps), default=0.0)
    norm_text = "per map" if normalization == "per_map" else f"shared, max {top:.3g}"
    written = []
    with matplotlib.rc_context(paper_rc(font_pt)):
        measure = _TextMeasure(font_pt)
        label_mm, title_mm = measure.line_mm + 1.5, measure.line_mm + 1.2
        # The colorbar column holds the bar, its tick labels and the label wrapped to the bar's length; the
        # bar's length depends on the panels' height, which depends on what the colorbar leaves. Estimate,
        # draw, then measure what matplotlib drew and widen the column by any overflow (at most twice).
        cbar_mm = 17.0
        for _ in range(3):
            panel_w = (width_mm - label_mm - cbar_mm) / ncols
            bar_mm = max(0.8 * nrows * max(panel_w, 1.0) * aspect, 8.0)
            cbar_lines = measure.wrap(f"{colorbar_label} ({norm_text})", bar_mm)
            cbar_mm = 1.5 + 2.0 + 0.8 + measure.width_mm("0.0") + 1.2 + len(cbar_lines) * measure.line_mm + 0.8
        for attempt in range(3):
            panel_w = (width_mm - label_mm - cbar_mm) / ncols
            if panel_w < MIN_PANEL_MM:
                most = int((width_mm - label_mm - cbar_mm) // MIN_PANEL_MM)
                raise FigureError(f"{ncols} columns in {width_mm:.0f} mm give {panel_w:.1f} mm panels "
                                  f"(< {MIN_PANEL_MM:.0f} mm); use at most {most} columns "
                                  f"({most - (ncols - len(map_titles))} maps), a wider --width, or split the figure")
            height_mm = title_mm + sum(panel_w * a for a in aspects) + 2.0
            fig = plt.figure(figsize=(width_mm * MM, height_mm * MM))
            shown_titles = [measure.fit(t, panel_w - 0.5) for t in titles]
            row_labels = [measure.fit_end(r.label, panel_w * a - 0.5) for r, a in zip(rows, aspects)]
            cbar_label = _draw_grid(fig, rows, shown_titles, row_labels, has_gt, has_pred, width_mm, height_mm,
                                    label_mm, cbar_mm, title_mm, aspects, cmap, alpha, normalization, top,
                                    "\n".join(cbar_lines), overlay_mode)
            fig.canvas.draw()
            fig.canvas.draw()  # the axis label settles on the second draw (it follows the tick labels)
            over_px = cbar_label.get_window_extent(fig.canvas.get_renderer()).x1 - fig.bbox.x1
            if over_px <= -0.5 or attempt == 2:
                break
            plt.close(fig)
            cbar_mm += (over_px + 1.0) / fig.dpi * 25.4 + 0.3
        if keep_figure is not None:
            keep_figure.append(fig)
            return []
        for path in outs:
            written.append(save_figure(fig, path, dpi))
        plt.close(fig)
    return written


def _draw_grid(fig: Any, rows: Sequence[FigureRow], titles: list[str], row_labels: list[str], has_gt: bool,
               has_pred: bool, width_mm: float, height_mm: float, label_mm: float, cbar_mm: float, title_mm: float,
               aspects: list[float], cmap: str, alpha: float, normalization: str, top: float, cbar_label: str,
               overlay_mode: str) -> Any:
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    nrows, ncols = len(rows), len(titles)
    left, right = label_mm / width_mm, 1 - cbar_mm / width_mm
    bottom, top_frac = 1.0 / height_mm, 1 - title_mm / height_mm
    gs = fig.add_gridspec(nrows, ncols, left=left, right=right, bottom=bottom, top=top_frac, wspace=0.04,
                          hspace=0.04, height_ratios=aspects)
    letters = iter(_labels())
    for i, r in enumerate(rows):
        panels = [r.image]
        if has_gt:
            panels.append(_mask_rgb(r.truth) if r.truth is not None else np.zeros_like(r.image))
        if has_pred:
            panels.append(_mask_rgb(r.prediction) if r.prediction is not None else np.zeros_like(r.image))
        first_map = len(panels)
        for m in r.maps:
            scale = top if normalization == "shared" else float(m.max())
            unit = np.clip(m / scale, 0, 1) if scale > 0 else np.zeros_like(m, dtype=np.float32)
            panels.append(overlay(r.image, unit, cmap, alpha, mode=overlay_mode))
        for j, panel in enumerate(panels):
            ax = fig.add_subplot(gs[i, j])
            ax.imshow(panel, interpolation="nearest", aspect="equal")
            ax.set_gid(f"panel-{i}-{j}")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_linewidth(0.3)
            if i == 0:
                ax.set_title(titles[j], pad=2)
            if j == 0:
                ax.set_ylabel(row_labels[i], labelpad=2)
            k = j - first_map
            if 0 <= k < len(r.empty) and r.empty[k]:  # an empty target: say so on the panel, never a blank map
                ax.plot([0, 1], [0, 1], color="white", linewidth=0.6, transform=ax.transAxes)
                ax.plot([0, 1], [1, 0], color="white", linewidth=0.6, transform=ax.transAxes)
                ax.text(0.5, 0.5, "empty\ntarget", transform=ax.transAxes, ha="center", va="center", color="black",
                        bbox={"boxstyle": "square,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.85})
            ax.annotate(f"({next(letters)})", xy=(0, 1), xycoords="axes fraction", xytext=(2, -2),
                        textcoords="offset points", va="top", ha="left", fontweight="bold", color="white",
                        bbox={"boxstyle": "square,pad=0.1", "fc": "black", "ec": "none", "alpha": 0.6})
    cax = fig.add_axes([right + 1.5 / width_mm, bottom + 0.1 * (top_frac - bottom), 2.0 / width_mm,
                        0.8 * (top_frac - bottom)])
    cbar = fig.colorbar(ScalarMappable(norm=Normalize(0, 1), cmap=cmap), cax=cax)
    cbar.set_label(cbar_label)
    cbar.ax.set_gid("colorbar")
    cbar.outline.set_linewidth(0.3)
    return cbar.ax.yaxis.label


class _TextMeasure:
    """Widths of text as drawn (Agg renderer, the figure's font), in millimetres."""

    def __init__(self, font_pt: float) -> None:
        import matplotlib.pyplot as plt

        self._fig = plt.figure(figsize=(4, 4))
        self._renderer = self._fig.canvas.get_renderer()
        self._text = self._fig.text(0, 0, "", fontsize=font_pt)
        self.line_mm = font_pt * 1.25 / 72 * 25.4  # one line of text, with leading
        plt.close(self._fig)

    def width_mm(self, text: str) -> float:
        self._text.set_text(text)
        return self._text.get_window_extent(self._renderer).width / self._fig.dpi * 25.4

    def fit(self, label: str, length_mm: float) -> str:
        """``label``, or its start and end around an ellipsis, whichever fits ``length_mm``."""
        if self.width_mm(label) <= length_mm:
            return label
        for keep in range(len(label) - 1, 1, -1):
            head = min(3, keep // 3)
            short = label[:head] + "\u2026" + label[len(label) - (keep - head):]
            if self.width_mm(short) <= length_mm:
                return short
        return label[:1] + "\u2026"

    def fit_end(self, label: str, length_mm: float) -> str:
        """``label``, or its start with an ellipsis at the end, whichever fits ``length_mm``.

        For row labels: the start of a file name is what tells photos apart; the full names are in the figure's
        manifest.
        """
        if self.width_mm(label) <= length_mm:
            return label
        for keep in range(len(label) - 1, 0, -1):
            short = label[:keep] + "\u2026"
            if self.width_mm(short) <= length_mm:
                return short
        return label[:1] + "\u2026"

    def wrap(self, text: str, length_mm: float) -> list[str]:
        """Greedy word wrap to lines no longer than ``length_mm`` (a word longer than that is shortened)."""
        lines: list[str] = []
        for word in text.split():
            if lines and self.width_mm(f"{lines[-1]} {word}") <= length_mm:
                lines[-1] = f"{lines[-1]} {word}"
            else:
                lines.append(self.fit(word, length_mm))
        return lines or [""]


def _labels() -> list[str]:
    letters = list(string.ascii_lowercase)
    return letters + [a + b for a in letters for b in letters]


def comparison_scatter(points: Sequence[dict[str, Any]], out: str | Path | Sequence[str | Path],
                       x: str = "latency_ms", y: str = "miou", width: str | float = "single",
                       xlabel: str = "CPU latency per 1x3x400x400 image (ms)", ylabel: str = "DeepCrack test mIoU",
                       dpi: int = 600, font_pt: float = FONT_PT, keep_figure: list | None = None,
                       hollow_label: str | None = None) -> list[Path]:
    """mIoU-versus-latency scatter (one labelled point per model), in the same style as :func:`cam_grid`.

    Args:
        points: Dicts with ``name`` and the ``x`` and ``y`` keys (and optionally ``params`` in millions,
            which sets the marker area, and ``hollow``: drawn as an outline, e.g. weights trained on other data).
        out: One path or several.
        x: Key of the horizontal value.
        y: Key of the vertical value.
        width: Journal column or millimetres.
        xlabel: Horizontal axis label.
        ylabel: Vertical axis label.
        dpi: PNG resolution.
        font_pt: Font size (>= 7 pt).
        keep_figure: A list to receive the open figure instead of saving it (layout tests).
        hollow_label: The legend's words for the hollow points (None: no legend entry).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if not points:
        raise FigureError("no points to plot")
    outs = [Path(out)] if isinstance(out, (str, Path)) else [Path(o) for o in out]
    width_mm = resolve_width(width)
    written = []
    with matplotlib.rc_context(paper_rc(font_pt)):
        fig, ax = plt.subplots(figsize=(width_mm * MM, width_mm * 0.8 * MM), layout="constrained")
        notes = []
        for p in points:
            hr = str(p["name"]).startswith("hrsegnet")
            colour = "#b5121b" if hr else "#3b5b92"
            ax.scatter(p[x], p[y], s=_marker_area(p.get("params")), marker="o" if hr else "s",
                       facecolor="none" if p.get("hollow") else colour, edgecolor=colour if p.get("hollow") else "black",
                       linewidth=0.8 if p.get("hollow") else 0.4, zorder=3)
            notes.append(ax.annotate(str(p["name"]), (p[x], p[y]), xytext=(3, 3), textcoords="offset points"))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, linewidth=0.3, alpha=0.5)
        ax.margins(0.12)
        from matplotlib.lines import Line2D

        kinds = [Line2D([], [], marker="o", ls="", color="#b5121b", markeredgecolor="black", markeredgewidth=0.4,
                        label="HrSegNet"),
                 Line2D([], [], marker="s", ls="", color="#3b5b92", markeredgecolor="black", markeredgewidth=0.4,
                        label="PaddleSeg baselines")]
        if hollow_label and any(p.get("hollow") for p in points):
            kinds.append(Line2D([], [], marker="o", ls="", markerfacecolor="none", markeredgecolor="0.3",
                                markeredgewidth=0.8, label=hollow_label))
        if any(p.get("params") is not None for p in points):  # marker area = parameters: two reference sizes
            kinds += [Line2D([], [], marker="o", ls="", color="0.75", markeredgecolor="black", markeredgewidth=0.4,
                             markersize=_marker_area(m) ** 0.5, label=f"{m} M parameters") for m in (1, 5)]
        # below the plot, where it cannot cover a point or a label
        fig.legend(handles=kinds, loc="outside lower center", ncol=2, frameon=False, handletextpad=0.3,
                   columnspacing=1.0)
        _place_labels(fig, ax, notes, points, x, y)
        if keep_figure is not None:
            keep_figure.append(fig)
            return []
        for path in outs:
            written.append(save_figure(fig, path, dpi))
        plt.close(fig)
    return written


#: Label positions tried around a point, in order: offset (points), horizontal and vertical alignment.
_LABEL_SPOTS = [((3, 3), "left", "bottom"), ((3, -3), "left", "top"), ((-3, 3), "right", "bottom"),
                ((-3, -3), "right", "top"), ((0, 6), "center", "bottom"), ((0, -6), "center", "top")]
#: The same spots for a hollow point: below-left first, away from its filled twin's first choice.
_HOLLOW_SPOTS = [_LABEL_SPOTS[i] for i in (3, 2, 1, 0, 5, 4)]


def _put(note: Any, spot: tuple) -> None:
    (off, ha, va) = spot
    note.set_position(off)
    note.set_horizontalalignment(ha)
    note.set_verticalalignment(va)


def _place_labels(fig: Any, ax: Any, notes: Sequence[Any], points: Sequence[dict[str, Any]], x: str, y: str) -> None:
    """Put each point's label at the first spot inside the frame that overlaps no other label or marker.

    Two weights of one network share its latency, so their points sit one above the other: a hollow point
    tries the spots below-left first, its filled twin above-right. Where no spot is free the one with the
    fewest clashes is kept.
    """
    from matplotlib.transforms import Bbox

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    px = fig.dpi / 72
    markers = []
    for p in points:
        cx, cy = ax.transData.transform((p[x], p[y]))
        r = _marker_area(p.get("params")) ** 0.5 / 2 * px
        markers.append(Bbox.from_extents(cx - r, cy - r, cx + r, cy + r))
    placed: list[Any] = []
    for i, (note, p) in enumerate(zip(notes, points)):
        spots = _HOLLOW_SPOTS if p.get("hollow") else _LABEL_SPOTS
        best, best_cost = spots[0], None
        for spot in spots:
            _put(note, spot)
            bb = note.get_window_extent(renderer)
            outside = (bb.x0 < frame.x0 - 0.5 or bb.x1 > frame.x1 + 0.5 or bb.y0 < frame.y0 - 0.5
                       or bb.y1 > frame.y1 + 0.5)
            clashes = sum(bb.overlaps(o) for o in placed) + sum(bb.overlaps(m) for j, m in enumerate(markers) if j != i)
            cost = 100 * outside + clashes
            if best_cost is None or cost < best_cost:
                best, best_cost = spot, cost
            if cost == 0:
                break
        _put(note, best)
        placed.append(note.get_window_extent(renderer))


def _marker_area(params: Any) -> float:
    """Scatter marker area (points^2) for a model of ``params`` million parameters."""
    return 12 + 6 * float(params if params is not None else 1.0)


def metric_bars(summary: Sequence[dict[str, Any]], metrics: Sequence[str], out: str | Path,
                width: str | float = "double", dpi: int = 300, keep_figure: list | None = None) -> Path | None:
    """One small bar chart per metric, bars = method x layer (for ``evaluate-cam`` reports).

    ``keep_figure``: a list to receive the open figure instead of saving it (layout tests).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    width_mm = resolve_width(width)
    labels = [f"{r['method']} / {r['layer']}" for r in summary]
    height_mm = 20 + 3.6 * len(summary)  # one 7-pt label line per bar
    with matplotlib.rc_context(paper_rc()):
        fig, axes = plt.subplots(1, len(metrics), figsize=(width_mm * MM, height_mm * MM), layout="constrained",
                                 squeeze=False)
        for ax, m in zip(axes[0], metrics):
            ax.barh(range(len(summary)), [r[m] for r in summary], color="#3b5b92")
            ax.set_yticks(range(len(summary)))
            ax.set_yticklabels(labels if ax is axes[0][0] else [""] * len(labels))
            ax.invert_yaxis()
            # metric names are long (insertion_auc_pred_target...): wrapped to the panel's width, never clipped
            chars = max(8, int(width_mm / len(metrics) / 1.6))
            ax.set_title("\n".join(textwrap.wrap(m.replace("_", " "), chars)), fontsize=7)
        if keep_figure is not None:
            keep_figure.append(fig)
            return None
        path = save_figure(fig, out, dpi)
        plt.close(fig)
    return path
