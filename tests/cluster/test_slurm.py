"""The scripts `cspine-tui train --sbatch` and `sample --sbatch` write, run by a real single-node Slurm.

The cluster (tests/cluster/slurm.py) runs on loopback from Debian's packages; every job gets one or two of
its two CPUs. `scancel -b -s USR1` delivers the pre-timeout signal at once (Slurm's own `--signal` fires on a
30-s check), and `cred_expire=10` lets a requeued job start again after ~10 s.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.jobs import runner
from core.ddpm.sampling import regenerate
from core.study import Study
from tests.cluster.slurm import Slurm
from tests.factories.waiting import wait_until
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


# One training config: run through Slurm with a USR1 in the middle, and in this process without a break.
TRAIN = ("--preset", "tiny", "--steps", "30", "--checkpoint-every", "15", "--seed", "11", "--deterministic")


def cli(*argv: str) -> str:
    """Run `cspine-tui ARGV` in this process; its stdout (the job id is the last line)."""
    from cspine_tui.cli.main import main

    with contextlib.redirect_stdout(io.StringIO()) as out:
        rc = main(list(argv))
    assert rc == 0, f"cspine-tui {' '.join(argv)} exited {rc}: {out.getvalue()}"
    return out.getvalue()


def submit(slurm: Slurm, study: Study, command: str, *argv: str) -> tuple[str, int, Path]:
    """Write the job's Slurm script with the CLI and sbatch it: (our job id, Slurm job id, script)."""
    out = cli(command, "--study", str(study.root), "--sbatch", "--sbatch-cpu", "--sbatch-time", "10:00",
              "--signal-lead", "30", *argv)
    job = out.strip().splitlines()[-1]
    script = runner.run_dir(study, job) / f"{command}.sbatch"
    assert script.is_file(), f"no {script.name} in {sorted(p.name for p in script.parent.iterdir())}"
    return job, slurm.sbatch(script), script


def jobs_listed(study: Study) -> dict[str, dict]:
    """`cspine-tui jobs --json`, by job id."""
    return {row["id"]: row for row in json.loads(cli("jobs", "--study", str(study.root), "--json"))}


def step_of(study: Study, job: str) -> int:
    status = runner.read_json(runner.run_dir(study, job) / "status.json") or {}
    return int(status.get("step") or 0) if status.get("state") == "running" else 0


def slurm_out(study: Study, job: str, slurm_id: int) -> str:
    path = runner.run_dir(study, job) / f"slurm-{slurm_id}.out"
    return path.read_text(errors="replace") if path.exists() else ""


def context(study: Study, job: str, slurm_id: int, slurm: Slurm):
    def show() -> str:
        log = (runner.run_dir(study, job) / "log.txt")
        return (f"--- slurm-{slurm_id}.out\n{slurm_out(study, job, slurm_id)[-3000:]}\n--- log.txt\n"
                f"{log.read_text(errors='replace')[-3000:] if log.exists() else ''}\n{slurm.logs(1500)}")
    return show


def ended(info: dict[str, str]) -> bool:
    return info.get("JobState") in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY")


def tree_hashes(folder: Path, pattern: str) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.glob(pattern)) if p.is_file()}


@pytest.fixture(scope="module")
def reference_train(slurm_study) -> str:
    """TRAIN run in this process without a break (`cspine-tui train`): the result to match, and the
    checkpoint the sampling test samples from."""
    job = cli("train", "--study", str(slurm_study.root), *TRAIN).strip().splitlines()[-1]
    assert runner.job_record(slurm_study, job)["state"] == "succeeded"
    return job


