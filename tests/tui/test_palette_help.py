"""The command palette finds the commands of the screen it was opened from, and `?` lists them (Pilot)."""

from __future__ import annotations

from textual.command import CommandList, CommandPalette

from core.audit.nearest import run_audit
from core.metrics.embeddings import make_encoder
from cspine_tui.app import CspineApp
from tests.factories.audit import planted_study
from tests.factories.screening import add_run
from tests.factories.screens import screen_text
from tests.factories.waiting import open_by_key, settle, until


async def _palette_titles(app, pilot, query: str) -> list[str]:
    """Open the palette over the screen in front, type `query`, and return the titles it lists."""
    await pilot.press("ctrl+p")
    await until(app, pilot, lambda: isinstance(app.screen, CommandPalette))
    await pilot.press(*query)
    palette = app.screen
    options = palette.query_one(CommandList)
    # The palette searches in a worker and shows hits as they come; a search that finds nothing shows none.
    await until(app, pilot, lambda: options.option_count > 0, timeout=15)
    await pilot.pause(0.2)  # the last providers' hits
    titles = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
    await pilot.press("escape")
    await settle(app, pilot)
    return titles


async def test_palette_on_screening_finds_filter_and_accept(study) -> None:
    add_run(study, "c34", 34, 3)
    add_run(study, "c40", 40, 2, seed0=50)
    app = CspineApp(study, reviewer="tester", image_protocol="halfcell")
    async with app.run_test(size=(120, 40)) as pilot:
        await open_by_key(app, pilot, "4", "ScreeningScreen")
        found = await _palette_titles(app, pilot, "filter")
        assert any("filter to checkpoint 34" in t for t in found), found
        assert any("filter to run c40" in t for t in found), found
        found = await _palette_titles(app, pilot, "accept")
        assert any(t.startswith("Screening: Accept") for t in found), found
        before = app.screen.items[0].decision
        await pilot.press("ctrl+p")
        await until(app, pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"Screening: Accept")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await settle(app, pilot)
        screen = app.screen
        assert type(screen).__name__ == "ScreeningScreen"
        assert before is None and screen.items[0].decision == "accept"


async def test_palette_on_audit_finds_run_audit(study) -> None:
    planted_study(study)
    run_audit(study, "audit-t", encoder=make_encoder("pixel"), top=2)
    app = CspineApp(study, reviewer="alice", image_protocol="halfcell")
    async with app.run_test(size=(120, 40)) as pilot:
        await open_by_key(app, pilot, "5", "AuditScreen")
        found = await _palette_titles(app, pilot, "audit")
        assert any(t.startswith("Run audit (pixel") for t in found), found
        assert any("Run audit (pixel" in line for line in await _help(app, pilot))


async def _help(app, pilot) -> list[str]:
    await pilot.press("question_mark")
    await settle(app, pilot)
    assert type(app.screen).__name__ == "HelpScreen"
    lines = app.screen.lines()
    await pilot.press("escape")
    await settle(app, pilot)
    return lines


def test_dashboard_keys_number_the_screens_without_a_gap() -> None:
    from cspine_tui.registry import SCREENS

    assert [e.key for e in SCREENS if e.name != "dashboard"] == [str(k) for k in range(1, len(SCREENS))]


async def test_help_lists_screen_commands_keys_and_no_dashboard_key(study) -> None:
    add_run(study, "c34", 34, 3)
    app = CspineApp(study, reviewer="tester", image_protocol="halfcell")
    async with app.run_test(size=(120, 40)) as pilot:
        await open_by_key(app, pilot, "4", "ScreeningScreen")
        lines = await _help(app, pilot)
        text = "\n".join(lines)
        assert "filter to checkpoint 34" in text          # the palette's commands of this screen
        assert "Dashboard" not in text and "`0` after reject" in text  # no dead "0 Dashboard"; 0 is a reason
        assert "up up" not in text and "down down" not in text
        assert "`↑` Grid: cursor up a row" in text or "`up` Grid: cursor up a row" in text, text
        assert "esc" in screen_text(app).splitlines()[-1]  # the footer offers Back


async def test_dataset_footer_has_back(study) -> None:
    app = CspineApp(study, reviewer="tester", image_protocol="off")
    async with app.run_test(size=(120, 40)) as pilot:
        await open_by_key(app, pilot, "1", "DatasetScreen")
        assert "Back" in screen_text(app).splitlines()[-1]
