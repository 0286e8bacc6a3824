"""The TUI shell: dashboard, help, command palette, error reporting (Textual Pilot)."""

from __future__ import annotations

import pytest

from core.errors import CspineError
from cspine_tui.app import CspineApp
from cspine_tui.registry import SCREENS
from tests.factories.screens import screen_text
from tests.factories.waiting import settle


@pytest.fixture
def app(study):
    return CspineApp(study, reviewer="tester", image_protocol="off")


async def test_dashboard_shows_the_study_figures(app, study) -> None:
    study.store.execute("INSERT INTO meta VALUES ('x', 'y')")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert app.screen.name == "dashboard" or type(app.screen).__name__ == "DashboardScreen"
        assert app.screen.status["images"] == {"real": 0, "synthetic": 0}
        text = screen_text(app)
        assert "Real images" in text and "Reader study" in text


async def test_help_opens_and_closes(app) -> None:
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert type(app.screen).__name__ == "HelpScreen"
        await pilot.press("escape")
        await pilot.pause()
        assert type(app.screen).__name__ == "DashboardScreen"


async def test_command_palette_lists_every_screen(app) -> None:
    from cspine_tui.palette import CspineCommands

    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        titles = [t for t, _, _ in CspineCommands(app.screen)._commands()]
        assert all(f"Open {e.title}" in titles for e in SCREENS)


async def test_user_errors_are_shown_not_fatal(app) -> None:
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        app.report_error(CspineError("the file x.png is corrupt; re-export it"))
        await pilot.pause()
        assert any("x.png is corrupt" in str(n.message) for n in app._notifications)
        assert app.is_running


async def test_dashboard_keys_open_every_screen_and_escape_returns(app) -> None:
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        for entry in SCREENS:
            if entry.name == "dashboard":
                continue
            await pilot.press(entry.key)
            await pilot.pause()
            assert app.screen is app.get_screen(entry.name), entry.name
            app.open_screen("dashboard")
            await pilot.pause()
            assert type(app.screen).__name__ == "DashboardScreen"
