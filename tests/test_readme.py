"""The README cannot drift: its Python snippets run, and its quick shell commands exit 0 from a checkout."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", README, flags=re.S | re.M)


def _checkout(tmp_path):
    """A working directory with the README's relative paths (examples/, configs/) and nothing else written."""
    for name in ("examples", "configs"):
        os.symlink(ROOT / name, tmp_path / name)
    return tmp_path


@pytest.mark.parametrize("n", range(len(_blocks("python"))))
def test_every_python_snippet_runs(tmp_path, n) -> None:
    code = _blocks("python")[n]
    res = subprocess.run([sys.executable, "-c", code], cwd=_checkout(tmp_path), capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]


#: Quick shell lines of the README (under a minute each on 2 cores), run as written; the README's long
#: commands (training, full evaluations, benchmarks) are left to their own scripts and CI time.
QUICK = (
    "segcam explain --model hrsegnet_b48 --layer seg_head examples/images/deepcrack_IMG_6472-1.jpg",
    "segcam models b48",
    "segcam atlas segcam_out --masks examples/masks && segcam report segcam_out",
    "segcam survey examples/images --out segcam_survey && segcam report segcam_survey",
)


@pytest.mark.parametrize("line", QUICK)
def test_quick_readme_commands_run(tmp_path, line) -> None:
    assert line.split(" && ")[0] in README or line in (README + open(ROOT / "segcam" / "cli" / "parser.py").read())
    cwd = _checkout(tmp_path)
    if "segcam_out" in line and "explain" not in line:
        first = subprocess.run(QUICK[0], shell=True, cwd=cwd, capture_output=True, text=True, timeout=600)
        assert first.returncode == 0, first.stderr[-3000:]
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ.get('PATH', '')}"}
    assert shutil.which("segcam", path=env["PATH"]), "the segcam command is not installed (pip install -e .)"
    res = subprocess.run(line, shell=True, cwd=cwd, capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
