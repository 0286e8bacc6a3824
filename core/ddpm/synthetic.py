"""Synthetic runs and their images: registration, file writing and external sets.

A synthetic run is one folder ``images/synthetic/<run>/`` plus a ``synthetic_runs`` row; its id is its name.
Each image is ``<run>/<idx:06d>.png`` plus a ``synthetic_images`` row with id ``<run>-<idx>``, the image's
seed, its SHA-256 (of the PNG file) and whether it was mirrored to face left. Sampling (core/ddpm/sampling.py),
``cspine-tui add-synthetic`` (images made elsewhere, such as the paper's released set) and other areas' test
fixtures all register images through :func:`create_run` and :func:`add_images`.

Writes are crash-safe: a PNG is written to a hidden temporary name and renamed into place, rows are inserted
with ``ON CONFLICT DO NOTHING`` (the unique (run_id, idx) keeps a re-run from duplicating them), and a killed
writer's temporary files are removed by :func:`clean_partial_files` when the run continues.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from core.ddpm.conditioning import mirror_condition
from core.disk_errors import DiskFull, disk_full_path
from core.errors import CspineError
from core.files import write_bytes_atomic
from core.study import Study
from core.jobs.runner import JobPaused
from core.realset import detectors

RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,119}$")
SOURCES = ("sampled", "external")
TMP_MARK = ".partial-"
# The settings that make two sampled runs the same images: extending a run must keep all of them.
SAMPLING_KEYS = ("train_job", "checkpoint_step", "sampler", "steps", "seed", "weights")


@dataclass
class SyntheticImage:
    idx: int
    path: str                       # relative to the study root
    sha256: str
    seed: int | None = None
    flipped: bool = False
    orientation_confidence: float | None = None
    source_path: str | None = None
    # The condition it was generated for: {"attributes": {name: value}, "keypoints": {point: [x, y]}} in the
    # image's own canonical coordinates (after any mirroring); None for unconditional and external images.
    condition: dict[str, Any] | None = None


# ---------------------------------------------------------------------------------------------------
# Runs


def check_run_name(name: str) -> str:
    if not RUN_NAME.match(name or ""):
        raise CspineError(f"run name {name!r} is not usable as a folder name; use letters, digits, '.', '_' "
                          f"and '-' (at most 120 characters, starting with a letter or digit)")
    return name


def run_folder(study: Study, name: str) -> Path:
    return study.synthetic_dir / check_run_name(name)


def get_run(study: Study, run_id: str) -> dict[str, Any] | None:
    row = study.store.query_one("SELECT * FROM synthetic_runs WHERE id = ?", [run_id])
    if row is not None:
        row["params"] = json.loads(row["params"]) if row["params"] else {}
    return row


def find_run(study: Study, name: str) -> dict[str, Any]:
    row = get_run(study, name)
    if row is None:
        known = study.store.column("SELECT id FROM synthetic_runs ORDER BY created_at DESC LIMIT 8")
        raise CspineError(f"no synthetic run {name!r} in {study.root}"
                          + (f" (recent: {', '.join(known)})" if known else "") + "; see `cspine-tui runs`")
    return row


def create_run(study: Study, name: str, source: str, *, job_id: str | None = None,
               train_job: str | None = None, checkpoint_step: int | None = None, sampler: str | None = None,
               steps: int | None = None, seed: int | None = None, weights: str | None = None,
               params: dict[str, Any] | None = None, exist_ok: bool = False) -> str:
    """Register a run (and make its folder); returns its id, which is its name.

    With exist_ok, an existing run with the same source and sampling settings is returned unchanged (a
    resumed job or an extension); any other existing run of that name is an error.
    """
    if source not in SOURCES:
        raise CspineError(f"synthetic run source must be one of {', '.join(SOURCES)}, not {source!r}")
    folder = run_folder(study, name)
    wanted = {"train_job": train_job, "checkpoint_step": checkpoint_step, "sampler": sampler, "steps": steps,
              "seed": seed, "weights": weights}
    with study.store.connect() as tx:
        row = tx.query_one("SELECT * FROM synthetic_runs WHERE id = ?", [name])
        if row is not None:
            same = row["source"] == source and all(row[k] == v for k, v in wanted.items())
            if exist_ok and same:
                folder.mkdir(parents=True, exist_ok=True)
                return name
            differs = [k for k, v in wanted.items() if row[k] != v]
            raise CspineError(f"a synthetic run named {name!r} already exists ({row['source']}"
                              + (f", different {', '.join(differs)}" if differs else "")
                              + "); choose another run name")
        tx.execute(
            "INSERT INTO synthetic_runs (id, name, source, job_id, train_job, checkpoint_step, sampler, steps, "
            "seed, weights, folder, params) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [name, name, source, job_id, train_job, checkpoint_step, sampler, steps, seed, weights,
             study.rel(study.synthetic_dir) + "/" + name, json.dumps(params or {})])
    folder.mkdir(parents=True, exist_ok=True)
    return name


def update_run_params(study: Study, run_id: str, **values: Any) -> None:
    with study.store.connect() as tx:
        raw = tx.scalar("SELECT params FROM synthetic_runs WHERE id = ?", [run_id])
        params = {**(json.loads(raw) if raw else {}), **values}
        tx.execute("UPDATE synthetic_runs SET params = ? WHERE id = ?", [json.dumps(params), run_id])


def list_runs(study: Study) -> list[dict[str, Any]]:
    """Every run with its image count, newest first."""
    rows = study.store.query(
        "SELECT r.*, (SELECT count(*) FROM synthetic_images s WHERE s.run_id = r.id) AS images, "
        "(SELECT count(*) FROM synthetic_images s WHERE s.run_id = r.id AND s.flipped) AS flipped_images "
        "FROM synthetic_runs r ORDER BY r.created_at DESC, r.id DESC")
    for row in rows:
        row["params"] = json.loads(row["params"]) if row["params"] else {}
        row["created_at"] = str(row["created_at"])
    return rows


# ---------------------------------------------------------------------------------------------------
# Images


def image_id(run_id: str, idx: int) -> str:
    return f"{run_id}-{int(idx)}"


def image_filename(idx: int) -> str:
    return f"{int(idx):06d}.png"


def done_indices(study: Study, run_id: str) -> set[int]:
    return set(study.store.column("SELECT idx FROM synthetic_images WHERE run_id = ?", [run_id]))


def add_images(study: Study, run_id: str, rows: Sequence[SyntheticImage]) -> int:
    """Insert image rows in one short transaction; rows already present are left alone. Returns rows added."""
    if not rows:
        return 0
    with study.store.connect() as tx:
        before = tx.scalar("SELECT count(*) FROM synthetic_images WHERE run_id = ?", [run_id])
        tx.executemany(
            "INSERT INTO synthetic_images (id, run_id, idx, seed, path, sha256, flipped, orientation_confidence, "
            "source_path, condition) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [[image_id(run_id, r.idx), run_id, int(r.idx), r.seed, r.path, r.sha256, bool(r.flipped),
              r.orientation_confidence, r.source_path, None if r.condition is None else json.dumps(r.condition)]
             for r in rows])
        after = tx.scalar("SELECT count(*) FROM synthetic_images WHERE run_id = ?", [run_id])
    return int(after - before)


def conditions_for(study: Study, image_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """{image_id: condition} for the given synthetic images that were generated for one."""
    ids = list(image_ids)
    if not ids:
        return {}
    rows = study.store.query("SELECT id, condition FROM synthetic_images WHERE condition IS NOT NULL "
                             "AND id IN (SELECT unnest(?))", [ids])
    return {r["id"]: json.loads(r["condition"]) for r in rows}


def standardise_orientation(arr: np.ndarray) -> tuple[np.ndarray, bool, float | None]:
    """Mirror an 8-bit positive film to face left, as the real set is; returns (image, flipped, confidence)."""
    facing, confidence = detectors.detect_orientation(arr)
    flipped = facing == "right"
    out = np.ascontiguousarray(arr[:, ::-1]) if flipped else arr
    return out, flipped, round(float(confidence), 4)


def encode_png(arr: np.ndarray) -> bytes:
    from core.realset.canonical import encode_png as _encode  # imported on use: loads PIL (start-up cost)

    return _encode(np.ascontiguousarray(arr, dtype=np.uint8))


def write_png_atomic(path: Path, data: bytes) -> None:
    """Atomically write a generated image (its temporary name starts with TMP_MARK: clean_partials removes
    those a kill left behind); a full disk is a DiskFull naming the image."""
    try:
        write_bytes_atomic(path, data, tmp_prefix=TMP_MARK)
    except OSError as exc:
        if disk_full_path(exc) is not None:
            raise DiskFull(path) from exc
        raise


def save_image(study: Study, run_id: str, idx: int, arr: np.ndarray, *, seed: int | None = None,
               orient: bool = True, source_path: str | None = None,
               condition: dict[str, Any] | None = None) -> SyntheticImage:
    """Standardise (optionally), encode and atomically write image `idx` of a run; returns its row.

    `condition` is what the image was generated for, in its pixels as generated; when the image is mirrored
    to face left, its keypoints are mirrored with it, so the stored condition matches the stored pixels."""
    flipped, confidence = False, None
    if orient:
        arr, flipped, confidence = standardise_orientation(arr)
        if flipped:
            condition = mirror_condition(condition, arr.shape[1])
    data = encode_png(arr)
    path = run_folder(study, run_id) / image_filename(idx)
    write_png_atomic(path, data)
    return SyntheticImage(idx=int(idx), path=study.rel(path), sha256=hashlib.sha256(data).hexdigest(),
                          seed=seed, flipped=flipped, orientation_confidence=confidence, source_path=source_path,
                          condition=condition)


def clean_partial_files(folder: Path) -> int:
    """Remove temporary files a killed writer left in a run folder; returns how many."""
    removed = 0
    if folder.is_dir():
        for p in folder.iterdir():
            if p.name.startswith(TMP_MARK):
                p.unlink(missing_ok=True)
                removed += 1
    return removed


def read_image(study: Study, image: str) -> np.ndarray:
    """The pixels of a synthetic image by id (8-bit, as stored)."""
    from PIL import Image

    row = study.store.query_one("SELECT path FROM synthetic_images WHERE id = ?", [image])
    if row is None:
        raise CspineError(f"no synthetic image {image!r} in {study.root}")
    with Image.open(study.abs(row["path"])) as im:
        return np.asarray(im.convert("L"))


# ---------------------------------------------------------------------------------------------------
# External sets (`cspine-tui add-synthetic`)


def add_external(study: Study, name: str, paths: Iterable[str | Path], *, recursive: bool = True,
                 job_id: str | None = None, progress: Callable[[int, int, str], None] | None = None,
                 should_stop: Callable[[], bool] | None = None, log: Callable[[str], None] | None = None,
                 batch_rows: int = 64) -> dict[str, Any]:
    """Register images made elsewhere as a run `name`: canonical size, 8-bit grey, facing left.

    Each file is decoded like an ingest (any bit depth), resized to the study's canonical size with the
    study's resize mode, and mirrored to face left by the orientation detector; polarity is kept as it is
    (a synthetic set is positive film). Re-running with the same name adds only files not yet in the run,
    so an interrupted registration continues. Returns a summary; `should_stop` is polled between files and
    a True answer returns early with ``stopped`` set.
    """
    from core.realset import ingest  # imported on use: loads PIL (start-up cost)
    from core.realset.readers import SkipFile, decode_bytes  # imported on use: loads PIL (start-up cost)

    paths = [Path(p).expanduser() for p in paths]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise CspineError(f"not found: {', '.join(missing[:5])}; give image files or folders")
    files, skipped_paths = ingest.discover(paths, recursive, subfolder_reason="a sub-folder: not read with "
                                                                             "--no-recursive")
    if not files:
        raise CspineError(f"no image files under {', '.join(map(str, paths))} (PNG, JPEG, TIFF, BMP or DICOM)")
    opts = ingest.options_for(study, {})
    create_run(study, name, "external", job_id=job_id, params={
        "sources": [str(p.absolute()) for p in paths], "size": opts.size, "resize": opts.resize,
        "polarity": "kept as given", "orientation": "detector (mirrored to face left)"}, exist_ok=True)
    clean_partial_files(run_folder(study, name))
    known = study.store.query("SELECT idx, source_path FROM synthetic_images WHERE run_id = ?", [name])
    seen = {r["source_path"] for r in known}
    next_idx = max((r["idx"] for r in known), default=-1) + 1
    todo = [f for f in files if f not in seen]
    pending: list[SyntheticImage] = []
    skipped: list[tuple[str, str]] = list(skipped_paths)
    added, stopped = 0, False
    for n, path in enumerate(todo):
        if should_stop is not None and should_stop():
            stopped = True
            break
        try:
            dec = decode_bytes(ingest.read_source(Path(path)), Path(path).suffix, max_pixels=opts.max_pixels)
            canon = ingest.canonicalize(dec, opts, force_inverted=False)
        except SkipFile as exc:
            skipped.append((path, str(exc)))
            if log:
                log(f"skipped {path}: {exc}")
            continue
        row = save_image(study, name, next_idx, canon.pixels, orient=False, source_path=path)
        row.flipped, row.orientation_confidence = canon.flipped, canon.orientation_confidence
        pending.append(row)
        next_idx += 1
        if len(pending) >= batch_rows:
            added += add_images(study, name, pending)
            pending = []
        if progress:
            progress(n + 1, len(todo), Path(path).name)
    added += add_images(study, name, pending)
    total = study.store.scalar("SELECT count(*) FROM synthetic_images WHERE run_id = ?", [name])
    return {"run": name, "output": str(run_folder(study, name).resolve()), "added": added,
            "already_present": len(files) - len(todo), "images": int(total), "stopped": stopped,
            "skipped": [{"path": p, "reason": r} for p, r in skipped]}


def run_add_synthetic(ctx) -> dict[str, Any]:
    """Job runner (kind "add_synthetic"): params run, paths, recursive."""
    p = ctx.params
    result = add_external(ctx.study, p["run"], p["paths"], recursive=bool(p.get("recursive", True)),
                          job_id=ctx.job_id, progress=lambda d, t, m: ctx.progress(d, t, message=m),
                          should_stop=ctx.should_stop, log=ctx.log)
    ctx.log(f"run {result['run']}: {result['added']} images added, {result['already_present']} already "
            f"present, {len(result['skipped'])} skipped")
    if result["stopped"]:
        raise JobPaused(ctx.stop_reason)
    return result


__all__ = ["SyntheticImage", "check_run_name", "run_folder", "get_run", "find_run", "create_run",
           "update_run_params", "list_runs", "image_id", "image_filename", "done_indices", "add_images",
           "standardise_orientation", "encode_png", "write_png_atomic", "save_image", "clean_partial_files",
           "read_image", "add_external", "run_add_synthetic"]
