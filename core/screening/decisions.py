"""Screening synthetic images for implausible anatomy: the reviewer's queue, decisions, undo, flips.

The paper's authors reviewed every generated image and excluded gross anatomical abnormalities (section 2.3,
Table S1). Here each reviewer screens independently; every action is an event in ``review_events`` (with a
unique ``event_id``) and the current decision per image and reviewer is the row in ``reviews``.

Crash safety: the TUI appends each action to a per-process journal file (:class:`DecisionJournal`) before it
is written to the database in a background thread; :func:`replay_journals` re-applies whatever did not reach
the database (idempotent by event id), so a crash or an SSH drop loses nothing.

Undo walks back the reviewer's own events, newest first; a batch (a grid page's "accept the rest") is one
step. A flip mirrors the stored image: the mirrored file is written next to the original as
``<name>.flipped.png`` and the row points at it, so nothing is overwritten and undo points back.

The reasons a reviewer can give are core/screening/reasons.py; the final decision rule, counts (Table S1),
agreement and adjudication are core/screening/rules.py (which imports nothing from here). Both are
re-exported here (``REASONS``, ``final_decisions``, ``accepted_image_ids``, ...).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

from PIL import Image

from core.errors import CspineError
from core.files import sha256_file
from core.study import Study
from core.store.database import Tx
from core.screening.reasons import (  # re-exported: the screens take the reasons from here
    DEFECT_REASON, NOTE_REQUIRED, REASON_BY_CODE, REASON_BY_KEY, REASONS, Reason, reason_code,
)
from core.screening.rules import (  # re-exported: one rule for status, release and reader study
    RULES, accepted_image_ids, adjudicate, agreement, checkpoint_counts, disagreements, final_decisions,
    final_rule, remove_adjudication, reviewer_summary, table_s1,
)

DECISIONS = ("accept", "reject")
ACTIONS = DECISIONS + ("flip", "undo")
ORDERS = ("index", "prescreen")


# -- the queue ---------------------------------------------------------------------------------------------
@dataclass
class QueueItem:
    """One synthetic image with its facts and the current reviewer's decision (None = not reviewed)."""
    id: str
    run_id: str
    run_name: str
    run_source: str
    idx: int
    seed: int | None
    path: str
    sha256: str
    flipped: bool
    checkpoint_step: int | None
    sampler: str | None
    steps: int | None
    weights: str | None
    prescreen: float | None = None
    decision: str | None = None
    reason: str | None = None
    note: str | None = None
    # What a conditional image was generated for ({"attributes": ..., "keypoints": ...}); None otherwise.
    condition: dict[str, Any] | None = None

    @property
    def checkpoint_label(self) -> str:
        return str(self.checkpoint_step) if self.checkpoint_step is not None else f"external:{self.run_name}"


def load_queue(study: Study, reviewer: str, *, run_id: str | None = None, checkpoint_step: int | None = None,
               order: str = "index", tx: Tx | None = None) -> list[QueueItem]:
    """Every synthetic image matching the filters, in screening order, with `reviewer`'s decision."""
    if tx is None:
        with study.store.connect() as tx:
            return load_queue(study, reviewer, run_id=run_id, checkpoint_step=checkpoint_step, order=order, tx=tx)
    if order not in ORDERS:
        raise CspineError(f"unknown queue order {order!r}; use one of {', '.join(ORDERS)}")
    where, params = ["TRUE"], [reviewer]
    if run_id is not None:
        where.append("s.run_id = ?")
        params.append(run_id)
    if checkpoint_step is not None:
        where.append("r.checkpoint_step = ?")
        params.append(int(checkpoint_step))
    by_index = "r.checkpoint_step NULLS LAST, r.created_at, r.name, s.idx"
    order_sql = by_index if order == "index" else f"p.score DESC NULLS LAST, {by_index}"
    rows = tx.query(
        f"""
        SELECT s.id, s.run_id, r.name AS run_name, r.source AS run_source, s.idx, s.seed, s.path, s.sha256,
               s.flipped, r.checkpoint_step, r.sampler, r.steps, r.weights, p.score AS prescreen,
               v.decision, v.reason, v.note, s.condition
        FROM synthetic_images s JOIN synthetic_runs r ON r.id = s.run_id
        LEFT JOIN reviews v ON v.image_id = s.id AND v.reviewer = ?
        LEFT JOIN prescreen_scores p ON p.image_id = s.id
        WHERE {' AND '.join(where)} ORDER BY {order_sql}
        """, params)
    for row in rows:
        row["condition"] = json.loads(row["condition"]) if row["condition"] else None
    return [QueueItem(**row) for row in rows]


