"""Watching and controlling jobs from outside their process: the CLI, the screens, tests and scripts.

``core.jobs.runner`` creates and runs a job inside its own process; this module is the other side. It reads a
job's live status and log, recognises a job whose process died (``reconcile``), lists jobs, and asks a
job to pause or cancel (files in the job's folder plus a signal). Starting and resuming is ``core.jobs.launch``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from datetime import datetime
from typing import Any

from core.errors import CspineError
from core.jobs.runner import (job_record, process_alive, read_json, recorded_start_ticks, run_dir, set_state,
                              write_json_atomic)
from core.study import Study


def job_status(study: Study, job_id: str) -> dict[str, Any]:
    return read_json(run_dir(study, job_id) / "status.json") or {}


# A job running on another host (a cluster node sharing the study folder) cannot be checked by its pid, which
# means nothing here: it lives while its heartbeat (status.json, rewritten every few seconds) stays fresh.
REMOTE_STALE_S = 120.0


def runs_elsewhere(record: dict[str, Any]) -> bool:
    return bool(record.get("host")) and record["host"] != socket.gethostname()


def _alive(study: Study, record: dict[str, Any]) -> bool:
    if runs_elsewhere(record):
        beat = job_status(study, record["id"]).get("heartbeat")
        return beat is not None and time.time() - float(beat) < REMOTE_STALE_S
    return process_alive(record.get("pid"), recorded_start_ticks(study, record["id"]))


def reconcile(study: Study, record: dict[str, Any]) -> dict[str, Any]:
    """Mark a running job whose process is gone as failed (resumable when its runner can resume)."""
    if record["state"] == "queued":
        return _reconcile_queued(study, record)
    if record["state"] != "running":
        return record
    if _alive(study, record):
        return record
    status = job_status(study, record["id"])
    if _ended_in_this_run(status, record):  # it finished but could not tell the database (a full disk)
        result = status.get("result")
        set_state(study, record["id"], status["state"], ended_at=datetime.now(), error=status.get("error"),
                  result=result, **({"output": result["output"]} if isinstance(result, dict)
                                    and "output" in result else {}))
        record.update(state=status["state"], error=status.get("error"), result=result)
        return record
    where = f" on {record['host']}, silent for over {REMOTE_STALE_S:.0f} s," if runs_elsewhere(record) else ""
    error = f"the job's process (pid {record.get('pid')}){where} died without finishing; resume it with " \
            f"`cspine-tui resume {record['id']}`"
    set_state(study, record["id"], "failed", ended_at=datetime.now(), error=error)
    write_json_atomic(run_dir(study, record["id"]) / "status.json", {**status, "state": "failed", "error": error})
    record.update(state="failed", error=error)
    return record


def _reconcile_queued(study: Study, record: dict[str, Any]) -> dict[str, Any]:
    """A job started detached on this host whose process died before its runner began is failed, not queued."""
    pid = record.get("pid")
    if not pid or record.get("started_at") or record.get("host") != socket.gethostname() \
            or process_alive(pid, None):
        return record  # not launched (sbatch), already begun, launched elsewhere, or still starting
    error = f"the job's process (pid {pid}) died before the job began; resume it with " \
            f"`cspine-tui resume {record['id']}`"
    with study.store.connect() as tx:  # only if still queued: it may have begun (and ended) since `record` was read
        tx.execute("UPDATE jobs SET state = 'failed', ended_at = ?, error = ? WHERE id = ? AND state = 'queued'",
                   [datetime.now(), error, record["id"]])
        marked = tx.scalar("SELECT error FROM jobs WHERE id = ?", [record["id"]]) == error
    if not marked:  # it began in the meantime: what the database says now
        fresh = job_record(study, record["id"])
        return {**record, **{k: fresh[k] for k in record if k in fresh}}
    write_json_atomic(run_dir(study, record["id"]) / "status.json",
                      {**job_status(study, record["id"]), "state": "failed", "error": error})
    record.update(state="failed", error=error)
    return record


def _ended_in_this_run(status: dict[str, Any], record: dict[str, Any]) -> bool:
    """Whether status.json holds an end state the job wrote after the run the database knows of started."""
    if status.get("state") not in ("succeeded", "failed", "paused", "cancelled"):
        return False
    started = record.get("started_at")
    if not isinstance(started, datetime) or not status.get("heartbeat"):
        return False
    return float(status["heartbeat"]) >= started.timestamp()


def list_jobs(study: Study, kind: str | None = None) -> list[dict[str, Any]]:
    """All jobs, newest first, with live status merged in and dead processes recognised."""
    sql = "SELECT * FROM jobs" + (" WHERE kind = ?" if kind else "") + " ORDER BY created_at DESC, id DESC"
    rows = study.store.query(sql, [kind] if kind else None)
    out = []
    for row in rows:
        row["params"] = json.loads(row["params"]) if row["params"] else {}
        row["result"] = json.loads(row["result"]) if row["result"] else None
        row = reconcile(study, row)
        status = job_status(study, row["id"])
        out.append({
            "id": row["id"], "kind": row["kind"], "state": row["state"], "pid": row["pid"],
            "progress": status.get("progress"), "done": status.get("done"), "total": status.get("total"),
            "step": status.get("step"), "message": status.get("message"),
            "heartbeat": status.get("heartbeat"), "output": row["output"] or status.get("output"),
            "error": row["error"], "created_at": str(row["created_at"]),
            "started_at": str(row["started_at"]) if row["started_at"] else None,
            "ended_at": str(row["ended_at"]) if row["ended_at"] else None,
            "params": row["params"], "result": row["result"],
        })
    return out


def cancel_job(study: Study, job_id: str) -> dict[str, Any]:
    record = reconcile(study, job_record(study, job_id))
    job_id = record["id"]
    if record["state"] in ("succeeded", "failed", "cancelled"):
        raise CspineError(f"job {job_id} has already ended ({record['state']})")
    (run_dir(study, job_id) / "cancel").touch()
    if record["state"] == "running":
        # A job on another host is reached by the cancel file alone (its pid means nothing here).
        if record["pid"] and not runs_elsewhere(record):
            _terminate(record["pid"])
    else:  # queued or paused: nothing runs, so the cancel takes effect now
        set_state(study, job_id, "cancelled", ended_at=datetime.now())
        write_json_atomic(run_dir(study, job_id) / "status.json", {**job_status(study, job_id), "state": "cancelled"})
    return job_record(study, job_id)


def _terminate(pid: int) -> None:
    """SIGTERM a local job: its whole process group (detached jobs lead their own), else the process."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def wait_for(study: Study, job_id: str, timeout: float = 60.0, states: tuple[str, ...] = ("succeeded", "failed",
             "paused", "cancelled")) -> dict[str, Any]:
    """Poll until a job reaches one of `states` (used by tests and scripts; never by the TUI loop)."""
    deadline = time.monotonic() + timeout
    while True:
        record = reconcile(study, job_record(study, job_id))
        if record["state"] in states:
            return record
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {record['state']} after {timeout} s")
        time.sleep(0.05)


def tail_log(study: Study, job_id: str, lines: int = 20) -> list[str]:
    path = run_dir(study, job_id) / "log.txt"
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            text = fh.read().decode(errors="replace")
    except FileNotFoundError:
        return []
    return text.splitlines()[-lines:]


def request_pause(study: Study, job_id: str) -> dict[str, Any]:
    """Ask a running job to checkpoint and end paused at its next safe point (resumable)."""
    record = reconcile(study, job_record(study, job_id))
    if record["state"] != "running":
        raise CspineError(f"job {record['id']} is {record['state']}, not running; nothing to pause"
                          + (" (cancel it instead)" if record["state"] == "queued" else ""))
    (run_dir(study, record["id"]) / "pause").touch()
    return record


def resumable_record(study: Study, job_id: str) -> dict[str, Any]:
    """The job's record if it can resume (paused, failed or queued), else a clear error."""
    record = reconcile(study, job_record(study, job_id))
    if record["state"] not in ("paused", "failed", "queued"):
        raise CspineError(f"job {record['id']} is {record['state']}; only paused, failed or queued jobs resume")
    return record
