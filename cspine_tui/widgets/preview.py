"""Image previews in the terminal through textual-image: Kitty graphics, Sixel, half-cell blocks or shades.

textual-image probes the terminal when `textual_image.widget` is imported, which must happen before the App
starts (docs/reference/tui.md section 2): `run_app` imports this module first. `--image-protocol` picks the
widget class; `auto` keeps textual-image's own choice (Unicode shades when stdout is not a terminal).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image as PILImage
from textual.app import ComposeResult
from textual.containers import Container
from textual.widgets import Static

PROTOCOLS = ("auto", "kitty", "sixel", "halfcell", "unicode", "off")


def image_widget_class(protocol: str) -> type | None:
    """The textual-image widget class for a protocol name (None for 'off')."""
    if protocol == "off":
        return None
    from textual_image import widget as ti

    return {"auto": ti.Image, "kitty": ti.TGPImage, "sixel": ti.SixelImage, "halfcell": ti.HalfcellImage,
            "unicode": ti.UnicodeImage}[protocol]


def resolved_protocol(protocol: str) -> str:
    """The protocol 'auto' stands for in this terminal (textual-image decided at import), else itself."""
    if protocol != "auto":
        return protocol
    from textual_image.renderable import Image as Auto, halfcell, sixel, tgp, unicode

    return {halfcell.Image: "halfcell", sixel.Image: "sixel", tgp.Image: "kitty",
            unicode.Image: "unicode"}.get(Auto, "auto")


def load_preview(source: Path | str | PILImage.Image, max_side: int = 512) -> PILImage.Image:
    """Decode an image for display (grayscale kept, size bounded); safe to call from a worker thread."""
    img = source if isinstance(source, PILImage.Image) else PILImage.open(source)
    img.load()
    if img.mode not in ("L", "RGB"):
        img = img.convert("L" if img.mode in ("I", "I;16", "F", "LA", "P") else "RGB")
    if max(img.size) > max_side:
        img = img.copy()
        img.thumbnail((max_side, max_side), PILImage.Resampling.LANCZOS)
    return img


# Marker colours by the point's kind (the part after the level: C3_body, C3_spinous), saturated so they stay
# visible when a half-cell preview shrinks the image 4x.
MARKER_COLOURS = {"body": (0, 220, 255), "spinous": (255, 150, 0)}
OTHER_MARKER = (255, 240, 0)


def draw_keypoints(img: PILImage.Image, points: dict[str, tuple[float, float]], size: int) -> PILImage.Image:
    """A colour copy of a canonical image with a dot at each keypoint (canonical coordinates of a size x size
    image, pixel i spanning [i, i+1)); dots about 1/64 of the image across."""
    from PIL import ImageDraw  # imported on use: only the dataset screen draws markers

    out = img.convert("RGB")
    scale = out.width / size
    r = max(1.5, out.width / 128)
    draw = ImageDraw.Draw(out)
    for name, (x, y) in points.items():
        colour = MARKER_COLOURS.get(name.rpartition("_")[2], OTHER_MARKER)
        cx, cy = x * scale, y * scale  # PIL's ellipse box is in the same corner-origin coordinates
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    return out


class ImagePreview(Container):
    """A fixed-size box showing one image (or a caption when there is none / previews are off)."""

    DEFAULT_CSS = """
    ImagePreview { width: 1fr; height: 1fr; align: center middle; }
    ImagePreview > .preview-image { width: auto; height: 1fr; }
    ImagePreview > .preview-caption { width: 1fr; height: 1fr; content-align: center middle; color: $text-muted; }
    """

    def __init__(self, protocol: str = "auto", *, caption: str = "no image", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.protocol = protocol
        self._caption = caption
        self._image: PILImage.Image | None = None

    def compose(self) -> ComposeResult:
        yield Static(self._caption, classes="preview-caption")

    @property
    def image(self) -> PILImage.Image | None:
        return self._image

    def show(self, source: Path | str | PILImage.Image | None, caption: str | None = None) -> None:
        """Show an image (a path or a decoded PIL image; decode in a worker for speed) or clear the box."""
        self._image = None if source is None else load_preview(source)
        if caption is not None:
            self._caption = caption
        if self._image is not None and resolved_protocol(self.protocol) == "halfcell":
            # Fast path: one view kept mounted, strips rendered once per image and size (widgets/halfcell.py).
            from cspine_tui.widgets.halfcell import HalfcellView

            views = self.query(HalfcellView)
            if not views:
                self.remove_children()
                self.mount(HalfcellView(classes="preview-image"))
                views = self.query(HalfcellView)
            views.first().show_image(self._image)
            return
        cls = image_widget_class(self.protocol)
        self.remove_children()
        if self._image is None or cls is None:
            text = self._caption if self._image is None else f"{self._caption}\n(previews off)"
            self.mount(Static(text, classes="preview-caption"))
            return
        # Kitty/Sixel widgets do not redraw when their image changes (textual-image #43): a new widget does.
        self.mount(cls(self._image, classes="preview-image"))
