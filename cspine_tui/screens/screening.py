"""The screening screen: a reviewer's queue of synthetic images, one key per decision.

Speed: previews are rendered for the view's exact size on a background thread (widgets/halfcell.py) and the
next images are prefetched, so a key only swaps pre-rendered strips. Decisions are appended to a journal file
first and written to the database by one writer thread in order (core/screening/decisions.py), so a key never waits
for the database and a crash loses nothing. Set CSPINE_TRACE_PAINT=<file> to log a timestamp each time a new
preview is painted (benchmarks/bench_tui_keypress.py).
"""

from __future__ import annotations

import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from core.screening import decisions
from core.errors import CspineError
from core.jobs import launch
from cspine_tui.widgets.preview import ImagePreview, resolved_protocol
from cspine_tui.widgets.halfcell import ZOOMS, HalfcellView, RenderCache, TextPanel, render_strips
from cspine_tui.widgets.screening_parts import (DEFAULT_KEYS, FACTS_HEIGHT, KEY_LABELS, NoteModal, PreviewReady,
                                                Thumb, WriteFailed, Written, decoded_preview, facts_text,
                                                queue_text, keymap, reasons_text, table_s1_renderable)
from cspine_tui.screens.screening_summary import ScreeningSummaryScreen

PREFETCH_AHEAD = 6
PAGE = 9


