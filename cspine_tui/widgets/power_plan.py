"""The power plan as a widget (the survey screen can mount it): design, readers, trials and effect in, the plan
`cspine-tui plan-study` prints out (core/reader_study/power.py; docs/guide/planning.md).

Planning runs in a worker thread (about a second of simulation), so typing never waits; when it is done the
widget shows the plan and posts `PowerPlan.Planned` with the plan's document. A bad value is reported in one
line (the app's report_error) and the widget keeps working.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, Input, Label, Select, Static

from core.errors import CspineError

EFFECT_HINT = {"quartets": "identification rate, default 0.35", "single": "reader AUC, default 0.65"}


class PowerPlan(Vertical):
    DEFAULT_CSS = """
    PowerPlan { height: auto; }
    PowerPlan Horizontal { height: auto; }
    PowerPlan Label { width: 10; padding: 1 0 0 0; }
    PowerPlan Input, PowerPlan Select { width: 1fr; }
    PowerPlan #pp-result { height: auto; padding: 1 0 0 0; }
    """

    @dataclass
    class Planned(Message):
        """A plan is ready (the document `plan-study --json` prints)."""
        doc: dict[str, Any]

    def __init__(self, *, readers: int = 8, trials: int = 50, sims: int = 2000, seed: int = 0,
                 id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.defaults = {"readers": str(readers), "trials": str(trials)}
        self.sims, self.seed = sims, seed
        self.doc: dict[str, Any] | None = None
        self.planning = False

    def compose(self) -> ComposeResult:
        yield Static("Power plan", classes="panel-title")
        with Horizontal():
            yield Label("design")
            yield Select([("quartets", "quartets"), ("single image", "single")], value="quartets",
                         allow_blank=False, id="pp-design")
        for label, ident in (("readers", "readers"), ("trials", "trials")):
            with Horizontal():
                yield Label(label)
                yield Input(value=self.defaults[ident], id=f"pp-{ident}")
        with Horizontal():
            yield Label("effect")
            yield Input(placeholder=EFFECT_HINT["quartets"], id="pp-effect")
        yield Button("Plan", id="pp-run")
        yield Static("", id="pp-result", classes="muted")

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "pp-design":
            self.query_one("#pp-effect", Input).placeholder = EFFECT_HINT[str(event.value)]

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "pp-run":
            event.stop()
            self.run_plan()

    def form(self) -> dict[str, Any]:
        """The typed values, checked; a bad one raises CspineError naming the field."""
        text = {k: self.query_one(f"#pp-{k}", Input).value.strip() for k in ("readers", "trials", "effect")}
        try:
            readers, trials = int(text["readers"]), int(text["trials"])
            effect = float(text["effect"]) if text["effect"] else None
        except ValueError:
            raise CspineError("readers and trials must be whole numbers and the effect a number") from None
        if readers < 1 or trials < 1:
            raise CspineError("readers and trials must be at least 1")
        return {"design": str(self.query_one("#pp-design", Select).value), "readers": readers, "trials": trials,
                "effect": effect}

    def run_plan(self) -> None:
        if self.planning:
            self.notify("a plan is being computed")
            return
        try:
            form = self.form()
        except CspineError as exc:
            self._failed(exc)
            return
        self.planning = True
        self.query_one("#pp-run", Button).disabled = True
        self.query_one("#pp-result", Static).update(
            f"simulating {self.sims} studies of {form['readers']} readers x {form['trials']} trials…")
        self._plan(form)

    @work(thread=True, exclusive=True, group="power-plan")
    def _plan(self, form: dict[str, Any]) -> None:
        from core.reader_study import power  # imported on use: loads numpy and scipy (start-up cost)

        try:
            key = "identification" if form["design"] == "quartets" else "auc"
            effect = power.effect_for(form["design"], **{key: form["effect"]})
            doc = power.plan(form["design"], form["readers"], form["trials"], effect, sims=self.sims,
                             seed=self.seed)
            lines = power.plan_text(doc)
        except Exception as exc:  # noqa: BLE001 - shown to the user, the widget keeps working
            self.app.call_from_thread(self._failed, exc)
            return
        self.app.call_from_thread(self._done, doc, lines)

    def _done(self, doc: dict[str, Any], lines: list[str]) -> None:
        self.planning = False
        self.query_one("#pp-run", Button).disabled = False
        self.doc = doc
        self.query_one("#pp-result", Static).update(Text("\n".join(lines)))
        self.post_message(self.Planned(doc))

    def _failed(self, exc: BaseException) -> None:
        self.planning = False
        self.query_one("#pp-run", Button).disabled = False
        self.query_one("#pp-result", Static).update("")
        report = getattr(self.app, "report_error", None)
        if report is not None:
            report(exc)
        else:
            self.notify(str(exc), severity="error")
