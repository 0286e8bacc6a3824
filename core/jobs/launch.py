"""Starting jobs: the one way every screen and command starts, resumes and runs a job.

``launch(study, kind, params, detach=...)`` creates the job and runs it; ``start(study, job_id, detach=...)``
runs one that exists (queued, or paused or failed: it resumes where it stopped). The launcher is chosen by the
job's kind (``core.jobs.registry``):

* One process runs ``python -m core.jobs.runner run --study S JOB`` (core/jobs/runner.py): detached (its own
  session, surviving the terminal and the TUI) or, in the foreground, in this very process.
* N processes (a multiprocess kind whose params ask for more than one) run the same module under
  ``accelerate launch --multi_gpu --num_processes N`` (DDP: NCCL on GPUs, gloo on CPUs where the runner passes
  ``cpu=True`` and ``ACCELERATE_USE_CPU`` is set, see docs/reference/cluster.md). Rank 0 does the bookkeeping;
  every rank agrees on stopping. The rendezvous port is picked free at each (re)launch, so two runs on one
  machine do not collide. In the foreground the launcher is a subprocess followed through status.json.
* ``sbatch=SbatchOptions(...)`` writes ``runs/<job>/<kind>.sbatch`` instead of running anything: it requests
  the GPUs (or CPU cores), asks Slurm for ``USR1`` some minutes before the time limit
  (``--signal=B:USR1@N``), and its trap asks the job to pause (``runs/<job>/pause``), waits for the checkpoint,
  and requeues itself when the job ended paused; ``--open-mode=append`` keeps the output of every restart. Each
  restart runs the same command, which resumes from the newest checkpoint. A TERM from ``scancel`` cancels the
  job; one that ends the allocation for another reason (time limit, preemption) pauses it. Tested against a
  real Slurm in tests/cluster/.

``job_action`` is what the screens' pause/cancel/resume keys call.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import CspineError
from core.jobs import control, registry, runner
from core.jobs.runner import ProgressCallback
from core.study import Study


@dataclass(frozen=True)
class SbatchOptions:
    """A Slurm script instead of a run: one GPU per process of the job (or one CPU core each with `cpu`)."""

    cpu: bool = False
    time_limit: str = "24:00:00"
    signal_lead_s: int = 300
    partition: str | None = None


@dataclass
class Launched:
    """What `launch` or `start` did: the job's id, and the final record (foreground), the pid (detached) or
    the Slurm script (sbatch)."""

    job_id: str
    record: dict[str, Any] | None = None
    pid: int | None = None
    sbatch: Path | None = None


def launch(study: Study, kind: str, params: dict[str, Any], *, detach: bool, argv: list[str] | None = None,
           sbatch: SbatchOptions | None = None, on_progress: ProgressCallback | None = None) -> Launched:
    """Create a job of `kind` and run it: detached (returns at once with its pid), in the foreground (returns
    when it ends, reporting progress to `on_progress`), or not at all but as a Slurm script (`sbatch`)."""
    if sbatch is not None:  # a bad request fails before the job exists
        _check_sbatch(registry.num_processes(kind, params), sbatch.signal_lead_s)
    job_id = runner.create_job(study, kind, params, argv=argv)
    if sbatch is not None:
        script = write_sbatch(study, job_id, gpus=registry.num_processes(kind, params), cpu=sbatch.cpu,
                              time_limit=sbatch.time_limit, signal_lead_s=sbatch.signal_lead_s,
                              partition=sbatch.partition)
        return Launched(job_id, sbatch=script)
    return _run(study, job_id, detach=detach, on_progress=on_progress)


def start(study: Study, job_id: str, *, detach: bool, on_progress: ProgressCallback | None = None) -> Launched:
    """Run a job that exists already: a queued one (written by --sbatch, say) or a paused or failed one, which
    resumes where it stopped; with the launcher its kind and params ask for."""
    record = control.resumable_record(study, job_id)
    return _run(study, record["id"], detach=detach, on_progress=on_progress)


def _run(study: Study, job_id: str, *, detach: bool, on_progress: ProgressCallback | None) -> Launched:
    if detach:
        return Launched(job_id, pid=runner.start_detached(study, job_id, launch_command(study, job_id)))
    record = runner.job_record(study, job_id)
    if registry.num_processes(record["kind"], record["params"]) == 1:  # one process: this one
        return Launched(job_id, record=runner.run_job(study, job_id, foreground=True, on_progress=on_progress))
    return Launched(job_id, record=run_launcher(study, job_id, launch_command(study, job_id),
                                                on_progress=on_progress))


def job_action(study: Study, job_id: str, action: str) -> str:
    """Pause, cancel or resume (detached) a job, as the screens' keys do; returns a one-line message."""
    if action == "pause":
        record = control.request_pause(study, job_id)
        return f"pausing {record['id']}: it stops at its next safe point, resumable"
    if action == "cancel":
        return f"cancel requested for {job_id} ({control.cancel_job(study, job_id)['state']})"
    if action == "resume":
        launched = start(study, job_id, detach=True)
        return f"resumed {launched.job_id} in the background (pid {launched.pid})"
    raise ValueError(f"unknown job action {action!r}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cuda_available() -> bool:
    try:
        import torch  # here, not at the top: only a multi-process launch on an unstated device needs torch

        return torch.cuda.is_available()
    except ImportError:  # pragma: no cover - torch is a dependency
        return False


def launch_command(study: Study, job_id: str, num_processes: int | None = None, *,
                   port: int | None = None, cpu: bool | None = None) -> list[str]:
    """The command that runs (or resumes) a job: one process, or N through accelerate launch with a fresh
    rendezvous port unless `port` is given (a Slurm script's fixed one)."""
    record = runner.job_record(study, job_id)
    n = int(num_processes or registry.num_processes(record["kind"], record["params"]))
    if n <= 1:
        return runner.job_command(study, record["id"])
    base = ["-m", "core.jobs.runner", "run", "--study", str(study.root.resolve()), record["id"]]
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(n),
                "--num_machines", "1", "--dynamo_backend", "no", "--main_process_port", str(port or free_port())]
    if (not _cuda_available()) if cpu is None else cpu:
        launcher = ["env", "ACCELERATE_USE_CPU=true", *launcher, "--mixed_precision", "no"]
    return [*launcher, *base]


