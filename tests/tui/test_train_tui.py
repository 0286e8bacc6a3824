"""Training and jobs screens (Textual Pilot): live data from run folders, actions, jobs outliving the app."""

from __future__ import annotations

import json
import time

import pytest

from core.jobs import control

from core.jobs import runner

from core.jobs import runview
from core.ddpm.networks import get_preset
from cspine_tui.app import CspineApp
from tests.factories.screens import screen_text
from tests.factories.waiting import HANG_S, settle, until, wait_until
pytestmark = pytest.mark.timeout(180)


def _fake_train_run(study, steps: int = 300, state: str = "running") -> str:
    """A training job's folder as a live run leaves it: status.json and metrics.jsonl (no process)."""
    job = runner.create_job(study, "train", {"config": {"name": "tiny", "max_steps": 1000}, "data": "train"})
    folder = runner.run_dir(study, job)
    lines = []
    for s in range(1, steps + 1):
        line = {"step": s, "time": 0, "train_loss": {"value": 1.0 / (1 + 0.05 * s), "window": 1}}
        if s % 100 == 0:
            line["val_loss"] = {"value": 1.2 / (1 + 0.05 * s)}
            line["fid"] = {"value": 500.0 / s, "extractor": "proxy", "sampler": "dpmpp", "sampler_steps": 20, "n": 64}
            line["kid"] = {"value": 0.5 / s}
        lines.append(json.dumps(line))
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    runner.write_json_atomic(folder / "status.json", {
        "state": state, "step": steps, "done": steps, "total": 1000, "progress": steps / 1000,
        "message": "loss 0.0625", "steps_per_s": 4.2, "images_per_s": 67.2, "eta_s": 166, "device": "cpu",
        "precision": "no", "memory_mb": 900.0, "heartbeat": time.time(), "pid": None})
    return job


async def test_training_screen_shows_curve_evals_and_stats(study):
    job = _fake_train_run(study, state="paused")
    app = CspineApp(study, reviewer="tester", image_protocol="off")
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(app, pilot)
        app.open_screen("training")
        await settle(app, pilot)
        screen = app.screen
        assert type(screen).__name__ == "TrainingScreen" and screen.selected == job
        text = screen_text(app)
        assert "4.20 steps/s" in text and "device cpu" in text and "memory 0.88 GiB" in text
        assert "paused" in text
        evals = screen.query_one("#evals")
        assert evals.row_count == 3  # val loss / FID at steps 100, 200, 300
        assert "NOT Inception" in text
        plot = screen.query_one("#curve")
        curve = plot._datasets[0]
        assert len(curve.x) <= 300 and curve.y.max() <= 0.0  # log10 of losses below 1
        # More lines arrive while the screen is open: the curve grows without reopening.
        with open(runner.run_dir(study, job) / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps({"step": 301, "time": 0, "train_loss": {"value": 0.01}}) + "\n")
        await until(app, pilot, lambda: screen.tail.points("train_loss")[0][-1] == 301, refresh=screen.poll_now)


async def test_training_screen_cancel_and_new_run(study, monkeypatch):
    queued = runner.create_job(study, "train", {"config": {"name": "tiny", "max_steps": 10}, "data": "train"})
    started: list[str] = []
    monkeypatch.setattr(runner, "start_detached", lambda st, job_id, command: started.append(job_id) or 1)
    app = CspineApp(study, reviewer="tester", image_protocol="off")
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(app, pilot)
        app.open_screen("training")
        await settle(app, pilot)
        assert app.screen.selected == queued
        await pilot.press("c")
        await settle(app, pilot)
        assert runner.job_record(study, queued)["state"] == "cancelled"
        await _new_run_dialog(app, pilot)
        assert type(app.screen).__name__ == "NewRunScreen"
        app.screen.query_one("#steps").value = "40"
        await pilot.click("#start")
        await settle(app, pilot)
        await settle(app, pilot)
    assert len(started) == 1
    params = runner.job_record(study, started[0])["params"]
    import torch

    # The preset this machine can train: tiny without a GPU, the study's (paper) with one.
    assert params["config"]["max_steps"] == 40
    assert params["config"]["name"] == ("paper" if torch.cuda.is_available() else "tiny")


async def _new_run_dialog(app, pilot):
    await pilot.press("n")
    await until(app, pilot, lambda: getattr(app.screen, "defaults", None) is not None)
    return app.screen


