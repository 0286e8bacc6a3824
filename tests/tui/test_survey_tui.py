"""The survey and analysis screens (Textual Pilot)."""

from __future__ import annotations

import io

import pytest

from core.reader_study import responses

from core.reader_study import pack
from core.demo import raters
from cspine_tui.app import CspineApp
from tests.factories.screens import screen_text
from tests.factories.survey import tiny_study
from tests.factories.waiting import until
CKPTS = ["2000", "4000", "6000"]


def _drawn(screen, *ids: str) -> str:
    """What some Statics of a screen hold, drawn 220 columns wide (the screen wraps them at its width)."""
    from rich.console import Console

    console = Console(width=220, record=True, file=io.StringIO())
    for ident in ids:
        console.print(screen.query_one(ident).content)
    return console.export_text()


@pytest.fixture
def study(tmp_path):
    return tiny_study(tmp_path, n_real=6, per_ckpt=6, reject_every=1000)


async def test_survey_screen_builds_a_pack_and_browses_quartets(study, tmp_path) -> None:
    app = CspineApp(study, reviewer="tester", image_protocol="halfcell")
    async with app.run_test(size=(140, 44)) as pilot:
        app.open_screen("survey")
        await until(app, pilot, lambda: "2000: 6" in screen_text(app))
        scr = app.screen
        assert type(scr).__name__ == "SurveyScreen" and scr.packs == []
        assert scr.query_one("#in-ckpts").value == "2000 4000 6000"  # prefilled from the accepted images
        scr.query_one("#in-count").value = "3"
        scr.query_one("#in-seed").value = "11"
        scr.query_one("#in-out").value = str(tmp_path / "tui-pack")
        await pilot.press("b")
        await until(app, pilot, lambda: scr.spec is not None and "Quartet 1 of 3" in screen_text(app))
        assert study.store.scalar("SELECT count(*) FROM quartet_packs") == 1
        assert (tmp_path / "tui-pack" / "upload" / "survey.qsf").exists()
        assert "(k shows the answer key)" in screen_text(app) and "real:" not in screen_text(app)
        await until(app, pilot, lambda: all(scr.query_one(f"#img-{x}").image is not None for x in "ABCD"))
        await pilot.press("n")
        await until(app, pilot, lambda: "Quartet 2 of 3" in screen_text(app))
        await pilot.press("k")
        await until(app, pilot, lambda: "real:" in screen_text(app))
        real = next(i.letter for i in scr.spec.quartet(2) if i.source == "real")
        assert f"real: {real}" in screen_text(app)
        # a bad form is reported, not fatal
        scr.query_one("#in-ckpts").value = "2000 4000"
        await pilot.press("b")
        await pilot.pause()
        assert any("three groups" in str(n.message) for n in app._notifications)
        assert app.is_running


async def test_survey_screen_builds_from_any_groups_with_free_text(study, tmp_path) -> None:
    app = CspineApp(study, reviewer="tester", image_protocol="halfcell")
    async with app.run_test(size=(140, 44)) as pilot:
        app.open_screen("survey")
        await until(app, pilot, lambda: "run:ckpt-4000: 6" in screen_text(app))  # runs are groups too
        scr = app.screen
        scr.query_one("#in-ckpts").value = "2000 run:ckpt-4000 6000"
        scr.query_one("#in-count").value = "2"
        scr.query_one("#in-out").value = str(tmp_path / "groups-pack")
        scr.query_one("#in-free").value = True
        await pilot.press("b")
        await until(app, pilot, lambda: scr.spec is not None and "design: quartets" in screen_text(app))
        assert scr.spec.checkpoints == ["2000", "run:ckpt-4000", "6000"] and scr.spec.free_text
        info = str(scr.query_one("#pack-info").render())  # the side panel wraps it on screen
        assert "1 real + step 2000, run ckpt-4000, step 6000" in info and "free text per trial" in info
        await pilot.press("k")
        await until(app, pilot, lambda: "real:" in screen_text(app))
        assert "= run ckpt-4000" in screen_text(app)


