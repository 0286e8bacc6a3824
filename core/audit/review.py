"""Two-reviewer judgement of an audit's top pairs: verdicts, Cohen's kappa, adjudication, exports.

Each reviewer judges every pair independently as ``memorized``, ``not`` or ``unsure`` with an optional note.
:func:`verdicts_of` returns one reviewer's own verdicts only, which is all the review screen shows, so
neither reviewer sees the other's until :func:`agreement` is asked for. The adjudication list holds every
pair on which the two disagree or either is unsure.
"""

from __future__ import annotations

import json
import csv
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from core.audit.nearest import audit_pairs, resolve_audit
from core.errors import CspineError
from core.study import Study
from core.jobs import runner
from core.screening import prescreen

VERDICTS = ("memorized", "not", "unsure")


def record_verdict(study: Study, audit_id: str, rank: int, reviewer: str, verdict: str,
                   note: str | None = None) -> None:
    verdict = (verdict or "").strip().lower()
    if verdict not in VERDICTS:
        raise CspineError(f"verdict {verdict!r} is not one of {', '.join(VERDICTS)}")
    reviewer = (reviewer or "").strip()
    if not reviewer:
        raise CspineError("a verdict needs a reviewer name (--reviewer)")
    with study.store.connect() as tx:
        if tx.scalar("SELECT count(*) FROM audit_pairs WHERE audit_id = ? AND rank = ?", [audit_id, rank]) == 0:
            raise CspineError(f"audit {audit_id} has no pair of rank {rank}")
        tx.execute("INSERT OR REPLACE INTO audit_verdicts (audit_id, rank, reviewer, verdict, note, decided_at) "
                   "VALUES (?, ?, ?, ?, ?, current_timestamp)", [audit_id, rank, reviewer, verdict, note or None])


def record_verdicts(study: Study, audit_id: str, reviewer: str,
                    verdicts: Sequence[tuple[int, str, str | None]]) -> None:
    """Many verdicts of one reviewer in one transaction: (rank, verdict, note)."""
    bad = [v for _, v, _ in verdicts if v not in VERDICTS]
    if bad:
        raise CspineError(f"verdict {bad[0]!r} is not one of {', '.join(VERDICTS)}")
    with study.store.connect() as tx:
        ranks = set(tx.column("SELECT rank FROM audit_pairs WHERE audit_id = ?", [audit_id]))
        missing = [r for r, _, _ in verdicts if r not in ranks]
        if missing:
            raise CspineError(f"audit {audit_id} has no pair of rank {missing[0]}")
        tx.executemany("INSERT OR REPLACE INTO audit_verdicts (audit_id, rank, reviewer, verdict, note, decided_at) "
                       "VALUES (?, ?, ?, ?, ?, current_timestamp)",
                       [[audit_id, r, reviewer, v, n or None] for r, v, n in verdicts])


def clear_verdict(study: Study, audit_id: str, rank: int, reviewer: str) -> None:
    study.store.execute("DELETE FROM audit_verdicts WHERE audit_id = ? AND rank = ? AND reviewer = ?",
                        [audit_id, rank, reviewer])


def verdicts_of(study: Study, audit_id: str, reviewer: str) -> dict[int, dict[str, Any]]:
    """One reviewer's own verdicts by rank (never anybody else's: the review is blinded)."""
    rows = study.store.query("SELECT rank, verdict, note FROM audit_verdicts WHERE audit_id = ? AND reviewer = ?",
                             [audit_id, reviewer])
    return {int(r["rank"]): {"verdict": r["verdict"], "note": r["note"]} for r in rows}


def reviewers_of(study: Study, audit_id: str) -> list[str]:
    """Reviewers of an audit, most verdicts first."""
    return study.store.column("SELECT reviewer FROM audit_verdicts WHERE audit_id = ? GROUP BY reviewer "
                              "ORDER BY count(*) DESC, reviewer", [audit_id])


def cohen_kappa(a: Sequence[str], b: Sequence[str], categories: Sequence[str] = VERDICTS) -> float | None:
    """Cohen's kappa of two raters' labels; None when chance agreement is 1 (both used one same category)."""
    if len(a) != len(b):
        raise ValueError("both raters must judge the same items")
    if not a:
        return None
    index = {c: i for i, c in enumerate(categories)}
    table = np.zeros((len(categories), len(categories)))
    for x, y in zip(a, b):
        table[index[x], index[y]] += 1
    n = table.sum()
    p_o = np.trace(table) / n
    p_e = float((table.sum(axis=1) / n) @ (table.sum(axis=0) / n))
    return None if p_e >= 1.0 else float((p_o - p_e) / (1.0 - p_e))


