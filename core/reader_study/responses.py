"""Import Qualtrics response exports (CSV) of a pack's survey into ratings (docs/reference/study.md section 4).

Formats: the current export with three header rows (export tags; localised question text; ``{"ImportId":..}``)
and the legacy export with two (``V1..V10`` + tags; metadata names + text). Columns are matched by export tag
(row 1) or ImportId (row 3), never by the localised text in row 2. Values may be numeric (recode values) or
choice text ("B", "Image B", "3 - mostly realistic").

Rows that are not used are counted by reason: preview / test / spam responses (Status or DistributionChannel),
incomplete ones (Finished false), responses already imported, and a rater code answering twice (the first
finished response is kept and the rater flagged). Every data row is kept verbatim in raw_responses together
with the header rows, so the file can be rebuilt from the database. A file that does not fit the pack is
refused with the reason, before anything is written.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from core.errors import CspineError
from core.study import Study
from core.reader_study import questionnaire
from core.reader_study.questionnaire import is_seen_unanswered
from core.reader_study.spec import LETTERS, RATER_CODE_TAG, PackSpec

R = TypeVar("R")  # a parsed response of either design (Response, single_responses.Answers)

EXCLUSION_REASONS = ("preview", "test", "spam", "incomplete", "already_imported", "duplicate_rater")
TRUE_WORDS = {"1", "true", "yes", "wahr", "vrai", "verdadero", "vero", "waar", "sim", "ja"}
FALSE_WORDS = {"0", "false", "no", "falsch", "faux", "falso", "onwaar", "nao", "não", "nein", "nee"}
# Qualtrics response types (Status): 0 IP address, 1 survey preview, 2 survey test, 4 imported, 8 spam,
# 9 preview spam, 12 imported spam, 16 offline, 17 offline preview.
STATUS_CODES = {"1": "preview", "2": "test", "8": "spam", "9": "preview", "12": "spam", "17": "preview"}
META = {  # field -> (current export tag, ImportId, legacy row-2 name)
    "response_id": ("ResponseId", "_recordId", "ResponseID"),
    "status": ("Status", "status", "Status"),
    "finished": ("Finished", "finished", "Finished"),
    "progress": ("Progress", "progress", None),
    "channel": ("DistributionChannel", "distributionChannel", None),
    "recorded": ("RecordedDate", "recordedDate", "EndDate"),
    "email": ("RecipientEmail", "recipientEmail", "EmailAddress"),
    "external": ("ExternalReference", "externalDataReference", "ExternalDataReference"),
}
TAG_RE = re.compile(r"^\s*(?:image\s+)?([A-Da-d])\s*$", re.I)
RATING_RE = re.compile(r"^\s*([1-4])(?:\s*[-–:.)].*)?\s*$")


@dataclass
class Header:
    fmt: str                      # qualtrics-3-header | qualtrics-legacy-2-header
    names: list[str]              # row 1
    import_ids: list[str | None]  # row 3 ImportIds (current format) or None
    labels: list[str]             # row 2 (only for legacy metadata)
    n_rows: int

    def find(self, tag: str | None = None, import_id: str | None = None, label: str | None = None) -> int | None:
        if tag is not None and tag in self.names:
            return self.names.index(tag)
        if import_id is not None and import_id in self.import_ids:
            return self.import_ids.index(import_id)
        if label is not None and self.fmt.endswith("legacy-2-header") and label in self.labels:
            return self.labels.index(label)
        return None

    def row_mapping(self, cells: list[str]) -> dict[str, str]:
        """One data row as {export tag or ImportId: cell} (what questionnaire.read_rater_info reads)."""
        out: dict[str, str] = {}
        for col, cell in enumerate(cells):
            iid = self.import_ids[col] if col < len(self.import_ids) else None
            if iid:
                out.setdefault(iid, cell)
            if col < len(self.names) and self.names[col]:
                out[self.names[col]] = cell
        return out


@dataclass
class Response:
    row_index: int
    cells: list[str]
    response_id: str
    label: str
    recorded: str
    status: str = "used"
    picks: dict[int, int] = field(default_factory=dict)               # quartet -> position
    ratings: dict[tuple[int, int], int] = field(default_factory=dict)  # (quartet, position) -> 1..4
    missing: int = 0
    seen_unanswered: list[tuple[int, str]] = field(default_factory=list)  # (quartet or 0, question): -99
    rater_info: dict[str, Any] = field(default_factory=dict)              # questionnaire.read_rater_info
    comments: dict[int, str] = field(default_factory=dict)                # quartet -> free text, verbatim


def _read_rows(path: Path) -> tuple[list[list[str]], str]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CspineError(f"cannot read {path}: {exc}") from exc
    if not data.strip():
        raise CspineError(f"{path} is empty; export the responses from Qualtrics as CSV")
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise CspineError(f"{path} is UTF-16 (a Qualtrics TSV export?); export the responses as CSV instead")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CspineError(f"{path} is not UTF-8 text ({exc}); export the responses from Qualtrics as CSV") from exc
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:  # e.g. a field over csv.field_size_limit() (128 KiB): not an export Qualtrics writes
        raise CspineError(f"{path} is not a readable CSV ({exc}); export the responses from Qualtrics as CSV "
                          "again") from exc
    return [r for r in rows if any(c.strip() for c in r)], hashlib.sha256(data).hexdigest()


def _import_id(cell: str) -> str | None:
    cell = cell.strip()
    if not cell.startswith("{"):
        return None
    try:
        value = json.loads(cell).get("ImportId")
    except (json.JSONDecodeError, AttributeError):
        return None
    return str(value) if value is not None else None


def parse_header(rows: list[list[str]], path: Path) -> Header:
    if rows and [c.strip().lower() for c in rows[0][:3]] == ["quartet", "position", "image_file"]:
        raise CspineError(f"{path} is a pack's answer_key.csv, not a Qualtrics response export")
    if len(rows) >= 3 and sum(_import_id(c) is not None for c in rows[2]) >= max(1, len(rows[2]) // 2):
        width = len(rows[0])
        return Header("qualtrics-3-header", [c.strip() for c in rows[0]],
                      [_import_id(c) for c in rows[2]] + [None] * (width - len(rows[2])),
                      [c.strip() for c in rows[1]], 3)
    if len(rows) >= 2 and rows[0] and rows[0][0].strip() == "V1" and "ResponseID" in [c.strip() for c in rows[1]]:
        return Header("qualtrics-legacy-2-header", [c.strip() for c in rows[0]], [None] * len(rows[0]),
                      [c.strip() for c in rows[1]], 2)
    first = " ".join(", ".join(c for c in (rows[0] if rows else [])[:6]).split())  # one line, even if a cell is not
    raise CspineError(
        f"{path} is not a Qualtrics response export: expected three header rows (export tags, question text, "
        f'{{"ImportId": ...}}) or the legacy two (V1..V10, ResponseID ...); the file starts with: {first[:120]}')


def _columns(header: Header, spec: PackSpec, path: Path) -> tuple[dict[str, int | None], dict, dict]:
    meta = {k: header.find(tag, iid, label) for k, (tag, iid, label) in META.items()}
    meta["rater_code"] = header.find(RATER_CODE_TAG, f"{spec.rater_code_qid}_TEXT", RATER_CODE_TAG)
    if meta["response_id"] is None:
        raise CspineError(f"{path} has no ResponseId column; export all fields (including metadata) from Qualtrics")
    pick: dict[int, int] = {}
    rate: dict[tuple[int, int], int] = {}
    missing: list[str] = []
    for q in range(1, spec.count + 1):
        col = header.find(spec.mc_tag(q), spec.mc_qid(q))
        if col is None:
            missing.append(spec.mc_tag(q))
        else:
            pick[q] = col
        for p in range(1, 5):
            col = header.find(f"{spec.matrix_tag(q)}_{p}", f"{spec.matrix_qid(q)}_{p}")
            if col is None:
                missing.append(f"{spec.matrix_tag(q)}_{p}")
            else:
                rate[(q, p)] = col
    if missing:
        questions = [n for n in header.names if re.match(r"^Q\d", n)][:6]
        raise CspineError(
            f"{path} does not fit pack {spec.pack_id}: {len(missing)} of its columns are missing "
            f"({', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''}); the file's question columns start "
            f"{', '.join(questions) or '(none)'}. Export the responses of the survey imported from this pack's "
            "upload/survey.qsf, or give the right --pack")
    extra = sorted({int(m.group(1)) for n in header.names if (m := re.match(r"^Q(\d+)_pick$", n))} -
                   set(range(1, spec.count + 1)))
    if extra:
        raise CspineError(f"{path} has questions for quartet(s) {extra[:5]} but pack {spec.pack_id} has "
                          f"{spec.count} quartets; give the pack this survey was built from")
    return meta, pick, rate


def _column_name(header: Header, col: int) -> str:
    """The export tag of a column, or its ImportId when row 1 is shorter than row 3 (a damaged header)."""
    if col < len(header.names) and header.names[col]:
        return header.names[col]
    return header.import_ids[col] or f"column {col + 1}"


def _cell(cells: list[str], col: int | None) -> str:
    return cells[col].strip() if col is not None and col < len(cells) else ""


def _pick_value(value: str) -> int | None:
    if value.isdigit() and 1 <= int(value) <= 4:
        return int(value)
    m = TAG_RE.match(re.sub(r"<[^>]*>", " ", value))
    return LETTERS.index(m.group(1).upper()) + 1 if m else None


def _rating_value(value: str) -> int | None:
    m = RATING_RE.match(value)
    return int(m.group(1)) if m else None


def _row_status(cells: list[str], meta: dict[str, int | None]) -> str:
    channel = _cell(cells, meta["channel"]).lower()
    status = _cell(cells, meta["status"]).lower()
    if channel == "preview" or "preview" in status or STATUS_CODES.get(status) == "preview":
        return "preview"
    if channel == "test" or "test" in status or STATUS_CODES.get(status) == "test":
        return "test"
    if "spam" in status or STATUS_CODES.get(status) == "spam":
        return "spam"
    finished = _cell(cells, meta["finished"]).lower()
    if finished in TRUE_WORDS:
        return "used"
    if finished in FALSE_WORDS:
        return "incomplete"
    return "used" if _cell(cells, meta["progress"]) == "100" else "incomplete"


def read_responses(path: Path | str, spec: PackSpec) -> tuple[Header, list[list[str]], list[Response], str, str]:
    """Parse and check a whole export against a pack (nothing is written). Raises CspineError if it does not fit."""
    path = Path(path).expanduser()
    rows, sha = _read_rows(path)
    header = parse_header(rows, path)
    meta, pick_cols, rate_cols = _columns(header, spec, path)
    kinds: set[str] = set()
    out = []
    for idx, cells in enumerate(rows[header.n_rows:]):
        rid = _cell(cells, meta["response_id"]) or f"row{idx + 1}"
        code = next((c for c in (_cell(cells, meta[k]) for k in ("rater_code", "email", "external"))
                     if c and not is_seen_unanswered(c)), "")
        resp = Response(row_index=idx, cells=cells, response_id=rid, label=code or rid,
                        recorded=_cell(cells, meta["recorded"]), status=_row_status(cells, meta))
        line = header.n_rows + idx + 1
        for q, col in pick_cols.items():
            raw = _cell(cells, col)
            if not raw:
                resp.missing += 1
                continue
            if is_seen_unanswered(raw):
                resp.seen_unanswered.append((q, "pick"))
                continue
            value = _pick_value(raw)
            if value is None:
                if resp.status != "used":
                    continue  # a preview's odd answer does not make the file wrong
                raise CspineError(f"{path} line {line}, column {_column_name(header, col)}: {raw[:40]!r} is not "
                                  "a choice A-D (1-4); was the survey's pick question edited after export from "
                                  "the pack?")
            kinds.add("numeric" if raw.isdigit() else "choice text")
            resp.picks[q] = value
        for (q, p), col in rate_cols.items():
            raw = _cell(cells, col)
            if not raw:
                resp.missing += 1
                continue
            if is_seen_unanswered(raw):
                resp.seen_unanswered.append((q, f"rate_{p}"))
                continue
            value = _rating_value(raw)
            if value is None:
                if resp.status != "used":
                    continue
                raise CspineError(f"{path} line {line}, column {_column_name(header, col)}: {raw[:40]!r} is not a "
                                  "rating 1-4; were the matrix scale points or their recode values changed?")
            kinds.add("numeric" if raw.isdigit() else "choice text")
            resp.ratings[(q, p)] = value
        row = header.row_mapping(cells)
        resp.rater_info = questionnaire.read_rater_info(row, spec.questionnaire_qid if spec.questionnaire else None)
        resp.seen_unanswered += [(0, tag) for tag in resp.rater_info["seen_unanswered"]]
        if spec.free_text:
            for q in range(1, spec.count + 1):
                text = questionnaire.read_free_text(row, q, spec.cue_qid(q))
                if text is not None:
                    resp.comments[q] = text
        out.append(resp)
    values = "mixed" if len(kinds) > 1 else (kinds.pop() if kinds else "none")
    return header, rows, out, sha, values


def import_ratings(study: Study, path: Path | str, pack: str | Path | None = None, *,
                   simulated: bool = False) -> dict[str, Any]:
    """Import one Qualtrics export into the study; returns the summary (also stored in rating_imports)."""
    from core.reader_study.pack import load_checked_pack  # imported on use: loads numpy, PIL (start-up cost)

    path = Path(path).expanduser()
    spec = load_checked_pack(study, pack)  # a pack edited by hand since export is refused
    header, rows, responses, sha, values = read_responses(path, spec)
    if previous := previous_import(study, spec.pack_id, sha):
        return previous
    kept, new_flags, flags = keep_first_responses(study, spec, responses)
    if header.find(RATER_CODE_TAG, f"{spec.rater_code_qid}_TEXT", RATER_CODE_TAG) is None:
        flags.append("no rater_code column: each response counts as its own rater (repeat raters cannot be seen)")
    for resp in kept.values():
        if resp.missing:
            new_flags.setdefault(rater_id(spec, resp.response_id), {})["missing_answers"] = resp.missing
            flags.append(f"rater {resp.label!r} left {resp.missing} answers empty (forced response off?)")
        trials = [u for u in resp.seen_unanswered if u[0]]
        if trials:
            new_flags.setdefault(rater_id(spec, resp.response_id), {})["seen_unanswered"] = len(trials)
            flags.append(f"rater {resp.label!r} saw {len(trials)} questions and left them unanswered (-99); they "
                         "are counted, not scored")
        for problem in resp.rater_info.get("problems", []):
            new_flags.setdefault(rater_id(spec, resp.response_id), {}).setdefault("questionnaire", []).append(problem)
            flags.append(f"rater {resp.label!r}: {problem} (stored as not given)")

    import_id = f"ratings-{datetime.now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    excluded = {reason: sum(1 for r in responses if r.status == reason) for reason in EXCLUSION_REASONS}
    summary = {"responses": len(responses), "used": len(kept), "excluded": excluded, "import_id": import_id,
               "pack_id": spec.pack_id, "file": str(path), "format": header.fmt, "values": values,
               "raters": [r.label for r in kept.values()], "flags": flags,
               "seen_unanswered": sum(len(r.seen_unanswered) for r in kept.values()),
               "comments": sum(len(r.comments) for r in kept.values()),
               "questionnaire": sum(1 for r in kept.values() if r.rater_info.get("specialty")
                                    or r.rater_info.get("years") is not None),
               "simulated_raters": sum(1 for r in kept.values() if _is_simulated(r, simulated))}
    with study.store.connect() as tx:
        store_import(tx, summary, path=path, sha=sha, header=header, rows=rows, responses=responses)
        for resp in kept.values():
            rid = rater_id(spec, resp.response_id)
            sim = _is_simulated(resp, simulated)
            info = resp.rater_info
            tx.execute("INSERT INTO raters (id, pack_id, response_id, label, import_id, simulated, flags, specialty, "
                       "specialty_other, years_experience) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       [rid, spec.pack_id, resp.response_id, resp.label, import_id, sim,
                        json.dumps(new_flags.pop(rid, {})), info.get("specialty"), info.get("specialty_other"),
                        info.get("years")])
            tx.executemany("INSERT INTO trial_comments (pack_id, rater_id, trial, text) VALUES (?, ?, ?, ?)",
                           [[spec.pack_id, rid, q, text] for q, text in sorted(resp.comments.items())])
            tx.executemany("INSERT INTO seen_unanswered (pack_id, rater_id, trial, question) VALUES (?, ?, ?, ?)",
                           [[spec.pack_id, rid, q, what] for q, what in sorted(set(resp.seen_unanswered))])
            tx.executemany("INSERT INTO identifications (pack_id, rater_id, quartet, chosen_position) "
                           "VALUES (?, ?, ?, ?)", [[spec.pack_id, rid, q, p] for q, p in sorted(resp.picks.items())])
            tx.executemany("INSERT INTO ratings (pack_id, rater_id, quartet, position, rating) VALUES (?, ?, ?, ?, ?)",
                           [[spec.pack_id, rid, q, p, v] for (q, p), v in sorted(resp.ratings.items())])
        for rid, f in new_flags.items():  # flags on raters kept by an earlier import
            tx.execute("UPDATE raters SET flags = ? WHERE id = ?", [json.dumps(f), rid])
    return summary


def previous_import(study: Study, pack_id: str, sha: str) -> dict[str, Any] | None:
    """The summary of an earlier import of the same file (by its hash) into this pack, or None."""
    previous = study.store.query_one("SELECT id, summary FROM rating_imports WHERE pack_id = ? AND file_sha256 = ?",
                                     [pack_id, sha])
    if previous:
        return {**json.loads(previous["summary"]), "already_imported_as": previous["id"]}
    return None


def keep_first_responses(study: Study, spec: Any, responses: list[R]
                         ) -> tuple[dict[str, R], dict[str, dict[str, Any]], list[str]]:
    """(kept by rater code, rater id -> flags to store, flag lines): each rater's first finished response.

    Both designs' imports: a response already stored is marked "already_imported", a later one of a rater code
    seen before (in this file or an earlier import) "duplicate_rater", flagged on the rater that is kept.
    """
    known = study.store.query("SELECT id, response_id, label, flags FROM raters WHERE pack_id = ?", [spec.pack_id])
    known_ids = {r["response_id"] for r in known}
    by_label: dict[str, dict[str, Any]] = {r["label"].casefold(): r for r in known if r["label"]}
    flags: list[str] = []
    new_flags: dict[str, dict[str, Any]] = {}  # rater id -> flags to store
    kept: dict[str, R] = {}
    candidates = sorted((r for r in responses if r.status == "used"), key=lambda r: (r.recorded, r.row_index))
    for resp in candidates:
        key = resp.label.casefold()
        if resp.response_id in known_ids:
            resp.status = "already_imported"
        elif key in by_label or key in kept:
            resp.status = "duplicate_rater"
            first = by_label.get(key) or {"id": rater_id(spec, kept[key].response_id), "flags": None}
            f = new_flags.setdefault(first["id"], json.loads(first["flags"]) if first.get("flags") else {})
            f.setdefault("duplicate_responses", []).append(resp.response_id)
            flags.append(f"rater {resp.label!r} answered more than once: kept the first finished response, "
                         f"excluded {resp.response_id}")
        else:
            kept[key] = resp
    return kept, new_flags, flags


def store_import(tx: Any, summary: dict[str, Any], *, path: Path, sha: str, header: Header,
                 rows: list[list[str]], responses: list[Any]) -> None:
    """Insert the import's row and every raw row of the file (header rows with negative indexes) in `tx`."""
    import_id = summary["import_id"]
    tx.execute("INSERT INTO rating_imports (id, pack_id, file, file_sha256, format, summary) VALUES (?,?,?,?,?,?)",
               [import_id, summary["pack_id"], str(path.resolve()), sha, header.fmt, json.dumps(summary)])
    raw = [[import_id, -header.n_rows + i, json.dumps({"header": True, "cells": rows[i]})]
           for i in range(header.n_rows)]
    raw += [[import_id, r.row_index, json.dumps({"cells": r.cells, "response_id": r.response_id,
                                                 "status": r.status})] for r in responses]
    tx.executemany("INSERT INTO raw_responses (import_id, row_index, data) VALUES (?, ?, ?)", raw)


def _is_simulated(resp: Response, simulated: bool) -> bool:
    return simulated or resp.label.startswith("simulated-rater-")


def rater_id(spec: PackSpec, response_id: str) -> str:
    return f"{spec.pack_id}/{response_id}"


def rater_count(study: Study, pack_id: str | None = None) -> int:
    """How many raters (imported and simulated) the study holds for one pack, or over all packs."""
    return int(study.store.scalar("SELECT count(*) FROM raters" + (" WHERE pack_id = ?" if pack_id else ""),
                                  [pack_id] if pack_id else None) or 0)


def list_imports(study: Study, pack_id: str | None = None) -> list[dict[str, Any]]:
    rows = study.store.query("SELECT id, pack_id, file, format, summary, imported_at FROM rating_imports "
                             + ("WHERE pack_id = ? " if pack_id else "") + "ORDER BY imported_at, id",
                             [pack_id] if pack_id else None)
    for r in rows:
        r["summary"] = json.loads(r["summary"]) if r["summary"] else {}
    return rows
