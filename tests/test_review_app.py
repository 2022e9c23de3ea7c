"""The app's review mode: pictures of a crack, keyboard verdicts that survive a reload, two pages at once."""

from __future__ import annotations

import json
import re
import shutil
import time

import numpy as np
import pytest

pytest.importorskip("streamlit", reason="the app extra is not installed: pip install -e '.[app]'")
from conftest import CHROMIUM_ARGS, EXAMPLES, ROOT, chromium_or_skip, served_app  # noqa: E402

from segcam.survey.verdicts import JOURNAL, load_review  # noqa: E402


@pytest.fixture
def root(examples_survey, tmp_path):
    shutil.copytree(examples_survey, tmp_path / "runs" / "run")
    return tmp_path / "runs"


def test_crack_views_use_the_photo_only_inside_the_allowed_folders(root) -> None:
    from segcam.app.review_view import crack_views

    run = root / "run"
    state = load_review(run)
    c = state.cracks[0]
    rec = next(r for r in json.loads((run / "manifest.json").read_text())["images"] if r["name"] == c.name)
    box = [int(c.row[k]) for k in ("x0", "y0", "x1", "y1")]
    inside = crack_views(run, rec, c.crack, box, roots=[EXAMPLES])
    outside = crack_views(run, rec, c.crack, box, roots=[root])
    assert inside.source == "photo" and outside.source == "thumbnails"
    for v in (inside, outside):
        assert v.crop.shape == v.outline.shape == v.evidence.shape and max(v.crop.shape[:2]) >= 384
        drawn = np.all(v.outline == (0, 255, 255), axis=2)
        assert drawn.any() and not np.array_equal(v.evidence, v.crop)  # the outline and the map are drawn
    with pytest.raises(ValueError, match="holds no crack 999"):
        crack_views(run, rec, 999, box, roots=[EXAMPLES])
    with pytest.raises(ValueError, match="outside"):
        crack_views(run, {**rec, "crack_file": "../../x.npz"}, c.crack, box)


def _open_review(page, url: str, total: int) -> None:
    page.goto(url, timeout=60_000)
    page.get_by_text("Review a run", exact=True).click(timeout=60_000)
    box = page.get_by_label(re.compile("Run folder"))
    box.fill("run")
    box.press("Enter")
    page.get_by_text(re.compile(rf"\d+ of {total} reviewed")).wait_for(timeout=60_000)
    page.get_by_text("prediction outline").wait_for(timeout=60_000)
    page.locator("h1").first.click()  # keys go to the page, not the text box


def _reviewed(page, total: int) -> int:
    return int(page.get_by_text(re.compile(rf"\d+ of {total} reviewed")).first.inner_text().split()[0])


def _shown(page) -> str:
    return page.get_by_text(re.compile(r"^Crack \d+ of ")).first.inner_text()


def _press(page, key: str, expect: int, total: int) -> None:
    """Press a key and wait until the page shows the next crack (a key pressed earlier would act on this one)."""
    before = _shown(page)
    page.keyboard.press(key)
    deadline = time.time() + 30
    while _reviewed(page, total) != expect or _shown(page) == before:
        assert time.time() < deadline, f"after {key}: {_reviewed(page, total)} reviewed, expected {expect}"
        time.sleep(0.2)
    page.get_by_text("prediction outline").wait_for(timeout=30_000)


def test_review_five_cracks_by_keyboard_reload_and_they_are_there(root) -> None:
    chromium, sync_playwright = chromium_or_skip()
    run = root / "run"
    total = len(load_review(run).cracks)
    order = [c.ident for c in load_review(run).cracks]
    with served_app(root, SEGCAM_APP_RUNS_ROOT=str(root), SEGCAM_APP_PHOTOS_ROOTS=str(EXAMPLES)) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            _open_review(page, url, total)
            assert _reviewed(page, total) == 0
            for key, expect in (("Y", 1), ("N", 2), ("S", 2), ("Y", 3), ("U", 2), ("N", 3), ("Y", 4), ("N", 5)):
                _press(page, key, expect, total)
            page.reload()
            _open_review(page, url, total)
            assert _reviewed(page, total) == 5  # resumed: the verdicts were saved, not held by the page
            state = load_review(run)
            decided = {c: state.verdict_of(*c) for c in order}
            # queue order: Y, N, (skip), Y undone then N, Y, N; the skipped crack is still open
            assert [decided[c] for c in order[:2]] == ["confirmed", "rejected"]
            assert decided[order[2]] == "unreviewed" and [decided[c] for c in order[3:6]] == [
                "rejected", "confirmed", "rejected"]
            assert page.get_by_text(f"Crack {order[2][1]} of {order[2][0]}").count() == 0  # not the skipped one
            assert page.get_by_text("Traceback").count() == 0
        finally:
            browser.close()


