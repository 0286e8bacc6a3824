"""A full disk during a checkpoint and during sampling (slow).

The disk is simulated by a file-size limit (RLIMIT_FSIZE, ``ulimit -f``) set with ``prlimit`` on the running
job's process once it has done some good work, so that its next big write fails with EFBIG the way a full
disk fails with ENOSPC (Python ignores SIGXFSZ, and core.jobs.runner.main says so explicitly). The limit also makes
the database file unwritable for that process, as a full disk would: the job must then leave its end state in
status.json, which every reader adopts (core.jobs.control.reconcile).

Decision: the job ends ``failed``, not ``paused``. A pause is a clean stop that a batch script requeues and a
multi-process launcher treats as success; a full disk needs a person to free space first, so the job fails
with one line naming the file and the command to resume; ``resume`` accepts failed jobs.
"""

from __future__ import annotations

import re
import resource
from pathlib import Path

import pytest

from core.jobs import runner
from core.ddpm.networks import load_unet
from core.study import Study
from core.ddpm.checkpoints import complete_checkpoints
from tests.factories.sample import make_checkpoint
from tests.factories.train import add_real_images
from tests.reliability import stress

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not hasattr(resource, "prlimit"), reason="needs prlimit")]

ONE_LINE = r"^disk full writing {path}: free space and run `cspine-tui resume {job}`$"


def _fill_disk(pid: int, limit: int) -> None:
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (limit, limit))


def test_full_disk_during_a_checkpoint_fails_cleanly_and_resumes(tmp_path: Path) -> None:
    study = Study.create(tmp_path / "study", preset="tiny")
    add_real_images(study, n=12)
    job = stress.start_train(study, steps=4, every=2)
    pid = stress.running_pid(study, job)
    stress.wait_until(lambda: study.store.scalar("SELECT count(*) FROM checkpoints WHERE job_id = ? AND step = 2",
                                                 [job]), 240, "the first checkpoint")
    # Far below a checkpoint's weights (MBs), above the job's small files (status.json, log.txt, metrics).
    _fill_disk(pid, 256 * 1024)
    end = stress.wait_end(study, job)
    run = runner.run_dir(study, job)
    assert end["state"] == "failed", (end, stress.log_text(study, job))
    assert re.match(ONE_LINE.format(path=rf"runs/{job}/checkpoints/step-4", job=job), end["error"]), end["error"]
    assert "disk full writing" in stress.log_text(study, job)  # the log says it too, without a traceback
    assert "Traceback" not in stress.log_text(study, job)
    # The last good checkpoint is intact and loadable; nothing partial is left or referenced.
    assert not stress.temp_files(run), stress.temp_files(run)
    assert [s for s, _ in complete_checkpoints(run)] == [2]
    rows = study.store.query("SELECT step, path FROM checkpoints WHERE job_id = ? AND NOT deleted", [job])
    assert [r["step"] for r in rows] == [2]
    load_unet(study.abs(rows[0]["path"]))
    # Free space (a new process has no limit): resume finishes from step 2.
    resumed = stress.cli("resume", "-s", str(study.root), job)
    assert stress.job_id_of(resumed) == job
    done = runner.job_record(study, job)
    assert done["state"] == "succeeded", done
    assert "resumed from step-2" in stress.log_text(study, job)
    assert [s for s, _ in complete_checkpoints(run)] == [2, 4] and not stress.temp_files(run)
    load_unet(run / "checkpoints" / "step-4")


def test_full_disk_during_sampling_fails_cleanly_and_resumes(tmp_path: Path) -> None:
    study = Study.create(tmp_path / "study", preset="tiny")
    make_checkpoint(study, image_size=64)  # 64 px noise-like images: a few KB each, above the limit
    job = stress.start_sample(study, 12, run="full", batch=2)
    pid = stress.running_pid(study, job)
    stress.wait_until(lambda: study.store.scalar("SELECT count(*) FROM synthetic_images WHERE run_id = 'full'")
                      >= 2, 240, "the first images")
    folder = study.root / "images" / "synthetic" / "full"
    smallest = min(p.stat().st_size for p in folder.glob("*.png"))
    limit = 2048
    assert smallest > limit, f"images of {smallest} bytes do not reach the {limit}-byte limit"
    _fill_disk(pid, limit)
    end = stress.wait_end(study, job)
    assert end["state"] == "failed", (end, stress.log_text(study, job))
    assert re.match(ONE_LINE.format(path=re.escape(str(folder.resolve())) + r"/\S+\.png", job=job),
                    end["error"]), end["error"]
    done_before = stress.assert_synthetic_complete(study, "full")
    assert 2 <= len(done_before) < 12
    assert not stress.temp_files(folder), stress.temp_files(folder)
    assert sorted(p.name for p in folder.glob("*.png")) >= sorted(Path(r["path"]).name for r in done_before)
    resumed = stress.cli("resume", "-s", str(study.root), job)
    assert stress.job_id_of(resumed) == job
    assert runner.job_record(study, job)["state"] == "succeeded"
    rows = stress.assert_synthetic_complete(study, "full")
    assert [r["idx"] for r in rows] == list(range(12))
    assert {r["sha256"] for r in rows} >= {r["sha256"] for r in done_before}  # what was done stays as it was
    assert not stress.temp_files(folder)
