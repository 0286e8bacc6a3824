"""The TUI killed by SIGHUP, as an SSH drop kills it, while jobs run (slow; needs tmux).

A training and a sampling job run detached; the real app runs in tmux on its jobs screen. The app is killed
twice: by SIGHUP to its process, then by killing its tmux session (tmux hangs up the pane). The jobs do not
notice: they finish ``succeeded``, and a new app lists them as such on its jobs screen.

The jobs are held with SIGSTOP while the apps come and go, so both are mid-run at both hang-ups on any
machine at any load (a short job could otherwise end before a slow app start), then let go with SIGCONT.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from core.study import Study
from cspine_tui.app import CspineApp
from tests.factories.screens import screen_text
from tests.factories.sample import make_checkpoint
from tests.factories.train import add_real_images
from tests.reliability import stress

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")]


class Tmux:
    def __init__(self, sock: str) -> None:
        self.sock = sock

    def __call__(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["tmux", "-L", self.sock, *args], capture_output=True, text=True)

    def text(self, session: str) -> str:
        return self("capture-pane", "-p", "-t", session).stdout

    def start_app(self, session: str, study: Study) -> int:
        """Start the app on its jobs screen; returns the app's pid (the pane's process)."""
        cli = stress.CLI[0]
        command = f"env TERM=tmux-256color {cli} --study {study.root} --reviewer hup --image-protocol halfcell"
        started = self("-f", "/dev/null", "new-session", "-d", "-s", session, "-x", "160", "-y", "40", command)
        assert started.returncode == 0, started.stderr
        stress.wait_until(lambda: "Real images" in self.text(session), 120, f"the dashboard in {session}")
        self("send-keys", "-t", session, "8")
        stress.wait_until(lambda: "train-" in self.text(session), 60, f"the jobs screen in {session}")
        return int(self("list-panes", "-t", session, "-F", "#{pane_pid}").stdout.split()[0])


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state == "Z"


async def test_jobs_survive_the_tui_hung_up_and_a_new_tui_shows_them(tmp_path: Path) -> None:
    study = Study.create(tmp_path / "study", preset="tiny")
    add_real_images(study, n=12)
    make_checkpoint(study)
    # Long enough that neither can end before it is seen running and stopped, on an idle machine.
    train = stress.start_train(study, steps=120, every=60)
    sample = stress.start_sample(study, 48, run="hup", batch=2, steps=10)
    groups = [os.getpgid(stress.running_pid(study, j)) for j in (train, sample)]
    for group in groups:  # held mid-run: a stopped process is alive, so the job stays "running"
        os.killpg(group, signal.SIGSTOP)
    tmux = Tmux(f"cspine-hup-{os.getpid()}")
    try:
        app_pid = tmux.start_app("one", study)
        assert {stress.record(study, j)["state"] for j in (train, sample)} == {"running"}
        os.kill(app_pid, signal.SIGHUP)  # an SSH drop: the terminal hangs up on the app
        stress.wait_until(lambda: _gone(app_pid), 60, "the app to end on SIGHUP")
        app_pid = tmux.start_app("two", study)
        assert {stress.record(study, j)["state"] for j in (train, sample)} == {"running"}
        tmux("kill-session", "-t", "two")  # the terminal (tmux pane) goes away
        stress.wait_until(lambda: _gone(app_pid), 60, "the app to end with its tmux session")
    finally:
        tmux("kill-server")
        for group in groups:
            os.killpg(group, signal.SIGCONT)
    ends = {j: stress.wait_end(study, j, timeout=900) for j in (train, sample)}  # a hang detector only
    assert all(r["state"] == "succeeded" for r in ends.values()), stress.dump(ends)
    assert len(stress.assert_synthetic_complete(study, "hup")) == 48

    app = CspineApp(study, reviewer="hup", image_protocol="halfcell")
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.press("8")

        async def shown() -> str:
            for _ in range(600):
                await pilot.pause(0.05)
                text = screen_text(app)
                if all(j in text for j in (train, sample)):
                    return text
            return screen_text(app)

        text = await shown()
        rows = [line for line in text.splitlines() if train in line or sample in line]
        assert len(rows) >= 2 and all("succeeded" in line for line in rows[:2]), text
