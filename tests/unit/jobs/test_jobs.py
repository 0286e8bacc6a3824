"""Job machinery: states, dead processes (pid reuse included), cancel, pause, time limit, resume, logs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from core.errors import CspineError
from core.jobs import control, launch, runner
from tests.factories.waiting import HANG_S, wait_until
pytestmark = pytest.mark.timeout(120)


def _mark_running(study, job_id: str, pid: int, start_ticks: int | None) -> None:
    folder = runner.run_dir(study, job_id)
    runner.write_json_atomic(folder / "job.json", {**runner.read_json(folder / "job.json"), "pid": pid,
                                                 "start_ticks": start_ticks})
    study.store.execute("UPDATE jobs SET state = 'running', pid = ? WHERE id = ?", [pid, job_id])


def test_foreground_job_runs_to_success_with_status_and_output(study):
    job = runner.create_job(study, "selftest", {"n": 5})
    assert runner.job_record(study, job)["state"] == "queued"
    record = runner.run_job(study, job)
    assert record["state"] == "succeeded" and record["result"]["counted"] == 5
    status = control.job_status(study, job)
    assert status["state"] == "succeeded" and status["done"] == 5 and status["progress"] == 1.0
    listed = {j["id"]: j for j in control.list_jobs(study)}[job]
    assert listed["output"].endswith("count.txt") and listed["step"] == 5
    with pytest.raises(CspineError, match="succeeded"):
        runner.run_job(study, job)


def test_dead_process_is_recognised_as_failed_and_resumable(study):
    job = runner.create_job(study, "selftest", {"n": 3})
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    ticks = wait_until(lambda: runner.process_start_ticks(proc.pid) or None, HANG_S, "start ticks") \
        if proc.poll() is None else None
    proc.wait()
    _mark_running(study, job, proc.pid, ticks)
    listed = {j["id"]: j for j in control.list_jobs(study)}[job]
    assert listed["state"] == "failed" and "died" in listed["error"] and "resume" in listed["error"]
    assert runner.run_job(study, job)["state"] == "succeeded"  # a died job resumes


def test_reused_pid_is_not_mistaken_for_the_job(study):
    job = runner.create_job(study, "selftest", {"n": 3})
    me = os.getpid()
    real_ticks = runner.process_start_ticks(me)
    _mark_running(study, job, me, real_ticks)
    assert control.reconcile(study, runner.job_record(study, job))["state"] == "running"  # alive: our own process
    _mark_running(study, job, me, real_ticks - 1)  # same pid, another process's start time
    assert control.reconcile(study, runner.job_record(study, job))["state"] == "failed"


def test_cancel_queued_and_ended_jobs(study):
    job = runner.create_job(study, "selftest", {"n": 3})
    assert control.cancel_job(study, job)["state"] == "cancelled"
    with pytest.raises(CspineError, match="already ended"):
        control.cancel_job(study, job)
    with pytest.raises(CspineError, match="no job"):
        control.cancel_job(study, "nope")


def test_time_limit_pauses_and_resume_continues(study):
    job = runner.create_job(study, "selftest", {"n": 300, "sleep": 0.01, "time_limit_s": 1.0})
    record = runner.run_job(study, job)
    assert record["state"] == "paused" and "time limit" in record["error"]
    first = int((runner.run_dir(study, job) / "count.txt").read_text())
    assert 0 < first < 300
    record = runner.run_job(study, job)
    second = int((runner.run_dir(study, job) / "count.txt").read_text())
    assert second > first  # continued, did not restart


def test_detached_job_pause_resume_and_cancel(study):
    job = runner.create_job(study, "selftest", {"n": 100000, "sleep": 0.01})
    pid = runner.start_detached(study, job)
    assert pid > 0
    wait_until(lambda: (control.job_status(study, job).get("done") or 0) >= 3, HANG_S, "the job to count")
    control.request_pause(study, job)
    paused = control.wait_for(study, job, timeout=HANG_S)
    assert paused["state"] == "paused" and "pause requested" in paused["error"]
    count = control.job_status(study, job)["done"]
    launch.start(study, job, detach=True)
    wait_until(lambda: (control.job_status(study, job).get("done") or 0) > count + 3, 60, "resumed counting")
    assert runner.job_record(study, job)["state"] == "running"
    control.cancel_job(study, job)  # SIGTERM to the job: stops at its next safe point
    assert control.wait_for(study, job, timeout=HANG_S)["state"] == "cancelled"
    with pytest.raises(CspineError, match="not running"):
        control.request_pause(study, job)


def test_secondary_rank_leaves_bookkeeping_to_rank_zero(study, monkeypatch):
    job = runner.create_job(study, "selftest", {"n": 2})
    monkeypatch.setenv("RANK", "1")
    local = runner.run_job(study, job)
    assert local["state"] == "succeeded"  # its own outcome ...
    monkeypatch.setenv("RANK", "0")
    record = runner.job_record(study, job)
    assert record["state"] == "queued" and record["pid"] is None  # ... but the job's record is untouched
    assert not (runner.run_dir(study, job) / "log.txt").exists()


def test_train_jobs_restart_with_a_fresh_launch_command(study):
    job = runner.create_job(study, "train", {"num_processes": 2})
    a, b = launch.launch_command(study, job), launch.launch_command(study, job)
    assert "--num_processes" in a and a[a.index("--num_processes") + 1] == "2"
    assert a[-1] == job and a[a.index("--main_process_port") + 1] != b[b.index("--main_process_port") + 1] \
        or a == b  # a fresh free port each time (rarely the same one twice)
    single = runner.create_job(study, "train", {"num_processes": 1})
    assert launch.launch_command(study, single)[1:3] == ["-m", "core.jobs.runner"]


def test_logs_follow_prints_until_the_job_ends(study, capsys):
    from cspine_tui.cli.main import main

    job = runner.create_job(study, "selftest", {"n": 30, "sleep": 0.02})
    runner.start_detached(study, job)
    assert main(["logs", job, "--follow", "--study", str(study.root)]) == 0
    out = capsys.readouterr().out
    assert f"job {job} succeeded" in out


def test_pause_command_needs_a_running_job(study, capsys):
    from cspine_tui.cli.main import main

    job = runner.create_job(study, "selftest", {"n": 1})
    assert main(["pause", job, "--study", str(study.root)]) == 2  # queued: nothing runs to pause
    assert "cancel it instead" in capsys.readouterr().err
    (runner.run_dir(study, job) / "pause").touch()  # a stale request (say, from a batch script) ...
    runner.run_job(study, job)  # ... is cleared by a fresh run, which runs to the end
    assert runner.job_record(study, job)["state"] == "succeeded"
    assert main(["pause", job, "--study", str(study.root)]) == 2
    assert "not running" in capsys.readouterr().err


def test_job_actions_refuse_what_a_job_state_does_not_allow(study) -> None:
    job = runner.create_job(study, "selftest", {"n": 2})
    runner.run_job(study, job)
    with pytest.raises(CspineError, match="only paused, failed or queued jobs resume"):
        launch.job_action(study, job, "resume")
    with pytest.raises(CspineError, match="not running"):
        launch.job_action(study, job, "pause")
    queued = runner.create_job(study, "selftest", {"n": 2})
    assert "cancelled" in launch.job_action(study, queued, "cancel")
    assert runner.job_record(study, queued)["state"] == "cancelled"
