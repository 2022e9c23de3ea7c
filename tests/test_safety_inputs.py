"""Nothing a user points at runs code or loses data: YAML weights, resume by content, own-file clean-up, URI reads."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import EXAMPLES, ROOT, evil_weights, free_port, listening
from PIL import Image

from segcam.cli import main

IMG = EXAMPLES / "cfd_001.jpg"
FAST = ["--model", "hrsegnet_b16", "--weights", "random", "--layer", "seg3", "--save", "raw"]


def _yaml(path: Path, model: dict) -> Path:
    path.write_text(yaml.safe_dump({"model": model}))
    return path


# -- 1. weights named by a YAML ------------------------------------------------------------------------------

def _component_paths(spec, where=()):
    """Key paths of every component (a mapping with a ``type``) inside a model spec."""
    if isinstance(spec, dict):
        if "type" in spec:
            yield where
        for k, v in spec.items():
            yield from _component_paths(v, (*where, k))


def _set(spec: dict, where: tuple, key: str, value) -> dict:
    node = spec
    for k in where:
        node = node[k]
    node[key] = value
    return spec


def test_every_pretrained_path_of_our_configs_goes_through_the_safe_loader(tmp_path) -> None:
    """For each model config we ship, `pretrained:` on the model and on every nested backbone/component is refused."""
    import segcam
    from segcam.models.config import load_config
    from segcam.models.weights import UnsafeWeightsError

    evil, marker = evil_weights(tmp_path, "w")
    checked = []
    for cfg_path in sorted((ROOT / "configs").glob("*.yml")):
        model = load_config(cfg_path)["model"]
        for where in _component_paths(model):
            spec = _set(json.loads(json.dumps(model)), where, "pretrained", str(evil))
            hostile = _yaml(tmp_path / f"{cfg_path.stem}_{len(checked)}.yml", spec)
            with pytest.raises(UnsafeWeightsError, match=r"pretrained.*posix\.system"):
                segcam.load_paddleseg(hostile, None)
            checked.append(".".join(("model", *where, "pretrained")))
    assert not marker.exists()
    # every shipped model config, and the backbones of the two that have one
    assert len([c for c in checked if c == "model.pretrained"]) == len(list((ROOT / "configs").glob("*.yml")))
    assert "model.backbone.pretrained" in checked


def test_hostile_yaml_is_refused_by_explain_train_and_the_api(tmp_path, capsys) -> None:
    import segcam

    evil, marker = evil_weights(tmp_path, "w")
    hostile = _yaml(tmp_path / "evil.yml", {"type": "UNet", "num_classes": 2, "pretrained": str(evil)})
    weights = tmp_path / "ok.pdparams"
    import paddle

    paddle.save(segcam.load_paddleseg(_yaml(tmp_path / "ok.yml", {"type": "UNet", "num_classes": 2}), None,
                                      strict=False).network.state_dict(), str(weights))
    assert main(["explain", "--config", str(hostile), "--weights", str(weights), "--out", str(tmp_path / "o"),
                 str(IMG)]) == 2
    err = capsys.readouterr().err
    assert "model.pretrained" in err and "posix.system" in err and "Traceback" not in err
    train_cfg = tmp_path / "train.yml"
    train_cfg.write_text(yaml.safe_dump({"model": {"type": "UNet", "num_classes": 2, "pretrained": str(evil)},
                                         "train_dataset": {"type": "CrackDataset", "datasets": ["deepcrack:train"]},
                                         "iters": 1}))
    assert main(["train", "--config", str(train_cfg), "--save-dir", str(tmp_path / "t")]) == 2
    assert "model.pretrained" in capsys.readouterr().err
    backbone = _yaml(tmp_path / "bb.yml", {"type": "DeepLabV3P", "num_classes": 2, "backbone": {
        "type": "ResNet18_vd", "output_stride": 8, "pretrained": str(evil)}})
    with pytest.raises(segcam.WeightsError, match="model.backbone.pretrained"):
        segcam.load_paddleseg(backbone, None)
    assert not marker.exists()


def test_pretrained_urls_are_refused_without_a_download(tmp_path, monkeypatch, capsys) -> None:
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("segcam opened a network connection")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    url = _yaml(tmp_path / "url.yml", {"type": "UNet", "num_classes": 2, "pretrained": "https://example.org/x.pdparams"})
    assert main(["explain", "--config", str(url), "--weights", "random", "--out", str(tmp_path / "o"), str(IMG)]) == 2
    err = capsys.readouterr().err
    assert "model.pretrained" in err and "is a URL" in err and "never downloads" in err


def test_a_component_calling_paddle_load_while_built_fails_closed(tmp_path) -> None:
    """Defence in depth: a code path that unpickles during construction (not through `pretrained`) is refused."""
    import paddle
    from paddleseg.cvlibs import manager

    from segcam.models.config import ConfigError, build_component

    evil, marker = evil_weights(tmp_path, "w")

    class LoadsInInit(paddle.nn.Layer):
        def __init__(self, weights_file: str) -> None:
            super().__init__()
            paddle.load(weights_file)

    manager.MODELS.components_dict["_SegcamTestLoadsInInit"] = LoadsInInit
    try:
        with pytest.raises(ConfigError, match="paddle.load"):
            build_component({"type": "_SegcamTestLoadsInInit", "weights_file": str(evil)})
    finally:
        del manager.MODELS.components_dict["_SegcamTestLoadsInInit"]
    assert not marker.exists() and paddle.load.__module__.startswith("paddle")  # restored afterwards


def test_yaml_python_tags_are_refused(tmp_path) -> None:
    from segcam.models.config import ConfigError, load_config

    marker = tmp_path / "TAG"
    bad = tmp_path / "tag.yml"
    bad.write_text(f"model: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    assert not marker.exists()


def test_pretrained_weights_still_load_through_the_safe_loader(tmp_path) -> None:
    import paddle

    import segcam

    plain = segcam.load_paddleseg(_yaml(tmp_path / "a.yml", {"type": "UNet", "num_classes": 2}), None, strict=False)
    paddle.save(plain.network.state_dict(), str(tmp_path / "unet.pdparams"), protocol=2)  # protocol 2 too
    again = segcam.load_paddleseg(_yaml(tmp_path / "b.yml", {"type": "UNet", "num_classes": 2,
                                                             "pretrained": str(tmp_path / "unet.pdparams")}), None,
                                  strict=False)
    a, b = plain.network.state_dict(), again.network.state_dict()
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


def test_protocol_2_paddle_save_files_load() -> None:
    import tempfile

    import paddle

    from segcam.models.weights import UnsafeWeightsError, safe_load

    with tempfile.TemporaryDirectory() as d:
        sd = {"w": paddle.arange(6, dtype="float32").reshape([2, 3]), "h": paddle.ones([4], dtype="float16")}
        paddle.save(sd, f"{d}/p2.pdparams", protocol=2)
        got = safe_load(f"{d}/p2.pdparams")
        assert np.array_equal(got["w"], sd["w"].numpy()) and got["h"].dtype == np.float16
        # _codecs.encode is allowed only as protocol 2 uses it: str -> latin-1 bytes
        import codecs

        class Other:
            def __reduce__(self):
                return (codecs.encode, ("x", "rot13"))

        with open(f"{d}/rot.pdparams", "wb") as fh:
            pickle.dump({"w": Other()}, fh, protocol=2)
        with pytest.raises(UnsafeWeightsError, match="rot13"):
            safe_load(f"{d}/rot.pdparams")


# -- 2. resume by source and content -------------------------------------------------------------------------

def _rows(out: Path) -> list[dict]:
    import csv

    return list(csv.DictReader(open(out / "summary.csv")))


def test_resume_tells_a_b_from_a_space_b(tmp_path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    shutil.copy(IMG, src / "a_b.jpg")
    assert main(["explain", *FAST, "--out", str(out), str(src)]) == 0
    shutil.copy(EXAMPLES / "deepcrack_11218-3.jpg", src / "a b.jpg")
    assert main(["explain", *FAST, "--out", str(out), str(src)]) == 0
    rows = _rows(out)
    assert sorted(Path(r["image"]).name for r in rows) == ["a b.jpg", "a_b.jpg"]
    assert len({r["name"] for r in rows}) == 2 and all(r["status"] == "ok" for r in rows)
    man = json.loads((out / "manifest.json").read_text())
    by_image = {Path(r["image"]).name: r for r in man["images"]}
    raw_ab = np.load(out / by_image["a_b.jpg"]["layers"]["seg3"]["raw"])["raw"]
    raw_space = np.load(out / by_image["a b.jpg"]["layers"]["seg3"]["raw"])["raw"]
    assert not np.array_equal(raw_ab, raw_space)  # two photos, two explanations


def test_resume_tells_two_folders_with_the_same_file_name_apart(tmp_path, capsys) -> None:
    in1, in2, out = tmp_path / "in1", tmp_path / "in2", tmp_path / "out"
    in1.mkdir()
    in2.mkdir()
    shutil.copy(IMG, in1 / "x.jpg")
    shutil.copy(EXAMPLES / "deepcrack_11218-3.jpg", in2 / "x.jpg")
    assert main(["explain", *FAST, "--out", str(out), str(in1 / "x.jpg")]) == 0
    capsys.readouterr()
    assert main(["explain", *FAST, "--out", str(out), str(in2 / "x.jpg")]) == 0
    assert "already done" not in capsys.readouterr().err
    man = json.loads((out / "manifest.json").read_text())
    by_image = {r["image"]: r for r in man["images"]}
    assert set(by_image) == {str((in1 / "x.jpg").resolve()), str((in2 / "x.jpg").resolve())}
    assert by_image[str((in2 / "x.jpg").resolve())]["name"] == "x-2"
    # the first photo's outputs are untouched, the second has its own
    assert (out / "x__seg3.npz").is_file() and (out / "x-2__seg3.npz").is_file()
    # and rerunning either is now a resume
    capsys.readouterr()
    assert main(["explain", *FAST, "--out", str(out), str(in2 / "x.jpg")]) == 0
    assert "1 already done" in capsys.readouterr().err


def test_a_changed_photo_is_explained_again(tmp_path, capsys) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    shutil.copy(IMG, src / "p.jpg")
    assert main(["explain", *FAST, "--out", str(out), str(src / "p.jpg")]) == 0
    before = (out / "p__seg3.npz").read_bytes()
    shutil.copy(EXAMPLES / "deepcrack_11218-3.jpg", src / "p.jpg")  # same path, other content
    capsys.readouterr()
    assert main(["explain", *FAST, "--out", str(out), str(src / "p.jpg")]) == 0
    assert "already done" not in capsys.readouterr().err
    assert (out / "p__seg3.npz").read_bytes() != before
    rec = json.loads((out / "manifest.json").read_text())["images"]
    assert len(rec) == 1 and rec[0]["source_id"].startswith(f"{(src / 'p.jpg').stat().st_size}:")


# -- 3. clean-up touches only our own files ------------------------------------------------------------------

USER_FILES = (".draft.tmp", ".report.tmp.docx", ".vimrc.tmpl", "thesis.docx", "notes__x.txt")


def test_plain_and_overwrite_runs_keep_the_users_files(tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    for name in USER_FILES:
        (out / name).write_text("mine")
    assert main(["explain", *FAST, "--out", str(out), str(IMG)]) == 0
    assert all((out / n).read_text() == "mine" for n in USER_FILES)
    # a journal/manifest that names the user's files as outputs (edited, or written by something else)
    journal = out / ".segcam-journal.jsonl"
    lines = [json.loads(x) for x in journal.read_text().splitlines()]
    lines[1]["record"]["prediction"] = "thesis.docx"
    lines[1]["record"]["layers"]["seg3"]["raw"] = "notes__x.txt"
    lines[1]["record"]["layers"]["seg3"]["heatmap"] = "../outside.png"
    (tmp_path / "outside.png").write_text("mine")
    journal.write_text("".join(json.dumps(x) + "\n" for x in lines))
    man = json.loads((out / "manifest.json").read_text())
    man["images"][0]["prediction"] = "thesis.docx"
    (out / "manifest.json").write_text(json.dumps(man))
    assert main(["explain", *FAST, "--out", str(out), "--overwrite", str(IMG)]) == 0
    assert all((out / n).read_text() == "mine" for n in USER_FILES)
    assert (tmp_path / "outside.png").read_text() == "mine"


def test_overwrite_removes_the_old_runs_outputs(tmp_path) -> None:
    out = tmp_path / "out"
    assert main(["explain", *FAST, "--out", str(out), str(IMG), str(EXAMPLES / "deepcrack_11218-3.jpg")]) == 0
    assert (out / "deepcrack_11218-3__seg3.npz").is_file()
    assert main(["explain", *FAST, "--out", str(out), "--overwrite", str(IMG)]) == 0
    assert not (out / "deepcrack_11218-3__seg3.npz").exists() and (out / "cfd_001__seg3.npz").is_file()


# -- 4. bounded URI reads ------------------------------------------------------------------------------------

def test_a_fifo_uri_fails_within_seconds(tmp_path) -> None:
    fifo = tmp_path / "fifo.jpg"
    os.mkfifo(fifo)
    t0 = time.time()
    assert main(["explain", *FAST, "--out", str(tmp_path / "o"), f"file://{fifo}", str(IMG)]) == 1
    assert time.time() - t0 < 60
    rows = {Path(r["image"]).name: r for r in _rows(tmp_path / "o")}
    assert rows["fifo.jpg"]["status"] == "error" and "not a regular file" in rows["fifo.jpg"]["error"]
    assert rows["cfd_001.jpg"]["status"] == "ok"


def test_uri_size_and_type_are_checked_before_reading(tmp_path, monkeypatch) -> None:
    from segcam.data import images

    big = tmp_path / "big.jpg"
    with open(big, "wb") as fh:
        fh.truncate(images.MAX_FILE_BYTES + 1)  # sparse: no disk used
    for source in (f"file://{big}", str(big)):
        with pytest.raises(images.ImageError, match="MiB"):
            images.read_image_uri(source) if "://" in source else images.read_image(source)
    folder = tmp_path / "dir.jpg"
    folder.mkdir()
    with pytest.raises(images.ImageError, match="is a folder"):
        images.read_image_uri(f"file://{folder}")


def test_an_unreachable_uri_is_a_failed_row_and_the_batch_goes_on(tmp_path) -> None:
    pytest.importorskip("pyarrow.fs")
    # a store that refuses connections at once (nothing listens on port 9 of this machine)
    uri = "s3://bucket/photo.jpg?endpoint_override=127.0.0.1:9&scheme=http&region=us-east-1"
    assert main(["explain", *FAST, "--out", str(tmp_path / "o"), uri, str(IMG)]) == 1
    rows = _rows(tmp_path / "o")
    assert [r["status"] for r in rows] == ["error", "ok"] and "cannot be reached" in rows[0]["error"]


STUCK_READ = textwrap.dedent("""
    import contextlib, sys, time
    import pyarrow.fs as pafs
    from segcam.data import images

    class Stuck:  # a store that answers metadata and then never sends a byte
        def get_file_info(self, path):
            return pafs.FileInfo(path, pafs.FileType.File, size=1000)

        @contextlib.contextmanager
        def open_input_stream(self, path):
            class Stream:
                def read(self, n=-1):
                    print("reading", flush=True)
                    time.sleep(3600)
            yield Stream()

    images._uri_fs = lambda uri: (Stuck(), "x.jpg")
    from segcam.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def test_sigterm_ends_a_stuck_uri_read(tmp_path) -> None:
    pytest.importorskip("pyarrow.fs")
    script = tmp_path / "stuck.py"
    script.write_text(STUCK_READ)
    proc = subprocess.Popen([sys.executable, str(script), "explain", *FAST, "--out", str(tmp_path / "o"),
                             "s3://never/x.jpg"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "reading"
        time.sleep(0.5)
        t0 = time.time()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=20)
        assert rc == 143 and time.time() - t0 < 10
        assert "terminated" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_stalled_uri_read_fails_as_its_row(monkeypatch) -> None:
    import io
    import threading

    from segcam.data import images

    monkeypatch.setattr(images, "URI_STALL_SECONDS", 0.5)
    release = threading.Event()

    class Slow(io.RawIOBase):
        def read(self, n=-1):
            release.wait(30)
            return b""

    try:
        with pytest.raises(images.ImageError, match="no progress"):
            images._read_stream(Slow(), "s3://b/x.jpg", 10)
    finally:
        release.set()


# -- smaller points ------------------------------------------------------------------------------------------

def test_a_folder_named_like_an_image_is_a_failed_row(tmp_path) -> None:
    (tmp_path / "x.jpg").mkdir()
    assert main(["explain", *FAST, "--out", str(tmp_path / "o"), str(tmp_path / "x.jpg"), str(IMG)]) == 1
    rows = {Path(r["image"]).name: r for r in _rows(tmp_path / "o")}
    assert "is a folder" in rows["x.jpg"]["error"] and rows["cfd_001.jpg"]["status"] == "ok"


def test_out_equal_to_an_input_folder_is_refused(tmp_path, capsys) -> None:
    shutil.copy(IMG, tmp_path / "a.jpg")
    assert main(["explain", *FAST, "--out", str(tmp_path), str(tmp_path)]) == 2
    assert "also an input folder" in capsys.readouterr().err


def test_a_thin_strip_is_called_too_small_not_sent_to_tiles(tmp_path) -> None:
    from segcam.data.images import ImageError, read_image

    Image.fromarray(np.zeros((1, 5000, 3), np.uint8)).save(tmp_path / "strip.png")
    for kwargs in ({}, {"max_side": 16384}):
        with pytest.raises(ImageError, match="smaller than the networks' 32-pixel minimum") as err:
            read_image(tmp_path / "strip.png", **kwargs)
        assert "--tile" not in str(err.value)


def test_load_run_refuses_linked_and_malformed_manifests(tmp_path) -> None:
    from segcam.app.core import load_run

    root = tmp_path / "runs"
    run = root / "run"
    assert main(["explain", *FAST, "--out", str(run), str(IMG)]) == 0
    assert load_run("run", root)["images"]
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(run / "manifest.json", outside / "manifest.json")
    linked = root / "linked"
    linked.mkdir()
    (linked / "manifest.json").symlink_to(outside / "manifest.json")
    with pytest.raises(ValueError, match="link to a file elsewhere"):
        load_run("linked", root)
    man = json.loads((run / "manifest.json").read_text())
    man["images"] = 5
    (run / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ValueError, match="'images' must be a list"):
        load_run("run", root)
    man["images"] = [7, {"name": "x", "layers": {"seg3": {"raw_max": "lots"}}}]
    (run / "manifest.json").write_text(json.dumps(man))
    assert load_run("run", root)["refused"] == 2


def test_serving_refusal_answers_only_local_visitors() -> None:
    from segcam.app.core import serving_refusal

    assert serving_refusal("", "127.0.0.1", False) is None
    assert serving_refusal(None, "::1", False) is None
    assert serving_refusal(None, None, False) is None  # no visitor address (AppTest)
    assert "not local" in serving_refusal("", "192.168.1.20", False)
    assert serving_refusal("0.0.0.0", "192.168.1.20", True) is None  # segcam app --host 0.0.0.0


LOOPBACK_HEX = ("0100007F", "00000000000000000000000001000000")


def _wait(cond, seconds: float) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.2)
    return cond()


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="reads Linux's /proc/net/tcp")
def test_streamlit_run_as_the_readme_shows_binds_loopback_and_stops_quietly() -> None:
    pytest.importorskip("streamlit")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "apps/segcam_app.py", "--server.port", str(port)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert _wait(lambda: listening(port), 60), "streamlit did not start"
        addrs = listening(port)
        assert all(a in LOOPBACK_HEX for a in addrs), addrs
        import urllib.request

        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=20).read()  # the page loads (imports paddle)
        time.sleep(1)
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0]
        assert "FatalError" not in out and "Termination signal" not in out
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_killing_segcam_app_stops_its_server(tmp_path) -> None:
    pytest.importorskip("streamlit")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "segcam", "app", "--port", str(port)], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _wait(lambda: listening(port), 60), "the app did not start"
        proc.kill()  # SIGKILL: segcam app gets no chance to stop its child
        proc.wait(timeout=10)
        assert _wait(lambda: not listening(port), 30), "the Streamlit server outlived a SIGKILLed segcam app"
    finally:
        if proc.poll() is None:
            proc.kill()
