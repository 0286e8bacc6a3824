"""The screening screen under Textual's Pilot: every key, undo, grid mode, two reviewers, restart, key remap."""

from __future__ import annotations

import time

import pytest

from core.screening import decisions
from cspine_tui.app import CspineApp
from tests.factories.screens import screen_text
from tests.factories.screening import add_run
from tests.factories.waiting import HANG_S, open_by_key, settle, until, wait_until
@pytest.fixture
def ids(study):
    return add_run(study, "c34", 34, 12) + add_run(study, "c40", 40, 3, seed0=100)


async def _open(app, pilot):
    return await open_by_key(app, pilot, "4", "ScreeningScreen")


def _review(study, image_id, reviewer="ann"):
    return study.store.query_one("SELECT decision, reason, note FROM reviews WHERE image_id = ? AND reviewer = ?",
                                 [image_id, reviewer])


def _app(study, reviewer="ann"):
    return CspineApp(study, reviewer=reviewer, image_protocol="halfcell")


async def test_accept_reject_with_reasons_note_and_cancel(study, ids) -> None:
    app = _app(study)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open(app, pilot)
        assert screen.current.id == ids[0] and "1/15" in screen_text(app)
        await pilot.press("a")
        await settle(app, pilot)
        assert _review(study, ids[0]) == {"decision": "accept", "reason": None, "note": None}
        assert screen.current.id == ids[1]
        await pilot.press("r")
        assert screen.rejecting and "Reject: press the reason" in screen_text(app)
        await pilot.press("1")
        await settle(app, pilot)
        assert _review(study, ids[1])["reason"] == "airway_posterior" and screen.current.id == ids[2]
        await pilot.press("r", "escape")           # cancel: nothing recorded, still on the same image
        await settle(app, pilot)
        assert _review(study, ids[2]) is None and screen.current.id == ids[2] and not screen.rejecting
        await pilot.press("r", "9")                # "other" asks for a note
        await pilot.pause()
        assert type(app.screen).__name__ == "NoteModal"
        await pilot.press(*"two skulls", "enter")
        await settle(app, pilot)
        assert _review(study, ids[2]) == {"decision": "reject", "reason": "other", "note": "two skulls"}
        await pilot.press("r", "9", "escape")      # escape in the note prompt cancels the rejection
        await settle(app, pilot)
        assert _review(study, ids[3]) is None and type(app.screen).__name__ == "ScreeningScreen"
        for key in "2345678":                     # a reviewer's pace: keys queue, writes follow in order
            await pilot.press("r", key)
        await settle(app, pilot)
        assert [_review(study, i)["reason"] for i in ids[3:10]] == [
            "elements_inverted", "missing_vertebra", "extra_vertebra", "distortion", "artifact", "truncated",
            "second_spine"]
        await pilot.press("left")
        assert "✗ rejected: a second spine" in screen_text(app)


async def test_undo_prev_next_and_jump(study, ids) -> None:
    app = _app(study)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open(app, pilot)
        await pilot.press("a", "a", "r", "5")
        await settle(app, pilot)
        assert screen.current.id == ids[3]
        await pilot.press("u")
        await settle(app, pilot)
        assert _review(study, ids[2]) is None and screen.current.id == ids[2]   # back on the undone image
        await pilot.press("u")
        await settle(app, pilot)
        assert _review(study, ids[1]) is None and screen.current.id == ids[1]
        await pilot.press("left")
        assert screen.current.id == ids[0] and screen.current.decision == "accept"
        await pilot.press("right", "right", "right")
        assert screen.current.id == ids[3]
        await pilot.press("j")                     # jump to the first undecided
        assert screen.current.id == ids[1]
        for _ in range(20):
            await pilot.press("right")
        assert screen.current.id == ids[-1]       # clamped at the end