def run_launcher(study: Study, job_id: str, command: list[str], *, on_progress: ProgressCallback | None = None,
                 poll_s: float = 0.5) -> dict[str, Any]:
    """Run a launcher subprocess in the foreground, reporting status.json until it exits; the final record."""
    folder = runner.run_dir(study, job_id)
    job_json = runner.read_json(folder / "job.json") or {}
    runner.write_json_atomic(folder / "job.json", {**job_json, "command": command})
    with open(folder / "log.txt", "a") as log:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        while proc.poll() is None:
            status = control.job_status(study, job_id)
            if on_progress and status.get("total"):
                fraction = status.get("progress") or 0.0
                on_progress(fraction * status["total"], status["total"], str(status.get("message") or ""))
            time.sleep(poll_s)
    except KeyboardInterrupt:
        (folder / "pause").touch()  # every rank sees it at its next step and the job pauses
        proc.wait()
    return settle_after_launcher(study, job_id, proc.returncode)


def settle_after_launcher(study: Study, job_id: str, returncode: int) -> dict[str, Any]:
    """After the launcher exits: a job rank 0 never finished (launcher error, crash) is recorded failed."""
    record = runner.job_record(study, job_id)
    if record["state"] in runner.ACTIVE_STATES:
        record = control.reconcile(study, record)
    if record["state"] in runner.ACTIVE_STATES:  # never started: the launcher itself failed
        tail = " | ".join(control.tail_log(study, job_id, 3))
        error = f"the launcher exited with code {returncode} before the job started: {tail}"
        study.store.execute("UPDATE jobs SET state = 'failed', error = ? WHERE id = ?", [error, job_id])
        record = runner.job_record(study, job_id)
    return record


