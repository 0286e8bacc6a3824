"""The Utility screen (Pilot): benchmark jobs with their learning curves, metric table and paired comparisons, and
condition checks with their agreement, all read from the run folders."""

from __future__ import annotations

import pytest

from cspine_tui.app import CspineApp
from tests.factories.screens import screen_text
from tests.factories.utility import fake_benchmark, fake_check
from tests.factories.waiting import open_by_key, settle, until

pytestmark = pytest.mark.timeout(180)


async def test_utility_screen_shows_curves_tables_and_checks(study) -> None:
    bench = fake_benchmark(study)
    check = fake_check(study)
    app = CspineApp(study, reviewer="tester", image_protocol="off")
    async with app.run_test(size=(160, 48)) as pilot:
        await open_by_key(app, pilot, "9", "UtilityScreen")
        await settle(app, pilot)
        screen = app.screen
        order = [j["id"] for j in screen.jobs]
        assert sorted(order) == sorted([bench, check])
        assert screen.selected == bench  # the newest benchmark, not the newer check: it has the curves
        for job in (bench, check):
            if screen.selected != job:
                await pilot.press("down" if order.index(job) > order.index(screen.selected) else "up")
                await until(app, pilot, lambda: screen.selected == job)
            await settle(app, pilot)
            if job == check:
                text = screen_text(app)
                assert "checker on real" in text and "0.750" in text and "0.900" in text and "train-x" in text
                continue
            # The benchmark: one curve per training set, the AUROC first.
            assert screen.metric == "auroc"
            plot = screen.query_one("#curves")
            labels = sorted(label for label in plot._labels if label)
            assert labels == ["mixed", "real", "synthetic"]
            assert len(plot._datasets) == 9  # a line, the intervals and the points of each
            assert screen.query_one("#results").row_count == 5
            assert screen.query_one("#comparisons").row_count == 6  # 2 fractions x 3 pairs
            assert "DeLong" in screen_text(app)
            await pilot.press("m")
            await settle(app, pilot)
            assert screen.metric == "accuracy" and "paired bootstrap" in screen_text(app)


async def test_new_benchmark_dialog_starts_a_job_or_says_why_not(tmp_path, monkeypatch) -> None:
    from core.jobs import runner
    from core.study import Study
    from tests.factories.utility import phantom_study

    study = Study.create(tmp_path / "study")
    info = phantom_study(study, n_train=4, n_val=2, n_syn=2)
    started: list[str] = []
    monkeypatch.setattr(runner, "start_detached", lambda st, job_id, command: started.append(job_id) or 1)
    app = CspineApp(study, reviewer="tester", image_protocol="off")
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await open_by_key(app, pilot, "9", "UtilityScreen")
        await pilot.press("n")
        await until(app, pilot, lambda: getattr(app.screen, "choices", None) is not None)
        dialog = app.screen
        assert [v for _, v in dialog.choices] == ["landmarks", "curve", "facing"]
        dialog.query_one("#steps").value = "5"
        dialog.query_one("#fractions").value = "0.5 1"
        await pilot.click("#start")
        await until(app, pilot, lambda: started)
        params = runner.job_record(study, started[0])["params"]
        assert (params["task"], params["steps"], params["fractions"]) == ("landmarks", 5, [0.5, 1.0])
        assert screen.selected == started[0]
        # A generator that saw every image: refused in one line, nothing started.
        study.store.execute("UPDATE jobs SET params = ? WHERE id = ?", ['{"data": "all"}', info["job"]])
        await pilot.press("n")
        await until(app, pilot, lambda: getattr(app.screen, "choices", None) is not None)
        await pilot.click("#start")
        await until(app, pilot, lambda: any("--data all" in n.message for n in app._notifications))
    assert len(started) == 1
