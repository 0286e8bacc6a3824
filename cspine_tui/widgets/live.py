"""Pieces shared by the screens that follow running jobs: a table refreshed in place from polled rows, a screen
that re-reads the run folders every second in a thread, and the colour of a job state."""

from __future__ import annotations

import threading
from typing import Any, Callable

from rich.text import Text
from textual import work
from textual.screen import Screen
from textual.widgets import DataTable

STATE_STYLE = {"running": "bold green", "paused": "yellow", "succeeded": "cyan", "failed": "bold red",
               "died": "bold red", "cancelled": "dim", "queued": "blue"}


def state_text(state: str) -> Text:
    return Text(state, style=STATE_STYLE.get(state, ""))


class LiveTable(DataTable):
    """A row-cursor table fed with the same rows every poll. When the same keys come back only the cells are
    updated, so the cursor stays where the user left it; other keys rebuild it, and the highlight events the
    rebuild fires are not taken for the user choosing a row (see `chosen_key`)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self._keys: list[str] = []
        self._rebuilding = False

    def show_rows(self, rows: list[tuple[str, list[Any]]], selected: str | None) -> None:
        keys = [key for key, _ in rows]
        if keys == self._keys:
            columns = list(self.columns)
            for key, cells in rows:
                for column, value in zip(columns, cells):
                    self.update_cell(key, column, value)
            return
        self._rebuilding = True
        self.clear()
        for key, cells in rows:
            self.add_row(*cells, key=key)
        if keys:
            self.move_cursor(row=keys.index(selected) if selected in keys else 0)
        self._keys = keys
        self.call_after_refresh(self._rebuilt)

    def _rebuilt(self) -> None:
        self._rebuilding = False

    def chosen_key(self, event: DataTable.RowHighlighted) -> str | None:
        """The key of the row the user moved to, or None for a highlight that a rebuild caused."""
        if self._rebuilding or event.row_key is None:
            return None
        return event.row_key.value


class PolledScreen(Screen):
    """A screen that shows the run folders: `poll` reads them in a thread every second (call `start_polling`
    from on_mount); a poll still running (a slow disk) is not stacked upon. `control_job` pauses, cancels or
    resumes a job off the UI thread and reports the outcome."""

    def __init__(self) -> None:
        super().__init__()
        self._poll_lock = threading.Lock()

    def start_polling(self) -> None:
        self.poll_now()
        self.set_interval(1.0, self.poll_now)

    def poll_now(self) -> None:
        if self._poll_lock.acquire(blocking=False):
            self._poll_worker()

    @work(thread=True, group="poll")
    def _poll_worker(self) -> None:
        try:
            self.poll()
        finally:
            self._poll_lock.release()

    def poll(self) -> None:
        """Read the files (in a worker thread) and hand the result to the UI with `show_from_thread`."""
        raise NotImplementedError

    def show_from_thread(self, show: Callable[..., None], *args: Any) -> None:
        """Run `show(*args)` on the UI thread unless the screen is gone by then (a poll can finish after the
        user closed the screen or quit the app)."""
        def apply() -> None:
            if self.app.is_running and self.is_attached:  # the app stops running before it tears screens down
                show(*args)

        self.app.call_from_thread(apply)

    @work(thread=True, group="job-control")
    def control_job(self, what: str, job_id: str) -> None:
        from core.jobs import control  # imported on use: loads duckdb (start-up cost)
        message = control.control(self.app.study, job_id, what)
        self.app.call_from_thread(self.app.notify, message)
        self.app.call_from_thread(self.poll_now)
