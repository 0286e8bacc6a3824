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
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Footer, Header, Input, Label, Select, Static
from textual_plot import HiResMode, PlotWidget
from textual_plot.axis_formatter import AxisFormatter

from core.jobs import launch, runview
from core.jobs.runview import fmt_duration
from cspine_tui.widgets.live import LiveTable, PolledScreen, state_text
from core.errors import CspineError

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


FID_CHOICES = [("auto: Inception if its weights are here, else the proxy", "auto"),
               ("inception (comparable with published FIDs)", "inception"),
               ("proxy (NOT Inception: trends only)", "proxy"),
               ("off (no FID during training)", "off")]


def dialog_defaults(study: Any) -> dict[str, Any]:
    """What the new-run dialog starts with: study.toml [train] as it is on disk now, a preset this machine can
    train (no GPU: tiny), the FID extractor the machine has weights for, the preset's FID interval."""
    import torch  # the GPU check; a worker thread pays for the import, not the UI

    from core.ddpm.networks import get_preset
    from core.metrics.fid import find_inception_weights  # imported on use: loads torch, numpy (start-up cost)

    study.reload_settings()
    train = study.settings.get("train", {})
    gpu = torch.cuda.is_available()
    preset = train.get("preset", "paper") if gpu else "tiny"
    try:
        find_inception_weights(train.get("inception_weights"), study.get("fid", "inception_weights"))
        weights = True
    except CspineError:
        weights = False
    extractor = train.get("fid_extractor") or ("inception" if weights else "auto")
    return {"gpu": gpu, "preset": preset, "weights": weights, "extractor": extractor,
            "fid_every": {name: train.get("fid_every", get_preset(name).fid_every) for name in ("paper", "small",
                                                                                               "tiny")},
            "max_steps": {name: train.get("max_steps", get_preset(name).max_steps) for name in ("paper", "small",
                                                                                               "tiny")}}