async def test_survey_screen_builds_a_single_image_pack_and_plans_power(study, tmp_path) -> None:
    app = CspineApp(study, reviewer="tester", image_protocol="halfcell")
    async with app.run_test(size=(140, 44)) as pilot:
        app.open_screen("survey")
        await until(app, pilot, lambda: "2000: 6" in screen_text(app))
        scr = app.screen
        scr.query_one("#in-design").value = "single"
        await until(app, pilot, lambda: scr.query_one("#in-count").value == "100")  # the design's default
        scr.query_one("#in-count").value = "6"
        scr.query_one("#in-ckpts").value = "2000 run:ckpt-4000"  # any number of groups
        scr.query_one("#in-seed").value = "5"
        scr.query_one("#in-out").value = str(tmp_path / "single-pack")
        await pilot.press("b")
        await until(app, pilot, lambda: scr.spec is not None and "Image 1 of 6" in screen_text(app))
        assert getattr(scr.spec, "design", "") == "single"
        assert study.store.scalar("SELECT count(*) FROM single_packs") == 1
        assert "design: single images" in str(scr.query_one("#pack-info").render())
        assert not scr.query_one("#img-B").display  # one image per trial
        await until(app, pilot, lambda: scr.query_one("#img-A").image is not None)
        await pilot.press("k")
        item = scr.spec.trial(1)
        await until(app, pilot, lambda: "(k shows" not in screen_text(app))
        assert ("real" if item.source == "real" else "step 2000" if item.source == "2000" else "run ckpt-4000") \
            in screen_text(app)
        # the pack table lists both designs' packs with their design
        assert scr.query_one("#packs").get_row_at(0)[1:3] == ["single", "6"]
        # the power plan opens prefilled with the form's design and count, and plans
        await pilot.press("w")
        plan = scr.query_one("#plan")
        assert plan.has_class("shown") and plan.query_one("#pp-design").value == "single"
        assert plan.query_one("#pp-trials").value == "6"
        plan.sims = 200  # a quick plan: this checks the wiring; tests/unit/reader_study/test_power.py the numbers
        plan.run_plan()
        await until(app, pilot, lambda: plan.doc is not None)
        assert plan.doc["design"] == "single" and plan.doc["trials"] == 6
        # a quartet pack still needs three groups
        scr.query_one("#in-design").value = "quartets"
        await pilot.pause()
        await pilot.press("b")
        await until(app, pilot, lambda: any("three groups" in str(n.message) for n in app._notifications))
        assert app.is_running


async def test_analysis_screen_imports_analyses_and_shows_the_plot(study, tmp_path) -> None:
    spec = pack.build_pack(study, tmp_path / "pack", checkpoints=CKPTS, count=6, seed=2, size=32)
    csv_path = raters.write_qualtrics_csv(tmp_path / "sim.csv", spec,
                                              raters.simulate_raters(spec, 4, seed=1)
                                              + raters.preview_and_partial(spec))
    app = CspineApp(study, reviewer="tester", image_protocol="halfcell")
    async with app.run_test(size=(170, 48)) as pilot:
        app.open_screen("analysis")
        await until(app, pilot, lambda: "No ratings yet" in screen_text(app))
        scr = app.screen
        await pilot.press("i")
        scr.query_one("#import").value = str(csv_path)
        await pilot.press("enter")
        await until(app, pilot, lambda: "press a to analyse" in screen_text(app))
        assert any("6 responses" in str(n.message) and "preview 1" in str(n.message) for n in app._notifications)
        scr.query_one("#import").blur()
        await pilot.press("a")
        await until(app, pilot, lambda: scr.result is not None and "median" in screen_text(app))
        text = screen_text(app)
        # Half-cell blocks cannot show a plot: its numbers as a table, and where the PNG is.
        assert "Per-rater mean realism" in text and "realism_rater_means.png" in text
        assert "identification accuracy" in text and "SIMULATED raters: 4" in text
        assert "report " in text and scr.result["report"]["html"].endswith("report.html")
        # design, groups, every pair, and the raters' questionnaire answers (the tables as drawn, unwrapped)
        tables = _drawn(scr, "#summary", "#raters", "#groups")
        assert "quartets: real + 2000, 4000, 6000" in tables
        assert "Every pair of groups" in tables and "step 2000 vs step 4000" in tables
        assert "specialty" in tables and "Neuroradiology" in tables
        first = scr.result["analysis_id"]
        await pilot.press("c")  # kappa coding -> position, re-run
        await until(app, pilot, lambda: scr.result["analysis_id"] != first)
        assert scr.result["kappa_coding"] == "position"
        assert study.store.scalar("SELECT count(*) FROM analyses") == 2
    assert responses.list_imports(study)[0]["summary"]["used"] == 4


async def test_analysis_c_reanalyses_the_pack_on_screen_not_the_newest(study, tmp_path) -> None:
    from core.reader_study.analysis import analyze

    older = pack.build_pack(study, tmp_path / "pack-a", checkpoints=CKPTS, count=6, seed=2, size=32)
    csv_path = raters.write_qualtrics_csv(tmp_path / "sim.csv", older, raters.simulate_raters(older, 4, seed=1))
    responses.import_ratings(study, csv_path, older.pack_id)
    analyze(study, older.pack_id)
    newer = pack.build_pack(study, tmp_path / "pack-b", checkpoints=CKPTS, count=6, seed=3, size=32)
    assert newer.pack_id != older.pack_id
    app = CspineApp(study, reviewer="tester", image_protocol="halfcell")
    async with app.run_test(size=(170, 48)) as pilot:
        app.open_screen("analysis")
        await until(app, pilot, lambda: getattr(app.screen, "result", None) is not None)
        scr = app.screen
        assert scr.result["pack_id"] == older.pack_id and older.pack_id in screen_text(app)
        first = scr.result["analysis_id"]
        await pilot.press("c")  # re-run with the next kappa coding: the pack on screen (the newer has no ratings)
        await until(app, pilot, lambda: scr.result["analysis_id"] != first or not scr.running)
        assert not [n.message for n in app._notifications if n.severity == "error"]
        assert scr.result["analysis_id"] != first and scr.result["pack_id"] == older.pack_id
        assert scr.result["kappa_coding"] == "position"
