"""Jobs: every long operation of the engine runs as a job with its own folder ``runs/<job-id>/``.

A job is a row in the ``jobs`` table plus files the job owns (it never holds the database open):

    job.json       what was asked (kind, params, argv) and where it runs (pid + /proc start time, host)
    status.json    state, progress, step, message, heartbeat; replaced atomically
    log.txt        the job's log
    metrics.jsonl  one complete JSON line per measurement (ingested idempotently by sync_metrics)
    cancel         present when a user asked to cancel
    pause          present when a user or a batch-scheduler script asked the job to pause at a safe point

A job runs in the foreground (``run_job``) or detached (``start_detached``: new session, stdin from
/dev/null, output to log.txt) so it survives SSH drops and the TUI closing. SIGTERM/SIGUSR1/SIGINT (a user,
or a batch scheduler's pre-timeout signal) and ``--time-limit`` ask the runner to stop at its next safe point;
it saves its state and the job ends ``paused``, resumable with ``resume``. A job whose process died is
recognised (pid reuse included, by comparing /proc start times) and shown as failed.

Runners are plain functions ``run(ctx: JobContext) -> dict | None`` registered by import path in
``core.jobs.registry``, so listing jobs never imports torch. Watching and controlling jobs from outside (list,
reconcile, pause, cancel, wait, log tail) lives in ``core.jobs.control``; starting and resuming them, in one or
N processes or through Slurm, in ``core.jobs.launch``.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from core.disk_errors import disk_full_path, resume_hint
from core.errors import CspineError
from core.files import write_bytes_atomic
from core.jobs import registry
from core.study import Study

STATES = ("queued", "running", "paused", "succeeded", "failed", "cancelled")
ACTIVE_STATES = ("queued", "running")
HEARTBEAT_S = 5.0
STATUS_MIN_INTERVAL_S = 0.5

# (done, total, message); `done` may be fractional: whole units plus the share of the unit in progress.
ProgressCallback = Callable[[float, int, str], None]


class JobPaused(Exception):
    """Raised by a runner that stopped at a safe point because it was asked to (signal or time limit)."""


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_json_atomic(path: Path, data: Any) -> None:
    write_bytes_atomic(path, json.dumps(data, default=str).encode())


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def process_start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[19])


def process_alive(pid: int | None, start_ticks: int | None) -> bool:
    if not pid:
        return False
    ticks = process_start_ticks(pid)
    if ticks is None:
        return False
    if start_ticks is not None and ticks != start_ticks:
        return False  # the pid was reused by another process
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (FileNotFoundError, IndexError):
        return False


def is_main_process() -> bool:
    """False on the non-zero ranks of a multi-process (accelerate) job, which leave bookkeeping to rank 0."""
    return int(os.environ.get("RANK", "0")) == 0


def run_dir(study: Study, job_id: str) -> Path:
    return study.runs_dir / job_id


def requested_stop(folder: Path) -> str | None:
    """What a user (or a batch script) asked the job in `folder` to do at its next safe point: "cancel",
    "pause", or None. The files stay until the job's next run begins."""
    if (folder / "cancel").exists():
        return "cancel"
    if (folder / "pause").exists():
        return "pause"
    return None


# ---------------------------------------------------------------------------------------------------
# Creating and recording jobs


def create_job(study: Study, kind: str, params: dict[str, Any], argv: list[str] | None = None) -> str:
    registry.job_kind(kind)  # an unknown kind fails before anything is written
    job_id = f"{kind}-{datetime.now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    folder = run_dir(study, job_id)
    folder.mkdir(parents=True)
    write_json_atomic(folder / "job.json", {
        "id": job_id, "kind": kind, "params": params, "argv": argv or [], "created_at": now_iso(),
    })
    write_json_atomic(folder / "status.json", {"state": "queued", "updated_at": now_iso()})
    study.store.execute(
        "INSERT INTO jobs (id, kind, state, params, argv) VALUES (?, ?, 'queued', ?, ?)",
        [job_id, kind, json.dumps(params), json.dumps(argv or [])],
    )
    return job_id


def job_record(study: Study, job_id: str) -> dict[str, Any]:
    row = study.store.query_one("SELECT * FROM jobs WHERE id = ?", [job_id])
    if row is None:
        matches = study.store.column("SELECT id FROM jobs WHERE id LIKE ? ORDER BY id", [f"%{job_id}%"])
        if len(matches) == 1:
            return job_record(study, matches[0])
        hint = f"; did you mean {', '.join(matches[:5])}?" if matches else ""
        raise CspineError(f"no job {job_id!r} in study {study.root}{hint} (see `cspine-tui jobs`)")
    row["params"] = json.loads(row["params"]) if row["params"] else {}
    row["argv"] = json.loads(row["argv"]) if row["argv"] else []
    row["result"] = json.loads(row["result"]) if row["result"] else None
    return row


