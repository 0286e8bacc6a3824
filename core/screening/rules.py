"""The final screening decision per image, the counts of Table S1, two-reviewer agreement, adjudication.

One rule decides which images are in the dataset, for `status`, the release and the reader study alike.
It is study.toml ``[screening] final_rule``:

- ``any_reject`` (default; the paper's rule for two screeners): rejected if any reviewer rejects, accepted if
  reviewed and nobody rejects.
- ``all_reviewers_accept``: accepted only when every required reviewer accepted (``[screening] reviewers``,
  or else everyone who has reviewed anything); rejected if any rejects; pending otherwise.
- ``first_reviewer``: the decision of whoever decided the image first (their first event that is not undone).
- ``adjudicated``: the reviewers' decision when they agree; where they disagree, the adjudicator's
  decision (``review_adjudications``), pending until there is one.

Final values are 'accept', 'reject' or 'pending'; images nobody reviewed are 'unreviewed' in the counts and
absent from :func:`final_decisions`.
"""

from __future__ import annotations

from typing import Any

from core.errors import CspineError
from core.screening.reasons import NOTE_REQUIRED, reason_code
from core.study import Study
from core.store.database import Tx

RULES = ("any_reject", "all_reviewers_accept", "first_reviewer", "adjudicated")


def final_rule(study: Study, rule: str | None = None) -> str:
    rule = rule or study.get("screening", "final_rule", "any_reject") or "any_reject"
    if rule not in RULES:
        raise CspineError(f"unknown screening final rule {rule!r} (study.toml [screening] final_rule or --rule); "
                          f"use one of {', '.join(RULES)}")
    return rule


def required_reviewers(tx: Tx, study: Study) -> list[str]:
    listed = study.get("screening", "reviewers", None)
    if listed:
        return [str(r) for r in listed]
    return tx.column("SELECT DISTINCT reviewer FROM reviews ORDER BY 1")


def final_cte(tx: Tx, study: Study, rule: str | None = None) -> tuple[str, list[Any]]:
    """SQL for a CTE named ``final (image_id, final)`` under the rule, and its parameters."""
    rule = final_rule(study, rule)
    if rule == "any_reject":
        return ("final AS (SELECT image_id, CASE WHEN bool_or(decision = 'reject') THEN 'reject' "
                "ELSE 'accept' END AS final FROM reviews GROUP BY image_id)", [])
    if rule == "all_reviewers_accept":
        required = required_reviewers(tx, study)
        return ("final AS (SELECT image_id, CASE WHEN bool_or(decision = 'reject') THEN 'reject' "
                "WHEN count(DISTINCT reviewer) FILTER (WHERE decision = 'accept' AND "
                "list_contains(?::VARCHAR[], reviewer)) >= ? THEN 'accept' ELSE 'pending' END AS final "
                "FROM reviews GROUP BY image_id)", [required, max(1, len(required))])
    if rule == "first_reviewer":
        return ("""final AS (
            WITH undone AS (SELECT DISTINCT undoes AS g FROM review_events
                            WHERE action = 'undo' AND undoes IS NOT NULL),
            firsts AS (
                SELECT image_id, reviewer, min(seq) AS first_seq FROM review_events e
                WHERE action IN ('accept', 'reject')
                  AND coalesce(e.batch, e.event_id, 'seq:' || e.seq) NOT IN (SELECT g FROM undone)
                GROUP BY ALL),
            ranked AS (
                SELECT v.image_id, v.decision, row_number() OVER (PARTITION BY v.image_id
                    ORDER BY f.first_seq NULLS LAST, v.decided_at, v.reviewer) AS k
                FROM reviews v LEFT JOIN firsts f ON f.image_id = v.image_id AND f.reviewer = v.reviewer)
            SELECT image_id, decision AS final FROM ranked WHERE k = 1)""", [])
    return ("""final AS (
        WITH agg AS (SELECT image_id, count(DISTINCT decision) AS nd, any_value(decision) AS d
                     FROM reviews GROUP BY image_id)
        SELECT coalesce(a.image_id, g.image_id) AS image_id,
               CASE WHEN a.decision IS NOT NULL THEN a.decision WHEN g.nd = 1 THEN g.d ELSE 'pending' END AS final
        FROM agg g FULL JOIN review_adjudications a ON a.image_id = g.image_id)""", [])


def final_decisions(study: Study, rule: str | None = None) -> dict[str, str]:
    """image id -> 'accept' | 'reject' | 'pending' for every reviewed image, under the rule."""
    with study.store.connect() as tx:
        cte, params = final_cte(tx, study, rule)
        return {r["image_id"]: r["final"] for r in tx.query(f"WITH {cte} SELECT image_id, final FROM final", params)}


