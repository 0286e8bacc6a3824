"""Jobs: every job of the study (ingest, train, sample, audit, ...) with its state, progress, a sparkline of
its main metric and the tail of its log, read live from the run folders."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Footer, Header, Sparkline, Static

from core.jobs import control, runview
from cspine_tui.widgets.live import LiveTable, PolledScreen, state_text

LOG_LINES = 14
SPARK_METRICS = ("train_loss", "fid", "loss")


def progress_text(status: dict[str, Any], width: int = 12) -> Text:
    p = status.get("progress")
    if p is None:
        return Text("–", style="dim")
    filled = int(round(max(0.0, min(1.0, p)) * width))
    return Text("█" * filled + "░" * (width - filled) + f" {100 * p:3.0f}%")


class JobsScreen(PolledScreen):
    HELP = ("All jobs of the study, newest first, refreshed every second from their run folders. The selected "
            "job's log tail and metric trend are below. p pauses, c cancels, r resumes (in the background), "
            "t opens the training view. Jobs keep running when the app closes.")
    BINDINGS = [  # p, c and r: PolledScreen's job keys
        Binding("t", "app.open_screen('training')", "Training view"),
        Binding("escape", "app.pop_screen", "Back"),
    ]
    DEFAULT_CSS = """
    JobsScreen #jobs { height: 1fr; }
    JobsScreen #detail { height: auto; }
    JobsScreen #spark { height: 3; margin: 0 1; }
    JobsScreen #log { height: auto; min-height: 5; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, Any]] = []
        self.selected: str | None = None
        self._tails: dict[str, runview.MetricsTail] = {}
        self.loaded = False  # the first poll has been shown (tests/factories/waiting.py waits on it)

    def compose(self) -> ComposeResult:
        yield Header()
        yield LiveTable(id="jobs")
        with Vertical(id="detail", classes="panel"):
            yield Static("", id="summary")
            yield Sparkline([], id="spark")
            yield Static("", id="log")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#jobs", LiveTable).add_columns(
            "job", "kind", "state", "progress", "step", "trend", "message")
        self.start_polling()

    def poll(self) -> None:
        study = self.app.study
        rows = runview.scan_jobs(study)
        for r in rows:
            tail = self._tails.setdefault(r["id"], runview.MetricsTail(r["dir"] / "metrics.jsonl"))
            tail.poll()
            name = next((m for m in SPARK_METRICS if m in tail.series), next(iter(tail.series), None))
            r["metric"] = name
            r["values"] = tail.points(name)[1] if name else []
        selected = self.selected or (rows[0]["id"] if rows else None)
        log = control.tail_log(study, selected, LOG_LINES) if selected else []
        self.show_from_thread(self._show, rows, selected, log)

    def _show(self, rows: list[dict[str, Any]], selected: str | None, log: list[str]) -> None:
        self.rows, self.selected, self.loaded = rows, selected, True
        cells = []
        for r in rows:
            st = r["status"]
            spark = runview.sparkline(r["values"], 16, log=r["metric"] in ("train_loss", "loss"))
            message = str(st.get("error") or st.get("message") or "")[:60]
            cells.append((r["id"], [r["id"], r["kind"] or "", state_text(r["state"]), progress_text(st),
                                    str(st.get("step") or ""), Text(spark, style="cyan"), message]))
        self.query_one("#jobs", LiveTable).show_rows(cells, selected)
        row = next((r for r in rows if r["id"] == selected), None)
        summary = self.query_one("#summary", Static)
        if row is None:
            summary.update("no jobs yet")
            self.query_one("#spark", Sparkline).data = []
            self.query_one("#log", Static).update("")
            return
        st = row["status"]
        text = Text(f"{row['id']}  ", style="bold")
        text.append_text(state_text(row["state"]))
        text.append(f"   pid {st.get('pid', '–')}   heartbeat {runview.fmt_duration(runview.heartbeat_age(st))} ago")
        if row["metric"]:
            text.append(f"   trend: {row['metric']} ({len(row['values'])} points)")
        if row["state"] == "died":
            text.append("\nthe process died without finishing: r resumes it", style="bold red")
        summary.update(text)
        _, values = runview.downsample(list(range(len(row["values"]))), row["values"], 120)
        self.query_one("#spark", Sparkline).data = values
        self.query_one("#log", Static).update(Text("\n".join(log) or "(no log yet)", style="dim"))

    @on(DataTable.RowHighlighted, "#jobs")
    def _highlight(self, event: DataTable.RowHighlighted) -> None:
        key = self.query_one("#jobs", LiveTable).chosen_key(event)
        if key and key != self.selected:
            self.selected = key
            self.poll_now()

    def selected_job(self) -> str | None:
        return self.selected

    def palette_commands(self):
        return self.job_commands()
