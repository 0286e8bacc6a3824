"""The house rules as checks that fail the build: the import contracts (import-linter, configured in
pyproject.toml), ruff, no import cycle between project modules, and a reason beside every import inside a
function."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("core", "cspine_tui")


def _tool(name: str) -> str | None:
    """The console script installed next to this Python (the venv), else one on PATH."""
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else shutil.which(name)


def test_import_contracts_hold() -> None:
    exe = _tool("lint-imports")
    if exe is None:
        pytest.skip("import-linter is not installed (pip install '.[dev]'); the import contracts were not checked")
    out = subprocess.run([exe, "--no-cache", "--config", str(ROOT / "pyproject.toml")], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


def test_ruff_finds_nothing() -> None:
    exe = _tool("ruff")
    if exe is None:
        pytest.skip("ruff is not installed (pip install '.[dev]'); the lint rules were not checked")
    out = subprocess.run([exe, "check", "--no-cache", "--output-format", "concise", str(ROOT)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


def _modules() -> dict[str, Path]:
    mods = {}
    for base in PACKAGES:
        for path in (ROOT / base).rglob("*.py"):
            mods[".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")] = path
    return mods


def _targets(mods: dict[str, Path], module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The project modules an import statement names (a package and its imported submodules)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        parts = module.split(".")
        if mods[module].name == "__init__.py":
            parts.append("")
        base = ".".join(parts[:len(parts) - node.level] + ([node.module] if node.module else [])) if node.level \
            else node.module or ""
        names = [base] + [f"{base}.{a.name}" for a in node.names]
    return [n for n in names if n in mods and n != module]


def _graph() -> tuple[dict[str, set[str]], list[str]]:
    """module -> modules it imports anywhere (functions included); and the in-function imports with no comment."""
    mods = _modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    bare: list[str] = []
    for module, path in mods.items():
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        tree = ast.parse(source)
        inner = {id(n) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
                 for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom))}
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            targets = _targets(mods, module, node)
            edges[module].update(targets)
            # the reason may stand on the import's own lines or on the two lines above it
            near = " ".join(lines[max(0, node.lineno - 3):node.end_lineno])
            if targets and id(node) in inner and "#" not in near:
                bare.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return edges, bare


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), ignoring a package's own submodules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            head = min(comp, key=len)  # a package importing its own submodules is not a cycle
            if len(comp) > 1 and not all(x == head or x.startswith(head + ".") for x in comp):
                found.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_between_project_modules() -> None:
    edges, _ = _graph()
    assert _cycles(edges) == []


def test_every_project_import_inside_a_function_says_why() -> None:
    _, bare = _graph()
    assert bare == [], "give each a short comment (torch/textual start-up cost, optional dependency...) " \
                       "or move it to the top of the module"


def test_the_cycle_check_sees_a_cycle_hidden_in_a_function() -> None:
    edges = {"core.a": {"core.b"}, "core.b": {"core.a"}, "core.c": {"core.c.d"}, "core.c.d": {"core.c"}}
    assert _cycles(edges) == [["core.a", "core.b"]]


def test_importing_every_core_module_pulls_in_no_ui() -> None:
    """At run time too (import-linter reads import statements; this also sees importlib and plugins)."""
    modules = sorted(m for m in _modules() if m.split(".")[0] == "core")
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'textual_image', 'cspine_tui'))\n"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_docs_links_and_paths_resolve() -> None:
    # The docs name modules, paths and anchors that move with the code: a stale one fails here, not for a reader.
    out = subprocess.run([sys.executable, str(ROOT / "docs" / "check_links.py")], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
