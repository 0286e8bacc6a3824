"""Training: start, pause, cancel and resume runs; the live loss curve, validation loss and FID of each run.

Everything shown is read from the run folders every second (core/jobs/runview.py); jobs run in their own
processes, so closing the app leaves them training and reopening it picks them up.
"""

from __future__ import annotations

import bisect
import math
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Footer, Header, Input, Label, Select, Static
from textual_plot import HiResMode, PlotWidget
from textual_plot.axis_formatter import AxisFormatter

from core.jobs import launch, runner, runview
from core.jobs.runview import fmt_duration
from cspine_tui.widgets.live import LiveTable, PolledScreen, state_text

MAX_CURVE_POINTS = 400


class LogAxisFormatter(AxisFormatter):
    """Ticks for data plotted as log10(value): 1-2-5 steps per decade, labelled with the value itself."""

    def get_ticks(self, min_: float, max_: float, max_ticks: int = 8) -> list[float]:
        if not (math.isfinite(min_) and math.isfinite(max_)) or max_ <= min_:
            return [min_]
        for mantissas in ((1, 2, 5), (1,)):
            ticks = [math.log10(m * 10.0 ** e) for e in range(math.floor(min_) - 1, math.ceil(max_) + 1)
                     for m in mantissas]
            ticks = [t for t in ticks if min_ <= t <= max_]
            if 2 <= len(ticks) <= max_ticks:
                return ticks
        return [min_, max_]

    def get_labels_for_ticks(self, ticks) -> list[str]:
        return [f"{10 ** t:.3g}" for t in ticks]


