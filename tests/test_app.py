"""The Streamlit app: AppTest flows and one real-browser check (headless Chromium via Playwright)."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time

import numpy as np
import paddle
import pytest
from PIL import Image

pytest.importorskip("streamlit", reason="the app extra is not installed: pip install -e '.[app]'")
from conftest import CHROMIUM_ARGS, EXAMPLES, ROOT, chromium_or_skip, free_port, listening, served_app  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from segcam.cli import main  # noqa: E402

APP = str(ROOT / "apps" / "segcam_app.py")


def _app(**state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["m1_name"] = "hrsegnet_b16"
    at.session_state["m1_weights"] = "random"
    for k, v in state.items():
        at.session_state[k] = v
    return at.run()


def _captions(at: AppTest) -> list[str]:
    return [img.proto.imgs[0].caption for img in at.get("image")]


def _ok(at: AppTest) -> None:
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


def test_example_image_flow() -> None:
    at = _app()
    _ok(at)
    # two panels a row: the photo with its target beside the overlay (and its scale), then prediction and heatmap
    assert [c for c in _captions(at) if not c.startswith("map value")] == ["Image / target", "Overlay", "Prediction",
                                                                          "Heatmap"]
    assert any("RANDOMLY INITIALISED" in w.value for w in at.warning)
    assert len(at.get("download_button")) >= 2


def test_changing_layer_alpha_cmap_does_not_recompute() -> None:
    at = _app()
    at.multiselect(key="layers").set_value(["seg_head", "seg3", "stage2"]).run()
    _ok(at)
    assert len(at.session_state["results"]) == 2  # one entry per layer set
    results_before = dict(at.session_state["results"])
    at.radio(key="shown").set_value("seg3").run()
    at.slider(key="alpha").set_value(0.8).run()
    at.selectbox(key="cmap").set_value("turbo").run()
    at.radio(key="norm").set_value("shared").run()
    _ok(at)
    assert at.session_state["results"].keys() == results_before.keys()
    assert all(at.session_state["results"][k] is results_before[k] for k in results_before)
    assert "Layer strip" in [h.value for h in at.subheader]
    assert _captions(at)[-3:] == ["seg_head", "seg3", "stage2"]


def test_compare_models() -> None:
    at = _app(m2_weights="random")
    at.multiselect(key="layers").set_value(["seg_head", "stage2"]).run()
    at.sidebar.radio(key="mode").set_value("Compare models").run()
    _ok(at)
    caps = _captions(at)
    # the photo, per model its prediction, then per layer its overlay (layer, real name, raw max) and its scale
    assert caps[0] == "Input photo: deepcrack_11215-9"
    caps = caps[1:]
    assert [c.split(" (")[0] for c in caps[:2]] == ["A: hrsegnet_b16 prediction", "B: hrsegnet_b16 prediction"]
    assert [c.split(" → ")[0] for c in caps[2::2]] == ["A: hrsegnet_b16 · seg_head", "B: hrsegnet_b16 · seg_head",
                                                      "A: hrsegnet_b16 · stage2", "B: hrsegnet_b16 · stage2"]
    assert all("raw max" in c for c in caps[2::2]) and all("this map's maximum" in c for c in caps[3::2])
    assert len(at.get("download_button")) == 8  # overlay PNG + raw map per model and layer
    assert any("RANDOMLY INITIALISED" in m.value for m in at.markdown)  # each model's weights are named
    assert not any("sha256" in m.value and len(m.value) > 120 for m in at.markdown)  # short headers
    at.button(key="make_cmp_fig").click().run()  # a PDF panel of the comparison: rows = models
    _ok(at)
    pdf = [b for b in at.get("download_button") if "compare.pdf" in str(b.proto.label)]
    assert pdf, [b.proto.label for b in at.get("download_button")]
    at.radio(key="norm").set_value("shared").run()
    _ok(at)
    scales = [c for c in _captions(at) if c.startswith("0 … 1")]
    assert len(scales) == 4 and all("larger maximum of A and B" in c for c in scales)
    assert scales[0] == scales[1]  # one scale for both models of a layer


def _upload(at: AppTest, name: str, data: bytes, mime: str = "image/png") -> AppTest:
    at.radio(key="img_source").set_value("Upload").run()
    at.file_uploader(key="upload").set_value((name, data, mime)).run()
    return at


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_bad_upload_shows_a_message_and_the_app_keeps_working() -> None:
    at = _upload(_app(), "notes.png", b"this is not an image")
    assert not at.exception
    assert any("notes.png" in e.value and "not an image" in e.value for e in at.error)
    at.file_uploader(key="upload").set_value(("gray.png", _png(Image.open(EXAMPLES / "cfd_001.jpg").convert("L")),
                                              "image/png")).run()
    _ok(at)
    assert "Overlay" in _captions(at)


@pytest.mark.parametrize("mode", ["RGBA", "I;16"])
def test_rgba_and_16bit_uploads(mode: str) -> None:
    img = Image.open(EXAMPLES / "cfd_001.jpg").convert("RGBA" if mode == "RGBA" else "L")
    if mode == "I;16":
        img = Image.fromarray(np.asarray(img).astype(np.uint16) * 200)
    at = _upload(_app(), f"up_{mode[:4]}.png", _png(img))
    _ok(at)
    assert "Overlay" in _captions(at)


def test_huge_upload_is_downscaled_with_a_notice() -> None:
    at = _upload(_app(), "huge.png", _png(Image.new("RGB", (6000, 400), (90, 90, 90))))  # over the CLI's 2048/4096
    _ok(at)
    notice = [i.value for i in at.info if "downscaled" in i.value]
    assert notice and "6000x400" in notice[0] and "--" not in notice[0]  # no CLI flags told to a web user


def _mask_png(arr: np.ndarray) -> bytes:
    return _png(Image.fromarray(arr.astype(np.uint8)))


def test_gt_mask_reupload_with_the_same_name_and_01_masks() -> None:
    at = _app(example="deepcrack_11215-9.jpg")
    at.radio(key="target_kind").set_value("Ground-truth mask").run()
    first = np.zeros((384, 544), np.uint8)
    first[100:120, :] = 1  # a 0/1 mask: crack = 1
    at.file_uploader(key="gt_upload").set_value(("gt.png", _mask_png(first), "image/png")).run()
    _ok(at)
    assert any("(10880 px)" in c.value for c in at.caption), [c.value for c in at.caption]
    second = np.zeros((384, 544), np.uint8)
    second[200:205, 100:300] = 255  # corrected mask, same file name
    at.file_uploader(key="gt_upload").set_value(("gt.png", _mask_png(second), "image/png")).run()
    _ok(at)
    assert any("(1000 px)" in c.value for c in at.caption), [c.value for c in at.caption]
    assert len(at.session_state["results"]) == 3  # predicted crack, then one per mask content


def test_page_names_the_model_and_the_panel_download_follows_the_screen() -> None:
    at = _app(example="deepcrack_11215-9.jpg")
    assert any("Model **hrsegnet_b16**" in c.value and "random init" in c.value for c in at.caption)
    at.button(key="make_fig").click().run()
    _ok(at)
    assert [b.label for b in at.get("download_button")][-1] == "Download panel.pdf"
    at.selectbox(key="example").set_value("deepcrack_IMG_6472-1.jpg").run()
    _ok(at)
    assert "Download panel.pdf" not in [b.label for b in at.get("download_button")]
    at.sidebar.radio(key="m1_source").set_value("PaddleSeg YAML").run()
    assert not at.exception and any("PaddleSeg YAML config" in i.value for i in at.info)
    assert not at.get("download_button")  # nothing silently shown for another model


def test_weights_that_do_not_match_the_model(tmp_path, monkeypatch) -> None:
    import segcam

    monkeypatch.setenv("SEGCAM_APP_WEIGHTS_ROOTS", str(tmp_path))
    path = tmp_path / "b32.pdparams"
    paddle.save(segcam.create_model("hrsegnet_b32", weights="random").network.state_dict(), str(path))
    at = _app(m1_weights=str(path))
    assert not at.exception
    assert any("does not match" in e.value for e in at.error)


def test_browse_an_output_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SEGCAM_APP_RUNS_ROOT", str(tmp_path))
    run = tmp_path / "run"
    assert main(["explain", "--model", "hrsegnet_b16", "--weights", "random", "--layer", "seg1", "--layer", "seg_head",
                 "--out", str(run), str(EXAMPLES / "cfd_001.jpg"), str(EXAMPLES / "deepcrack_11215-9.jpg")]) == 0
    at = _app()
    at.sidebar.radio(key="mode").set_value("Browse a run").run()
    at.text_input(key="run_folder").set_value(str(run)).run()
    _ok(at)
    caps = _captions(at)
    # per image: the prediction, then per layer its overlay (with max), colour scale (ticks) and a download
    layer_captions = lambda: [c for c in _captions(at) if " (max " in c]  # noqa: E731
    assert [c.split(" ")[0] for c in layer_captions()] == ["seg1", "seg_head"]
    assert caps.count("prediction") == 1 and sum("raw value" in c for c in caps) == 2
    assert sum(1 for b in at.get("download_button") if "__overlay.jpg" in str(b.proto.label)) == 2
    at.selectbox(key="run_image").set_value("deepcrack_11215-9").run()
    _ok(at)
    at.checkbox(key="run_all").check().run()
    _ok(at)
    assert len(layer_captions()) == 4  # 2 images x 2 layers
    at.text_input(key="run_folder").set_value(str(tmp_path / "nothing")).run()
    assert not at.exception and any("manifest.json" in e.value for e in at.error)


def test_browse_shows_the_crack_table_and_the_review_queue(tmp_path, monkeypatch) -> None:
    import csv

    monkeypatch.setenv("SEGCAM_APP_RUNS_ROOT", str(tmp_path))
    run = tmp_path / "run"
    assert main(["explain", "--model", "hrsegnet_b16", "--out", str(run), str(EXAMPLES / "deepcrack_11215-9.jpg"),
                 str(EXAMPLES / "cfd_001.jpg")]) == 0
    at = _app()
    at.sidebar.radio(key="mode").set_value("Browse a run").run()
    at.selectbox(key="run_pick").set_value("run").run()  # the list of runs under the root
    _ok(at)
    rows = list(csv.DictReader(open(run / "cracks.csv")))
    table = at.dataframe[0].value
    assert len(rows) >= 2 and len(table) == len(rows) and list(table["review_rank"]) == list(range(1, len(rows) + 1))
    tiles = [c for c in _captions(at) if c.startswith("#1 ")]
    assert len(tiles) == 1 and "score" in tiles[0]


def test_gt_mask_target_and_pixel_target() -> None:
    at = _app(example="cfd_001.jpg")
    at.radio(key="target_kind").set_value("Ground-truth mask").run()
    at.file_uploader(key="gt_upload").set_value(("gt.png", (EXAMPLES.parent / "masks" / "cfd_001.png").read_bytes(),
                                                  "image/png")).run()
    _ok(at)
    assert any("mask gt.png" in c.value for c in at.caption)
    at.radio(key="target_kind").set_value("Pixel").run()
    _ok(at)
    at.file_uploader  # the pixel inputs are number inputs filled by clicks on the picker
    assert any("pixel" in c.value for c in at.caption)


def test_real_browser_renders_the_overlay(tmp_path) -> None:
    chromium, sync_playwright = chromium_or_skip()
    with served_app(tmp_path) as url:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(url, timeout=60_000)
                page.get_by_text("Overlay", exact=True).first.wait_for(timeout=120_000)
                img = page.locator("img").nth(1)  # image / target, overlay, its colour scale, prediction, heatmap
                img.wait_for(timeout=60_000)
                shot = tmp_path / "overlay.png"
                img.screenshot(path=str(shot))
                page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
                assert page.get_by_text("Deploy", exact=True).count() == 0  # toolbarMode minimal
                # drag a box on the image picker: the box inputs must follow
                page.get_by_text("Box", exact=True).click()
                plot = page.locator(".js-plotly-plot").first
                plot.wait_for(timeout=60_000)
                time.sleep(2)
                bb = plot.bounding_box()
                x0, y0 = bb["x"] + bb["width"] * 0.3, bb["y"] + bb["height"] * 0.3
                page.mouse.move(x0, y0)
                page.mouse.down()
                page.mouse.move(x0 + 80, y0 + 60, steps=10)
                page.mouse.up()
                full = ["0", "0", "544", "384"]  # the first example: the 544x384 DeepCrack photo
                box = full
                for _ in range(40):
                    box = [page.locator(f"input[aria-label='{k}']").input_value() for k in ("x0", "y0", "x1", "y1")]
                    if box != full:
                        break
                    time.sleep(0.5)
                x0v, y0v, x1v, y1v = map(int, box)
                assert 0 < x0v < x1v < 544 and 0 < y0v < y1v < 384, box
                # a single click on the pixel picker selects that pixel (the 544x384 image, grid step 5)
                page.get_by_text("Pixel", exact=True).click()
                time.sleep(2)
                picked = page.locator(".js-plotly-plot .imagelayer image").first
                picked.wait_for(timeout=60_000)
                ib = picked.bounding_box()
                before = [page.locator(f"input[aria-label='{k}']").input_value() for k in ("x", "y")]
                page.mouse.click(ib["x"] + ib["width"] * 0.25, ib["y"] + ib["height"] * 0.75)
                # the rerun refreshes the x and y inputs one after the other: wait until both have settled
                xy, last = before, None
                for _ in range(40):
                    xy = [page.locator(f"input[aria-label='{k}']").input_value() for k in ("x", "y")]
                    if xy != before and xy == last:
                        break
                    last = xy
                    time.sleep(0.5)
                assert abs(int(xy[0]) - 136) <= 6 and abs(int(xy[1]) - 288) <= 6, (before, xy)
                # a slow method waits for Compute, then shows its progress (pass counter and time left)
                page.locator("[data-testid='stSelectbox']").filter(has_text="Method").click()
                page.keyboard.type("Seg-Score-CAM")  # listed by name, marked slow
                page.keyboard.press("Enter")
                page.get_by_role("button", name="Compute Seg-Score-CAM").wait_for(timeout=60_000)
                _watch_progress(page)  # the bar goes with the result: record what it said while it was there
                page.get_by_role("button", name="Compute Seg-Score-CAM").click(timeout=60_000)
                _wait_caption(page, r"Seg-Score-CAM · score", 300)
                said = [t for t, _ in page.evaluate("() => window.__seen")]
                assert any(re.search(r"Seg-Score-CAM · layer 1 of 1 \(seg_head\) · pass \d+ of \d+", t) for t in said), said
                assert page.get_by_text("Traceback").count() == 0
            finally:
                browser.close()
        arr = np.asarray(Image.open(shot).convert("RGB")).astype(float)
        assert arr.shape[0] > 50 and arr.shape[1] > 50
        assert arr.std() > 10, "the overlay screenshot is blank"


def test_segcam_app_command_starts_streamlit_on_the_packaged_page(monkeypatch, capsys) -> None:
    from pathlib import Path

    calls = []

    class FakeServer:
        def __init__(self, cmd, env=None, **kwargs) -> None:
            calls.append((cmd, env))

        def wait(self, timeout=None) -> int:
            return 0

        def poll(self) -> int:
            return 0

    monkeypatch.setattr(subprocess, "Popen", FakeServer)
    assert main(["app", "--port", "8600"]) == 0
    cmd, env = calls[0]
    assert cmd[1:4] == ["-m", "streamlit", "run"] and Path(cmd[4]).parts[-2:] == ("app", "ui.py") and Path(cmd[4]).is_file()
    assert "8600" in cmd and "localhost:8600" in capsys.readouterr().err
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"  # never every interface unless --host says so
    assert env["SEGCAM_APP_RUNS_ROOT"] == str(Path.cwd().resolve())


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="reads Linux's /proc/net/tcp")
def test_segcam_app_binds_loopback_and_sigterm_stops_its_server(tmp_path) -> None:
    import signal

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "segcam", "app", "--port", str(port)], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while not listening(port) and time.time() < deadline:
            time.sleep(0.2)
        addrs = listening(port)
        assert addrs and all(a in ("0100007F", "00000000000000000000000001000000") for a in addrs), addrs
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        deadline = time.time() + 20
        while listening(port) and time.time() < deadline:
            time.sleep(0.2)
        assert not listening(port), "the Streamlit server outlived segcam app"
    finally:
        if proc.poll() is None:
            proc.kill()


def test_app_refuses_paths_outside_its_roots(tmp_path, monkeypatch) -> None:
    import json
    import pickle

    runs = tmp_path / "runs"
    run = runs / "run"
    assert main(["explain", "--model", "hrsegnet_b16", "--weights", "random", "--out", str(run),
                 str(EXAMPLES / "cfd_001.jpg")]) == 0
    monkeypatch.setenv("SEGCAM_APP_RUNS_ROOT", str(runs))
    monkeypatch.setenv("SEGCAM_APP_WEIGHTS_ROOTS", str(tmp_path / "weights"))
    at = _app()
    at.sidebar.radio(key="mode").set_value("Browse a run").run()
    for outside in ("/root", "../../../../etc", str(tmp_path)):
        at.text_input(key="run_folder").set_value(outside).run()
        assert not at.exception and any("outside" in e.value for e in at.error), outside
    man = json.loads((run / "manifest.json").read_text())  # a manifest pointing outside its folder
    man["images"][0]["layers"]["seg_head"]["overlay"] = "/etc/hostname"
    (run / "manifest.json").write_text(json.dumps(man))
    at.text_input(key="run_folder").set_value("run").run()
    assert not at.exception and any("outside the run folder" in w.value for w in at.warning)
    assert not at.get("image")
    # weights: outside the allowed folders, and a pickle payload inside them
    (tmp_path / "weights").mkdir()
    marker = tmp_path / "PWNED"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "weights" / "evil.pdparams"
    evil.write_bytes(pickle.dumps({"x": Payload()}))
    for weights, message in ((str(tmp_path / "elsewhere.pdparams"), "not a file inside the folders"),
                             (str(evil), "refused")):
        at = _app(m1_weights=weights)
        assert not at.exception and any(message in e.value for e in at.error), [e.value for e in at.error]
    assert not marker.exists()


def test_views_mark_small_targets_explain_zero_maps_and_show_a_scale() -> None:
    from segcam.app import core as app_core

    at = _app(example="deepcrack_11215-9.jpg")
    at.radio(key="target_kind").set_value("Pixel").run()
    _ok(at)
    assert any("map value: 0 … 1 = its own maximum (per_map)" in (img.proto.imgs[0].caption or "") for img in at.get("image"))
    res = next(iter(at.session_state["results"].values()))
    marked = app_core.mark_target(res)
    tinted = res.image.copy()
    assert (marked != tinted).any(axis=2).sum() > 100  # a ring around the one-pixel target, not one pixel
    zero = type(res)(res.name, res.image, res.prediction, res.target_mask, res.target, res.category,
                     {k: type(m)(m.layer, m.layer_name, m.raw * 0, m.upsampled * 0, m.normalized * 0, 0.0, False)
                      for k, m in res.maps.items()})
    layer = next(iter(res.maps))
    assert "no positive evidence" in app_core.zero_map_reason(zero, layer)
    assert app_core.zero_map_reason(res, layer) is None or res.maps[layer].raw_max == 0


def test_slow_method_waits_for_compute_shows_progress_and_can_be_cancelled(monkeypatch) -> None:
    from segcam.app import core as app_core

    seen = []
    real = app_core.progress_text

    def spy(name, stage, done, total, spent):
        seen.append((stage, done, total))
        return real(name, stage, done, total, spent)

    monkeypatch.setattr(app_core, "progress_text", spy)
    at = _app(method="seg_score_cam", layers=["seg3", "seg_head"])
    _ok(at)
    assert not [c for c in _captions(at) if c == "Overlay"]  # nothing computed yet
    planned = [i.value for i in at.info if "press Compute" in i.value]
    assert planned and re.search(r"makes (\d+) forward passes \(seg3: \d+ \+ seg_head: \d+", planned[0]), planned
    announced = int(re.search(r"makes (\d+) forward passes", planned[0]).group(1))
    at.button(key="compute_a").click().run()
    _ok(at)
    assert "Overlay" in _captions(at)
    # one fraction over both layers: monotone, ending at the announced total, naming "layer k of 2"
    fracs = [d / t for _, d, t in seen]
    assert fracs == sorted(fracs) and seen[-1][1] == seen[-1][2] == announced, seen
    assert {st for st, _, _ in seen} >= {"forward pass", "layer 1 of 2 (seg3)", "layer 2 of 2 (seg_head)"}
    assert real("X", "layer 1 of 2 (seg3)", 3, 5, 4.0)[1] == "X · layer 1 of 2 (seg3) · pass 3 of 5 · 4 s, about 4 s left"
    # done: the notice, the buttons and the bar are gone
    assert not at.get("progress") and not [b for b in at.button if b.key in ("compute_a", "cancel_a")]
    assert not [i for i in at.info if "press Compute" in i.value]
    # a run interrupted (the Cancel button reruns the page mid-run) says so on the next page
    at.session_state["running_a"] = True
    at.session_state["results"] = {}
    at.run()
    assert any("cancelled" in w.value for w in at.warning)


def test_auto_method_follows_the_target_kind_and_blind_methods_are_flagged() -> None:
    from segcam.cam.defaults import DEFAULTS

    at = _app(example="deepcrack_11215-9.jpg")
    _ok(at)
    at.radio(key="target_kind").set_value("Pixel").run()
    _ok(at)
    caption = " ".join(c.value for c in at.caption)
    assert f"score {DEFAULTS['pixel'].score} (auto)" in caption
    at.selectbox(key="method").set_value("seg_grad_cam").run()
    _ok(at)
    assert any("barely depends on where the target is" in i.value for i in at.info)


def _pick(page, label: str, value: str) -> None:
    """Choose ``value`` in the Streamlit selectbox or multiselect labelled ``label`` (type it, then Enter)."""
    page.locator("[data-testid='stSelectbox'], [data-testid='stMultiSelect']").filter(has_text=label).first.click()
    page.keyboard.type(value)
    page.get_by_role("option", name=value, exact=True).first.click()  # that option, not the first match
    page.keyboard.press("Escape")
    time.sleep(1)


def _overlay_shot(page, path) -> np.ndarray:
    img = page.locator("img").nth(1)  # image / target, overlay, ...
    img.wait_for(timeout=120_000)
    img.screenshot(path=str(path))
    return np.asarray(Image.open(path).convert("RGB")).astype(float)


def _watch_progress(page) -> None:
    """Record every text and value the page's progress bars show into ``window.__seen`` (the bar is removed with
    the result, so polling for it can miss a short run)."""
    page.evaluate("""() => { window.__seen = [];
        new MutationObserver(() => document.querySelectorAll("[data-testid='stProgress']").forEach(p => {
            const bar = p.querySelector("[role='progressbar']");
            window.__seen.push([p.innerText, bar ? Number(bar.getAttribute('aria-valuenow')) : -1]); }))
        .observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true}); }""")


def _wait_caption(page, pattern: str, timeout_s: float = 180) -> str:
    """The first caption matching ``pattern`` once the page shows it."""
    loc = page.get_by_text(re.compile(pattern)).first
    loc.wait_for(timeout=timeout_s * 1000)
    return loc.inner_text()


def test_real_browser_component_by_click_state_across_modes_and_overall_progress(tmp_path) -> None:
    """Issue 23 in Chromium: a crack chosen by clicking it changes the map; settings survive Browse; Score-CAM
    over two layers reports one monotone fraction and 'layer 2 of 2'."""
    from scipy import ndimage

    import segcam
    from segcam.app import core as app_core

    chromium, sync_playwright = chromium_or_skip()
    photo = "deepcrack_IMG_6472-1.jpg"  # four predicted cracks with the shipped B16 weights
    rgb = np.asarray(Image.open(EXAMPLES / photo).convert("RGB"))
    am = app_core.AppModel(segcam.create_model("hrsegnet_b16"), __import__("threading").Lock(), "t")
    pred = app_core.predict(am, rgb)
    comps = app_core.components(pred)
    assert len(comps) >= 2
    labels, _ = ndimage.label(pred == 1, structure=np.ones((3, 3)))
    second = labels == labels[comps[1]["y"], comps[1]["x"]]
    dist = ndimage.distance_transform_edt(second)
    cy, cx = np.unravel_index(int(np.argmax(dist)), dist.shape)  # well inside the second-largest crack
    h, w = pred.shape
    with served_app(tmp_path, SEGCAM_APP_RUNS_ROOT=str(tmp_path)) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1100})
            page.goto(url, timeout=60_000)
            page.get_by_text("Overlay", exact=True).first.wait_for(timeout=120_000)
            _pick(page, "Example image", photo)
            _wait_caption(page, r"predicted class 1 \(\d+ px\)")
            time.sleep(2)
            before = _overlay_shot(page, tmp_path / "before.png")
            _pick(page, "Colormap", "viridis")
            time.sleep(1)
            page.get_by_text("Crack component", exact=True).click()
            page.get_by_text("by clicking it", exact=True).click()
            image = page.locator(".js-plotly-plot .imagelayer image").first
            image.wait_for(timeout=60_000)
            time.sleep(2)
            ib = image.bounding_box()
            first = _wait_caption(page, r"crack component at \d+,\d+")  # the pixel starts on the largest crack
            page.mouse.click(ib["x"] + (cx + 0.5) / w * ib["width"], ib["y"] + (cy + 0.5) / h * ib["height"])
            caption = first
            for _ in range(120):
                caption = _wait_caption(page, r"crack component at \d+,\d+")
                if caption != first:
                    break
                time.sleep(0.5)
            x, y = map(int, re.search(r"at (\d+),(\d+)", caption).groups())
            assert second[y, x], (x, y, cx, cy)  # the clicked crack, not another one
            time.sleep(2)
            after = _overlay_shot(page, tmp_path / "after.png")
            assert before.shape == after.shape and np.abs(before - after).mean() > 2, "the map did not change"
            # Explain -> Browse a run -> Explain: photo, colormap and target kept
            page.get_by_text("Browse a run", exact=True).click()
            page.get_by_text(re.compile("Give the folder of a segcam explain run")).first.wait_for(timeout=60_000)
            page.get_by_text("Explain", exact=True).first.click()
            back = _wait_caption(page, r"crack component at \d+,\d+")
            assert f"at {x},{y}" in back
            boxes = {label: page.locator("[data-testid='stSelectbox']").filter(has_text=label).first
                     for label in ("Colormap", "Example image")}
            shown = {label: (box.text_content() or "") + " ".join(box.locator("input").evaluate_all(
                "els => els.map(e => e.value + ' ' + (e.getAttribute('aria-label') || ''))")) + box.inner_html()[:0]
                for label, box in boxes.items()}
            assert "viridis" in shown["Colormap"] and photo in shown["Example image"], shown
            # Score-CAM over two layers: one monotone fraction, "layer 2 of 2", announced pass count reached
            _pick(page, "Layers", "seg3")
            _pick(page, "Method", "Seg-Score-CAM · slow: runs on Compute")
            page.get_by_role("button", name="Compute Seg-Score-CAM").wait_for(timeout=120_000)
            _watch_progress(page)
            compute = page.get_by_role("button", name="Compute Seg-Score-CAM")
            for _ in range(3):  # a click that lands while a rerun replaces the page is lost: click again
                time.sleep(2)
                compute.click()
                try:
                    compute.wait_for(state="detached", timeout=100_000)
                    break
                except Exception:  # noqa: BLE001 - Playwright's TimeoutError
                    page.screenshot(path=str(tmp_path / "compute.png"), full_page=True)
            _wait_caption(page, r"Seg-Score-CAM · score", 300)
            seen = page.evaluate("() => window.__seen")
            passes = [tuple(map(int, m.groups())) for t, _ in seen if (m := re.search(r"pass (\d+) of (\d+)", t))]
            assert passes and any("layer 2 of 2" in t for t, _ in seen), seen
            fracs = [d / t for d, t in passes]
            assert fracs == sorted(fracs) and len({t for _, t in passes}) == 1, passes
            assert page.locator("[data-testid='stProgress']").count() == 0  # the bar is gone with the result
            assert page.get_by_text("Traceback").count() == 0
        finally:
            browser.close()


def test_component_target_by_rank_pixel_starts_on_a_crack_and_overlay_modes() -> None:
    """Shipped B16 weights on a photo with four predicted cracks: rank 2 explains the second-largest crack; the
    pixel target starts inside a predicted crack (not the image centre) with a zoomed inset; the heat-weighted
    overlay leaves cold pixels as the photo, the blend darkens them."""
    at = AppTest.from_file(APP, default_timeout=180)
    at.session_state["m1_name"] = "hrsegnet_b16"
    at.session_state["example"] = "deepcrack_IMG_6472-1.jpg"
    at.run()
    _ok(at)
    pred = at.session_state["prediction"][1]
    at.radio(key="target_kind").set_value("Crack component").run()
    _ok(at)
    at.number_input(key="comp_rank").set_value(2).run()
    _ok(at)
    res = next(r for k, r in at.session_state["results"].items() if "rank 2" in r.target)
    from segcam.app import core as app_core

    second = app_core.components(pred)[1]
    assert res.target_mask.sum() == second["area"] and res.target_mask[second["y"], second["x"]]
    assert any("Crack 2:" in c.value for c in at.caption)
    at.radio(key="target_kind").set_value("Pixel").run()
    _ok(at)
    x, y = int(at.number_input(key="px_x").value), int(at.number_input(key="px_y").value)
    assert pred[y, x] == 1  # inside a predicted crack
    assert any(c.startswith(f"Overlay around pixel {x},{y}") for c in _captions(at))
    # overlay modes: the same map, cold pixels untouched only in the heat-weighted one
    at.radio(key="target_kind").set_value("Predicted crack").run()
    res = next(r for r in at.session_state["results"].values() if r.target.startswith("predicted"))
    heat = app_core.render(res, "seg_head", "inferno", 0.6, "per_map", "heat").overlay
    blend = app_core.render(res, "seg_head", "inferno", 0.6, "per_map", "blend").overlay
    cold = res.maps["seg_head"].normalized == 0
    assert cold.any() and (heat[cold] == res.image[cold]).all() and not (blend[cold] == res.image[cold]).all()
    at.radio(key="overlay").set_value("blend").run()
    _ok(at)
    assert any(k[-1] == "blend" for k in at.session_state["views"])


def test_method_warnings_reach_the_tile_and_zero_map_advice_names_only_what_is_not_running(monkeypatch) -> None:
    import warnings

    from segcam.app import core as app_core
    from segcam.cam.methods import get_method

    cls = type(get_method("seg_grad_cam_pp"))
    real = cls.cam

    def noisy(self, act, grad, ctx):
        warnings.warn("seg_grad_cam_pp: weights turn negative here; dropped", UserWarning)
        return real(self, act, grad, ctx)

    monkeypatch.setattr(cls, "cam", noisy)
    at = _app(method="seg_grad_cam_pp", layers=["seg3", "seg_head"])
    _ok(at)
    texts = [w.value for w in at.warning]
    assert any(t.startswith("seg3: seg_grad_cam_pp: weights turn negative") for t in texts), texts  # the shown layer
    assert any(t.startswith("seg_grad_cam_pp: weights turn negative") for t in texts), texts  # on the strip tiles
    res = next(iter(at.session_state["results"].values()))
    zero = type(res)(res.name, res.image, res.prediction, res.target_mask, res.target, res.category,
                     {k: type(m)(m.layer, m.layer_name, m.raw * 0, m.upsampled * 0, m.normalized * 0, 0.0, False)
                      for k, m in res.maps.items()})
    advice = app_core.zero_map_reason(zero, "seg3", "layer_cam", "margin")
    assert "another layer" in advice and "margin" not in advice.split("Try")[1] and "layer_cam" not in advice.split("Try")[1]
    assert "layer_cam" in app_core.zero_map_reason(zero, "seg3", "seg_grad_cam", "logit")
