"""The study at a glance: the figures the dashboard and `cspine-tui status --json` show."""

from __future__ import annotations

from typing import Any

from core.jobs import list_jobs
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
        # Final decision per image: excluded if any reviewer rejects, accepted if reviewed and none rejects.
        by_ckpt = tx.query(
            """
            WITH final AS (
                SELECT image_id, bool_or(decision = 'reject') AS any_reject
                FROM reviews GROUP BY image_id
            )
            SELECT coalesce(CAST(r.checkpoint_step AS VARCHAR), 'external:' || r.name) AS ckpt,
                   count(*) AS generated,
                   count(*) FILTER (WHERE f.image_id IS NOT NULL AND NOT f.any_reject) AS accepted,
                   count(*) FILTER (WHERE f.any_reject) AS rejected
            FROM synthetic_images s JOIN synthetic_runs r ON r.id = s.run_id
            LEFT JOIN final f ON f.image_id = s.id
            GROUP BY ckpt ORDER BY min(r.checkpoint_step) NULLS LAST, ckpt
            """
        )
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
        "synthetic_by_checkpoint": {
            r["ckpt"]: {"generated": r["generated"], "accepted": r["accepted"], "rejected": r["rejected"]}
            for r in by_ckpt
        },
        "reviews": {"by_reviewer": {r["reviewer"]: {"accepted": r["accepted"], "rejected": r["rejected"]}
                                    for r in by_reviewer}},
        "jobs": jobs,
        "audits": audits,
        "quartets": quartets,
        "raters": raters,
        "ratings": ratings,
    }
