"""The concept atlas and the HTML report of a run, from the per-crack records it saved."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import CHROMIUM_ARGS, EXAMPLE_MASKS, EXAMPLES, chromium_or_skip

from segcam.cli import main
from segcam.survey.atlas import CRACKS_PER_CONCEPT, K_MAX, K_MIN, default_k


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("atlas") / "run"
    assert main(["explain", "--model", "hrsegnet_b16", "--out", str(out), str(EXAMPLES)]) == 0
    return out


def test_atlas_is_deterministic_with_a_seed_and_counts_false_positives(run, tmp_path, capsys) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["atlas", str(run), "--masks", str(EXAMPLE_MASKS), "--out", str(a)]) == 0
    assert main(["atlas", str(run), "--masks", str(EXAMPLE_MASKS), "--out", str(b)]) == 0
    assert (a / "atlas.json").read_text() == (b / "atlas.json").read_text()
    assert (a / "atlas.csv").read_text() == (b / "atlas.csv").read_text()
    data = json.loads((a / "atlas.json").read_text())
    n = len((run / "cracks.csv").read_text().splitlines()) - 1
    assert sum(c["members"] for c in data["concepts"]) == n
    assert data["k"] == default_k(n) == min(n, K_MIN) and -1 <= data["silhouette"] <= 1
    assert all(c["false_positive_share"] is not None for c in data["concepts"])
    assert (a / "atlas.png").stat().st_size > 10_000 and (a / "atlas.pdf").is_file()
    c = tmp_path / "c"
    assert main(["atlas", str(run), "--seed", "1", "--k", "3", "--out", str(c)]) == 0
    assert json.loads((c / "atlas.json").read_text())["k"] == 3


def test_default_k_is_one_concept_per_so_many_cracks_within_its_range() -> None:
    assert [default_k(n) for n in (1, 2, K_MIN)] == [1, 2, K_MIN]  # never more concepts than cracks
    assert default_k(K_MIN * CRACKS_PER_CONCEPT // 2) == K_MIN
    assert default_k(10 * CRACKS_PER_CONCEPT) == 10
    assert default_k(100_000) == K_MAX


def test_atlas_skips_images_without_masks_with_one_line_each(run, tmp_path, capsys) -> None:
    masks = tmp_path / "masks"
    masks.mkdir()
    shutil.copy(EXAMPLE_MASKS / "cfd_001.png", masks / "cfd_001.png")
    assert main(["atlas", str(run), "--masks", str(masks), "--k", "2", "--out", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert err.count("no ground-truth mask; skipped in the false-positive analysis") == 3


def test_a_run_without_crack_records_names_the_command_to_rerun(tmp_path, capsys) -> None:
    old = tmp_path / "old"
    assert main(["explain", "--model", "hrsegnet_b16", "--no-cracks", "--out", str(old), str(EXAMPLES / "cfd_001.jpg")]) == 0
    for cmd in (["atlas", str(old)], ["report", str(old)]):
        assert main(cmd) == 2
        err = capsys.readouterr().err
        assert "rerun `segcam explain`" in err and "Traceback" not in err


def test_report_of_a_run_without_cracks_says_so(tmp_path) -> None:
    import numpy as np
    from PIL import Image

    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((96, 128, 3), 128, np.uint8)).save(blank)
    out = tmp_path / "run"
    assert main(["explain", "--model", "hrsegnet_b16", "--out", str(out), str(blank)]) == 0
    assert main(["report", str(out)]) == 0
    text = (out / "report.html").read_text()
    assert "No cracks were predicted in this run" in text


def test_report_opens_in_chromium_without_errors_and_every_image_loads(run, tmp_path) -> None:
    chromium, sync_playwright = chromium_or_skip()
    assert main(["atlas", str(run), "--masks", str(EXAMPLE_MASKS)]) == 0
    assert main(["report", str(run)]) == 0
    html = (run / "report.html").read_text()
    assert "http://" not in html and "https://" not in html and "<script" not in html  # self-contained
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            errors, requests = [], []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto((run / "report.html").as_uri())
            page.wait_for_load_state("load")
            sizes = page.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth])")
            queue = page.locator("h2", has_text="Review queue").count()
        finally:
            browser.close()
    assert not errors, errors
    assert sizes and all(done and width > 0 for done, width in sizes), sizes
    assert queue == 1 and all(u.startswith(("file://", "data:")) for u in requests), requests


def test_atlas_clusters_the_named_feature_blocks_each_weighted_alike(run) -> None:
    import numpy as np

    from segcam.survey.atlas import ATLAS_BLOCKS, _atlas_columns, _prepare, build_atlas, load_run_cracks

    cracks = load_run_cracks(run)
    widths = dict(next(r["crack_features"] for r in cracks.manifest["images"] if r.get("crack_features")))
    assert set(ATLAS_BLOCKS) <= set(widths) and "seg3@beside" in widths
    blocks = _atlas_columns(cracks, ("low3", "seg3@beside"))
    assert [b.shape[1] for b in blocks] == [widths["low3"], widths["seg3@beside"]]
    x = _prepare(blocks)
    share = (x[:, :widths["low3"]] ** 2).sum(axis=1).mean()  # rows are unit length: the rest is the other block
    assert 0.3 < share < 0.7, share  # unweighted, the 128 low3 columns would hold about 128 / 144 of it
    assert _atlas_columns(cracks, ("no_such_layer",))[0].shape == cracks.features.shape
    a = build_atlas(cracks, k=3, seed=0, blocks=("low3", "seg3@beside"))
    b = build_atlas(cracks, k=3, seed=0, blocks=("low3", "seg3@beside"))
    assert np.array_equal(a.assignment, b.assignment)
