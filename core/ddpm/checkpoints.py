"""The study's training checkpoints: on disk (complete, resumable, pruned) and in the database (with their
losses and FID, and marked as kept).

A checkpoint ``runs/<job>/checkpoints/step-<N>/`` holds ``state/`` (the full accelerate state for resuming),
``unet/`` and ``unet_ema/`` (online and EMA weights), ``scheduler/`` and ``cspine.json``. Beyond the newest
``keep_last``, a checkpoint is deleted unless it is marked kept, or thinned: with an FID it keeps both networks,
and with ``keep_ema`` (the default of the `paper` preset) it keeps its EMA weights, so that any checkpoint can
be sampled after training, as the paper chose its checkpoints (68k, 80k, 160k) from the loss curves afterwards.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from core.ddpm.networks import network_summary
from core.errors import CspineError
from core.study import Study

CHECKPOINT_PREFIX = "step-"
# A subfolder being deleted is first renamed to this, so no half-deleted network is ever loaded.
DELETING_SUFFIX = ".deleting"


def checkpoint_root(run_folder: Path) -> Path:
    return Path(run_folder) / "checkpoints"


def complete_checkpoints(run_folder: Path) -> list[tuple[int, Path]]:
    out = []
    root = checkpoint_root(run_folder)
    if root.exists():
        for p in root.iterdir():
            if p.name.startswith(CHECKPOINT_PREFIX) and (p / "cspine.json").exists():
                try:
                    out.append((int(p.name[len(CHECKPOINT_PREFIX):]), p))
                except ValueError:
                    continue
    return sorted(out)


def latest_resumable(run_folder: Path) -> tuple[int, Path] | None:
    for step, path in reversed(complete_checkpoints(run_folder)):
        if (path / "state").is_dir():
            return step, path
    return None


def _remove(folder: Path) -> None:
    """Delete a checkpoint's subfolder; the rename comes first so a kill leaves it gone or whole."""
    if folder.exists():
        trash = folder.with_name(f".{folder.name}{DELETING_SUFFIX}")
        shutil.rmtree(trash, ignore_errors=True)
        folder.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)


def prune_checkpoints(study: Study, job_id: str, run_folder: Path, keep_last: int, *,
                      keep_ema: bool = False) -> list[int]:
    """Apply the keep-last-N limit to a training job's checkpoints; returns the steps deleted.

    Older checkpoints lose their training state; those with an FID keep both networks, the others keep their
    EMA weights when ``keep_ema`` and are deleted otherwise. Marked checkpoints are never touched.
    """
    for trash in checkpoint_root(run_folder).glob(f"{CHECKPOINT_PREFIX}*/.*{DELETING_SUFFIX}"):
        shutil.rmtree(trash, ignore_errors=True)  # left by a kill during a deletion
    if keep_last <= 0:
        return []
    old = complete_checkpoints(run_folder)[:-keep_last]
    if not old:
        return []
    rows = study.store.query("SELECT step, kept FROM checkpoints WHERE job_id = ?", [job_id])
    kept = {r["step"] for r in rows if r["kept"]}
    fid_steps = set(study.store.column("SELECT step FROM metrics WHERE job_id = ? AND name = 'fid'", [job_id]))
    deleted = []
    for step, path in old:
        if step in kept:
            continue
        if step in fid_steps:
            _remove(path / "state")
        elif keep_ema and (path / "unet_ema").is_dir():
            _remove(path / "state")
            _remove(path / "unet")
        else:
            deleted.append(step)
    if deleted:  # rows first: a kill in the middle of a deletion must not leave a row naming a half folder
        study.store.executemany("UPDATE checkpoints SET deleted = TRUE WHERE job_id = ? AND step = ?",
                                [[job_id, s] for s in deleted])
    for step, path in old:
        if step in deleted:
            shutil.rmtree(path, ignore_errors=True)
    return deleted


def list_checkpoints(study: Study, job: str | None = None, *, include_deleted: bool = False) -> list[dict[str, Any]]:
    """One row per checkpoint: job, step, path, train_loss (the last window at or before the step), val_loss,
    fid (with its extractor), kept, resumable (the full training state is still there), ema_only (the
    checkpoint kept its EMA weights alone), network (family: lucidrains or diffusers), parameters and
    condition (what a conditional network is conditioned on, None otherwise)."""
    where, args = [], []
    if job:
        where.append("c.job_id = ?")
        args.append(job)
    if not include_deleted:
        where.append("NOT c.deleted")
    sql = f"""
        SELECT c.job_id AS job, c.step, c.path, c.kept, c.deleted,
               (SELECT m.value FROM metrics m WHERE m.job_id = c.job_id AND m.name = 'train_loss'
                  AND m.step <= c.step ORDER BY m.step DESC LIMIT 1) AS train_loss,
               (SELECT m.value FROM metrics m WHERE m.job_id = c.job_id AND m.name = 'val_loss'
                  AND m.step = c.step) AS val_loss,
               (SELECT m.value FROM metrics m WHERE m.job_id = c.job_id AND m.name = 'fid'
                  AND m.step = c.step) AS fid,
               (SELECT json_extract_string(m.details, '$.extractor') FROM metrics m WHERE m.job_id = c.job_id
                  AND m.name = 'fid' AND m.step = c.step) AS fid_extractor
        FROM checkpoints c {'WHERE ' + ' AND '.join(where) if where else ''}
        ORDER BY c.job_id, c.step
    """
    rows = study.store.query(sql, args or None)
    for r in rows:
        folder = study.abs(r["path"])
        r["resumable"] = (folder / "state").is_dir() and not r["deleted"]
        r["ema_only"] = not r["deleted"] and (folder / "unet_ema").is_dir() and not (folder / "unet").is_dir()
        r.update(network_summary(folder) if not r["deleted"] else {"network": None, "parameters": None})
        r["condition"] = condition_summary(folder) if not r["deleted"] else None
    return rows


def condition_summary(folder: Path) -> str | None:
    """What a checkpoint's network is conditioned on ("defect, keypoints"); None for an unconditional one."""
    meta = Path(folder) / "cspine.json"
    if not meta.exists():
        return None
    condition = (json.loads(meta.read_text()).get("config") or {}).get("condition")
    if not condition:
        return None
    return ", ".join(list(condition.get("attributes") or []) + (["keypoints"] if condition.get("points") else []))


def set_kept(study: Study, job: str, step: int, kept: bool = True) -> dict[str, Any]:
    """Protect a checkpoint from the keep-last-N limit (or lift the protection)."""
    with study.store.connect() as tx:
        row = tx.query_one("SELECT deleted FROM checkpoints WHERE job_id = ? AND step = ?", [job, step])
        if row is None:
            raise CspineError(f"no checkpoint at step {step} of job {job}; see `cspine-tui checkpoints`")
        if row["deleted"] and kept:
            raise CspineError(f"checkpoint {job} step {step} was already deleted by the keep-last limit")
        tx.execute("UPDATE checkpoints SET kept = ? WHERE job_id = ? AND step = ?", [kept, job, step])
    return {"job": job, "step": step, "kept": kept}
