"""Publication figures: valid PDF/SVG/PNG, determinism, physical size, one colorbar, bad input."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from conftest import EXAMPLE_MASKS, EXAMPLES
from PIL import Image

from segcam.cli import main
from segcam.viz.figures import FigureError, FigureRow, cam_grid, comparison_scatter, resolve_width

SVG = "{http://www.w3.org/2000/svg}"


def _rows(n: int = 2, maps: int = 3) -> list[FigureRow]:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        img = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        truth = np.zeros((48, 64), np.uint8)
        truth[20:24] = 1
        rows.append(FigureRow(f"img{i}", img, [rng.random((48, 64)) * (k + 1) for k in range(maps)], truth, truth))
    return rows


def _pdf_size_mm(data: bytes) -> tuple[float, float]:
    box = re.search(rb"/MediaBox \[\s*([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*\]", data)
    return (float(box.group(3)) - float(box.group(1))) / 72 * 25.4, (float(box.group(4)) - float(box.group(2))) / 72 * 25.4


def test_pdf_svg_png_are_valid(tmp_path) -> None:
    outs = cam_grid(_rows(), ["a", "b", "c"], [tmp_path / "f.pdf", tmp_path / "f.svg", tmp_path / "f.png"],
                    width="double", dpi=200)
    pdf = outs[0].read_bytes()
    assert pdf.startswith(b"%PDF-") and len(re.findall(rb"/Type\s*/Page\b", pdf)) == 1
    assert b"/FontFile2" in pdf and b"/Type3" not in pdf  # TrueType embedded, no Type 3 fonts
    root = ET.parse(outs[1]).getroot()
    panels = [g for g in root.iter(f"{SVG}g") if (g.get("id") or "").startswith("panel-")]
    assert len(panels) == 2 * (1 + 2 + 3)  # rows x (input, GT, prediction, 3 maps)
    assert all(g.find(f".//{SVG}image") is not None for g in panels)
    assert len([g for g in root.iter(f"{SVG}g") if g.get("id") == "colorbar"]) == 1
    texts = ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]
    assert "Ground truth" in texts and "(a)" in texts, "SVG text must stay text"
    assert sum("Seg-Grad-CAM" in t for t in texts) == 1, "exactly one colorbar label"
    png = Image.open(outs[2])
    assert abs(png.size[0] - 190 / 25.4 * 200) <= 2


@pytest.mark.parametrize("width, mm", [("single", 90.0), ("double", 190.0), (120, 120.0)])
def test_physical_size_matches_request(tmp_path, width, mm) -> None:
    maps = 1 if width == "single" else 3
    (pdf,) = cam_grid(_rows(maps=maps), [str(i) for i in range(maps)], tmp_path / "f.pdf", width=width)
    w_mm, _ = _pdf_size_mm(pdf.read_bytes())
    assert abs(w_mm - mm) <= 0.5
    root = ET.parse(cam_grid(_rows(maps=maps), [str(i) for i in range(maps)], tmp_path / "f.svg", width=width)[0]).getroot()
    assert abs(float(root.get("width").removesuffix("pt")) / 72 * 25.4 - mm) <= 0.5


def test_deterministic_bytes(tmp_path) -> None:
    for suffix in ("pdf", "svg"):
        a = cam_grid(_rows(), ["a", "b", "c"], tmp_path / f"a.{suffix}")[0].read_bytes()
        b = cam_grid(_rows(), ["a", "b", "c"], tmp_path / f"b.{suffix}")[0].read_bytes()
        assert a == b, suffix


def test_shared_normalisation_changes_the_panels(tmp_path) -> None:
    per = cam_grid(_rows(1), ["a", "b", "c"], tmp_path / "p.png", dpi=100)[0]
    shared = cam_grid(_rows(1), ["a", "b", "c"], tmp_path / "s.png", dpi=100, normalization="shared")[0]
    assert np.asarray(Image.open(per)).tobytes() != np.asarray(Image.open(shared)).tobytes()


def test_bad_requests(tmp_path) -> None:
    with pytest.raises(FigureError, match="columns"):
        cam_grid(_rows(maps=8), [str(i) for i in range(8)], tmp_path / "f.pdf", width="single")
    assert not (tmp_path / "f.pdf").exists()
    rows = _rows(1)
    rows[0].truth = np.zeros((10, 10))
    with pytest.raises(FigureError, match="image's size"):
        cam_grid(rows, ["a", "b", "c"], tmp_path / "f.pdf")
    with pytest.raises(FigureError, match="3 maps for 2 columns"):
        cam_grid(_rows(1), ["a", "b"], tmp_path / "f.pdf")
    with pytest.raises(FigureError, match="format"):
        cam_grid(_rows(1), ["a", "b", "c"], tmp_path / "f.jpg")
    with pytest.raises(FigureError):
        resolve_width("triple")
    with pytest.raises(FigureError, match="7 pt"):
        cam_grid(_rows(1), ["a", "b", "c"], tmp_path / "f.pdf", font_pt=5)


def test_scatter_same_style(tmp_path) -> None:
    pts = [{"name": "hrsegnet_b16", "miou": 0.78, "latency_ms": 120, "params": 0.6},
           {"name": "bisenetv2", "miou": 0.75, "latency_ms": 450, "params": 2.5}]
    pdf, svg = comparison_scatter(pts, [tmp_path / "s.pdf", tmp_path / "s.svg"])
    assert pdf.read_bytes().startswith(b"%PDF-") and b"/FontFile2" in pdf.read_bytes()
    texts = ["".join(t.itertext()) for t in ET.parse(svg).getroot().iter(f"{SVG}text")]
    assert "hrsegnet_b16" in texts and "bisenetv2" in texts
    # a legend for colour/marker (family) and size (parameters)
    assert {"HrSegNet", "PaddleSeg baselines", "1 M parameters", "5 M parameters"} <= set(texts)


def test_scatter_labels_stay_inside_the_frame() -> None:
    """A point at the top right corner: its label goes to the other side instead of crossing the frame."""
    import matplotlib.pyplot as plt

    pts = [{"name": "a_long_model_name", "miou": 0.9, "latency_ms": 900, "params": 5},
           {"name": "hrsegnet_b16", "miou": 0.5, "latency_ms": 10, "params": 0.6}]
    figs: list = []
    comparison_scatter(pts, "unused.png", keep_figure=figs)
    fig = figs[0]
    try:
        boxes = dict(_text_boxes(fig))
        frame = fig.axes[0].get_window_extent()
        for name in ("a_long_model_name", "hrsegnet_b16"):
            bb = boxes[name]
            assert frame.x0 - 0.5 <= bb.x0 and bb.x1 <= frame.x1 + 0.5 and bb.y1 <= frame.y1 + 0.5, (name, bb, frame)
    finally:
        plt.close(fig)


def test_scatter_hollow_points_for_other_data_label_apart_from_their_twin() -> None:
    """Two weights of one network share its latency: the hollow one (other training data) is an outline in the
    legend, and its label sits on the other side of the point, so the two labels do not overlap."""
    import matplotlib.pyplot as plt

    pts = [{"name": "stdcseg.mix", "miou": 0.776, "latency_ms": 347, "params": 8.9},
           {"name": "stdcseg.deepcrack", "miou": 0.775, "latency_ms": 347, "params": 8.9, "hollow": True},
           {"name": "hrsegnet_b16.mix", "miou": 0.85, "latency_ms": 100, "params": 0.6},
           {"name": "hrsegnet_b16.deepcrack", "miou": 0.82, "latency_ms": 100, "params": 0.6, "hollow": True}]
    figs: list = []
    comparison_scatter(pts, "unused.png", keep_figure=figs, hollow_label="DeepCrack-only weights")
    fig = figs[0]
    try:
        boxes = dict(_text_boxes(fig))
        assert "DeepCrack-only weights" in boxes
        assert not boxes["stdcseg.mix"].overlaps(boxes["stdcseg.deepcrack"])
        frame = fig.axes[0].get_window_extent()
        for p in pts:
            bb = boxes[p["name"]]
            assert frame.x0 - 0.5 <= bb.x0 and bb.x1 <= frame.x1 + 0.5 and frame.y0 - 0.5 <= bb.y0, (p["name"], bb)
        faces = [c.get_facecolor() for c in fig.axes[0].collections]
        assert [len(f) == 0 or f[0][3] == 0 for f in faces] == [False, True, False, True]
    finally:
        plt.close(fig)


def test_metric_bar_titles_do_not_overlap() -> None:
    import matplotlib.pyplot as plt

    from segcam.evaluation.cam_eval import METRICS
    from segcam.viz.figures import metric_bars

    summary = [{"method": m, "layer": lay, **{k: 0.5 for k in METRICS}} for m in ("seg_grad_cam", "layer_cam")
               for lay in ("seg3", "seg_head")]
    figs: list = []
    metric_bars(summary, [m for m in METRICS if m != "seconds"], "unused.png", keep_figure=figs)
    fig = figs[0]
    try:
        boxes = [(t, bb) for t, bb in _text_boxes(fig)]
        titles = [(t, bb) for t, bb in boxes if any(t == ax.get_title() for ax in fig.axes)]
        assert len(titles) == len(METRICS) - 1
        for i, (ta, a) in enumerate(titles):
            assert fig.bbox.x0 - 0.5 <= a.x0 and a.x1 <= fig.bbox.x1 + 0.5 and a.y1 <= fig.bbox.y1 + 0.5, ta
            for tb, b in titles[i + 1:]:
                assert not a.overlaps(b), (ta, tb)
    finally:
        plt.close(fig)


def test_cli_figure_from_manifest_and_from_model(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["explain", "--model", "hrsegnet_b16", "--weights", "random", "--layer", "seg1", "--layer", "seg_head",
                 "--out", str(run), str(EXAMPLES / "deepcrack_11215-9.jpg"), str(EXAMPLES / "cfd_001.jpg")]) == 0
    out = tmp_path / "fig"
    assert main(["figure", "--manifest", str(run), "--masks", str(EXAMPLE_MASKS), "--out", str(out),
                 "--format", "svg", "--format", "pdf"]) == 0
    root = ET.parse(f"{out}.svg").getroot()
    assert len([g for g in root.iter(f"{SVG}g") if (g.get("id") or "").startswith("panel-")]) == 2 * 5
    assert main(["figure", "--model", "hrsegnet_b16", "--weights", "random", "--sweep", "method",
                 "--method", "seg_grad_cam", "--method", "layer_cam", "--layer", "seg2", "--out", str(tmp_path / "m"),
                 "--format", "svg", str(EXAMPLES / "cfd_001.jpg")]) == 0
    texts = ["".join(t.itertext()) for t in ET.parse(tmp_path / "m.svg").getroot().iter(f"{SVG}text")]
    assert "LayerCAM" in texts and "Seg-Grad-CAM" in texts and "seg_grad_cam" not in texts  # one name per method


def test_cli_figure_bad_input(tmp_path, capsys) -> None:
    assert main(["figure", "--manifest", str(tmp_path / "none.json")]) == 2
    bad = tmp_path / "manifest.json"
    bad.write_text('{"schema": "segcam.explain", "schema_version": 99, "images": []}')
    assert main(["figure", "--manifest", str(bad)]) == 2
    assert "version 99" in capsys.readouterr().err
    run = tmp_path / "run"
    assert main(["explain", "--model", "hrsegnet_b16", "--weights", "random", "--out", str(run),
                 str(EXAMPLES / "cfd_001.jpg")]) == 0
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.new("L", (10, 10)).save(masks / "cfd_001.png")
    assert main(["figure", "--manifest", str(run), "--masks", str(masks), "--out", str(tmp_path / "x")]) == 2
    assert "image's size" in capsys.readouterr().err
    assert not list(tmp_path.glob("x.*"))


def _text_boxes(fig) -> list[tuple[str, object]]:
    """Every visible, non-empty text of a figure drawn as cam_grid saves it, with its extent in display pixels."""
    import matplotlib
    from matplotlib.text import Text

    from segcam.viz.figures import paper_rc

    with matplotlib.rc_context(paper_rc()):  # cam_grid saves inside this context; some settings apply at draw
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        return [(t.get_text(), t.get_window_extent(renderer)) for t in fig.findobj(Text)
                if t.get_visible() and t.get_text().strip()]


LONG = "deepcrack_IMG_6472-1_a_very_long_survey_photo_name"


@pytest.mark.parametrize("width", ["single", "onehalf", "double"])
@pytest.mark.parametrize("nrows,maps", [(1, 1), (1, 3), (2, 2), (5, 4)])
@pytest.mark.parametrize("label", ["Seg-Grad-CAM", "Seg-Grad-CAM++ (high-resolution) activation"])
def test_figure_text_never_overlaps_or_leaves_the_canvas(width, nrows, maps, label) -> None:
    """Measured, not eyeballed: the drawn text's bounding boxes (titles, row labels, panel letters, colorbar
    ticks and label) are pairwise disjoint and inside the figure, for every supported width and row count."""
    import matplotlib.pyplot as plt

    rows = _rows(nrows, maps)
    rows = [FigureRow(LONG if i == 0 else r.label, r.image, r.maps, r.truth, r.prediction) for i, r in enumerate(rows)]
    titles = ["stage2", "seg1", "seg3", "fused_product"][:maps]
    figs: list = []
    try:
        cam_grid(rows, titles, "unused.pdf", width=width, normalization="shared", colorbar_label=label,
                 keep_figure=figs)
    except FigureError as exc:  # too many columns for this width: refused, saying what fits
        assert "use at most" in str(exc) and not figs
        return
    fig = figs[0]
    try:
        boxes = _text_boxes(fig)
        canvas = fig.bbox
        assert len(boxes) >= nrows * (maps + 3)
        for text, bb in boxes:
            assert bb.x0 >= canvas.x0 - 0.5 and bb.y0 >= canvas.y0 - 0.5, (text, bb, canvas)
            assert bb.x1 <= canvas.x1 + 0.5 and bb.y1 <= canvas.y1 + 0.5, (text, bb, canvas)
        for i, (ta, a) in enumerate(boxes):
            for tb, b in boxes[i + 1:]:
                assert not a.overlaps(b), (ta, tb, a, b)
    finally:
        plt.close(fig)


def test_mixed_aspect_rows_get_their_own_heights_and_text_stays_clear() -> None:
    """A 1:2 portrait row beside a 3:4 landscape row: each panel's box has its image's shape (no letterbox gaps),
    and no text overlaps or leaves the canvas."""
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(1)
    shapes = [(48, 64), (96, 48), (30, 90)]
    rows = [FigureRow(LONG + str(i), rng.integers(0, 256, (*s, 3), dtype=np.uint8), [rng.random(s), rng.random(s)],
                      None, None) for i, s in enumerate(shapes)]
    figs: list = []
    cam_grid(rows, ["seg3", "seg_head"], "unused.pdf", width="double", keep_figure=figs)
    fig = figs[0]
    try:
        fig.canvas.draw()
        for i, (h, w) in enumerate(shapes):
            for j in range(3):
                ax = next(a for a in fig.axes if a.get_gid() == f"panel-{i}-{j}")
                bb = ax.get_window_extent()
                assert abs(bb.height / bb.width - h / w) < 0.03 * (h / w), (i, j, bb, h, w)
        boxes = _text_boxes(fig)
        for i, (ta, a) in enumerate(boxes):
            assert fig.bbox.x0 - 0.5 <= a.x0 and a.x1 <= fig.bbox.x1 + 0.5 and fig.bbox.y0 - 0.5 <= a.y0, (ta, a)
            for tb, b in boxes[i + 1:]:
                assert not a.overlaps(b), (ta, tb)
        labels = [t for t, _ in boxes if t.startswith("deepcrack_")]
        assert len(labels) == 3, labels  # the tall row has room for its whole name, the short ones are cut at the end
        full = [LONG + str(i) for i in range(3)]
        assert all(t == f or (t.endswith("\u2026") and f.startswith(t[:-1])) for t, f in zip(labels, full)), labels
        assert labels[1] == full[1] and labels[2].endswith("\u2026")
    finally:
        plt.close(fig)


def test_empty_target_panels_are_marked(tmp_path) -> None:
    rows = _rows(1, 2)
    rows[0].maps[1] = np.zeros_like(rows[0].maps[1])
    rows[0].empty = [False, True]
    (svg,) = cam_grid(rows, ["seg3", "seg_head"], tmp_path / "e.svg")
    texts = ["".join(t.itertext()) for t in ET.parse(svg).getroot().iter(f"{SVG}text")]
    assert sum("empty" in t for t in texts) == 1 and any("target" in t for t in texts)


def test_cli_figure_labels_and_its_manifest(tmp_path, capsys) -> None:
    import json

    run = tmp_path / "run"
    assert main(["explain", "--model", "hrsegnet_b16", "--weights", "random", "--layer", "seg_head", "--target",
                 "box:0,0,1,1", "--out", str(run), str(EXAMPLES / "cfd_001.jpg"),
                 str(EXAMPLES / "deepcrack_11215-9.jpg")]) == 0
    out = tmp_path / "fig"
    assert main(["figure", "--manifest", str(run), "--labels", "CFD 001, DeepCrack 11215", "--out", str(out),
                 "--format", "svg"]) == 0
    texts = ["".join(t.itertext()) for t in ET.parse(f"{out}.svg").getroot().iter(f"{SVG}text")]
    assert "CFD 001" in texts and "DeepCrack 11215" in texts
    record = json.loads((tmp_path / "fig.json").read_text())
    assert [r["image"] for r in record["rows"]] == ["cfd_001", "deepcrack_11215-9"]
    assert [r["label"] for r in record["rows"]] == ["CFD 001", "DeepCrack 11215"] and record["files"] == ["fig.svg"]
    assert main(["figure", "--manifest", str(run), "--labels", "only one", "--out", str(tmp_path / "bad")]) == 2
    assert "one per row" in capsys.readouterr().err and not list(tmp_path.glob("bad.*"))