SBATCH_TEMPLATE = """#!/bin/bash
#SBATCH --job-name=cspine-{kind}-{short}
#SBATCH --nodes=1
#SBATCH --ntasks=1
{resources}
#SBATCH --time={time}
#SBATCH --signal=B:USR1@{lead}
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output={run}/slurm-%j.out
{partition}
# Written by `cspine-tui {kind} --sbatch` for job {job}. Submit with: sbatch {script}
# Slurm sends USR1 to this script {lead} s before the time limit: the job is asked to checkpoint and pause,
# and the script requeues itself; each (re)start resumes from the newest checkpoint of runs/{job}/.
# `scancel` sends TERM: the job stops at its next safe point and is recorded cancelled. A TERM that ends the
# allocation for another reason (time limit, preemption) leaves it paused: resume it or submit this again.
set -u
cd {cwd}
RUN={run}
CHILD=""
STOPPING=""

job_state() {{
    {python} -c 'import json, sys; print(json.load(open(sys.argv[1])).get("state", ""))' "$RUN/status.json"
}}

wait_child() {{  # a signal interrupts `wait`: wait again until the job's process has really ended
    while [ -n "$CHILD" ] && kill -0 "$CHILD" 2>/dev/null; do wait "$CHILD"; done
}}

on_usr1() {{
    [ -n "$STOPPING" ] && return
    STOPPING=usr1  # the TERM that `scontrol requeue` sends this script is ours, not a cancel
    echo "$(date +%T) USR1: asking job {job} to checkpoint and pause"
    touch "$RUN/pause"
    wait_child
    state=$(job_state)
    echo "$(date +%T) job {job} is $state"
    if [ "$state" = "paused" ]; then
        scontrol requeue "$SLURM_JOB_ID"
    fi
    exit 0
}}

slurm_field() {{  # one field of `scontrol show job` for this job
    printf '%s\\n' "$SLURM_INFO" | grep -o " $1=[^ ]*" | head -n 1 | cut -d= -f2
}}

on_term() {{
    [ -n "$STOPPING" ] && return
    STOPPING=term
    # scancel and the end of an allocation both send TERM (to the job too); Slurm tells them apart: a cancel
    # leaves no Reason (a time limit says TimeLimit, a preemption Preempted) and no new restart (a requeue).
    SLURM_INFO=$(timeout 20 scontrol show job -o "$SLURM_JOB_ID" 2>/dev/null)
    slurm_state=$(slurm_field JobState)
    why=$(slurm_field Reason)
    cancelled=""
    if [ "$slurm_state" = "CANCELLED" ] || {{ [ "$slurm_state" = "COMPLETING" ] && [ "$why" = "None" ] \\
            && [ "$(slurm_field Restarts)" = "${{SLURM_RESTART_COUNT:-0}}" ]; }}; then
        cancelled=yes
        echo "$(date +%T) TERM: the Slurm job was cancelled; cancelling job {job}"
        touch "$RUN/cancel"
    else
        echo "$(date +%T) TERM (Slurm job ${{slurm_state:-unknown}}, reason ${{why:-unknown}}): asking job {job} to" \\
            "checkpoint and pause"
        touch "$RUN/pause"
    fi
    [ -n "$CHILD" ] && kill -TERM "$CHILD" 2>/dev/null
    wait_child
    state=$(job_state)
    if [ -n "$cancelled" ] && [ "$state" = "paused" ]; then
        # Slurm's TERM reached the job before the cancel marker did: record what the user asked for.
        {python} -m cspine_tui cancel {job} --study {study} && state=cancelled
    fi
    echo "$(date +%T) job {job} is $state"
    exit 143
}}
trap on_usr1 USR1
trap on_term TERM

echo "$(date +%T) starting job {job} on $(hostname) (restart ${{SLURM_RESTART_COUNT:-0}})"
{command} &
CHILD=$!
wait "$CHILD"
rc=$?
wait "$CHILD" 2>/dev/null
exit $rc
"""


def _check_sbatch(processes: int, signal_lead_s: int) -> None:
    if processes < 1:
        raise CspineError("--sbatch needs at least one process (--num-processes N asks for N GPUs, or N cores "
                          "with --sbatch-cpu)")
    if signal_lead_s < 30:
        raise CspineError("the USR1 lead must be at least 30 s: Slurm checks time limits every 30 s")


def write_sbatch(study: Study, job_id: str, *, gpus: int, cpu: bool = False, time_limit: str = "24:00:00",
                 signal_lead_s: int = 300, partition: str | None = None, cpus_per_gpu: int = 8) -> Path:
    """Write runs/<job>/<kind>.sbatch for a train or sample job and return its path (the job stays queued
    until Slurm starts it). `gpus` processes, one GPU each; with `cpu` they run on that many CPU cores of a
    CPU-only node instead (no GPU requested, gloo between processes)."""
    _check_sbatch(gpus, signal_lead_s)
    record = runner.job_record(study, job_id)
    folder = runner.run_dir(study, record["id"]).resolve()
    port = 29500 + int(hashlib.sha256(record["id"].encode()).hexdigest(), 16) % 1000
    command = launch_command(study, record["id"], gpus, port=port, cpu=cpu)
    resources = f"#SBATCH --cpus-per-task={gpus}" if cpu else \
        f"#SBATCH --gres=gpu:{gpus}\n#SBATCH --cpus-per-task={cpus_per_gpu * gpus}"
    script = folder / f"{record['kind']}.sbatch"
    script.write_text(SBATCH_TEMPLATE.format(
        kind=record["kind"], short=record["id"][-9:], resources=resources, time=time_limit, lead=signal_lead_s,
        run=shlex.quote(str(folder)), partition=f"#SBATCH --partition={partition}" if partition else "",
        job=record["id"], script=shlex.quote(str(script)), cwd=shlex.quote(str(Path.cwd().resolve())),
        python=shlex.quote(sys.executable), study=shlex.quote(str(study.root.resolve())),
        command=shlex.join(command)))
    script.chmod(0o700)
    job_json = runner.read_json(folder / "job.json") or {}
    runner.write_json_atomic(folder / "job.json", {**job_json, "command": command, "sbatch": str(script)})
    return script
