"""Where a zoo model's trained weights are, and fetching the ones the wheel leaves out.

Every tag has a model card in the package (``pretrained/NAME.TAG.json``, with the sha256 of its weights). The
wheel carries the weights of :data:`IN_WHEEL` only (what the README's first command and the default HrSegNet
sizes need: 17 MB instead of 110 MB); every other tag's ``.pdparams`` stays in the source tree beside its card,
so a checkout finds it where it always was, and an installed wheel fetches it once:

* ``segcam weights get NAME.TAG`` (or :func:`fetch`) downloads ``BASE/NAME.TAG.pdparams`` from the base URL
  given by ``--url``, else ``$SEGCAM_WEIGHTS_URL``, else ``base_url`` in the ``[weights]`` section of
  ``$XDG_CONFIG_HOME/segcam/segcam.ini`` (``~/.config/...``); http(s) and ``file://`` only;
* the bytes are checked against the card's sha256 before they are kept (a mismatch keeps nothing), and cached as
  ``NAME.TAG.<sha256[:16]>.pdparams`` under :func:`cache_root` ``/weights``: weights of a changed card are a new
  file, never a stale one;
* segcam never downloads on its own: a tag that is neither here nor cached is an error naming the command.

Why the weights were not moved out of ``segcam/models/pretrained/``: the files are the same bytes either way, and
moving 90 MB of binaries in the repository's history costs every clone (and a submission) twice their size.
"""

from __future__ import annotations

import configparser
import hashlib
import json
import os
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from segcam.models.weights import sha256_file

__all__ = ["IN_WHEEL", "PRETRAINED_DIR", "WeightsMissingError", "base_url", "cache_root", "card", "fetch",
           "find_weights", "known_tags"]

#: Model cards (always) and weights (in a checkout; in the wheel only for :data:`IN_WHEEL`).
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
#: The weights the wheel carries (setup.cfg's package_data lists the same files; a test checks the two agree).
IN_WHEEL = ("hrsegnet_b16.mix", "hrsegnet_b32.deepcrack", "hrsegnet_b48.mix")
#: Environment variable with the base URL of the weights.
URL_ENV = "SEGCAM_WEIGHTS_URL"
_SCHEMES = ("http", "https", "file")


class WeightsMissingError(FileNotFoundError):
    """A tag whose weights are neither in the package or checkout nor in the cache."""


def cache_root() -> Path:
    """The cache folder: ``$SEGCAM_CACHE``, else ``$XDG_CACHE_HOME/segcam``, else ``~/.cache/segcam``."""
    if os.environ.get("SEGCAM_CACHE"):
        return Path(os.environ["SEGCAM_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "segcam"


def known_tags(name: str) -> list[str]:
    """The tags of zoo model ``name`` that have a card (whether or not their weights are here)."""
    return sorted(p.name[len(name) + 1:-len(".json")] for p in PRETRAINED_DIR.glob(f"{name}.*.json"))


def card(name_tag: str) -> dict[str, Any]:
    """The model card JSON of ``NAME.TAG``, ``{}`` if it has none."""
    path = PRETRAINED_DIR / f"{name_tag}.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _cached(name_tag: str, sha256: str) -> Path:
    return cache_root() / "weights" / f"{name_tag}.{sha256[:16]}.pdparams"


def find_weights(name_tag: str) -> Path | None:
    """The weights file of ``NAME.TAG``: beside its card (package or checkout), else in the cache; None if neither."""
    here = PRETRAINED_DIR / f"{name_tag}.pdparams"
    if here.is_file():
        return here
    sha = card(name_tag).get("weights_sha256")
    cached = _cached(name_tag, sha) if sha else None
    return cached if cached is not None and cached.is_file() else None


def missing_message(name_tag: str) -> str:
    """What to do about weights that are not here."""
    return (f"the weights of {name_tag} are not installed (the wheel carries only {', '.join(IN_WHEEL)}); fetch "
            f"them once with `segcam weights get {name_tag}` (base URL: --url, ${URL_ENV} or [weights] base_url "
            "in segcam.ini), or run from a checkout of the repository, which has them")


def config_file() -> Path:
    """``$XDG_CONFIG_HOME/segcam/segcam.ini`` (``~/.config/segcam/segcam.ini``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "segcam" / "segcam.ini"


def base_url(url: str | None = None) -> str:
    """The weights' base URL: ``url``, else ``$SEGCAM_WEIGHTS_URL``, else the config file's ``[weights] base_url``.

    Raises:
        ValueError: None is set, or its scheme is not http, https or file.
    """
    if not url:
        url = os.environ.get(URL_ENV)
    if not url and config_file().is_file():
        parser = configparser.ConfigParser(interpolation=None)  # values are text, never evaluated
        parser.read(config_file())
        url = parser.get("weights", "base_url", fallback=None)
    if not url:
        raise ValueError(f"no base URL for the weights: pass --url, set ${URL_ENV}, or put base_url under [weights] "
                         f"in {config_file()}")
    scheme = urllib.parse.urlparse(url).scheme
    if scheme not in _SCHEMES:
        raise ValueError(f"weights base URL {url!r}: the scheme must be http, https or file, not {scheme or 'none'!r}")
    return url.rstrip("/")


def fetch(name_tag: str, url: str | None = None, force: bool = False, timeout: float = 60.0) -> Path:
    """Download ``NAME.TAG``'s weights once, check them against the card's sha256 and cache them.

    Args:
        name_tag: ``hrsegnet_b48.deepcrack``.
        url: Base URL (see :func:`base_url`).
        force: Download again even if a checked copy is cached.
        timeout: Seconds to wait for the server.

    Returns:
        The weights file: the package's or checkout's own when it has them (nothing is downloaded), else the cached one.

    Raises:
        KeyError: No card for ``name_tag``.
        ValueError: No usable base URL, or the downloaded bytes do not match the card's sha256 (nothing is kept).
        OSError: The download failed (a cached copy, if any, is kept).
    """
    info = card(name_tag)
    sha = info.get("weights_sha256")
    if not sha:
        raise KeyError(f"{name_tag} has no model card with a sha256 (`segcam weights list` shows the tags)")
    here = PRETRAINED_DIR / f"{name_tag}.pdparams"
    if here.is_file() and not force:
        return here
    dest = _cached(name_tag, sha)
    if dest.is_file() and not force and sha256_file(dest) == sha:
        return dest
    source = f"{base_url(url)}/{name_tag}.pdparams"
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{name_tag}.", suffix=".part")
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(source, timeout=timeout) as response:  # noqa: S310 - scheme checked
            while chunk := response.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
        if digest.hexdigest() != sha:
            raise ValueError(f"{source}: the downloaded file's sha256 {digest.hexdigest()[:16]}... is not the card's "
                             f"{sha[:16]}...; nothing was kept (a wrong base URL, or a file of other weights)")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest
