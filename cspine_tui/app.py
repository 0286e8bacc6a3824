"""The Textual app: a dashboard of the study and one screen per step of the study.

Registering a screen (each area does this once): add a ScreenEntry to SCREENS in cspine_tui/registry.py. The
screen class lives in cspine_tui/screens/<area>.py and is imported only when first opened. A screen can offer
commands to the command palette by defining ``palette_commands(self) -> list[tuple[str, str, Callable[[], Any]]]``
(title, help, callback); they are listed while that screen is active.

Conventions for screens: `self.app.study` (core.study.Study), `self.app.reviewer` (who decides),
`self.app.image_protocol` (for cspine_tui.widgets.preview.ImagePreview); database work in thread workers
(`@work(thread=True, exclusive=True, group=...)`) that hand results back with `self.app.call_from_thread`
or by posting a Message; user-caused errors (core.errors.CspineError) go to `self.app.report_error(exc)`,
which shows them in one line and keeps the app running.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

from textual.app import App
from textual.binding import Binding
from textual.worker import Worker, WorkerState

from core.errors import CspineError
from core.study import Study
from cspine_tui.palette import CspineCommands
from cspine_tui.registry import SCREENS
from cspine_tui.screens.help import HelpScreen


class CspineApp(App):
    TITLE = "cspine-tui"
    CSS_PATH = "app.tcss"
    COMMANDS = App.COMMANDS | {CspineCommands}
    BINDINGS = [
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, study: Study, *, reviewer: str, image_protocol: str = "auto") -> None:
        super().__init__()
        self.study = study
        self.reviewer = reviewer
        self.image_protocol = image_protocol
        self.sub_title = f"{study.root}  ·  reviewer {reviewer}"
        for entry in SCREENS:
            self.install_screen(partial(entry.load), entry.name)  # built when first opened

    def on_mount(self) -> None:
        self.push_screen("dashboard")

    def open_screen(self, name: str) -> None:
        """Bring a registered screen to the front: back to it if it is open, else open it over the current."""
        target = self.get_screen(name)
        if target in self.screen_stack:
            while self.screen is not target:
                self.pop_screen()
        else:
            self.push_screen(target)

    def action_open_screen(self, name: str) -> None:
        """The action behind the dashboard's screen keys ("app.open_screen('name')")."""
        self.open_screen(name)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def report_error(self, exc: BaseException) -> None:
        """Show an error in one line and keep running; unexpected errors also go to the log."""
        if isinstance(exc, CspineError):
            message = str(exc)
        else:
            message = f"{type(exc).__name__}: {exc}"
            self.log.error(message)
        self.notify(message.splitlines()[0] if message else type(exc).__name__, title="error",
                    severity="error", timeout=10)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            self.report_error(event.worker.error)

    def _handle_exception(self, error: Exception) -> None:
        # A user-caused error raised in a handler is shown, not fatal.
        if isinstance(error, CspineError):
            self.report_error(error)
            return
        super()._handle_exception(error)


def configure_terminal() -> None:
    """Use 24-bit colour where the terminal has it (SSH does not forward COLORTERM; tmux hides it)."""
    truecolor_terms = ("xterm-kitty", "wezterm", "alacritty", "xterm-ghostty", "foot", "xterm-direct")
    if os.environ.get("COLORTERM", "").lower() in ("truecolor", "24bit") or \
            os.environ.get("TERM", "") in truecolor_terms or os.environ.get("CSPINE_TRUECOLOR") == "1":
        os.environ.setdefault("TEXTUAL_COLOR_SYSTEM", "truecolor")


def run_app(study_path: Path | str, *, reviewer: str, image_protocol: str = "auto") -> int:
    configure_terminal()
    if image_protocol not in ("off", "halfcell"):  # half-cell previews need no probe (widgets/halfcell.py)
        import cspine_tui.widgets.preview  # noqa: F401  (textual-image probes the terminal at import)
        import textual_image.widget  # noqa: F401
    study = Study.open_or_create(study_path)
    CspineApp(study, reviewer=reviewer, image_protocol=image_protocol).run()
    return 0
