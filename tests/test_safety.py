"""Safe by default: weights never run code, batch outputs are unique, recorded as they finish and resumable."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import evil_weights, small_crops
from PIL import Image

from segcam.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "images"


def test_pickle_payload_is_refused_by_the_api(tmp_path) -> None:
    import segcam
    from segcam.models.weights import UnsafeWeightsError, safe_load

    evil, marker = evil_weights(tmp_path)
    with pytest.raises(UnsafeWeightsError, match="posix.system|nt.system"):
        segcam.create_model("hrsegnet_b16", weights=str(evil))
    with pytest.raises(UnsafeWeightsError):
        safe_load(evil)
    assert not marker.exists()


@pytest.mark.needs_data
def test_pickle_payload_is_refused_by_every_cli_path(tmp_path, capsys) -> None:
    evil, marker = evil_weights(tmp_path)
    img = str(EXAMPLES / "cfd_001.jpg")
    for argv in (["explain", "--model", "hrsegnet_b16", "--weights", str(evil), "--out", str(tmp_path / "o"), img],
                 ["evaluate", "--model", "hrsegnet_b16", "--weights", str(evil), "--data", "deepcrack:test", "--limit", "1"],
                 ["export", "--model", "hrsegnet_b16", "--weights", str(evil), "--out", str(tmp_path / "e")]):
        assert main(argv) == 2
        assert "refused" in capsys.readouterr().err
    assert not marker.exists()


@pytest.mark.needs_data
def test_training_resume_uses_the_safe_loader(tmp_path) -> None:
    from segcam.models.weights import UnsafeWeightsError
    from segcam.training.loop import train

    evil, marker = evil_weights(tmp_path)
    run = tmp_path / "run"
    (run / "last").mkdir(parents=True)
    shutil.copy(evil, run / "last" / "model.pdparams")
    (run / "last" / "state.json").write_text(json.dumps({"iter": 4}))
    with pytest.raises(UnsafeWeightsError):
        train(ROOT / "configs" / "cpu" / "hrsegnet_b16_cpu.yml", run, iters=8)
    assert not marker.exists()


def test_safe_loader_reads_real_paddle_files(tmp_path) -> None:
    import paddle

    from segcam.models.weights import safe_load

    net = paddle.nn.Sequential(paddle.nn.Conv2D(3, 4, 3), paddle.nn.BatchNorm2D(4))
    opt = paddle.optimizer.Momentum(0.1, parameters=net.parameters())
    net(paddle.rand([1, 3, 8, 8])).mean().backward()
    opt.step()
    paddle.save(net.state_dict(), str(tmp_path / "m.pdparams"))
    paddle.save(opt.state_dict(), str(tmp_path / "m.pdopt"))
    ours, theirs = safe_load(tmp_path / "m.pdparams"), paddle.load(str(tmp_path / "m.pdparams"))
    assert set(ours) == set(theirs)
    for k in ours:
        np.testing.assert_array_equal(ours[k], theirs[k].numpy())
    assert set(safe_load(tmp_path / "m.pdopt")) == set(paddle.load(str(tmp_path / "m.pdopt")))


def test_output_stems_never_collide() -> None:
    from segcam.survey.batch import output_stems

    assert output_stems(["a/x y.jpg", "b/x_y.jpg"]) == ["x_y", "x_y-2"]
    assert output_stems(["裂缝1.jpg", "裂纹1.jpg"]) == ["裂缝1", "裂纹1"]  # Unicode letters are kept
    stems = output_stems(["a/x.jpg", "b/x.jpg", "c/x-2.jpg"])
    assert len({s.casefold() for s in stems}) == 3 and stems[2] == "x-2"
    stems = output_stems(["A.jpg", "a.png", "a-2.jpg"])  # case-insensitive file systems too
    assert len({s.casefold() for s in stems}) == 3


def test_colliding_names_get_their_own_files_end_to_end(tmp_path) -> None:
    src = tmp_path / "in"
    for sub, name in (("a", "x y.jpg"), ("b", "x_y.jpg"), ("c", "裂缝1.jpg"), ("d", "裂纹1.jpg")):
        (src / sub).mkdir(parents=True)
        shutil.copy(EXAMPLES / "cfd_001.jpg", src / sub / name)
    out = tmp_path / "out"
    images = sorted(str(p) for p in src.rglob("*.jpg"))
    assert main(["explain", "--model", "hrsegnet_b16", "--weights", "random", "--out", str(out), *images]) == 0
    man = json.loads((out / "manifest.json").read_text())
    overlays = [r["layers"]["seg_head"]["overlay"] for r in man["images"]]
    assert len(set(overlays)) == 4 and all((out / o).is_file() for o in overlays)
    assert any(o.startswith("裂缝1") for o in overlays)
    assert all(Path(r["image"]).is_absolute() and (out / r["image_relative"]).resolve() == Path(r["image"])
               for r in man["images"])


def _small_images(folder: Path, n: int) -> list[str]:
    return [str(p) for p in small_crops(folder, n)]


def _journal_count(out: Path) -> int:
    path = out / ".segcam-journal.jsonl"
    return max(0, len(path.read_text().splitlines()) - 1) if path.is_file() else 0


def _explain_cmd(out: Path, images: list[str]) -> list[str]:
    return [sys.executable, "-m", "segcam", "explain", "--model", "hrsegnet_b16", "--layer", "seg3", "--layer",
            "seg_head", "--out", str(out), *images]


def test_sigkill_mid_batch_then_rerun_completes_every_image_once_and_identically(tmp_path) -> None:
    images = _small_images(tmp_path / "in", 8)
    killed, straight = tmp_path / "killed", tmp_path / "straight"
    proc = subprocess.Popen(_explain_cmd(killed, images), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while _journal_count(killed) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    done_before = _journal_count(killed)
    assert 2 <= done_before < 8, "the kill must land mid-batch"
    rerun = subprocess.run(_explain_cmd(killed, images), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{done_before} already done by an earlier run" in rerun.stderr
    subprocess.run(_explain_cmd(straight, images), capture_output=True, check=True, timeout=300)
    man = json.loads((killed / "manifest.json").read_text())
    assert sorted(r["name"] for r in man["images"]) == [f"img{i:02d}" for i in range(8)]
    rows = (killed / "summary.csv").read_text().splitlines()[1:]
    assert len(rows) == 8 and all(",ok," in r for r in rows)
    suffixes = (".png", ".jpg", ".npz")
    files = sorted(p.name for p in straight.iterdir() if not p.name.startswith(".") and p.suffix in suffixes)
    assert files and files == sorted(p.name for p in killed.iterdir() if not p.name.startswith(".") and p.suffix in suffixes)
    for name in files:
        assert (killed / name).read_bytes() == (straight / name).read_bytes(), name
    # every crack exactly once, as an uninterrupted run records it
    assert (killed / "cracks.csv").read_text() == (straight / "cracks.csv").read_text().replace(str(straight), str(killed))
    assert any(n.endswith("__cracks.npz") for n in files)
    assert not list(killed.glob(".*.tmp*"))


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_ends_with_one_line_and_a_record(tmp_path, sig, code) -> None:
    images = _small_images(tmp_path / "in", 6)
    out = tmp_path / "out"
    proc = subprocess.Popen(_explain_cmd(out, images), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while _journal_count(out) < 1 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the batch finished before the signal arrived")
    assert proc.returncode == code, err
    assert "Traceback" not in err and "run the same command again to resume" in err
    man = json.loads((out / "manifest.json").read_text())
    assert len(man["images"]) >= 1 and not list(out.glob(".*.tmp*"))


def test_second_run_into_a_locked_folder_is_refused(tmp_path, capsys) -> None:
    from segcam.survey.batch import RunFolder

    out = tmp_path / "out"
    with RunFolder(out, {"x": 1}):
        args = ["explain", "--model", "hrsegnet_b16", "--weights", "random", "--out", str(out),
                str(EXAMPLES / "cfd_001.jpg")]
        assert main(args) == 2
        assert "another segcam run is writing to" in capsys.readouterr().err


def test_stale_temporaries_are_removed(tmp_path) -> None:
    from segcam.survey.batch import RunFolder

    out = tmp_path / "out"
    out.mkdir()
    # the exact names atomic_write gives (tempfile's 8 random characters), left by a killed run
    for stale in (".x__seg3.npz.k2_9abcd.tmp.npz", ".manifest.json.0123abcd.tmp.json", ".segcam-probe-4242.tmp"):
        (out / stale).write_bytes(b"half")
    # a user's files that only look similar: never touched
    user = [".draft.tmp", ".report.tmp.docx", ".vimrc.tmpl", ".notes.abcdefgh.tmp.txt", ".thesis.docx.abcdefgh.tmp.docx"]
    for name in user:
        (out / name).write_bytes(b"mine")
    with RunFolder(out, {"x": 1}):
        pass
    assert sorted(p.name for p in out.glob(".*.tmp*")) == sorted(n for n in user if ".tmp" in n)
    assert all((out / n).read_bytes() == b"mine" for n in user)


def test_bad_out_and_bad_limits_fail_before_the_model_loads(tmp_path, capsys) -> None:
    img = str(EXAMPLES / "cfd_001.jpg")
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    base = ["explain", "--model", "hrsegnet_b16", "--weights", "random"]
    for out in (afile, afile / "sub"):
        assert main(base + ["--out", str(out), img]) == 2
        err = capsys.readouterr().err
        assert "is a file, not a folder" in err and "model hrsegnet_b16" not in err
    assert main(base + ["--max-side", "-5", "--downscale", "--out", str(tmp_path / "o"), img]) == 2
    assert "--max-side must be at least 32" in capsys.readouterr().err
    assert main(base + ["--target", "box:10,10,5000,20", "--out", str(tmp_path / "o"), img]) == 2
    assert "lies outside" in capsys.readouterr().err
    assert main(base + ["--class", "2", "--out", str(tmp_path / "o"), img]) == 2
    assert "class 2 does not exist" in capsys.readouterr().err


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this OS")
def test_fifo_is_refused_without_opening_it(tmp_path) -> None:
    from segcam.data.images import ImageError, read_image

    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(ImageError, match="not a regular file"):
        read_image(fifo)  # opening a FIFO would block forever


def test_size_is_checked_from_the_header_before_decoding(tmp_path, monkeypatch) -> None:
    from segcam.data.images import ImageError, read_image

    path = tmp_path / "big.png"
    Image.new("L", (3000, 200)).save(path)
    decoded = []
    original = Image.Image.load
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append(1) or original(self))
    with pytest.raises(ImageError, match="above the 2048-pixel limit"):
        read_image(path, max_side=2048)
    assert not decoded


def test_one_suffix_list_for_folders_and_named_files(tmp_path) -> None:
    from segcam.cli import collect_images as _collect_images
    from segcam.data.images import ImageError, read_image

    Image.open(EXAMPLES / "cfd_001.jpg").save(tmp_path / "a.gif")
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in _collect_images([str(tmp_path)])] == ["a.gif"]
    assert read_image(tmp_path / "a.gif").shape[2] == 3
    with pytest.raises(ImageError, match="suffix .txt is not an image type"):
        read_image(tmp_path / "notes.txt")


def test_image_reader_fuzz(tmp_path) -> None:
    """Mutated and truncated real images: an array or an ImageError, never another exception."""
    from segcam.data.images import ImageError, read_image_bytes

    rng = np.random.default_rng(0)
    seeds = [(EXAMPLES / "cfd_001.jpg").read_bytes()]
    buf = tmp_path / "s.png"
    Image.open(EXAMPLES / "cfd_001.jpg").resize((64, 48)).save(buf)
    seeds.append(buf.read_bytes())
    outcomes = {"ok": 0, "error": 0}
    for i in range(300):
        data = bytearray(seeds[i % 2])
        kind = i % 3
        if kind == 0:  # flip bytes
            for pos in rng.integers(0, len(data), size=int(rng.integers(1, 20))):
                data[pos] = int(rng.integers(0, 256))
        elif kind == 1:  # truncate
            data = data[: int(rng.integers(0, len(data)))]
        else:  # corrupt the header region
            for pos in rng.integers(0, min(64, len(data)), size=4):
                data[pos] = int(rng.integers(0, 256))
        try:
            rgb = read_image_bytes(bytes(data), f"fuzz{i}")
            assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
            outcomes["ok"] += 1
        except ImageError:
            outcomes["error"] += 1
    assert outcomes["error"] > 50 and outcomes["ok"] > 10, outcomes


def test_figure_from_another_directory_and_out_with_suffix(tmp_path, monkeypatch) -> None:
    photos = tmp_path / "survey" / "photos"
    photos.mkdir(parents=True)
    shutil.copy(EXAMPLES / "cfd_001.jpg", photos / "cfd_001.jpg")
    monkeypatch.chdir(tmp_path / "survey")
    assert main(["explain", "--model", "hrsegnet_b16", "--weights", "random", "--out", "run", "photos/cfd_001.jpg"]) == 0
    rec = json.loads((tmp_path / "survey" / "run" / "manifest.json").read_text())["images"][0]
    assert rec["image_relative"] == "../photos/cfd_001.jpg"
    shutil.move(tmp_path / "survey", tmp_path / "moved")  # the whole survey moves: absolute paths break
    monkeypatch.chdir(tmp_path)  # ... and figure runs from another directory
    assert main(["figure", "--manifest", "moved/run", "--out", str(tmp_path / "fig.pdf")]) == 0
    assert (tmp_path / "fig.pdf").is_file() and not (tmp_path / "fig.pdf.pdf").exists()
    assert not (tmp_path / "fig.svg").exists()
