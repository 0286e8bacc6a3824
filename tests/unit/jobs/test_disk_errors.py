"""A full disk recognised and reported in one line (fast; the real thing runs in tests/reliability/)."""

from __future__ import annotations

import errno
import json
import os
import time
from datetime import datetime, timedelta

import numpy as np
import pytest

from core.jobs import control

from core.jobs import runner
from core.ddpm import synthetic
from core.disk_errors import DiskFull, disk_full_path, resume_hint, write_failed_for_space


def test_disk_full_is_recognised_through_chains_and_messages(tmp_path) -> None:
    assert disk_full_path(OSError(errno.ENOSPC, "No space left on device", "/x/a.bin")) == "/x/a.bin"
    assert disk_full_path(OSError(errno.EDQUOT, "Disk quota exceeded")) == ""
    try:
        try:
            raise OSError(errno.EFBIG, "File too large")
        except OSError as inner:
            raise RuntimeError("writer failed") from inner
    except RuntimeError as outer:
        assert disk_full_path(outer) == ""
    assert disk_full_path(Exception("Error while serializing: I/O error: File too large (os error 27)")) == ""
    assert disk_full_path(DiskFull("runs/j/checkpoints/step-4")) == "runs/j/checkpoints/step-4"
    assert disk_full_path(OSError(errno.EACCES, "Permission denied")) is None
    assert disk_full_path(RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos")) is None
    assert resume_hint("train-1", "runs/x") == ("disk full writing runs/x: free space and run "
                                                 "`cspine-tui resume train-1`")
    (tmp_path / "small").write_bytes(b"x")
    assert not write_failed_for_space(tmp_path)  # no file-size limit here, and space left


def _fail_fsync(monkeypatch, code: int = errno.ENOSPC) -> None:
    def fsync(_fd):
        raise OSError(code, os.strerror(code))
    monkeypatch.setattr(os, "fsync", fsync)


def test_atomic_writers_leave_no_temporary_file_on_a_full_disk(tmp_path, monkeypatch) -> None:
    _fail_fsync(monkeypatch)
    with pytest.raises(OSError):
        runner.write_json_atomic(tmp_path / "status.json", {"state": "running"})
    with pytest.raises(DiskFull, match=r"disk full writing .*0007\.png"):
        synthetic.write_png_atomic(tmp_path / "0007.png", synthetic.encode_png(np.zeros((8, 8), np.uint8)))
    assert list(tmp_path.iterdir()) == []


def test_a_job_that_hits_a_full_disk_fails_with_one_line(study, monkeypatch) -> None:
    job = runner.create_job(study, "selftest", {"n": 3})
    real_write_text = type(runner.run_dir(study, job)).write_text

    def full(self, data, *a, **k):  # the runner's own state file: the disk is full
        if self.name == "count.txt":
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real_write_text(self, data, *a, **k)
    monkeypatch.setattr(type(runner.run_dir(study, job)), "write_text", full)
    record = runner.run_job(study, job)
    assert record["state"] == "failed"
    assert record["error"] == resume_hint(job, str(runner.run_dir(study, job) / "count.txt"))
    assert "Traceback" not in (runner.run_dir(study, job) / "log.txt").read_text()


def test_reconcile_adopts_the_end_state_a_job_could_not_store(study) -> None:
    """A job that wrote its end state to status.json but not to the database (a full disk) is not shown as
    having died: readers take the state and the error the job wrote."""
    job = runner.create_job(study, "selftest", {"n": 3})
    started = datetime.now() - timedelta(seconds=30)
    runner.set_state(study, job, "running", pid=2**22 + 7, started_at=started)  # a pid that is not alive
    status = {"state": "failed", "error": resume_hint(job, "runs/x.png"), "heartbeat": time.time()}
    (runner.run_dir(study, job) / "status.json").write_text(json.dumps(status))
    record = control.reconcile(study, runner.job_record(study, job))
    assert (record["state"], record["error"]) == ("failed", status["error"])
    assert runner.job_record(study, job)["error"] == status["error"]
    # A status.json left from an earlier run (older than this run's start) is not adopted.
    other = runner.create_job(study, "selftest", {"n": 3})
    runner.set_state(study, other, "running", pid=2**22 + 7, started_at=datetime.now())
    old = {"state": "paused", "error": "pause requested", "heartbeat": time.time() - 3600}
    (runner.run_dir(study, other) / "status.json").write_text(json.dumps(old))
    assert "died without finishing" in control.reconcile(study, runner.job_record(study, other))["error"]
