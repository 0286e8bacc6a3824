"""The study at a glance: the figures the dashboard and `cspine-tui status --json` show."""

from __future__ import annotations

from typing import Any

from core.jobs.control import list_jobs
from core.screening.rules import checkpoint_counts, final_rule
from core.study import Study


def study_status(study: Study) -> dict[str, Any]:
    jobs: dict[str, int] = {}
    for job in list_jobs(study):  # reconciles dead processes so the counts are true
        jobs[job["state"]] = jobs.get(job["state"], 0) + 1
    with study.store.connect() as tx:
        real = tx.scalar("SELECT count(*) FROM real_images")
        splits = {r["split"]: r["n"] for r in tx.query("SELECT split, count(*) AS n FROM splits GROUP BY split")}
        synthetic = tx.scalar("SELECT count(*) FROM synthetic_images")
        checkpoints = tx.scalar("SELECT count(*) FROM checkpoints WHERE NOT deleted")
        # Final decision per image under study.toml [screening] final_rule (core/screening/rules.py).
        by_ckpt = checkpoint_counts(tx, study)
        by_reviewer = tx.query(
            "SELECT reviewer, count(*) FILTER (WHERE decision = 'accept') AS accepted, "
            "count(*) FILTER (WHERE decision = 'reject') AS rejected FROM reviews GROUP BY reviewer ORDER BY reviewer"
        )
        quartets = tx.scalar("SELECT count(DISTINCT (pack_id, quartet)) FROM quartet_items")
        ratings = tx.scalar("SELECT count(*) FROM ratings")
        raters = tx.scalar("SELECT count(*) FROM raters")
        audits = tx.scalar("SELECT count(*) FROM audits")
    return {
        "study": str(study.root.resolve()),
        "name": study.get("study", "name"),
        "images": {"real": real, "synthetic": synthetic},
        "splits": splits,
        "checkpoints": checkpoints,
        "synthetic_by_checkpoint": {ckpt: {k: c[k] for k in ("generated", "accepted", "rejected")}
                                    for ckpt, c in by_ckpt.items()},
        "final_rule": final_rule(study),
        "reviews": {"by_reviewer": {r["reviewer"]: {"accepted": r["accepted"], "rejected": r["rejected"]}
                                    for r in by_reviewer}},
        "jobs": jobs,
        "audits": audits,
        "quartets": quartets,
        "raters": raters,
        "ratings": ratings,
    }
