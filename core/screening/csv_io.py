"""Screening decisions as CSV: export every reviewer's decisions, import decisions made elsewhere.

An import is validated as a whole before anything is written (one problem = nothing imported) and is
idempotent: a row equal to the stored decision changes nothing; a new or changed one is recorded as an
event of that reviewer (one undo batch per import file and reviewer), so the audit trail says where it came from.
"""

from __future__ import annotations

import csv
import hashlib
import uuid
from pathlib import Path
from typing import Any

from core.errors import CspineError
from core.study import Study
from core.screening.reasons import NOTE_REQUIRED, reason_code

EXPORT_COLUMNS = ("image_id", "run", "checkpoint", "idx", "seed", "sha256", "reviewer", "decision", "reason",
                  "note", "simulated", "decided_at")
REQUIRED = ("image_id", "reviewer", "decision")
_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"", "0", "false", "no", "n", "f"}


def export_reviews(study: Study, path: Path | str, *, reviewer: str | None = None) -> int:
    """Write the current decisions (all reviewers, or one) to a CSV; returns the number of rows."""
    path = Path(path)
    params: list[Any] = []
    where = ""
    if reviewer:
        where, params = "WHERE v.reviewer = ?", [reviewer]
    rows = study.store.query(
        f"""SELECT v.image_id, r.name AS run, r.checkpoint_step AS checkpoint, s.idx, s.seed, s.sha256, v.reviewer,
                   v.decision, v.reason, v.note, v.simulated, strftime(v.decided_at, '%Y-%m-%dT%H:%M:%S') AS decided_at
            FROM reviews v JOIN synthetic_images s ON s.id = v.image_id JOIN synthetic_runs r ON r.id = s.run_id
            {where} ORDER BY r.checkpoint_step NULLS LAST, r.name, s.idx, v.reviewer""", params)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=EXPORT_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row[k] is None else row[k]) for k in EXPORT_COLUMNS})
    tmp.replace(path)
    return len(rows)


def _bool(value: str, where: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise CspineError(f"{where}: simulated must be true/false, not {value!r}")


def read_decisions(study: Study, path: Path | str, *, simulated: bool | None = None) -> list[dict[str, Any]]:
    """Parse and validate a decisions CSV against the study; raises one CspineError naming the first problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise CspineError(f"no such file {path}; give the CSV written by `reviews --export`") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CspineError(f"cannot read {path}: {exc}") from exc
    try:  # parsed whole first: a malformed CSV (a field over csv's 128 KiB limit) is one clear error
        reader = csv.DictReader(text.splitlines())
        columns = [c.strip() for c in (reader.fieldnames or [])]
        parsed = list(reader)
    except csv.Error as exc:
        raise CspineError(f"{path} is not a readable CSV ({exc}); give the CSV written by `reviews --export`") \
            from exc
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise CspineError(f"{path} lacks the column(s) {', '.join(missing)}; a decisions CSV needs "
                          f"{', '.join(REQUIRED)} (optional: reason, note, simulated, sha256)")
    images = {r["id"]: r["sha256"] for r in study.store.query("SELECT id, sha256 FROM synthetic_images")}
    problems: list[str] = []
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for line, raw in enumerate(parsed, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
        where = f"{path.name} line {line}"
        try:
            image_id, reviewer, decision = row["image_id"], row["reviewer"], row["decision"].lower()
            if image_id not in images:
                raise CspineError(f"{where}: unknown synthetic image {image_id!r} (is the CSV from another study?)")
            if not reviewer:
                raise CspineError(f"{where}: empty reviewer")
            if decision not in ("accept", "reject"):
                raise CspineError(f"{where}: decision must be accept or reject, not {row['decision']!r}")
            if row.get("sha256") and row["sha256"] != images[image_id]:
                raise CspineError(f"{where}: image {image_id} has sha256 {row['sha256'][:12]}... in the CSV but "
                                  f"{images[image_id][:12]}... in the study (another study, or the image changed)")
            reason = reason_code(row.get("reason")) if decision == "reject" else None
            if decision == "accept" and row.get("reason"):
                raise CspineError(f"{where}: an accepted image has no rejection reason ({row['reason']!r})")
            note = row.get("note") or None
            if reason in NOTE_REQUIRED and not note:
                raise CspineError(f"{where}: reason {reason!r} needs a note")
            sim = simulated if simulated is not None else _bool(row.get("simulated", ""), where)
            record = {"image_id": image_id, "reviewer": reviewer, "decision": decision, "reason": reason,
                      "note": note, "simulated": sim}
            previous = out.get((image_id, reviewer))
            if previous is not None and previous != record:
                raise CspineError(f"{where}: a second, different decision of {reviewer} on {image_id}")
            out[(image_id, reviewer)] = record
        except CspineError as exc:
            problems.append(str(exc))
    if problems:
        more = f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})" if len(problems) > 1 else ""
        raise CspineError(f"{problems[0]}{more}; nothing was imported")
    return list(out.values())


def import_reviews(study: Study, path: Path | str, *, simulated: bool | None = None) -> dict[str, int]:
    """Import decisions (validated, idempotent); returns counts rows / recorded / unchanged."""
    from core.screening.decisions import ReviewEvent, apply_events  # imported on use: loads PIL (start-up cost)

    path = Path(path)
    records = read_decisions(study, path, simulated=simulated)
    current = {(r["image_id"], r["reviewer"]): r for r in study.store.query(
        "SELECT image_id, reviewer, decision, reason, note, simulated FROM reviews")}
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    tag = uuid.uuid4().hex[:6]  # a fresh batch per import: re-importing after an undo records anew
    events = []
    for rec in records:
        now = current.get((rec["image_id"], rec["reviewer"]))
        if now is not None and all(now[k] == rec[k] for k in ("decision", "reason", "note", "simulated")):
            continue
        events.append(ReviewEvent(rec["decision"], rec["reviewer"], rec["image_id"], rec["reason"], rec["note"],
                                  batch=f"import-{digest}-{tag}-{rec['reviewer']}", simulated=rec["simulated"]))
    for start in range(0, len(events), 2000):  # short transactions
        apply_events(study, events[start:start + 2000])
    return {"rows": len(records), "recorded": len(events), "unchanged": len(records) - len(events)}
