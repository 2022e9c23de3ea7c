"""Per-crack records: measurement on synthetic masks of known geometry, the true/false rule, evidence, CLI."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from conftest import EXAMPLES

from segcam.cli import main
from segcam.survey.cracks import MIN_AREA, analyse_cracks, crack_labels, evidence_shares, measure_crack
from segcam.survey.review import label_cracks


def band(shape, pts, w):
    """Pixels whose centre lies within w/2 of the polyline ``pts`` ((x, y) points): round joints, flat ends."""
    h, wd = shape
    yy, xx = np.mgrid[0:h, 0:wd].astype(float)
    m = np.zeros(shape, bool)
    last = len(pts) - 2
    for i, ((x0, y0), (x1, y1)) in enumerate(zip(pts[:-1], pts[1:])):
        dx, dy = x1 - x0, y1 - y0
        seg = math.hypot(dx, dy)
        ux, uy = dx / seg, dy / seg
        t = (xx - x0) * ux + (yy - y0) * uy
        tc = np.clip(t, 0, seg)
        d = np.hypot(xx - (x0 + tc * ux), yy - (y0 + tc * uy))
        m |= (d < w / 2) & ((t >= 0) | (i > 0)) & ((t <= seg) | (i < last))
    return m


def _line(length, w, angle, offset=(0.31, 0.57), size=400):
    import cv2

    c = size / 2
    d = (math.cos(math.radians(angle)), -math.sin(math.radians(angle)))
    p0 = (c - d[0] * length / 2 + offset[0], c - d[1] * length / 2 + offset[1])
    p1 = (c + d[0] * length / 2 + offset[0], c + d[1] * length / 2 + offset[1])
    if w == 1:  # a 1-px crack is an 8-connected pixel chain
        m = np.zeros((size, size), np.uint8)
        a, b = tuple(map(round, p0)), tuple(map(round, p1))
        cv2.line(m, a, b, 1, 1, cv2.LINE_8)
        return m > 0, math.dist(a, b)
    return band((size, size), [p0, p1], w), length


def _ok(got, length, width):
    return abs(got["length"] - length) <= 0.03 * length and abs(got["mean_width"] - width) <= max(0.5, 0.1 * width)


@pytest.mark.parametrize("w", [1, 2, 3, 5, 8, 11, 15])
def test_straight_cracks_at_every_angle(w) -> None:
    for angle in range(2, 180, 15):  # off the lattice's own diagonals (a 45-degree raster is wider than w)
        mask, length = _line(250, w, angle, offset=(0.31 + (angle % 7) / 17, 0.57 - (angle % 11) / 29))
        got = measure_crack(mask)
        assert _ok(got, length, w), (w, angle, got)
        assert min(abs(got["orientation"] - angle), 180 - abs(got["orientation"] - angle)) < 2, (angle, got)


@pytest.mark.parametrize("w", [2, 3, 5, 8, 11])
def test_curved_cracks(w) -> None:
    for radius, span in ((100, 120), (60, 200), (150, 90)):  # 10 to 40 widths long
        a = np.linspace(0, math.radians(span), 60)
        pts = [(200.3 + radius * math.cos(t), 200.6 + radius * math.sin(t)) for t in a]
        length = sum(math.dist(p, q) for p, q in zip(pts[:-1], pts[1:]))
        got = measure_crack(band((420, 420), pts, w))
        assert _ok(got, length, w), (w, radius, span, got)


@pytest.mark.parametrize("w", [2, 3, 5, 8, 11, 15])
def test_branching_cracks(w) -> None:
    for rot in (0, 17, 45):
        c = (210.3, 210.6)
        mask = np.zeros((420, 420), bool)
        for k in range(3):
            t = math.radians(rot + 120 * k)
            mask |= band((420, 420), [c, (c[0] + 150 * math.cos(t), c[1] + 150 * math.sin(t))], w)
        got = measure_crack(mask)
        assert _ok(got, 450, w), (w, rot, got)


@pytest.mark.parametrize("w", [2, 3, 5])
def test_a_closed_ring_measures_its_circumference(w) -> None:
    # a loop has no end points and no junctions: the tracer's closed-loop branch
    r = 60
    a = np.linspace(0, 2 * math.pi, 121)
    pts = [(150.3 + r * math.cos(t), 150.6 + r * math.sin(t)) for t in a]
    got = measure_crack(band((300, 300), pts, w))
    assert _ok(got, 2 * math.pi * r, w), (w, got)


def _shapes() -> list[tuple[str, np.ndarray]]:
    """Small compact blobs, rings, blocks with holes and 2-3 px stubs: the shapes that once measured length 0."""
    import cv2

    out = []
    for r in range(2, 9):
        for thick in (1, 2, 3):
            m = np.zeros((40, 40), np.uint8)
            cv2.circle(m, (20, 20), r, 1, thick)
            out.append((f"ring r{r} t{thick}", m))
        for b in range(2, 9):
            for angle in (0, 30, 147.26):
                m = np.zeros((40, 40), np.uint8)
                cv2.ellipse(m, (20, 20), (r, b), angle, 0, 360, 1, -1)
                out.append((f"blob {r}x{b} at {angle}", m))
    for h in range(4, 12):
        m = np.zeros((40, 40), np.uint8)
        m[15:15 + h, 15:15 + h] = 1
        m[17, 17] = 0
        out.append((f"block {h} with a hole", m))
    for w in (2, 3):
        for n in (6, 9, 14):
            m = np.zeros((40, 40), np.uint8)
            cv2.line(m, (10, 10), (10 + n, 10 + n // 2), 1, w)
            out.append((f"stub {w}x{n}", m))
    return out


def test_every_recorded_crack_has_a_positive_length_and_width() -> None:
    from skimage.measure import label

    measured = 0
    for name, shape in _shapes():
        lab = label(shape.astype(bool), connectivity=2)
        for j in range(1, lab.max() + 1):
            comp = lab == j
            if comp.sum() < MIN_AREA:
                continue
            m = measure_crack(comp)
            measured += 1
            assert m["length"] > 0 and m["mean_width"] > 0, (name, m)
            assert m["length"] <= math.sqrt(2) * comp.sum() + 1, (name, m)  # at most a diagonal step a pixel
    assert measured > 150


def test_fast_distance_transforms_equal_scipys() -> None:
    # the records use OpenCV's exact transform for speed; ties in the spur rule need SciPy's values bit for bit
    from scipy.ndimage import distance_transform_edt

    from segcam.survey.cracks import _edt, _nearest

    rng = np.random.default_rng(3)
    for _ in range(20):
        mask = rng.random((70, 90)) < rng.choice([0.02, 0.3, 0.9])
        assert np.array_equal(_edt(mask), distance_transform_edt(mask))
        one = np.zeros((70, 90), np.int32)
        one[rng.integers(0, 70, 4), rng.integers(0, 90, 4)] = 1
        dist, nearest = _nearest(one)
        assert np.array_equal(dist, distance_transform_edt(one == 0)) and (nearest == 1).all()


@pytest.mark.parametrize("shape", [(96, 128), (90, 125)])
def test_pooling_is_each_labels_area_weighted_mean(shape) -> None:
    # whole 1/8 cells (each label's box resized alone), and cells cut by the grid (the whole photo per label)
    import cv2

    from segcam.survey.cracks import _pool

    rng = np.random.default_rng(5)
    act = rng.random((6, 12, 16)).astype(np.float32)
    labels = np.zeros(shape, np.int32)
    labels[5:40, 3:9], labels[50:53, 20:120], labels[60:90, 70:77] = 1, 2, 3  # boxes off the cell grid
    labels[rng.random(shape) < 0.05] = 2
    weight = rng.random(shape).astype(np.float32)
    for wt in (None, weight):
        sums, mass = _pool(act, labels, 3, wt)
        for j in (1, 2, 3):
            m = (labels == j).astype(np.float32) * (1 if wt is None else wt)
            small = cv2.resize(m, (16, 12), interpolation=cv2.INTER_AREA)
            assert np.allclose(sums[j - 1], (act * small).reshape(6, -1).sum(axis=1), rtol=1e-5)
            assert mass[j - 1] == pytest.approx(small.sum(), rel=1e-5)


def test_millimetres_scale_the_pixel_measures() -> None:
    mask, _ = _line(200, 5, 30)
    px, mm = measure_crack(mask), measure_crack(mask, pixel_size=0.2)
    assert mm["length_mm"] == pytest.approx(px["length"] * 0.2, abs=1e-3)
    assert mm["mean_width_mm"] == pytest.approx(px["mean_width"] * 0.2, abs=1e-3)


def test_labels_keep_8_connected_components_over_the_minimum_area() -> None:
    mask = np.zeros((60, 60), bool)
    mask[5:6, 5:40] = True          # 35 px
    mask[20:40, 20:22] = True       # 40 px, the largest
    mask[50, 50] = mask[51, 51] = True  # 2 px, diagonal: one component, under the minimum
    labels, n = crack_labels(mask, min_area=16)
    assert n == 2 and labels[30, 20] == 1 and labels[5, 10] == 2 and labels[50, 50] == 0


def test_true_false_rule_has_a_pixel_tolerance() -> None:
    truth = np.zeros((80, 80), np.uint8)
    truth[40, 10:70] = 1
    for shift, expected in ((0, True), (2, True), (3, True), (4, False), (8, False)):
        labels = np.zeros((80, 80), np.int32)
        labels[40 + shift, 10:70] = 1
        assert label_cracks(labels, truth) == [expected], shift
    half = np.zeros((80, 80), np.int32)
    half[40, 40:70] = 1
    half[60, 40:71] = 1  # 31 of 61 pixels far from the truth: under half within tolerance
    half[40:61, 70] = 1
    assert label_cracks(half, truth) == [False]
    assert label_cracks(np.zeros((5, 5), np.int32), truth[:5, :5]) == []


def test_evidence_shares_split_the_map_by_distance() -> None:
    crack = np.zeros((50, 50), bool)
    crack[25, 10:40] = True
    cam = np.zeros((50, 50))
    cam[25, 20] = 3.0      # on
    cam[30, 20] = 1.0      # 5 px away: beside, in the band
    cam[45, 5] = 1.0       # far
    got = evidence_shares(cam, crack)
    assert got["evidence_on"] == 0.6 and got["evidence_beside"] == 0.2 and got["evidence_far"] == 0.2
    assert got["evidence_band"] == 0.8 and got["evidence_where"] == "on"
    assert evidence_shares(np.zeros((50, 50)), crack)["evidence_where"] == "none"


@pytest.fixture(scope="module")
def trained():
    import segcam

    return segcam.create_model("hrsegnet_b16.mix_wce600")  # fixed weights: these tests count its cracks


def test_exact_evidence_equals_a_direct_explain_of_that_component(trained) -> None:
    import segcam
    from segcam.cam.targets import ComponentTarget
    from segcam.data.images import read_image

    rgb = read_image(EXAMPLES / "deepcrack_11215-9.jpg")
    res = analyse_cracks(trained, rgb, evidence="exact")
    assert len(res.records) >= 2
    for rec in res.records:
        crack = res.labels == rec["crack"]
        ys, xs = np.nonzero(crack)
        own = segcam.explain(trained, rgb, ["seg3"], ComponentTarget(1, x=int(xs[0]), y=int(ys[0])), "layer_cam",
                             score="logit")[0]
        direct = evidence_shares(own.maps["seg3"].upsampled, crack)
        assert {k: rec[k] for k in direct} == direct


def test_zones_evidence_uses_one_pass_and_ranks_like_exact(trained) -> None:
    from scipy.stats import spearmanr

    from segcam.data.images import read_image

    calls = []

    def counting(*args, **kwargs):
        import segcam

        calls.append(1)
        return segcam.explain(*args, **kwargs)

    rgb = read_image(EXAMPLES / "deepcrack_11215-9.jpg")
    zones = analyse_cracks(trained, rgb, explain_fn=counting)
    assert len(calls) == 1 and len(zones.records) >= 2
    exact = analyse_cracks(trained, rgb, evidence="exact")
    assert [r["area"] for r in zones.records] == [r["area"] for r in exact.records]
    band_z = [r["evidence_band"] for r in zones.records]
    band_e = [r["evidence_band"] for r in exact.records]
    assert np.allclose(band_z, band_e, atol=0.1) or spearmanr(band_z, band_e).statistic > 0.5


def test_explain_writes_cracks_csv_and_crack_files(tmp_path) -> None:
    from segcam.survey.cracks import CRACK_FIELDS, read_crack_file

    out = tmp_path / "o"
    sizes = tmp_path / "px.csv"
    sizes.write_text("image,pixel_size\ncfd_001.jpg,0.25\n")
    assert main(["explain", "--model", "hrsegnet_b16.mix_wce600", "--out", str(out), "--pixel-size", str(sizes),
                 str(EXAMPLES / "cfd_001.jpg"), str(EXAMPLES / "deepcrack_11215-9.jpg")]) == 0
    rows = list(csv.DictReader(open(out / "cracks.csv")))
    assert list(rows[0]) == list(CRACK_FIELDS) and len(rows) >= 3
    cfd = [r for r in rows if r["name"] == "cfd_001"]
    assert cfd and all(float(r["length_mm"]) == pytest.approx(float(r["length"]) * 0.25, abs=1e-3) for r in cfd)
    assert all(r["length_mm"] == "" for r in rows if r["name"] != "cfd_001")
    man = json.loads((out / "manifest.json").read_text())
    rec = man["images"][0]
    data = read_crack_file(out / rec["crack_file"])
    assert data["features"].shape[0] == len(rec["cracks"]) and data["thumbs"][0]["photo"].ndim == 3
    ranks = sorted(int(r["review_rank"]) for r in rows if r["review_rank"])
    assert ranks == list(range(1, len(ranks) + 1))


@pytest.mark.parametrize("bad", ["0", "-1", "abc", "nan", "missing.csv"])
def test_bad_pixel_size_is_a_usage_error(tmp_path, bad, capsys) -> None:
    assert main(["explain", "--model", "hrsegnet_b16", "--pixel-size", bad, "--out", str(tmp_path / "o"),
                 str(EXAMPLES / "cfd_001.jpg")]) == 2
    assert "--pixel-size" in capsys.readouterr().err


def test_masks_label_each_crack_and_record_the_missed_ones(tmp_path, trained) -> None:
    """With ground truth, a crack the network did not find becomes a missed region with its own features."""
    import numpy as np
    from PIL import Image

    from segcam.survey.atlas import load_run_cracks

    truth = np.asarray(Image.open(EXAMPLES.parent / "masks" / "deepcrack_11215-9.png")) > 0
    extra = truth.copy()
    extra[300:304, 20:200] = True  # a painted "crack" on plain surface: the network cannot have found it
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(extra.astype(np.uint8) * 255).save(masks / "deepcrack_11215-9.png")
    out = tmp_path / "o"
    assert main(["explain", "--model", "hrsegnet_b16", "--masks", str(masks), "--out", str(out),
                 str(EXAMPLES / "deepcrack_11215-9.jpg"), str(EXAMPLES / "cfd_001.jpg")]) == 0
    rows = list(csv.DictReader(open(out / "cracks.csv")))
    assert {r["truth"] for r in rows if r["name"] == "deepcrack_11215-9"} <= {"true", "false"}
    assert all(r["truth"] == "" for r in rows if r["name"] == "cfd_001")  # no mask: not labelled
    rec = json.loads((out / "manifest.json").read_text())["images"][0]
    boxes = [(m["y0"], m["x0"]) for m in rec["missed_regions"]]
    assert any(y0 >= 290 and x0 <= 30 for y0, x0 in boxes), boxes
    run = load_run_cracks(out)
    missed = [i for i, r in enumerate(run.records) if r["kind"] == "missed"]
    assert len(missed) == len(rec["missed_regions"]) and run.features.shape[0] == len(run.records)
    assert run.thumb(missed[0])["photo"].ndim == 3


def test_tiled_photos_measure_a_crack_across_tiles_as_one(tmp_path) -> None:
    from PIL import Image

    big = tmp_path / "big.png"
    Image.open(EXAMPLES / "deepcrack_11215-9.jpg").resize((1088, 768), Image.BILINEAR).save(big)
    whole, tiled = tmp_path / "whole", tmp_path / "tiled"
    assert main(["explain", "--model", "hrsegnet_b16", "--layer", "seg3", "--save", "raw", "--out", str(whole), str(big)]) == 0
    assert main(["explain", "--model", "hrsegnet_b16", "--layer", "seg3", "--save", "raw", "--tile", "512",
                 "--tile-overlap", "128", "--out", str(tiled), str(big)]) == 0
    w = list(csv.DictReader(open(whole / "cracks.csv")))
    t = list(csv.DictReader(open(tiled / "cracks.csv")))
    big_w, big_t = max(w, key=lambda r: int(r["area"])), max(t, key=lambda r: int(r["area"]))
    assert int(big_t["x0"]) < 384 and int(big_t["x1"]) > 640  # spans the tiles' seam region: one crack
    assert abs(float(big_t["length"]) - float(big_w["length"])) <= 0.03 * float(big_w["length"])
    assert abs(len(t) - len(w)) <= max(2, 0.2 * len(w))


def test_features_pool_each_crack_and_its_surroundings(trained) -> None:
    """Every feature layer is pooled twice: over the crack, and over the pixels beside it and nearest to it."""
    import cv2
    from scipy.ndimage import distance_transform_edt

    import segcam
    from segcam.cam.targets import PredictedTarget
    from segcam.data.images import read_image
    from segcam.survey.cracks import BESIDE_PX, RING_SUFFIX

    rgb = read_image(EXAMPLES / "deepcrack_11215-9.jpg")
    res = analyse_cracks(trained, rgb)
    names = [name for name, _ in res.feature_layers]
    assert names == ["seg3", "low3", "seg3" + RING_SUFFIX, "low3" + RING_SUFFIX]
    own = segcam.explain(trained, rgb, ["seg3"], PredictedTarget(1), "layer_cam", score="logit",
                         keep_activations=True)[0]
    act = own.maps["seg3"].activations
    dist, idx = distance_transform_edt(res.labels == 0, return_indices=True)
    nearest = res.labels[idx[0], idx[1]]
    width = dict(res.feature_layers)["seg3"]
    start = sum(w for name, w in res.feature_layers[:2])  # the seg3@beside block follows the two inside blocks
    for j in range(1, len(res.records) + 1):
        for region, cols in (((res.labels == j), slice(0, width)),
                             ((dist > 0) & (dist <= BESIDE_PX) & (nearest == j), slice(start, start + width))):
            small = cv2.resize(region.astype(np.float32), act.shape[:0:-1], interpolation=cv2.INTER_AREA)
            expect = (act * small[None]).reshape(len(act), -1).sum(1) / small.sum()
            assert np.allclose(res.features[j - 1, cols], expect, rtol=1e-3, atol=1e-4)
        assert not np.allclose(res.features[j - 1, :width], res.features[j - 1, start:start + width], atol=1e-3)
