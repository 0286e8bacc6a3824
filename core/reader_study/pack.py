"""The reader study's pack: blinded quartets of one real and three synthetic radiographs, ready for Qualtrics.

A pack folder (``--out DIR``)::

    upload/                 what goes to the survey platform, and nothing else
      survey.qsf            Qualtrics Survey File: instructions page + one page (block) per quartet
      survey.txt            the same survey in Qualtrics' Advanced Format TXT
      images/<opaque>.png   every image re-encoded identically (see blind_encode)
    answer_key.csv          quartet, position -> source; keep it away from raters
    pack.json               the manifest: pack id, seed, checkpoints, export tags, the full key
    preview.html            the survey as raters will see it, offline
    README.md               for the study team: hosting the images, importing, exporting responses

Blinding: all four images of a quartet go through the same encoder (8-bit grayscale, one size, a fresh
PNG with only IHDR/IDAT/IEND chunks, the same zlib level), get random opaque names, are written in name
order (so inode order says nothing) and share one file time. The position of the real image is drawn per
quartet from the recorded seed. Export tags and question ids are neutral (Q07_pick, Q07_rate).
"""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from core.errors import CspineError
from core.study import Study
from core.reader_study import formats
from core.reader_study import groups as group_sources
from core.reader_study.pack_check import fingerprint, record, verify_pack
from core.reader_study.spec import PackSpec, QuartetItem
from core.screening.rules import accepted_image_ids

PNG_COMPRESS_LEVEL = 6  # zlib default; the same for every image

Log = Callable[[str], None]


# ---------------------------------------------------------------------------------------------------
# Blinding


def to_gray8(im: Image.Image) -> np.ndarray:
    """Any PIL image -> 8-bit grayscale array (16-bit scaled by 1/257, colour through ITU-R 601 luma)."""
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(im, dtype=np.float64)
        if im.mode != "I" or arr.max(initial=0) > 255:
            arr = arr / 257.0
        return np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    if im.mode == "F":
        return np.clip(np.rint(np.asarray(im, dtype=np.float64)), 0, 255).astype(np.uint8)
    if im.mode != "L":
        im = im.convert("RGBA").convert("L") if im.mode in ("P", "PA", "LA") else im.convert("L")
    return np.asarray(im, dtype=np.uint8).copy()


def blind_encode(path: Path, size: int) -> bytes:
    """Re-encode one image for the pack: 8-bit gray, size x size, a fresh PNG with no metadata chunks."""
    try:
        with Image.open(path) as im:
            im.load()
            arr = to_gray8(im)
    except (OSError, ValueError) as exc:
        raise CspineError(f"cannot read image {path}: {exc}; re-ingest or re-sample it") from exc
    img = Image.fromarray(arr, "L")  # a new image: no info dict, no ICC profile, no text, no time
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=False, compress_level=PNG_COMPRESS_LEVEL)
    return out.getvalue()


def png_chunks(data: bytes) -> list[str]:
    """The chunk types of a PNG file, in order (to check that nothing but pixels is in it)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, out = 8, []
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        out.append(data[pos + 4:pos + 8].decode("latin-1"))
        pos += 12 + length
    return out


def opaque_names(rng: np.random.Generator) -> Callable[[], str]:
    """A source of distinct random image names (16 hex digits + .png) drawn from the pack's seeded `rng`."""
    names: set[str] = set()

    def opaque() -> str:
        while True:
            name = rng.bytes(8).hex() + ".png"
            if name not in names:
                names.add(name)
                return name
    return opaque


# ---------------------------------------------------------------------------------------------------
# Selecting images


def accepted_synthetic(study: Study, step: int) -> list[dict[str, Any]]:
    """Accepted images of one checkpoint under the study's final screening rule (core/screening/rules.py)."""
    ids = set(accepted_image_ids(study, checkpoint_step=int(step)))
    rows = study.store.query("SELECT s.id, s.path FROM synthetic_images s JOIN synthetic_runs r ON r.id = s.run_id "
                             "WHERE r.checkpoint_step = ? ORDER BY s.id", [int(step)])
    return [{"id": r["id"], "path": r["path"]} for r in rows if r["id"] in ids]


