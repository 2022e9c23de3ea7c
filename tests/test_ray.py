"""The Ray engine on a real local Ray and a 2-node local cluster (small: CI time matters)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path

import pytest
import ray  # the [dev] extra installs the [ray] one: these tests never skip
from conftest import EXAMPLES, small_crops

import segcam
from segcam.survey.batch import ExplainJob, run_explain
from segcam.survey.ray_engine import RayOptions, ray_loop

SUFFIXES = (".png", ".jpg", ".npz")


def _images(folder: Path, n: int) -> list[Path]:
    paths = small_crops(folder, n)
    (folder / "broken.png").write_bytes(b"not a png")
    return [*paths, folder / "broken.png"]


def _job(model) -> ExplainJob:
    return ExplainJob(model, ("seg3", "seg_head"))


def _outputs(folder: Path) -> dict[str, bytes]:
    """Every output file's bytes, and cracks.csv (its image paths are the same in both runs)."""
    out = {p.name: p.read_bytes() for p in folder.iterdir() if not p.name.startswith(".") and p.suffix in SUFFIXES}
    out["cracks.csv"] = (folder / "cracks.csv").read_text().replace("file://", "").encode()
    return out


def _summary_names(folder: Path) -> list[str]:
    return [line.split(",")[1] for line in (folder / "summary.csv").read_text().splitlines()[1:]]


@pytest.fixture(scope="module")
def model():
    import paddle

    paddle.base.core.set_num_threads(1)  # the same kernels as the actors (1 thread each): identical floats
    return segcam.create_model("hrsegnet_b16")


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, model):
    root = tmp_path_factory.mktemp("ray")
    images = _images(root / "in", 10)
    local = root / "local"
    run_explain(_job(model), images, local)
    return images, local


def test_ray_engine_writes_what_the_local_engine_writes(tmp_path, model, local_run) -> None:
    images, local = local_run
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        out = tmp_path / "ray"
        uris = [f"file://{p.resolve()}" for p in images]  # read through pyarrow's file system, as s3:// would be
        summary = run_explain(_job(model), uris, out, engine=partial(ray_loop, opts=RayOptions(workers=2, batch_size=2)))
        assert ray.is_initialized()  # a Ray the caller started is left running
    finally:
        ray.shutdown()
    assert (summary.done, summary.failed) == (10, 1)
    assert _outputs(out) == _outputs(local)  # byte-identical PNG/JPEG/npz
    assert sorted(_summary_names(out)) == sorted(_summary_names(local)) and len(_summary_names(out)) == 11
    man, ref = json.loads((out / "manifest.json").read_text()), json.loads((local / "manifest.json").read_text())
    assert [r["name"] for r in man["images"]] == [r["name"] for r in ref["images"]]  # input order
    assert man["settings"] == ref["settings"]
    assert [r["status"] for r in man["images"]].count("error") == 1
    assert man["images"][0]["image"].startswith("file://") and man["images"][0]["image_relative"] is None


def _kill_one_actor_when(out: Path, n_done: int, killed: list[int]) -> None:
    import psutil

    deadline = time.time() + 180
    journal = out / ".segcam-journal.jsonl"
    while time.time() < deadline:
        if journal.is_file() and len(journal.read_text().splitlines()) - 1 >= n_done:
            for proc in psutil.process_iter(["cmdline"]):
                if any("MapBatches(_Explainer)" in part for part in proc.info["cmdline"] or []):
                    proc.send_signal(signal.SIGKILL)
                    killed.append(proc.pid)
                    return
        time.sleep(0.05)


def test_two_node_cluster_survives_a_killed_worker(tmp_path, model, local_run) -> None:
    from ray.cluster_utils import Cluster

    images, local = local_run
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        out = tmp_path / "ray"
        killed: list[int] = []
        killer = threading.Thread(target=_kill_one_actor_when, args=(out, 1, killed), daemon=True)
        killer.start()
        summary = run_explain(_job(model), images, out, engine=partial(ray_loop, opts=RayOptions(workers=2, batch_size=1)))
        killer.join(timeout=5)
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert killed, "no worker was killed: the job finished before the killer saw the first image"
    assert (summary.done, summary.failed) == (10, 1)
    names = _summary_names(out)
    assert sorted(names) == sorted(_summary_names(local)) and len(names) == len(set(names)) == 11
    assert _outputs(out) == _outputs(local)


def test_killed_driver_resumes_and_skips_finished_images(tmp_path, local_run) -> None:
    images, local = local_run
    out = tmp_path / "ray"
    cmd = [sys.executable, "-m", "segcam", "explain", "--model", "hrsegnet_b16", "--layer", "seg3", "seg_head",
           "--engine", "ray", "--workers", "1", "--batch-size", "1", "--threads", "1", "--out", str(out),
           *map(str, images)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    journal = out / ".segcam-journal.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if journal.is_file() and len(journal.read_text().splitlines()) - 1 >= 2:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray it started
    proc.wait()
    done_before = len(journal.read_text().splitlines()) - 1
    assert 2 <= done_before < 11
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 1, rerun.stderr  # one broken image
    assert "already done by an earlier run" in rerun.stderr
    names = _summary_names(out)
    assert sorted(names) == sorted(_summary_names(local)) and len(names) == len(set(names)) == 11
    assert _outputs(out) == _outputs(local)


def test_ray_engine_without_ray_or_with_bad_options_is_a_usage_error(tmp_path, monkeypatch) -> None:
    from segcam.cli import main

    img = str(EXAMPLES / "cfd_001.jpg")
    assert main(["explain", "--model", "hrsegnet_b16", "--engine", "ray", "--workers", "0", "--out",
                 str(tmp_path / "a"), img]) == 2
    assert main(["explain", "--model", "hrsegnet_b16", "--ray-address", "auto", "--out", str(tmp_path / "b"), img]) == 2
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    assert main(["explain", "--model", "hrsegnet_b16", "--engine", "ray", "--out", str(tmp_path / "c"), img]) == 2


def test_local_engine_never_imports_ray(tmp_path) -> None:
    code = ("import sys, segcam.cli as c; r = c.main(['explain', '--model', 'hrsegnet_b16', '--layer', 'seg3', "
            f"'--out', {str(tmp_path / 'o')!r}, {str(EXAMPLES / 'cfd_001.jpg')!r}]); "
            "print('RAY' if 'ray' in sys.modules else 'NORAY'); sys.exit(r)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and res.stdout.strip() == "NORAY", res.stderr
