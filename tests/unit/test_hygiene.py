"""Import hygiene: the engine imports no UI, and only the store (core/store/) imports duckdb."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORE_MODULES = sorted((ROOT / "core").rglob("*.py"))


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_only_store_imports_duckdb() -> None:
    offenders = [p.name for p in ROOT.glob("**/*.py")
                 if ".venv" not in p.parts and "duckdb" in _imports(p) and (ROOT / "core" / "store") not in p.parents
                 and "tests" not in p.parts]
    assert offenders == []


def test_core_never_imports_ui_statically() -> None:
    for path in CORE_MODULES:
        assert not _imports(path) & {"textual", "textual_image", "cspine_tui"}, path.name


def test_importing_every_core_module_pulls_in_no_textual() -> None:
    modules = [".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__") for p in CORE_MODULES]
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'textual_image', 'cspine_tui'))\n"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