def resume_position(items: list[QueueItem]) -> int:
    """Where a reviewer continues: the first image they have not decided (the last one when all are done)."""
    for i, item in enumerate(items):
        if item.decision is None:
            return i
    return max(0, len(items) - 1)


def filter_choices(study: Study, tx: Tx | None = None) -> dict[str, list[Any]]:
    """Runs and checkpoints the queue can be filtered by, and whether pre-screen scores exist."""
    if tx is None:
        with study.store.connect() as tx:
            return filter_choices(study, tx)
    runs = tx.query("SELECT r.id, r.name, r.checkpoint_step, count(s.id) AS n FROM synthetic_runs r "
                    "JOIN synthetic_images s ON s.run_id = r.id GROUP BY ALL "
                    "ORDER BY r.checkpoint_step NULLS LAST, r.name")
    steps = tx.column("SELECT DISTINCT r.checkpoint_step FROM synthetic_runs r JOIN synthetic_images s "
                      "ON s.run_id = r.id WHERE r.checkpoint_step IS NOT NULL ORDER BY 1")
    scored = bool(tx.scalar("SELECT count(*) FROM prescreen_scores"))
    return {"runs": runs, "checkpoints": steps, "prescreen": scored}


def screen_state(study: Study, reviewer: str, filters: dict[str, Any]) -> dict[str, Any]:
    """Everything the screening screen loads, in one transaction: the queue, the filter choices, the other
    reviewers' decisions and Table S1."""
    with study.store.connect() as tx:
        items = load_queue(study, reviewer, tx=tx, **filters)
        choices = filter_choices(study, tx)
        others: dict[str, list[tuple[str, str, str | None]]] = {}
        for row in tx.query("SELECT image_id, reviewer, decision, reason FROM reviews WHERE reviewer <> ? "
                            "ORDER BY reviewer", [reviewer]):
            others.setdefault(row["image_id"], []).append((row["reviewer"], row["decision"], row["reason"]))
        table = table_s1(study, tx=tx)
    return {"items": items, "choices": choices, "others": others, "table": table}


def reviewer_decisions(study: Study, image_id: str) -> list[dict[str, Any]]:
    """Every reviewer's current decision on one image (for the facts panel)."""
    return study.store.query("SELECT reviewer, decision, reason, note, simulated, decided_at FROM reviews "
                             "WHERE image_id = ? ORDER BY reviewer", [image_id])


# -- events ------------------------------------------------------------------------------------------------
def _now() -> str:
    return datetime.now().isoformat(timespec="microseconds")


@dataclass
class ReviewEvent:
    """One action of a reviewer. `image_id` is None for undo (the target is found when it is applied)."""
    action: str
    reviewer: str
    image_id: str | None = None
    reason: str | None = None
    note: str | None = None
    batch: str | None = None
    simulated: bool = False
    event_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    at: str = field(default_factory=_now)

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise CspineError(f"unknown screening action {self.action!r}; use one of {', '.join(ACTIONS)}")
        if not str(self.reviewer).strip():
            raise CspineError("a screening decision needs a reviewer name (--reviewer)")
        if self.action != "undo" and not self.image_id:
            raise CspineError(f"a {self.action} needs an image id")
        if self.action == "accept" and self.reason:
            raise CspineError(f"an accepted image has no rejection reason (image {self.image_id})")
        if self.action == "reject":
            self.reason = reason_code(self.reason)
            if self.reason in NOTE_REQUIRED and not (self.note or "").strip():
                raise CspineError(f"reason {self.reason!r} needs a note saying what is wrong (image {self.image_id})")