def test_usr1_checkpoints_requeues_and_resumes_to_the_uninterrupted_result(slurm, slurm_study, request):
    """The pre-timeout USR1: checkpoint, `scontrol requeue`, restart with SLURM_RESTART_COUNT=1, resume,
    and bit-identical final weights to the same config run without a break."""
    study = slurm_study
    job, sid, script = submit(slurm, study, "train", *TRAIN)
    text = script.read_text()
    assert "cspine-tui train --sbatch" in text and "--gres" not in text and "#SBATCH --cpus-per-task=1" in text
    show = context(study, job, sid, slurm)

    wait_until(lambda: step_of(study, job) >= 3, 150, f"job {job} to train a few steps", show)
    slurm.client("scancel", "-b", "-s", "USR1", str(sid))
    slurm.wait_job(sid, lambda i: i.get("Restarts") == "1", 60, "be requeued")
    reference_train = request.getfixturevalue("reference_train")  # made while Slurm restarts the job
    info = slurm.wait_job(sid, ended, 180, "finish after its restart")
    assert (info["JobState"], info["ExitCode"], info["Restarts"]) == ("COMPLETED", "0:0", "1"), show()
    paused = re.search(r"paused: pause requested; checkpoint at step (\d+)", show())
    assert paused and 3 <= int(paused.group(1)) < 30, show()
    paused_at = int(paused.group(1))

    out = slurm_out(study, job, sid)
    assert "(restart 0)" in out and "(restart 1)" in out, out  # --open-mode=append kept both runs' output
    assert f"job {job} is paused" in out, out
    log = (runner.run_dir(study, job) / "log.txt").read_text()
    assert f"resumed from step-{paused_at} (step {paused_at})" in log, log
    listed = jobs_listed(study)
    assert listed[job]["state"] == "succeeded" and listed[job]["step"] == 30, listed[job]
    # Bit-identical final weights (online and EMA) and training state to the uninterrupted run.
    a, b = (runner.run_dir(study, j) / "checkpoints" / "step-30" for j in (job, reference_train))
    patterns = ("unet*/*.safetensors", "state/*.safetensors", "state/*.bin")
    ours = {k: v for p in patterns for k, v in tree_hashes(a, p).items()}
    assert len(ours) >= 3 and ours == {k: v for p in patterns for k, v in tree_hashes(b, p).items()}


def test_scancel_shows_cancelled_and_another_term_pauses(slurm, slurm_study):
    """`scancel` sends TERM to the script and the job: the job stops and is cancelled (not paused, requeued
    or failed) in `cspine-tui jobs`. A TERM while Slurm still runs the job (what a time limit reached before
    the checkpoint, or a preemption, look like to the script) leaves it paused, resumable. Both jobs run
    side by side, one core each."""
    study = slurm_study
    long = ("--preset", "tiny", "--steps", "100000", "--checkpoint-every", "100000")
    job, sid, _ = submit(slurm, study, "train", *long, "--seed", "12")
    other, other_sid, _ = submit(slurm, study, "train", *long, "--seed", "13")
    show, show_other = context(study, job, sid, slurm), context(study, other, other_sid, slurm)
    wait_until(lambda: step_of(study, job) >= 2, 150, f"job {job} to train", show)
    wait_until(lambda: step_of(study, other) >= 2, 150, f"job {other} to train", show_other)
    slurm.client("scancel", str(sid))
    slurm.client("scancel", "-b", "-s", "TERM", str(other_sid))
    info = slurm.wait_job(sid, lambda i: i.get("JobState") == "CANCELLED", 60, "be cancelled")
    for j, explain in ((job, show), (other, show_other)):
        wait_until(lambda: runner.job_record(study, j)["state"] != "running", 60, f"job {j} to stop", explain)
    listed = jobs_listed(study)
    assert listed[job]["state"] == "cancelled", show()
    assert listed[other]["state"] == "paused", show_other()
    assert "TERM (Slurm job RUNNING" in slurm_out(study, other, other_sid), show_other()
    assert info["Restarts"] == "0"  # not requeued
    assert slurm.wait_job(other_sid, ended, 60, "end")["Restarts"] == "0"


