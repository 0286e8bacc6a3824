"""Import a Qualtrics response export (CSV) of a single-image pack's survey.

The file is read exactly as for quartets (responses.py: current three-header and legacy two-header exports,
columns by export tag or ImportId, previews / tests / spam / unfinished rows excluded and counted, a repeated
rater code keeps its first finished response, every row kept in raw_responses, the same file twice changes
nothing). Values: the confidence 1-6 (or its text "4 - possibly synthetic"), the condition answer 1/2 or
Yes/No. The rater questionnaire and the free text ("cue_007") are read by core/reader_study/questionnaire.py
and stored where the quartets' are (raters.specialty / years_experience, trial_comments). "-99" is Qualtrics'
"seen but unanswered" recode: such an answer is stored as seen, not answered (table seen_unanswered, question
``call`` or ``cond``; trial 0 for the questionnaire), counted per rater, and left out of the statistics.
"""

from __future__ import annotations

import json
import re
import secrets
from datetime import datetime
from pathlib import Path
from typing import Any

from core.errors import CspineError
from core.reader_study import questionnaire
from core.reader_study.responses import (EXCLUSION_REASONS, META, Header, _cell, _column_name, _is_simulated,
                                         _read_rows, _row_status, keep_first_responses, parse_header,
                                         previous_import, rater_id, store_import)
from core.reader_study.single_spec import CONDITION_CHOICES, SinglePackSpec
from core.reader_study.spec import RATER_CODE_TAG
from core.study import Study

CONF_RE = re.compile(r"^\s*([1-6])(?:\s*[-–:.)].*)?\s*$")


class Answers:
    """One response row's answers: trial -> {question: value}, the -99 ones, the questionnaire, the free text."""

    def __init__(self, row_index: int, cells: list[str], response_id: str, label: str, recorded: str, status: str):
        self.row_index, self.cells, self.response_id = row_index, cells, response_id
        self.label, self.recorded, self.status = label, recorded, status
        self.values: dict[int, dict[str, Any]] = {}
        self.seen: list[tuple[int, str]] = []   # (trial, question); trial 0 = the questionnaire
        self.rater_info: dict[str, Any] = {}
        self.comments: dict[int, str] = {}
        self.missing = 0


def _columns(header: Header, spec: SinglePackSpec, path: Path) -> tuple[dict[str, int | None], dict]:
    meta = {k: header.find(tag, iid, label) for k, (tag, iid, label) in META.items()}
    meta["rater_code"] = header.find(RATER_CODE_TAG, f"{spec.rater_code_qid}_TEXT", RATER_CODE_TAG)
    if meta["response_id"] is None:
        raise CspineError(f"{path} has no ResponseId column; export all fields (including metadata) from Qualtrics")
    cols: dict[tuple[int, str], int] = {}
    missing = []
    for item in spec.items:  # the free text is optional and read by questionnaire.read_free_text
        for what in ["call"] + (["cond"] if spec.asks_condition(item) else []):
            col = header.find(spec.tag(item.trial, what), spec.qid(item.trial, what))
            if col is None:
                missing.append(spec.tag(item.trial, what))
            else:
                cols[(item.trial, what)] = col
    if missing:
        questions = [n for n in header.names if re.match(r"^[QT]\d", n)][:6]
        raise CspineError(
            f"{path} does not fit single-image pack {spec.pack_id}: {len(missing)} of its columns are missing "
            f"({', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''}); the file's question columns start "
            f"{', '.join(questions) or '(none)'}. Export the responses of the survey imported from this pack's "
            "upload/survey.qsf, or give the right --pack")
    extra = sorted({int(m.group(1)) for n in header.names if (m := re.match(r"^T(\d+)_call$", n))}
                   - {i.trial for i in spec.items})
    if extra:
        raise CspineError(f"{path} has questions for image(s) {extra[:5]} but pack {spec.pack_id} has {spec.count}; "
                          "give the pack this survey was built from")
    return meta, cols


