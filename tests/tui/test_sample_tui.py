"""The sampling screen (Textual Pilot): checkpoints with losses/FID/counts, runs, gallery, starting a job."""

from __future__ import annotations

import time

import numpy as np
import pytest

from core.jobs import runner

from core.ddpm import synthetic
from cspine_tui.app import CspineApp
from tests.factories.screens import screen_text
from tests.factories.sample import make_checkpoint
from tests.factories.waiting import settle, until
pytestmark = pytest.mark.timeout(180)


def _fake_sampled_run(study, n: int = 8) -> str:
    """A sampling job mid-way as its files and rows leave it (no process)."""
    job = runner.create_job(study, "sample", {"train_job": "train-fake", "checkpoint_step": 200, "count": 20,
                                            "sampler": "dpmpp", "steps": 20, "weights": "ema", "run": "live"})
    synthetic.create_run(study, "live", "sampled", job_id=job, train_job="train-fake", checkpoint_step=200,
                         sampler="dpmpp", steps=20, seed=1, weights="ema")
    rows = [synthetic.save_image(study, "live", i, np.full((32, 32), 10 * i, np.uint8), seed=i, orient=False)
            for i in range(n)]
    synthetic.add_images(study, "live", rows)
    runner.write_json_atomic(runner.run_dir(study, job) / "status.json", {
        "state": "running", "done": n, "total": 20, "progress": n / 20, "message": "1.50 images/s",
        "images_per_s": 1.5, "run": "live", "heartbeat": time.time(), "output": "/x/live"})
    with study.store.connect() as tx:
        tx.execute("INSERT INTO metrics (job_id, step, name, value, details) VALUES "
                   "('train-fake', 200, 'val_loss', 0.0421, NULL), "
                   "('train-fake', 200, 'fid', 87.5, '{\"extractor\": \"proxy\"}')")
    return job


async def test_sampling_screen_shows_checkpoints_runs_and_gallery(sample_study):
    make_checkpoint(sample_study, "train-fake", 400, torch_seed=4)
    job = _fake_sampled_run(sample_study)
    app = CspineApp(sample_study, reviewer="tester", image_protocol="off")
    async with app.run_test(size=(170, 48)) as pilot:
        await settle(app, pilot)
        app.open_screen("sampling")
        await until(app, pilot, lambda: len(getattr(app.screen, "shown_images", [])) == 6)
        screen = app.screen
        assert type(screen).__name__ == "SamplingScreen"
        ckpts = {c["step"]: c for c in screen.checkpoints}
        assert ckpts[200]["generated"] == 8 and ckpts[400]["generated"] == 0
        text = screen_text(app)
        assert "0.0421" in text and "87.50 proxy" in text  # losses and FID, labelled when not Inception
        assert screen.selected_run == job and "8/20" in text and "1.50" in text
        names = [p.rsplit("/", 1)[-1] for p in screen.shown_images]
        assert names == [f"{i:06d}.png" for i in range(7, 1, -1)]  # newest six, newest first
        first = screen.query_one("#g0").image
        assert first is not None and np.asarray(first).max() == 70
        # A new image lands while the screen is open: the gallery follows without reopening.
        synthetic.add_images(sample_study, "live", [synthetic.save_image(
            sample_study, "live", 8, np.full((32, 32), 80, np.uint8), seed=8, orient=False)])
        screen.refresh_data()
        await until(app, pilot, lambda: screen.shown_images[0].endswith("000008.png"))


async def test_sampling_screen_starts_jobs_for_marked_checkpoints(sample_study, monkeypatch):
    make_checkpoint(sample_study, "train-fake", 400, torch_seed=4)
    started: list[str] = []
    monkeypatch.setattr(runner, "start_detached", lambda study, job_id, command: started.append(job_id) or 1)
    app = CspineApp(sample_study, reviewer="tester", image_protocol="off")
    async with app.run_test(size=(170, 48)) as pilot:
        await settle(app, pilot)
        app.open_screen("sampling")
        await until(app, pilot, lambda: len(getattr(app.screen, "checkpoints", [])) == 2)
        screen = app.screen
        screen.query_one("#checkpoints").focus()
        await pilot.press("space", "down", "space")
        assert screen.marked == {("train-fake", 200), ("train-fake", 400)}
        screen.query_one("#count").value = "12"
        screen.query_one("#steps").value = "7"
        screen.query_one("#sampler").value = "unipc"
        screen.query_one("#checkpoints").focus()
        await pilot.press("s")
        await until(app, pilot, lambda: len(started) == 2)
        assert not screen.marked
        params = [runner.job_record(sample_study, j)["params"] for j in started]
        assert sorted(p["checkpoint_step"] for p in params) == [200, 400]
        assert all((p["sampler"], p["steps"], p["count"], p["weights"]) == ("unipc", 7, 12, "ema") for p in params)
        # A bad count is reported in one line, and nothing starts.
        screen.query_one("#count").value = "0"
        screen.query_one("#checkpoints").focus()
        await pilot.press("s")
        await settle(app, pilot)
        assert len(started) == 2
        assert any("count must be a positive" in n.message for n in app._notifications)


async def test_sampling_screen_shows_the_runs_fid(sample_study):
    _fake_sampled_run(sample_study)
    fid_job = runner.create_job(sample_study, "fid", {"run": "live", "real": "train", "extractor": "inception"})
    details = '{"run": "live", "extractor": "inception", "n": 8, "n_real": 40, "real": "train"}'
    with sample_study.store.connect() as tx:  # what a finished `cspine-tui fid --run live` leaves
        tx.execute("INSERT INTO metrics (job_id, step, name, value, details) VALUES (?, 0, 'fid', 42.125, ?), "
                   "(?, 0, 'kid', 0.0312, ?)", [fid_job, details, fid_job, details])
    app = CspineApp(sample_study, reviewer="tester", image_protocol="off")
    async with app.run_test(size=(170, 48)) as pilot:
        await settle(app, pilot)
        app.open_screen("sampling")
        await until(app, pilot, lambda: "FID 42.12" in screen_text(app))
        assert "KID 0.0312" in screen_text(app) and "n=8 vs 40 train images" in screen_text(app)
