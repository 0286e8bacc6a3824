"""The demo's screen stage: planted implausible phantoms, the SIMULATED reviewer, the release; idempotent."""

from __future__ import annotations

import csv

from core.screening import decisions
from core.demo.reviewer import SIMULATED_REVIEWER, demo_screen
from core.status import study_status
from tests.factories.screening import add_run
def test_demo_screen_plants_rejects_accepts_and_releases(study) -> None:
    logs: list[str] = []
    demo_screen(study, logs.append)
    assert "skipped" in logs[-1]                               # nothing sampled yet: a clear skip
    for step in (200, 400, 600):
        add_run(study, f"demo-s{step}", step, 62, seed0=step)
    demo_screen(study, logs.append)
    planted = study.store.query("SELECT s.id, s.source_path, v.decision, v.reason, v.simulated, r.checkpoint_step, "
                                "r.params FROM synthetic_images s JOIN synthetic_runs r ON r.id = s.run_id "
                                "JOIN reviews v ON v.image_id = s.id WHERE s.source_path LIKE 'planted:%'")
    assert len(planted) == 15 and {p["checkpoint_step"] for p in planted} == {200, 400, 600}
    assert all(p["decision"] == "reject" and p["simulated"] and '"planted": true' in p["params"] for p in planted)
    assert {p["reason"] for p in planted} == {"airway_posterior", "elements_inverted", "missing_vertebra",
                                             "extra_vertebra", "distortion"}
    for step in (200, 400, 600):
        assert len(decisions.accepted_image_ids(study, step)) == 62 >= 60
    assert study_status(study)["synthetic_by_checkpoint"]["400"] == {"generated": 67, "accepted": 62, "rejected": 5}
    assert any("SIMULATED reviewer" in line for line in logs)
    release = study.exports_dir / "release"
    with open(release / "manifest.csv", newline="") as fh:
        manifest = list(csv.DictReader(fh))
    assert len(manifest) == 186 and all("planted" not in m["run"] for m in manifest)
    assert all(m["decisions"] == f"{SIMULATED_REVIEWER}:accept" for m in manifest)
    assert "SIMULATED reviewer" in (release / "README.md").read_text()
    events = study.store.scalar("SELECT count(*) FROM review_events")
    demo_screen(study, logs.append)                             # a re-run changes nothing
    assert study.store.scalar("SELECT count(*) FROM review_events") == events
    assert study.store.scalar("SELECT count(*) FROM synthetic_images") == 3 * 67