@dataclass
class Applied:
    """What one event changed: the images touched and `reviewer`'s decision on each now."""
    event_id: str
    action: str
    images: dict[str, dict[str, Any] | None] = field(default_factory=dict)   # image -> decision row or None
    flips: dict[str, dict[str, Any]] = field(default_factory=dict)           # image -> {path, sha256, flipped}
    undone: str | None = None          # the group an undo reverted
    skipped: bool = False              # already applied (replay)


def decide(study: Study, image_id: str, reviewer: str, decision: str, *, reason: str | None = None,
           note: str | None = None, simulated: bool = False, batch: str | None = None) -> Applied:
    """Record one decision now (one transaction)."""
    return apply_events(study, [ReviewEvent(decision, reviewer, image_id, reason, note, batch, simulated)])[0]


def decide_many(study: Study, decisions: Iterable[tuple[str, str, str | None, str | None]], reviewer: str, *,
                simulated: bool = False, batch: str | None = None) -> list[Applied]:
    """Record (image_id, decision, reason, note) tuples in one transaction, optionally as one undo batch."""
    events = [ReviewEvent(d, reviewer, image_id, reason, note, batch, simulated)
              for image_id, d, reason, note in decisions]
    return apply_events(study, events)


def undo(study: Study, reviewer: str) -> Applied:
    """Revert the reviewer's newest decision, flip or batch that is not undone yet."""
    return apply_events(study, [ReviewEvent("undo", reviewer)])[0]


def flip(study: Study, image_id: str, reviewer: str) -> Applied:
    """Mirror an image's orientation (recorded as the reviewer's event; undo mirrors it back)."""
    return apply_events(study, [ReviewEvent("flip", reviewer, image_id)])[0]


def apply_events(study: Study, events: list[ReviewEvent]) -> list[Applied]:
    """Apply events in order in one transaction; events already in the database are skipped (replay)."""
    if not events:
        return []
    for e in events:  # mirrored files are written before the transaction, which then switches to them
        if e.action == "flip":
            _prepare_flip(study, e.image_id)
    out: list[Applied] = []
    with study.store.connect() as tx:
        ids = [e.event_id for e in events]
        done = set(tx.column("SELECT event_id FROM review_events WHERE event_id IN "
                             f"({', '.join('?' * len(ids))})", ids))
        image_ids = sorted({e.image_id for e in events if e.image_id})
        if image_ids:
            known = set(tx.column(f"SELECT id FROM synthetic_images WHERE id IN ({', '.join('?' * len(image_ids))})",
                                  image_ids))
            missing = [i for i in image_ids if i not in known]
            if missing:
                raise CspineError(f"unknown synthetic image {missing[0]!r}" +
                                  (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "") +
                                  "; check the image ids against `cspine-tui status` / the export")
        seq = int(tx.scalar("SELECT coalesce(max(seq), 0) FROM review_events"))
        for event in events:
            if event.event_id in done:
                out.append(Applied(event.event_id, event.action, skipped=True))
                continue
            seq += 1
            if event.action in DECISIONS:
                out.append(_apply_decision(tx, event, seq))
            elif event.action == "flip":
                out.append(_apply_flip(study, tx, event, seq))
            else:
                out.append(_apply_undo(study, tx, event, seq))
            done.add(event.event_id)
    return out


def _insert_event(tx: Tx, event: ReviewEvent, seq: int, *, image_id: str, undoes: str | None = None) -> None:
    tx.execute("INSERT INTO review_events (seq, image_id, reviewer, action, reason, note, recorded_at, event_id, "
               "batch, undoes, simulated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
               [seq, image_id, event.reviewer, event.action, event.reason, event.note, event.at, event.event_id,
                event.batch, undoes, event.simulated])