def _value(what: str, raw: str) -> Any:
    if what == "call":
        m = CONF_RE.match(raw)
        return int(m.group(1)) if m else None
    if raw.isdigit() and int(raw) in CONDITION_CHOICES:
        return CONDITION_CHOICES[int(raw)].lower()
    return raw.strip().lower() if raw.strip().lower() in ("yes", "no") else None


def read_single_responses(path: Path | str, spec: SinglePackSpec):
    """Parse and check a whole export against a single-image pack (nothing is written)."""
    path = Path(path).expanduser()
    rows, sha = _read_rows(path)
    header = parse_header(rows, path)
    meta, cols = _columns(header, spec, path)
    kinds: set[str] = set()
    out = []
    for idx, cells in enumerate(rows[header.n_rows:]):
        rid = _cell(cells, meta["response_id"]) or f"row{idx + 1}"
        code = _cell(cells, meta["rater_code"]) or _cell(cells, meta["email"]) or _cell(cells, meta["external"])
        resp = Answers(idx, cells, rid, code or rid, _cell(cells, meta["recorded"]), _row_status(cells, meta))
        for (t, what), col in cols.items():
            raw = _cell(cells, col)
            if not raw:
                resp.missing += 1
                continue
            if questionnaire.is_seen_unanswered(raw):
                resp.seen.append((t, what))
                continue
            value = _value(what, raw)
            if value is None:
                if resp.status != "used":
                    continue  # a preview's odd answer does not make the file wrong
                expected = "a confidence 1-6" if what == "call" else "Yes or No (1 or 2)"
                raise CspineError(f"{path} line {header.n_rows + idx + 1}, column {_column_name(header, col)}: "
                                  f"{raw[:40]!r} is not {expected} (or -99, seen but unanswered); were the "
                                  "survey's choices or recode values changed after export from the pack?")
            kinds.add("numeric" if raw.isdigit() else "choice text")
            resp.values.setdefault(t, {})[what] = value
        row = header.row_mapping(cells)
        resp.rater_info = questionnaire.read_rater_info(row, spec.questionnaire_qid if spec.questionnaire else None)
        resp.seen += [(0, tag) for tag in resp.rater_info["seen_unanswered"]]
        if spec.free_text:
            for item in spec.items:
                text = questionnaire.read_free_text(row, item.trial, spec.qid(item.trial, "why"))
                if text is not None:
                    resp.comments[item.trial] = text
        out.append(resp)
    values = "mixed" if len(kinds) > 1 else (kinds.pop() if kinds else "none")
    return header, rows, out, sha, values


