"""core/screening/decisions.py and core/screening/rules.py: decisions, undo, flips, journal replay, rules, agreement."""

from __future__ import annotations

import json
import os

import pytest

from core.screening import decisions
from core.errors import CspineError
from core.screening.rules import cohen_kappa
from core.status import study_status
from tests.factories.screening import add_run
@pytest.fixture
def runs(study):
    return {34: add_run(study, "c34", 34, 6), 40: add_run(study, "c40", 40, 4, seed0=100)}


def _decision(study, image_id, reviewer="ann"):
    return study.store.query_one("SELECT decision, reason, note, simulated FROM reviews WHERE image_id = ? "
                                 "AND reviewer = ?", [image_id, reviewer])


def test_queue_order_filters_and_resume(study, runs) -> None:
    items = decisions.load_queue(study, "ann")
    assert [i.id for i in items] == runs[34] + runs[40]
    assert items[0].checkpoint_step == 34 and items[0].sampler == "ddim" and items[0].decision is None
    assert [i.id for i in decisions.load_queue(study, "ann", checkpoint_step=40)] == runs[40]
    assert [i.id for i in decisions.load_queue(study, "ann", run_id="c40")] == runs[40]
    decisions.decide(study, runs[34][0], "ann", "accept")
    decisions.decide(study, runs[34][1], "ann", "reject", reason="1")
    items = decisions.load_queue(study, "ann")
    assert decisions.resume_position(items) == 2
    assert (items[1].decision, items[1].reason) == ("reject", "airway_posterior")
    # Another reviewer's queue is untouched: each screens independently.
    assert decisions.resume_position(decisions.load_queue(study, "bob")) == 0


def test_prescreen_order_puts_likely_implausible_first(study, runs) -> None:
    study.store.executemany("INSERT INTO prescreen_scores (image_id, score, embedding, fingerprint) "
                            "VALUES (?, ?, 'pixel', 'f')", [[runs[40][2], 0.9], [runs[34][3], 0.5]])
    ids = [i.id for i in decisions.load_queue(study, "ann", order="prescreen")]
    assert ids[:2] == [runs[40][2], runs[34][3]]
    assert decisions.filter_choices(study)["prescreen"] is True
    with pytest.raises(CspineError, match="queue order"):
        decisions.load_queue(study, "ann", order="random")


def test_decisions_are_validated(study, runs) -> None:
    with pytest.raises(CspineError, match="unknown rejection reason"):
        decisions.decide(study, runs[34][0], "ann", "reject", reason="42")
    with pytest.raises(CspineError, match="needs a note"):
        decisions.decide(study, runs[34][0], "ann", "reject", reason="9")
    with pytest.raises(CspineError, match="unknown synthetic image"):
        decisions.decide(study, "nope", "ann", "accept")
    with pytest.raises(CspineError, match="no rejection reason"):
        decisions.decide(study, runs[34][0], "ann", "accept", reason="1")
    assert study.store.scalar("SELECT count(*) FROM reviews") == 0  # nothing half-written


def test_undo_walks_back_decisions_and_batches(study, runs) -> None:
    a, b, c = runs[34][:3]
    decisions.decide(study, a, "ann", "accept")
    decisions.decide(study, a, "ann", "reject", reason="artifact")          # changed her mind
    decisions.decide_many(study, [(b, "accept", None, None), (c, "accept", None, None)], "ann", batch="page-1")
    decisions.decide(study, a, "bob", "accept")                              # bob's events are his own
    res = decisions.undo(study, "ann")
    assert res.undone == "page-1" and set(res.images) == {b, c}
    assert _decision(study, b) is None and _decision(study, c) is None
    res = decisions.undo(study, "ann")
    assert res.images[a]["decision"] == "accept" and _decision(study, a)["decision"] == "accept"
    decisions.undo(study, "ann")
    assert _decision(study, a) is None and _decision(study, a, "bob")["decision"] == "accept"
    assert decisions.undo(study, "ann").skipped  # nothing left to undo
    actions = study.store.column("SELECT action FROM review_events WHERE reviewer = 'ann' ORDER BY seq")
    assert actions == ["accept", "reject", "accept", "accept", "undo", "undo", "undo"]


def test_flip_mirrors_the_stored_image_and_undo_restores_it(study, runs) -> None:
    from PIL import Image
    import numpy as np

    image_id = runs[34][0]
    before = study.store.query_one("SELECT path, sha256, flipped FROM synthetic_images WHERE id = ?", [image_id])
    pixels = np.asarray(Image.open(study.abs(before["path"])))
    res = decisions.flip(study, image_id, "ann")
    after = study.store.query_one("SELECT path, sha256, flipped FROM synthetic_images WHERE id = ?", [image_id])
    assert after["flipped"] is True and after["path"].endswith(".flipped.png") and after["sha256"] != before["sha256"]
    assert res.flips[image_id]["path"] == after["path"]
    assert (np.asarray(Image.open(study.abs(after["path"]))) == pixels[:, ::-1]).all()
    assert study.abs(before["path"]).exists()  # the original is never overwritten
    decisions.undo(study, "ann")
    assert study.store.query_one("SELECT path, sha256, flipped FROM synthetic_images WHERE id = ?",
                                 [image_id]) == before


