"""The single-image reader study's pack: blinded trials of one image each, real or from a group, for Qualtrics.

The folder is laid out as a quartet pack (core/reader_study/pack.py) and blinded the same way, by the same
code (`pack.blind_encode`: 8-bit grayscale, one size, a fresh PNG with only IHDR/IDAT/IEND, random names, one
file time); its key files are hashed at export and checked before every import or analysis (pack_check).

A group is a checkpoint (``ckpt:68000``, or a bare step), a sampling run (``run:NAME``) or an external set
brought in with ``add-synthetic`` (``external:NAME``), resolved by core/reader_study/groups.py as for quartets:
its images are those the study's final screening rule accepts, groups must be disjoint, and its source (the
answer key's ``source``, the analysis' group name) is the bare step for a checkpoint, ``run:NAME`` or
``external:NAME`` otherwise.

Share: half the trials (rounded down) show a real image, the rest are split as evenly as possible between the
groups (earlier groups get the one extra when it does not divide). Half real keeps the two
error rates (sensitivity, specificity) equally precise and makes "always synthetic" no better than chance;
the instructions tell raters "about half are real", so their threshold is not set by a guessed prevalence.
The page order is a seeded permutation, the same for every rater unless ``--shuffle-pages``.
"""

from __future__ import annotations

import json
import os
import secrets
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import numpy as np

from core.ddpm.synthetic import conditions_for
from core.errors import CspineError
from core.realset.labels import attributes_for
from core.reader_study import single_formats
from core.reader_study.groups import Group, describe, resolve_all
from core.reader_study.pack import apply_image_urls, opaque_names, write_blinded
from core.reader_study.pack_check import fingerprint, record, verify_pack
from core.reader_study.single_spec import REAL_SHARE, SingleItem, SinglePackSpec, is_single_manifest
from core.study import Study

Log = Callable[[str], None]


