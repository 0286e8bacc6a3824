"""Sampling: pick checkpoints (losses, FID, images so far), start sampling jobs, follow runs, see new images.

Checkpoints and counts come from the database every few seconds, job progress from the run folders every
second, and the gallery shows the newest images of the selected run, decoded in a worker thread. Sampling
jobs run detached, so closing the app leaves them working; reopening it picks them up.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.widgets import Button, DataTable, Footer, Header, Input, Label, Select, Static

from core.jobs import launch, runview
from core.jobs.runview import fmt_duration
from cspine_tui.widgets.live import LiveTable, PolledScreen, state_text
from cspine_tui.widgets.preview import ImagePreview, load_preview

GALLERY = 6
DB_EVERY_S = 3.0


def _fmt(value: Any, spec: str = ".4f") -> str:
    return "" if value is None else format(value, spec)


def progress_text(run: dict[str, Any]) -> Text:
    """images done / total, the share, the rate and (while running) the time left."""
    done = run["done"] if run["done"] is not None else (run["images"] or 0)
    total = run["total"]
    text = Text("images ", style="bold")
    text.append(f"{done:,}" + (f" / {total:,} ({100 * done / total:.0f}%)" if total else ""))
    if run["rate"]:
        text.append(f"   {run['rate']:.2f} img/s")
        if run["state"] == "running" and total and total > done:
            text.append(f"   ETA {fmt_duration((total - done) / run['rate'])}")
    return text.append("\n")


class SamplingScreen(PolledScreen):
    HELP = ("Checkpoints of the study (top left) with train/validation loss, FID and the images sampled from "
            "each so far; space marks checkpoints, s samples --count images from each marked one (or the "
            "highlighted one) with the chosen sampler, in the background. Runs are listed below with their "
            "progress; the newest images of the highlighted run are on the right. p pauses, r resumes, c "
            "cancels the highlighted run's job.")
    BINDINGS = [  # p, c and r: PolledScreen's job keys
        Binding("space", "mark", "Mark checkpoint"),
        Binding("s", "start", "Sample"),
        Binding("escape", "app.pop_screen", "Back"),
    ]
    JOB_AREA, JOB_NOUN = "Sampling", "run"
    DEFAULT_CSS = """
    SamplingScreen #left { width: 3fr; max-width: 80; min-width: 46; }
    SamplingScreen #right { width: 2fr; }
    SamplingScreen #checkpoints { height: 1fr; min-height: 6; }
    SamplingScreen #form { height: auto; grid-size: 3; grid-columns: 1fr 1fr 1fr; grid-rows: 1 3 1 3;
                           grid-gutter: 0 1; }
    SamplingScreen #form Select, SamplingScreen #form Input, SamplingScreen #form Button { width: 1fr; }
    SamplingScreen #runs { height: 1fr; min-height: 6; }
    SamplingScreen #gallery { grid-size: 3 2; grid-gutter: 0 1; height: 1fr; min-height: 8; }
    SamplingScreen.-narrow #gallery { grid-size: 2 2; }  /* four thumbnails big enough to see, not six slivers */
    SamplingScreen.-narrow #g4, SamplingScreen.-narrow #g5 { display: none; }
    SamplingScreen #run-info { height: auto; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.checkpoints: list[dict[str, Any]] = []
        self.marked: set[tuple[str, int]] = set()
        self.runs: list[dict[str, Any]] = []
        self.selected_run: str | None = None
        self.shown_images: list[str] = []
        self._db_cache: tuple[list[dict[str, Any]], list[dict[str, Any]], float, dict[str, Any]] | None = None
        self._ckpt_rows: list[tuple[str, tuple[str, ...]]] = []
        self._samplers_shown = False
        self.loaded = False  # the first poll has been shown (tests/factories/waiting.py waits on it)

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            with Vertical(id="left"):
                yield Label("Checkpoints (space marks, s samples)", classes="panel-title")
                yield DataTable(id="checkpoints", cursor_type="row", zebra_stripes=True)
                with Grid(id="form"):  # a label over each field, two rows of three
                    for text in ("sampler", "steps", "images"):
                        yield Label(text, classes="muted")
                    # The sampler names come with the first poll: core.ddpm.samplers imports torch, which
                    # would hold the screen's first paint for seconds.
                    yield Select([], prompt="loading…", id="sampler")
                    yield Input(placeholder="default", id="steps", type="integer")
                    yield Input(value="100", id="count", type="integer")
                    yield Label("weights", classes="muted")
                    yield Label("")
                    yield Label("")
                    yield Select([("EMA weights", "ema"), ("online weights", "online")], value="ema",
                                 id="weights", allow_blank=False)
                    yield Button("Sample", variant="primary", id="start")
                yield Label("Runs", classes="panel-title")
                yield LiveTable(id="runs")
            with Vertical(id="right"):
                yield Static("no run selected", id="run-info", classes="panel")
                yield Label("Newest images of the highlighted run", classes="panel-title")
                with Grid(id="gallery"):
                    for i in range(GALLERY):
                        yield ImagePreview(self.app.image_protocol, caption="", id=f"g{i}")
        yield Footer()

    def on_resize(self) -> None:
        self.set_class(self.query_one("#right").size.width < 60, "-narrow")

    def on_mount(self) -> None:
        self.query_one("#checkpoints", DataTable).add_columns(
            " ", "step", "generated", "FID", "val loss", "train loss", "job")  # what picks a checkpoint first
        # Progress first: a long run name must not push a running job's count off-screen.
        self.query_one("#runs", LiveTable).add_columns("images", "img/s", "state", "run", "checkpoint", "sampler")
        # After the first paint: opening the screen never waits for its data.
        self.call_after_refresh(self.start_polling)

    # -- data (thread workers) -----------------------------------------------------------------
    def refresh_data(self) -> None:
        """Re-read everything now, the database included (after an action, or when new images land)."""
        self._db_cache = None
        self.poll_now()

    def poll(self) -> None:
        import time

        # imported on use: loads torch, numpy (start-up cost)
        from core.ddpm.samplers import DEFAULT_FAST_SAMPLER, SAMPLERS
        # imported on use: loads numpy (start-up cost)
        from core.ddpm.sampling import checkpoint_overview, newest_images
        from core.ddpm.synthetic import list_runs  # imported on use: loads numpy (start-up cost)
        from core.ddpm.run_fid import latest_run_fids  # imported on use: loads numpy (start-up cost)

        study = self.app.study
        jobs = runview.scan_jobs(study, kind="sample")
        now = time.monotonic()
        cache = self._db_cache
        if cache is None or now - cache[2] >= DB_EVERY_S:  # the database only every few seconds
            cache = (checkpoint_overview(study), list_runs(study), now, latest_run_fids(study))
            self._db_cache = cache
        ckpts, db_runs, _, fids = cache
        runs = self._merge_runs(jobs, db_runs)
        for r in runs:
            r["fid"] = fids.get(r["run"])
        selected = self.selected_run if any(r["key"] == self.selected_run for r in runs) else \
            (runs[0]["key"] if runs else None)
        run = next((r for r in runs if r["key"] == selected), None)
        images = [str(p) for p in newest_images(study, run["run"], GALLERY)] if run and run["run"] else []
        decoded = None
        if images != self.shown_images:
            decoded = [load_preview(p, max_side=256) for p in images]
        self.show_from_thread(self._show, ckpts, runs, selected, images, decoded, (SAMPLERS, DEFAULT_FAST_SAMPLER))

    @staticmethod
    def _merge_runs(jobs: list[dict[str, Any]], db_runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One row per sampling job (newest first), then runs no job of this study folder describes."""
        by_run = {r["id"]: r for r in db_runs}
        rows, covered = [], set()
        for j in jobs:
            st, p = j["status"], j["params"]
            name = st.get("run") or p.get("run")
            covered.add(name)
            db = by_run.get(name, {})
            rows.append({"key": j["id"], "job": j["id"], "run": name, "state": j["state"],
                         "checkpoint": f"{p.get('checkpoint_step')}", "train_job": p.get("train_job"),
                         "sampler": f"{p.get('sampler')} x {p.get('steps')} ({p.get('weights')})",
                         "done": st.get("done"), "total": st.get("total") or p.get("count"),
                         "rate": st.get("images_per_s"), "images": db.get("images"), "error": st.get("error"),
                         "output": st.get("output")})
        for r in db_runs:
            if r["id"] in covered:
                continue
            rows.append({"key": r["id"], "job": r["job_id"], "run": r["id"], "state": r["source"],
                         "checkpoint": "" if r["checkpoint_step"] is None else str(r["checkpoint_step"]),
                         "train_job": r["train_job"],
                         "sampler": f"{r['sampler']} x {r['steps']} ({r['weights']})" if r["sampler"] else "",
                         "done": r["images"], "total": r["images"], "rate": None, "images": r["images"],
                         "error": None, "output": None})
        return rows

    def _show(self, ckpts, runs, selected, images, decoded, samplers) -> None:
        self.checkpoints, self.runs, self.selected_run = ckpts, runs, selected
        self.loaded = True
        if not self._samplers_shown:
            select = self.query_one("#sampler", Select)
            select.set_options([(s, s) for s in samplers[0]])
            select.value = samplers[1]
            self._samplers_shown = True
        self._show_checkpoints()
        self._show_runs()
        self._show_run_info()
        if decoded is not None:
            self.shown_images = images
            for i in range(GALLERY):
                box = self.query_one(f"#g{i}", ImagePreview)
                if i < len(decoded):
                    box.show(decoded[i], caption=images[i].rsplit("/", 1)[-1])
                else:
                    box.show(None, caption="")

    def _show_checkpoints(self) -> None:
        table = self.query_one("#checkpoints", DataTable)
        rows = []
        for c in self.checkpoints:
            mark = "●" if (c["job"], c["step"]) in self.marked else ""
            fid = _fmt(c["fid"], ".2f") + (" proxy" if c.get("fid_extractor") == "proxy" and c["fid"] is not None
                                           else "")
            rows.append((f"{c['job']}:{c['step']}", (mark, str(c["step"]), str(c["generated"]), fid,
                                                     _fmt(c["val_loss"]), _fmt(c["train_loss"]),
                                                     c["job"].removeprefix("train-"))))
        if rows == self._ckpt_rows:
            return  # unchanged: leave the table (and the cursor) alone
        cursor = table.cursor_row
        table.clear()
        for key, cells in rows:
            table.add_row(*cells, key=key)
        if rows:
            table.move_cursor(row=min(cursor, len(rows) - 1))
        self._ckpt_rows = rows

    def _show_runs(self) -> None:
        rows = []
        for r in self.runs:
            done = r["done"] if r["done"] is not None else (r["images"] or 0)
            images = f"{done}/{r['total']}" if r["total"] else str(done)
            rows.append((r["key"], [images, _fmt(r["rate"], ".2f"), state_text(r["state"]), r["run"] or "(starting)",
                                    r["checkpoint"], r["sampler"]]))
        self.query_one("#runs", LiveTable).show_rows(rows, self.selected_run)

    def _show_run_info(self) -> None:
        run = self._selected()
        info = self.query_one("#run-info", Static)
        if run is None:
            info.update("no sampling runs yet: pick a checkpoint and press s")
            return
        text = Text()
        text.append(f"{run['run'] or run['job']}\n", style="bold")
        text.append("state ")
        text.append_text(state_text(run["state"]))
        text.append(f"   checkpoint {run['checkpoint']} ({run['train_job'] or 'external'})   {run['sampler']}\n")
        text.append_text(progress_text(run))
        fid = run.get("fid")
        if fid:
            label = "FID" if fid["extractor"] == "inception" else "proxy FID (NOT Inception)"
            text.append(f"{label} {fid['fid']:.2f}   KID {_fmt(fid.get('kid'), '.4f')}   n={fid['n']} vs "
                        f"{fid['n_real']} {fid['real']} images\n")
        elif run["run"]:
            text.append(f"no FID yet: cspine-tui fid --run {run['run']}\n", style="dim")
        if run["output"]:
            text.append(f"{run['output']}\n", style="dim")
        if run["error"]:
            text.append(str(run["error"]), style="red")
        info.update(text)

    def _selected(self) -> dict[str, Any] | None:
        return next((r for r in self.runs if r["key"] == self.selected_run), None)

    @on(DataTable.RowHighlighted, "#runs")
    def _highlight_run(self, event: DataTable.RowHighlighted) -> None:
        key = self.query_one("#runs", LiveTable).chosen_key(event)
        if key and key != self.selected_run:
            self.selected_run = key
            self.shown_images = []
            self.refresh_data()

    # -- actions -------------------------------------------------------------------------------
    def _highlighted_checkpoint(self) -> tuple[str, int] | None:
        table = self.query_one("#checkpoints", DataTable)
        if not self.checkpoints or table.cursor_row is None or table.cursor_row >= len(self.checkpoints):
            return None
        c = self.checkpoints[table.cursor_row]
        return c["job"], int(c["step"])

    def action_mark(self) -> None:
        key = self._highlighted_checkpoint()
        if key is None:
            return
        self.marked ^= {key}
        self._show_checkpoints()

    @on(Button.Pressed, "#start")
    def action_start(self) -> None:
        from core.errors import CspineError

        chosen = sorted(self.marked) or ([self._highlighted_checkpoint()] if self._highlighted_checkpoint() else [])
        if not chosen:
            self.app.report_error(CspineError("no checkpoint to sample: train first, or pick one in the table"))
            return
        if not self._samplers_shown:
            self.app.report_error(CspineError("the sampler list is still loading; press s again in a moment"))
            return
        steps = self.query_one("#steps", Input).value.strip()
        count = self.query_one("#count", Input).value.strip()
        if not count.isdigit() or int(count) < 1:
            self.app.report_error(CspineError(f"count must be a positive whole number, not {count!r}"))
            return
        self._start(chosen, {"sampler": self.query_one("#sampler", Select).value,
                             "steps": int(steps) if steps else None, "count": int(count),
                             "weights": self.query_one("#weights", Select).value})

    @work(thread=True, group="sampling-action")
    def _start(self, chosen: list[tuple[str, int]], form: dict[str, Any]) -> None:
        from core.ddpm.sampling import sample_params  # loaded on first use: keeps opening the screen fast

        study = self.app.study
        study.reload_settings()  # an edit of study.toml [sample] since the app started counts
        started = []
        for job, step in chosen:
            params = sample_params(study, checkpoint=step, job=job, **form)
            started.append(launch.launch(study, "sample", params, detach=True, argv=["tui", "sample"]).job_id)
        self.marked.clear()
        self.selected_run = started[-1]
        self.shown_images = []
        self.app.call_from_thread(self.app.notify, f"started {len(started)} sampling job(s) in the background")
        self.app.call_from_thread(self.refresh_data)

    def selected_job(self) -> str | None:
        run = self._selected()
        return run["job"] if run else None

    def palette_commands(self):
        return [("Sampling: sample", "sample from the marked or highlighted checkpoints", self.action_start),
                *self.job_commands()]
