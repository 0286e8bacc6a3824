"""Helpers of the SIGKILL suite: run work in its own process group, kill the whole group (the job, its
worker pool, its launcher) at a moment a seeded RNG picks, and check what the database references.

A kill moment is anchored on something observable (a job's reported progress, a file appearing) plus a
seeded delay, so every seed lands somewhere in the middle of the work instead of in interpreter start-up
alone; `Moment.hit` records whether the process was still alive when the signal went out.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from core.jobs import control, runner
from core.study import Study
from tests.factories.waiting import wait_until

CLI = [sys.executable, "-m", "cspine_tui.cli"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


# ---------------------------------------------------------------------------------------------------
# Processes


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - a foreign process took the id
        return False
    # Zombies of our own children still count: reap the leader if it is ours.
    try:
        os.waitpid(pgid, os.WNOHANG)
    except ChildProcessError:
        pass
    return _members(pgid) > 0


def _members(pgid: int) -> int:
    """Live (non-zombie) processes of a process group, from /proc."""
    n = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            n += 1
    return n


def kill_group(pgid: int, timeout: float = 30.0) -> None:
    """SIGKILL a whole process group and wait until none of its processes is left (workers included)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    wait_until(lambda: not group_alive(pgid), timeout, f"process group {pgid} gone after SIGKILL")


@dataclass
class Moment:
    """When to kill: once `after` units of progress are reported, plus `delay_s` seconds."""

    seed: int
    after: int
    delay_s: float
    hit: bool | None = None  # set by the killer: was the work still running at the kill?

    @classmethod
    def pick(cls, seed: int, total: int, max_delay_s: float) -> "Moment":
        rng = random.Random(seed)
        return cls(seed=seed, after=rng.randrange(0, max(total, 1)), delay_s=rng.uniform(0.0, max_delay_s))


def kill_job_at(study: Study, job_id: str, pgid: int, moment: Moment, *, timeout: float = 180.0,
                progress: Callable[[], int] | None = None) -> Moment:
    """Wait for the job to report `moment.after` units of progress, sleep the delay, SIGKILL its group."""
    progress = progress or (lambda: int(control.job_status(study, job_id).get("done") or 0))

    def ready() -> bool:
        ended = not group_alive(pgid)
        return ended or progress() >= moment.after

    wait_until(ready, timeout, f"job {job_id} reporting progress {moment.after}")
    time.sleep(moment.delay_s)  # the fault injection itself: the seeded part of the moment
    moment.hit = group_alive(pgid)
    kill_group(pgid)
    return moment


def spawn(args: list[Any], log: Path) -> subprocess.Popen:
    """Run `cspine-tui ARGS` in a new process group with its output in `log` (killable as a group)."""
    fh = open(log, "ab")
    try:
        return subprocess.Popen([*CLI, *map(str, args)], stdin=subprocess.DEVNULL, stdout=fh, stderr=fh,
                                start_new_session=True, env=ENV)
    finally:
        fh.close()


def cli(*args: Any, timeout: float = 300.0) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=ENV)


def start_job(study: Study, kind: str, params: dict[str, Any]) -> tuple[str, int]:
    """Create a job and start it detached (its own session, as `--detach` does); returns (job id, pid)."""
    job_id = runner.create_job(study, kind, params)
    return job_id, runner.start_detached(study, job_id)


def settle_killed(study: Study, job_id: str) -> dict[str, Any]:
    """After the kill: the job is shown as died (not running, not queued) and resumable, or it had finished."""
    record = control.reconcile(study, runner.job_record(study, job_id))
    assert record["state"] in ("failed", "succeeded"), record
    if record["state"] == "failed":
        assert "died" in (record["error"] or ""), record["error"]
    return record


def resume(study: Study, job_id: str, timeout: float = 300.0) -> dict[str, Any]:
    """`cspine-tui resume JOB --study S` in the foreground (a fresh process), then the job's record."""
    out = cli("resume", job_id, "--study", study.root, timeout=timeout)
    record = runner.job_record(study, job_id)
    assert out.returncode == 0 and record["state"] == "succeeded", (out.returncode, record, out.stderr[-2000:])
    assert out.stdout.strip().splitlines()[-1] == job_id  # the CLI convention: the id is the last line
    return record


# ---------------------------------------------------------------------------------------------------
# What the database references is whole


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def decodes(path: Path) -> None:
    from PIL import Image

    with Image.open(path) as im:
        im.load()


def _whole_png(study: Study, rel: str, sha: str | None, what: str) -> None:
    assert ".tmp" not in rel and ".partial" not in rel, f"{what} references a temporary file {rel}"
    path = study.abs(rel)
    assert path.is_file(), f"{what} references {rel}, which does not exist"
    decodes(path)
    if sha and len(sha) == 64:  # fixtures that write rows by hand use placeholder hashes
        assert sha256(path) == sha, f"{what}: {rel} does not hold the recorded content"