def test_two_pages_reviewing_at_once_lose_nothing(root) -> None:
    chromium, sync_playwright = chromium_or_skip()
    run = root / "run"
    total = len(load_review(run).cracks)
    with served_app(root, SEGCAM_APP_RUNS_ROOT=str(root), SEGCAM_APP_PHOTOS_ROOTS=str(EXAMPLES)) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            a, b = (browser.new_page(viewport={"width": 1400, "height": 1000}) for _ in range(2))
            _open_review(a, url, total)
            _open_review(b, url, total)
            clicks = 0
            for page, key in ((a, "Y"), (b, "N"), (a, "Y"), (b, "N")):
                before = len(load_review(run).verdicts)
                page.keyboard.press(key)
                clicks += 1
                deadline = time.time() + 30
                while not (run / JOURNAL).exists() or len((run / JOURNAL).read_text().splitlines()) < clicks:
                    assert time.time() < deadline, "a verdict was not saved"
                    time.sleep(0.2)
                page.get_by_text("prediction outline").wait_for(timeout=30_000)
                assert len(load_review(run).verdicts) >= before
        finally:
            browser.close()
    events = [json.loads(x) for x in (run / JOURNAL).read_text().splitlines()]
    assert [e["verdict"] for e in events] == ["confirmed", "rejected", "confirmed", "rejected"]
    state = load_review(run)
    assert state.reviewed == len({(e["name"], e["crack"]) for e in events})
    with open(run / "verdicts.csv") as fh:
        assert len(fh.read().splitlines()) == 1 + state.reviewed


def test_the_run_browser_shows_verdicts_and_filters_by_them(root, monkeypatch) -> None:
    from streamlit.testing.v1 import AppTest

    from segcam.survey.verdicts import record

    run = root / "run"
    first, second = (c.ident for c in load_review(run).cracks[:2])
    record(run, *first, "confirmed")
    record(run, *second, "rejected")
    monkeypatch.setenv("SEGCAM_APP_RUNS_ROOT", str(root))
    at = AppTest.from_file(str(ROOT / "apps" / "segcam_app.py"), default_timeout=120).run()
    at.sidebar.radio(key="mode").set_value("Browse a run").run()
    at.selectbox(key="run_pick").set_value("run").run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert sorted(table["verdict"]) == sorted(["confirmed", "rejected"] + ["unreviewed"] * (len(table) - 2))
    at.get("button_group")[0].set_value("confirmed").run()
    table = at.dataframe[0].value
    assert list(table["verdict"]) == ["confirmed"] and list(table["crack"]) == [first[1]]


def test_marking_a_missed_crack_by_clicking_points(root) -> None:
    chromium, sync_playwright = chromium_or_skip()
    from segcam.survey.missed import load_missed

    run = root / "run"
    total = len(load_review(run).cracks)
    first = load_review(run).cracks[0]
    with served_app(root, SEGCAM_APP_RUNS_ROOT=str(root), SEGCAM_APP_PHOTOS_ROOTS=str(EXAMPLES)) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            _open_review(page, url, total)
            expander = page.locator("details", has_text="Mark a crack the network missed").first
            for _ in range(6):  # a click before the page has settled may not open the expander: try again
                if expander.get_attribute("open") is None:
                    page.get_by_text("Mark a crack the network missed").click()
                try:
                    page.locator(".js-plotly-plot").first.wait_for(timeout=20_000)
                    break
                except Exception:  # noqa: BLE001 - Playwright's TimeoutError: click once more
                    continue
            page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
            time.sleep(2)
            img = page.locator(".js-plotly-plot .imagelayer image").first
            for k, (fx, fy) in enumerate(((0.2, 0.8), (0.5, 0.85), (0.8, 0.9)), 1):
                img.scroll_into_view_if_needed()
                bb = img.bounding_box()
                page.mouse.click(bb["x"] + bb["width"] * fx, bb["y"] + bb["height"] * fy)
                page.get_by_role("button", name=f"Save this crack ({k} points)").wait_for(timeout=30_000)
            page.get_by_role("button", name="Save this crack (3 points)").click()
            page.get_by_text(f"1 missed cracks marked on {first.name}.").wait_for(timeout=30_000)
        finally:
            browser.close()
    (mark,), stale = load_missed(run)
    man = json.loads((run / "manifest.json").read_text())
    w, h = next((r["width"], r["height"]) for r in man["images"] if r["name"] == first.name)
    assert mark.name == first.name and stale == 0 and len(mark.points) == 3 and mark.width == 3.0
    xs, ys = zip(*mark.points)
    assert list(xs) == sorted(xs) and all(abs(x / w - f) < 0.03 for x, f in zip(xs, (0.2, 0.5, 0.8)))
    assert all(abs(y / h - f) < 0.03 for y, f in zip(ys, (0.8, 0.85, 0.9)))
