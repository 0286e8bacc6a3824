"""The dataset screen under Textual's Pilot: counts, flagged filter, overrides, skipped files."""

from __future__ import annotations

import contextlib

from textual.worker import WorkerCancelled

from core.realset import ingest
from cspine_tui.app import CspineApp
from tests.factories.screens import screen_text
from tests.factories.ingest import draw_film, save_pil
from tests.factories.waiting import open_by_key, settle


def _study_with_images(study, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        save_pil(draw_film(160, 128, seed=i), src / f"film{i}.png")
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    ingest.ingest(study, [src], workers=0)
    # Mark one image as a low-confidence decision so the filter has something to show.
    first = study.store.column("SELECT id FROM real_images ORDER BY source_path")[0]
    study.store.execute("UPDATE real_images SET flagged = TRUE, orientation_confidence = 0.55 WHERE id = ?", [first])
    return first


async def test_dataset_screen_counts_filter_override_and_skipped(study, tmp_path) -> None:
    flagged_id = _study_with_images(study, tmp_path)
    app = CspineApp(study, reviewer="alice", image_protocol="halfcell")
    async with app.run_test(size=(140, 40)) as pilot:
        screen = await open_by_key(app, pilot, "1", "DatasetScreen")
        text = screen_text(app)
        assert "real images" in text and "3" in text and "skipped" in text and "1 files" in text
        assert len(screen.rows) == 3 and screen.current_id == flagged_id   # flagged first
        assert "FLAG" in text

        await pilot.press("f")                                             # flagged only
        await settle(app, pilot)
        assert [r["id"] for r in screen.rows] == [flagged_id]

        before = study.store.query_one("SELECT * FROM real_images WHERE id = ?", [flagged_id])
        await pilot.press("o")                                             # override the orientation
        await settle(app, pilot)
        after = study.store.query_one("SELECT * FROM real_images WHERE id = ?", [flagged_id])
        assert after["flipped"] != before["flipped"] and after["orientation_source"] == "override"
        assert not after["flagged"] and after["path"] != before["path"]
        assert screen.rows == []                                           # no longer flagged

        await pilot.press("f")                                             # all again
        await settle(app, pilot)
        assert len(screen.rows) == 3
        screen.query_one("#images-table").move_cursor(row=[r["id"] for r in screen.rows].index(flagged_id))
        await settle(app, pilot)
        await pilot.press("i")                                             # override the polarity
        await settle(app, pilot)
        row = study.store.query_one("SELECT * FROM real_images WHERE id = ?", [flagged_id])
        assert row["inverted"] != before["inverted"] and row["polarity_source"] == "override"
        assert screen.current_id == flagged_id

        await pilot.press("s")                                             # skipped files with reasons
        await settle(app, pilot)
        text = screen_text(app)
        assert "broken.png" in text and "not a readable image" in text
        await pilot.press("escape")
        await pilot.pause()
        assert not screen.showing_skipped


async def test_dataset_screen_is_idle_after_a_preview_load_replaced_before_it_started(study, tmp_path) -> None:
    """Two highlights in one tick: the first preview worker is cancelled before its thread starts, so its own
    `finally` never runs; the screen must still count itself idle once the workers are done (a counter
    bumped per start and dropped in the worker leaked here, and `settle` waited forever under load)."""
    _study_with_images(study, tmp_path)
    app = CspineApp(study, reviewer="alice", image_protocol="halfcell")
    async with app.run_test(size=(140, 40)) as pilot:
        screen = await open_by_key(app, pilot, "1", "DatasetScreen")
        # The screen's own first load ends by starting a preview; let it finish, or under load it starts one
        # after the wait below and the screen is rightly busy at the assert.
        await settle(app, pilot)
        screen._show_current()
        screen._show_current()  # exclusive: cancels the first before the event loop ever ran it
        with contextlib.suppress(WorkerCancelled):  # the first one: cancelled, never run
            await app.workers.wait_for_complete()
        await pilot.pause()
        assert not screen.busy
        await settle(app, pilot)
