"""Shared fixtures. Areas keep their own fixtures in their test modules; only widely used ones live here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Keep tests single-threaded per process and away from any real torch hub cache or terminal.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TEXTUAL_COLOR_SYSTEM", "truecolor")


@pytest.fixture
def study(tmp_path: Path):
    from core.study import Study

    return Study.create(tmp_path / "study")


def screen_text(app) -> str:
    """The plain text of what the app's current screen shows, line by line (for Pilot assertions)."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())
