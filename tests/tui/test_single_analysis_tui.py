"""The analysis screen shows a single-image pack's analysis: import, analyse, tables and the ROC figure's path."""

from __future__ import annotations

import pytest

from core.demo.single_raters import simulate_single_readers, write_single_qualtrics_csv
from core.reader_study.single_pack import build_single_pack
from cspine_tui.app import CspineApp
from tests.factories.screens import screen_text
from tests.factories.survey import tiny_study
from tests.factories.waiting import until

pytestmark = pytest.mark.timeout(180)


async def test_analysis_screen_imports_and_analyses_a_single_image_pack(tmp_path) -> None:
    study = tiny_study(tmp_path, n_real=8, per_ckpt=6, reject_every=1000)
    spec = build_single_pack(study, tmp_path / "single", groups=["2000", "4000"], count=8, seed=1, size=32)
    csv_path = write_single_qualtrics_csv(tmp_path / "sim.csv", spec, simulate_single_readers(spec, 3, seed=1))
    app = CspineApp(study, reviewer="tester", image_protocol="halfcell")
    async with app.run_test(size=(170, 48)) as pilot:
        app.open_screen("analysis")
        await until(app, pilot, lambda: "No ratings yet" in screen_text(app))
        scr = app.screen
        await pilot.press("i")
        scr.query_one("#import").value = str(csv_path)
        await pilot.press("enter")  # the newest pack is the single-image one: its importer is used
        await until(app, pilot, lambda: "press a to analyse" in screen_text(app))
        scr.query_one("#import").blur()
        await pilot.press("a")
        await until(app, pilot, lambda: scr.result is not None and "Single-image reader study" in screen_text(app))
        text = screen_text(app)
        assert "SIMULATED readers: 3" in text and "sensitivity" in text and "ROC AUC" in text
        assert "checkpoint 2000 vs checkpoint 4000" in text and "roc.png" in text
        assert scr.result["design"] == "single" and scr.result["pack_id"] == spec.pack_id
        names = [name for name, _help, _call in scr.palette_commands()]
        assert f"Analysis: show pack {spec.pack_id} (single images)" in names
        assert app.is_running
