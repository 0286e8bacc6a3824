"""The demo's screening stage: planted implausible phantoms, a SIMULATED reviewer, and the release.

For each checkpoint the demo sampled, a few labelled implausible phantoms (core/demo/phantom.py defects: airway
posterior to the spine, elements swapped, a missing or doubled vertebra, distortion) are registered as an
external run ``demo-planted-s<step>`` of that checkpoint (``params.planted = true``, each image's
``source_path = "planted:<defect>"``), so they sit in that checkpoint's screening queue. Then the reviewer
``simulated-reviewer`` (``reviews.simulated = TRUE``; not a person) decides every image of the demo's runs: it
rejects the planted ones with the reason for their defect and accepts everything else. Finally the release is
written to ``exports/release``, once. Every step is idempotent.

The demo only ever touches what it made: its runs are the ones the sample stage names ``demo-s<step>`` and
the planted ones; a user's own runs, decisions and releases in the demo study are left as they are.
"""

from __future__ import annotations

import re
from typing import Callable

from PIL import Image

from core.screening import decisions

from core.ddpm import synthetic
from core.study import Study
from core.screening.release import write_release

SIMULATED_REVIEWER = "simulated-reviewer"
PLANTED_PREFIX = "demo-planted-s"
PLANT_SEED = 7310
# The names of the demo's runs: core.ddpm.sampling.demo_sample's "demo-s<step>" and the planted ones here.
DEMO_SAMPLED_RUN = re.compile(r"demo-s\d+")
DEMO_PLANTED_RUN = re.compile(re.escape(PLANTED_PREFIX) + r"\d+")

Log = Callable[[str], None]


def _sampled_runs(study: Study) -> list[dict]:
    """The runs the demo's sample stage made, with any image of each (for its size)."""
    rows = study.store.query("SELECT r.id, r.name, r.train_job, r.checkpoint_step, min(s.path) AS any_path FROM "
                             "synthetic_runs r JOIN synthetic_images s ON s.run_id = r.id WHERE r.source = 'sampled' "
                             "AND r.checkpoint_step IS NOT NULL GROUP BY ALL ORDER BY r.checkpoint_step")
    return [r for r in rows if DEMO_SAMPLED_RUN.fullmatch(r["name"])]


def demo_run_ids(study: Study) -> list[str]:
    """The ids of the synthetic runs the demo made (sampled and planted); the demo acts on these only."""
    rows = study.store.query("SELECT id, name, source FROM synthetic_runs ORDER BY id")
    return [r["id"] for r in rows if (r["source"] == "sampled" and DEMO_SAMPLED_RUN.fullmatch(r["name"]))
            or (r["source"] == "external" and DEMO_PLANTED_RUN.fullmatch(r["name"]))]


def plant_implausible(study: Study, log: Log) -> int:
    """One labelled implausible phantom per defect into each sampled checkpoint's queue; returns images added."""
    from core.demo.phantom import DEFECTS, render_canonical  # imported on use: loads scipy (start-up cost)

    added = 0
    for run in _sampled_runs(study):
        step = int(run["checkpoint_step"])
        name = f"{PLANTED_PREFIX}{step}"
        with Image.open(study.abs(run["any_path"])) as img:
            size = max(img.size)
        run_id = synthetic.create_run(study, name, "external", train_job=run["train_job"], checkpoint_step=step,
                                      params={"planted": True, "note": "implausible phantoms planted by the demo "
                                              "for the simulated reviewer to reject"}, exist_ok=True)
        done = synthetic.done_indices(study, run_id)
        rows = [synthetic.save_image(study, run_id, i, render_canonical(PLANT_SEED + 97 * step + i, size,
                                                                        defect=defect),
                                     seed=PLANT_SEED + 97 * step + i, orient=False, source_path=f"planted:{defect}")
                for i, defect in enumerate(DEFECTS) if i not in done]
        added += synthetic.add_images(study, run_id, rows)
    if added:
        log(f"planted {added} labelled implausible phantoms ({', '.join(DEFECTS)}) among the sampled images")
    return added


def simulated_screening(study: Study, log: Log) -> dict[str, int]:
    """The SIMULATED reviewer decides every image of the demo's runs it has not decided: planted -> reject (by
    defect), else accept. A user's own runs are not its to screen."""
    runs = demo_run_ids(study)
    if not runs:
        return {"screened": 0, "rejected": 0}
    rows = study.store.query(
        "SELECT s.id, s.source_path FROM synthetic_images s JOIN synthetic_runs r ON r.id = s.run_id "
        "LEFT JOIN reviews v ON v.image_id = s.id AND v.reviewer = ? WHERE v.image_id IS NULL "
        "AND list_contains(?::VARCHAR[], r.id) ORDER BY r.checkpoint_step NULLS LAST, r.name, s.idx",
        [SIMULATED_REVIEWER, runs])
    events = []
    for row in rows:
        source = row["source_path"] or ""
        if source.startswith("planted:"):
            defect = source.split(":", 1)[1]
            events.append(decisions.ReviewEvent("reject", SIMULATED_REVIEWER, row["id"],
                                                decisions.DEFECT_REASON.get(defect, "other"),
                                                f"planted defect: {defect}", batch="demo-simulated", simulated=True))
        else:
            events.append(decisions.ReviewEvent("accept", SIMULATED_REVIEWER, row["id"], batch="demo-simulated",
                                                simulated=True))
    for start in range(0, len(events), 500):
        decisions.apply_events(study, events[start:start + 500])
    rejected = sum(1 for e in events if e.action == "reject")
    if events:
        log(f"SIMULATED reviewer '{SIMULATED_REVIEWER}' screened {len(events)} images: "
            f"{len(events) - rejected} accepted, {rejected} rejected (the planted ones)")
    return {"screened": len(events), "rejected": rejected}


def demo_screen(study: Study, log: Log) -> None:
    if not _sampled_runs(study):
        log("no sampled images yet: the screen stage needs the sample stage first; skipped")
        return
    plant_implausible(study, log)
    simulated_screening(study, log)

    out = study.exports_dir / "release"
    if (out / "release.json").exists():  # written by an earlier demo run, or the user's since: not rewritten
        return
    summary = write_release(study, out, licence="CC0-1.0")
    log(f"release of {summary['images']} accepted images in {summary['out']} "
        f"({', '.join(f'checkpoint {k}: {v}' for k, v in summary['by_checkpoint'].items())})")
