"""The package's architecture: subpackages by concern, imports only downwards, no circles, I/O at the edges."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import ROOT

PKG = ROOT / "segcam"

#: Lowest first. A module may import from its own layer or below, never above. ``api`` is segcam/__init__.py
#: (the public facade), which only the front ends (app, cli) may import.
LAYERS = ["version", "utils", "data", "cam", "models", "viz", "evaluation", "training", "survey", "adapt", "api", "app", "cli"]


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _imports(path: Path, mods: dict[str, Path], name: str) -> set[str]:
    """Every segcam module ``path`` imports, at module level or inside functions (lazy imports count)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in mods:  # ``segcam.cam.engine.explain`` -> the module segcam.cam.engine
                t = t.rpartition(".")[0]
            if t.startswith("segcam") and t != name:
                found.add(t)
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(path, mods, name) for name, path in mods.items()}


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "api"
    return "cli" if parts[1] == "__main__" else parts[1]


def test_every_module_lives_in_a_known_layer() -> None:
    unknown = sorted(m for m in _graph() if _layer(m) not in LAYERS)
    assert not unknown, f"modules outside the layers {LAYERS}: {unknown}"
    top = sorted(p.name for p in PKG.iterdir() if p.suffix == ".py")
    assert top == ["__init__.py", "__main__.py", "version.py"], top


def test_no_import_cycles() -> None:
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for dep in sorted(graph.get(m, ())):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_imports_only_go_downwards() -> None:
    rank = {name: i for i, name in enumerate(LAYERS)}
    upward = sorted(f"{m} ({_layer(m)}) imports {d} ({_layer(d)})" for m, deps in _graph().items() for d in deps
                    if rank[_layer(d)] > rank[_layer(m)])
    assert not upward, "\n".join(upward)


def test_the_checks_catch_a_cycle_and_an_upward_import(tmp_path, monkeypatch) -> None:
    """The checks above can fail: a fake tree with a cycle and an upward import is caught."""
    fake = tmp_path / "segcam"
    (fake / "cam").mkdir(parents=True)
    (fake / "app").mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "cam" / "__init__.py").write_text("")
    (fake / "app" / "__init__.py").write_text("")
    (fake / "cam" / "a.py").write_text("from segcam.cam.b import x\nfrom segcam.app.ui import page\n")
    (fake / "cam" / "b.py").write_text("def f():\n    from segcam.cam import a\n")
    (fake / "app" / "ui.py").write_text("page = 1\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    monkeypatch.setattr(__import__(__name__), "PKG", fake)
    graph = _graph()
    assert graph["segcam.cam.a"] == {"segcam.cam.b", "segcam.app.ui"} and graph["segcam.cam.b"] == {"segcam.cam.a"}
    _fails_with(test_no_import_cycles, "segcam.cam.a -> segcam.cam.b -> segcam.cam.a")
    _fails_with(test_imports_only_go_downwards, "segcam.cam.a (cam) imports segcam.app.ui (app)")


def _fails_with(check, text: str) -> None:
    try:
        check()
    except AssertionError as exc:
        assert text in str(exc), str(exc)
    else:
        raise AssertionError(f"{check.__name__} passed on a tree with {text}")


def test_only_the_front_ends_parse_arguments_or_write_to_the_terminal() -> None:
    """Outside cli/ and app/: no argparse, no print, no tqdm, no writes to sys.stdout/sys.stderr."""
    offenders = []
    for name, path in _modules().items():
        if _layer(name) in ("cli", "app"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                offenders += [f"{name}: imports {m}" for m in mods if m.split(".")[0] in ("argparse", "tqdm")]
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                offenders.append(f"{name}:{node.lineno}: print()")
            elif (isinstance(node, ast.Attribute) and node.attr in ("stdout", "stderr") and isinstance(node.value, ast.Name)
                  and node.value.id == "sys"):
                parent_ok = re.search(r"sys\.stdout\.flush\(\)", ast.get_source_segment(path.read_text(), node) or "")
                if not parent_ok:
                    offenders.append(f"{name}:{node.lineno}: sys.{node.attr}")
    # segcam.models.export flushes sys.stdout before silencing paddle2onnx's C++ prints (no output of its own)
    offenders = [o for o in offenders if not o.startswith("segcam.models.export:") or "sys.stdout" not in o]
    assert not offenders, "\n".join(offenders)


def test_the_cli_module_of_each_command_is_small() -> None:
    sizes = {p.name: len(p.read_text().splitlines()) for p in (PKG / "cli").glob("*.py")}
    assert max(sizes.values()) < 300, sizes