class ScreeningScreen(Screen):
    HELP = ("Decide each synthetic image: accept, or reject and then press the reason's digit (9 asks for a note). "
            "Decisions are saved as you make them; reopening continues at your first undecided image. "
            "Grid mode shows 9 thumbnails: move with the arrows, reject with r + digit, and accept the rest of "
            "the page with a. Zoom cycles whole / upper half / lower half. Flip mirrors the stored image "
            "(recorded; undo mirrors back, keypoints too). A conditional model's image shows its condition; k marks "
            "its keypoints, r then 0 rejects it as not showing it. Keys are remappable in study.toml [keys] (names: "
            + ", ".join(DEFAULT_KEYS) + ").")
    DEFAULT_CSS = """
    ScreeningScreen #stage { width: 1fr; height: 1fr; }
    ScreeningScreen #single { width: 1fr; height: 1fr; }
    ScreeningScreen #grid { grid-size: 3 3; grid-gutter: 0; width: 1fr; height: 1fr; display: none; }
    ScreeningScreen.-grid #grid { display: block; }
    ScreeningScreen.-grid #single { display: none; }
    ScreeningScreen #graphic { display: none; }
    ScreeningScreen.-graphic #graphic { display: block; }
    ScreeningScreen.-graphic #single { display: none; }
    ScreeningScreen.-grid #graphic { display: none; }
    ScreeningScreen #side { width: 44; height: 1fr; }
    ScreeningScreen #facts { height: %d; border: round $primary-lighten-2; padding: 0 1; }
    ScreeningScreen #reasons { height: auto; display: none; border: round $error; padding: 0 1; }
    ScreeningScreen.-rejecting #reasons { display: block; }
    /* While rejecting, the reasons take the counts' place and the facts give way: no panel pushed off-screen. */
    ScreeningScreen.-rejecting #counts { display: none; }
    ScreeningScreen.-rejecting #facts { height: 1fr; max-height: %d; min-height: 4; }
    ScreeningScreen #counts { height: 1fr; }
    ScreeningScreen #caption { height: 1; width: 1fr; content-align: center middle; color: $text-muted; }
    """ % (FACTS_HEIGHT + 2, FACTS_HEIGHT + 2)

    def __init__(self) -> None:
        super().__init__()
        self.items: list[decisions.QueueItem] = []
        self.choices: dict[str, Any] = {"runs": [], "checkpoints": [], "prescreen": False}
        self.pos = 0
        self.grid_mode = False
        self.zoom = 0
        self.markers = False  # keypoint markers on conditional images (off: the image as it will be released)
        self.rejecting = False
        self.filters: dict[str, Any] = {"checkpoint_step": None, "run_id": None, "order": "index"}
        self.loaded = False
        self.cache = RenderCache(capacity=128)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="screening-writer")
        self._pending_writes = 0
        self._submitted = 0  # decisions submitted so far: a load that started before one is stale
        self._write_failed = False
        self._journal: decisions.DecisionJournal | None = None
        self._trace = os.environ.get("CSPINE_TRACE_PAINT")
        self._counts_timer: Any = None
        self.keys: dict[str, str] = dict(DEFAULT_KEYS)
        self.mode = "halfcell"

    # -- layout and keys ---------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            with Vertical(id="stage"):
                yield HalfcellView(id="single")
                yield ImagePreview(self.app.image_protocol, caption="", id="graphic")
                with Grid(id="grid"):
                    for i in range(PAGE):
                        yield Thumb(i, id=f"thumb-{i}")
                yield TextPanel("", id="caption")
            with Vertical(id="side"):
                yield TextPanel("loading the queue…", id="facts")
                yield Static(reasons_text(), id="reasons")
                yield Static("", id="counts", classes="panel")
        yield Footer()

    def on_mount(self) -> None:
        try:
            self.keys = keymap(self.app.study.settings.get("keys", {}))
        except CspineError as exc:
            self.app.report_error(exc)
            self.keys = dict(DEFAULT_KEYS)
        bindings = [Binding(self.keys[name], name, KEY_LABELS[name][0], show=KEY_LABELS[name][1])
                    for name in DEFAULT_KEYS]
        bindings += [Binding("up", "move(-3)", "Grid: cursor up a row", show=False),
                     Binding("down", "move(3)", "Grid: cursor down a row", show=False),
                     Binding("enter", "open_cursor", "Grid: open the image under the cursor", show=False)]
        bindings += [Binding(r.key, f"reason('{r.key}')", f"after reject: {r.label}", show=False)
                     for r in decisions.REASONS]
        for b in bindings:
            self._bindings.bind(b.key, b.action, b.description, show=b.show)
        self.BINDINGS = bindings  # the help screen lists these
        # Half-cell strips by default; Kitty/Sixel/Unicode through textual-image where chosen (grid: half-cell).
        self.mode = resolved_protocol(self.app.image_protocol)
        self.set_class(self.mode != "halfcell", "-graphic")
        self._journal = decisions.DecisionJournal(self.app.study, self.app.reviewer)
        self.reload(replay=True)

    def on_screen_resume(self) -> None:
        # Back on this screen (from the dashboard or the summary): other sessions may have decided meanwhile.
        if self.loaded:
            self.reload(keep=self.current.id if self.current else None)

    def on_unmount(self) -> None:
        self._writer.shutdown(wait=True)  # queued decisions reach the database before the app exits
        self.cache.shutdown()
        if self._journal is not None:
            self._journal.close(applied=not self._write_failed)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "reason":
            return self.rejecting
        if action in ("move", "open_cursor"):
            return self.grid_mode
        return True

    # -- loading -----------------------------------------------------------------------------------------
    def reload(self, *, replay: bool = False, keep: str | None = None) -> None:
        self._load(replay, keep)

    @work(thread=True, exclusive=True, group="screening-load")
    def _load(self, replay: bool, keep: str | None) -> None:
        study, reviewer = self.app.study, self.app.reviewer
        submitted = self._submitted
        try:  # decisions still queued for the database are written first, so the reload shows them
            self._writer.submit(lambda: None).result(timeout=60)
        except RuntimeError:  # the writer is shut down: the screen is closing
            return
        if replay:
            decisions.replay_journals(study)
        state = decisions.screen_state(study, reviewer, self.filters)
        self.app.call_from_thread(self._loaded, state["items"], state["choices"], state["table"], keep, submitted)

    def _loaded(self, items, choices, table, keep: str | None, submitted: int) -> None:
        if submitted != self._submitted:  # a decision made meanwhile (e.g. from the palette) is not in it
            self.reload(keep=self.current.id if self.current else keep)
            return
        self.items, self.choices = items, choices
        ids = [i.id for i in items]
        self.pos = ids.index(keep) if keep in ids else decisions.resume_position(items)
        self.loaded = True
        self._show_counts(table)
        self.refresh_view()

    @property
    def current(self) -> decisions.QueueItem | None:
        return self.items[self.pos] if self.items and 0 <= self.pos < len(self.items) else None

    # -- drawing -----------------------------------------------------------------------------------------
    def refresh_view(self) -> None:
        self.set_class(self.grid_mode, "-grid")
        self.set_class(self.rejecting, "-rejecting")
        item = self.current
        facts = self.query_one("#facts", TextPanel)
        if item is None:
            empty = Text("No synthetic images match this queue.\nRegister a run (`add-synthetic`) or "
                         "change the filters (c, w or ctrl+p \"filter\").\n\n", style="dim")
            facts.set(empty.append("queue ", style="bold").append_text(queue_text(self.filters, self._run_name()))
                      if self.loaded else "loading…")
            self.query_one("#single", HalfcellView).clear()
            return
        facts.set(facts_text(item, self.pos, self.items, self.filters, ZOOMS[self.zoom], self.app.reviewer,
                             self._run_name()))
        if self.grid_mode:
            self._draw_grid()
        else:
            self._draw_single(item)
        self._prefetch()

    def _key(self, item: decisions.QueueItem, view: HalfcellView, zoom: int) -> tuple:
        return (item.path, zoom, view.size.width, view.size.height, self._marked(item))

    def _marked(self, item: decisions.QueueItem) -> bool:  # keypoint markers on this preview (key k)
        return self.markers and bool((item.condition or {}).get("keypoints"))

    def _render_item(self, item: decisions.QueueItem, zoom: int, width: int, height: int) -> tuple:
        img = decoded_preview(self.app.study.abs(item.path), item.condition, zoom, self._marked(item))
        return render_strips(img, width, height), img

    def _draw_single(self, item: decisions.QueueItem) -> None:
        self.query_one("#caption", TextPanel).set(f"{item.id}  ·  {ZOOMS[self.zoom]}")
        if self.mode != "halfcell":
            self._draw_graphic(item)
            return
        view = self.query_one("#single", HalfcellView)
        if view.size.width == 0:  # not laid out yet
            self.call_after_refresh(self.refresh_view)
            return
        key = self._key(item, view, self.zoom)
        if view.key == key:
            return
        self._put(view, key)

    def _draw_graphic(self, item: decisions.QueueItem) -> None:
        """Kitty / Sixel / Unicode previews: a decoded image (prefetched) handed to textual-image."""
        graphic = self.query_one("#graphic", ImagePreview)
        key = ("pil", item.path, self.zoom, self._marked(item))
        if getattr(graphic, "key", None) == key:
            return
        if self.mode == "off":
            graphic.show(None, caption=f"{item.id}\n(previews off: --image-protocol off)")
        else:
            img = self.cache.get(key)
            if img is None:
                self._request(key)
                return
            graphic.show(img)
        graphic.key = key  # type: ignore[attr-defined]
        if self._trace:
            self.call_after_refresh(self._write_trace, item.id)

    def _put(self, view: HalfcellView, key: tuple) -> None:
        hit = self.cache.get(key)
        if hit is None:
            view.show_strips([], key=None)  # blank until the render lands (never decode on the UI thread)
            self._request(key)
            return
        strips, img = hit
        view.show_strips(strips, key=key, image=img)
        if self._trace and view.id == "single":
            image_id = self.current.id if self.current else "-"
            self.call_after_refresh(self._write_trace, image_id)

    def _write_trace(self, image_id: str) -> None:
        with open(self._trace, "a") as fh:  # type: ignore[arg-type]
            fh.write(f"{time.time():.6f} paint {image_id}\n")

    def _request(self, key: tuple) -> None:
        fut = self._prefetch_key(key)
        if fut is not None:
            fut.add_done_callback(lambda f, k=key: None if f.cancelled() or f.exception() else
                                  self.post_message(PreviewReady(k)))
        elif self.cache.get(key) is not None:
            self.post_message(PreviewReady(key))

    def _prefetch_key(self, key: tuple) -> Any:
        """Start rendering (half-cell strips) or decoding (other protocols) one key in the background."""
        path = key[1] if key[0] == "pil" else key[0]
        item = next((i for i in self.items if i.path == path), None)
        if item is None:
            return None
        if key[0] == "pil":
            return self.cache.prefetch(key, lambda: decoded_preview(self.app.study.abs(path), item.condition,
                                                                    key[2], key[3]))
        return self.cache.prefetch(key, lambda: self._render_item(item, key[1], key[2], key[3]))

    def on_preview_ready(self, message: PreviewReady) -> None:
        if message.key[0] == "pil":
            if not self.grid_mode and self.current is not None and message.key[1] == self.current.path:
                self._draw_graphic(self.current)
            return
        views = [self.query_one("#single", HalfcellView)] + [t.view for t in self.query(Thumb)]
        for view in views:
            if view.key is None and getattr(view, "wanted", None) == message.key:
                self._put(view, message.key)
        single = self.query_one("#single", HalfcellView)
        if not self.grid_mode and self.current is not None and single.size.width:
            key = self._key(self.current, single, self.zoom)
            if key == message.key and single.key != key:
                self._put(single, key)

    def _draw_grid(self) -> None:
        start = (self.pos // PAGE) * PAGE
        self.query_one("#caption", TextPanel).set(
            f"page {start // PAGE + 1}/{(len(self.items) + PAGE - 1) // PAGE}  ·  r+digit reject · "
            f"{self.keys['accept']} accept the rest of the page · enter open")
        for i, thumb in enumerate(self.query(Thumb)):
            k = start + i
            item = self.items[k] if k < len(self.items) else None
            thumb.set_item(item, cursor=(k == self.pos))
            if item is None or thumb.view.size.width == 0:
                if item is not None:
                    self.call_after_refresh(self._draw_grid)
                continue
            key = self._key(item, thumb.view, 0)
            thumb.view.wanted = key  # type: ignore[attr-defined]
            if thumb.view.key != key:
                self._put(thumb.view, key)

    def _prefetch(self) -> None:
        if not self.items:
            return
        if self.grid_mode:
            thumb = self.query_one("#thumb-0", Thumb).view
            if thumb.size.width == 0:
                return
            start = (self.pos // PAGE + 1) * PAGE
            for item in self.items[start:start + PAGE]:
                self._prefetch_one(item, thumb, 0)
            return
        ahead = self.items[self.pos + 1:self.pos + 1 + PREFETCH_AHEAD]
        behind = self.items[max(0, self.pos - 1):self.pos]
        if self.mode != "halfcell":
            if self.mode != "off":
                for item in ahead + behind:
                    self._prefetch_key(("pil", item.path, self.zoom, self._marked(item)))
            return
        view = self.query_one("#single", HalfcellView)
        if view.size.width == 0:
            return
        for item in ahead + behind:
            self._prefetch_one(item, view, self.zoom)

    def _prefetch_one(self, item: decisions.QueueItem, view: HalfcellView, zoom: int) -> None:
        key = self._key(item, view, zoom)
        width, height = key[2], key[3]
        self.cache.prefetch(key, lambda: self._render_item(item, zoom, width, height))

    def on_resize(self) -> None:
        self.call_after_refresh(self.refresh_view)

    def _show_counts(self, table: dict[str, Any]) -> None:
        self.query_one("#counts", Static).update(table_s1_renderable(table, self.items, self.app.reviewer))

    def _refresh_counts(self) -> None:
        # Debounced: one database read after a burst of decisions, not one per key.
        if self._counts_timer is not None:
            self._counts_timer.stop()
        self._counts_timer = self.set_timer(0.4, self._load_counts)

    @work(thread=True, exclusive=True, group="screening-counts")
    def _load_counts(self) -> None:
        self._counts_timer = None
        table = decisions.table_s1(self.app.study)
        self.app.call_from_thread(self._show_counts, table)

    # -- writing -----------------------------------------------------------------------------------------
    def _submit(self, events: list[decisions.ReviewEvent]) -> None:
        """Journal first (survives a crash), then the database on the writer thread, in order."""
        for event in events:
            assert self._journal is not None
            self._journal.append(event)
        self._pending_writes += 1
        self._submitted += 1
        study = self.app.study

        def write() -> None:
            try:
                applied = decisions.apply_events(study, events)
            except BaseException as exc:  # noqa: BLE001 - shown to the user; the journal keeps the events
                self.post_message(WriteFailed(exc))
                return
            self.post_message(Written(applied))

        self._writer.submit(write)

    def on_written(self, message: Written) -> None:
        self._pending_writes -= 1
        for applied in message.applied:
            if applied.action == "undo" and not applied.skipped:
                self._apply_undo(applied)
            elif applied.action == "undo":
                self.notify("nothing to undo", timeout=2)
            elif applied.action == "flip":
                self._apply_flips(applied.flips)
                self.notify("orientation flipped (u undoes it)", timeout=2)
                self.refresh_view()
        self._refresh_counts()

    def on_write_failed(self, message: WriteFailed) -> None:
        self._pending_writes -= 1
        self._write_failed = True
        self.app.report_error(message.error)
        self.reload(keep=self.current.id if self.current else None)  # show what is really stored

    def _apply_undo(self, applied: decisions.Applied) -> None:
        by_id = {item.id: item for item in self.items}
        for image_id, row in applied.images.items():
            item = by_id.get(image_id)
            if item is not None:
                item.decision, item.reason, item.note = (row["decision"], row["reason"], row["note"]) if row \
                    else (None, None, None)
        self._apply_flips(applied.flips)
        touched = list(applied.images) + list(applied.flips)
        ids = [i.id for i in self.items]
        if touched and touched[0] in ids:
            self.pos = ids.index(touched[0])
        self.notify(f"undone: {len(touched)} image{'s' if len(touched) != 1 else ''}", timeout=2)
        self.refresh_view()

    def _apply_flips(self, flips: dict[str, dict[str, Any]]) -> None:
        for item in self.items:
            state = flips.get(item.id)
            if state is not None:
                item.path, item.sha256, item.flipped = state["path"], state["sha256"], state["flipped"]

    def _decide(self, item: decisions.QueueItem, decision: str, reason: str | None = None,
                note: str | None = None, batch: str | None = None) -> decisions.ReviewEvent:
        event = decisions.ReviewEvent(decision, self.app.reviewer, item.id, reason, note, batch)
        item.decision, item.reason, item.note = decision, event.reason, note
        return event

    def _advance(self) -> None:
        """To the next undecided image after this one (or simply the next)."""
        for k in range(self.pos + 1, len(self.items)):
            if self.items[k].decision is None:
                self.pos = k
                return
        self.pos = min(self.pos + 1, len(self.items) - 1)

    # -- actions -----------------------------------------------------------------------------------------
    def action_accept(self) -> None:
        self.rejecting = False
        if self.current is None:
            return
        if self.grid_mode:
            start = (self.pos // PAGE) * PAGE
            page = [i for i in self.items[start:start + PAGE] if i.decision is None]
            if page:
                batch = f"page-{uuid.uuid4().hex[:10]}"
                self._submit([self._decide(i, "accept", batch=batch) for i in page])
            self.pos = min(start + PAGE, len(self.items) - 1) if start + PAGE < len(self.items) else self.pos
        else:
            self._submit([self._decide(self.current, "accept")])
            self._advance()
        self.refresh_view()

    def action_reject(self) -> None:
        if self.current is None:
            return
        self.rejecting = not self.rejecting
        self.refresh_view()

    def action_reason(self, key: str) -> None:
        item = self.current
        if not self.rejecting or item is None:
            return
        self.rejecting = False
        reason = decisions.REASON_BY_KEY[key]
        if reason.code in decisions.NOTE_REQUIRED:
            def done(note: str | None) -> None:
                if note:
                    self._submit([self._decide(item, "reject", reason.code, note)])
                    self._after_reject()
                self.refresh_view()

            self.app.push_screen(NoteModal(item.id, reason.label), done)
            return
        self._submit([self._decide(item, "reject", reason.code)])
        self._after_reject()
        self.refresh_view()

    def _after_reject(self) -> None:
        if self.grid_mode:
            self.pos = min(self.pos + 1, len(self.items) - 1)
        else:
            self._advance()

    def action_undo(self) -> None:
        self.rejecting = False
        self._submit([decisions.ReviewEvent("undo", self.app.reviewer)])

    def action_prev(self) -> None:
        self.rejecting = False
        self.pos = max(0, self.pos - 1)
        self.refresh_view()

    def action_next(self) -> None:
        self.rejecting = False
        self.pos = min(len(self.items) - 1, self.pos + 1) if self.items else 0
        self.refresh_view()

    def action_move(self, delta: int) -> None:
        self.pos = max(0, min(len(self.items) - 1, self.pos + int(delta)))
        self.refresh_view()

    def action_open_cursor(self) -> None:
        self.grid_mode = False
        self.refresh_view()

    def action_grid(self) -> None:
        self.rejecting = False
        self.grid_mode = not self.grid_mode
        self.refresh_view()

    def action_zoom(self) -> None:
        self.zoom = (self.zoom + 1) % len(ZOOMS)
        if self.grid_mode:
            self.grid_mode = False
        self.refresh_view()

    def action_markers(self) -> None:  # show or hide the keypoints a conditional image was generated for
        self.markers = not self.markers
        self.refresh_view()

    def action_flip(self) -> None:
        # The mirrored file is written by the writer thread; the view follows when it lands (on_written).
        if self.current is not None:
            self._submit([decisions.ReviewEvent("flip", self.app.reviewer, self.current.id)])

    def action_back(self) -> None:
        if self.rejecting:
            self.rejecting = False
            self.refresh_view()
        elif self.grid_mode:
            self.grid_mode = False
            self.refresh_view()
        elif len(self.app.screen_stack) > 1:
            self.app.pop_screen()

    def action_jump(self) -> None:
        """To the first undecided image of the queue."""
        self.pos = decisions.resume_position(self.items)
        self.refresh_view()

    def _run_name(self) -> str | None:
        return next((r["name"] for r in self.choices.get("runs", []) if r["id"] == self.filters["run_id"]), None)

    def action_checkpoint(self) -> None:
        # Only checkpoints with images under the run filter: the queue never cycles into an empty one.
        run = next((r for r in self.choices.get("runs", []) if r["id"] == self.filters["run_id"]), None)
        steps = [None] + [s for s in self.choices.get("checkpoints", [])
                          if run is None or run["checkpoint_step"] == s]
        now = self.filters["checkpoint_step"]
        self.set_filter(checkpoint_step=steps[(steps.index(now) + 1) % len(steps)] if now in steps else None)

    def action_run(self) -> None:
        # Only runs with images under the checkpoint filter (choices["runs"] holds runs with images).
        step = self.filters["checkpoint_step"]
        runs = [None] + [r["id"] for r in self.choices.get("runs", []) if step is None or r["checkpoint_step"] == step]
        now = self.filters["run_id"]
        self.set_filter(run_id=runs[(runs.index(now) + 1) % len(runs)] if now in runs else None)

    def action_order(self) -> None:
        if not self.choices.get("prescreen") and self.filters["order"] == "index":
            self.notify("no pre-screen scores yet: run `cspine-tui prescreen --study ...` first", timeout=4)
            return
        self.set_filter(order="prescreen" if self.filters["order"] == "index" else "index")

    def set_filter(self, **changes: Any) -> None:
        self.filters.update(changes)
        self.notify(Text("queue: ").append_text(queue_text(self.filters, self._run_name())).plain, timeout=2)
        self.reload(keep=self.current.id if self.current else None)

    def action_summary(self) -> None:
        self.app.push_screen(ScreeningSummaryScreen())

    # -- command palette -----------------------------------------------------------------------------------
    def palette_commands(self) -> list[tuple[str, str, Callable[[], Any]]]:
        from functools import partial

        cmds: list[tuple[str, str, Callable[[], Any]]] = [
            ("Screening: filter off (every checkpoint and run)", "show every synthetic image",
             partial(self.set_filter, checkpoint_step=None, run_id=None)),
            ("Screening: next undecided image", "jump to the first image you have not decided", self.action_jump),
            ("Screening: summary, agreement and adjudication", "Table S1, Cohen's kappa, disagreements",
             self.action_summary),
            ("Screening: release the dataset", "write exports/release in a background job", self.start_release),
        ]
        for step in self.choices.get("checkpoints", []):
            cmds.append((f"Screening: filter to checkpoint {step}", "only this checkpoint's images",
                         partial(self.set_filter, checkpoint_step=step, run_id=None)))
        for run in self.choices.get("runs", []):
            cmds.append((f"Screening: filter to run {run['name']}", f"only this run's {run['n']} images",
                         partial(self.set_filter, run_id=run["id"], checkpoint_step=None)))
        if self.choices.get("prescreen"):
            cmds.append(("Screening: sort by pre-screen score", "likely implausible images first",
                         partial(self.set_filter, order="prescreen")))
            cmds.append(("Screening: sort by index", "generation order", partial(self.set_filter, order="index")))
        return cmds

    @work(thread=True, group="screening-release")
    def start_release(self) -> None:
        study = self.app.study
        params = {"out": str((study.exports_dir / "release").resolve())}
        job_id = launch.launch(study, "release", params, detach=True, argv=["tui", "release"]).job_id
        self.app.call_from_thread(self.notify, f"release job {job_id} started; it writes {params['out']}",
                                  timeout=6)
