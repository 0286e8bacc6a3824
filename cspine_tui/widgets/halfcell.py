"""Fast half-cell image previews: pre-rendered strips, a render cache and a prefetching thread.

A half-cell preview shows two pixels per terminal cell (``▀`` with a foreground and a background colour).
textual-image's HalfcellImage builds its segments in the render path, on the UI thread, at every paint
(25-39 ms for a 64-cell wide image, docs/reference/tui.md section 2). Here the segments are built once, off the
UI thread, for the widget's exact size, with one shared Style object per colour pair (so Rich's per-style
ANSI cache is hit across images) and runs of equal cells merged into one segment. Showing an image that
was prefetched is then a dictionary lookup and a repaint.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Hashable

import numpy as np
from PIL import Image as PILImage
from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.strip import Strip
from textual.widget import Widget

_STYLES: dict[int, Style] = {}
_BLANK = Style(bgcolor=Color.from_rgb(0, 0, 0))

# Zoom views: the whole image, then its upper and lower halves at twice the size.
ZOOMS = ("whole", "upper half", "lower half")


def _style(key: int) -> Style:
    """The shared Style for a packed colour pair (upper RGB << 24 | lower RGB)."""
    style = _STYLES.get(key)
    if style is None:
        top, bottom = key >> 24, key & 0xFFFFFF
        style = _STYLES[key] = Style(color=Color.from_rgb(top >> 16, (top >> 8) & 255, top & 255),
                                     bgcolor=Color.from_rgb(bottom >> 16, (bottom >> 8) & 255, bottom & 255))
    return style


def crop_zoom(img: PILImage.Image, zoom: int) -> PILImage.Image:
    if zoom == 1:
        return img.crop((0, 0, img.width, img.height // 2))
    if zoom == 2:
        return img.crop((0, img.height // 2, img.width, img.height))
    return img


def render_strips(img: PILImage.Image, width: int, height: int) -> list[Strip]:
    """The image fitted (aspect kept, centred) into width x height cells as half-cell strips."""
    width, height = max(1, int(width)), max(1, int(height))
    scale = min(width / img.width, 2 * height / img.height)
    tw = max(1, min(width, round(img.width * scale)))
    th = max(2, min(2 * height, round(img.height * scale)))
    th -= th % 2
    mode = "L" if img.mode in ("L", "I", "I;16", "F", "LA", "1") else "RGB"
    small = img.convert(mode).resize((tw, th), PILImage.Resampling.BILINEAR, reducing_gap=2.0)
    px = np.asarray(small).astype(np.int64)
    packed = px * 0x010101 if mode == "L" else (px[:, :, 0] << 16) | (px[:, :, 1] << 8) | px[:, :, 2]
    keys = (packed[0::2] << 24) | packed[1::2]          # one key per cell: (upper, lower) pixel pair
    rows = th // 2
    left = (width - tw) // 2
    right = width - tw - left
    top_pad = (height - rows) // 2
    blank_line = Strip([Segment(" " * width, _BLANK)], width)
    strips: list[Strip] = [blank_line] * top_pad
    # Runs of equal cells become one segment: found with numpy, so Python loops over runs only.
    change = np.ones(keys.shape, dtype=bool)
    change[:, 1:] = keys[:, 1:] != keys[:, :-1]
    for r in range(rows):
        starts = np.flatnonzero(change[r]).tolist()
        row_keys = keys[r, starts].tolist()
        ends = starts[1:] + [tw]
        segments: list[Segment] = [Segment(" " * left, _BLANK)] if left else []
        segments += [Segment("▀" * (e - b), _style(k)) for b, e, k in zip(starts, ends, row_keys)]
        if right:
            segments.append(Segment(" " * right, _BLANK))
        strips.append(Strip(segments, width))
    strips.extend([blank_line] * (height - len(strips)))
    return strips


class RenderCache:
    """Rendered previews by key, least recently used dropped; renders run on one background thread."""

    def __init__(self, capacity: int = 96, workers: int = 1) -> None:
        self.capacity = capacity
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._pending: dict[Hashable, Future] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="preview")

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def _put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def prefetch(self, key: Hashable, make: Callable[[], Any]) -> Future | None:
        """Render in the background unless cached or already under way."""
        with self._lock:
            if key in self._items:
                return None
            fut = self._pending.get(key)
            if fut is not None:
                return fut

            def job() -> Any:
                try:
                    value = make()
                    self._put(key, value)
                    return value
                finally:
                    with self._lock:
                        self._pending.pop(key, None)

            try:
                fut = self._pool.submit(job)
            except RuntimeError:  # shut down: the screen is gone
                return None
            self._pending[key] = fut
            return fut

    def get_or_render(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """The cached value; else wait for a render under way; else render here."""
        value = self.get(key)
        if value is not None:
            return value
        with self._lock:
            fut = self._pending.get(key)
        if fut is not None:
            try:
                return fut.result(timeout=5)
            except Exception:  # noqa: BLE001 - render again here, so the real error surfaces
                pass
        value = make()
        self._put(key, value)
        return value

    def forget(self, predicate: Callable[[Hashable], bool]) -> None:
        with self._lock:
            for key in [k for k in self._items if predicate(k)]:
                del self._items[key]

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def decode(path: Path | str) -> PILImage.Image:
    """Decode a file for preview (grayscale kept); safe in a worker thread."""
    with PILImage.open(path) as img:
        img.load()
        return img.copy() if img.mode in ("L", "RGB") else img.convert("L" if img.mode != "RGBA" else "RGB")


class TextPanel(Widget):
    """A fixed-size text panel whose updates repaint it without a layout pass (a Static reflows the screen)."""

    DEFAULT_CSS = "TextPanel { width: 1fr; height: 1; }"

    def __init__(self, content: Any = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._content = content

    def set(self, content: Any) -> None:
        self._content = content
        self.refresh()

    @property
    def content(self) -> Any:
        return self._content

    def render(self) -> Any:
        return self._content


class HalfcellView(Widget):
    """Shows pre-rendered half-cell strips; renders itself (on the UI thread) only when it has none."""

    DEFAULT_CSS = "HalfcellView { width: 1fr; height: 1fr; }"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._strips: list[Strip] | None = None
        self._image: PILImage.Image | None = None
        self.key: Hashable | None = None

    def show_strips(self, strips: list[Strip], key: Hashable = None, image: PILImage.Image | None = None) -> None:
        """Pre-rendered strips (and the image, to re-render after a resize)."""
        self._strips, self._image, self.key = strips, image, key
        self.refresh()

    def show_image(self, image: PILImage.Image | None, key: Hashable = None) -> None:
        """An image to render at the widget's size when painted (fallback when nothing was prefetched)."""
        self._image, self._strips, self.key = image, None, key
        self.refresh()

    def clear(self) -> None:
        self.show_image(None)

    def render_line(self, y: int) -> Strip:
        width, height = self.size
        if self._strips is None or len(self._strips) != height or \
                (self._strips and self._strips[0].cell_length != width):
            if self._image is None:
                return Strip.blank(width, self.rich_style)
            self._strips = render_strips(self._image, width, height)
        return self._strips[y] if y < len(self._strips) else Strip.blank(width, self.rich_style)

    def get_line_filters(self) -> list:
        # The strips hold only 24-bit colours, for which ANSIToTruecolor is a no-op; skipping it saves
        # ~10 ms per new image (its 1024-entry style cache thrashes on thousands of grey pairs).
        from textual.filter import ANSIToTruecolor

        return [f for f in self.app.get_line_filters() if not isinstance(f, ANSIToTruecolor)]

    def get_content_width(self, container: Size, viewport: Size) -> int:
        return container.width

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return container.height