async def test_new_run_dialog_labels_fid_setting_and_study_toml_edits(study, monkeypatch):
    from textual.widgets import Input, Label, Select

    from core.metrics import fid

    started: list[str] = []
    monkeypatch.setattr(runner, "start_detached", lambda st, job_id, command: started.append(job_id) or 1)
    monkeypatch.setattr(fid, "torch_hub_checkpoints", lambda: study.root / "no-hub")  # no Inception weights:
    monkeypatch.setattr(fid, "packaged_weights", lambda: None)  # neither cached nor installed with a package
    app = CspineApp(study, reviewer="tester", image_protocol="off")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        app.open_screen("training")
        await settle(app, pilot)
        dialog = await _new_run_dialog(app, pilot)
        # Every field has a label right above it (no unlabelled "1").
        children = list(dialog.query_one("VerticalScroll").children)
        for i, widget in enumerate(children):
            if isinstance(widget, (Input, Select)):
                assert isinstance(children[i - 1], Label), widget.id
        assert dialog.query_one("#fid", Select).value == "auto"      # no weights: auto, which falls back
        assert "no Inception weights" in str(dialog.query_one("#machine").render())
        preset = dialog.query_one("#preset", Select).value
        assert dialog.query_one("#fid-every", Input).value == str(get_preset(preset).fid_every)
        dialog.query_one("#fid", Select).value = "off"
        await settle(app, pilot)
        assert dialog.query_one("#fid-every", Input).value == "0"
        dialog.query_one("#start").press()
        await until(app, pilot, lambda: len(started) == 1)
        params = runner.job_record(study, started[0])["params"]
        assert params["config"]["fid_every"] == 0                   # FID off: the run never needs Inception
        # A study.toml edit while the app runs is seen by the next dialog and run.
        text = study.settings_path.read_text().replace("[train]\n", "[train]\nfid_every = 7\n")
        study.settings_path.write_text(text)
        dialog = await _new_run_dialog(app, pilot)
        assert dialog.query_one("#fid-every", Input).value == "7"
        dialog.query_one("#fid", Select).value = "proxy"
        await settle(app, pilot)
        dialog.query_one("#start").press()
        await until(app, pilot, lambda: len(started) == 2)
    params = runner.job_record(study, started[1])["params"]
    assert params["config"]["fid_every"] == 7 and params["fid_extractor"] == "proxy"


async def test_jobs_screen_lists_jobs_with_sparkline_and_log_and_outlives_the_app(study):
    train_job = _fake_train_run(study, steps=50)
    live = runner.create_job(study, "selftest", {"n": 100000, "sleep": 0.01})
    runner.start_detached(study, live)
    wait_until(lambda: (control.job_status(study, live).get("done") or 0) >= 2, HANG_S, "the job to count")
    try:
        app = CspineApp(study, reviewer="tester", image_protocol="off")
        async with app.run_test(size=(160, 48)) as pilot:
            await settle(app, pilot)
            app.open_screen("jobs")
            await settle(app, pilot)
            screen = app.screen
            ids = [r["id"] for r in screen.rows]
            assert live in ids and train_job in ids
            text = screen_text(app)
            assert "selftest" in text and "running" in text
            # train_job's status says running but it has no process: shown as died.
            assert {r["id"]: r["state"] for r in screen.rows}[train_job] == "died"
            assert any(ch in text for ch in runview.SPARK)
            screen.selected = live
            await until(app, pilot, lambda: f"job {live} (selftest) started" in screen_text(app),
                        refresh=screen.poll_now)
        # The app is closed: the detached job still runs, and a new app sees it live.
        assert runner.job_record(study, live)["state"] == "running"
        before = control.job_status(study, live)["done"]
        app = CspineApp(study, reviewer="tester", image_protocol="off")
        async with app.run_test(size=(160, 48)) as pilot:
            app.open_screen("jobs")
            await settle(app, pilot)
            row = {r["id"]: r for r in app.screen.rows}[live]
            assert row["state"] == "running" and row["status"]["done"] >= before
    finally:
        control.cancel_job(study, live)
        end = control.wait_for(study, live, timeout=HANG_S)
        assert end["state"] == "cancelled", (end["error"], control.tail_log(study, live, 10))


def test_runview_helpers():
    xs = list(range(1000))
    dx, dy = runview.downsample(xs, [float(x) for x in xs], 100)
    assert len(dx) == 100 and dy[0] == pytest.approx(4.5)
    assert runview.sparkline([1, 2, 3, 4], 4) == "▁▃▆█"
    assert runview.sparkline([], 4) == ""
    assert runview.fmt_duration(3725) == "1h 02m" and runview.fmt_duration(None) == "–"
