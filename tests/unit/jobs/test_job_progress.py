"""What a job shows while it works: progress within long units, stable block numbers across a resume, rates
over running time only, and "pausing" as soon as a pause is asked for."""

from __future__ import annotations

import os
import time

import pytest

from core.ddpm import synthetic
from core.ddpm.sampling import sample_params
from core.jobs import control, runner, runview

pytestmark = pytest.mark.timeout(300)


def _mark_running_here(study, job_id: str) -> None:
    """Make a job look like it runs in this very process (alive, with its real start time)."""
    folder = runner.run_dir(study, job_id)
    pid = os.getpid()
    runner.write_json_atomic(folder / "job.json", {**runner.read_json(folder / "job.json"), "pid": pid,
                                                   "start_ticks": runner.process_start_ticks(pid)})
    runner.write_json_atomic(folder / "status.json", {"state": "running", "pid": pid, "heartbeat": time.time()})
    study.store.execute("UPDATE jobs SET state = 'running', pid = ? WHERE id = ?", [pid, job_id])


def test_progress_counts_the_unit_in_progress(study):
    job = runner.create_job(study, "selftest", {"n": 1})
    seen = []
    ctx = runner.JobContext(study=study, job_id=job, kind="selftest", params={},
                            on_progress=lambda done, total, message: seen.append(done))
    ctx.progress(2, 8, partial=1.5, message="block 3/4: step 3/4", force=True)
    status = control.job_status(study, job)
    assert status["done"] == 2 and status["progress"] == 3.5 / 8 and seen == [3.5]


def test_a_pause_shows_at_once_not_at_the_safe_point(study):
    job = runner.create_job(study, "selftest", {"n": 1})
    _mark_running_here(study, job)
    assert {r["id"]: r["state"] for r in runview.scan_jobs(study)}[job] == "running"
    control.request_pause(study, job)
    assert {r["id"]: r["state"] for r in runview.scan_jobs(study)}[job] == "pausing"
    # What cancel_job leaves for a job it cannot signal (here: the test's own process).
    (runner.run_dir(study, job) / "cancel").touch()
    assert {r["id"]: r["state"] for r in runview.scan_jobs(study)}[job] == "cancelling"


def test_sampling_progress_moves_within_blocks_and_counts_on_after_a_resume(sample_study, monkeypatch):
    study = sample_study
    params = sample_params(study, checkpoint=200, sampler="ddim", steps=4, batch=2, seed=3, count=4, run="r")
    job_id = runner.create_job(study, "sample", params)
    real_add = synthetic.add_images

    def add_then_pause(st, run_id, rows):  # a pause request arrives while the first block is recorded
        n = real_add(st, run_id, rows)
        (runner.run_dir(st, job_id) / "pause").touch()
        return n

    monkeypatch.setattr(synthetic, "add_images", add_then_pause)
    seen: list[tuple[float, str]] = []
    first = runner.run_job(study, job_id, on_progress=lambda done, total, message: seen.append((done, message)))
    assert first["state"] == "paused"
    # Two images per block, four steps: step 2 of block 1 is half of that block, one image of four.
    assert (1.0, "block 1/2: step 2/4") in seen
    paused = control.job_status(study, job_id)
    assert paused["made"] == 2 and paused["sampling_s"] > 0

    monkeypatch.setattr(synthetic, "add_images", real_add)
    seen.clear()
    t0 = time.monotonic()
    second = runner.run_job(study, job_id, on_progress=lambda done, total, message: seen.append((done, message)))
    second_wall = time.monotonic() - t0
    assert second["state"] == "succeeded", second["error"]
    # The block left is still block 2 of 2, and its steps start from the two images already made.
    assert (3.0, "block 2/2: step 2/4") in seen
    result = second["result"]
    assert result["made"] == 4 and result["images"] == 4
    # Seconds are the two runs' sampling time: the first run's, plus what fits inside the second run, so the
    # time between the runs (the job sat paused) is not in them.
    # (result seconds are rounded to 2 decimals: at most 0.005 s off.)
    assert paused["sampling_s"] - 0.005 <= result["seconds"] <= paused["sampling_s"] + second_wall + 0.005
    # The rate is 4 images over those seconds; its rounding to 4 decimals and that of seconds bound the gap.
    assert result["images_per_s"] == pytest.approx(4 / result["seconds"], rel=0.005 / result["seconds"] + 1e-4)