def set_state(study: Study, job_id: str, state: str, **columns: Any) -> None:
    sets = ["state = ?"]
    values: list[Any] = [state]
    for key, value in columns.items():
        sets.append(f"{key} = ?")
        values.append(json.dumps(value) if key in ("result", "params") else value)
    study.store.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id = ?", [*values, job_id])


# ---------------------------------------------------------------------------------------------------
# The context a runner works with


@dataclass
class JobContext:
    study: Study
    job_id: str
    kind: str
    params: dict[str, Any]
    foreground: bool = True
    on_progress: ProgressCallback | None = None
    resumed: bool = False
    # status.json as the job's previous run left it ({} on a first run): a runner carries totals over the
    # whole job from it (a rate over running time only, never the time the job sat paused between runs).
    before: dict[str, Any] = field(default_factory=dict)
    _stop_reason: str | None = None
    _started: float = field(default_factory=time.monotonic)
    _status: dict[str, Any] = field(default_factory=dict)
    _last_status_write: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def dir(self) -> Path:
        return run_dir(self.study, self.job_id)

    @property
    def is_main(self) -> bool:
        return is_main_process()

    # -- stopping ------------------------------------------------------------------------------
    def request_stop(self, reason: str) -> None:
        self._stop_reason = self._stop_reason or reason

    @property
    def cancel_requested(self) -> bool:
        return requested_stop(self.dir) == "cancel"

    def should_stop(self) -> bool:
        """True when the runner should save its state and raise JobPaused at its next safe point."""
        limit = self.params.get("time_limit_s")
        if limit and time.monotonic() - self._started >= float(limit):
            self.request_stop(f"time limit of {limit:.0f} s reached")
        if self.cancel_requested:
            self.request_stop("cancelled by the user")
        if (self.dir / "pause").exists():
            self.request_stop("pause requested")
        return self._stop_reason is not None

    @property
    def stop_reason(self) -> str | None:
        return self._stop_reason

    # -- reporting ------------------------------------------------------------------------------
    def log(self, message: str) -> None:
        line = f"{datetime.now().strftime('%H:%M:%S')} {message}"
        if self.is_main:
            with open(self.dir / "log.txt", "a") as fh:
                fh.write(line + "\n")
        if self.foreground and self.on_progress is None:
            print(line, file=sys.stderr, flush=True)

    def progress(self, done: int, total: int, *, step: int | None = None, message: str = "",
                 force: bool = False, partial: float = 0.0, **extra: Any) -> None:
        """Record progress: `done` whole units of `total`, plus `partial` units of work in progress (the steps
        of a sampling block, say), so the fraction moves while a long unit runs. status.json is rewritten at
        most twice a second unless forced."""
        if self.on_progress is not None:
            self.on_progress(done + partial, total, message)
        if not self.is_main:
            return
        with self._lock:
            fraction = min(1.0, (done + partial) / total) if total else None
            self._status.update({"done": done, "total": total, "progress": fraction, "message": message,
                                 **extra})
            if step is not None:
                self._status["step"] = step
            now = time.monotonic()
            if force or now - self._last_status_write >= STATUS_MIN_INTERVAL_S:
                self._write_status_locked()

    def write_status(self, state: str | None = None, **fields: Any) -> None:
        if not self.is_main:
            return
        with self._lock:
            if state:
                self._status["state"] = state
            self._status.update(fields)
            self._write_status_locked()

    def _write_status_locked(self) -> None:
        self._status["updated_at"] = now_iso()
        self._status["heartbeat"] = time.time()
        write_json_atomic(self.dir / "status.json", self._status)
        self._last_status_write = time.monotonic()

    def metric(self, step: int, **values: float | dict) -> None:
        """Append one measurement line to metrics.jsonl (one write() call, so readers see whole lines)."""
        if not self.is_main:
            return
        line = json.dumps({"step": int(step), "time": time.time(), **values}) + "\n"
        fd = os.open(self.dir / "metrics.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


def read_metrics(study: Study, job_id: str) -> list[dict[str, Any]]:
    """All complete lines of a job's metrics.jsonl (a partial last line, from a running writer, is ignored)."""
    path = run_dir(study, job_id) / "metrics.jsonl"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    out = []
    for raw in data[: data.rfind(b"\n") + 1].splitlines():
        try:
            out.append(json.loads(raw))
        except json.JSONDecodeError:
            continue
    return out


def sync_metrics(study: Study, job_id: str) -> int:
    """Ingest a job's metrics.jsonl into the metrics table, idempotently; returns rows written.

    A line is {"step": n, "time": t, "<name>": value | {"value": v, ...details}}.
    """
    rows = []
    for line in read_metrics(study, job_id):
        step = line.get("step")
        for name, value in line.items():
            if name in ("step", "time"):
                continue
            if isinstance(value, dict):
                rows.append([job_id, step, name, value.get("value"), json.dumps(value)])
            elif isinstance(value, (int, float)):
                rows.append([job_id, step, name, float(value), None])
    study.store.executemany(
        "INSERT OR REPLACE INTO metrics (job_id, step, name, value, details) VALUES (?, ?, ?, ?, ?)", rows
    )
    return len(rows)


# ---------------------------------------------------------------------------------------------------
# Running


def run_job(study: Study, job_id: str, *, foreground: bool = True,
            on_progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Run a job in this process until it succeeds, fails, pauses or is cancelled; returns its record."""
    record = job_record(study, job_id)
    if not is_main_process():  # a non-zero rank of a multi-process job: rank 0 does the bookkeeping
        return _run_secondary_rank(study, record, foreground)
    if record["state"] == "running" and process_alive(record["pid"], recorded_start_ticks(study, job_id)):
        raise CspineError(f"job {job_id} is already running (pid {record['pid']})")
    if record["state"] in ("succeeded", "cancelled"):
        raise CspineError(f"job {job_id} has {record['state']}; start a new one instead")
    before = read_json(run_dir(study, job_id) / "status.json") or {}
    ctx = JobContext(study=study, job_id=job_id, kind=record["kind"], params=record["params"],
                     foreground=foreground, on_progress=on_progress,
                     resumed=record["started_at"] is not None, before=before if record["started_at"] else {})
    # A resumed job shows where it stopped until its runner reports again, not an empty bar.
    ctx._status.update({k: ctx.before[k] for k in ("done", "total", "progress", "step") if k in ctx.before})
    (ctx.dir / "cancel").unlink(missing_ok=True)
    (ctx.dir / "pause").unlink(missing_ok=True)
    runner = registry.resolve_runner(record["kind"])

    handlers = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT):
            handlers[sig] = signal.signal(sig, lambda s, _f: ctx.request_stop(f"signal {signal.Signals(s).name}"))

    stop_heartbeat = threading.Event()
    if ctx.is_main:
        pid = os.getpid()
        job_json = read_json(ctx.dir / "job.json") or {}
        job_json.update({"pid": pid, "start_ticks": process_start_ticks(pid), "host": socket.gethostname(),
                         "started_at": now_iso(), "python": sys.executable})
        write_json_atomic(ctx.dir / "job.json", job_json)
        set_state(study, job_id, "running", pid=pid, host=socket.gethostname(),
                   started_at=datetime.now(), ended_at=None, error=None)
        ctx.write_status("running", pid=pid)
        threading.Thread(target=_heartbeat, args=(ctx, stop_heartbeat), daemon=True).start()
        ctx.log(f"job {job_id} ({record['kind']}) {'resumed' if ctx.resumed else 'started'} in pid {pid}")

    state, error, result = "succeeded", None, None
    # On failure: "user" (the user's to fix: a CspineError, a full disk, a path that cannot be read or written)
    # or "crash" (a bug); the CLI exits 2 or 1.
    failure = None
    try:
        result = runner(ctx)
        if ctx.cancel_requested:
            state = "cancelled"
    except JobPaused as exc:
        state = "cancelled" if ctx.cancel_requested else "paused"
        error = str(exc) or ctx.stop_reason
    except Exception as exc:  # noqa: BLE001 - a job records any crash instead of vanishing
        state, failure = "failed", "user"
        full = disk_full_path(exc)
        if full is not None:  # failed, not paused: nothing resumes until someone frees space
            error = resume_hint(job_id, full)
        elif isinstance(exc, CspineError):
            error = str(exc)
        else:
            failure = "user" if isinstance(exc, OSError) else "crash"
            error = f"{type(exc).__name__}: {exc}"
            if ctx.is_main:
                _best_effort(lambda: _append_log(ctx, traceback.format_exc()))
    finally:
        stop_heartbeat.set()
        for sig, old in handlers.items():
            signal.signal(sig, old)

    if not ctx.is_main:
        return job_record(study, job_id)
    # On a full disk any of these writes may fail too: the small files first (a reader adopts the end state
    # from status.json when the database could not take it, see core.jobs.control.reconcile), each on its own.
    _best_effort(lambda: ctx.log(f"job {job_id} {state}" + (f": {error}" if error else "")))
    _best_effort(lambda: ctx.write_status(state, error=error, result=result, failure=failure))
    try:
        set_state(study, job_id, state, ended_at=datetime.now(), error=error, result=result,
                  **({"output": result["output"]} if isinstance(result, dict) and "output" in result else {}))
        return job_record(study, job_id)
    except Exception as exc:  # noqa: BLE001 - the database is on the full disk too
        print(f"job {job_id} {state}: {error}; could not record it in the database ({exc})", file=sys.stderr,
              flush=True)
        return {**record, "state": state, "error": error, "result": result}


def _append_log(ctx: JobContext, text: str) -> None:
    with open(ctx.dir / "log.txt", "a") as fh:
        fh.write(text)


def _best_effort(write: Callable[[], None]) -> None:
    """Run one bookkeeping write; a full disk must not turn a clean failure into a crash."""
    try:
        write()
    except OSError as exc:
        print(f"could not write job bookkeeping: {exc}", file=sys.stderr, flush=True)


def _run_secondary_rank(study: Study, record: dict[str, Any], foreground: bool) -> dict[str, Any]:
    """Run a non-zero rank: no state changes, files or signal-driven bookkeeping; the outcome is local.

    Signals still request a stop, which the runner agrees on with rank 0 at its next step boundary.
    """
    ctx = JobContext(study=study, job_id=record["id"], kind=record["kind"], params=record["params"],
                     foreground=foreground, resumed=True)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT):
            signal.signal(sig, lambda s, _f: ctx.request_stop(f"signal {signal.Signals(s).name}"))
    state, error, result = "succeeded", None, None
    try:
        result = registry.resolve_runner(record["kind"])(ctx)
    except JobPaused as exc:
        state, error = "paused", str(exc)
    except Exception as exc:  # noqa: BLE001 - reported by rank 0; the exit code tells the launcher
        state, error = "failed", f"{type(exc).__name__}: {exc}"
    return {**record, "state": state, "error": error, "result": result}


def _heartbeat(ctx: JobContext, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_S):
        with ctx._lock:
            _best_effort(ctx._write_status_locked)  # a full disk ends the runner, not this thread


def recorded_start_ticks(study: Study, job_id: str) -> int | None:
    """The /proc start time the job's runner recorded in job.json (tells a reused pid apart)."""
    return (read_json(run_dir(study, job_id) / "job.json") or {}).get("start_ticks")


def job_command(study: Study, job_id: str) -> list[str]:
    """The command line that runs a job in a fresh process."""
    return [sys.executable, "-m", "core.jobs.runner", "run", "--study", str(study.root.resolve()), job_id]


def start_detached(study: Study, job_id: str, command: list[str] | None = None) -> int:
    """Start a job in its own process session, surviving the terminal and the TUI; returns its pid."""
    folder = run_dir(study, job_id)
    command = command or job_command(study, job_id)
    job_json = read_json(folder / "job.json") or {}
    write_json_atomic(folder / "job.json", {**job_json, "command": command})
    log = open(folder / "log.txt", "a")
    proc = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True, close_fds=True, cwd=str(Path.cwd()),
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    log.close()
    # Record the launcher pid so the job shows as alive before the runner writes its own.
    study.store.execute("UPDATE jobs SET pid = ?, host = ? WHERE id = ? AND state = 'queued'",
                        [proc.pid, socket.gethostname(), job_id])
    return proc.pid


def selftest_runner(ctx: JobContext) -> dict:
    """A tiny job used by the tests of this module: counts to params['n'], pausing when asked."""
    n = int(ctx.params.get("n", 10))
    state_file = ctx.dir / "count.txt"
    start = int(state_file.read_text()) if state_file.exists() else 0
    for i in range(start, n):
        if ctx.should_stop():
            raise JobPaused(ctx.stop_reason)
        time.sleep(float(ctx.params.get("sleep", 0.0)))
        state_file.write_text(str(i + 1))
        ctx.progress(i + 1, n, step=i + 1)
    return {"counted": n, "output": str(state_file)}


def main(argv: list[str] | None = None) -> int:
    import argparse

    os.umask(0o077)  # a job writes study data: readable by its owner only, like the study folder
    # A file-size limit (ulimit -f) must end in an OSError (EFBIG) the job reports, not kill it by signal.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    parser = argparse.ArgumentParser(prog="python -m core.jobs.runner", description="run one job of a study")
    parser.add_argument("command", choices=["run"])
    parser.add_argument("--study", required=True)
    parser.add_argument("job_id")
    args = parser.parse_args(argv)
    study = Study.open(args.study)
    record = run_job(study, args.job_id, foreground=False)
    # A pause or a cancel is a clean end: a multi-process launcher must not tear down the other ranks.
    return 0 if record["state"] in ("succeeded", "paused", "cancelled") else 1


if __name__ == "__main__":
    # Run through the imported module, so runners and this file share one JobPaused class.
    from core.jobs.runner import main as _main

    sys.exit(_main())
