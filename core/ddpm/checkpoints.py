"""The study's training checkpoints with their losses and FID, and marking checkpoints as kept."""

from __future__ import annotations

from typing import Any

from core.ddpm.networks import network_summary
from core.errors import CspineError
from core.study import Study


def list_checkpoints(study: Study, job: str | None = None, *, include_deleted: bool = False) -> list[dict[str, Any]]:
    """One row per checkpoint: job, step, path, train_loss (the last window at or before the step), val_loss,
    fid (with its extractor), kept, resumable (the full training state is still there), ema_only (the
    checkpoint kept its EMA weights alone), network (family: lucidrains or diffusers) and parameters."""
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
    return rows


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
