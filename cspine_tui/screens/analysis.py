"""The analysis screen: import a Qualtrics export, run the reader-study statistics, see tables and the plot.

Left: the latest analysis (design and groups, summary beside the paper's numbers, per-rater identification
with each rater's specialty and years, every group and every pair of groups, kappa by coding) and where the
report is. Right: the violin plot of per-rater mean realism where the terminal shows
real pixels (Kitty, Sixel); elsewhere half-cell blocks are unreadable for a plot, so the same distribution is
shown as a table of quantiles with the path of the PNG. Bottom: a CSV path to import (enter imports it into
the newest pack).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Callable

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Static

from cspine_tui.screens import single_view
from cspine_tui.widgets.preview import ImagePreview, load_preview, resolved_protocol

GRAPHIC_PROTOCOLS = ("kitty", "sixel")  # terminals that draw the PNG's pixels

PAPER = {"accuracy": "29.0%", "kappa": "0.061", "means": ["3.323", "3.228", "3.258", "3.320"],
         "p": ["0.128", "0.236", "1.000"], "p_holm": ["0.383", "0.471", "1.000"]}


# core.reader_study.statistics imports scipy (about 2 s, far more under load): the screen's thread workers
# import it first (latest_analysis, analyze), so the drawing code below finds it loaded and the screen's first
# paint never waits for it.


def summary_table(r: dict[str, Any]) -> Table:
    from core.reader_study import statistics  # loaded by the worker already (see above)

    groups = r.get("groups") or list(r["mean_realism"])
    design = "quartets: real + " + ", ".join(groups[1:])  # the design and its groups, in the title: one line
    t = Table("measure", "this study", "paper", title=f"Reader study, {design}" + (
        f"  [bold red]SIMULATED raters: {r['simulated_raters']}[/]" if r.get("simulated_raters") else ""),
        title_justify="left", expand=True)
    lo, hi = r["accuracy_ci95"]
    t.add_row("raters x quartets", f"{r['n_raters']} x {r['n_quartets']} = {r['n_trials']} trials", "8 x 50 = 400")
    t.add_row("identification accuracy", f"{statistics.fmt(100 * r['accuracy'], 1)}% "
              f"(CI {statistics.fmt(100 * lo, 1)}-{statistics.fmt(100 * hi, 1)}%)", PAPER["accuracy"])
    t.add_row("binomial p vs 25%", statistics.fmt_p(r["binomial_p_vs_chance"]), "-")
    t.add_row(f"Fleiss' kappa ({r['kappa_coding']})", statistics.fmt(r["fleiss_kappa"]), PAPER["kappa"])
    for i, g in enumerate(groups):
        t.add_row(f"mean realism {g}", statistics.fmt(r["mean_realism"].get(g)),
                  PAPER["means"][i] if i < len(PAPER["means"]) else "-")
    for i, w in enumerate(r["wilcoxon"]):
        t.add_row(f"real vs {w['group']}: V, p, Holm",
                  f"{statistics.fmt(w['statistic_V'], 1)}, {statistics.fmt_p(w['p'])}, {statistics.fmt_p(w['p_holm'])}",
                  f"{PAPER['p'][i]}, {PAPER['p_holm'][i]}" if i < 3 else "-")
    return t


def _labels(r: dict[str, Any]) -> dict[str, str]:
    """Group -> its name on screen (analyses stored before groups had labels: 'step N')."""
    groups = r.get("groups") or list(r["mean_realism"])
    return r.get("group_labels") or {g: g if g == "real" else f"step {g}" for g in groups}


def raters_table(r: dict[str, Any]) -> Table:
    from core.reader_study import statistics  # loaded by the worker already

    groups = r.get("groups") or list(r["mean_realism"])
    t = Table("rater", "correct", "accuracy", *[f"mean {g}" for g in groups], title="Raters", title_justify="left",
              expand=True, box=box.SIMPLE_HEAD)  # no outer box: the headers fit 80 columns
    t.columns[0].overflow = "fold"
    for p in r["per_rater"]:
        means = r["per_rater_means"].get(p["rater"], {})
        t.add_row(p["rater"] + (" (sim)" if p["simulated"] and "simulated" not in p["rater"] else ""),
                  f"{p['correct']}/{p['trials']}",
                  f"{statistics.fmt(100 * p['accuracy'], 1) if p['accuracy'] is not None else 'n/a'}%",
                  *[statistics.fmt(means.get(g)) for g in groups])
    return t


def readers_table(r: dict[str, Any]) -> Table:
    """Who the raters are (the questionnaire) and what they left unanswered (-99)."""
    t = Table("rater", "specialty", "years", "seen, not answered", title="Readers", title_justify="left",
              expand=True, box=box.SIMPLE_HEAD)
    t.columns[0].overflow = t.columns[1].overflow = "fold"
    for p in r["per_rater"]:
        specialty = p.get("specialty") or "-"
        if p.get("specialty_other"):
            specialty += f": {p['specialty_other']}"
        t.add_row(p["rater"], specialty, "-" if p.get("years") is None else str(p["years"]),
                  str(p.get("seen_unanswered", 0)))
    return t


def groups_table(r: dict[str, Any]) -> Group:
    """Every group (mean realism, chosen as real) and every pair of groups (Holm over all pairs)."""
    from core.reader_study import statistics  # loaded by the worker already

    names = _labels(r)
    per = Table("group", "kind", "mean", "chosen as real", title="Groups", title_justify="left", expand=True,
                box=box.SIMPLE_HEAD)
    for g in r.get("per_group", []):
        per.add_row(names.get(g["group"], g["group"]), g["kind"], statistics.fmt(g["mean_realism"]),
                    f"{g['chosen_as_real']} ({statistics.fmt(100 * g['chosen_share'], 1)}%)"
                    if g["chosen_share"] is not None else "-")
    pairs = r.get("pairwise") or []
    pt = Table("pair", "mean diff", "p", "Holm p", title=f"Every pair of groups (Holm over {len(pairs)})",
               title_justify="left", expand=True, box=box.SIMPLE_HEAD)
    pt.columns[0].overflow = "fold"
    for t in pairs:
        pt.add_row(f"{names.get(t['a'], t['a'])} vs {names.get(t['b'], t['b'])}",
                   statistics.fmt(t["mean_difference"]), statistics.fmt_p(t["p"]), statistics.fmt_p(t["p_holm"]))
    return Group(per, pt)


def kappa_table(r: dict[str, Any]) -> Table:
    from core.reader_study import statistics  # loaded by the worker already

    t = Table("coding", "kappa", "P", "Pe", title=f"Fleiss' kappa over {r['kappa_quartets']} quartets",
              title_justify="left", expand=True)
    for coding, k in r["fleiss_kappa_by_coding"].items():
        mark = " *" if coding == r["kappa_coding"] else ""
        t.add_row(coding + mark, *(["n/a"] * 3 if not k else
                                   [statistics.fmt(k["kappa"]), statistics.fmt(k["p_bar"]), statistics.fmt(k["p_e"])]))
    return t


def quantile_table(r: dict[str, Any]) -> Table:
    """What the violin plot shows, as numbers: per group, the spread of the raters' mean realism."""
    import numpy as np  # only for the quantiles; numpy is loaded by the statistics anyway

    groups = r.get("groups") or list(r["mean_realism"])
    t = Table("group", "raters", "min", "25%", "median", "mean", "75%", "max",
              title="Per-rater mean realism (the violin plot)", title_justify="left", expand=True, box=box.SIMPLE_HEAD)
    for g in groups:
        values = np.array([m[g] for m in r["per_rater_means"].values() if m.get(g) is not None], dtype=float)
        label = _labels(r).get(g, g)
        if values.size == 0:
            t.add_row(label, "0", *["-"] * 6)
            continue
        q = np.percentile(values, [0, 25, 50, 75, 100])
        t.add_row(label, str(values.size), *[f"{v:.3f}" for v in q[:3]], f"{values.mean():.3f}",
                  *[f"{v:.3f}" for v in q[3:]])
    return t