class NewRunScreen(ModalScreen[dict | None]):
    """Parameters of a new training run; the rest comes from study.toml [train] and the preset."""

    DEFAULT_CSS = """
    NewRunScreen { align: center middle; }
    NewRunScreen > Vertical { width: 64; height: auto; border: thick $primary; padding: 1 2; background: $surface; }
    NewRunScreen Input, NewRunScreen Select { margin-bottom: 1; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("New training run (runs in the background)", classes="panel-title")
            yield Select([(p, p) for p in ("paper", "small", "tiny")], value="paper", id="preset",
                         allow_blank=False)
            yield Select([("train split (validation loss)", "train"), ("all images (FID monitors)", "all")],
                         value="train", id="data", allow_blank=False)
            yield Input(placeholder="steps (empty: the preset's)", id="steps", type="integer")
            yield Input(value="1", placeholder="processes (GPUs)", id="procs", type="integer")
            with Horizontal():
                yield Button("Start", variant="primary", id="start")
                yield Button("Cancel", id="cancel")

    @on(Button.Pressed, "#start")
    def _start(self) -> None:
        steps = self.query_one("#steps", Input).value.strip()
        procs = self.query_one("#procs", Input).value.strip() or "1"
        self.dismiss({"preset": self.query_one("#preset", Select).value, "data": self.query_one("#data", Select).value,
                      "steps": int(steps) if steps else None, "num_processes": max(1, int(procs))})

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class TrainingScreen(PolledScreen):
    HELP = ("Runs of the study on the left (newest first); the selected run's train loss (window means, log "
            "scale), validation loss per checkpoint and FID per evaluation on the right. n starts a run in the "
            "background, p pauses (checkpoint, resumable), c cancels, r resumes a paused or died run. Runs keep "
            "going when the app closes.")
    BINDINGS = [
        Binding("n", "new_run", "New run"),
        Binding("p", "pause", "Pause"),
        Binding("c", "cancel_run", "Cancel"),
        Binding("r", "resume", "Resume"),
        Binding("escape", "app.pop_screen", "Back"),
    ]
    DEFAULT_CSS = """
    TrainingScreen #runs-pane { width: 52; }
    TrainingScreen #runs { height: 1fr; }
    TrainingScreen #stats { height: auto; }
    TrainingScreen #curve { height: 1fr; min-height: 10; }
    TrainingScreen #evals { height: 12; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[dict[str, Any]] = []
        self.selected: str | None = None
        self.tail: runview.MetricsTail | None = None
        self._plotted_offset = -1

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            with Vertical(id="runs-pane"):
                yield LiveTable(id="runs")
                yield Static("no training runs yet: press n to start one", id="stats", classes="panel")
            with Vertical():
                yield PlotWidget(id="curve")
                yield DataTable(id="evals", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#runs", LiveTable).add_columns("run", "state", "step", "loss")
        evals = self.query_one("#evals", DataTable)
        evals.add_columns("step", "train loss", "val loss", "val loss (EMA)", "FID", "KID", "FID details")
        plot = self.query_one("#curve", PlotWidget)
        plot.set_xlabel("step")
        plot.set_ylabel("loss (log)")
        plot.set_y_formatter(LogAxisFormatter())
        self.start_polling()

    # -- data (thread workers; files only) --------------------------------------------------------
    def poll(self) -> None:
        runs = runview.scan_jobs(self.app.study, kind="train")
        selected = self.selected or (runs[0]["id"] if runs else None)
        changed = False
        if selected:
            folder = self.app.study.runs_dir / selected
            if self.tail is None or self.tail.path.parent != folder:
                self.tail = runview.MetricsTail(folder / "metrics.jsonl")
                self._plotted_offset = -1
            changed = self.tail.poll() or self._plotted_offset != self.tail.offset
        self.show_from_thread(self._show, runs, selected, changed)

    def _show(self, runs: list[dict[str, Any]], selected: str | None, changed: bool) -> None:
        self.runs = runs
        self.selected = selected
        rows = []
        for r in runs:
            st = r["status"]
            step = f"{st.get('step') or 0}/{st.get('total') or r['params'].get('config', {}).get('max_steps', '?')}"
            loss = str(st.get("message") or "").replace("loss ", "")
            rows.append((r["id"], [r["id"].removeprefix("train-"), state_text(r["state"]), step, loss]))
        self.query_one("#runs", LiveTable).show_rows(rows, selected)
        self._show_stats()
        if changed and self.tail is not None:
            self._show_curve()
            self._show_evals()
            self._plotted_offset = self.tail.offset

    def _run(self) -> dict[str, Any] | None:
        return next((r for r in self.runs if r["id"] == self.selected), None)

    def _show_stats(self) -> None:
        run = self._run()
        stats = self.query_one("#stats", Static)
        if run is None:
            stats.update("no training runs yet: press n to start one")
            return
        st, cfg = run["status"], run["params"].get("config", {})
        text = Text()
        text.append(f"{run['id']}\n", style="bold")
        text.append("state ")
        text.append_text(state_text(run["state"]))
        text.append(f"   preset {cfg.get('name', '?')}   data {run['params'].get('data', '?')}\n")
        text.append(f"step {st.get('step') or 0:,} / {st.get('total') or cfg.get('max_steps', 0):,}   "
                    f"{st.get('steps_per_s') or 0:.2f} steps/s   {st.get('images_per_s') or 0:.1f} img/s\n")
        text.append(f"ETA {fmt_duration(st.get('eta_s')) if run['state'] == 'running' else '–'}   "
                    f"heartbeat {fmt_duration(runview.heartbeat_age(st))} ago\n")
        text.append(f"device {st.get('device', '–')}   precision {st.get('precision', '–')}   "
                    f"processes {st.get('processes', run['params'].get('num_processes', 1))}\n")
        mem = st.get("memory_mb")
        text.append(f"memory {mem / 1024:.2f} GiB\n" if isinstance(mem, (int, float)) else "memory –\n")
        if st.get("error"):
            text.append(str(st["error"]), style="red")
        stats.update(text)

    def _show_curve(self) -> None:
        plot = self.query_one("#curve", PlotWidget)
        plot.clear()
        xs, ys = self.tail.points("train_loss")
        pts = [(x, math.log10(y)) for x, y in zip(xs, ys) if y > 0 and math.isfinite(y)]
        if pts:
            dx, dy = runview.downsample([p[0] for p in pts], [p[1] for p in pts], MAX_CURVE_POINTS)
            plot.plot(dx, dy, line_style="cyan", hires_mode=HiResMode.BRAILLE, label="train loss")
        vx, vy = self.tail.points("val_loss")
        vpts = [(x, math.log10(y)) for x, y in zip(vx, vy) if y > 0]
        if vpts:
            plot.scatter([p[0] for p in vpts], [p[1] for p in vpts], marker="●", marker_style="yellow",
                         label="val loss")
        if pts or vpts:
            plot.show_legend()

    def _show_evals(self) -> None:
        table = self.query_one("#evals", DataTable)
        table.clear()
        series = self.tail.series
        steps = sorted(set(series.get("val_loss", {})) | set(series.get("fid", {})))
        train_steps, train_vals = self.tail.points("train_loss")

        def fmt(name: str, step: int, spec: str = ".4f") -> str:
            v = series.get(name, {}).get(step)
            return "" if v is None else format(v, spec)

        for step in reversed(steps):
            i = bisect.bisect_right(train_steps, step)  # the last train-loss window at or before the step
            d = self.tail.details.get("fid", {}).get(step, {})
            label = ""
            if d:
                label = f"{d.get('extractor')} {d.get('sampler')}×{d.get('sampler_steps')} n={d.get('n')}"
                if d.get("extractor") == "proxy":
                    label += " (NOT Inception)"
            table.add_row(str(step), f"{train_vals[i - 1]:.4f}" if i else "", fmt("val_loss", step),
                          fmt("val_loss_ema", step), fmt("fid", step, ".2f"), fmt("kid", step, ".4f"), label)

    @on(DataTable.RowHighlighted, "#runs")
    def _highlight(self, event: DataTable.RowHighlighted) -> None:
        key = self.query_one("#runs", LiveTable).chosen_key(event)
        if key and key != self.selected:
            self.selected = key
            self.tail = None
            self.poll_now()

    # -- actions (short engine calls in threads) --------------------------------------------------
    def action_new_run(self) -> None:
        def started(choice: dict | None) -> None:
            if choice:
                self._start_run(choice)

        self.app.push_screen(NewRunScreen(), started)

    @work(thread=True, group="training-action")
    def _start_run(self, choice: dict[str, Any]) -> None:
        from core.ddpm.trainer import train_params  # imported on use: loads numpy (start-up cost)

        study = self.app.study
        params = train_params(study, preset=choice["preset"], data=choice["data"],
                              overrides={"max_steps": choice.get("steps")}, num_processes=choice["num_processes"])
        job_id = runner.create_job(study, "train", params, argv=["tui", "train"])
        launch.start(study, job_id, detach=True)
        self.selected, self.tail = job_id, None
        self.app.call_from_thread(self.app.notify, f"started {job_id} in the background")
        self.app.call_from_thread(self.poll_now)

    def _act(self, what: str) -> None:
        if self.selected:
            self.control_job(what, self.selected)

    def action_pause(self) -> None:
        self._act("pause")

    def action_cancel_run(self) -> None:
        self._act("cancel")

    def action_resume(self) -> None:
        self._act("resume")

    def palette_commands(self):
        return [("Training: new run", "start a training run in the background", self.action_new_run),
                ("Training: pause run", "checkpoint the selected run and pause it", self.action_pause),
                ("Training: resume run", "continue the selected paused or died run", self.action_resume),
                ("Training: cancel run", "stop the selected run (with a checkpoint)", self.action_cancel_run)]
