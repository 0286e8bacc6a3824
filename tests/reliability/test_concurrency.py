"""Everything at once on one study (slow): a detached training job, a detached sampling job, the TUI (Pilot,
in this process) making screening decisions, and CLI commands in a loop. Zero lock errors anywhere, every
decision and every metric stored, both jobs succeed."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from core.jobs import runner
from core.study import Study
from cspine_tui.app import CspineApp
from tests.factories.sample import make_checkpoint
from tests.factories.screening import add_run
from tests.factories.train import add_real_images
from tests.reliability import stress
from tests.factories.waiting import open_by_key, settle
pytestmark = pytest.mark.slow

CLI_LOOP = (("status", "--json"), ("jobs",), ("runs",), ("checkpoints",), ("status",))


class CliLoop(threading.Thread):
    """Runs read-only CLI commands back to back until stopped; keeps every failure and every stderr."""

    def __init__(self, study: Study) -> None:
        super().__init__(daemon=True)
        self.study, self.stop, self.runs, self.failures, self.stderr = study, threading.Event(), 0, [], []

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            args = CLI_LOOP[i % len(CLI_LOOP)]
            proc = stress.cli(*args, "-s", str(self.study.root), check=False, timeout=120)
            self.runs += 1
            self.stderr.append(proc.stderr)
            if proc.returncode != 0:
                self.failures.append((args, proc.returncode, proc.stderr[-2000:]))
            i += 1


async def test_jobs_tui_and_cli_at_once_on_one_study(tmp_path: Path) -> None:
    study = Study.create(tmp_path / "study", preset="tiny")
    add_real_images(study, n=12)
    make_checkpoint(study)
    ids = add_run(study, "c34", 34, 40)
    train = stress.start_train(study, steps=4, every=2)
    sample = stress.start_sample(study, 8, run="conc", batch=2, steps=6)
    loop = CliLoop(study)
    loop.start()
    decided: dict[str, str] = {}
    deadline = time.monotonic() + 240
    app = CspineApp(study, reviewer="conc", image_protocol="halfcell")
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await open_by_key(app, pilot, "4", "ScreeningScreen")
            # Decide at a reviewer's pace while both jobs run (and at least 12 decisions in any case).
            while len(decided) < len(ids) and time.monotonic() < deadline:
                ended = all(stress.record(study, j)["state"] not in runner.ACTIVE_STATES for j in (train, sample))
                if ended and len(decided) >= 12:
                    break
                current = screen.current.id
                if len(decided) % 3 == 2:
                    await pilot.press("r", "1")
                    decided[current] = "reject"
                else:
                    await pilot.press("a")
                    decided[current] = "accept"
                await settle(app, pilot)
                assert screen.current.id != current, "the screen did not move on after a decision"
            await pilot.press("q")
    finally:
        loop.stop.set()
        loop.join(timeout=150)
    ends = {j: stress.wait_end(study, j, timeout=max(30.0, deadline - time.monotonic())) for j in (train, sample)}
    assert all(r["state"] == "succeeded" for r in ends.values()), stress.dump(ends)

    # No lock or I/O error anywhere: job logs, CLI stderr, CLI exit codes.
    assert loop.runs >= 5 and not loop.failures, stress.dump(loop.failures)
    for text in [stress.log_text(study, j) for j in (train, sample)] + loop.stderr:
        assert not stress.LOCK_ERRORS.search(text), stress.LOCK_ERRORS.search(text).group(0) + "\n" + text[-3000:]
    # Every decision stored once, as made; one event each.
    rows = study.store.query("SELECT image_id, decision FROM reviews WHERE reviewer = 'conc'")
    assert {r["image_id"]: r["decision"] for r in rows} == decided
    assert study.store.scalar("SELECT count(*) FROM review_events WHERE reviewer = 'conc'") == len(decided)
    # Every metric the training job measured is in the metrics table (synced by the job itself).
    stored = study.store.scalar("SELECT count(*) FROM metrics WHERE job_id = ?", [train])
    assert stored == stress.metrics_lines(study, train) > 0
    assert [r["idx"] for r in stress.assert_synthetic_complete(study, "conc")] == list(range(8))
    assert study.store.column("SELECT step FROM checkpoints WHERE job_id = ? AND NOT deleted ORDER BY step",
                              [train]) == [2, 4]
