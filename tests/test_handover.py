"""The hand-over: report.html (verdicts, width classes, crack maps, layout, escaping), cracks.geojson, damaged
crack files, and what --overwrite leaves behind."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from conftest import CHROMIUM_ARGS, EXAMPLES, chromium_or_skip

from segcam.cli import main
from segcam.survey.crackmap import class_labels, parse_width_classes, width_class


@pytest.fixture
def run(run_copy):
    return run_copy


def _rows(run) -> list[dict[str, str]]:
    with open(run / "cracks.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_width_classes_follow_the_edges() -> None:
    edges = parse_width_classes("0.1,0.2,0.3,1.0")
    assert class_labels(edges) == ["< 0.1", "0.1-0.2", "0.2-0.3", "0.3-1", ">= 1"]
    assert [width_class(w, edges) for w in (0.05, 0.1, 0.25, 0.99, 3, "", None)] == [
        "< 0.1", "0.1-0.2", "0.2-0.3", "0.3-1", ">= 1", "", ""]
    for bad in ("0.3,0.1", "a,b", "0,0.1", ""):
        with pytest.raises(ValueError, match="--width-classes"):
            parse_width_classes(bad)


def test_report_counts_verdicts_classes_widths_and_writes_geojson(run, tmp_path, capsys) -> None:
    import shapely.geometry

    rows = _rows(run)
    (a, ka), (b, kb) = [(r["name"], r["crack"]) for r in rows[:2]]
    f = tmp_path / "v.csv"
    f.write_text(f"name,crack,verdict\n{a},{ka},confirmed\n{b},{kb},rejected\n")
    assert main(["review", str(run), "--import", str(f)]) == 0
    assert main(["report", str(run), "--pixel-size", "0.05", "--width-classes", "0.2,0.5,1"]) == 0
    err = capsys.readouterr().err
    assert f"{len(rows)} cracks: 1 confirmed, 1 rejected, {len(rows) - 2} unreviewed" in err
    text = (run / "report.html").read_text()
    assert "<b>1</b>verified (confirmed)" in text and f"<b>{len(rows) - 2}</b>unreviewed" in text
    assert "&lt; 0.2" in text and "&gt;= 1" in text and "maximum width, mm" in text
    assert text.count("alt='crack map of") == len({r["name"] for r in rows})
    assert "<th>truth</th>" in text and "truth true" in text or "truth false" in text  # the run has ground truth
    # the class table: confirmed and all counts, every crack in exactly one class
    edges = (0.2, 0.5, 1.0)
    classes = [width_class(float(r["max_width"]) * 0.05, edges) for r in rows]
    for label in set(classes):
        assert f"<td class='l'>{label.replace('<', '&lt;').replace('>', '&gt;')}</td>" in text
    # GeoJSON: one feature per crack, valid geometries, verdicts, millimetres
    doc = json.loads((run / "cracks.geojson").read_text())
    assert doc["type"] == "FeatureCollection" and len(doc["features"]) == len(rows)
    by_id = {(f["properties"]["name"], f["properties"]["crack"]): f for f in doc["features"]}
    assert by_id[(a, int(ka))]["properties"]["verdict"] == "confirmed"
    assert by_id[(b, int(kb))]["properties"]["verdict"] == "rejected"
    for r in rows:
        feat = by_id[(r["name"], int(r["crack"]))]
        geom = shapely.geometry.shape(feat["geometry"])
        line, outline = geom.geoms
        assert line.geom_type in ("LineString", "MultiLineString") and line.is_valid
        assert outline.geom_type in ("Polygon", "MultiPolygon") and outline.is_valid
        assert outline.area == pytest.approx(int(r["area"]) * 0.05**2)  # the pixels' union, in mm^2
        assert line.length == pytest.approx(float(r["length"]) * 0.05, rel=0.35)
        x0, y0, x1, y1 = (int(r[k]) * 0.05 for k in ("x0", "y0", "x1", "y1"))
        assert outline.bounds == pytest.approx((x0, y0, x1, y1))
        assert feat["properties"]["units"] == "mm" and feat["properties"]["area"] == int(r["area"])
    assert (run / "verdicts.csv").is_file()


def test_report_without_a_pixel_size_says_how_to_class_widths(run) -> None:
    assert main(["report", str(run)]) == 0
    text = (run / "report.html").read_text()
    assert "Give one with <code>segcam report RUN --pixel-size MM</code>" in text
    doc = json.loads((run / "cracks.geojson").read_text())
    assert {f["properties"]["units"] for f in doc["features"]} == {"px"}


PAYLOADS = ["\" onmouseover=\"window.__pwned=1", "' onerror='window.__pwned=1", "<img src=x onerror=window.__pwned=1>",
            "</style><script>window.__pwned=1</script>"]


def _poison(run) -> None:
    """Payloads in every text field of the manifest, its crack records, cracks.csv, atlas.json and the journal."""
    man = json.loads((run / "manifest.json").read_text())
    p = iter(PAYLOADS * 100)
    man["model"].update(name=next(p), tag=next(p), weights_sha256=next(p))
    man.update(method=next(p), target=next(p), layers=[next(p)], versions={"segcam": next(p)})
    for rec in man["images"]:
        rec["name"] = rec["name"] + next(p)
        rec["image"] = next(p)
        for i, c in enumerate(rec.get("cracks", [])):
            c.update(evidence_where=next(p), truth=next(p), mean_prob=next(p))
            if i == 0:
                c["review_score"] = next(p)  # shown as missing; the others still make a queue
    man["images"].append({"name": next(p), "status": "failed", "error": next(p)})
    (run / "manifest.json").write_text(json.dumps(man))
    rows = _rows(run)
    for r in rows:
        r["name"] = r["name"] + PAYLOADS[0]
    with open(run / "cracks.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (run / "verdicts.jsonl").write_text(json.dumps({"name": next(p), "crack": 1, "verdict": next(p),
                                                    "reviewer": next(p), "note": next(p)}) + "\n")
    atlas = json.loads((run / "atlas" / "atlas.json").read_text())
    for c in atlas["concepts"]:
        c.update(concept=next(p), members=next(p), false_positive_share=next(p), mean_prob=next(p),
                 mean_length=next(p), mean_width=next(p))
    (run / "atlas" / "atlas.json").write_text(json.dumps(atlas))


def test_report_escapes_every_field_and_fits_1400_px_and_a_phone(run, tmp_path) -> None:
    chromium, sync_playwright = chromium_or_skip()
    assert main(["atlas", str(run)]) == 0
    _poison(run)
    assert main(["report", str(run)]) == 0
    text = (run / "report.html").read_text()
    assert "<script" not in text and "http://" not in text and "https://" not in text
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            for width in (1400, 390):
                page = browser.new_page(viewport={"width": width, "height": 900})
                errors = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.on("dialog", lambda d: errors.append(d.message))
                page.goto((run / "report.html").as_uri())
                page.wait_for_load_state("load")
                page.evaluate("""() => document.querySelectorAll('*').forEach(e => ['mouseover', 'click', 'focus']
                    .forEach(t => e.dispatchEvent(new Event(t, {bubbles: true}))))""")
                handlers = page.evaluate("""() => [...document.querySelectorAll('*')].flatMap(
                    e => [...e.attributes].map(a => a.name).filter(n => n.startsWith('on')))""")
                assert handlers == [] and page.evaluate("window.__pwned") is None and not errors
                assert PAYLOADS[0] in page.inner_text("body")  # shown as text
                scroll, inner = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
                assert scroll <= inner, (width, scroll, inner)
                page.screenshot(path=str(tmp_path / f"report_{width}.png"), full_page=True)
                sizes = page.eval_on_selector_all(".thumbs img", "els => els.map(e => [e.width, e.height])")
                assert sizes and len({tuple(s) for s in sizes}) == 1, sizes  # same-size thumbnails
                page.close()
        finally:
            browser.close()


@pytest.mark.parametrize("damage", ["truncated", "empty", "npy", "nan", "rows"])
def test_a_damaged_crack_file_is_left_out_with_a_warning(run, capsys, damage) -> None:
    man = json.loads((run / "manifest.json").read_text())
    rec = next(r for r in man["images"] if len(r.get("cracks", [])) > 1)
    path = run / rec["crack_file"]
    data = dict(np.load(path))
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "npy":
        with open(path, "wb") as fh:
            np.save(fh, data["features"])
    elif damage == "nan":
        data["features"][0, 0] = np.nan
        np.savez(path.with_suffix(".tmp.npz"), **data)
        path.with_suffix(".tmp.npz").replace(path)
    else:
        data["features"] = data["features"][:-1]
        np.savez(path.with_suffix(".tmp.npz"), **data)
        path.with_suffix(".tmp.npz").replace(path)
    for cmd in (["atlas", str(run)], ["report", str(run)]):
        assert main(cmd) == 0, cmd
        err = capsys.readouterr().err
        assert f"{rec['name']} left out: {path}" in err and "Traceback" not in err, err
    assert rec["name"] not in {f["properties"]["name"] for f in json.loads((run / "cracks.geojson").read_text())["features"]}


def test_overwrite_removes_the_old_report_atlas_and_geojson_but_keeps_the_verdicts(run, capsys) -> None:
    assert main(["atlas", str(run)]) == 0 and main(["report", str(run)]) == 0
    name, crack = _rows(run)[0]["name"], _rows(run)[0]["crack"]
    from segcam.survey.verdicts import record

    record(run, name, int(crack), "confirmed")
    (run / "atlas" / "mine.txt").write_text("a user's file")
    assert main(["survey", "--out", str(run), "--overwrite", str(EXAMPLES)]) == 0
    for f in ("report.html", "cracks.geojson", "verdicts.csv", "atlas/atlas.json", "atlas/atlas.png"):
        assert not (run / f).exists(), f
    assert (run / "atlas" / "mine.txt").read_text() == "a user's file"  # not ours: kept
    from segcam.survey.verdicts import load_review

    assert load_review(run).verdict_of(name, int(crack)) == "confirmed"  # same photo, same crack: still applies
