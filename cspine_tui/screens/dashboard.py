"""The dashboard: the study's figures (as `cspine-tui status` reports them) and the way to every screen."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from cspine_tui.registry import SCREENS

REFRESH_S = 2.0


def _figures(status: dict[str, Any]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    splits = ", ".join(f"{k} {v}" for k, v in sorted(status["splits"].items())) or "no split yet"
    table.add_row("Real images", f"{status['images']['real']}  ({splits})")
    table.add_row("Checkpoints", str(status["checkpoints"]))
    table.add_row("Synthetic images", str(status["images"]["synthetic"]))
    reviewers = status["reviews"]["by_reviewer"]
    table.add_row("Reviews", ", ".join(f"{k}: {v['accepted']} acc / {v['rejected']} rej"
                                       for k, v in reviewers.items()) or "none yet")
    table.add_row("Audits", str(status["audits"]))
    table.add_row("Reader study", f"{status['quartets']} quartets, {status['raters']} raters, "
                                  f"{status['ratings']} ratings")
    jobs = status["jobs"]
    table.add_row("Jobs", ", ".join(f"{k} {v}" for k, v in sorted(jobs.items())) or "none yet")
    return table


def _by_checkpoint(status: dict[str, Any]) -> Table | Text:
    rows = status["synthetic_by_checkpoint"]
    if not rows:
        return Text("No synthetic images yet.", style="dim")
    # Headers that fit an 80-column terminal beside the menu (no "chec…"); no outer box for the same reason.
    table = Table("ckpt", "generated", "accepted", "rejected", title="Synthetic images (Table S1)",
                  title_justify="left", expand=False, box=box.SIMPLE_HEAD, pad_edge=False)
    for ckpt, c in rows.items():
        table.add_row(ckpt, str(c["generated"]), str(c["accepted"]), str(c["rejected"]))
    return table


class DashboardScreen(Screen):
    HELP = "The dashboard refreshes every two seconds; jobs started elsewhere (CLI, batch scheduler) show up here."
    BINDINGS = [Binding("r", "refresh", "Refresh")]
    DEFAULT_CSS = """
    DashboardScreen #figures { width: 1fr; }
    DashboardScreen #menu { width: 30; }
    """

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            with VerticalScroll(id="figures"):
                yield Static("loading…", id="summary", classes="panel")
                yield Static("", id="by-checkpoint", classes="panel")
            yield Static(self._menu(), id="menu", classes="panel")
        yield Footer()

    def _menu(self) -> Text:
        text = Text("Screens\n", style="bold")
        for entry in SCREENS:
            if entry.name != "dashboard":
                text.append(f" {entry.key} ", style="reverse").append(f" {entry.title}\n")
        text.append("\nctrl+p commands · ? help · q quit", style="dim")
        return text

    def on_mount(self) -> None:
        for entry in SCREENS:
            if entry.name != "dashboard":
                self._bindings.bind(entry.key, f"app.open_screen('{entry.name}')", entry.title, show=False)
        self.action_refresh()
        self.set_interval(REFRESH_S, self._poll)

    def on_screen_resume(self) -> None:
        self.action_refresh()

    def _poll(self) -> None:
        if self.is_current:  # no database traffic while another screen is in front
            self._load_status()

    def action_refresh(self) -> None:
        self._load_status()

    @work(thread=True, exclusive=True, group="dashboard")
    def _load_status(self) -> None:
        from core.status import study_status  # imported on use: loads duckdb (start-up cost)

        status = study_status(self.app.study)
        self.app.call_from_thread(self._show, status)

    def _show(self, status: dict[str, Any]) -> None:
        self.status = status
        self.query_one("#summary", Static).update(_figures(status))
        self.query_one("#by-checkpoint", Static).update(_by_checkpoint(status))
