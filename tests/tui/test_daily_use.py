"""Screens in daily use (issue 17): screening filters and names, sampling progress, analysis of the pack on
screen, the violin plot as text (Pilot)."""

from __future__ import annotations

from core.screening import decisions
from cspine_tui.app import CspineApp
from tests.factories.screening import add_run
from tests.factories.screens import screen_text
from tests.factories.waiting import open_by_key, settle


async def test_screening_run_filter_skips_empty_runs_and_names_stay_whole(study) -> None:
    add_run(study, "demo-planted-s10", 10, 2)
    add_run(study, "demo-planted-s100", 100, 3, seed0=20)
    decisions.decide(study, "demo-planted-s10-0", "other", "accept")
    app = CspineApp(study, reviewer="tester", image_protocol="halfcell")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_by_key(app, pilot, "4", "ScreeningScreen")
        facts = lambda: str(screen.query_one("#facts").content)  # noqa: E731
        assert "other" not in facts() and "accepted" not in facts()   # blind to other reviewers
        await pilot.press("c")                       # checkpoint 10 only
        await settle(app, pilot)
        seen = []
        for _ in range(3):                           # w cycles: s10, all runs, s10 - never into s100 (no images)
            await pilot.press("w")
            await settle(app, pilot)
            seen.append(screen.filters["run_id"])
            assert screen.items, f"empty queue after w: {screen.filters}"
            assert "queue" in facts()
        assert seen == ["demo-planted-s10", None, "demo-planted-s10"]
        assert "demo-planted-s10 ·" in facts()
        await pilot.press("c")                       # the run s10 has only checkpoint 10: back to all checkpoints
        await settle(app, pilot)
        assert screen.filters["checkpoint_step"] is None
        await pilot.press("w")                       # then the next run, s100
        await settle(app, pilot)
        assert screen.filters["run_id"] == "demo-planted-s100" and len(screen.items) == 3
        assert "demo-planted-s100 ·" in facts()       # the queue line names the run in full
        assert "demo-planted-s100" in screen_text(app)  # and so does Table S1


async def test_screening_empty_queue_keeps_the_queue_line(study) -> None:
    app = CspineApp(study, reviewer="tester", image_protocol="halfcell")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_by_key(app, pilot, "4", "ScreeningScreen")
        text = str(screen.query_one("#facts").content)
        assert "No synthetic images" in text and "queue" in text and "all runs" in text


async def test_sampling_progress_visible_with_long_run_names(sample_study) -> None:
    import time

    import numpy as np

    from core.ddpm import synthetic
    from core.jobs import runner
    from tests.factories.waiting import until

    name = "train-20261206-190956-bf3d-step-000200-dpmpp-x20-ema"  # as long as real run names get
    job = runner.create_job(sample_study, "sample", {"train_job": "train-20261206-190956-bf3d", "run": name,
                                                   "checkpoint_step": 200, "count": 20, "sampler": "dpmpp",
                                                   "steps": 20, "weights": "ema"})
    synthetic.create_run(sample_study, name, "sampled", job_id=job, checkpoint_step=200, sampler="dpmpp",
                         steps=20, seed=1, weights="ema")
    synthetic.add_images(sample_study, name, [synthetic.save_image(sample_study, name, i, np.full(
        (32, 32), 10 * i, np.uint8), seed=i, orient=False) for i in range(8)])
    runner.write_json_atomic(runner.run_dir(sample_study, job) / "status.json", {
        "state": "running", "done": 8, "total": 20, "images_per_s": 1.5, "run": name, "heartbeat": time.time()})
    for size in ((80, 24), (120, 40)):
        app = CspineApp(sample_study, reviewer="tester", image_protocol="off")
        async with app.run_test(size=size) as pilot:
            await settle(app, pilot)
            app.open_screen("sampling")
            await until(app, pilot, lambda: getattr(app.screen, "selected_run", None) == job)
            text = screen_text(app)
            assert "8/20" in text and "1.50" in text, (size, text)     # the runs table's progress columns
            info = str(app.screen.query_one("#run-info").render())
            assert "images 8 / 20 (40%)" in info and "1.50 img/s" in info, info  # the details panel: the count