async def test_zoom_flip_and_preview_paint_trace(study, ids, tmp_path, monkeypatch) -> None:
    trace = tmp_path / "paint.log"
    monkeypatch.setenv("CSPINE_TRACE_PAINT", str(trace))
    app = _app(study)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open(app, pilot)
        view = app.screen.query_one("#single")
        end = time.monotonic() + HANG_S  # a hang detector: the loop ends when the paint happens
        while not (view._strips and trace.exists()):
            assert time.monotonic() < end
            await pilot.pause(0.02)
        assert view._strips[len(view._strips) // 2].text.count("▀") > 10   # half-cell pixels drawn
        assert trace.read_text().split()[2] == ids[0]
        whole = view.key
        await pilot.press("z")
        assert "upper half" in screen_text(app)
        await settle(app, pilot)
        await pilot.press("z", "z")
        assert "whole" in screen_text(app)
        before = study.store.query_one("SELECT path, flipped FROM synthetic_images WHERE id = ?", [ids[0]])
        await pilot.press("f")
        await settle(app, pilot)
        after = study.store.query_one("SELECT path, flipped FROM synthetic_images WHERE id = ?", [ids[0]])
        assert after["flipped"] is True and after["path"] != before["path"] and screen.current.flipped
        end = time.monotonic() + HANG_S  # a hang detector: the loop ends when the paint happens
        while view.key == whole:                  # the mirrored image is drawn
            assert time.monotonic() < end
            await pilot.pause(0.02)
        await pilot.press("u")
        await settle(app, pilot)
        assert study.store.query_one("SELECT path, flipped FROM synthetic_images WHERE id = ?", [ids[0]]) == before
        assert len(trace.read_text().splitlines()) >= 2


async def test_grid_marks_rejects_and_accepts_the_rest_of_the_page(study, ids) -> None:
    app = _app(study)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open(app, pilot)
        await pilot.press("g")
        await settle(app, pilot)
        assert screen.grid_mode and "page 1/2" in screen_text(app)
        await pilot.press("right", "down")         # cursor to the 5th thumbnail (index 4)
        assert screen.pos == 4
        await pilot.press("r", "3")
        await settle(app, pilot)
        assert _review(study, ids[4])["reason"] == "missing_vertebra"
        await pilot.press("a")                     # accept the other 8 of the page in one key
        await settle(app, pilot)
        decided = {i: _review(study, i) for i in ids[:9]}
        assert [d["decision"] for i, d in decided.items() if i != ids[4]] == ["accept"] * 8
        assert screen.pos == 9 and "page 2/2" in screen_text(app)
        thumbs = list(app.screen.query("Thumb"))
        assert thumbs[0].has_class("-cursor") and thumbs[6].item is None   # 15 images: 6 on page 2
        await pilot.press("u")                     # one undo step takes back the whole page
        await settle(app, pilot)
        assert all(_review(study, i) is None for i in ids[:9] if i != ids[4])
        assert _review(study, ids[4])["decision"] == "reject"
        await pilot.press("g")
        assert not screen.grid_mode
        await pilot.press("g", "enter")            # enter opens the cursor's image
        assert not screen.grid_mode


async def test_two_reviewers_agreement_and_adjudication(study, ids) -> None:
    for i in ids[:4]:
        decisions.decide(study, i, "ann", "accept")
    app = _app(study, "bob")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open(app, pilot)
        assert screen.current.id == ids[0]         # bob's queue is his own
        # Blind: bob sees nothing of ann's decisions while he screens (the paper's screeners were blind).
        facts = str(app.screen.query_one("#facts").content)
        assert "ann" not in facts and "✓ accepted" not in facts
        await pilot.press("r", "6", "a", "a", "a")
        await settle(app, pilot)
        await pilot.press("s")
        await settle(app, pilot)
        assert type(app.screen).__name__ == "ScreeningSummaryScreen"
        text = screen_text(app)
        assert "Cohen's kappa" in text and "Table S1" in text and ids[0] in text
        await pilot.press("a")                     # adjudicate the one disagreement: accept
        await settle(app, pilot)
        assert study.store.query_one("SELECT adjudicator, decision FROM review_adjudications WHERE image_id = ?",
                                     [ids[0]]) == {"adjudicator": "bob", "decision": "accept"}
        await pilot.press("r", "2")
        await settle(app, pilot)
        assert study.store.scalar("SELECT reason FROM review_adjudications") == "elements_inverted"
        await pilot.press("c")
        await settle(app, pilot)
        assert study.store.scalar("SELECT count(*) FROM review_adjudications") == 0
        await pilot.press("escape")
        assert type(app.screen).__name__ == "ScreeningScreen"
    agree = decisions.agreement(study, "ann", "bob")
    assert (agree["n"], agree["both_accept"], agree["a_accept_b_reject"]) == (4, 3, 1)


async def test_decisions_persist_across_a_restart_and_a_crash(study, ids) -> None:
    app = _app(study)
    async with app.run_test(size=(120, 40)) as pilot:
        await _open(app, pilot)
        await pilot.press("a", "a", "r", "4")
        await settle(app, pilot)
    # A crash after the journal write, before the database write: the next start replays it.
    journal = decisions.DecisionJournal(study, "ann")
    journal.append(decisions.ReviewEvent("accept", "ann", ids[3]))
    journal._fh.close()
    dead = journal.path.with_name("ann-999999999-abcdef.jsonl")
    journal.path.rename(dead)
    app = _app(study)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open(app, pilot)
        assert _review(study, ids[3])["decision"] == "accept" and not dead.exists()
        assert screen.current.id == ids[4]          # continues where the reviewer stopped
        assert [i.decision for i in screen.items[:4]] == ["accept", "accept", "reject", "accept"]


async def test_filters_and_palette_commands(study, ids) -> None:
    app = _app(study)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open(app, pilot)
        await pilot.press("c")
        await settle(app, pilot)
        assert {i.checkpoint_step for i in screen.items} == {34} and len(screen.items) == 12
        await pilot.press("c")
        await settle(app, pilot)
        assert {i.checkpoint_step for i in screen.items} == {40}
        await pilot.press("c", "w", "w")
        await settle(app, pilot)
        assert screen.filters["run_id"] == "c40" and len(screen.items) == 3
        await pilot.press("o")                      # no pre-screen scores: says so, order unchanged
        assert screen.filters["order"] == "index"
        titles = [t for t, _, _ in screen.palette_commands()]
        assert "Screening: filter to checkpoint 34" in titles and "Screening: filter to run c40" in titles
        dict((t, cb) for t, _, cb in screen.palette_commands())["Screening: filter off (every checkpoint and run)"]()
        await settle(app, pilot)
        assert len(screen.items) == 15
        await pilot.press("escape")                 # back to the dashboard
        assert type(app.screen).__name__ == "DashboardScreen"


async def test_release_from_the_palette_runs_as_a_job(study, ids) -> None:
    from core.jobs import control

    decisions.decide_many(study, [(i, "accept", None, None) for i in ids[:4]], "ann")
    app = _app(study)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open(app, pilot)
        dict((t, cb) for t, _, cb in screen.palette_commands())["Screening: release the dataset"]()
        # The job is created in a thread worker, which notifies when it has started.
        await until(app, pilot, lambda: any("release job" in str(n.message) for n in app._notifications))

    def release_states():
        states = [j["state"] for j in control.list_jobs(study) if j["kind"] == "release"]
        return states if states and states[0] not in ("queued", "running") else None

    states = wait_until(release_states, HANG_S, "the release job to finish")
    assert states == ["succeeded"]
    assert (study.exports_dir / "release" / "manifest.csv").read_text().count("\n") == 5   # header + 4 images


async def test_keys_are_remappable_and_shown_in_help(study, ids) -> None:
    study.set("keys", "accept", "y")
    app = _app(study)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open(app, pilot)
        await pilot.press("a")
        await settle(app, pilot)
        assert _review(study, ids[0]) is None
        await pilot.press("y")
        await settle(app, pilot)
        assert _review(study, ids[0])["decision"] == "accept"
        assert "Accept" in screen_text(app) and " y " in screen_text(app)   # footer shows the new key
        await pilot.press("question_mark")
        await pilot.pause()
        assert "`y` Accept" in "\n".join(app.screen.query_one("Markdown").source.splitlines())
    study.set("keys", "accept", "r")                 # a conflict: reported, defaults used
    app = _app(study)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open(app, pilot)
        assert any("bound to both" in str(n.message) for n in app._notifications)
        assert screen.keys["accept"] == "a"


@pytest.mark.parametrize("protocol", ["unicode", "off"])
async def test_other_protocols_show_the_large_preview_through_textual_image(study, ids, protocol, tmp_path,
                                                                            monkeypatch) -> None:
    trace = tmp_path / "paint.log"
    monkeypatch.setenv("CSPINE_TRACE_PAINT", str(trace))
    app = CspineApp(study, reviewer="ann", image_protocol=protocol)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open(app, pilot)
        graphic = app.screen.query_one("#graphic")
        end = time.monotonic() + HANG_S  # a hang detector: the loop ends when the paint happens
        while getattr(graphic, "key", None) is None:
            assert time.monotonic() < end
            await pilot.pause(0.02)
        assert screen.has_class("-graphic") and graphic.display
        if protocol == "off":
            assert "previews off" in screen_text(app)
        else:
            assert type(graphic.children[0]).__name__ == "UnicodeImage" and graphic.image is not None
        await pilot.press("right")
        end = time.monotonic() + HANG_S  # a hang detector: the loop ends when the paint happens
        while graphic.key[1] != screen.current.path:
            assert time.monotonic() < end
            await pilot.pause(0.02)
        assert [line.split()[2] for line in trace.read_text().splitlines()][:2] == ids[:2]
        await pilot.press("g")                     # the grid is half-cell in every protocol
        await settle(app, pilot)
        assert not graphic.display and app.screen.query_one("#grid").display
