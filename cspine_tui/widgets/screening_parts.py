"""Pieces of the screening screen: the key map, the facts panel, reasons, Table S1, thumbnails, the note prompt,
and the messages its background threads post back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from core.screening import decisions
from core.errors import CspineError
from cspine_tui.widgets.halfcell import HalfcellView, crop_zoom, decode



@dataclass
class PreviewReady(Message):
    """A preview rendered on the prefetch thread is ready to paint."""
    key: tuple


@dataclass
class Written(Message):
    """The writer thread stored these decisions."""
    applied: list[decisions.Applied]


@dataclass
class WriteFailed(Message):
    """The writer thread could not store decisions (shown to the reviewer; the journal keeps them)."""
    error: BaseException


# action -> default key; study.toml [keys] overrides any of them (e.g. accept = "y").
DEFAULT_KEYS: dict[str, str] = {
    "accept": "a", "reject": "r", "undo": "u", "prev": "left", "next": "right", "grid": "g", "flip": "f",
    "zoom": "z", "jump": "j", "checkpoint": "c", "run": "w", "order": "o", "summary": "s", "back": "escape",
    "markers": "k",
}
# action -> (footer label, shown in the footer)
KEY_LABELS: dict[str, tuple[str, bool]] = {
    "accept": ("Accept", True), "reject": ("Reject", True), "undo": ("Undo", True), "prev": ("Prev", True),
    "next": ("Next", True), "grid": ("Grid", True), "flip": ("Flip", True), "zoom": ("Zoom", True),
    "jump": ("Next undecided", False), "checkpoint": ("Checkpoint filter", False), "run": ("Run filter", False),
    "order": ("Pre-screen order", False), "summary": ("Summary", True), "back": ("Back", True),
    "markers": ("Keypoint markers", False),
}
RESERVED = {str(d) for d in range(0, 10)} | {"up", "down", "enter", "ctrl+p", "question_mark", "q"}


def keymap(config: dict[str, Any] | None) -> dict[str, str]:
    """The screen's keys: defaults overridden by study.toml [keys]; conflicts are errors."""
    keys = dict(DEFAULT_KEYS)
    for name, key in (config or {}).items():
        if name not in DEFAULT_KEYS:
            raise CspineError(f"study.toml [keys]: unknown action {name!r}; known: {', '.join(DEFAULT_KEYS)}")
        if not isinstance(key, str) or not key.strip():
            raise CspineError(f"study.toml [keys]: {name} needs a key name such as \"a\" or \"space\"")
        if key in RESERVED:
            raise CspineError(f"study.toml [keys]: {key!r} is reserved (reasons 1-9, grid moves, app keys); "
                              f"choose another key for {name}")
        keys[name] = key.strip()
    seen: dict[str, str] = {}
    for name, key in keys.items():
        for k in key.split(","):
            if k in seen:
                raise CspineError(f"study.toml [keys]: {k!r} is bound to both {seen[k]} and {name}; "
                                  "keys are back to the defaults")
            seen[k] = name
    return keys


def _decision_text(decision: str | None, reason: str | None, note: str | None = None) -> Text:
    if decision == "accept":
        return Text("✓ accepted", style="bold green")
    if decision == "reject":
        label = decisions.REASON_BY_CODE[reason].label if reason in decisions.REASON_BY_CODE else (reason or "")
        return Text(f"✗ rejected: {label}" + (f" ({note})" if note else ""), style="bold red")
    return Text("— not decided", style="dim")


FACTS_HEIGHT = 14


def queue_text(filters: dict[str, Any], run_name: str | None) -> Text:
    """The queue's filters in full (a run name is never cut: `s10` and `s100` must stay apart)."""
    ckpt = filters.get("checkpoint_step")
    return Text(f"{'all ckpts' if ckpt is None else f'ckpt {ckpt}'} · "
                f"{'all runs' if filters.get('run_id') is None else run_name or filters['run_id']} · "
                f"{filters.get('order', 'index')}", style="dim")


def facts_text(item: decisions.QueueItem, pos: int, items: list[decisions.QueueItem], filters: dict[str, Any],
               zoom: str, reviewer: str, run_name: str | None = None) -> Text:
    """The image's facts as plain lines (cheap to draw: a Rich Table costs milliseconds per key). Only this
    reviewer's decision: reviewers screen blind to each other (the paper's two screeners did)."""
    decided = sum(1 for i in items if i.decision is not None)
    text = Text()

    def row(label: str, value: str | Text, style: str = "bold") -> None:
        text.append(f"{label[:10]:<11}", style=style)
        text.append(value if isinstance(value, Text) else Text(str(value)))
        text.append("\n")

    row("image", Text(f"{pos + 1}/{len(items)}  ·  {len(items) - decided} left", style="bold"))
    row("id", item.id)
    row("run", f"{item.run_name} ({item.run_source})")
    sampler = " · ".join(str(x) for x in (item.sampler, f"{item.steps} steps" if item.steps else None, item.weights)
                         if x)
    row("checkpoint", item.checkpoint_label + (f"  ·  {sampler}" if sampler else ""))
    row("seed", "-" if item.seed is None else str(item.seed))
    row("flipped", "yes (mirrored)" if item.flipped else "no")
    if item.prescreen is not None:
        row("pre-screen", f"{item.prescreen:.2f}")
    if item.condition:
        row("condition", Text(condition_text(item.condition), style="bold magenta"))
    row(reviewer, _decision_text(item.decision, item.reason, item.note))
    row("view", zoom)
    row("queue", queue_text(filters, run_name))
    text.rstrip()
    return text