def plan_trials(count: int, n_groups: int) -> tuple[int, list[int]]:
    """(real trials, synthetic trials per group): half real (rounded down), the rest split evenly."""
    n_real = int(count * REAL_SHARE)
    syn = count - n_real
    return n_real, [syn // n_groups + (1 if g < syn % n_groups else 0) for g in range(n_groups)]


def _conditions(study: Study, attribute: str, real: list[dict], groups: list[Group]
                ) -> tuple[dict[str, str], dict[str, str]]:
    real_values = attributes_for(study, attribute, [r["id"] for r in real])
    syn_ids = [i["id"] for g in groups for i in g.pool]
    syn_values = {k: str(v["attributes"][attribute]) for k, v in conditions_for(study, syn_ids).items()
                  if attribute in (v.get("attributes") or {})}
    return real_values, syn_values


def _only_with(images: list[dict], values: dict[str, str]) -> list[dict]:
    return [i for i in images if i["id"] in values]


def build_single_pack(study: Study, out: Path | str, *, groups: list[str], count: int = 100,
                      seed: int | None = None, image_base_url: str | None = None, size: int = 256,
                      shuffle_pages: bool = False, condition_attribute: str | None = None,
                      free_text: bool = False,
                      log: Log | None = None) -> SinglePackSpec:
    """Draw `count` blinded single-image trials (half real, the rest split between the groups) and write a pack."""
    log = log or (lambda _m: None)
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CspineError(f"{out} exists and is not empty; packs are never overwritten, choose a new --out")
    if not groups:
        raise CspineError("give at least one group (--groups ckpt:STEP run:NAME external:NAME)")
    if count < 2:
        raise CspineError(f"--count must be at least 2 (one real and one synthetic trial; got {count})")
    if not 16 <= size <= 2048:
        raise CspineError(f"--size {size} is out of range (16-2048 px)")
    if image_base_url and not image_base_url.startswith(("https://", "http://")):
        raise CspineError(f"--image-base-url {image_base_url!r} must start with https:// (or http://)")
    resolved = resolve_all(study, groups, 0)  # distinct and disjoint; the sizes are checked below
    names = [g.source for g in resolved]
    n_real, per_group = plan_trials(count, len(resolved))
    if min(per_group) < 1:
        raise CspineError(f"{count} trials leave no synthetic trial for some of the {len(resolved)} groups; "
                          "raise --count")
    real = [dict(r) for r in study.store.query("SELECT id, path FROM real_images ORDER BY id")]
    real_values: dict[str, str] = {}
    syn_values: dict[str, str] = {}
    if condition_attribute:
        real_values, syn_values = _conditions(study, condition_attribute, real, resolved)
        real = _only_with(real, real_values)
        resolved = [Group(g.source, g.kind, _only_with(g.pool, syn_values)) for g in resolved]
    which = f" labelled with {condition_attribute!r}" if condition_attribute else ""
    if len(real) < n_real:
        raise CspineError(f"the study has {len(real)} real images{which}; {count} trials need {n_real} "
                          "(ingest or label more, or lower --count)")
    for g, n in zip(resolved, per_group):
        if len(g.pool) < n:
            raise CspineError(f"group {describe(g.source)} has {len(g.pool)} accepted images{which}; {count} trials "
                              f"need {n} "
                              "(screen or sample more, or lower --count)")

    seed = int(secrets.randbits(31) if seed is None else seed)
    rng = np.random.default_rng(seed)
    drawn = [("real", "real", real[i]) for i in rng.choice(len(real), size=n_real, replace=False)]
    for g, n in zip(resolved, per_group):
        drawn += [("synthetic", g.source, g.pool[i]) for i in rng.choice(len(g.pool), size=n, replace=False)]
    order = rng.permutation(len(drawn))
    opaque = opaque_names(rng)

    items, src_path = [], {}
    for t, k in enumerate(order, 1):
        kind, source, row = drawn[int(k)]
        value = (real_values if kind == "real" else syn_values).get(row["id"]) if condition_attribute else None
        item = SingleItem(trial=t, image_kind=kind, image_id=row["id"], source=source, image_file=opaque(),
                          condition=value)
        items.append(item)
        src_path[item.image_file] = study.abs(row["path"])

    now = datetime.now()
    spec = SinglePackSpec(pack_id=f"single-{now.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}", seed=seed,
                          groups=names, count=count, size=size, image_base_url=image_base_url,
                          shuffle_pages=shuffle_pages, created_at=now.isoformat(timespec="seconds"),
                          condition_attribute=condition_attribute or None, free_text=free_text, items=items,
                          study=str(study.root.resolve()), questionnaire=True)
    write_blinded(out, src_path, size, now, log=log,
                  write_files=lambda tmp: single_formats.write_pack_files(tmp, spec),
                  record=lambda tmp: _record(study, spec, out, move_from=tmp))
    log(f"pack {spec.pack_id}: {count} single-image trials ({n_real} real; "
        + ", ".join(f"{g} {n}" for g, n in zip(names, per_group)) + f"; seed {seed}) in {out}")
    return spec


def _record(study: Study, spec: SinglePackSpec, out: Path, move_from: Path | None = None) -> None:
    params = {"count": spec.count, "size": spec.size, "shuffle_pages": spec.shuffle_pages, "design": spec.design,
              "condition_attribute": spec.condition_attribute, "free_text": spec.free_text,
              "questionnaire": spec.questionnaire,
              "created_at": spec.created_at, "files": fingerprint(move_from or out)}
    with study.store.connect() as tx:
        tx.execute("INSERT INTO single_packs (id, seed, groups, out_dir, image_base_url, params) "
                   "VALUES (?, ?, ?, ?, ?, ?)", [spec.pack_id, spec.seed, json.dumps(spec.groups),
                                                 str(out.resolve()), spec.image_base_url, json.dumps(params)])
        tx.executemany("INSERT INTO single_items (pack_id, trial, image_kind, image_id, source, image_file, "
                       "condition_value) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       [[spec.pack_id, i.trial, i.image_kind, i.image_id, i.source, i.image_file, i.condition]
                        for i in spec.items])
        if move_from is not None:  # the folder appears only with its rows
            os.replace(move_from, out)


# ---------------------------------------------------------------------------------------------------
# Finding packs again


def read_single_dir(folder: Path | str) -> SinglePackSpec:
    folder = Path(folder).expanduser()
    manifest = folder / "pack.json"
    if not manifest.exists():
        raise CspineError(f"{folder} is not a pack (no pack.json); give the folder `single-images --out` wrote")
    try:
        data = json.loads(manifest.read_text())
        if not is_single_manifest(data):
            raise CspineError(f"{folder} is a quartet pack, not a single-image pack")
        return SinglePackSpec.from_json(data)
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CspineError(f"{manifest} is damaged ({exc}); restore it from the pack's backup") from exc


def list_single_packs(study: Study) -> list[dict[str, Any]]:
    rows = study.store.query(
        """SELECT p.id, p.seed, p.groups, p.out_dir, p.image_base_url, p.created_at,
                  (SELECT count(*) FROM single_items i WHERE i.pack_id = p.id) AS trials,
                  (SELECT count(*) FROM raters r WHERE r.pack_id = p.id) AS raters
           FROM single_packs p ORDER BY p.created_at DESC, p.id DESC""")
    for r in rows:
        r["groups"] = json.loads(r["groups"]) if r["groups"] else []
    return rows