def test_journal_replay_applies_what_never_reached_the_database(study, runs) -> None:
    journal = decisions.DecisionJournal(study, "ann")
    first = decisions.ReviewEvent("accept", "ann", runs[34][0])
    second = decisions.ReviewEvent("reject", "ann", runs[34][1], reason="2")
    journal.append(first)
    journal.append(second)
    decisions.apply_events(study, [first])  # the second was lost in a crash before its database write
    journal._fh.write('{"action": "acc')    # and the process died mid-line
    journal._fh.flush()
    dead = journal.path.with_name(journal.path.name.replace(f"-{os.getpid()}-", "-999999999-"))
    journal.path.rename(dead)
    assert decisions.replay_journals(study) == 1
    assert _decision(study, runs[34][1])["reason"] == "elements_inverted"
    assert not dead.exists()  # a dead process's journal is removed once applied
    assert decisions.replay_journals(study) == 0
    assert study.store.scalar("SELECT count(*) FROM review_events") == 2  # idempotent by event id
    event = json.loads(json.dumps(decisions.ReviewEvent("accept", "ann", "x").__dict__))
    assert set(event) >= {"event_id", "at", "action"}


def test_final_rules_counts_and_status(study, runs) -> None:
    a, b, c, d = runs[34][:4]
    decisions.decide(study, a, "ann", "accept")
    decisions.decide(study, a, "bob", "accept")
    decisions.decide(study, b, "ann", "accept")
    decisions.decide(study, b, "bob", "reject", reason="3")
    decisions.decide(study, c, "bob", "reject", reason="4")
    decisions.decide(study, c, "ann", "accept")      # bob decided c first
    decisions.decide(study, d, "ann", "accept")      # only ann
    assert decisions.final_decisions(study) == {a: "accept", b: "reject", c: "reject", d: "accept"}
    assert decisions.final_decisions(study, "all_reviewers_accept") == \
        {a: "accept", b: "reject", c: "reject", d: "pending"}
    assert decisions.final_decisions(study, "first_reviewer") == {a: "accept", b: "accept", c: "reject", d: "accept"}
    assert decisions.final_decisions(study, "adjudicated") == {a: "accept", b: "pending", c: "pending", d: "accept"}
    decisions.adjudicate(study, b, "cat", "accept")
    assert decisions.final_decisions(study, "adjudicated")[b] == "accept"
    assert [r["image_id"] for r in decisions.disagreements(study)] == [b, c]
    assert decisions.accepted_image_ids(study, 34) == [a, d]
    assert decisions.accepted_image_ids(study, 40) == []
    status = study_status(study)
    assert status["synthetic_by_checkpoint"]["34"] == {"generated": 6, "accepted": 2, "rejected": 2}
    assert status["synthetic_by_checkpoint"]["40"] == {"generated": 4, "accepted": 0, "rejected": 0}
    with study.store.connect() as tx:
        assert decisions.checkpoint_counts(tx, study)["34"] == {"generated": 6, "reviewed": 4, "accepted": 2,
                                                                "rejected": 2, "pending": 0, "unreviewed": 2}
    study.set("screening", "final_rule", "adjudicated")
    assert study_status(study)["synthetic_by_checkpoint"]["34"]["accepted"] == 3
    study.set("screening", "final_rule", "majority")
    with pytest.raises(CspineError, match="final rule"):
        study_status(study)


def test_table_s1_rows_per_run(study, runs) -> None:
    add_run(study, "c34-large", 34, 3, seed0=500)
    for image_id in runs[34][:5]:
        decisions.decide(study, image_id, "ann", "accept")
    decisions.decide(study, runs[34][5], "ann", "reject", reason="5")
    table = decisions.table_s1(study)
    assert [(r["run"], r["checkpoint"], r["generated"], r["accepted"]) for r in table["rows"]] == \
        [("c34", 34, 6, 5), ("c34-large", 34, 3, 0), ("c40", 40, 4, 0)]
    assert table["total"]["generated"] == 13 and table["total"]["rejected"] == 1 and table["rule"] == "any_reject"


def test_cohen_kappa_textbook_example() -> None:
    # Wikipedia "Cohen's kappa" worked example: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no -> kappa 0.4.
    assert cohen_kappa(20, 5, 10, 15) == pytest.approx(0.4)
    assert cohen_kappa(10, 0, 0, 0) is None          # everyone accepts everything: chance agreement is 1
    assert cohen_kappa(5, 0, 0, 5) == pytest.approx(1.0)


def test_agreement_of_two_reviewers(study, runs) -> None:
    ids = runs[34] + runs[40]
    ann = ["accept", "accept", "reject", "reject", "accept", "accept", "reject", "accept", "accept", "accept"]
    bob = ["accept", "reject", "reject", "accept", "accept", "accept", "reject", "accept", "accept", "reject"]
    decisions.decide_many(study, [(i, d, "6" if d == "reject" else None, None) for i, d in zip(ids, ann)], "ann")
    decisions.decide_many(study, [(i, d, "6" if d == "reject" else None, None) for i, d in zip(ids, bob)], "bob")
    agree = decisions.agreement(study)
    assert agree["reviewers"] == ["ann", "bob"] or agree["reviewers"] == ["bob", "ann"]
    agree = decisions.agreement(study, "ann", "bob")
    assert (agree["n"], agree["both_accept"], agree["both_reject"], agree["a_accept_b_reject"],
            agree["a_reject_b_accept"]) == (10, 5, 2, 2, 1)
    assert agree["kappa"] == pytest.approx(cohen_kappa(5, 2, 1, 2))
    assert decisions.agreement(study, "ann", "nobody")["n"] == 0
