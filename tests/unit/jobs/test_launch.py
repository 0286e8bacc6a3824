"""The one way to start a job (core.jobs.launch) and the registry of kinds it chooses launchers from."""

from __future__ import annotations

import pytest

from core.errors import CspineError
from core.jobs import control, launch, registry, runner

pytestmark = pytest.mark.timeout(120)


def test_registry_names_each_kind_and_how_many_processes_it_runs_as():
    assert callable(registry.resolve_runner("selftest"))
    with pytest.raises(CspineError, match="unknown job kind 'nope'; known: .*selftest"):
        registry.job_kind("nope")
    assert registry.num_processes("train", {"num_processes": 2}) == 2
    assert registry.num_processes("sample", {}) == 1
    # A kind that cannot run as N processes runs as one whatever its params say.
    assert registry.num_processes("ingest", {"num_processes": 4}) == 1


def test_unknown_kind_is_refused_before_anything_is_written(study):
    with pytest.raises(CspineError, match="unknown job kind"):
        launch.launch(study, "nope", {}, detach=True)
    assert control.list_jobs(study) == []


def test_foreground_launch_runs_here_and_reports_progress(study):
    seen: list[tuple[float, int]] = []
    launched = launch.launch(study, "selftest", {"n": 4}, detach=False, argv=["selftest", "x"],
                             on_progress=lambda done, total, _message: seen.append((done, total)))
    assert launched.record is not None and launched.record["state"] == "succeeded"
    assert launched.pid is None and launched.sbatch is None
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert runner.job_record(study, launched.job_id)["argv"] == ["selftest", "x"]


def test_detached_launch_returns_at_once_and_the_job_runs_on(study):
    launched = launch.launch(study, "selftest", {"n": 3}, detach=True)
    assert launched.pid and launched.record is None
    assert control.wait_for(study, launched.job_id, timeout=60)["state"] == "succeeded"


def test_resume_in_the_foreground_continues_a_paused_job(study):
    first = launch.launch(study, "selftest", {"n": 200, "sleep": 0.01, "time_limit_s": 0.3}, detach=False)
    assert first.record["state"] == "paused"
    counted = int((runner.run_dir(study, first.job_id) / "count.txt").read_text())
    with study.store.connect() as tx:  # lift the limit, as a new allocation would
        tx.execute("UPDATE jobs SET params = '{\"n\": 200}' WHERE id = ?", [first.job_id])
    again = launch.start(study, first.job_id, detach=False)
    assert again.job_id == first.job_id and again.record["state"] == "succeeded"
    assert counted < 200 and again.record["result"]["counted"] == 200
    with pytest.raises(CspineError, match="only paused, failed or queued jobs resume"):
        launch.start(study, first.job_id, detach=True)


def test_sbatch_launch_writes_a_script_and_leaves_the_job_queued(study):
    params = {"num_processes": 2, "config": {"name": "tiny"}}
    launched = launch.launch(study, "train", params, detach=True,
                             sbatch=launch.SbatchOptions(cpu=True, time_limit="01:00:00", signal_lead_s=60))
    text = launched.sbatch.read_text()
    assert launched.sbatch.name == "train.sbatch" and "#SBATCH --cpus-per-task=2" in text
    assert "--num_processes 2" in text and "#SBATCH --signal=B:USR1@60" in text
    assert runner.job_record(study, launched.job_id)["state"] == "queued" and launched.pid is None


def test_a_bad_sbatch_request_leaves_no_job_behind(study):
    # Before launch() existed the job was created first and the script's check failed after it.
    with pytest.raises(CspineError, match="at least 30 s"):
        launch.launch(study, "train", {"num_processes": 1}, detach=True,
                      sbatch=launch.SbatchOptions(signal_lead_s=5))
    assert control.list_jobs(study) == []


def test_multiprocess_kinds_get_an_accelerate_command_and_others_one_process(study):
    two = runner.create_job(study, "sample", {"num_processes": 2})
    command = launch.launch_command(study, two, cpu=True)
    assert command[:2] == ["env", "ACCELERATE_USE_CPU=true"] and "accelerate.commands.launch" in command
    one = runner.create_job(study, "audit", {"num_processes": 2})  # audits always run as one process
    assert launch.launch_command(study, one) == runner.job_command(study, one)