def check_study(root: Path) -> dict[str, int]:
    """Open the study afresh and check every invariant a kill must not break; returns row counts."""
    from core.status import study_status

    study = Study.open(root)
    status = study_status(study)  # opens the database, reconciles dead jobs
    for job in control.list_jobs(study):
        if job["state"] == "running":
            assert runner.process_alive(job["pid"], None), f"job {job['id']} shown running with no process"
    with study.store.connect() as tx:
        real = tx.query("SELECT id, path, canonical_sha256 FROM real_images")
        syn = tx.query("SELECT id, path, sha256 FROM synthetic_images")
        ckpts = tx.query("SELECT job_id, step, path FROM checkpoints WHERE NOT deleted")
        packs = tx.query("SELECT id, out_dir FROM quartet_packs")
        items = tx.query("SELECT pack_id, image_file FROM quartet_items")
        audits = tx.query("SELECT id, result FROM audits")
        pair_refs = tx.query("SELECT p.audit_id, p.rank FROM audit_pairs p LEFT JOIN real_images r ON r.id = p.real_id "
                             "LEFT JOIN synthetic_images s ON s.id = p.synthetic_id "
                             "WHERE r.id IS NULL OR s.id IS NULL")
        dup_events = tx.scalar("SELECT count(*) FROM (SELECT job_id, source_path FROM ingest_events "
                               "GROUP BY ALL HAVING count(*) > 1)")
        dup_sources = tx.scalar("SELECT count(*) FROM (SELECT ingest_job, source_path FROM real_images "
                                "GROUP BY ALL HAVING count(*) > 1)")
        orphan_splits = tx.scalar("SELECT count(*) FROM splits s LEFT JOIN real_images r ON r.id = s.image_id "
                                  "WHERE r.id IS NULL")
        imports = tx.query("SELECT id, pack_id, summary FROM rating_imports")
        rater_counts = {r["import_id"]: r["n"] for r in
                        tx.query("SELECT import_id, count(*) AS n FROM raters GROUP BY import_id")}
        orphan_ratings = tx.scalar("SELECT count(*) FROM ratings g LEFT JOIN raters r ON r.id = g.rater_id "
                                   "WHERE r.id IS NULL")
        analyses = tx.query("SELECT id, report_dir FROM analyses")
    for r in real:
        _whole_png(study, r["path"], r["canonical_sha256"], f"real image {r['id'][:12]}")
    for s in syn:
        _whole_png(study, s["path"], s["sha256"], f"synthetic image {s['id']}")
    for c in ckpts:
        _check_checkpoint(study, c)
    files_of: dict[str, list[str]] = {}
    for i in items:
        files_of.setdefault(i["pack_id"], []).append(i["image_file"])
    for p in packs:
        folder = Path(p["out_dir"])
        assert ".tmp" not in folder.name, f"pack {p['id']} references a temporary folder {folder}"
        manifest = json.loads((folder / "pack.json").read_text())
        assert manifest["pack_id"] == p["id"], f"{folder} holds pack {manifest['pack_id']}, not {p['id']}"
        files = files_of.get(p["id"], [])
        assert files and len(files) == len(manifest["items"]), f"pack {p['id']}: items differ from its manifest"
        for name in files:
            decodes(folder / "upload" / "images" / name)
    for a in audits:
        hist = (json.loads(a["result"]) if a["result"] else {}).get("histogram")
        if hist:
            _whole_png(study, hist, None, f"audit {a['id']} histogram")
    assert not pair_refs, f"audit pairs name images the study does not hold: {pair_refs[:3]}"
    assert dup_events == 0, "an ingest job recorded a source file twice in ingest_events"
    assert dup_sources == 0, "an ingest job stored one source file twice"
    assert orphan_splits == 0, "the split names images the study does not hold"
    for imp in imports:
        used = json.loads(imp["summary"])["used"]
        assert rater_counts.get(imp["id"], 0) == used, f"import {imp['id']}: {used} used, " \
                                                       f"{rater_counts.get(imp['id'], 0)} raters stored"
    assert orphan_ratings == 0, "ratings of raters that do not exist"
    for a in analyses:
        assert (Path(a["report_dir"]) / "analysis.json").is_file(), f"analysis {a['id']} has no analysis.json"
    return {"real": len(real), "synthetic": len(syn), "checkpoints": len(ckpts), "packs": len(packs),
            "audits": len(audits), "imports": len(imports), "ratings": int(status["ratings"])}


def _check_checkpoint(study: Study, row: dict[str, Any]) -> None:
    from safetensors import safe_open

    rel = row["path"]
    what = f"checkpoint {row['job_id']} step {row['step']}"
    assert ".tmp" not in rel, f"{what} references a temporary folder {rel}"
    folder = study.abs(rel)
    meta = json.loads((folder / "cspine.json").read_text())
    assert int(meta.get("step", row["step"])) == row["step"], f"{what}: cspine.json says step {meta.get('step')}"
    for sub in ("unet", "unet_ema"):
        weights = folder / sub / "diffusion_pytorch_model.safetensors"
        with safe_open(str(weights), "pt") as fh:  # raises on a truncated or torn file
            for key in fh.keys():
                fh.get_tensor(key)


def stray_temporaries(root: Path) -> list[Path]:
    """Temporary files or folders anywhere in the study (what a killed writer may leave)."""
    out = []
    for p in Path(root).rglob("*"):
        name = p.name
        if name.endswith(".tmp") or ".tmp-" in name or name.startswith(".partial-") or ".tmp." in name:
            out.append(p)
    return out
