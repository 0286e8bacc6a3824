"""The TUI benchmarks start the app from the interpreter running them (issue 17: `.venv/bin/cspine-tui` only
made `python -m benchmarks` from any other environment time out)."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import bench_tui_keypress  # noqa: E402


def test_app_command_uses_the_running_interpreter_and_this_checkout(tmp_path) -> None:
    command = bench_tui_keypress.app_command()
    assert ".venv" not in command.replace(sys.executable, "")
    assert shlex.quote(sys.executable) in command
    # It really starts this checkout's CLI from an unrelated folder (a cwd with no .venv).
    done = subprocess.run(shlex.split(command) + ["--help"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "cspine-tui" in done.stdout