class AnalysisScreen(Screen):
    HELP = ("a runs the analysis of the pack on screen (the newest pack when none is shown) and writes a new "
            "report (Markdown + HTML, violin plots) under the study's exports/ folder; c changes how Fleiss' "
            "kappa codes the answers (source, "
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
    AnalysisScreen #plot-table { height: auto; }
    AnalysisScreen.-text-plot #plot { display: none; }
    AnalysisScreen #plot-table { display: none; }
    AnalysisScreen.-text-plot #plot-table { display: block; }
    AnalysisScreen #report { height: auto; padding: 0 1; }
    AnalysisScreen #import { dock: bottom; }
    /* Under 160 columns side by side squeezes both: the plot (or its table) goes under the tables. */
    AnalysisScreen.-narrow #main { layout: vertical; overflow-y: auto; }
    AnalysisScreen.-narrow #tables { width: 1fr; height: auto; }
    AnalysisScreen.-narrow #plot-side { width: 1fr; height: auto; }
    AnalysisScreen.-narrow #plot { height: 20; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.result: dict[str, Any] | None = None
        self.pack: str | None = None  # the pack on screen (None: the newest, until something is shown)
        self.coding = "source"
        self.running = False

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="main"):
            with VerticalScroll(id="tables"):
                yield Static("loading…", id="summary")
                yield Static("", id="raters")
                yield Static("", id="groups")
                yield Static("", id="kappa")
            with Vertical(id="plot-side"):
                yield ImagePreview(self.app.image_protocol, caption="no analysis yet", id="plot")
                yield Static("", id="plot-table")
                yield Static("", id="report", classes="muted")
        yield Input(placeholder="path of a Qualtrics response export (CSV) to import; enter imports", id="import")
        yield Footer()

    def on_resize(self) -> None:
        self.set_class(self.size.width < 160, "-narrow")  # side by side, each half needs about 80 columns

    def on_mount(self) -> None:
        self.set_class(resolved_protocol(self.app.image_protocol) not in GRAPHIC_PROTOCOLS, "-text-plot")
        # After the first paint: opening the screen never waits for its data.
        self.call_after_refresh(self.action_reload)

    def palette_commands(self) -> list[tuple[str, str, Callable[[], Any]]]:
        from core.reader_study.analysis import KAPPA_CODINGS  # scipy: loaded by the first worker by now

        cmds = [("Run the reader-study analysis", "statistics, violin plots and a new report", self.action_analyze),
                ("Import Qualtrics ratings (CSV)", "type the file's path in the field at the bottom",
                 self.action_focus_import)]
        cmds += [(f"Kappa coding: {c}", "re-run the analysis with this coding", lambda c=c: self._set_coding(c))
                 for c in KAPPA_CODINGS]
        from core.reader_study.designs import list_all_packs  # imported on use: loads numpy, duckdb (start-up cost)

        cmds += [(f"Analysis: show pack {p['id']}" + (" (single images)" if p["design"] == "single" else ""),
                  "its latest analysis; a and c then analyse this pack", partial(self._select_pack, p["id"]))
                 for p in list_all_packs(self.app.study)]
        return cmds

    def _select_pack(self, pack: str) -> None:
        self.pack = pack
        self.action_reload()

    # -- loading the latest analysis ---------------------------------------------------------------------
    def action_reload(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, group="analysis-load")
    def _load(self) -> None:
        from core.reader_study.designs import latest_any  # imported on use: loads scipy, duckdb (start-up cost)
        from core.reader_study.responses import rater_count  # loaded on first use, like latest_any

        pack = self.pack
        result = latest_any(self.app.study, pack)  # either design: a single-image result has design "single"
        raters = rater_count(self.app.study, pack)
        self.app.call_from_thread(self._show, result, raters)

    def _show(self, result: dict[str, Any] | None, raters: int | None = None) -> None:
        self.result = result
        if result is None:
            hint = (f"{raters} raters imported: press a to analyse{f' (pack {self.pack})' if self.pack else ''}."
                    if raters else
                    "No ratings yet: import a Qualtrics export (i), then analyse (a).")
            self.query_one("#summary", Static).update(Text(hint, style="dim"))
            self.query_one("#raters", Static).update("")
            self.query_one("#groups", Static).update("")
            self.query_one("#kappa", Static).update("")
            self.query_one("#report", Static).update("")
            return
        if result.get("design") == "single":
            self._show_single(result)
            return
        self.coding = result.get("kappa_coding", self.coding)
        self.pack = result.get("pack_id", self.pack)
        self.query_one("#summary", Static).update(summary_table(result))
        self.query_one("#raters", Static).update(Group(raters_table(result), readers_table(result)))
        self.query_one("#groups", Static).update(groups_table(result) if result.get("pairwise") else "")
        notes = [Text(f"note: {w}", style="dim") for w in result.get("warnings", [])]
        if result.get("comments"):
            notes.append(Text(f"{len(result['comments'])} free-text comments: verbatim in the report", style="dim"))
        self.query_one("#kappa", Static).update(Group(kappa_table(result), *notes))
        report = result.get("report") or {}
        figure = Path(report.get("dir", result.get("report_dir") or "")) / result.get("figures", {}).get(
            "rater_means_png", "realism_rater_means.png")
        self.query_one("#report", Static).update(
            f"analysis {result.get('analysis_id')} (pack {result.get('pack_id', '-')})\n"
            f"report {report.get('html', '-')}\nmarkdown {report.get('markdown', '-')}\nplot {figure}")
        if self.has_class("-text-plot"):
            self.query_one("#plot-table", Static).update(quantile_table(result))
        else:
            self._load_plot(figure)

    def _show_single(self, result: dict[str, Any]) -> None:
        """A single-image analysis (cspine_tui/screens/single_view.py); the ROC curves are the plot."""
        self.pack = result.get("pack_id", self.pack)
        self.query_one("#summary", Static).update(single_view.summary_table(result))
        self.query_one("#raters", Static).update(single_view.readers_table(result))
        self.query_one("#groups", Static).update(single_view.groups_table(result))
        self.query_one("#kappa", Static).update("")  # agreement is in the summary; the model under the readers
        report = result.get("report") or {}
        figure = single_view.figure(result)
        self.query_one("#report", Static).update(
            f"analysis {result.get('analysis_id')} (single-image pack {result.get('pack_id', '-')})\n"
            f"report {report.get('html', '-')}\nmarkdown {report.get('markdown', '-')}\nplot {figure}")
        if self.has_class("-text-plot"):
            self.query_one("#plot-table", Static).update(single_view.groups_table(result))
        else:
            self._load_plot(figure)

    @work(thread=True, exclusive=True, group="analysis-plot")
    def _load_plot(self, path: Path) -> None:
        try:
            img = load_preview(path, max_side=900) if path.is_file() else None
        except OSError:
            img = None
        self.app.call_from_thread(self._plot_loaded, img, path)

    def _plot_loaded(self, img, path: Path) -> None:
        what = "ROC curves per group" if path.stem == "roc" else "per-rater mean realism"
        self.query_one("#plot", ImagePreview).show(img, caption=f"{what} ({path.name})"
                                                   if img else f"plot not found: {path}")

    # -- running -----------------------------------------------------------------------------------------
    def action_analyze(self) -> None:
        if self.running:
            self.notify("the analysis is running")
            return
        self.running = True
        self.notify(f"analysing {self.pack or 'the newest pack'} (kappa coded by {self.coding})…")
        self._analyze(self.pack, self.coding)

    def action_coding(self) -> None:
        from core.reader_study.analysis import KAPPA_CODINGS  # scipy: loaded by the first worker by now

        self._set_coding(KAPPA_CODINGS[(KAPPA_CODINGS.index(self.coding) + 1) % len(KAPPA_CODINGS)])

    def _set_coding(self, coding: str) -> None:
        self.coding = coding
        self.action_analyze()

    @work(thread=True, exclusive=True, group="analysis-run")
    def _analyze(self, pack: str | None, coding: str) -> None:
        from core.reader_study.designs import analyze_any  # imported on use: loads scipy, duckdb (start-up cost)

        try:
            result = analyze_any(self.app.study, pack, kappa_coding=coding)  # the pack's own design
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
        from core.reader_study.designs import import_any  # imported on use: loads duckdb (start-up cost)

        try:
            summary = import_any(self.app.study, path)  # into the newest pack, of either design
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
        self.pack = summary.get("pack_id", self.pack)  # show (and analyse) the pack just imported into
        self.action_reload()
