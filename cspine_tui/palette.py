"""The command palette: every screen, and the commands and keys of the screen it was opened from.

A screen offers commands by defining ``palette_commands(self) -> list[tuple[str, str, Callable[[], Any]]]``
(title, help, callback); every key binding with a description is offered too, so the palette finds anything a
screen can do by a word of what it does. The help screen lists the same commands.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

from textual.actions import parse as parse_action
from textual.app import App
from textual.binding import Binding
from textual.command import Hit, Hits, Provider

from cspine_tui.registry import SCREENS


def screen_label(screen: Any) -> str:
    """The name a screen's commands are prefixed with ("Screening", "Audit", ...)."""
    return getattr(screen, "PALETTE_NAME", "") or type(screen).__name__.removesuffix("Screen") or "Screen"


def screen_commands(app: App, screen: Any) -> list[tuple[str, str, Callable[[], Any]]]:
    """The commands of one screen: its own palette commands, then one per key binding it has (with the key in
    the help), so everything a screen can do is found by a word of what it does."""
    own = getattr(screen, "palette_commands", None)
    commands = list(own()) if callable(own) else []
    seen = {title.lower().split(": ", 1)[-1] for title, _, _ in commands}
    label = screen_label(screen)
    keys: dict[str, list[Binding]] = {}  # action -> its bindings ("right,j" arrives as two)
    for _, binding in screen._bindings:
        if binding.description and not binding.action.startswith("app."):
            keys.setdefault(binding.action, []).append(binding)
    for action, bindings in keys.items():
        name, params = parse_action(action)[1:]
        if screen.check_action(name, params) is False:  # e.g. reject reasons only while rejecting
            continue
        what = bindings[0].description[:1].upper() + bindings[0].description[1:]
        if what.lower() in seen:
            continue
        seen.add(what.lower())
        shown = " / ".join(dict.fromkeys(app.get_key_display(b) for b in bindings))
        commands.append((f"{label}: {what}", f"key {shown}", partial(screen.run_action, action)))
    return commands


class CspineCommands(Provider):
    """Command palette: open any screen, plus the commands of the screen the palette was opened from
    (`self.screen`; `app.screen` is the palette itself while it is open)."""

    def _commands(self) -> list[tuple[str, str, Callable[[], Any]]]:
        app = self.app
        commands = [(f"Open {e.title}", e.description, partial(app.open_screen, e.name)) for e in SCREENS]
        commands.append(("Help", "keys and commands", app.action_help))
        return screen_commands(app, self.screen) + commands

    async def discover(self) -> Hits:
        for title, help_text, callback in self._commands():
            yield Hit(1.0, title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, callback in self._commands():
            # The help counts too ("filter" finds "checkpoint 50 only", "filter the queue"), a little lower.
            score = max(matcher.match(title), 0.8 * matcher.match(help_text))
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text)
