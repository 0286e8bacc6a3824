"""Screens call core functions, never SQL, and start jobs only through core.jobs.launch, off the UI thread."""

from __future__ import annotations

import sys
import threading

import pytest

from core.audit.nearest import audit_params, run_audit
from core.jobs import runner
from core.metrics.embeddings import make_encoder
from core.store.database import Store
from cspine_tui.app import CspineApp
from tests.factories.audit import planted_study
from tests.factories.waiting import open_by_key, settle, until

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def database_calls(monkeypatch):
    """Every opening of the study database: (module that asked, whether on the UI thread)."""
    calls: list[tuple[str, bool]] = []
    real = Store.connect

    def connect(self):
        frame = sys._getframe(1)
        while frame is not None and frame.f_globals.get("__name__", "").startswith(("core.store", "contextlib")):
            frame = frame.f_back
        calls.append((frame.f_globals.get("__name__", "?") if frame else "?",
                      threading.current_thread() is threading.main_thread()))
        return real(self)

    monkeypatch.setattr(Store, "connect", connect)
    return calls


async def test_audit_palette_lists_audits_without_touching_the_database(study, database_calls):
    planted_study(study)
    run_audit(study, "audit-t", encoder=make_encoder("pixel"), top=4)
    app = CspineApp(study, reviewer="alice", image_protocol="off")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_by_key(app, pilot, "5", "AuditScreen")
        database_calls.clear()
        names = [name for name, _help, _call in screen.palette_commands()]  # the palette calls this on the UI thread
        assert "Open audit audit-t" in names
        assert database_calls == []
    assert not any(module.startswith("cspine_tui") for module, _ui in database_calls)


async def test_analysis_screen_reads_through_core(study, database_calls):
    app = CspineApp(study, reviewer="alice", image_protocol="off")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        app.open_screen("analysis")
        await settle(app, pilot)
        assert type(app.screen).__name__ == "AnalysisScreen"
    assert database_calls, "the screen loaded nothing"
    assert not [c for c in database_calls if c[0].startswith("cspine_tui")], database_calls


async def test_audit_from_the_palette_starts_through_launch_with_the_commands_defaults(study, monkeypatch):
    planted_study(study)
    started: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(runner, "start_detached",
                        lambda st, job_id, command=None: started.append((job_id, command)) or 1)
    app = CspineApp(study, reviewer="alice", image_protocol="off")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_by_key(app, pilot, "5", "AuditScreen")
        run = dict((name, call) for name, _help, call in screen.palette_commands())["Run audit (pixel embedding)"]
        run()
        await until(app, pilot, lambda: started)
    (job_id, command), = started
    record = runner.job_record(study, job_id)
    assert record["params"] == audit_params(study, embedding="pixel") and record["argv"] == ["tui", "audit"]
    assert command == runner.job_command(study, job_id)


async def test_release_from_the_screening_palette_starts_off_the_ui_thread(study, monkeypatch):
    from tests.factories.screening import add_run

    add_run(study, "r1", 1000, 3)
    threads: list[bool] = []

    def start(st, job_id, command=None):
        threads.append(threading.current_thread() is threading.main_thread())
        return 1

    monkeypatch.setattr(runner, "start_detached", start)
    app = CspineApp(study, reviewer="alice", image_protocol="off")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        app.open_screen("screening")
        await settle(app, pilot)
        release = dict((name, call) for name, _help, call in app.screen.palette_commands())[
            "Screening: release the dataset"]
        release()
        await until(app, pilot, lambda: threads)
    assert threads == [False]
