"""Shared fixtures: small random-init models and real example images (no network, CPU only)."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import numpy as np
import paddle
import paddle.nn as nn
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "images"
EXAMPLE_MASKS = ROOT / "examples" / "masks"


class ToyNet(nn.Layer):
    """conv3x3 -> ReLU -> ``feat`` (conv3x3) -> ``cls`` (1x1 conv) logits at input size.

    ``dead`` runs in the forward but does not feed the logits (no gradient).
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2D(3, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.feat = nn.Conv2D(4, 5, 3, padding=1)
        self.cls = nn.Conv2D(5, 2, 1)
        self.dead = nn.Conv2D(4, 3, 1)

    def forward(self, x: paddle.Tensor) -> list[paddle.Tensor]:
        h = self.relu(self.conv1(x))
        self.dead(h)
        return [self.cls(self.feat(h))]


@pytest.fixture(scope="session", autouse=True)
def export_cache(tmp_path_factory) -> Path:
    """Exports built by the tests (segcam survey, tiled crack records) go to a folder of this session."""
    import os

    folder = tmp_path_factory.mktemp("export-cache")
    os.environ["SEGCAM_CACHE"] = str(folder)
    return folder


@pytest.fixture(scope="session")
def toy() -> ToyNet:
    paddle.seed(3)
    net = ToyNet()
    net.eval()
    net.mean, net.std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)  # a bare network states its normalisation
    return net


@pytest.fixture(scope="session")
def b16():
    import segcam

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return segcam.create_model("hrsegnet_b16", weights="random")


@pytest.fixture(scope="session")
def crack_rgb() -> np.ndarray:
    """A real DeepCrack test photo, center-cropped to 128 x 160 to keep tests fast."""
    import segcam

    img = segcam.read_image(EXAMPLES / "deepcrack_11215-9.jpg")
    return np.ascontiguousarray(img[100:228, 200:360])


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs_data: reads the crack data sets in ../shared/data (or $SEGCAM_DATA)")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked ``needs_data`` skip with the reason when the data is absent; CI makes it mandatory."""
    import os

    if item.get_closest_marker("needs_data") is None:
        return
    from segcam.data.datasets import data_root

    try:
        root = data_root()
        missing = [n for n in ("deepcrack", "cfd", "masonry_dais", "gaps384_crops", "shadowcrack_crops", "crack500")
                   if not (root / n).is_dir()]
        if missing:
            raise FileNotFoundError(f"{root} lacks {', '.join(missing)}")
    except FileNotFoundError as exc:
        if os.environ.get("SEGCAM_REQUIRE_DATA") == "1":
            pytest.fail(f"SEGCAM_REQUIRE_DATA=1 but the crack data sets are missing: {exc}")
        pytest.skip(f"needs the crack data sets (../shared/data or $SEGCAM_DATA): {exc}")


def small_crops(folder: Path, n: int) -> list[Path]:
    """``n`` distinct 128x96 crops of a DeepCrack example as PNGs (fast, real-photo batch inputs)."""
    from PIL import Image

    folder.mkdir(parents=True)
    src = np.asarray(Image.open(EXAMPLES / "deepcrack_11215-9.jpg").convert("RGB"))
    paths = []
    for i in range(n):
        p = folder / f"img{i:02d}.png"
        Image.fromarray(np.ascontiguousarray(src[i * 8:i * 8 + 96, i * 16:i * 16 + 128])).save(p)
        paths.append(p)
    return paths


class _Payload:
    """A pickle that runs ``touch MARKER`` when unpickled (what a crafted weights file does)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def evil_weights(tmp_path: Path, key: str = "stage1.0.weight") -> tuple[Path, Path]:
    """A ``.pdparams`` whose unpickling creates the returned marker file; (weights, marker)."""
    import pickle

    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pdparams"
    with open(path, "wb") as fh:
        pickle.dump({key: _Payload(marker)}, fh, protocol=4)
    return path, marker


def free_port() -> int:
    """A TCP port nothing listens on now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> list[str]:
    """Local addresses (hex, as in /proc/net/tcp) listening on ``port``."""
    import os

    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if os.path.exists(table):
            for line in open(table).read().splitlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                if state == "0A" and int(local.split(":")[1], 16) == port:
                    found.append(local.split(":")[0])
    return found


#: Arguments for Debian's Chromium under Playwright in a container (no sandbox, no GPU, no network chatter).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def chromium_or_skip() -> tuple[str, object]:
    """Debian's chromium and Playwright's ``sync_playwright``; skips without them (fails in CI)."""
    import os
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if chromium is None or sync_playwright is None:
        if os.environ.get("CI") or os.environ.get("SEGCAM_REQUIRE_DATA"):
            pytest.fail("CI must provide Debian's chromium and the playwright package (see .ci/run)")
        pytest.skip("needs Debian's chromium and playwright (installed by .ci/run)")
    return chromium, sync_playwright


@contextlib.contextmanager
def served_app(cwd: Path, **env: str):
    """A real Streamlit server of the app's page on a free loopback port (the flags segcam app passes); its URL."""
    import os
    import subprocess
    import sys
    import time
    import urllib.request

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "apps" / "segcam_app.py"),
                               "--server.headless", "true", "--server.port", str(port), "--server.address", "127.0.0.1",
                               "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal"],
                              env={**os.environ, "SEGCAM_APP_MODEL": "hrsegnet_b16", **env}, cwd=cwd,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while True:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).status == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                pytest.fail("the Streamlit server did not become healthy within 60 s")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.terminate()
        server.wait(timeout=20)


@pytest.fixture(scope="session")
def examples_survey(tmp_path_factory) -> Path:
    """``segcam survey`` of the example photos, with their ground truth (read-only: copy it with ``run_copy``)."""
    from segcam.cli import main

    out = tmp_path_factory.mktemp("examples_survey") / "run"
    assert main(["survey", "--out", str(out), "--masks", str(EXAMPLE_MASKS), str(EXAMPLES)]) == 0
    return out


@pytest.fixture
def run_copy(examples_survey, tmp_path) -> Path:
    """A fresh copy of :func:`examples_survey` (verdicts, reports... are written into it)."""
    import shutil

    dst = tmp_path / "run"
    shutil.copytree(examples_survey, dst)
    return dst