class StepAxisFormatter(AxisFormatter):
    """Step ticks at 1-2-5 intervals, as many as fit the plot's width with a gap between labels (the stock
    formatter puts 5-8 ticks whatever the width: "20406081012140" at 80 columns); 20000 reads as 20k."""

    def __init__(self) -> None:
        self.width = 80

    def get_ticks(self, min_: float, max_: float, max_ticks: int = 8) -> list[float]:
        if not (math.isfinite(min_) and math.isfinite(max_)) or max_ <= min_:
            return [min_]
        label = max(len(self._label(min_)), len(self._label(max_))) + 2  # two spaces between labels
        fit = max(2, min(max_ticks, (self.width - 10) // label))  # about 10 columns go to the y axis
        for exp in range(math.floor(math.log10(max_ - min_)) - 1, 12):
            for m in (1, 2, 5):
                step = m * 10.0 ** exp
                ticks = [k * step for k in range(math.ceil(min_ / step), math.floor(max_ / step) + 1)]
                if len(ticks) <= fit:
                    return ticks
        return [min_, max_]

    @staticmethod
    def _label(t: float) -> str:
        if abs(t) >= 1000 and t % 1000 == 0:
            return f"{t / 1000:g}k"
        return f"{t:g}"

    def get_labels_for_ticks(self, ticks) -> list[str]:
        return [self._label(t) for t in ticks]


class NewRunScreen(ModalScreen[dict | None]):
    """Parameters of a new training run, each labelled; the rest comes from study.toml [train] and the preset.
    The defaults are worked out in a thread (torch import, weights lookup) and filled in when known."""

    DEFAULT_CSS = """
    NewRunScreen { align: center middle; }
    NewRunScreen > VerticalScroll { width: 72; max-height: 100%; height: auto; border: thick $primary;
                                    padding: 0 2; background: $surface; }
    NewRunScreen Label { margin-top: 1; }
    NewRunScreen #machine { color: $text-muted; }
    NewRunScreen #buttons { height: auto; margin-top: 1; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self) -> None:
        super().__init__()
        self.defaults: dict[str, Any] | None = None
        self._touched: set[str] = set()  # fields the user changed: defaults arriving late leave them alone

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Label("New training run (runs in the background)", classes="panel-title")
            yield Static("checking this machine (GPU, Inception weights)…", id="machine")
            yield Label("Preset (network size and schedule)")
            yield Select([("paper (GPU: the paper's network)", "paper"), ("small (GPU: half the channels)", "small"),
                          ("tiny (CPU: 32 px, minutes)", "tiny")], value="tiny", id="preset", allow_blank=False)
            yield Label("Training data")
            yield Select([("train split (validation loss)", "train"), ("all images (FID monitors)", "all")],
                         value="train", id="data", allow_blank=False)
            yield Label("Steps (empty: the preset's)")
            yield Input(placeholder="the preset's", id="steps", type="integer")
            yield Label("FID feature extractor")
            yield Select(FID_CHOICES, value="auto", id="fid", allow_blank=False)
            yield Label("FID every N steps (0: off)")
            yield Input(placeholder="the preset's", id="fid-every", type="integer")
            yield Label("Processes (one per GPU)")
            yield Input(value="1", id="procs", type="integer")
            with Horizontal(id="buttons"):
                yield Button("Start", variant="primary", id="start")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self._load_defaults()

    @work(thread=True, group="new-run-defaults")
    def _load_defaults(self) -> None:
        try:
            defaults = dialog_defaults(self.app.study)
        except Exception as exc:  # noqa: BLE001 - an invalid study.toml edit: shown, the dialog stays usable
            self.app.call_from_thread(self.app.report_error, exc)
            return
        self.app.call_from_thread(self._fill, defaults)

    def _fill(self, d: dict[str, Any]) -> None:
        self.defaults = d
        weights = "Inception weights found" if d["weights"] else "no Inception weights here (auto uses the proxy)"
        self.query_one("#machine", Static).update(
            f"{'GPU found' if d['gpu'] else 'no GPU: the tiny preset trains on a CPU'} · {weights}")
        self._set("preset", d["preset"])
        self._set("fid", d["extractor"])
        self._show_preset_numbers()

    def _set(self, field: str, value: Any) -> None:
        if field not in self._touched:
            widget = self.query_one(f"#{field}")
            with widget.prevent(Select.Changed, Input.Changed):
                widget.value = value

    def _show_preset_numbers(self) -> None:
        if self.defaults is None:
            return
        preset = self.query_one("#preset", Select).value
        self.query_one("#steps", Input).placeholder = f"the preset's {self.defaults['max_steps'][preset]:,}"
        off = self.query_one("#fid", Select).value == "off"
        self._set("fid-every", "0" if off else str(self.defaults["fid_every"][preset]))

    @on(Select.Changed)
    @on(Input.Changed)
    def _changed(self, event: Select.Changed | Input.Changed) -> None:
        field = event.control.id or ""
        self._touched.add(field)
        if field in ("preset", "fid"):
            if field == "fid" and event.value != "off" and self.query_one("#fid-every", Input).value == "0":
                self._touched.discard("fid-every")  # FID back on: the preset's interval again
            if field == "fid" and event.value == "off":
                self._touched.discard("fid-every")
            self._show_preset_numbers()

    @on(Button.Pressed, "#start")
    def _start(self) -> None:
        from core.errors import CspineError

        steps = self.query_one("#steps", Input).value.strip()
        procs = self.query_one("#procs", Input).value.strip() or "1"
        every = self.query_one("#fid-every", Input).value.strip()
        fid = self.query_one("#fid", Select).value
        if not procs.isdigit() or int(procs) < 1:
            self.app.report_error(CspineError(f"processes must be 1 or more, not {procs!r}"))
            return
        self.dismiss({"preset": self.query_one("#preset", Select).value, "data": self.query_one("#data", Select).value,
                      "steps": int(steps) if steps else None, "num_processes": int(procs),
                      "fid_extractor": None if fid == "off" else fid,
                      "fid_every": 0 if fid == "off" else (int(every) if every else None)})

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class TrainingScreen(PolledScreen):
    HELP = ("Runs of the study on the left (newest first); the selected run's train loss (window means, log "
            "scale), validation loss per checkpoint and FID per evaluation on the right. n starts a run in the "
            "background, p pauses (checkpoint, resumable), c cancels, r resumes a paused or died run. Runs keep "
            "going when the app closes.")
    BINDINGS = [  # p, c and r: PolledScreen's job keys
        Binding("n", "new_run", "New run"),
        Binding("escape", "app.pop_screen", "Back"),
    ]
    JOB_AREA, JOB_NOUN = "Training", "run"
    DEFAULT_CSS = """
    TrainingScreen #runs-pane { width: 2fr; max-width: 52; min-width: 30; }
    TrainingScreen #plot-pane { width: 3fr; }
    TrainingScreen #runs { height: 1fr; }
    TrainingScreen #stats { height: auto; }
    TrainingScreen #curve { height: 1fr; min-height: 10; }
    TrainingScreen #evals { height: 12; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.x_ticks = StepAxisFormatter()
        self.runs: list[dict[str, Any]] = []
        self.selected: str | None = None
        self.tail: runview.MetricsTail | None = None
        self._plotted_offset = -1
        self.loaded = False  # the first poll has been shown (tests/factories/waiting.py waits on it)

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            with Vertical(id="runs-pane"):
                yield LiveTable(id="runs")
                yield Static("no training runs yet: press n to start one", id="stats", classes="panel")
            with Vertical(id="plot-pane"):
                yield PlotWidget(id="curve")
                yield DataTable(id="evals", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#runs", LiveTable).add_columns("run", "state", "step", "loss")
        evals = self.query_one("#evals", DataTable)
        evals.add_columns("step", "train loss", "val loss", "val loss (EMA)", "FID", "KID", "FID details",
                          "cond acc", "cond px")
        plot = self.query_one("#curve", PlotWidget)
        plot.set_xlabel("step")
        plot.set_x_formatter(self.x_ticks)
        plot.set_ylabel("loss (log)")
        plot.set_y_formatter(LogAxisFormatter())
        # After the first paint: opening the screen never waits for its data.
        self.call_after_refresh(self.start_polling)

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
        self.loaded = True
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

    def on_resize(self) -> None:
        self.x_ticks.width = self.query_one("#curve", PlotWidget).size.width

    def _show_curve(self) -> None:
        plot = self.query_one("#curve", PlotWidget)
        self.x_ticks.width = plot.size.width
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
        # cond_*: the condition check's agreement at a checkpoint (core/utility/check.py appends it here).
        steps = sorted(set(series.get("val_loss", {})) | set(series.get("fid", {}))
                       | set(series.get("cond_accuracy", {})) | set(series.get("cond_landmark_px", {})))
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
                          fmt("val_loss_ema", step), fmt("fid", step, ".2f"), fmt("kid", step, ".4f"), label,
                          fmt("cond_accuracy", step, ".3f"), fmt("cond_landmark_px", step, ".2f"))

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
        from core.ddpm.trainer import train_params  # loaded on first use: keeps opening the screen fast

        study = self.app.study
        study.reload_settings()  # an edit of study.toml since the app started counts
        params = train_params(study, preset=choice["preset"], data=choice["data"],
                              overrides={"max_steps": choice.get("steps"), "fid_every": choice.get("fid_every")},
                              num_processes=choice["num_processes"], fid_extractor=choice.get("fid_extractor"))
        job_id = launch.launch(study, "train", params, detach=True, argv=["tui", "train"]).job_id
        self.selected, self.tail = job_id, None
        self.app.call_from_thread(self.app.notify, f"started {job_id} in the background")
        self.app.call_from_thread(self.poll_now)

    def selected_job(self) -> str | None:
        return self.selected

    def palette_commands(self):
        return [("Training: new run", "start a training run in the background", self.action_new_run),
                *self.job_commands()]