def condition_text(condition: dict[str, Any]) -> str:
    """A conditional image's condition in one line: its attributes and its keypoints (x, y in its pixels)."""
    parts = [f"{k}={v}" for k, v in (condition.get("attributes") or {}).items()]
    points = condition.get("keypoints") or {}
    if points:
        parts.append(f"{len(points)} keypoints")
    return "  ·  ".join(parts) or "unconditional"


def draw_markers(img: Any, condition: dict[str, Any] | None) -> Any:
    """A copy of a decoded preview with a small cross on each keypoint of the image's condition (white on a
    black outline, so it shows on bone and on background); the image itself when there are none."""
    from PIL import ImageDraw  # imported on use: only conditional images with markers on need it

    points = (condition or {}).get("keypoints") or {}
    if not points:
        return img
    out = img.copy()
    draw = ImageDraw.Draw(out)
    arm = max(1, round(out.size[0] / 48))
    white, black = (255, 255, 255)[:len(out.getbands())], (0, 0, 0)[:len(out.getbands())]
    for x, y in points.values():
        cx, cy = int(x), int(y)  # the pixel the point lies in (pixel i spans [i, i+1))
        for colour, width in ((black, 3), (white, 1)):
            draw.line([(cx - arm, cy), (cx + arm, cy)], fill=colour if len(colour) > 1 else colour[0], width=width)
            draw.line([(cx, cy - arm), (cx, cy + arm)], fill=colour if len(colour) > 1 else colour[0], width=width)
    return out


def decoded_preview(path: Any, condition: dict[str, Any] | None, zoom: int, marked: bool) -> Any:
    """A queue item's preview image: decoded, with its keypoint markers when `marked`, cropped to the zoom."""
    img = decode(path)
    return crop_zoom(draw_markers(img, condition) if marked else img, zoom)


def reasons_text() -> Text:
    text = Text("Reject: press the reason\n", style="bold red")
    for r in decisions.REASONS:
        text.append(f" {r.key} ", style="reverse").append(f" {r.label}\n")
    text.append("escape: cancel", style="dim")
    return text


def table_s1_renderable(table: dict[str, Any], items: list[decisions.QueueItem], reviewer: str) -> Any:
    mine = [i for i in items if i.decision is not None]
    rejected = sum(1 for i in mine if i.decision == "reject")
    head = Text(f"{reviewer}: {len(mine)} decided in this queue, {len(mine) - rejected} accepted, "
                f"{rejected} rejected\n", style="bold")
    t = Table("run", "ckpt", "gen", "final", title=f"Table S1 (rule {table['rule']})", title_justify="left",
              expand=True, pad_edge=False, padding=(0, 1), show_edge=False)
    t.columns[0].overflow = "fold"  # a long run name wraps; cut, s100 would read as s10
    for r in table["rows"]:
        t.add_row(str(r["run"]), "" if r["checkpoint"] is None else str(r["checkpoint"]), str(r["generated"]),
                  str(r["accepted"]))
    tot = table["total"]
    t.add_row(Text("Total", style="bold"), "", str(tot["generated"]), str(tot["accepted"]))
    from rich.console import Group

    foot = Text(f"pending {tot['pending']} · unreviewed {tot['unreviewed']}", style="dim")
    return Group(head, t, foot)


class Thumb(Vertical):
    """One cell of the 3x3 grid: a half-cell thumbnail and a one-line label."""

    DEFAULT_CSS = """
    Thumb { border: round $panel-lighten-2; height: 1fr; width: 1fr; }
    Thumb.-cursor { border: heavy $accent; }
    Thumb.-accept { border: round $success; }
    Thumb.-reject { border: round $error; }
    Thumb.-cursor.-accept { border: heavy $success; }
    Thumb.-cursor.-reject { border: heavy $error; }
    Thumb > HalfcellView { height: 1fr; width: 1fr; }
    Thumb > Label { height: 1; width: 1fr; }
    """

    def __init__(self, index: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.index = index
        self.view = HalfcellView()
        self.item: decisions.QueueItem | None = None

    def compose(self) -> ComposeResult:
        yield self.view
        yield Label("")

    def set_item(self, item: decisions.QueueItem | None, *, cursor: bool) -> None:
        self.item = item
        self.set_class(cursor, "-cursor")
        self.set_class(item is not None and item.decision == "accept", "-accept")
        self.set_class(item is not None and item.decision == "reject", "-reject")
        label = self.query_one(Label)
        if item is None:
            label.update("")
            self.view.clear()
            self.view.wanted = None  # type: ignore[attr-defined]
            return
        mark = {"accept": "✓", "reject": "✗ " + (item.reason or "")}.get(item.decision or "", "·")
        label.update(f"{item.idx} {mark}"[:40])


class NoteModal(ModalScreen[str | None]):
    """Asks for the note a rejection for 'other' needs; escape cancels the rejection."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    NoteModal { align: center middle; }
    NoteModal > Vertical { width: 70; height: auto; border: thick $error; background: $panel; padding: 1 2; }
    """

    def __init__(self, image_id: str, label: str) -> None:
        super().__init__()
        self.image_id, self.label = image_id, label

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"Reject {self.image_id}: {self.label}. What is wrong? (enter saves, escape cancels)")
            yield Input(placeholder="e.g. two skulls, spine cut off at C4", id="note")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        note = event.value.strip()
        if note:
            self.dismiss(note)
        else:
            self.notify("a note is needed for 'other'; escape cancels", timeout=3)

    def action_cancel(self) -> None:
        self.dismiss(None)