def agreement(study: Study, audit_id: str, reviewers: Sequence[str] | None = None) -> dict[str, Any]:
    """Agreement of two reviewers over the pairs both judged, and the pairs to adjudicate."""
    found = reviewers_of(study, audit_id)
    chosen = list(reviewers) if reviewers else found[:2]
    ranks = [int(p["rank"]) for p in audit_pairs(study, audit_id)]
    out: dict[str, Any] = {"audit_id": audit_id, "reviewers": chosen, "all_reviewers": found,
                           "n_pairs": len(ranks), "n_both": 0, "kappa": None, "observed_agreement": None,
                           "adjudicate": [], "pending": {}, "counts": {}}
    if len(chosen) != 2:
        out["note"] = "agreement needs two reviewers" + (f" (so far: {', '.join(found)})" if found else "")
        return out
    v = [verdicts_of(study, audit_id, r) for r in chosen]
    both = [k for k in ranks if k in v[0] and k in v[1]]
    a = [v[0][k]["verdict"] for k in both]
    b = [v[1][k]["verdict"] for k in both]
    out["n_both"] = len(both)
    out["kappa"] = cohen_kappa(a, b)
    out["observed_agreement"] = float(np.mean([x == y for x, y in zip(a, b)])) if both else None
    out["counts"] = {r: {c: sum(1 for x in v[i].values() if x["verdict"] == c) for c in VERDICTS}
                     for i, r in enumerate(chosen)}
    out["pending"] = {r: [k for k in ranks if k not in v[i]] for i, r in enumerate(chosen)}
    out["adjudicate"] = [{"rank": k, chosen[0]: v[0][k]["verdict"], chosen[1]: v[1][k]["verdict"],
                          "notes": [v[0][k]["note"], v[1][k]["note"]]}
                         for k in both if v[0][k]["verdict"] != v[1][k]["verdict"] or "unsure" in
                         (v[0][k]["verdict"], v[1][k]["verdict"])]
    out["memorized_by_both"] = [k for k in both if v[0][k]["verdict"] == v[1][k]["verdict"] == "memorized"]
    return out


# ---------------------------------------------------------------------------------------------------
# Exports


def export_verdicts_csv(study: Study, audit_id: str | None, path: Path | str) -> Path:
    """One row per (pair, reviewer) verdict; pairs nobody judged yet appear once with an empty reviewer."""
    audit_id = resolve_audit(study, audit_id)
    pairs = audit_pairs(study, audit_id)
    rows = study.store.query("SELECT rank, reviewer, verdict, note, decided_at FROM audit_verdicts "
                             "WHERE audit_id = ? ORDER BY rank, reviewer", [audit_id])
    by_rank: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        by_rank.setdefault(int(r["rank"]), []).append(r)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["audit_id", "rank", "similarity", "real_id", "real_path", "synthetic_id", "synthetic_path",
                    "reviewer", "verdict", "note", "decided_at"])
        for p in pairs:
            for v in by_rank.get(int(p["rank"]), [{"reviewer": "", "verdict": "", "note": "", "decided_at": ""}]):
                w.writerow([audit_id, p["rank"], f"{p['similarity']:.6f}", p["real_id"], p["real_path"],
                            p["synthetic_id"], p["synthetic_path"], v["reviewer"], v["verdict"], v["note"] or "",
                            v["decided_at"] or ""])
    return path


