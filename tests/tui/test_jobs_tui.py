"""The job keys (Textual Pilot): written once in PolledScreen, the same on the jobs, training and sampling
screens, and a pause shows as "pausing" at once."""

from __future__ import annotations

import os
import time

import pytest

from core.jobs import runner
from cspine_tui.app import CspineApp
from cspine_tui.screens.jobs import JobsScreen, progress_text
from cspine_tui.screens.sampling import SamplingScreen
from cspine_tui.screens.training import TrainingScreen
from tests.factories.screens import screen_text
from tests.factories.waiting import settle, until

pytestmark = pytest.mark.timeout(180)


@pytest.mark.parametrize("screen, area, noun", [(JobsScreen, "Jobs", "job"), (TrainingScreen, "Training", "run"),
                                                (SamplingScreen, "Sampling", "run")])
def test_job_screens_share_one_set_of_keys_and_palette_names(screen, area, noun):
    keys = {key: [b.action for b in bindings] for key, bindings in screen._merge_bindings().key_to_bindings.items()}
    assert keys["p"] == ["pause_job"] and keys["c"] == ["cancel_job"] and keys["r"] == ["resume_job"]
    names = [name for name, _help, _call in screen.job_commands(screen.__new__(screen))]
    assert names == [f"{area}: pause {noun}", f"{area}: resume {noun}", f"{area}: cancel {noun}"]


def test_the_bar_shows_the_fraction_the_job_reports():
    assert str(progress_text({"progress": 0.25}, width=8)) == "██░░░░░░  25%"
    assert str(progress_text({}, width=8)) == "–"


async def test_p_on_the_jobs_screen_shows_pausing_at_once(study):
    job = runner.create_job(study, "selftest", {"n": 1})
    # A job that runs (this process stands in for it) and would reach its safe point only much later.
    folder, pid = runner.run_dir(study, job), os.getpid()
    runner.write_json_atomic(folder / "job.json", {**runner.read_json(folder / "job.json"), "pid": pid,
                                                   "start_ticks": runner.process_start_ticks(pid)})
    runner.write_json_atomic(folder / "status.json", {"state": "running", "pid": pid, "heartbeat": time.time(),
                                                      "done": 1, "total": 4, "progress": 0.25,
                                                      "message": "block 1/2: step 200/1000"})
    study.store.execute("UPDATE jobs SET state = 'running', pid = ? WHERE id = ?", [pid, job])
    app = CspineApp(study, reviewer="tester", image_protocol="off")
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(app, pilot)
        app.open_screen("jobs")
        await until(app, pilot, lambda: getattr(app.screen, "rows", None))
        screen = app.screen
        assert screen.selected == job and "25%" in screen_text(app)
        await pilot.press("p")
        await until(app, pilot, lambda: {r["id"]: r["state"] for r in screen.rows}.get(job) == "pausing",
                    refresh=screen.poll_now)
        assert "pausing" in screen_text(app)
        assert any(n.message.startswith(f"pausing {job}") for n in app._notifications)
    assert (folder / "pause").exists() and runner.job_record(study, job)["state"] == "running"
