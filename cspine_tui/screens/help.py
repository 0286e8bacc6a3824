"""The help screen: the keys of the app and of the screen underneath, and that screen's palette commands."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Markdown

from cspine_tui.palette import screen_commands, screen_label
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
        with VerticalScroll():
            yield Markdown("\n".join(self.lines()))

    def lines(self) -> list[str]:
        under = self.under
        lines = ["# cspine-tui help", "",
                 "`ctrl+p` opens the command palette: every screen, and every command and key of the screen in "
                 "front (type a word of what you want, e.g. `filter`, `accept`, `audit`).", "",
                 "`?` this help · `escape` back (to the dashboard) · `q` quit (running jobs keep running).", "",
                 "## Screens (keys on the dashboard)", ""]
        lines += [f"- `{e.key}` **{e.title}**: {e.description}" for e in SCREENS if e.name != "dashboard"]
        if under is None:
            return lines
        label = screen_label(under)
        keys: dict[str, list[Binding]] = {}  # one line per action, all its keys ("→ / j")
        for _, b in under._bindings:
            if b.description:
                keys.setdefault(b.action, []).append(b)
        if keys:
            lines += ["", f"## Keys on this screen ({label})", ""]
            for bindings in keys.values():
                shown = " / ".join(dict.fromkeys(self.app.get_key_display(b) for b in bindings))
                lines.append(f"- `{shown}` {bindings[0].description}")
        commands = [(t, h) for t, h, _ in screen_commands(self.app, under) if not h.startswith("key ")]
        if commands:
            lines += ["", "## Commands of this screen (ctrl+p, then type a word)", ""]
            lines += [f"- **{t}**" + (f": {h}" if h else "") for t, h in commands]
        doc = getattr(under, "HELP", "")
        if doc:
            lines += ["", doc]
        return lines

    def action_dismiss(self) -> None:
        self.dismiss(None)