def _tile(study: Study, rel: str | None, size: int) -> Image.Image:
    if rel and study.abs(rel).exists():
        try:
            with Image.open(study.abs(rel)) as im:
                return im.convert("L").resize((size, size), Image.Resampling.LANCZOS)
        except OSError:
            pass
    tile = Image.new("L", (size, size), 40)
    ImageDraw.Draw(tile).text((4, size // 2 - 6), "missing", fill=200)
    return tile


def export_sheet(study: Study, audit_id: str | None, path: Path | str, *, top: int | None = None,
                 tile: int = 160, columns: int = 3) -> Path:
    """A PNG of the pairs, real left and synthetic right, each captioned with rank and similarity."""
    audit_id = resolve_audit(study, audit_id)
    pairs = audit_pairs(study, audit_id)[: top or None]
    if not pairs:
        raise CspineError(f"audit {audit_id} has no pairs to draw")
    font = ImageFont.load_default()
    caption, gap = 28, 12
    cell_w, cell_h = 2 * tile + 4, tile + caption
    rows = (len(pairs) + columns - 1) // columns
    sheet = Image.new("L", (columns * cell_w + (columns + 1) * gap, rows * cell_h + (rows + 1) * gap), 255)
    draw = ImageDraw.Draw(sheet)
    for i, p in enumerate(pairs):
        x = gap + (i % columns) * (cell_w + gap)
        y = gap + (i // columns) * (cell_h + gap)
        sheet.paste(_tile(study, p["real_path"], tile), (x, y + caption))
        sheet.paste(_tile(study, p["synthetic_path"], tile), (x + tile + 4, y + caption))
        draw.text((x, y), f"#{p['rank']}  cos {p['similarity']:.4f}", fill=0, font=font)
        draw.text((x, y + 13), f"real {str(p['real_id'])[:10]}   synth {p['synthetic_id']}", fill=90, font=font)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


# ---------------------------------------------------------------------------------------------------
# The demo


SIMULATED_REVIEWERS = ("simulated-reviewer-1", "simulated-reviewer-2")


def simulated_verdicts(pairs: Sequence[dict[str, Any]], threshold: float | None, seed: int) -> list[str]:
    """A SIMULATED reviewer for the demo: near-identical pairs memorized, pairs above the calibrated threshold
    unsure, the rest not; a seeded 10% of calls nudged one category so two simulated reviewers disagree."""
    rng = np.random.default_rng(seed)
    out = []
    for p in pairs:
        sim = float(p["similarity"])
        verdict = "memorized" if sim >= 0.995 else "unsure" if threshold is not None and sim > threshold else "not"
        if rng.random() < 0.1:
            verdict = {"not": "unsure", "unsure": "not", "memorized": "unsure"}[verdict]
        out.append(verdict)
    return out


def demo_audit(study: Study, log: Any, runs: list[str]) -> None:
    """Audit of the demo's `runs` with the pixel embedding (as a job), two labelled simulated reviewers, exports,
    the pre-screen. Once: a later demo run finds its audit (a job marked `demo`) and adds none."""
    n_syn = int(study.store.scalar("SELECT count(*) FROM synthetic_images WHERE list_contains(?::VARCHAR[], run_id)",
                                   [runs]))
    n_real = int(study.store.scalar("SELECT count(*) FROM real_images"))
    if not n_syn or not n_real:
        log(f"audit: nothing to audit yet ({n_real} real, {n_syn} synthetic images of the demo); skipping")
        return
    done = [r["id"] for r in study.store.query("SELECT id, params FROM jobs WHERE kind = 'audit' AND state = "
                                               "'succeeded' ORDER BY created_at DESC")
            if json.loads(r["params"] or "{}").get("demo")]
    if done:
        audit_id = done[0]
        log(f"audit: the demo's audit {audit_id} is done")
    else:
        audit_id = runner.create_job(study, "audit", {"embedding": "pixel", "top": int(study.get("audit", "top", 100)),
                                                      "runs": runs, "demo": True})
        record = runner.run_job(study, audit_id, on_progress=lambda *_: None)
        if record["state"] != "succeeded":
            raise CspineError(f"demo audit {audit_id} {record['state']}: {record['error']}")
    report = json.loads(study.store.scalar("SELECT result FROM audits WHERE id = ?", [audit_id]))
    pairs = audit_pairs(study, audit_id)
    threshold = (report.get("calibration") or {}).get("threshold")
    for i, reviewer in enumerate(SIMULATED_REVIEWERS):
        if verdicts_of(study, audit_id, reviewer):
            continue
        record_verdicts(study, audit_id, reviewer,
                        [(int(p["rank"]), v, "SIMULATED verdict (demo)")
                         for p, v in zip(pairs, simulated_verdicts(pairs, threshold, seed=i + 1))])
    agree = agreement(study, audit_id, SIMULATED_REVIEWERS)
    folder = study.exports_dir / "audits" / audit_id
    export_verdicts_csv(study, audit_id, folder / "verdicts.csv")
    export_sheet(study, audit_id, folder / "pairs.png", top=24)
    rate = report.get("memorization_rate")
    kappa = agree["kappa"]
    log(f"audit {audit_id}: top similarity {pairs[0]['similarity']:.4f}; calibrated memorization rate "
        f"{'n/a' if rate is None else f'{100 * rate:.2f}%'}; simulated reviewers' kappa "
        f"{'n/a' if kappa is None else f'{kappa:.2f}'}, {len(agree['adjudicate'])} pairs to adjudicate; "
        f"sheet {study.rel(folder / 'pairs.png')}")
    if not done:  # with the demo's audit only: later, a user's decisions are the screening screen's to score
        result = prescreen.compute_scores(study)
        log(f"pre-screen: {len(result['ids'])} synthetic images scored ({result['mode']})")
