"""FID and KID of a whole synthetic run (sampled, or an external set added with add-synthetic), as a job.

Kind "fid": the features of every image of the run against the real set's statistics (train, val or all),
with the extractor of core/metrics/fid.py (the real Inception unless the proxy is asked for). Like with like:
the real films face left after ingest; a run's images were mirrored to face left when they were saved
(sampling jobs and add-synthetic do it by default), and images saved without it (``sample --no-orient``)
are mirrored here by the same detector (core/ddpm/evaluation.py ``orient_left``), so orientation never
counts as a difference. The real statistics are cached by a hash of the real set (ids, content hashes,
size) and of the extractor and its preprocessing, and reused by every later FID against the same set.

The synthetic features are written in blocks to the job's folder, so a stopped job (``--time-limit``, pause,
a signal) resumes where it stopped. The values go to the metrics table (names ``fid`` and ``kid`` under the
job's id, step 0) with their provenance in the details: run, its sampler/steps/precision/checkpoint, n, real
selection, extractor, weights SHA-256, preprocessing, orientation.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

from core.errors import CspineError
from core.jobs.runner import JobContext, JobPaused, sync_metrics
from core.study import Study
from core.ddpm import synthetic

REAL_SETS = ("train", "val", "all")
BLOCK = 256  # images per saved block of features: a stop loses at most this much work


def fid_params(study: Study, *, run: str, real: str = "train", extractor: str = "inception",
               inception_weights: str | None = None, input_range: str = "pytorch-fid",
               batch: int = 32) -> dict[str, Any]:
    """Validate a `fid` request; the job's params."""
    # Imported here (also below): it imports torch, whose start-up the CLI pays only when it runs the job.
    from core.metrics.fid import EXTRACTORS, INPUT_RANGES

    found = synthetic.find_run(study, run)
    if real not in REAL_SETS:
        raise CspineError(f"--real must be one of {', '.join(REAL_SETS)}, not {real!r}")
    if extractor not in EXTRACTORS:
        raise CspineError(f"--extractor must be one of {', '.join(EXTRACTORS)}, not {extractor!r}")
    if input_range not in INPUT_RANGES:
        raise CspineError(f"--input-range must be one of {', '.join(INPUT_RANGES)}, not {input_range!r}")
    if batch < 1:
        raise CspineError(f"--batch must be at least 1, not {batch}")
    n = study.store.scalar("SELECT count(*) FROM synthetic_images WHERE run_id = ?", [found["id"]])
    if n < 2:
        raise CspineError(f"run {found['id']!r} has {n} image(s); FID needs at least 2 (sample more first)")
    return {"run": found["id"], "real": real, "extractor": extractor, "input_range": input_range,
            "inception_weights": inception_weights or study.get("fid", "inception_weights"), "batch": int(batch)}


def _read(study: Study, paths: list[str]) -> np.ndarray:
    from PIL import Image

    out = []
    for p in paths:
        with Image.open(study.abs(p)) as im:
            out.append(np.asarray(im.convert("L"), dtype=np.uint8))
    return np.stack(out)


