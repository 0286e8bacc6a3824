"""Helpers of the concurrency, full-disk and SIGHUP tests: the real CLI in subprocesses, polling with a
deadline, a study with tiny data, and checks that nothing the database references is partial."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from core.jobs import control

from core.jobs import runner
from core.study import Study
from tests.factories.waiting import wait_until
CLI = [str(Path(sys.executable).with_name("cspine-tui"))]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
# What a database lock or I/O conflict looks like in duckdb's messages and in ours (core/store/database.py).
LOCK_ERRORS = re.compile(r"could not set lock|conflicting lock|lock on file|database is locked|io error|"
                         r"ioexception|locked by another|timed out waiting for the study lock|"
                         r"transactioncontext error|write-write conflict", re.IGNORECASE)
TRAIN_TINY = ["--preset", "tiny", "--fid-every", "0", "--batch-size", "4", "--image-size", "32"]


def cli(*args: str, timeout: float = 240, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True, env=ENV, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"cspine-tui {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def job_id_of(proc: subprocess.CompletedProcess) -> str:
    """The job id: the last stdout line of a job command (the CLI convention)."""
    return proc.stdout.strip().splitlines()[-1]


def start_train(study: Study, steps: int, every: int) -> str:
    return job_id_of(cli("train", "-s", str(study.root), *TRAIN_TINY, "--steps", str(steps),
                         "--checkpoint-every", str(every), "--detach"))


def start_sample(study: Study, count: int, *, run: str, batch: int = 2, steps: int = 2) -> str:
    return job_id_of(cli("sample", "-s", str(study.root), "--checkpoint", "200", "--job", "train-fake",
                         "--count", str(count), "--sampler", "ddim", "--steps", str(steps), "--batch", str(batch),
                         "--run", run, "--seed", "7", "--detach"))


def record(study: Study, job_id: str) -> dict[str, Any]:
    return control.reconcile(study, runner.job_record(study, job_id))


def running_pid(study: Study, job_id: str, timeout: float = 180) -> int:
    """The runner's own pid, once the job records itself running (before that the pid is the launcher's)."""
    def ready():
        job_json = runner.read_json(runner.run_dir(study, job_id) / "job.json") or {}
        return job_json.get("start_ticks") and record(study, job_id)["state"] == "running" and job_json["pid"]
    return int(wait_until(ready, timeout, f"job {job_id} running"))


def wait_end(study: Study, job_id: str, timeout: float = 240) -> dict[str, Any]:
    return control.wait_for(study, job_id, timeout=timeout)


def log_text(study: Study, job_id: str) -> str:
    path = runner.run_dir(study, job_id) / "log.txt"
    return path.read_text(errors="replace") if path.exists() else ""


def temp_files(folder: Path) -> list[Path]:
    """Temporary files and folders that a writer leaves while it works (atomic writes' staging names)."""
    return [p for p in folder.rglob("*") if p.name.startswith((".partial-", ".step-")) or p.name.endswith(".tmp")]


def assert_synthetic_complete(study: Study, run: str) -> list[dict[str, Any]]:
    """Every image row of a run names a whole PNG whose bytes hash to the recorded sha256."""
    import hashlib

    from PIL import Image

    rows = study.store.query("SELECT idx, path, sha256 FROM synthetic_images WHERE run_id = ? ORDER BY idx",
                             [run])
    for row in rows:
        data = study.abs(row["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["sha256"], row
        with Image.open(study.abs(row["path"])) as im:
            im.load()
    return rows


def metrics_lines(study: Study, job_id: str) -> int:
    """Measurements (name, step) in a job's metrics.jsonl: what the metrics table must hold after a sync."""
    names = set()
    for line in runner.read_metrics(study, job_id):
        names |= {(k, line["step"]) for k in line if k not in ("step", "time")}
    return len(names)


def dump(obj: Any) -> str:
    return json.dumps(obj, default=str, indent=1)[:4000]