def accepted_image_ids(study: Study, checkpoint_step: int | None = None, rule: str | None = None, *,
                       run_id: str | None = None) -> list[str]:
    """Ids of the images the final rule accepts (optionally of one checkpoint or run), in a stable order."""
    with study.store.connect() as tx:
        cte, params = final_cte(tx, study, rule)
        where, extra = ["f.final = 'accept'"], []
        if checkpoint_step is not None:
            where.append("r.checkpoint_step = ?")
            extra.append(int(checkpoint_step))
        if run_id is not None:
            where.append("s.run_id = ?")
            extra.append(run_id)
        return tx.column(
            f"WITH {cte} SELECT s.id FROM synthetic_images s JOIN synthetic_runs r ON r.id = s.run_id "
            f"JOIN final f ON f.image_id = s.id WHERE {' AND '.join(where)} "
            "ORDER BY r.checkpoint_step NULLS LAST, r.created_at, r.name, s.idx", params + extra)


_COUNTS = """count(*) AS generated,
             count(f.image_id) AS reviewed,
             count(*) FILTER (WHERE f.final = 'accept') AS accepted,
             count(*) FILTER (WHERE f.final = 'reject') AS rejected,
             count(*) FILTER (WHERE f.final = 'pending') AS pending,
             count(*) FILTER (WHERE f.image_id IS NULL) AS unreviewed"""


def checkpoint_counts(tx: Tx, study: Study, rule: str | None = None) -> dict[str, dict[str, int]]:
    """Per checkpoint ('external:<run>' for runs without one): generated, accepted, rejected, pending, ..."""
    cte, params = final_cte(tx, study, rule)
    rows = tx.query(
        f"""WITH {cte}
        SELECT coalesce(CAST(r.checkpoint_step AS VARCHAR), 'external:' || r.name) AS ckpt, {_COUNTS}
        FROM synthetic_images s JOIN synthetic_runs r ON r.id = s.run_id LEFT JOIN final f ON f.image_id = s.id
        GROUP BY ckpt ORDER BY min(r.checkpoint_step) NULLS LAST, ckpt""", params)
    return {r.pop("ckpt"): r for r in rows}


def table_s1(study: Study, rule: str | None = None, tx: Tx | None = None) -> dict[str, Any]:
    """The paper's Table S1: per run and checkpoint, images generated and the final count kept."""
    if tx is None:
        with study.store.connect() as tx:
            return table_s1(study, rule, tx)
    rule = final_rule(study, rule)
    cte, params = final_cte(tx, study, rule)
    rows = tx.query(
        f"""WITH {cte}
        SELECT r.id AS run_id, r.name AS run, r.source, r.checkpoint_step AS checkpoint, r.sampler, r.steps,
               {_COUNTS}
        FROM synthetic_runs r JOIN synthetic_images s ON s.run_id = r.id LEFT JOIN final f ON f.image_id = s.id
        GROUP BY ALL ORDER BY r.checkpoint_step NULLS LAST, min(r.created_at), r.name""", params)
    keys = ("generated", "reviewed", "accepted", "rejected", "pending", "unreviewed")
    total = {k: sum(int(r[k]) for r in rows) for k in keys}
    return {"rule": rule, "rows": rows, "total": total}


# -- two reviewers -----------------------------------------------------------------------------------------
def reviewer_summary(study: Study) -> list[dict[str, Any]]:
    return study.store.query(
        "SELECT reviewer, bool_or(simulated) AS simulated, count(*) AS reviewed, "
        "count(*) FILTER (WHERE decision = 'accept') AS accepted, count(*) FILTER (WHERE decision = 'reject') "
        "AS rejected FROM reviews GROUP BY reviewer ORDER BY reviewed DESC, reviewer")


def cohen_kappa(both_accept: int, a_accept_b_reject: int, a_reject_b_accept: int, both_reject: int) -> float | None:
    """Cohen's kappa for two raters and two categories; None when chance agreement is 1 (undefined)."""
    n = both_accept + a_accept_b_reject + a_reject_b_accept + both_reject
    if n == 0:
        return None
    po = (both_accept + both_reject) / n
    pa = (both_accept + a_accept_b_reject) / n     # rater A's accept rate
    pb = (both_accept + a_reject_b_accept) / n     # rater B's accept rate
    pe = pa * pb + (1 - pa) * (1 - pb)
    return None if pe >= 1.0 else (po - pe) / (1 - pe)


