"""The power-plan widget (cspine_tui/widgets/power_plan.py) under Textual's Pilot, in a bare app that mounts it."""

from __future__ import annotations

from textual.app import App, ComposeResult

from cspine_tui.widgets.power_plan import PowerPlan
from tests.factories.screens import screen_text
from tests.factories.waiting import until


async def _plan(app, pilot) -> None:
    """Click Plan once its press animation is over (a Button ignores clicks for 0.2 s after one)."""
    await until(app, pilot, lambda: not app.query_one("#pp-run").has_class("-active"))
    assert await pilot.click("#pp-run")


class PlanApp(App):
    def __init__(self) -> None:
        super().__init__()
        self.planned: list[dict] = []

    def compose(self) -> ComposeResult:
        yield PowerPlan(readers=4, trials=20, sims=200, seed=3)

    def on_power_plan_planned(self, message: PowerPlan.Planned) -> None:
        self.planned.append(message.doc)


async def test_the_widget_plans_in_a_thread_and_shows_the_plan() -> None:
    app = PlanApp()
    async with app.run_test(size=(150, 60)) as pilot:
        widget = app.query_one(PowerPlan)
        widget.query_one("#pp-effect").value = "0.4"
        await _plan(app, pilot)
        await until(app, pilot, lambda: app.planned)
        doc = app.planned[0]
        assert (doc["design"], doc["readers"], doc["trials"], doc["sims"]) == ("quartets", 4, 20, 200)
        assert doc["effect"]["identification"] == 0.4 and "search" in doc
        text = screen_text(app)
        assert "quartets design: 4 readers x 20 quartets" in text and "for 80% power" in text
        # the same plan as the core function gives (seeded)
        from core.reader_study import power

        same = power.plan("quartets", 4, 20, power.effect_for("quartets", identification=0.4), sims=200, seed=3)
        assert doc["tests"] == same["tests"]


async def test_the_single_design_and_a_bad_value() -> None:
    app = PlanApp()
    async with app.run_test(size=(150, 60)) as pilot:
        widget = app.query_one(PowerPlan)
        widget.query_one("#pp-design").value = "single"
        await pilot.pause()
        assert "AUC" in widget.query_one("#pp-effect").placeholder
        widget.query_one("#pp-readers").value = "three"
        await _plan(app, pilot)
        await pilot.pause()
        assert any("whole numbers" in str(n.message) for n in app._notifications) and not app.planned
        widget.query_one("#pp-readers").value = "3"
        widget.query_one("#pp-effect").value = "1.5"  # not an AUC: refused by core, shown, widget keeps working
        await _plan(app, pilot)
        await until(app, pilot, lambda: any("AUC 1.5" in str(n.message) for n in app._notifications))
        assert not widget.planning and not widget.query_one("#pp-run").disabled
        widget.query_one("#pp-effect").value = ""
        await _plan(app, pilot)
        await until(app, pilot, lambda: app.planned)
        assert app.planned[0]["design"] == "single" and "single design: 3 readers x 20 images" in screen_text(app)
