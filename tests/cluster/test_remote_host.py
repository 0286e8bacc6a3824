"""A job running on a cluster node, watched from the login node that shares the study folder.

Its pid means nothing on the login node: `cspine-tui jobs` must judge it by its heartbeat (not mark it
failed because no local process has that pid), and `cancel` must not signal whatever local process has that
pid. Fast (no Slurm needed): the record is made to look like a job another host runs.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from core.jobs import control

from core.jobs import runner
from core.errors import CspineError


def _running_elsewhere(study, pid: int, heartbeat_age_s: float) -> str:
    job = runner.create_job(study, "selftest", {"n": 3})
    runner.set_state(study, job, "running", pid=pid, host="gpu-node-17")
    runner.write_json_atomic(runner.run_dir(study, job) / "status.json",
                           {"state": "running", "step": 2, "heartbeat": time.time() - heartbeat_age_s})
    return job


def test_a_job_on_another_host_lives_while_its_heartbeat_is_fresh(study):
    dead = subprocess.Popen(["true"])
    dead.wait()
    job = _running_elsewhere(study, dead.pid, heartbeat_age_s=3)
    listed = {r["id"]: r for r in control.list_jobs(study)}
    assert listed[job]["state"] == "running"  # no local process has its pid, and that says nothing
    with pytest.raises(CspineError, match="running"):  # and it is not offered for a second, parallel run
        control.resumable_record(study, job)


def test_a_job_on_another_host_whose_heartbeat_stopped_is_failed_naming_the_host(study):
    job = _running_elsewhere(study, 999_999, heartbeat_age_s=control.REMOTE_STALE_S + 5)
    record = control.reconcile(study, runner.job_record(study, job))
    assert record["state"] == "failed" and "gpu-node-17" in record["error"]


def test_cancel_of_a_job_on_another_host_signals_no_local_process(study):
    bystander = subprocess.Popen(["sleep", "60"], start_new_session=True)  # a local process with "its" pid
    try:
        job = _running_elsewhere(study, bystander.pid, heartbeat_age_s=1)
        control.cancel_job(study, job)
        with pytest.raises(subprocess.TimeoutExpired):  # a SIGTERM would end it at once
            bystander.wait(timeout=0.5)
        assert (runner.run_dir(study, job) / "cancel").exists()  # the job itself sees this at its next step
        assert runner.job_record(study, job)["state"] == "running"
    finally:
        bystander.kill()
        bystander.wait()