def _upsert_review(tx: Tx, image_id: str, reviewer: str, decision: str, reason: str | None, note: str | None,
                   simulated: bool, at: Any) -> dict[str, Any]:
    tx.execute("INSERT INTO reviews (image_id, reviewer, decision, reason, note, simulated, decided_at) "
               "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (image_id, reviewer) DO UPDATE SET "
               "decision = excluded.decision, reason = excluded.reason, note = excluded.note, "
               "simulated = excluded.simulated, decided_at = excluded.decided_at",
               [image_id, reviewer, decision, reason, note, simulated, at])
    return {"decision": decision, "reason": reason, "note": note, "simulated": simulated}


def _apply_decision(tx: Tx, event: ReviewEvent, seq: int) -> Applied:
    assert event.image_id is not None
    row = _upsert_review(tx, event.image_id, event.reviewer, event.action, event.reason, event.note,
                         event.simulated, event.at)
    _insert_event(tx, event, seq, image_id=event.image_id)
    return Applied(event.event_id, event.action, images={event.image_id: row})


# -- flips -------------------------------------------------------------------------------------------------
_FLIPPED = re.compile(r"\.flipped(\.[^.]+)$")


def _flip_target(path: str) -> str:
    """images/x/0001.png <-> images/x/0001.flipped.png"""
    if _FLIPPED.search(path):
        return _FLIPPED.sub(r"\1", path)
    stem, dot, ext = path.rpartition(".")
    return f"{stem}.flipped.{ext}" if dot else f"{path}.flipped"


def _prepare_flip(study: Study, image_id: str | None) -> None:
    """Write the mirrored file for an image's next flip if it is not there yet (outside any transaction)."""
    row = study.store.query_one("SELECT path FROM synthetic_images WHERE id = ?", [image_id])
    if row is None:
        raise CspineError(f"unknown synthetic image {image_id!r}")
    _write_mirror(study, row["path"])


def _write_mirror(study: Study, rel: str) -> Path:
    src, dst = study.abs(rel), study.abs(_flip_target(rel))
    if dst.exists():
        return dst
    try:
        with Image.open(src) as img:
            mirrored = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
            mirrored.save(tmp, format=img.format or "PNG")
    except (OSError, ValueError) as exc:
        raise CspineError(f"cannot mirror {src}: {exc}; check the file exists and is an image") from exc
    os.replace(tmp, dst)
    return dst


def _toggle_flip(study: Study, tx: Tx, image_id: str) -> dict[str, Any]:
    row = tx.query_one("SELECT path, flipped, condition FROM synthetic_images WHERE id = ?", [image_id])
    assert row is not None
    target = _flip_target(row["path"])
    dst = study.abs(target)
    if not dst.exists():  # normally written by _prepare_flip; small, so writing it here is fine
        _write_mirror(study, row["path"])
    state = {"path": target, "sha256": sha256_file(dst), "flipped": not row["flipped"]}
    tx.execute("UPDATE synthetic_images SET path = ?, sha256 = ?, flipped = ?, condition = ? WHERE id = ?",
               [state["path"], state["sha256"], state["flipped"], _mirrored_condition(row["condition"], dst),
                image_id])
    return state


def _mirrored_condition(raw: str | None, image: Path) -> str | None:
    """A conditional image's stored keypoints follow its pixels: x -> width - x (the same rule as
    core/ddpm/conditioning.py mirror_condition, which this layer may not import)."""
    condition = json.loads(raw) if raw else None
    if not condition or not condition.get("keypoints"):
        return raw
    with Image.open(image) as img:
        width = img.size[0]
    condition["keypoints"] = {p: [round(width - float(x), 4), float(y)] for p, (x, y) in
                              condition["keypoints"].items()}
    return json.dumps(condition)


def _apply_flip(study: Study, tx: Tx, event: ReviewEvent, seq: int) -> Applied:
    assert event.image_id is not None
    state = _toggle_flip(study, tx, event.image_id)
    _insert_event(tx, event, seq, image_id=event.image_id)
    return Applied(event.event_id, "flip", flips={event.image_id: state})


# -- undo --------------------------------------------------------------------------------------------------
def _group(row: dict[str, Any]) -> str:
    return row["batch"] or row["event_id"] or f"seq:{row['seq']}"


