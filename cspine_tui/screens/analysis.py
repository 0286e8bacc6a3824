"""The analysis screen: import a Qualtrics export, run the reader-study statistics, see tables and the plot.

Left: the latest analysis of the selected pack (summary beside the paper's numbers, per-rater identification,
Wilcoxon tests, kappa by coding) and where the report is. Right: the violin plot of per-rater mean realism,
through the image preview widget. Bottom: a CSV path to import (enter imports it into the newest pack).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Static

from core.reader_study import statistics
from core.reader_study.analysis import KAPPA_CODINGS, analyze, latest_analysis
from cspine_tui.widgets.preview import ImagePreview, load_preview
from core.reader_study.responses import import_ratings

PAPER = {"accuracy": "29.0%", "kappa": "0.061", "means": ["3.323", "3.228", "3.258", "3.320"],
         "p": ["0.128", "0.236", "1.000"], "p_holm": ["0.383", "0.471", "1.000"]}


def summary_table(r: dict[str, Any]) -> Table:
    t = Table("measure", "this study", "paper", title="Reader study" + (
        f"  [bold red]SIMULATED raters: {r['simulated_raters']}[/]" if r.get("simulated_raters") else ""),
        title_justify="left", expand=True)
    lo, hi = r["accuracy_ci95"]
    t.add_row("raters x quartets", f"{r['n_raters']} x {r['n_quartets']} = {r['n_trials']} trials", "8 x 50 = 400")
    t.add_row("identification accuracy", f"{statistics.fmt(100 * r['accuracy'], 1)}% "
              f"(CI {statistics.fmt(100 * lo, 1)}-{statistics.fmt(100 * hi, 1)}%)", PAPER["accuracy"])
    t.add_row("binomial p vs 25%", statistics.fmt_p(r["binomial_p_vs_chance"]), "-")
    t.add_row(f"Fleiss' kappa ({r['kappa_coding']})", statistics.fmt(r["fleiss_kappa"]), PAPER["kappa"])
    groups = r.get("groups") or list(r["mean_realism"])
    for i, g in enumerate(groups):
        t.add_row(f"mean realism {g}", statistics.fmt(r["mean_realism"].get(g)),
                  PAPER["means"][i] if i < len(PAPER["means"]) else "-")
    for i, w in enumerate(r["wilcoxon"]):
        t.add_row(f"real vs {w['group']}: V, p, Holm",
                  f"{statistics.fmt(w['statistic_V'], 1)}, {statistics.fmt_p(w['p'])}, {statistics.fmt_p(w['p_holm'])}",
                  f"{PAPER['p'][i]}, {PAPER['p_holm'][i]}" if i < 3 else "-")
    return t


def raters_table(r: dict[str, Any]) -> Table:
    groups = r.get("groups") or list(r["mean_realism"])
    t = Table("rater", "correct", "accuracy", *[f"mean {g}" for g in groups], title="Raters", title_justify="left",
              expand=True)
    t.columns[0].no_wrap = True
    t.columns[0].min_width = 18
    for p in r["per_rater"]:
        means = r["per_rater_means"].get(p["rater"], {})
        t.add_row(p["rater"] + (" (sim)" if p["simulated"] and "simulated" not in p["rater"] else ""),
                  f"{p['correct']}/{p['trials']}",
                  f"{statistics.fmt(100 * p['accuracy'], 1) if p['accuracy'] is not None else 'n/a'}%",
                  *[statistics.fmt(means.get(g)) for g in groups])
    return t


def kappa_table(r: dict[str, Any]) -> Table:
    t = Table("coding", "kappa", "P", "Pe", title=f"Fleiss' kappa over {r['kappa_quartets']} quartets",
              title_justify="left", expand=True)
    for coding, k in r["fleiss_kappa_by_coding"].items():
        mark = " *" if coding == r["kappa_coding"] else ""
        t.add_row(coding + mark, *(["n/a"] * 3 if not k else
                                   [statistics.fmt(k["kappa"]), statistics.fmt(k["p_bar"]), statistics.fmt(k["p_e"])]))
    return t


class AnalysisScreen(Screen):
    HELP = ("a runs the analysis of the newest pack's ratings and writes a new report (Markdown + HTML, violin "
            "plots) under the study's exports/ folder; c changes how Fleiss' kappa codes the answers (source, "
            "screen position, correct/incorrect) and re-runs. To import a Qualtrics export, type its path in the "
            "field at the bottom (i focuses it) and press enter.")
    BINDINGS = [
        Binding("a", "analyze", "Analyse"),
        Binding("c", "coding", "Kappa coding"),
        Binding("i", "focus_import", "Import CSV"),
        Binding("r", "reload", "Refresh"),
        Binding("escape", "app.pop_screen", "Back"),
    ]
    DEFAULT_CSS = """
    AnalysisScreen #tables { width: 1fr; height: 1fr; }
    AnalysisScreen #plot-side { width: 1fr; height: 1fr; }
    AnalysisScreen #plot { height: 1fr; border: round $primary-lighten-2; }
    AnalysisScreen #report { height: auto; padding: 0 1; }
    AnalysisScreen #import { dock: bottom; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.result: dict[str, Any] | None = None
        self.coding = "source"
        self.running = False

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            with VerticalScroll(id="tables"):
                yield Static("loading…", id="summary")
                yield Static("", id="raters")
                yield Static("", id="kappa")
            with Vertical(id="plot-side"):
                yield ImagePreview(self.app.image_protocol, caption="no analysis yet", id="plot")
                yield Static("", id="report", classes="muted")
        yield Input(placeholder="path of a Qualtrics response export (CSV) to import; enter imports", id="import")
        yield Footer()

    def on_mount(self) -> None:
        self.action_reload()

    def palette_commands(self) -> list[tuple[str, str, Callable[[], Any]]]:
        cmds = [("Run the reader-study analysis", "statistics, violin plots and a new report", self.action_analyze),
                ("Import Qualtrics ratings (CSV)", "type the file's path in the field at the bottom",
                 self.action_focus_import)]
        cmds += [(f"Kappa coding: {c}", "re-run the analysis with this coding", lambda c=c: self._set_coding(c))
                 for c in KAPPA_CODINGS]
        return cmds

    # -- loading the latest analysis ---------------------------------------------------------------------
    def action_reload(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, group="analysis-load")
    def _load(self) -> None:
        result = latest_analysis(self.app.study)
        raters = self.app.study.store.scalar("SELECT count(*) FROM raters")
        self.app.call_from_thread(self._show, result, raters)

    def _show(self, result: dict[str, Any] | None, raters: int | None = None) -> None:
        self.result = result
        if result is None:
            hint = (f"{raters} raters imported: press a to analyse." if raters else
                    "No ratings yet: import a Qualtrics export (i), then analyse (a).")
            self.query_one("#summary", Static).update(Text(hint, style="dim"))
            self.query_one("#raters", Static).update("")
            self.query_one("#kappa", Static).update("")
            self.query_one("#report", Static).update("")
            return
        self.coding = result.get("kappa_coding", self.coding)
        self.query_one("#summary", Static).update(summary_table(result))
        self.query_one("#raters", Static).update(raters_table(result))
        notes = [Text(f"note: {w}", style="dim") for w in result.get("warnings", [])]
        self.query_one("#kappa", Static).update(Group(kappa_table(result), *notes))
        report = result.get("report") or {}
        self.query_one("#report", Static).update(
            f"analysis {result.get('analysis_id')}\nreport {report.get('html', '-')}\n"
            f"markdown {report.get('markdown', '-')}")
        figure = Path(report.get("dir", result.get("report_dir") or "")) / result.get("figures", {}).get(
            "rater_means_png", "realism_rater_means.png")
        self._load_plot(figure)

    @work(thread=True, exclusive=True, group="analysis-plot")
    def _load_plot(self, path: Path) -> None:
        try:
            img = load_preview(path, max_side=900) if path.is_file() else None
        except OSError:
            img = None
        self.app.call_from_thread(self._plot_loaded, img, path)

    def _plot_loaded(self, img, path: Path) -> None:
        self.query_one("#plot", ImagePreview).show(img, caption=f"per-rater mean realism ({path.name})"
                                                   if img else f"plot not found: {path}")

    # -- running -----------------------------------------------------------------------------------------
    def action_analyze(self) -> None:
        if self.running:
            self.notify("the analysis is running")
            return
        self.running = True
        self.notify(f"analysing (kappa coded by {self.coding})…")
        self._analyze(self.coding)

    def action_coding(self) -> None:
        self._set_coding(KAPPA_CODINGS[(KAPPA_CODINGS.index(self.coding) + 1) % len(KAPPA_CODINGS)])

    def _set_coding(self, coding: str) -> None:
        self.coding = coding
        self.action_analyze()

    @work(thread=True, exclusive=True, group="analysis-run")
    def _analyze(self, coding: str) -> None:
        try:
            result = analyze(self.app.study, kappa_coding=coding)
        except Exception as exc:  # noqa: BLE001 - shown to the user; the screen keeps working
            self.app.call_from_thread(self._done, None, exc)
            return
        self.app.call_from_thread(self._done, result, None)

    def _done(self, result: dict[str, Any] | None, error: BaseException | None) -> None:
        self.running = False
        if error is not None:
            self.app.report_error(error)
            return
        self.notify(f"report written: {result['report']['html']}")
        self._show(result)

    # -- importing ---------------------------------------------------------------------------------------
    def action_focus_import(self) -> None:
        self.query_one("#import", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "import" and event.value.strip():
            self._import(Path(event.value.strip()).expanduser())

    @work(thread=True, exclusive=True, group="analysis-import")
    def _import(self, path: Path) -> None:
        try:
            summary = import_ratings(self.app.study, path)
        except Exception as exc:  # noqa: BLE001
            self.app.call_from_thread(self.app.report_error, exc)
            return
        self.app.call_from_thread(self._imported, summary)

    def _imported(self, summary: dict[str, Any]) -> None:
        excluded = ", ".join(f"{k} {v}" for k, v in summary["excluded"].items() if v) or "none"
        again = " (already imported)" if summary.get("already_imported_as") else ""
        self.notify(f"{summary['responses']} responses{again}: {summary['used']} used; excluded {excluded}",
                    timeout=8)
        for flag in summary.get("flags", []):
            self.notify(flag, severity="warning", timeout=8)
        self.query_one("#import", Input).value = ""
        self.action_reload()
