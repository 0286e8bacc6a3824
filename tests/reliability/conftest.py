"""Shared fixtures of the reliability suite (tests/reliability/, all marked slow).

Each part keeps its helpers in its own module (killing.py for the SIGKILL tests); only what several
parts use belongs here, added in small edits.
"""

from __future__ import annotations