def available_checkpoints(study: Study) -> dict[str, int]:
    """checkpoint step -> accepted images, for choosing checkpoints (and for error messages)."""
    steps = study.store.column("SELECT DISTINCT checkpoint_step FROM synthetic_runs "
                               "WHERE checkpoint_step IS NOT NULL ORDER BY 1")
    return {str(s): len(accepted_synthetic(study, s)) for s in steps}


# ---------------------------------------------------------------------------------------------------
# Building a pack


def build_pack(study: Study, out: Path | str, *, checkpoints: list[str] | None = None,
               groups: list[str] | None = None, count: int = 50, seed: int | None = None,
               image_base_url: str | None = None, size: int = 256, shuffle_pages: bool = False,
               free_text: bool = False, log: Log | None = None) -> PackSpec:
    """Assemble `count` blinded quartets (1 real + 1 accepted image per group) and write the pack.

    `groups` are references as core/reader_study/groups.py reads them (ckpt:STEP, run:NAME, external:NAME);
    `checkpoints` (steps or run names of checkpoints) are the same as ckpt: groups. Every pack asks the rater
    questionnaire; `free_text` adds an optional "what gave it away?" box per quartet.
    """
    log = log or (lambda _m: None)
    out = Path(out).expanduser()
    # A complete pack of this same request may be there from a build killed before its rows were committed.
    leftover = seed is not None and out.is_dir() and (out / "pack.json").is_file()
    if out.exists() and not leftover and (not out.is_dir() or any(out.iterdir())):
        raise CspineError(f"{out} exists and is not empty; packs are never overwritten, choose a new --out")
    if (checkpoints is None) == (groups is None):
        raise CspineError("give the three groups either as --groups or as --checkpoints, not both")
    refs = [str(g) for g in (groups if groups is not None else [f"ckpt:{c}" for c in checkpoints or []])]
    if len(refs) != 3:
        raise CspineError(f"a quartet holds one image from each of 3 groups; got {len(refs)}: {' '.join(refs)}")
    if count < 1:
        raise CspineError(f"--count must be at least 1 (got {count})")
    if not 16 <= size <= 2048:
        raise CspineError(f"--size {size} is out of range (16-2048 px)")
    if image_base_url and not image_base_url.startswith(("https://", "http://")):
        raise CspineError(f"--image-base-url {image_base_url!r} must start with https:// (or http://)")
    resolved = group_sources.resolve_all(study, refs, count)
    sources = [g.source for g in resolved]
    pools = {g.source: g.pool for g in resolved}

    real = [dict(r) for r in study.store.query("SELECT id, path FROM real_images ORDER BY id")]
    if len(real) < count:
        raise CspineError(f"the study has {len(real)} real images; {count} quartets need {count} "
                          "(ingest more or lower --count)")

    seed = int(secrets.randbits(31) if seed is None else seed)
    rng = np.random.default_rng(seed)
    chosen_real = [real[i] for i in rng.choice(len(real), size=count, replace=False)]
    chosen = {s: [pools[s][i] for i in rng.choice(len(pools[s]), size=count, replace=False)] for s in sources}
    opaque = opaque_names(rng)

    items: list[QuartetItem] = []
    src_path: dict[str, Path] = {}
    for q in range(count):
        members = [("real", chosen_real[q], "real")] + [("synthetic", chosen[s][q], s) for s in sources]
        positions = rng.permutation(4)
        for (kind, row, source), pos in zip(members, positions):
            item = QuartetItem(quartet=q + 1, position=int(pos) + 1, image_kind=kind, image_id=row["id"],
                               source=source, image_file=opaque())
            items.append(item)
            src_path[item.image_file] = study.abs(row["path"])
    if leftover:
        return _adopt_interrupted_build(study, out, items, size=size, shuffle_pages=shuffle_pages,
                                        image_base_url=image_base_url, free_text=free_text, log=log)

    now = datetime.now()
    pack_id = f"pack-{now.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    spec = PackSpec(pack_id=pack_id, seed=seed, checkpoints=sources, count=count, size=size,
                    image_base_url=image_base_url, shuffle_pages=shuffle_pages,
                    created_at=now.isoformat(timespec="seconds"), items=items, study=str(study.root.resolve()),
                    questionnaire=True, free_text=free_text)

    write_blinded(out, src_path, size, now, log=log, write_files=lambda tmp: formats.write_pack_files(tmp, spec),
                  record=lambda tmp: _record_pack(study, spec, out, move_from=tmp))
    log(f"pack {pack_id}: {count} quartets from groups {', '.join(spec.checkpoints)} (seed {seed}) in {out}")
    return spec