def design_of(study: Study, ref: str | Path | None) -> str:
    """'single' or 'quartets': the design of the pack a --pack value (folder, id, or None = newest) names."""
    if ref is not None and Path(str(ref)).expanduser().is_dir():
        manifest = Path(str(ref)).expanduser() / "pack.json"
        try:
            return "single" if is_single_manifest(json.loads(manifest.read_text())) else "quartets"
        except (OSError, json.JSONDecodeError, AttributeError):
            return "quartets"  # the quartet loader names what is wrong with the folder
    if ref is not None:
        found = study.store.scalar("SELECT count(*) FROM single_packs WHERE id = ?", [str(ref)])
        return "single" if found else "quartets"
    newest = study.store.query_one(
        "SELECT 'single' AS design, created_at FROM single_packs UNION ALL "
        "SELECT 'quartets', created_at FROM quartet_packs ORDER BY created_at DESC LIMIT 1")
    return newest["design"] if newest else "quartets"


def load_single_pack(study: Study, ref: str | Path | None = None) -> SinglePackSpec:
    """A single-image pack by folder, by id, or (None) the newest; its files are checked against the hashes."""
    folder = Path(str(ref)).expanduser() if ref is not None else None
    if folder is not None and folder.is_dir():
        spec = read_single_dir(folder)
        if not study.store.scalar("SELECT count(*) FROM single_packs WHERE id = ?", [spec.pack_id]):
            _record(study, spec, folder)  # built in another copy of the study: register its key here
        verify_pack(study, spec.pack_id, folder)
        return spec
    if ref is None:
        packs = list_single_packs(study)
        if not packs:
            raise CspineError(f"study {study.root} has no single-image pack yet; build one with "
                              "`cspine-tui single-images`")
        ref = packs[0]["id"]
    row = study.store.query_one("SELECT * FROM single_packs WHERE id = ?", [str(ref)])
    if row is None:
        known = ", ".join(p["id"] for p in list_single_packs(study)) or "none"
        raise CspineError(f"no single-image pack {ref!r} in study {study.root} (packs: {known}); give its id "
                          "or folder")
    verify_pack(study, row["id"], None)
    if (Path(row["out_dir"]) / "pack.json").exists():
        spec = read_single_dir(row["out_dir"])
        if spec.pack_id == row["id"]:
            return spec
    return _from_db(study, row)


def _from_db(study: Study, row: dict[str, Any]) -> SinglePackSpec:
    """The pack as recorded, when its folder is gone (the key in the database is then the only one)."""
    params = json.loads(row["params"]) if row["params"] else {}
    items = [SingleItem(trial=r["trial"], image_kind=r["image_kind"], image_id=r["image_id"], source=r["source"],
                        image_file=r["image_file"], condition=r["condition_value"])
             for r in study.store.query("SELECT * FROM single_items WHERE pack_id = ? ORDER BY trial", [row["id"]])]
    return SinglePackSpec(pack_id=row["id"], seed=row["seed"], groups=json.loads(row["groups"]), count=len(items),
                          size=int(params.get("size", 256)), image_base_url=row["image_base_url"],
                          shuffle_pages=bool(params.get("shuffle_pages")),
                          created_at=str(params.get("created_at") or row["created_at"]),
                          condition_attribute=params.get("condition_attribute"),
                          free_text=bool(params.get("free_text")), items=items, study=str(study.root.resolve()),
                          questionnaire=bool(params.get("questionnaire")))


def set_single_image_urls(study: Study | None, folder: Path | str, *, base_url: str | None = None,
                          url_csv: Path | str | None = None) -> SinglePackSpec:
    """`survey-urls` for a single-image pack: point the survey at the hosted images and rewrite its files."""
    folder = Path(folder).expanduser()
    spec = read_single_dir(folder)
    registered = study is not None and bool(study.store.scalar("SELECT count(*) FROM single_packs WHERE id = ?",
                                                               [spec.pack_id]))
    if registered:
        verify_pack(study, spec.pack_id, folder)  # never re-bless a pack edited by hand
    apply_image_urls(spec, base_url, url_csv)
    single_formats.write_pack_files(folder, spec)
    if study is not None and registered:
        study.store.execute("UPDATE single_packs SET image_base_url = ? WHERE id = ?",
                            [spec.image_base_url, spec.pack_id])
        record(study, spec.pack_id, folder)  # the rewritten survey files are the new reference
    return spec
