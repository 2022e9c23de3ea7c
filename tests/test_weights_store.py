"""Weights outside the wheel: the cards, `segcam weights get` from a server on 127.0.0.1, the cache, the wheel."""

from __future__ import annotations

import configparser
import hashlib
import http.server
import shutil
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest
from conftest import EXAMPLES

import segcam
from segcam.cli import main
from segcam.models import store
from segcam.models.zoo import get_model_spec, list_models

ROOT = Path(__file__).resolve().parents[1]
TAG = "hrsegnet_b16.deepcrack"  # a small tag that is not in the wheel


class _Server:
    """Serves a folder on 127.0.0.1 and counts the requests."""

    def __init__(self, folder: Path) -> None:
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a, **k):
                super().__init__(*a, directory=str(folder), **k)

            def log_message(self, *a):
                outer.requests.append(self.path)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/weights"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def wheel_like(tmp_path, monkeypatch) -> Path:
    """The package as a wheel has it: every card, the weights of IN_WHEEL only; an empty cache and config."""
    cards = tmp_path / "pretrained"
    cards.mkdir()
    for p in store.PRETRAINED_DIR.iterdir():
        if p.suffix in (".json", ".md") or p.name[: -len(".pdparams")] in store.IN_WHEEL:
            shutil.copy(p, cards / p.name)
    monkeypatch.setattr(store, "PRETRAINED_DIR", cards)
    monkeypatch.setenv("SEGCAM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv(store.URL_ENV, raising=False)
    return tmp_path


def _serve_dir(tmp_path: Path, data: bytes | None = None) -> Path:
    served = tmp_path / "served" / "weights"
    served.mkdir(parents=True)
    src = ROOT / "segcam" / "models" / "pretrained" / f"{TAG}.pdparams"
    (served / f"{TAG}.pdparams").write_bytes(src.read_bytes() if data is None else data)
    return served


def test_a_missing_tag_says_how_to_get_it_then_get_fetches_once(wheel_like, capsys) -> None:
    with pytest.raises(store.WeightsMissingError, match=f"segcam weights get {TAG}"):
        segcam.create_model(TAG)
    assert TAG.split(".")[1] in get_model_spec("hrsegnet_b16").tags  # known from its card
    _serve_dir(wheel_like)
    with _Server(wheel_like / "served") as server:
        assert main(["weights", "get", TAG, "--url", server.url]) == 0
        assert main(["weights", "get", TAG, "--url", server.url]) == 0  # cached: no second download
        assert len(server.requests) == 1
    sha = store.card(TAG)["weights_sha256"]
    cached = wheel_like / "cache" / "weights" / f"{TAG}.{sha[:16]}.pdparams"
    assert cached.is_file() and hashlib.sha256(cached.read_bytes()).hexdigest() == sha
    model = segcam.create_model(TAG)
    assert model.weights_sha256 == sha and Path(model.weights) == cached
    capsys.readouterr()
    assert main(["weights", "list"]) == 0
    listed = {line.split()[0]: line.split()[1] for line in capsys.readouterr().out.splitlines()[1:]}
    assert listed[TAG] == "cache" and listed["hrsegnet_b16.mix"] == "wheel" and listed["stdcseg.mix"] == "missing"


def test_wrong_bytes_are_refused_and_nothing_is_kept(wheel_like) -> None:
    _serve_dir(wheel_like, data=b"not the weights" * 1000)
    with _Server(wheel_like / "served") as server, pytest.raises(ValueError, match="sha256"):
        store.fetch(TAG, url=server.url)
    folder = wheel_like / "cache" / "weights"
    assert not folder.exists() or list(folder.iterdir()) == []  # no file, no .part left
    with pytest.raises(store.WeightsMissingError):
        segcam.create_model(TAG)


def test_base_url_from_argument_environment_or_config_file(wheel_like, monkeypatch) -> None:
    with pytest.raises(ValueError, match="SEGCAM_WEIGHTS_URL"):
        store.base_url()
    ini = store.config_file()
    ini.parent.mkdir(parents=True)
    ini.write_text("[weights]\nbase_url = file:///srv/weights/\n")
    assert store.base_url() == "file:///srv/weights"
    monkeypatch.setenv(store.URL_ENV, "https://example.invalid/w")
    assert store.base_url() == "https://example.invalid/w"  # the environment wins over the file
    assert store.base_url("http://127.0.0.1:1/x") == "http://127.0.0.1:1/x"  # the argument over both
    for bad in ("ftp://host/w", "/just/a/path", "javascript:alert(1)"):
        with pytest.raises(ValueError, match="scheme"):
            store.base_url(bad)
    # file:// works without any server
    served = _serve_dir(wheel_like)
    path = store.fetch(TAG, url=served.as_uri())
    assert hashlib.sha256(path.read_bytes()).hexdigest() == store.card(TAG)["weights_sha256"]


def test_a_failed_download_keeps_the_cached_copy(wheel_like, capsys) -> None:
    served = _serve_dir(wheel_like)
    good = store.fetch(TAG, url=served.as_uri())
    with _Server(wheel_like / "served") as server:
        dead = server.url
    with pytest.raises(OSError):
        store.fetch(TAG, url=dead, force=True, timeout=5)  # the server is gone: connection refused
    assert good.is_file() and segcam.create_model(TAG).weights == str(good)
    # the command says which tag failed and goes on with the next one (here: already in the wheel)
    assert main(["weights", "get", "hrsegnet_b48.deepcrack", "hrsegnet_b16.mix", "--url", dead]) == 1
    err = capsys.readouterr()
    assert f"hrsegnet_b48.deepcrack: not fetched from {dead}" in err.err and "hrsegnet_b16.mix:" in err.out
    assert good.is_file()


def test_every_card_has_its_weights_in_the_checkout_with_the_cards_sha256() -> None:
    tags = [f"{n}.{t}" for n in list_models() for t in get_model_spec(n).tags]
    assert len(tags) >= 14
    for name_tag in tags:
        path = store.find_weights(name_tag)
        assert path is not None and path.parent == store.PRETRAINED_DIR, name_tag
        assert hashlib.sha256(path.read_bytes()).hexdigest() == store.card(name_tag)["weights_sha256"], name_tag


def test_setup_cfg_ships_exactly_the_weights_the_store_says() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    data = [line.strip() for line in cfg["options.package_data"]["segcam"].splitlines() if line.strip()]
    shipped = sorted(Path(d).name[: -len(".pdparams")] for d in data if d.endswith(".pdparams"))
    assert shipped == sorted(store.IN_WHEEL)
    assert cfg["options"]["include_package_data"].strip() == "False"  # else every tracked file would go in


def test_the_wheel_installs_and_runs_the_first_command_from_another_folder(tmp_path) -> None:
    """Build the wheel (offline) from a copy of the tracked files, unpack it, run the README's first command."""
    # what a build reads (not the checkpoints, benchmarks, docs...): every tracked file of the packages
    tracked = subprocess.run(["git", "ls-files", "segcam", "hrsegnet", "setup.cfg", "pyproject.toml", "README.md"],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    src = tmp_path / "src"
    for rel in tracked:
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / rel, src / rel)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(src)], check=True, capture_output=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("segcam-*.whl"))
    assert wheel.stat().st_size <= 50 * 1024 ** 2, f"{wheel.stat().st_size / 1e6:.1f} MB"
    names = zipfile.ZipFile(wheel).namelist()
    assert sorted(Path(n).name[: -len(".pdparams")] for n in names if n.endswith(".pdparams")) == sorted(store.IN_WHEEL)
    assert sum(n.startswith("segcam/models/pretrained/") and n.endswith(".json") for n in names) >= 14
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(site),
                    str(wheel)], check=True, capture_output=True, timeout=300)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(site), "SEGCAM_CACHE": str(tmp_path / "c")}
    work = tmp_path / "elsewhere"
    work.mkdir()
    photo = EXAMPLES / "deepcrack_IMG_6472-1.jpg"
    code = "import segcam, sys; print(segcam.__file__); from segcam.cli import main; sys.exit(main(sys.argv[1:]))"
    run = subprocess.run([sys.executable, "-c", code, "explain", "--model", "hrsegnet_b48", "--layer", "seg_head",
                          str(photo)], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.splitlines()[0].startswith(str(site))  # segcam from the wheel, not the checkout
    assert (work / "segcam_out" / "deepcrack_IMG_6472-1__seg_head__overlay.jpg").is_file()
    missing = subprocess.run([sys.executable, "-c", code, "explain", "--model", "stdcseg", str(photo)], cwd=work,
                             env=env, capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and "segcam weights get stdcseg.mix" in missing.stderr