def import_single_ratings(study: Study, path: Path | str, pack: str | Path | None = None, *,
                          simulated: bool = False) -> dict[str, Any]:
    """Import one Qualtrics export of a single-image pack; returns the summary (also in rating_imports)."""
    from core.reader_study.single_pack import load_single_pack  # imported on use: loads numpy, PIL (start-up cost)

    path = Path(path).expanduser()
    spec = load_single_pack(study, pack)  # a pack edited by hand since export is refused
    header, rows, responses, sha, values = read_single_responses(path, spec)
    if previous := previous_import(study, spec.pack_id, sha):
        return previous
    kept, new_flags, flags = keep_first_responses(study, spec, responses)
    if meta_missing := header.find(RATER_CODE_TAG, f"{spec.rater_code_qid}_TEXT", RATER_CODE_TAG) is None:
        flags.append("no rater_code column: each response counts as its own rater (repeat raters cannot be seen)")
    for resp in kept.values():
        f = new_flags.setdefault(rater_id(spec, resp.response_id), {})
        if resp.seen:
            f["seen_unanswered"] = len(resp.seen)
            flags.append(f"rater {resp.label!r}: {len(resp.seen)} questions seen but not answered (-99); counted, "
                         "left out of the statistics")
        if resp.missing:
            f["missing_answers"] = resp.missing
            flags.append(f"rater {resp.label!r} left {resp.missing} answers empty (forced response off?)")
        for problem in resp.rater_info.get("problems", []):
            f.setdefault("questionnaire", []).append(problem)
            flags.append(f"rater {resp.label!r}: {problem} (stored as not given)")

    import_id = f"ratings-{datetime.now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    excluded = {reason: sum(1 for r in responses if r.status == reason) for reason in EXCLUSION_REASONS}
    summary = {"design": "single", "responses": len(responses), "used": len(kept), "excluded": excluded,
               "import_id": import_id, "pack_id": spec.pack_id, "file": str(path), "format": header.fmt,
               "values": values, "raters": [r.label for r in kept.values()], "flags": flags,
               "seen_unanswered": sum(len(r.seen) for r in kept.values()),
               "comments": sum(len(r.comments) for r in kept.values()),
               "questionnaire": sum(1 for r in kept.values() if r.rater_info.get("specialty")
                                    or r.rater_info.get("years") is not None),
               "rater_code_column": not meta_missing,
               "simulated_raters": sum(1 for r in kept.values() if _is_simulated(r, simulated))}
    with study.store.connect() as tx:
        store_import(tx, summary, path=path, sha=sha, header=header, rows=rows, responses=responses)
        for resp in kept.values():
            rid = rater_id(spec, resp.response_id)
            info = resp.rater_info
            tx.execute("INSERT INTO raters (id, pack_id, response_id, label, import_id, simulated, flags, specialty, "
                       "specialty_other, years_experience) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       [rid, spec.pack_id, resp.response_id, resp.label, import_id, _is_simulated(resp, simulated),
                        json.dumps(new_flags.pop(rid, {})), info.get("specialty"), info.get("specialty_other"),
                        info.get("years")])
            tx.executemany("INSERT INTO single_answers (pack_id, rater_id, trial, confidence, condition_answer) "
                           "VALUES (?, ?, ?, ?, ?)", [[spec.pack_id, rid, t, v.get("call"), v.get("cond")]
                                                      for t, v in sorted(resp.values.items())])
            tx.executemany("INSERT INTO trial_comments (pack_id, rater_id, trial, text) VALUES (?, ?, ?, ?)",
                           [[spec.pack_id, rid, t, text] for t, text in sorted(resp.comments.items())])
            tx.executemany("INSERT INTO seen_unanswered (pack_id, rater_id, trial, question) VALUES (?, ?, ?, ?)",
                           [[spec.pack_id, rid, t, what] for t, what in sorted(set(resp.seen))])
        for rid, f in new_flags.items():  # flags on raters kept by an earlier import
            if f:
                tx.execute("UPDATE raters SET flags = ? WHERE id = ?", [json.dumps(f), rid])
    return summary


def load_answers(study: Study, pack_id: str, include_simulated: bool = True) -> dict[str, list[dict]]:
    """{"raters", "answers", "seen", "comments"} of a single-image pack, for the analysis."""
    with study.store.connect() as tx:
        raters = tx.query("SELECT id, label, simulated, flags, specialty, specialty_other, years_experience "
                          "FROM raters WHERE pack_id = ? " + ("" if include_simulated else "AND NOT simulated ")
                          + "ORDER BY label, id", [pack_id])
        out = {"raters": raters}
        for key, sql in (("answers", "SELECT rater_id, trial, confidence, condition_answer FROM single_answers"),
                         ("seen", "SELECT rater_id, trial, question FROM seen_unanswered"),
                         ("comments", "SELECT rater_id, trial, text FROM trial_comments")):
            out[key] = tx.query(sql + " WHERE pack_id = ? ORDER BY rater_id, trial", [pack_id])
    keep = {r["id"] for r in raters}
    return {k: v if k == "raters" else [a for a in v if a["rater_id"] in keep] for k, v in out.items()}
