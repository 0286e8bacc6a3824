"""Shared fixtures. Areas keep their own fixtures in their test modules; only widely used ones live here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Fixtures shared across areas, defined with the builders they use.
pytest_plugins = ["tests.factories.sample", "tests.factories.train"]

# Keep tests single-threaded per process and away from any real torch hub cache or terminal.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TEXTUAL_COLOR_SYSTEM", "truecolor")


@pytest.fixture
def study(tmp_path: Path):
    from core.study import Study

    return Study.create(tmp_path / "study")
