"""The audit screen under Textual's Pilot: two blinded reviewers, notes, agreement, adjudication, export."""

from __future__ import annotations


from core.audit.nearest import run_audit
from core.metrics.embeddings import make_encoder
from cspine_tui.app import CspineApp
from tests.factories.screens import screen_text
from tests.factories.audit import planted_study
from tests.factories.waiting import open_by_key, settle
async def _open(app, pilot):
    return await open_by_key(app, pilot, "5", "AuditScreen")


def _verdicts(study, reviewer):
    rows = study.store.query("SELECT rank, verdict, note FROM audit_verdicts WHERE reviewer = ? ORDER BY rank",
                             [reviewer])
    return [(r["rank"], r["verdict"], r["note"]) for r in rows]


async def test_two_reviewers_judge_blind_then_see_agreement(study) -> None:
    planted_study(study)
    run_audit(study, "audit-t", encoder=make_encoder("pixel"), top=4)

    app = CspineApp(study, reviewer="alice", image_protocol="halfcell")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open(app, pilot)
        text = screen_text(app)
        assert "#1 of 4" in text and "1.0000" in text and "alice: —" in text
        await pilot.press("m")
        await settle(app, pilot)
        assert screen.pos == 1 and "#2 of 4" in screen_text(app)
        await pilot.press("left", "e")                 # back to pair 1 and annotate it
        await pilot.pause()
        assert type(app.screen).__name__ == "AuditNoteModal"
        await pilot.press(*"same endplates", "enter")
        await settle(app, pilot)
        await pilot.press("right", "n", "g")           # not finished: agreement stays closed
        await settle(app, pilot)
        assert not screen.showing_agreement
        await pilot.press("n", "u")
        await settle(app, pilot)
    assert _verdicts(study, "alice") == [(1, "memorized", "same endplates"), (2, "not", None), (3, "not", None),
                                         (4, "unsure", None)]

    app = CspineApp(study, reviewer="bob", image_protocol="halfcell")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open(app, pilot)
        text = "\n".join(screen_text(app).splitlines()[:-1])  # without the footer's key labels
        # Bob sees none of Alice's verdicts or notes.
        assert "bob: —" in text and "memorized" not in text and "same endplates" not in text
        assert screen.mine == {}
        await pilot.press("m", "n", "m", "n")
        await settle(app, pilot)
        await pilot.press("g")
        await settle(app, pilot)
        assert screen.showing_agreement
        text = screen_text(app)
        assert "alice vs bob" in text and "Cohen's kappa" in text
        assert "#3" in text and "#4" in text and "memorized by both: [1]" in text
        await pilot.press("x")
        await settle(app, pilot)
    assert (study.exports_dir / "audits" / "audit-t" / "verdicts.csv").exists()
    assert (study.exports_dir / "audits" / "audit-t" / "pairs.png").exists()


async def test_audit_screen_without_an_audit_says_what_to_do(study) -> None:
    app = CspineApp(study, reviewer="alice", image_protocol="off")
    async with app.run_test(size=(120, 40)) as pilot:
        await _open(app, pilot)
        assert "No memorization audit yet" in screen_text(app)
        await pilot.press("m", "g", "right")           # nothing to judge: no error, no crash
        await settle(app, pilot)
        assert study.store.scalar("SELECT count(*) FROM audit_verdicts") == 0
