"""A conditional image's condition in screening and release: shown in the queue, its own reject reason, mirrored
with a reviewer's flip, carried into the release manifest."""

from __future__ import annotations

import csv
import json

from core.ddpm import synthetic
from core.screening import decisions
from core.screening.release import write_release
from tests.factories.screening import tiny_image

CONDITION = {"attributes": {"defect": "none"}, "keypoints": {"C3_body": [10.25, 12.5], "C4_body": [11.0, 16.0]}}


def _conditional_run(study) -> list[str]:
    run = synthetic.create_run(study, "cond", "sampled", checkpoint_step=10, sampler="ddim", steps=5, seed=0,
                               weights="ema")
    rows = [synthetic.save_image(study, run, i, tiny_image(i), seed=i, orient=False,
                                 condition=CONDITION if i < 2 else None) for i in range(3)]
    synthetic.add_images(study, run, rows)
    return [synthetic.image_id(run, i) for i in range(3)]


def test_queue_shows_the_condition_and_the_reason_is_key_0(study):
    from cspine_tui.widgets.screening_parts import condition_text, facts_text

    ids = _conditional_run(study)
    items = decisions.load_queue(study, "ann")
    assert [i.condition for i in items] == [CONDITION, CONDITION, None]
    text = facts_text(items[0], 0, items, {}, "fit", "ann").plain
    assert "defect=none" in text and "2 keypoints" in text
    assert "condition" not in facts_text(items[2], 2, items, {}, "fit", "ann").plain
    assert condition_text(CONDITION).startswith("defect=none")
    assert decisions.reason_code("0") == "condition_not_shown"
    assert decisions.REASON_BY_CODE["condition_not_shown"].label == "does not show its condition"
    decisions.decide(study, ids[0], "ann", "reject", reason="0")
    assert decisions.load_queue(study, "ann")[0].reason == "condition_not_shown"


def test_a_reviewers_flip_mirrors_the_keypoints_and_undo_mirrors_them_back(study):
    ids = _conditional_run(study)
    decisions.flip(study, ids[1], "ann")
    flipped = synthetic.conditions_for(study, [ids[1]])[ids[1]]
    assert flipped["keypoints"] == {"C3_body": [32 - 10.25, 12.5], "C4_body": [32 - 11.0, 16.0]}  # 32 px image
    assert flipped["attributes"] == CONDITION["attributes"]
    decisions.undo(study, "ann")
    assert synthetic.conditions_for(study, [ids[1]])[ids[1]] == CONDITION


def test_release_manifest_carries_the_condition(study, tmp_path):
    ids = _conditional_run(study)
    decisions.decide_many(study, [(i, "accept", None, None) for i in ids], "ann")
    write_release(study, tmp_path / "rel")
    with open(tmp_path / "rel" / "manifest.csv", newline="") as fh:
        manifest = {m["image_id"]: m for m in csv.DictReader(fh)}
    assert json.loads(manifest[ids[0]]["condition"]) == CONDITION
    assert manifest[ids[2]]["condition"] == ""
