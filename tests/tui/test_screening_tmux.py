"""The real app in tmux: launch, open screening from the command palette, accept and reject by keys, quit,
check the database (slow: run with -m slow)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.factories.screening import add_run
from tests.factories.waiting import HANG_S
pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")]
ROOT = Path(__file__).resolve().parents[2]


class Pane:
    def __init__(self, sock: str) -> None:
        self.sock = sock

    def tmux(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["tmux", "-L", self.sock, *args], capture_output=True, text=True)

    def text(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "t").stdout

    def wait(self, predicate, what: str, timeout: float = HANG_S) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; the pane shows:\n{self.text()}")

    def alive(self) -> bool:
        return self.tmux("has-session", "-t", "t").returncode == 0


def test_screening_in_tmux_from_the_command_palette(study, tmp_path) -> None:
    ids = add_run(study, "c34", 34, 6, size=64)
    pane = Pane(f"cspine-test-{os.getpid()}")
    command = (f"env -u COLUMNS -u LINES COLORTERM=truecolor TERM=tmux-256color PYTHONPATH={ROOT} "
               f"{sys.executable} -m cspine_tui --study {study.root} --reviewer tmuxer --image-protocol halfcell")
    started = pane.tmux("-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", "120", "-y", "40", command)
    assert started.returncode == 0, started.stderr
    try:
        pane.wait(lambda: "Real images" in pane.text(), "the dashboard")
        pane.tmux("send-keys", "-t", "t", "C-p")
        pane.wait(lambda: "Open Screening" in pane.text() or "Search" in pane.text(), "the command palette", 20)
        pane.tmux("send-keys", "-t", "t", "-l", "Open Screening")
        pane.wait(lambda: "Open Screening" in pane.text(), "the palette match", 20)
        pane.tmux("send-keys", "-t", "t", "Enter")
        pane.wait(lambda: "1/6" in pane.text() and ids[0] in pane.text(), "the screening screen")
        pane.wait(lambda: pane.tmux("capture-pane", "-p", "-e", "-t", "t").stdout.count("▀") > 200,
                  "the half-cell preview", 20)
        pane.tmux("send-keys", "-t", "t", "a")
        pane.wait(lambda: ids[1] in pane.text(), "the next image after accept", 20)
        pane.tmux("send-keys", "-t", "t", "r")
        pane.wait(lambda: "Reject: press the reason" in pane.text(), "the reason list", 20)
        pane.tmux("send-keys", "-t", "t", "1")
        pane.wait(lambda: ids[2] in pane.text(), "the next image after reject", 20)
        pane.tmux("send-keys", "-t", "t", "q")
        pane.wait(lambda: not pane.alive(), "the app to quit", 30)
    finally:
        pane.tmux("kill-server")
    rows = study.store.query("SELECT image_id, decision, reason FROM reviews WHERE reviewer = 'tmuxer' "
                             "ORDER BY image_id")
    assert rows == [{"image_id": ids[0], "decision": "accept", "reason": None},
                    {"image_id": ids[1], "decision": "reject", "reason": "airway_posterior"}]
    events = study.store.column("SELECT action FROM review_events WHERE reviewer = 'tmuxer' ORDER BY seq")
    assert events == ["accept", "reject"]
    assert not list((study.cache_dir / "screening-journal").glob("*.jsonl"))  # all applied, journal removed


@pytest.mark.parametrize("size", [(80, 24), (200, 50)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_screening_panels_stay_closed_while_rejecting(study, size) -> None:
    """With many runs in Table S1, the reject-reason panel must not push a panel's bottom border off the
    screen or under the caption: every rounded box drawn is closed."""
    for k in range(10):
        add_run(study, f"demo-planted-s{10 * (k + 1)}", 10 * (k + 1), 2, seed0=10 * k)
    pane = Pane(f"cspine-test-{os.getpid()}-{size[0]}")
    command = (f"env -u COLUMNS -u LINES COLORTERM=truecolor TERM=tmux-256color PYTHONPATH={ROOT} "
               f"{sys.executable} -m cspine_tui --study {study.root} --reviewer tmuxer --image-protocol halfcell")
    started = pane.tmux("-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", str(size[0]), "-y", str(size[1]),
                        command)
    assert started.returncode == 0, started.stderr
    try:
        pane.wait(lambda: "Real images" in pane.text(), "the dashboard")
        pane.tmux("send-keys", "-t", "t", "4")
        pane.wait(lambda: "demo-planted-s10-0" in pane.text(), "the screening screen")
        pane.tmux("send-keys", "-t", "t", "r")
        pane.wait(lambda: "Reject: press the reason" in pane.text(), "the reason list", 20)
        text = pane.text().rstrip()
        lines = text.splitlines()
        assert max(len(line) for line in lines) > size[0] - 5, f"the app is not drawn at {size}:\n{text}"
        assert text.count("╭") == text.count("╰"), f"a panel is left open:\n{text}"
        assert "demo-planted-s10-0" in lines[-2], f"the caption is not above the footer:\n{text}"
        pane.tmux("send-keys", "-t", "t", "Escape")
        pane.wait(lambda: "Table S1" in pane.text(), "the counts again", 20)
        pane.tmux("send-keys", "-t", "t", "q")
        pane.wait(lambda: not pane.alive(), "the app to quit", 30)
    finally:
        pane.tmux("kill-server")