def run(ctx: JobContext) -> dict[str, Any]:
    import torch

    from core.ddpm.data import load_images  # imported on use: loads torch, PIL (start-up cost)
    from core.ddpm.evaluation import ORIENTATION, orient_left  # imported on use: loads torch, PIL (start-up cost)
    from core.metrics import fid as metrics  # imported on use: loads torch (start-up cost)

    study, p = ctx.study, ctx.params
    run_row = synthetic.find_run(study, p["run"])
    rows = study.store.query("SELECT idx, path, orientation_confidence FROM synthetic_images WHERE run_id = ? "
                             "ORDER BY idx", [run_row["id"]])
    if len(rows) < 2:
        raise CspineError(f"run {run_row['id']!r} has {len(rows)} image(s); FID needs at least 2")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    extractor = metrics.get_extractor(p["extractor"], device, weights=p.get("inception_weights"),
                                      input_range=p.get("input_range", "pytorch-fid"))
    started = time.monotonic()
    size = _read(study, [rows[0]["path"]]).shape[-1]
    total = len(rows)
    feats_dir = ctx.dir / "features"
    feats_dir.mkdir(exist_ok=True)
    blocks = [rows[i:i + BLOCK] for i in range(0, total, BLOCK)]
    parts, flipped_here = [], 0
    for k, block in enumerate(blocks):
        path = feats_dir / f"block-{k:05d}.npz"
        if path.exists():  # finished before a stop: reuse
            with np.load(path) as z:
                parts.append(z["features"])
                flipped_here += int(z["flipped"])
            continue
        if ctx.should_stop():
            raise JobPaused(f"{ctx.stop_reason}; {k * BLOCK}/{total} images done, resume to continue")
        images = _read(study, [r["path"] for r in block])
        if images.shape[1:] != (size, size):
            raise CspineError(f"run {run_row['id']!r} mixes image sizes ({images.shape[1:]} and {size}); "
                              f"FID needs one size")
        # Images saved without orientation (no detector confidence recorded) are oriented now.
        todo = [i for i, r in enumerate(block) if r["orientation_confidence"] is None]
        n_flipped = 0
        if todo:
            images[todo], n_flipped = orient_left(images[todo])
            flipped_here += n_flipped
        u8 = torch.from_numpy(images).unsqueeze(1)
        feats = metrics.extract(extractor, lambda: (u8[i:i + p["batch"]] for i in range(0, len(u8), p["batch"])))
        tmp = path.with_name(f".{path.stem}.tmp.npz")
        np.savez(tmp, features=feats.astype(np.float32), flipped=n_flipped)
        tmp.replace(path)
        parts.append(feats)
        ctx.progress(min(total, (k + 1) * BLOCK), total, message=f"features of {run_row['id']}")
    fake = np.concatenate(parts).astype(np.float64)
    ctx.progress(total, total, message=f"real statistics ({p['real']})", force=True)
    real_set = load_images(study, p["real"], size)
    real = metrics.real_statistics(study.cache_dir, real_set.dataset_hash, real_set.pixels, extractor,
                                   batch_size=p["batch"], meta={"real": p["real"], "size": size})
    res = metrics.fid_kid(real, fake)
    rp = run_row["params"]
    details = {**metrics.describe(extractor), "run": run_row["id"], "source": run_row["source"],
               "train_job": run_row["train_job"], "checkpoint_step": run_row["checkpoint_step"],
               "sampler": run_row["sampler"], "sampler_steps": run_row["steps"],
               "sampler_precision": rp.get("precision"), "weights": run_row["weights"],
               "n": res["n_fake"], "n_real": res["n_real"], "real": p["real"], "image_size": size,
               "orientation": ORIENTATION, "flipped_at_fid_time": flipped_here,
               "real_stats_key": res["real_stats_key"], "seconds": round(time.monotonic() - started, 1)}
    ctx.metric(0, fid={"value": res["fid"], **details},
               kid={"value": res["kid"], "std": res["kid_std"], "subset_size": res["kid_subset_size"], **details})
    sync_metrics(study, ctx.job_id)
    ctx.log(f"run {run_row['id']}: FID {res['fid']:.3f}, KID {res['kid']:.5f} +- {res['kid_std']:.5f} "
            f"({details['extractor']}, n={res['n_fake']} vs {res['n_real']} {p['real']} images)")
    return {"job": ctx.job_id, "fid": res["fid"], "kid": res["kid"], "kid_std": res["kid_std"],
            "kid_subset_size": res["kid_subset_size"], **details}


def latest_run_fids(study: Study) -> dict[str, dict[str, Any]]:
    """The newest FID of every run that has one: run id -> details with 'fid' and 'kid'."""
    rows = study.store.query(
        "SELECT m.job_id, m.name, m.value, m.details FROM metrics m JOIN jobs j ON j.id = m.job_id "
        "WHERE j.kind = 'fid' AND m.name IN ('fid', 'kid') ORDER BY j.created_at, m.job_id")
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        details = json.loads(r["details"])
        entry = out.get(details["run"])
        if entry is None or entry["job"] != r["job_id"]:
            entry = out[details["run"]] = {**details, "job": r["job_id"]}
        entry[r["name"]] = r["value"]
    return out


__all__ = ["fid_params", "run", "latest_run_fids", "REAL_SETS"]
