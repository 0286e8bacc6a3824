"""Utility: the benchmark jobs (real vs synthetic vs mixed training sets) and the condition checks.

Left, every utility and condition-check job with its state and progress; right, for a benchmark, the
learning curves of one metric over the real fraction (m cycles the metric; the synthetic-only model is a
level line, it uses no real images), the metrics with their 95% intervals and the paired comparisons; for a
condition check, the agreement per task and run against the checker's own score on real images. Everything
is read from the run folders (a finished job's result is in its status.json), never from the database, so
the screen polls every second without queueing for the study lock.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Footer, Header, Input, Label, Select, Static
from textual_plot import HiResMode, PlotWidget

from core.errors import CspineError
from core.jobs import launch, runview
from cspine_tui.widgets.live import LiveTable, PolledScreen, state_text

KINDS = ("utility", "condition_check")
COLOURS = {"real": "cyan", "mixed": "green", "synthetic": "magenta"}


def _fmt(v: Any, spec: str = ".3f") -> str:
    return "–" if v is None else format(v, spec)


def task_choices(study: Any) -> list[tuple[str, str]]:
    """The tasks the real set's labels allow: landmarks with keypoints, and each attribute."""
    from core.realset import labels  # imported on use: the dialog's worker pays for it, not the UI

    out = [("landmarks (keypoints)", "landmarks")] if labels.point_names(study) else []
    return out + [(f"attribute {name}", name) for name in labels.attribute_names(study)]


