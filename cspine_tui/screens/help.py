"""The help screen: the keys of the app and of the screen underneath, and where to find commands."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Markdown

from cspine_tui.registry import SCREENS


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 90%; max-width: 100; height: 90%; border: thick $primary; background: $panel; }
    """

    def __init__(self, under: Screen | None = None) -> None:
        super().__init__()
        self.under = under

    def compose(self) -> ComposeResult:
        under = self.under
        lines = ["# cspine-tui help", "",
                 "`ctrl+p` opens the command palette: every screen and every command of the screen in front.",
                 "`?` this help · `escape` back · `q` quit (running jobs keep running).", "",
                 "## Screens (keys on the dashboard)", ""]
        lines += [f"- `{e.key}` **{e.title}**: {e.description}" for e in SCREENS]
        if under is not None:
            keys = [b for b in getattr(under, "BINDINGS", []) if isinstance(b, Binding) and b.description]
            if keys:
                lines += ["", f"## Keys on this screen ({under.__class__.__name__.removesuffix('Screen')})", ""]
                lines += [f"- `{b.key}` {b.description}" for b in keys]
            doc = getattr(under, "HELP", "")
            if doc:
                lines += ["", doc]
        with VerticalScroll():
            yield Markdown("\n".join(lines))

    def action_dismiss(self) -> None:
        self.dismiss(None)