def _apply_undo(study: Study, tx: Tx, event: ReviewEvent, seq: int) -> Applied:
    rows = tx.query("SELECT seq, event_id, batch, action, image_id, reason, note, undoes, simulated, recorded_at "
                    "FROM review_events WHERE reviewer = ? ORDER BY seq", [event.reviewer])
    undone = {r["undoes"] for r in rows if r["action"] == "undo" and r["undoes"]}
    active = [r for r in rows if r["action"] != "undo" and _group(r) not in undone]
    if not active:
        return Applied(event.event_id, "undo", skipped=True)  # nothing to undo: not recorded
    target = _group(active[-1])
    group = [r for r in active if _group(r) == target]
    remaining = [r for r in active if _group(r) != target]
    applied = Applied(event.event_id, "undo", undone=target)
    for image_id in dict.fromkeys(r["image_id"] for r in group if r["action"] in DECISIONS):
        before = [r for r in remaining if r["image_id"] == image_id and r["action"] in DECISIONS]
        if before:
            last = before[-1]
            applied.images[image_id] = _upsert_review(tx, image_id, event.reviewer, last["action"], last["reason"],
                                                      last["note"], bool(last["simulated"]), last["recorded_at"])
        else:
            tx.execute("DELETE FROM reviews WHERE image_id = ? AND reviewer = ?", [image_id, event.reviewer])
            applied.images[image_id] = None
    for r in reversed(group):
        if r["action"] == "flip":
            applied.flips[r["image_id"]] = _toggle_flip(study, tx, r["image_id"])
    _insert_event(tx, event, seq, image_id=group[0]["image_id"], undoes=target)
    return applied


# -- the journal -------------------------------------------------------------------------------------------
def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:60] or "reviewer"


def journal_dir(study: Study) -> Path:
    return study.cache_dir / "screening-journal"


class DecisionJournal:
    """Append-only file of this process's screening events, written before the database (crash safety)."""

    def __init__(self, study: Study, reviewer: str) -> None:
        folder = journal_dir(study)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{_safe(reviewer)}-{os.getpid()}-{uuid.uuid4().hex[:6]}.jsonl"
        self._fh = open(self.path, "a", encoding="utf-8")

    def append(self, event: ReviewEvent) -> None:
        # One complete line per write; flushed to the OS so a crash of this process loses nothing.
        self._fh.write(json.dumps(asdict(event)) + "\n")
        self._fh.flush()

    def close(self, *, applied: bool) -> None:
        """Close; delete the file when every event in it reached the database."""
        self._fh.close()
        if applied:
            self.path.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def replay_journals(study: Study) -> int:
    """Apply journal events that never reached the database (a crash); returns how many were applied.

    Journals of live processes are replayed too (idempotent) but only dead processes' files are deleted.
    """
    folder = journal_dir(study)
    if not folder.is_dir():
        return 0
    applied = 0
    for path in sorted(folder.glob("*.jsonl"), key=lambda p: p.stat().st_mtime):
        events = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                events.append(ReviewEvent(**json.loads(line)))
            except (json.JSONDecodeError, TypeError):
                continue  # a torn last line of a crashed write: that event never happened
        try:
            applied += sum(1 for a in apply_events(study, events) if not a.skipped)
        except CspineError:
            continue  # e.g. an image deleted since; leave the file for a person to look at
        pid = path.stem.rsplit("-", 2)[-2]
        if pid.isdigit() and not _pid_alive(int(pid)):
            path.unlink(missing_ok=True)
    return applied


__all__ = [
    "Reason", "REASONS", "REASON_BY_KEY", "REASON_BY_CODE", "NOTE_REQUIRED", "DEFECT_REASON", "RULES", "QueueItem",
    "ReviewEvent",
    "Applied", "DecisionJournal", "load_queue", "resume_position", "filter_choices", "reviewer_decisions",
    "decide", "decide_many", "undo", "flip", "apply_events", "replay_journals", "reason_code",
    "final_rule", "final_decisions", "accepted_image_ids", "checkpoint_counts", "table_s1", "agreement",
    "disagreements", "adjudicate", "remove_adjudication", "reviewer_summary",
]