def test_two_processes_in_one_allocation_have_distinct_ranks(slurm, slurm_study):
    """`--num-processes 2` on CPUs: the script asks for 2 cores and accelerate starts a gloo world of 2."""
    study = slurm_study
    job, sid, script = submit(slurm, study, "train", "--preset", "tiny", "--steps", "3",
                              "--checkpoint-every", "3", "--seed", "13", "--num-processes", "2")
    text = script.read_text()
    assert "#SBATCH --cpus-per-task=2" in text and "ACCELERATE_USE_CPU=true" in text and "--gres" not in text
    show = context(study, job, sid, slurm)
    info = slurm.wait_job(sid, ended, 200, "finish")
    assert (info["JobState"], info["ExitCode"]) == ("COMPLETED", "0:0"), show()
    record = runner.job_record(study, job)
    assert record["state"] == "succeeded" and record["result"]["processes"] == 2, show()
    out = slurm_out(study, job, sid)
    # Both processes report their own rank: a world of 2 with ranks 0 and 1, not two processes that both
    # believe they are rank 0 (docs/reference/cluster.md).
    assert f"{job}: process 0 of 2" in out and f"{job}: process 1 of 2" in out, out
    # Only rank 0 kept the books: one line per step, one checkpoint row.
    lines = (runner.run_dir(study, job) / "metrics.jsonl").read_text().splitlines()
    assert sum('"train_loss"' in line for line in lines) == 3
    assert study.store.column("SELECT step FROM checkpoints WHERE job_id = ?", [job]) == [3]


def test_sample_usr1_requeues_and_resumes_to_the_same_images(slurm, slurm_study, reference_train):
    """`sample --sbatch`: its own script (sample.sbatch); USR1 mid-run requeues it, the restart resumes, and
    the images equal those of the same run made in this process without a break."""
    study = slurm_study
    config = ("--checkpoint", "30", "--job", reference_train, "--count", "8", "--batch", "1", "--sampler", "ddpm",
              "--steps", "100", "--seed", "21", "--device", "cpu")
    job, sid, script = submit(slurm, study, "sample", *config, "--run", "interrupted")
    header = script.read_text().split("set -u")[0]
    assert script.name == "sample.sbatch" and "cspine-tui sample --sbatch" in header and "train" not in header
    show = context(study, job, sid, slurm)

    def done() -> int:
        status = runner.read_json(runner.run_dir(study, job) / "status.json") or {}
        return int(status.get("done") or 0) if status.get("state") == "running" else 0

    wait_until(lambda: done() >= 1, 150, f"job {job} to sample a block", show)
    slurm.client("scancel", "-b", "-s", "USR1", str(sid))
    slurm.wait_job(sid, lambda i: i.get("Restarts") == "1", 60, "be requeued")
    info = slurm.wait_job(sid, ended, 180, "finish after its restart")
    assert (info["JobState"], info["Restarts"]) == ("COMPLETED", "1"), show()
    out = slurm_out(study, job, sid)
    assert f"job {job} is paused" in out and "(restart 1)" in out, out
    assert jobs_listed(study)[job]["state"] == "succeeded"
    log = (runner.run_dir(study, job) / "log.txt").read_text()
    paused = re.search(r"paused: pause requested; (\d+)/8 images done", log)
    assert paused and 1 <= int(paused.group(1)) < 8 and f"job {job} (sample) resumed" in log, log  # mid-run
    # The app refuses a second run with the same seed (it would repeat these images), so the uninterrupted
    # result is recomputed from each image's record: its whole block, from scratch, in this process.
    rows = study.store.query("SELECT id, path FROM synthetic_images WHERE run_id = 'interrupted' ORDER BY idx")
    assert len(rows) == 8 and len({r["id"] for r in rows}) == 8
    for row in rows:
        stored = np.asarray(Image.open(study.abs(row["path"])))
        assert np.array_equal(regenerate(study, row["id"]), stored), row["id"]
