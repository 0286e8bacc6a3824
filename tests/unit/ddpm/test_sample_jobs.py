"""Sampling jobs in real processes: the CLI, kill -9 and resume, SIGTERM, 2 CPU processes, sbatch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from core.jobs import control

from core.jobs import runner

from core.ddpm import synthetic
from core.ddpm.sampling import sample_params
from tests.factories.waiting import HANG_S

CLI = [sys.executable, "-m", "cspine_tui.cli"]


def _cli(*args, timeout=300):
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _pixels(study, run_id):
    rows = study.store.query("SELECT idx, path FROM synthetic_images WHERE run_id = ? ORDER BY idx", [run_id])
    return {r["idx"]: np.asarray(Image.open(study.abs(r["path"]))) for r in rows}


def _reference(study, count, **kw):
    params = sample_params(study, checkpoint=200, count=count, run="r", **kw)
    record = runner.run_job(study, runner.create_job(study, "sample", params))
    assert record["state"] == "succeeded", record["error"]
    return _pixels(study, "r")


def _wait_rows(study, run_id, at_least, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if study.store.scalar("SELECT count(*) FROM synthetic_images WHERE run_id = ?", [run_id]) >= at_least:
            return
        time.sleep(0.05)
    raise TimeoutError(f"fewer than {at_least} images after {timeout} s")


SLOWISH = {"sampler": "ddpm", "steps": 30, "batch": 2, "seed": 9}


def test_cli_sample_json_names_the_job_and_jobs_json_gives_the_folder(sample_study):
    out = _cli("sample", "--study", sample_study.root, "--checkpoint", 200, "--count", 3, "--sampler", "unipc",
               "--steps", 4, "--seed", 1, "--run", "cli", "--json")
    assert out.returncode == 0, out.stderr
    import json

    job_id = json.loads(out.stdout)["job"]  # one document, the job's id in it
    assert job_id.startswith("sample-")
    listed = _cli("jobs", "--study", sample_study.root, "--json", "--kind", "sample")
    rows = json.loads(listed.stdout)
    assert rows[0]["id"] == job_id and rows[0]["state"] == "succeeded"
    assert rows[0]["output"] == str((sample_study.synthetic_dir / "cli").resolve())
    assert len(list((sample_study.synthetic_dir / "cli").glob("*.png"))) == 3
    runs = json.loads(_cli("runs", "--study", sample_study.root, "--json").stdout)
    assert runs[0]["id"] == "cli" and runs[0]["images"] == 3 and runs[0]["sampler"] == "unipc"


def _main(capsys, *args):
    from cspine_tui.cli.main import main

    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_errors_are_one_line(sample_study, capsys):
    rc, _out, err = _main(capsys, "sample", "--study", sample_study.root, "--checkpoint", 12345, "--count", 3)
    assert rc == 2
    assert err.strip().startswith("error: no checkpoint at step 12345") and "\n" not in err.strip()


@pytest.mark.slow
def test_kill_9_then_resume_gives_the_uninterrupted_images(sample_study, twin_study):
    reference = _reference(twin_study, 10, **SLOWISH)
    params = sample_params(sample_study, checkpoint=200, count=10, run="r", **SLOWISH)
    job_id = runner.create_job(sample_study, "sample", params)
    pid = runner.start_detached(sample_study, job_id)
    _wait_rows(sample_study, "r", 2)
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + HANG_S
    while control.reconcile(sample_study, runner.job_record(sample_study, job_id))["state"] != "failed":
        assert time.monotonic() < deadline, "the killed job was not recognised as dead"
        time.sleep(0.05)
    folder = sample_study.synthetic_dir / "r"
    for png in folder.glob("*.png"):  # whatever the kill left is whole
        Image.open(png).load()
    record = runner.run_job(sample_study, job_id)
    assert record["state"] == "succeeded", record["error"]
    assert sorted(p.name for p in folder.iterdir()) == [f"{i:06d}.png" for i in range(10)]
    got = _pixels(sample_study, "r")
    assert got.keys() == reference.keys() and all(np.array_equal(got[i], reference[i]) for i in got)
    assert sample_study.store.scalar("SELECT count(*) FROM synthetic_images") == 10


@pytest.mark.slow
def test_sigterm_pauses_between_batches_and_resume_finishes(sample_study):
    params = sample_params(sample_study, checkpoint=200, count=10, run="r", **SLOWISH)
    job_id = runner.create_job(sample_study, "sample", params)
    pid = runner.start_detached(sample_study, job_id)
    _wait_rows(sample_study, "r", 2)
    os.kill(runner.job_record(sample_study, job_id)["pid"] or pid, signal.SIGTERM)
    record = control.wait_for(sample_study, job_id, timeout=120)
    assert record["state"] == "paused" and "SIGTERM" in record["error"]
    n = len(synthetic.done_indices(sample_study, "r"))
    assert n % 2 == 0 and 2 <= n <= 10  # whole blocks only
    resumed = _cli("resume", "--study", sample_study.root, job_id)
    assert resumed.returncode == 0, resumed.stderr
    assert runner.job_record(sample_study, job_id)["state"] == "succeeded"
    assert synthetic.done_indices(sample_study, "r") == set(range(10))


def test_two_cpu_processes_make_the_images_one_process_makes(sample_study, twin_study):
    kw = {"sampler": "ddpm", "steps": 6, "batch": 2, "seed": 4}
    reference = _reference(twin_study, 7, **kw)
    out = _cli("sample", "--study", sample_study.root, "--checkpoint", 200, "--count", 7, "--sampler", "ddpm",
               "--steps", 6, "--batch", 2, "--seed", 4, "--run", "r", "--num-processes", 2, "--device", "cpu",
               timeout=400)
    assert out.returncode == 0, out.stderr[-2000:]
    job_id = out.stdout.strip().splitlines()[-1]
    record = runner.job_record(sample_study, job_id)
    assert record["state"] == "succeeded" and record["result"]["processes"] == 2
    got = _pixels(sample_study, "r")
    assert got.keys() == reference.keys() == set(range(7))
    assert all(np.array_equal(got[i], reference[i]) for i in got)
    # Both ranks worked, and only rank 0 wrote rows: one per image.
    assert sample_study.store.scalar("SELECT count(*) FROM synthetic_images") == 7
    assert "2 process(es)" in "\n".join(control.tail_log(sample_study, job_id, 50))


def test_sbatch_writes_a_script_and_leaves_the_job_queued(sample_study, capsys):
    rc, out, err = _main(capsys, "sample", "--study", sample_study.root, "--checkpoint", 200, "--count", 3,
                         "--sbatch", "--sbatch-time", "02:00:00")
    assert rc == 0, err
    job_id = out.strip().splitlines()[-1]
    record = runner.job_record(sample_study, job_id)
    assert record["state"] == "queued"
    scripts = list(runner.run_dir(sample_study, job_id).glob("*.sbatch"))
    assert len(scripts) == 1
    text = scripts[0].read_text()
    assert "#SBATCH --time=02:00:00" in text and "#SBATCH --signal=B:USR1@" in text and job_id in text


@pytest.mark.slow
def test_detached_sample_runs_to_the_end(sample_study):
    out = _cli("sample", "--study", sample_study.root, "--checkpoint", 200, "--count", 2, "--sampler", "ddim",
               "--steps", 3, "--run", "bg", "--detach")
    assert out.returncode == 0, out.stderr
    job_id = out.stdout.strip().splitlines()[-1]
    record = control.wait_for(sample_study, job_id, timeout=180)
    assert record["state"] == "succeeded", record["error"]
    assert synthetic.done_indices(sample_study, "bg") == {0, 1}
