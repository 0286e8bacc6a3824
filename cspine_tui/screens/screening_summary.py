"""Screening summary: Table S1 under the final rule, reviewer agreement (Cohen's kappa), and adjudication of
the images two reviewers disagree on (a accept / r + digit reject / c clear, for the rule 'adjudicated')."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from core.screening import decisions as screening
from cspine_tui.widgets.halfcell import HalfcellView, decode
from cspine_tui.widgets.screening_parts import reasons_text


def _s1_table(data: dict[str, Any]) -> Table:
    t = Table("Generation", "Checkpoint", "Generated", "Final count", "Rejected", "Pending", "Unreviewed",
              title=f"Table S1 (final rule: {data['rule']})", title_justify="left")
    for r in data["rows"]:
        t.add_row(f"{r['run']} ({r['source']})", "" if r["checkpoint"] is None else str(r["checkpoint"]),
                  f"{r['generated']:,}", f"{r['accepted']:,}", str(r["rejected"]), str(r["pending"]),
                  str(r["unreviewed"]))
    tot = data["total"]
    t.add_row(Text("Total", style="bold"), "", f"{tot['generated']:,}", f"{tot['accepted']:,}", str(tot["rejected"]),
              str(tot["pending"]), str(tot["unreviewed"]))
    return t


def _agreement_text(reviewers: list[dict[str, Any]], a: dict[str, Any]) -> Text:
    text = Text()
    for r in reviewers:
        text.append(f"{r['reviewer']}", style="bold")
        text.append(f"{' (simulated)' if r['simulated'] else ''}: {r['reviewed']} decided, {r['accepted']} accepted, "
                    f"{r['rejected']} rejected\n")
    if a.get("n"):
        x, y = a["reviewers"]
        kappa = "undefined (one category only)" if a["kappa"] is None else f"{a['kappa']:.3f}"
        text.append(f"\n{x} vs {y} on {a['n']} images: both accept {a['both_accept']}, both reject "
                    f"{a['both_reject']}, only {x} rejects {a['a_reject_b_accept']}, only {y} rejects "
                    f"{a['a_accept_b_reject']}; same reason {a['same_reason']}\n")
        text.append(f"Cohen's kappa {kappa}", style="bold")
    else:
        text.append("\nAgreement needs a second reviewer (start the app with --reviewer NAME).", style="dim")
    return text


class ScreeningSummaryScreen(Screen):
    HELP = ("Disagreements between reviewers are listed; select one and press a (accept) or r then a reason digit "
            "(reject) to adjudicate, c to clear. Adjudications decide under the final rule 'adjudicated' "
            "(study.toml [screening] final_rule).")
    BINDINGS = [
        Binding("a", "adjudicate('accept')", "Adjudicate accept"),
        Binding("r", "reject", "Adjudicate reject"),
        Binding("c", "clear", "Clear adjudication"),
        Binding("escape", "app.pop_screen", "Back"),
    ] + [Binding(r.key, f"reason('{r.key}')", r.code, show=False) for r in screening.REASONS]
    DEFAULT_CSS = """
    ScreeningSummaryScreen #left { width: 1fr; }
    ScreeningSummaryScreen #right { width: 50; }
    ScreeningSummaryScreen #pair-preview { height: 1fr; }
    ScreeningSummaryScreen #reasons { display: none; height: auto; border: round $error; padding: 0 1; }
    ScreeningSummaryScreen.-rejecting #reasons { display: block; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, Any]] = []
        self.rejecting = False

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            with VerticalScroll(id="left"):
                yield Static("loading…", id="s1", classes="panel")
                yield Static("", id="agreement", classes="panel")
                yield DataTable(id="disagreements", cursor_type="row")
            with Vertical(id="right"):
                yield Static(reasons_text(), id="reasons")
                yield HalfcellView(id="pair-preview")
                yield Static("", id="pair-facts")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("image", "checkpoint", "decisions", "adjudication")
        self.load()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "reason":
            return self.rejecting
        return True

    @work(thread=True, exclusive=True, group="screening-summary")
    def load(self) -> None:
        study = self.app.study
        data = {"s1": screening.table_s1(study), "reviewers": screening.reviewer_summary(study),
                "agreement": screening.agreement(study), "disagreements": screening.disagreements(study)}
        self.app.call_from_thread(self._show, data)

    def _show(self, data: dict[str, Any]) -> None:
        self.data = data
        self.query_one("#s1", Static).update(_s1_table(data["s1"]))
        self.query_one("#agreement", Static).update(_agreement_text(data["reviewers"], data["agreement"]))
        table = self.query_one(DataTable)
        keep = table.cursor_row
        table.clear()
        self.rows = data["disagreements"]
        for row in self.rows:
            decisions = "; ".join(f"{d['reviewer']}: {d['decision']}" + (f" ({d['reason']})" if d["reason"] else "")
                                  for d in row["decisions"])
            adj = f"{row['adjudication']} by {row['adjudicator']}" if row["adjudication"] else "—"
            table.add_row(row["image_id"], "" if row["checkpoint"] is None else str(row["checkpoint"]), decisions, adj)
        if not self.rows:
            self.query_one("#pair-facts", Static).update(Text("No disagreements.", style="dim"))
        else:
            table.move_cursor(row=min(keep, len(self.rows) - 1))
            table.focus()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if 0 <= event.cursor_row < len(self.rows):
            row = self.rows[event.cursor_row]
            self.query_one("#pair-facts", Static).update(f"{row['image_id']}  ·  run {row['run']}")
            self._preview(row["path"])

    @work(thread=True, exclusive=True, group="screening-summary-preview")
    def _preview(self, rel: str) -> None:
        img = decode(self.app.study.abs(rel))
        self.app.call_from_thread(self.query_one("#pair-preview", HalfcellView).show_image, img)

    def _selected(self) -> dict[str, Any] | None:
        table = self.query_one(DataTable)
        return self.rows[table.cursor_row] if self.rows and 0 <= table.cursor_row < len(self.rows) else None

    def action_reject(self) -> None:
        if self._selected() is not None:
            self.rejecting = not self.rejecting
            self.set_class(self.rejecting, "-rejecting")

    def action_reason(self, key: str) -> None:
        self.rejecting = False
        self.set_class(False, "-rejecting")
        reason = screening.REASON_BY_KEY[key]
        note = "adjudicated as other" if reason.code in screening.NOTE_REQUIRED else None
        self.action_adjudicate("reject", reason.code, note)

    def action_adjudicate(self, decision: str, reason: str | None = None, note: str | None = None) -> None:
        row = self._selected()
        if row is not None:
            self._write(row["image_id"], decision, reason, note)

    def action_clear(self) -> None:
        row = self._selected()
        if row is not None:
            self._write(row["image_id"], "clear", None, None)

    @work(thread=True, group="screening-adjudicate")
    def _write(self, image_id: str, decision: str, reason: str | None, note: str | None) -> None:
        if decision == "clear":
            screening.remove_adjudication(self.app.study, image_id)
        else:
            screening.adjudicate(self.app.study, image_id, self.app.reviewer, decision, reason=reason, note=note)
        self.app.call_from_thread(self.load)
