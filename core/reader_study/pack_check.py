"""Is a quartet pack still the one that was exported? The SHA-256 of its key files, recorded at export.

The survey's images, its QSF/TXT, the answer key and the manifest decide what raters saw and how their answers
are scored. Edited by hand after export (a row of answer_key.csv changed, an image replaced, survey.qsf
re-ordered), the pack no longer matches the key in the database, and an import or analysis would score the
answers against the wrong images without a word. So `build_pack` records the hash of every such file in
``quartet_packs.params["files"]``, and the import and the analysis verify them first (`verify_pack`).

Files a user may legitimately add to a pack folder (the exported responses, notes) are not checked; README.md
and preview.html are rebuilt from pack.json and carry nothing the results depend on. Image files must be
plain files named in the key: a symbolic link (possibly pointing out of the pack) or an extra image fails.
A pack whose folder is gone is not checked: the key in the database is then the only one used.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import CspineError
from core.files import sha256_file

if TYPE_CHECKING:
    from core.study import Study

CHECKED = ("pack.json", "answer_key.csv", "upload/survey.qsf", "upload/survey.txt")
IMAGES = "upload/images"


def fingerprint(folder: Path) -> dict[str, str]:
    """relative path -> SHA-256 of the checked files and every entry of upload/images/ (links marked)."""
    out: dict[str, str] = {}
    for rel in CHECKED:
        path = folder / rel
        if path.is_file():
            out[rel] = sha256_file(path)
    images = folder / IMAGES
    if images.is_dir():
        for path in sorted(images.iterdir()):
            rel = f"{IMAGES}/{path.name}"
            out[rel] = "symlink" if path.is_symlink() else (sha256_file(path) if path.is_file() else "not-a-file")
    return out


PACK_TABLES = ("quartet_packs", "single_packs")  # one per design; pack ids are unique across them


def recorded(study: Study, pack_id: str) -> tuple[Path | None, dict[str, str] | None]:
    for table in PACK_TABLES:
        row = study.store.query_one(f"SELECT out_dir, params FROM {table} WHERE id = ?", [pack_id])
        if row is not None:
            params = json.loads(row["params"]) if row["params"] else {}
            return (Path(row["out_dir"]) if row["out_dir"] else None), params.get("files")
    return None, None


def record(study: Study, pack_id: str, folder: Path) -> None:
    """Store the fingerprint of `folder` as the pack's reference (at export, and after survey-urls)."""
    with study.store.connect() as tx:
        for table in PACK_TABLES:
            raw = tx.scalar(f"SELECT params FROM {table} WHERE id = ?", [pack_id])
            if raw is not None:
                params: dict[str, Any] = json.loads(raw)
                params["files"] = fingerprint(folder)
                tx.execute(f"UPDATE {table} SET params = ? WHERE id = ?", [json.dumps(params), pack_id])


def changes(expected: dict[str, str], actual: dict[str, str]) -> list[str]:
    out = []
    for rel in sorted(set(expected) | set(actual)):
        if rel not in actual:
            out.append(f"{rel} is missing")
        elif actual[rel] == "symlink":
            out.append(f"{rel} is a symbolic link")
        elif rel not in expected:
            if rel.startswith(IMAGES + "/"):
                out.append(f"{rel} was added")
        elif expected[rel] != actual[rel]:
            out.append(f"{rel} was changed")
    return out


def verify_pack(study: Study, pack_id: str, folder: Path | None = None) -> None:
    """Raise a one-line CspineError if the pack's files differ from those recorded at export."""
    out_dir, expected = recorded(study, pack_id)
    folder = folder or out_dir
    if expected is None or folder is None or not folder.is_dir():
        return  # built before fingerprints were recorded, or the folder is gone: the database key is used
    found = changes(expected, fingerprint(folder))
    if found:
        more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
        raise CspineError(f"pack {pack_id} in {folder} was edited after export: {'; '.join(found[:3])}{more}. "
                          "Its answers would be scored against a key that no longer matches what raters saw; "
                          "restore the pack folder from a backup (nothing was imported or analysed)")