def write_blinded(out: Path, src_path: dict[str, Path], size: int, now: datetime, *, log: Log,
                  write_files: Callable[[Path], None], record: Callable[[Path], None]) -> None:
    """Write a pack's blinded images and files into a temporary sibling of `out`; `record` renames it with the rows.

    `src_path` maps each opaque image name to its source; `write_files(folder)` writes the design's survey files,
    `record(folder)` commits the design's rows and moves `folder` to `out` in the same transaction, so a failed
    build leaves no half pack. Both designs blind through here: one encoder, name order, one file time.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_killed_builds(out)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{secrets.token_hex(3)}"
    tmp.mkdir()
    try:
        images = tmp / "upload" / "images"
        images.mkdir(parents=True)
        log(f"re-encoding {len(src_path)} images to {size}x{size} 8-bit PNG")
        for name in sorted(src_path):  # name order: the creation order reveals nothing
            (images / name).write_bytes(blind_encode(src_path[name], size))
        stamp = time.mktime(now.replace(microsecond=0).timetuple())
        for name in sorted(src_path):
            os.utime(images / name, (stamp, stamp))
        write_files(tmp)
        if out.exists():
            out.rmdir()  # empty, checked by the caller
        record(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _remove_killed_builds(out: Path) -> None:
    """Delete the half-written temporary folders that killed builds into `out` left (their process is gone)."""
    for stale in out.parent.glob(f".{out.name}.tmp-*"):
        pid = stale.name.rsplit(".tmp-", 1)[1].split("-")[0]
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(stale, ignore_errors=True)
        except (ValueError, PermissionError):
            continue  # an older name without a pid, or another user's live process: leave it


def _adopt_interrupted_build(study: Study, out: Path, items: list[QuartetItem], *, size: int, shuffle_pages: bool,
                             image_base_url: str | None, free_text: bool, log: Log) -> PackSpec:
    """Register the complete pack a killed build of the same request left in `out` (rename done, rows not)."""
    try:
        spec = read_pack_dir(out)
    except CspineError:
        spec = None

    def key(of: list[QuartetItem]) -> list[tuple]:
        return [(i.quartet, i.position, i.image_kind, i.image_id, i.source, i.image_file) for i in of]

    same = spec is not None and spec.study == str(study.root.resolve()) and key(spec.items) == key(items) and \
        (spec.size, spec.shuffle_pages, spec.image_base_url, spec.free_text) == \
        (size, shuffle_pages, image_base_url, free_text) and \
        all((out / "upload" / "images" / i.image_file).is_file() for i in spec.items)
    if not same or study.store.scalar("SELECT count(*) FROM quartet_packs WHERE id = ?", [spec.pack_id]):
        raise CspineError(f"{out} exists and is not empty; packs are never overwritten, choose a new --out")
    _record_pack(study, spec, out)
    log(f"pack {spec.pack_id}: registered the complete pack an interrupted build of the same request left in {out}")
    return spec


def _record_pack(study: Study, spec: PackSpec, out: Path, move_from: Path | None = None) -> None:
    # "files": the hashes of the pack's key files, verified before an import or analysis
    # (core/reader_study/pack_check.py)
    params = {"count": spec.count, "size": spec.size, "shuffle_pages": spec.shuffle_pages,
              "questionnaire": spec.questionnaire, "free_text": spec.free_text,
              "created_at": spec.created_at, "files": fingerprint(move_from or out)}
    with study.store.connect() as tx:
        tx.execute("INSERT INTO quartet_packs (id, seed, checkpoints, out_dir, image_base_url, params) "
                   "VALUES (?, ?, ?, ?, ?, ?)",
                   [spec.pack_id, spec.seed, json.dumps(spec.checkpoints), str(out.resolve()),
                    spec.image_base_url, json.dumps(params)])
        tx.executemany("INSERT INTO quartet_items (pack_id, quartet, position, image_kind, image_id, source, "
                       "image_file) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       [[spec.pack_id, i.quartet, i.position, i.image_kind, i.image_id, i.source, i.image_file]
                        for i in spec.items])
        tx.executemany("INSERT INTO survey_items (pack_id, quartet, mc_export_tag, matrix_export_tag, mc_qid, "
                       "matrix_qid) VALUES (?, ?, ?, ?, ?, ?)",
                       [[spec.pack_id, q, spec.mc_tag(q), spec.matrix_tag(q), spec.mc_qid(q), spec.matrix_qid(q)]
                        for q in range(1, spec.count + 1)])
        if move_from is not None:  # the folder appears only with its rows: a kill leaves both or neither
            os.replace(move_from, out)  # (but for the commit itself, which a re-run adopts)


# ---------------------------------------------------------------------------------------------------
# Finding packs again


def read_pack_dir(folder: Path | str) -> PackSpec:
    folder = Path(folder).expanduser()
    manifest = folder / "pack.json"
    if not manifest.exists():
        raise CspineError(f"{folder} is not a quartet pack (no pack.json); give the folder `quartets --out` wrote")
    try:
        return PackSpec.from_json(json.loads(manifest.read_text()))
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CspineError(f"{manifest} is damaged ({exc}); restore it from the pack's backup") from exc


def ensure_registered(study: Study, spec: PackSpec, folder: Path) -> None:
    """A pack built in another study copy is registered from its manifest, so its key is in this database."""
    if not study.store.scalar("SELECT count(*) FROM quartet_packs WHERE id = ?", [spec.pack_id]):
        _record_pack(study, spec, folder)


def list_packs(study: Study) -> list[dict[str, Any]]:
    rows = study.store.query(
        """
        SELECT p.id, p.seed, p.checkpoints, p.out_dir, p.image_base_url, p.created_at,
               (SELECT count(DISTINCT quartet) FROM quartet_items i WHERE i.pack_id = p.id) AS quartets,
               (SELECT count(*) FROM raters r WHERE r.pack_id = p.id) AS raters
        FROM quartet_packs p ORDER BY p.created_at DESC, p.id DESC
        """)
    for r in rows:
        r["checkpoints"] = json.loads(r["checkpoints"]) if r["checkpoints"] else []
    return rows


def load_pack(study: Study, ref: str | Path | None = None) -> PackSpec:
    """A pack by id, by folder, or (None) the newest one of the study."""
    if ref is not None and Path(str(ref)).expanduser().is_dir():
        spec = read_pack_dir(ref)
        ensure_registered(study, spec, Path(str(ref)).expanduser())
        return spec
    if ref is None:
        packs = list_packs(study)
        if not packs:
            raise CspineError(f"study {study.root} has no quartet pack yet; build one with `cspine-tui quartets`")
        ref = packs[0]["id"]
    row = study.store.query_one("SELECT * FROM quartet_packs WHERE id = ?", [str(ref)])
    if row is None:
        known = ", ".join(p["id"] for p in list_packs(study)) or "none"
        raise CspineError(f"no pack {ref!r} in study {study.root} (packs: {known}); give its id or folder")
    return pack_from_db(study, row)


def load_checked_pack(study: Study, ref: str | Path | None = None) -> PackSpec:
    """`load_pack`, then `verify_pack` on the folder it came from (the import and the analysis)."""
    spec = load_pack(study, ref)
    folder = Path(str(ref)).expanduser() if ref is not None and Path(str(ref)).expanduser().is_dir() else None
    verify_pack(study, spec.pack_id, folder)
    return spec


def pack_from_db(study: Study, row: dict[str, Any]) -> PackSpec:
    folder = Path(row["out_dir"])
    if (folder / "pack.json").exists():
        spec = read_pack_dir(folder)
        if spec.pack_id == row["id"]:
            return spec
    params = json.loads(row["params"]) if row["params"] else {}
    items = [QuartetItem(**{k: r[k] for k in ("quartet", "position", "image_kind", "image_id", "source",
                                               "image_file")})
             for r in study.store.query("SELECT * FROM quartet_items WHERE pack_id = ? ORDER BY quartet, position",
                                        [row["id"]])]
    return PackSpec(pack_id=row["id"], seed=row["seed"], checkpoints=json.loads(row["checkpoints"]),
                    count=len({i.quartet for i in items}), size=int(params.get("size", 256)),
                    image_base_url=row["image_base_url"], shuffle_pages=bool(params.get("shuffle_pages")),
                    created_at=str(params.get("created_at") or row["created_at"]), items=items,
                    study=str(study.root.resolve()), questionnaire=bool(params.get("questionnaire")),
                    free_text=bool(params.get("free_text")))


def set_image_urls(study: Study | None, folder: Path | str, *, base_url: str | None = None,
                   url_csv: Path | str | None = None) -> PackSpec:
    """Point the survey at where the images are hosted and rewrite survey.qsf / survey.txt / preview.

    `url_csv` holds `image_file,url` rows (e.g. Qualtrics Graphics Library URLs, one IM_ id per image).
    """
    folder = Path(folder).expanduser()
    spec = read_pack_dir(folder)
    registered = study is not None and bool(study.store.scalar("SELECT count(*) FROM quartet_packs WHERE id = ?",
                                                               [spec.pack_id]))
    if registered:
        verify_pack(study, spec.pack_id, folder)  # never re-bless a pack edited by hand
    apply_image_urls(spec, base_url, url_csv)
    formats.write_pack_files(folder, spec)
    if study is not None:
        study.store.execute("UPDATE quartet_packs SET image_base_url = ? WHERE id = ?",
                            [spec.image_base_url, spec.pack_id])
        if registered:
            record(study, spec.pack_id, folder)  # the rewritten survey files are the new reference
    return spec


def apply_image_urls(spec: Any, base_url: str | None, url_csv: Path | str | None) -> None:
    """Set a pack spec's (either design) image base URL and/or per-image URLs from an image_file,url CSV."""
    if base_url:
        if not base_url.startswith(("https://", "http://")):
            raise CspineError(f"--image-base-url {base_url!r} must start with https:// (or http://)")
        spec.image_base_url = base_url
    if url_csv:
        spec.image_urls.update(_read_url_csv(Path(url_csv), {i.image_file for i in spec.items}))


def _read_url_csv(path: Path, files: set[str]) -> dict[str, str]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:  # not UTF-8, or a field over csv's 128 KiB limit
        raise CspineError(f"cannot read {path}: {exc}; give a UTF-8 CSV of image_file,url rows") from exc
    if rows and rows[0] and rows[0][0].strip().lower() in ("image_file", "file", "name"):
        rows = rows[1:]
    mapping = {}
    for n, row in enumerate(rows, 2):
        if len(row) < 2 or not row[0].strip():
            continue
        name, url = row[0].strip(), row[1].strip()
        if name not in files:
            raise CspineError(f"{path} line {n}: {name!r} is not an image of this pack")
        if not url.startswith(("https://", "http://")):
            raise CspineError(f"{path} line {n}: {url!r} is not an http(s) URL")
        mapping[name] = url
    if not mapping:
        raise CspineError(f"{path} has no image_file,url rows")
    return mapping
