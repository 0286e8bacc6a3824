"""The real set after ingest: the train/validation split, per-image overrides, and what the dataset screen shows.

The split is drawn once (seeded, recorded per image) and extended for images added later; changing it is
the explicit `cspine-tui split` command (:func:`redraw_split`), never a side effect of anything else.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from core.errors import CspineError
from core.files import write_bytes_atomic
from core.study import Study
from core.realset import labels
from core.realset.canonical import content_box, encode_png, needs_look


def _n_val(n: int, val_fraction: float) -> int:
    return int(n * val_fraction + 0.5)  # 4,963 x 0.15 -> 744 validation images, as in the paper


def draw_split(ids: list[str], seed: int, val_fraction: float) -> dict[str, str]:
    """A seeded 85/15-style split of `ids` (independent of their order): id -> 'train' | 'val'."""
    if not 0.0 <= val_fraction < 1.0:
        raise CspineError(f"validation fraction {val_fraction} must be in [0, 1)")
    ordered = sorted(ids)
    perm = np.random.default_rng(int(seed)).permutation(len(ordered))
    val = {ordered[i] for i in perm[:_n_val(len(ordered), val_fraction)]}
    return {i: ("val" if i in val else "train") for i in ordered}


def split_counts(study: Study) -> dict[str, int]:
    rows = study.store.query("SELECT split, count(*) AS n FROM splits GROUP BY split")
    return {r["split"]: int(r["n"]) for r in sorted(rows, key=lambda r: r["split"])}


def check_split_seed(study: Study, recorded: set[int], seed: int | None) -> None:
    """A seed other than the recorded one would change the split: only `cspine-tui split` may."""
    if recorded and seed is not None and recorded != {int(seed)}:
        raise CspineError(f"the study's split was drawn with seed {sorted(recorded)}; a new seed changes it, "
                          f"which only `cspine-tui split --seed {seed} --study {study.root}` does")


def assign_missing(study: Study, seed: int | None = None) -> dict[str, Any]:
    """Give every real image without a split one: the whole split on first use, else extend it.

    Extending keeps every existing assignment and moves the validation share of the whole set as close to
    val_fraction as the new images allow. A `seed` different from the recorded one is an error: re-drawing
    the split is `redraw_split`. One transaction; returns the counts per split and the seed.
    """
    val_fraction = float(study.get("ingest", "val_fraction", 0.15))
    with study.store.connect() as tx:
        ids = tx.column("SELECT id FROM real_images ORDER BY id")
        existing = {r["image_id"]: r for r in tx.query("SELECT image_id, split, seed FROM splits")}
        recorded = {int(r["seed"]) for r in existing.values()}
        check_split_seed(study, recorded, seed)
        missing = [i for i in ids if i not in existing]
        if existing:
            seed = int(sorted(recorded)[0])
        elif missing:
            seed = int(study.get("ingest", "split_seed", 0) if seed is None else seed)
        if missing:
            if not existing:
                assigned = draw_split(ids, seed, val_fraction)
            else:
                n_val_now = sum(1 for r in existing.values() if r["split"] == "val")
                need = min(max(_n_val(len(ids), val_fraction) - n_val_now, 0), len(missing))
                rng = np.random.default_rng([seed, len(existing)])
                val = {missing[i] for i in rng.permutation(len(missing))[:need]}
                assigned = {i: ("val" if i in val else "train") for i in missing}
            tx.executemany("INSERT INTO splits (image_id, split, seed) VALUES (?, ?, ?)",
                           [[i, s, seed] for i, s in assigned.items()])
        counts = {r["split"]: int(r["n"]) for r in
                  tx.query("SELECT split, count(*) AS n FROM splits GROUP BY split ORDER BY split")}
    if missing and study.get("ingest", "split_seed") != seed:
        study.set("ingest", "split_seed", seed)
    return {**counts, "seed": seed}


def redraw_split(study: Study, seed: int, val_fraction: float | None = None) -> dict[str, Any]:
    """Re-draw the whole split (the explicit command); records the seed and fraction in study.toml."""
    if val_fraction is None:
        val_fraction = float(study.get("ingest", "val_fraction", 0.15))
    ids = study.store.column("SELECT id FROM real_images ORDER BY id")
    if not ids:
        raise CspineError(f"study {study.root} has no real images yet; ingest some first (`cspine-tui ingest`)")
    assigned = draw_split(ids, seed, val_fraction)
    with study.store.connect() as tx:
        before = {r["image_id"]: r["split"] for r in tx.query("SELECT image_id, split FROM splits")}
        tx.execute("DELETE FROM splits")
        tx.executemany("INSERT INTO splits (image_id, split, seed) VALUES (?, ?, ?)",
                       [[i, s, int(seed)] for i, s in assigned.items()])
    study.settings.setdefault("ingest", {}).update(split_seed=int(seed), val_fraction=float(val_fraction))
    study.save_settings()
    changed = sum(1 for i, s in assigned.items() if before.get(i) != s)
    return {**split_counts(study), "seed": int(seed), "val_fraction": float(val_fraction), "changed": changed}


# ---------------------------------------------------------------------------------------------------
# Overrides


def find_image(study: Study, image_id: str) -> dict[str, Any]:
    row = study.store.query_one("SELECT * FROM real_images WHERE id = ?", [image_id])
    if row is None:
        matches = study.store.query("SELECT * FROM real_images WHERE id LIKE ? ORDER BY id LIMIT 6",
                                    [f"{image_id}%"])
        if len(matches) == 1:
            return matches[0]
        hint = "an id prefix matches several images; give more characters" if matches else \
            "see the dataset screen or `cspine-tui real --json` for ids"
        raise CspineError(f"no real image {image_id!r} in study {study.root} ({hint})")
    return row


def override(study: Study, image_id: str, *, inverted: bool | None = None,
             flipped: bool | None = None) -> dict[str, Any]:
    """Set one image's polarity and/or orientation by hand: re-writes its canonical PNG, records 'override'.

    Inversion and mirroring commute with the resize, so the canonical image is transformed in place (inside
    its content box in pad mode) and the source file is not needed.
    """
    row = find_image(study, image_id)
    old_path = study.abs(row["path"])
    try:
        with Image.open(old_path) as im:
            pixels = np.array(im.convert("L"))
    except (OSError, ValueError) as exc:
        raise CspineError(f"canonical image {old_path} of {row['id'][:12]} cannot be read ({exc}); "
                          "re-ingest its source") from None
    x0, y0, w, h = content_box(row["orig_width"], row["orig_height"], pixels.shape[0], row["resize_mode"])
    box = pixels[y0:y0 + h, x0:x0 + w]
    updates: dict[str, Any] = {}
    if inverted is not None:
        if bool(inverted) != bool(row["inverted"]):
            box[...] = 255 - box
        updates.update(inverted=bool(inverted), polarity_source="override", polarity_confidence=None)
    if flipped is not None:
        if bool(flipped) != bool(row["flipped"]):
            box[...] = box[:, ::-1].copy()
        updates.update(flipped=bool(flipped), orientation_source="override", orientation_confidence=None)
    if not updates:
        return row
    png = encode_png(pixels)
    digest = hashlib.sha256(png).hexdigest()
    new_path = study.real_dir / f"{digest}.png"
    write_bytes_atomic(new_path, png)
    merged = {**row, **updates}
    updates.update(path=study.rel(new_path), canonical_sha256=digest,
                   flagged=needs_look(merged["polarity_source"], merged["polarity_confidence"],
                                      merged["orientation_source"], merged["orientation_confidence"]))
    with study.store.connect() as tx:
        tx.execute(f"UPDATE real_images SET {', '.join(f'{k} = ?' for k in updates)} WHERE id = ?",
                   [*updates.values(), row["id"]])
        if flipped is not None and bool(flipped) != bool(row["flipped"]):  # the landmarks move with the pixels
            labels.mirror_keypoints(tx, row["id"], x0, w)
        still_used = tx.scalar("SELECT count(*) FROM real_images WHERE path = ?", [row["path"]])
    if not still_used and old_path.resolve() != new_path.resolve():
        old_path.unlink(missing_ok=True)
    return {**row, **updates}


# ---------------------------------------------------------------------------------------------------
# What the dataset screen and `cspine-tui real` show


def dataset_summary(study: Study) -> dict[str, Any]:
    with study.store.connect() as tx:
        total = tx.scalar("SELECT count(*) FROM real_images")
        counts = tx.query_one(
            "SELECT count(*) FILTER (WHERE inverted) AS inverted, count(*) FILTER (WHERE NOT inverted) AS positive,"
            " count(*) FILTER (WHERE flipped) AS flipped, count(*) FILTER (WHERE NOT flipped) AS left,"
            " count(*) FILTER (WHERE flagged) AS flagged,"
            " count(*) FILTER (WHERE polarity_source = 'override' OR orientation_source = 'override') AS overridden"
            " FROM real_images") or {}
        by_format = tx.query("SELECT source_format AS format, count(*) AS n FROM real_images GROUP BY 1 ORDER BY 1")
        splits = tx.query("SELECT split, count(*) AS n FROM splits GROUP BY split ORDER BY split")
        by_split_polarity = tx.query(
            "SELECT coalesce(s.split, 'none') AS split, r.inverted, r.flipped, count(*) AS n FROM real_images r "
            "LEFT JOIN splits s ON s.image_id = r.id GROUP BY ALL ORDER BY ALL")
        duplicates = tx.scalar("SELECT count(*) FROM ingest_events WHERE outcome = 'duplicate'")
        # Each skipped path once, with its latest reason (a re-run may meet the same bad file again).
        skipped = tx.query(
            "SELECT source_path AS path, arg_max(reason, recorded_at) AS reason, max(recorded_at) AS at "
            "FROM ingest_events WHERE outcome = 'skipped' AND source_path NOT IN "
            "(SELECT source_path FROM real_images) GROUP BY source_path ORDER BY source_path")
    return {
        "total": int(total), **{k: int(v) for k, v in counts.items()},
        "by_format": {r["format"]: int(r["n"]) for r in by_format},
        "splits": {r["split"]: int(r["n"]) for r in splits},
        "by_split": [{"split": r["split"], "inverted": bool(r["inverted"]), "flipped": bool(r["flipped"]),
                      "n": int(r["n"])} for r in by_split_polarity],
        "duplicates": int(duplicates),
        "skipped": [{"path": r["path"], "reason": r["reason"]} for r in skipped],
        "split_seed": study.get("ingest", "split_seed"),
        "resize": study.get("ingest", "resize"),
    }


def list_images(study: Study, *, flagged_only: bool = False, limit: int | None = None) -> list[dict[str, Any]]:
    sql = ("SELECT r.id, r.path, r.source_path, r.source_format, r.orig_width, r.orig_height, r.bit_depth, "
           "r.inverted, r.polarity_source, r.polarity_confidence, r.flipped, r.orientation_source, "
           "r.orientation_confidence, r.flagged, coalesce(s.split, '') AS split FROM real_images r "
           "LEFT JOIN splits s ON s.image_id = r.id"
           + (" WHERE r.flagged" if flagged_only else "")
           + " ORDER BY r.flagged DESC, r.source_path" + (f" LIMIT {int(limit)}" if limit else ""))
    return study.store.query(sql)


def source_available(row: dict[str, Any]) -> Path | None:
    """The original file of an image when it is still where it was ingested from."""
    path = Path(row["source_path"])
    return path if path.is_file() and os.access(path, os.R_OK) else None