def agreement(study: Study, a: str | None = None, b: str | None = None) -> dict[str, Any]:
    """Agreement of two reviewers on the images both decided: counts and Cohen's kappa.

    Without names, the two reviewers with the most decisions are compared.
    """
    if a is None or b is None:
        names = [r["reviewer"] for r in reviewer_summary(study)]
        others = [n for n in names if n not in (a, b)]
        a = a or (others.pop(0) if others else None)
        b = b or (others.pop(0) if others else None)
    if a is None or b is None or a == b:
        return {"reviewers": [x for x in (a, b) if x], "n": 0, "kappa": None,
                "message": "agreement needs decisions from two reviewers"}
    row = study.store.query_one(
        """SELECT count(*) AS n,
                  count(*) FILTER (WHERE x.decision = 'accept' AND y.decision = 'accept') AS both_accept,
                  count(*) FILTER (WHERE x.decision = 'reject' AND y.decision = 'reject') AS both_reject,
                  count(*) FILTER (WHERE x.decision = 'accept' AND y.decision = 'reject') AS a_accept_b_reject,
                  count(*) FILTER (WHERE x.decision = 'reject' AND y.decision = 'accept') AS a_reject_b_accept,
                  count(*) FILTER (WHERE x.decision = 'reject' AND y.decision = 'reject'
                                   AND coalesce(x.reason, '') = coalesce(y.reason, '')) AS same_reason
           FROM reviews x JOIN reviews y ON y.image_id = x.image_id AND y.reviewer = ?
           WHERE x.reviewer = ?""", [b, a]) or {}
    counts = {k: int(row.get(k) or 0) for k in ("n", "both_accept", "both_reject", "a_accept_b_reject",
                                                  "a_reject_b_accept", "same_reason")}
    kappa = cohen_kappa(counts["both_accept"], counts["a_accept_b_reject"], counts["a_reject_b_accept"],
                        counts["both_reject"])
    n = counts["n"]
    return {"reviewers": [a, b], **counts,
            "observed_agreement": (counts["both_accept"] + counts["both_reject"]) / n if n else None,
            "kappa": kappa}


def disagreements(study: Study) -> list[dict[str, Any]]:
    """Images the reviewers disagree on, with every reviewer's decision and the adjudication if any."""
    rows = study.store.query(
        """WITH split AS (SELECT image_id FROM reviews GROUP BY image_id HAVING count(DISTINCT decision) > 1)
        SELECT s.id AS image_id, s.path, r.name AS run, r.checkpoint_step AS checkpoint, s.idx,
               list(struct_pack(reviewer := v.reviewer, decision := v.decision, reason := v.reason, note := v.note)
                    ORDER BY v.reviewer) AS decisions,
               a.decision AS adjudication, a.reason AS adjudication_reason, a.adjudicator
        FROM split JOIN synthetic_images s ON s.id = split.image_id JOIN synthetic_runs r ON r.id = s.run_id
        JOIN reviews v ON v.image_id = s.id LEFT JOIN review_adjudications a ON a.image_id = s.id
        GROUP BY ALL ORDER BY r.checkpoint_step NULLS LAST, r.name, s.idx""")
    return rows


def adjudicate(study: Study, image_id: str, adjudicator: str, decision: str, *, reason: str | None = None,
               note: str | None = None) -> None:
    """Record the adjudicator's final word on an image (used by the rule 'adjudicated')."""
    if decision not in ("accept", "reject"):
        raise CspineError(f"an adjudication is accept or reject, not {decision!r}")
    reason = reason_code(reason) if decision == "reject" else None
    if reason in NOTE_REQUIRED and not (note or "").strip():
        raise CspineError(f"reason {reason!r} needs a note (image {image_id})")
    with study.store.connect() as tx:
        if tx.scalar("SELECT count(*) FROM synthetic_images WHERE id = ?", [image_id]) == 0:
            raise CspineError(f"unknown synthetic image {image_id!r}")
        tx.execute("INSERT INTO review_adjudications (image_id, adjudicator, decision, reason, note, decided_at) "
                   "VALUES (?, ?, ?, ?, ?, current_timestamp) ON CONFLICT (image_id) DO UPDATE SET "
                   "adjudicator = excluded.adjudicator, decision = excluded.decision, reason = excluded.reason, "
                   "note = excluded.note, decided_at = excluded.decided_at",
                   [image_id, adjudicator, decision, reason, note])


def remove_adjudication(study: Study, image_id: str) -> bool:
    with study.store.connect() as tx:
        n = tx.scalar("SELECT count(*) FROM review_adjudications WHERE image_id = ?", [image_id])
        tx.execute("DELETE FROM review_adjudications WHERE image_id = ?", [image_id])
    return bool(n)
