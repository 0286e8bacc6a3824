"""What a Textual app shows, as text, for Pilot assertions."""

from __future__ import annotations


def screen_text(app) -> str:
    """The plain text of what the app's current screen shows, line by line (for Pilot assertions)."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())