class NewBenchmarkScreen(ModalScreen[dict | None]):
    """The utility command's main options; the rest keep their defaults (docs/guide/utility.md)."""

    DEFAULT_CSS = """
    NewBenchmarkScreen { align: center middle; }
    NewBenchmarkScreen > VerticalScroll { width: 72; height: auto; max-height: 90%; border: round $accent;
                                          padding: 1 2; background: $surface; }
    NewBenchmarkScreen #buttons { height: auto; margin-top: 1; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self) -> None:
        super().__init__()
        self.choices: list[tuple[str, str]] | None = None

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Label("New utility benchmark (runs in the background)", classes="panel-title")
            yield Label("Task")
            yield Select([], id="task", prompt="reading the labels…")
            yield Label("Training sets (real, synthetic, mixed, mixed:RATIO)")
            yield Input(value="real synthetic mixed", id="sets")
            yield Label("Shares of the real train split (a learning curve)")
            yield Input(value="0.25 0.5 1", id="fractions")
            yield Label("Steps per model")
            yield Input(value="600", id="steps", type="integer")
            yield Label("Seed")
            yield Input(value="0", id="seed", type="integer")
            with Horizontal(id="buttons"):
                yield Button("Start", variant="primary", id="start")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self._load()

    @work(thread=True, group="new-benchmark")
    def _load(self) -> None:
        choices = task_choices(self.app.study)
        self.app.call_from_thread(self._fill, choices)

    def _fill(self, choices: list[tuple[str, str]]) -> None:
        self.choices = choices
        select = self.query_one("#task", Select)
        select.set_options(choices)
        if choices:
            select.value = choices[0][1]
        else:
            select.prompt = "no labels: import them with `cspine-tui labels`"

    @on(Button.Pressed, "#start")
    def _start(self) -> None:
        task = self.query_one("#task", Select).value
        if task is Select.BLANK:
            self.app.report_error(CspineError("choose a task (the real images need labels: `cspine-tui labels`)"))
            return
        try:
            fractions = [float(x) for x in self.query_one("#fractions", Input).value.split()]
        except ValueError:
            self.app.report_error(CspineError("shares of the real train split are numbers in (0, 1], e.g. 0.25 1"))
            return
        steps, seed = self.query_one("#steps", Input).value.strip(), self.query_one("#seed", Input).value.strip()
        self.dismiss({"task": task, "train": self.query_one("#sets", Input).value.split(), "fractions": fractions,
                      "steps": int(steps) if steps else None, "seed": int(seed or 0)})

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class UtilityScreen(PolledScreen):
    HELP = ("Utility benchmarks and condition checks on the left (newest first). For a benchmark: the learning "
            "curves of one metric over the share of real training images with their 95% intervals (m: next "
            "metric), each model's metric and the paired comparisons; for a check: the agreement per task and "
            "run beside the checker's score on real films. n starts a benchmark in the background; p, c, r "
            "pause, cancel and resume the selected job.")
    BINDINGS = [
        Binding("n", "new_benchmark", "New benchmark"),
        Binding("m", "next_metric", "Metric"),
        Binding("escape", "app.pop_screen", "Back"),
    ]
    JOB_AREA, JOB_NOUN = "Utility", "benchmark"
    DEFAULT_CSS = """
    UtilityScreen #jobs-pane { width: 2fr; max-width: 64; min-width: 30; }
    UtilityScreen #detail-pane { width: 3fr; }
    UtilityScreen #jobs { height: 1fr; }
    UtilityScreen #summary { height: auto; }
    UtilityScreen #curves { height: 1fr; min-height: 10; }
    UtilityScreen #results { height: 10; }
    UtilityScreen #comparisons { height: 10; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.jobs: list[dict[str, Any]] = []
        self.selected: str | None = None
        self.metric: str | None = None
        self._shown: tuple[Any, ...] | None = None
        self.loaded = False  # the first poll has been shown (tests/factories/waiting.py waits on it)

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            with Vertical(id="jobs-pane"):
                yield LiveTable(id="jobs")
                yield Static("no utility benchmark yet: run `cspine-tui utility --study ... --task ...`",
                             id="summary", classes="panel")
            with Vertical(id="detail-pane"):
                yield PlotWidget(id="curves")
                yield DataTable(id="results", zebra_stripes=True)
                yield DataTable(id="comparisons", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#jobs", LiveTable).add_columns("job", "kind", "task", "state", "progress")
        plot = self.query_one("#curves", PlotWidget)
        plot.set_xlabel("share of the real training images")
        self.call_after_refresh(self.start_polling)

    # -- data (thread worker; files only) ---------------------------------------------------------------
    def poll(self) -> None:
        jobs = [j for kind in KINDS for j in runview.scan_jobs(self.app.study, kind=kind)]
        jobs.sort(key=lambda j: (j["created_at"], j["id"]), reverse=True)
        self.show_from_thread(self._show, jobs)

    def _show(self, jobs: list[dict[str, Any]]) -> None:
        self.jobs = jobs
        if self.selected not in {j["id"] for j in jobs}:
            # The newest benchmark first: it has the curves (a condition check, often run after it, has none).
            first = next((j for j in jobs if j["kind"] == "utility"), jobs[0] if jobs else None)
            self.selected = first["id"] if first else None
        rows = []
        for j in jobs:
            p, st = j["params"], j["status"]
            task = p.get("task") or ", ".join(p.get("tasks", []))
            progress = st.get("progress")
            rows.append((j["id"], [j["id"].split("-", 1)[1], "bench" if j["kind"] == "utility" else "check", task,
                                   state_text(j["state"]), "" if progress is None else f"{100 * progress:.0f}%"]))
        self.query_one("#jobs", LiveTable).show_rows(rows, self.selected)
        self._show_selected()
        self.loaded = True

    def _job(self) -> dict[str, Any] | None:
        return next((j for j in self.jobs if j["id"] == self.selected), None)

    def _show_selected(self) -> None:
        job = self._job()
        key = None if job is None else (job["id"], job["state"], job["status"].get("done"), self.metric)
        if key == self._shown:
            return
        self._shown = key
        summary = self.query_one("#summary", Static)
        if job is None:
            return
        result = job["status"].get("result") if job["state"] == "succeeded" else None
        text = Text()
        text.append(f"{job['id']}\n", style="bold")
        text.append("state ").append_text(state_text(job["state"]))
        text.append(f"   {job['status'].get('message') or ''}\n")
        if job["status"].get("error"):
            text.append(str(job["status"]["error"]) + "\n", style="red")
        if job["kind"] == "utility":
            p = job["params"]
            text.append(f"task {p.get('task')}   sets {', '.join(p.get('arms', []))}\n"
                        f"runs {', '.join(p.get('runs', [])) or '–'}\n"
                        f"{p.get('arch')} {p.get('size')} px, {p.get('steps')} steps, seed {p.get('seed')}\n")
            if result:
                text.append(f"tested on {result['n_test']} real validation images\n")
            self._show_benchmark(result)
        else:
            self._show_check(result)
        summary.update(text)

    def _metrics(self, result: dict[str, Any]) -> list[str]:
        return list(dict.fromkeys(r["metric"] for r in result["results"]))

    def _show_benchmark(self, result: dict[str, Any] | None) -> None:
        plot = self.query_one("#curves", PlotWidget)
        table = self.query_one("#results", DataTable)
        comp = self.query_one("#comparisons", DataTable)
        plot.clear()
        table.clear(columns=True)
        comp.clear(columns=True)
        if not result:
            return
        names = self._metrics(result)
        if self.metric not in names:
            self.metric = "auroc" if "auroc" in names else names[0]
        plot.set_ylabel(self.metric)
        curves: dict[str, list[tuple[float, float, float, float]]] = {}
        for r in result["results"]:
            if r["metric"] == self.metric and r["value"] is not None:
                lo, hi = (r["lo"], r["hi"]) if r["lo"] is not None else (r["value"], r["value"])
                curves.setdefault(r["arm"], []).append((r["fraction"], r["value"], lo, hi))
        xs_all = sorted({pt[0] for pts in curves.values() for pt in pts if pt[0] > 0}) or [0.0, 1.0]
        for arm, pts in sorted(curves.items()):
            colour = COLOURS.get(arm.split(":")[0], "white")
            if arm == "synthetic":  # trained on no real image: a level line across the curve
                pts = [(x, *pts[0][1:]) for x in (xs_all[0], xs_all[-1])]
            pts.sort()
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            plot.plot(xs, ys, line_style=colour, hires_mode=HiResMode.BRAILLE, label=arm)
            # The 95% interval as a bar (textual-plot's bars are symmetric: centred on the interval's middle).
            plot.errorbar(xs, [(p[2] + p[3]) / 2 for p in pts], yerr=[(p[3] - p[2]) / 2 for p in pts],
                          marker_style=colour)
            plot.scatter(xs, ys, marker="●", marker_style=colour)
        if curves:
            plot.show_legend()
            # The intervals set the range: textual-plot scales to the points alone.
            lows = [p[2] for pts in curves.values() for p in pts]
            highs = [p[3] for pts in curves.values() for p in pts]
            pad = 0.05 * ((max(highs) - min(lows)) or 1.0)
            plot.set_ylimits(min(lows) - pad, max(highs) + pad)
            plot.set_xlimits(xs_all[0] - 0.05, xs_all[-1] + 0.05)  # the end points' bars clear of the axes
        table.add_columns("model", "real", "synthetic", self.metric, "95% interval")
        for r in result["results"]:
            if r["metric"] == self.metric:
                table.add_row(r["unit"], str(r["n_real"]), str(r["n_synthetic"]), _fmt(r["value"]),
                              f"{_fmt(r['lo'])} – {_fmt(r['hi'])}")
        comp.add_columns("first", "second", "difference", "95% interval", "p", "method")
        for c in result["comparisons"]:
            if c["metric"] == self.metric:
                comp.add_row(c["a"], c["b"], _fmt(c["diff"], "+.3f"),
                             f"{_fmt(c['lo'], '+.3f')} – {_fmt(c['hi'], '+.3f')}", _fmt(c["p"]), c["method"])

    def _show_check(self, result: dict[str, Any] | None) -> None:
        self.query_one("#curves", PlotWidget).clear()
        table = self.query_one("#results", DataTable)
        comp = self.query_one("#comparisons", DataTable)
        table.clear(columns=True)
        comp.clear(columns=True)
        if not result:
            return
        table.add_columns("task", "run", "agreement", "images", "checker on real")
        for task, t in result["tasks"].items():
            unit = " px" if task == "landmarks" else ""
            ref = t["reference"].get("value")
            for run, s in t["runs"].items():
                table.add_row(task, run, _fmt(s.get("value")) + unit, str(s["n"]), _fmt(ref) + unit)
        comp.add_columns("training job", "step", "cond accuracy", "cond landmark px")
        for c in result.get("checkpoints", []):
            comp.add_row(c["train_job"], str(c["step"]), _fmt(c.get("cond_accuracy")),
                         _fmt(c.get("cond_landmark_px"), ".2f"))

    # -- keys -------------------------------------------------------------------------------------------
    @on(DataTable.RowHighlighted, "#jobs")
    def _highlight(self, event: DataTable.RowHighlighted) -> None:
        key = self.query_one("#jobs", LiveTable).chosen_key(event)
        if key and key != self.selected:
            self.selected = key
            self._show_selected()

    def action_next_metric(self) -> None:
        job = self._job()
        result = job and job["status"].get("result")
        if not result or job["kind"] != "utility":
            return
        names = self._metrics(result)
        self.metric = names[(names.index(self.metric) + 1) % len(names)] if self.metric in names else names[0]
        self._show_selected()

    def action_new_benchmark(self) -> None:
        def chosen(choice: dict | None) -> None:
            if choice:
                self._start_benchmark(choice)

        self.app.push_screen(NewBenchmarkScreen(), chosen)

    @work(thread=True, group="utility-action")
    def _start_benchmark(self, choice: dict[str, Any]) -> None:
        from core.utility.benchmark import utility_params  # imported on use: loads torch (start-up cost)

        study = self.app.study
        try:
            params = utility_params(study, **choice)
        except CspineError as exc:  # a refused generator, a task without labels: said, nothing started
            self.app.call_from_thread(self.app.report_error, exc)
            return
        job_id = launch.launch(study, "utility", params, detach=True, argv=["tui", "utility"]).job_id
        self.selected = job_id
        self.app.call_from_thread(self.app.notify, f"started {job_id} in the background")
        self.app.call_from_thread(self.poll_now)

    def selected_job(self) -> str | None:
        return self.selected

    def palette_commands(self):
        return [("Utility: new benchmark", "train on real, synthetic and mixed images in the background",
                 self.action_new_benchmark),
                ("Utility: next metric", "show the learning curves of the next metric", self.action_next_metric),
                *self.job_commands()]
