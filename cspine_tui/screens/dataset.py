"""The dataset screen: the real set after ingest.

Counts by split, polarity and orientation; the labels (attribute values and keypoint counts, imported with
`cspine-tui labels`); the files an ingest skipped, with reasons; a browser of the canonical images (with their
keypoints drawn on, k toggles them) with the original beside it (as stored: a negative stays negative, a
right-facing film stays right-facing); keys to override one image's polarity or orientation; a filter for
flagged images.
All database and decoding work runs in thread workers; the keys never wait.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from core.realset import catalog, labels
from cspine_tui.widgets.preview import ImagePreview, draw_keypoints, load_preview
from core.realset.canonical import resize_decoded
from core.realset.readers import SkipFile, decode_bytes


def _conf(value: float | None, source: str | None) -> str:
    if source == "override":
        return "set"
    if source == "dicom-tag":
        return "tag"
    return "" if value is None else f"{value:.2f}"


def load_original(path: Path, max_side: int = 512):
    """The source file as stored, for display: 16-bit and DICOM scaled to 8 bits; None if unreadable."""
    from PIL import Image

    try:
        dec = decode_bytes(path.read_bytes(), path.suffix, reduce_to=max_side)
    except (OSError, SkipFile):
        return None
    scale = min(1.0, max_side / max(dec.width, dec.height))
    small = resize_decoded(dec, max(1, round(dec.width * scale)), max(1, round(dec.height * scale)))
    if dec.inverted_by_tag:
        small = 1.0 - small  # as stored, not as canonicalised
    return load_preview(Image.fromarray((small * 255.0 + 0.5).clip(0, 255).astype("uint8")))


class DatasetScreen(Screen):
    HELP = ("The real set: counts by split, polarity (inverted = was a negative) and orientation (flipped = "
            "faced right), then the images, flagged (low-confidence) first. i: this image was / was not a "
            "negative (re-writes its canonical PNG); o: it did / did not face right; f: only flagged images; "
            "s: the skipped files and why; k: keypoints on/off (body centres cyan, spinous tips orange); "
            "r: reload. Left: the canonical image; right: the original as stored. The labels table counts the "
            "imported attributes (`cspine-tui labels --import FILE`).")
    BINDINGS = [
        Binding("i", "toggle_polarity", "invert"),
        Binding("o", "toggle_orientation", "flip"),
        Binding("f", "filter_flagged", "flagged only"),
        Binding("s", "toggle_skipped", "skipped files"),
        Binding("k", "toggle_keypoints", "keypoints"),
        Binding("r", "reload", "reload"),
        Binding("escape", "back", "Back"),
    ]
    DEFAULT_CSS = """
    DatasetScreen #left { width: 3fr; max-width: 62; min-width: 44; height: 1fr; }
    DatasetScreen #summary { height: auto; }
    DatasetScreen #labels { height: auto; max-height: 12; }
    DatasetScreen #images-table, DatasetScreen #skipped-table { height: 1fr; }
    DatasetScreen #skipped-table { display: none; }
    DatasetScreen.-skipped #skipped-table { display: block; }
    DatasetScreen.-skipped #images-table { display: none; }
    DatasetScreen #previews { width: 2fr; height: 1fr; }
    DatasetScreen #previews > Vertical { width: 1fr; height: 1fr; }
    DatasetScreen #previews ImagePreview { width: 1fr; height: 1fr; }
    DatasetScreen #previews .caption { height: 1; width: 1fr; content-align: center middle; color: $text-muted; }
    DatasetScreen.-narrow #previews { layout: vertical; }  /* side by side they would be slivers */
    """

    def __init__(self) -> None:
        super().__init__()
        self.summary: dict[str, Any] = {}
        self.rows: list[dict[str, Any]] = []
        self.flagged_only = False
        self.showing_skipped = False
        self.show_keypoints = True
        self.labels: dict[str, Any] = {}
        self.current_labels: dict[str, Any] = {}
        self._caption = ""
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            with Vertical(id="left"):
                yield Static("loading the real set…", id="summary", classes="panel")
                yield Static("", id="labels", classes="panel")
                table = DataTable(id="images-table", cursor_type="row", zebra_stripes=True)
                table.add_columns("id", "split", "inv", "p.conf", "flip", "o.conf", "flag", "source")
                yield table
                skipped = DataTable(id="skipped-table", cursor_type="row")
                skipped.add_columns("skipped file", "reason")
                yield skipped
            with Horizontal(id="previews"):  # each image with its caption under it
                with Vertical():
                    yield ImagePreview(self.app.image_protocol, caption="canonical", id="canonical")
                    yield Static("canonical 256x256", id="canonical-caption", classes="caption")
                with Vertical():
                    yield ImagePreview(self.app.image_protocol, caption="original", id="original")
                    yield Static("original (as stored)", id="original-caption", classes="caption")
        yield Footer()

    def on_mount(self) -> None:
        # After the first paint: opening the screen never waits for its data.
        self.call_after_refresh(self.action_reload)

    def on_resize(self) -> None:
        self.set_class(self.size.width < 120, "-narrow")

    # -- loading -----------------------------------------------------------------------------------------
    def action_reload(self, keep: str | None = None) -> None:
        self.loaded = False
        self._load(self.flagged_only, keep or self.current_id)

    @work(thread=True, exclusive=True, group="dataset-load")
    def _load(self, flagged_only: bool, keep: str | None) -> None:
        study = self.app.study
        summary = catalog.dataset_summary(study)
        rows = catalog.list_images(study, flagged_only=flagged_only)
        overview = {"summary": labels.label_summary(study), "attributes": labels.attribute_overview(study)}
        self.app.call_from_thread(self._loaded, summary, rows, keep, overview)

    @property
    def busy(self) -> bool:
        """A load or an override of this screen has not finished. Asked of the workers themselves: an
        exclusive worker replaced before its thread started never runs its body, so a count kept by the
        workers would never come back to zero."""
        return any(w.node is self and not w.is_finished for w in self.app.workers)

    def _loaded(self, summary: dict[str, Any], rows: list[dict[str, Any]], keep: str | None,
                overview: dict[str, Any]) -> None:
        self.summary, self.rows, self.labels = summary, rows, overview
        self.query_one("#summary", Static).update(self._summary_view())
        self.query_one("#labels", Static).update(self._labels_view())
        table = self.query_one("#images-table", DataTable)
        table.clear()
        for r in rows:
            flag = Text("FLAG", style="bold yellow") if r["flagged"] else ""
            table.add_row(r["id"][:10], r["split"] or "-", "inv" if r["inverted"] else "",
                          _conf(r["polarity_confidence"], r["polarity_source"]), "flip" if r["flipped"] else "",
                          _conf(r["orientation_confidence"], r["orientation_source"]), flag,
                          Path(r["source_path"]).name, key=r["id"])
        skipped = self.query_one("#skipped-table", DataTable)
        skipped.clear()
        for item in summary["skipped"]:
            skipped.add_row(Path(item["path"]).name, item["reason"], key=item["path"])
        index = next((i for i, r in enumerate(rows) if r["id"] == keep), 0)
        if rows:
            table.move_cursor(row=index)
        self.loaded = True
        self._show_current()

    def _summary_view(self) -> Table:
        s = self.summary
        t = Table.grid(padding=(0, 1))
        t.add_column(style="bold")
        t.add_column()
        if not s.get("total"):
            t.add_row("real images", "none yet: `cspine-tui ingest PATH --study ...`")
        else:
            splits = s["splits"]
            t.add_row("real images", f"{s['total']}  train {splits.get('train', 0)} · val {splits.get('val', 0)}"
                                     f"  (seed {s.get('split_seed')}, {s.get('resize')})")
            t.add_row("polarity", f"positive {s.get('positive', 0)} · inverted {s.get('inverted', 0)}")
            t.add_row("orientation", f"left {s.get('left', 0)} · flipped {s.get('flipped', 0)}")
            t.add_row("flagged", f"{s.get('flagged', 0)}  (overridden {s.get('overridden', 0)})")
            by_split: dict[str, list[int]] = {}
            for r in s["by_split"]:
                cell = by_split.setdefault(r["split"], [0, 0])
                cell[0] += r["n"] * r["inverted"]
                cell[1] += r["n"] * r["flipped"]
            t.add_row("per split", "  ".join(f"{k}: inv {v[0]}, flip {v[1]}" for k, v in sorted(by_split.items())))
            t.add_row("formats", ", ".join(f"{k} {v}" for k, v in s["by_format"].items()))
        t.add_row("skipped", f"{len(s.get('skipped', []))} files (s shows them) · "
                             f"duplicates met {s.get('duplicates', 0)}")
        filt = "flagged only (f: all)" if self.flagged_only else "all (f: flagged only)"
        t.add_row("showing", f"{len(self.rows)} images, {filt}")
        return t

    def _labels_view(self) -> Table:
        """The attribute counts (numeric ones as their range) and how many images carry keypoints."""
        s, attrs = self.labels.get("summary") or {}, self.labels.get("attributes") or {}
        t = Table(box=None, padding=(0, 1), show_header=True, header_style="bold", expand=False)
        t.add_column("labels")
        t.add_column("images", justify="right")
        t.add_column("values")
        if not s.get("keypoint_images") and not attrs:
            t.add_row("none", "", "`cspine-tui labels --import FILE --study ...`")
            return t
        t.add_row("keypoints", str(s.get("keypoint_images", 0)), f"{len(s.get('points', []))} points (k: show)")
        for name, a in attrs.items():
            if a["type"] == "numeric":
                values = f"{a['min']:g} – {a['max']:g}, mean {a['mean']:.3g}"
            else:
                counts = list(a["counts"].items())
                values = " · ".join(f"{v} {n}" for v, n in counts[:6]) + (
                    f" · +{len(counts) - 6} more" if len(counts) > 6 else "")
            t.add_row(name, str(a["n"]), values)
        mine = self.current_labels.get("attributes")
        if mine:
            t.add_row("this image", "", "  ".join(f"{k}={v}" for k, v in mine.items()))
        return t

    # -- the current image -------------------------------------------------------------------------------
    @property
    def current(self) -> dict[str, Any] | None:
        table = self.query_one("#images-table", DataTable)
        if not self.rows or table.cursor_row is None or not 0 <= table.cursor_row < len(self.rows):
            return None
        return self.rows[table.cursor_row]

    @property
    def current_id(self) -> str | None:
        row = self.current
        return row["id"] if row else None

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "images-table" and self.loaded:
            self._show_current()

    def _show_current(self) -> None:
        row = self.current
        if row is None:
            for box in ("#canonical", "#original"):
                self.query_one(box, ImagePreview).show(None, caption="no image")
            return
        self._caption = (f"canonical {row['id'][:12]}" + ("  inverted" if row["inverted"] else "")
                         + ("  flipped" if row["flipped"] else ""))
        self.query_one("#canonical-caption", Static).update(self._caption)
        self.current_labels = {}
        self.query_one("#original-caption", Static).update(
            f"original {row['orig_width']}x{row['orig_height']} {row['bit_depth']}-bit {row['source_format']}")
        self._load_images(row["id"], row["path"], row["source_path"])

    @work(thread=True, exclusive=True, group="dataset-images")
    def _load_images(self, image_id: str, rel: str, source: str) -> None:
        study = self.app.study
        marks = labels.image_labels(study, image_id)
        try:
            canonical = load_preview(study.abs(rel))
        except OSError:
            canonical = None
        if canonical is not None and marks["keypoints"] and self.show_keypoints:
            canonical = draw_keypoints(canonical, marks["keypoints"], int(study.get("ingest", "size", 256)))
        original = load_original(Path(source))
        self.app.call_from_thread(self._put_images, image_id, canonical, original, marks)

    def _put_images(self, image_id: str, canonical: Any, original: Any, marks: dict[str, Any]) -> None:
        if self.current_id != image_id:
            return  # the user moved on
        self.current_labels = marks
        self.query_one("#canonical", ImagePreview).show(canonical, caption="canonical image missing")
        self.query_one("#original", ImagePreview).show(original, caption="original not reachable")
        n = len(marks["keypoints"])
        if n:
            self.query_one("#canonical-caption", Static).update(
                f"{self._caption} · {n} keypoints{'' if self.show_keypoints else ' off'}")
        self.query_one("#labels", Static).update(self._labels_view())

    # -- actions -----------------------------------------------------------------------------------------
    def action_toggle_polarity(self) -> None:
        row = self.current
        if row is not None:
            self._override(row["id"], {"inverted": not row["inverted"]})

    def action_toggle_orientation(self) -> None:
        row = self.current
        if row is not None:
            self._override(row["id"], {"flipped": not row["flipped"]})

    @work(thread=True, group="dataset-override")
    def _override(self, image_id: str, change: dict[str, bool]) -> None:
        try:
            catalog.override(self.app.study, image_id, **change)
        except Exception as exc:  # noqa: BLE001 - shown in one line; the screen keeps running
            self.app.call_from_thread(self.app.report_error, exc)
        else:
            what = ", ".join(f"{k} -> {'yes' if v else 'no'}" for k, v in change.items())
            self.app.call_from_thread(self.notify, f"{image_id[:12]}: {what} (override recorded)", timeout=3)
            self.app.call_from_thread(self.action_reload, image_id)

    def action_toggle_keypoints(self) -> None:
        self.show_keypoints = not self.show_keypoints
        self.notify(f"keypoints {'shown' if self.show_keypoints else 'hidden'}", timeout=2)
        self._show_current()

    def action_filter_flagged(self) -> None:
        self.flagged_only = not self.flagged_only
        self.action_reload()

    def action_toggle_skipped(self) -> None:
        self.showing_skipped = not self.showing_skipped
        self.set_class(self.showing_skipped, "-skipped")
        target = "#skipped-table" if self.showing_skipped else "#images-table"
        self.query_one(target, DataTable).focus()

    def action_back(self) -> None:
        if self.showing_skipped:
            self.action_toggle_skipped()
        else:
            self.app.pop_screen()

    # -- command palette ---------------------------------------------------------------------------------
    def palette_commands(self) -> list[tuple[str, str, Any]]:
        return [
            ("Dataset: show flagged images only", "toggle the flagged filter", self.action_filter_flagged),
            ("Dataset: show skipped files", "files the ingest could not use, with reasons",
             self.action_toggle_skipped),
            ("Dataset: show or hide keypoints", "the imported landmarks on the canonical image",
             self.action_toggle_keypoints),
            ("Dataset: reload", "re-read the real set", partial(self.action_reload, None)),
        ]
