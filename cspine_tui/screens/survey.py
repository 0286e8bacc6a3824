"""The survey screen: build a blinded quartet pack and look through its quartets with previews.

Left: the study's packs (design, groups, raters), the groups a pack can draw from with their accepted-image
counts (checkpoints, sampling runs, external sets), and the build form (count, three groups, seed, image base
URL, output folder, free-text box). Right: the selected pack's quartet, four previews
labelled A-D as raters see them; the answer key stays hidden until `k` (someone may be looking over your
shoulder). Building runs in a worker thread; the new pack is selected when it is done.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Checkbox, DataTable, Footer, Header, Input, Label, Static

from core.errors import CspineError
from cspine_tui.widgets.preview import ImagePreview, load_preview


class SurveyScreen(Screen):
    HELP = ("Build a pack: fill in the form (three groups separated by spaces: a checkpoint step, run:NAME for "
            "a sampling run or external:NAME for a set added with add-synthetic; an empty seed is drawn at random "
            "and recorded; tick the box for an optional 'what gave it away?' text per quartet) and press b or the "
            "Build button. Every pack asks the raters' specialty and years of experience. Pick a pack in the "
            "table to see its quartets: n / p (or the arrows) move, k shows or hides which image is real. The pack "
            "folder holds upload/ (survey.qsf, survey.txt, images/) for Qualtrics, preview.html, answer_key.csv "
            "and a README.")
    BINDINGS = [
        Binding("b", "build", "Build pack"),
        Binding("n,right", "quartet(1)", "Next quartet"),
        Binding("p,left", "quartet(-1)", "Previous quartet"),
        Binding("k", "toggle_key", "Show/hide key"),
        Binding("r", "reload", "Refresh"),
        Binding("escape", "app.pop_screen", "Back"),
    ]
    DEFAULT_CSS = """
    SurveyScreen #side { width: 52; height: 1fr; }
    SurveyScreen #packs { height: auto; max-height: 10; }
    SurveyScreen #form Input { width: 1fr; }
    SurveyScreen #form Label { width: 12; padding: 1 0 0 0; }
    SurveyScreen #form Horizontal { height: auto; }
    SurveyScreen #viewer { width: 1fr; height: 1fr; }
    SurveyScreen #quartet { grid-size: 2 2; grid-gutter: 0 1; height: 1fr; }
    SurveyScreen .cell { height: 1fr; border: round $primary-lighten-2; }
    SurveyScreen #quartet-caption { height: auto; padding: 0 1; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.packs: list[dict[str, Any]] = []
        self.groups: dict[str, int] = {}  # group -> accepted images (core/reader_study/groups.py)
        self.spec = None  # core.reader_study.spec.PackSpec of the selected pack
        self.quartet = 1
        self.show_key = False
        self.building = False

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            with VerticalScroll(id="side"):
                yield Static("Packs", classes="panel-title")
                yield DataTable(id="packs", cursor_type="row", zebra_stripes=True)
                yield Static("", id="groups", classes="muted")
                with Vertical(id="form", classes="panel"):
                    yield Static("New pack", classes="panel-title")
                    for label, ident, placeholder in (
                            ("count", "count", "50"),
                            ("groups", "ckpts", "three, e.g. 68000 run:cond external:gan"),
                            ("seed", "seed", "random (recorded)"),
                            ("image URL", "url", "https://host/path/ (later ok)"),
                            ("folder", "out", "<study>/exports/pack-<time>")):
                        with Horizontal():
                            yield Label(label)
                            yield Input(placeholder=placeholder, id=f"in-{ident}",
                                        value="50" if ident == "count" else "")
                    yield Checkbox("free text: 'what gave it away?' per quartet", id="in-free")
                    yield Button("Build pack (b)", id="build", variant="primary")
                yield Static("", id="pack-info", classes="muted")
            with Vertical(id="viewer"):
                yield Static("No pack yet: build one with the form.", id="quartet-caption")
                with Grid(id="quartet"):
                    for letter in "ABCD":
                        yield ImagePreview(self.app.image_protocol, caption=letter, id=f"img-{letter}",
                                           classes="cell")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#packs", DataTable)
        table.add_columns("pack", "quartets", "groups", "raters")
        # After the first paint: opening the screen never waits for its data.
        self.call_after_refresh(self.action_reload)

    def palette_commands(self) -> list[tuple[str, str, Callable[[], Any]]]:
        return [("Build quartet pack", "blinded quartets + Qualtrics survey from the form", self.action_build),
                ("Show or hide the answer key", "which image of the quartet is real", self.action_toggle_key),
                ("Next quartet", "", lambda: self.action_quartet(1)),
                ("Previous quartet", "", lambda: self.action_quartet(-1))]

    # -- loading -----------------------------------------------------------------------------------------
    def action_reload(self, select: str | None = None) -> None:
        self._load(select)

    @work(thread=True, exclusive=True, group="survey-load")
    def _load(self, select: str | None) -> None:
        # imported on use: loads numpy, duckdb (start-up cost)
        from core.reader_study.groups import available
        from core.reader_study.pack import list_packs

        packs = list_packs(self.app.study)
        groups = available(self.app.study)
        self.app.call_from_thread(self._loaded, packs, groups, select)

    def _loaded(self, packs: list[dict[str, Any]], groups: dict[str, int], select: str | None) -> None:
        from core.reader_study.groups import label  # loaded by the worker already

        self.packs, self.groups = packs, groups
        table = self.query_one("#packs", DataTable)
        table.clear()
        for p in packs:
            table.add_row(p["id"].removeprefix("pack-"), str(p["quartets"]),
                          ", ".join(label(g) for g in p["checkpoints"]), str(p["raters"]), key=p["id"])
        self.query_one("#groups", Static).update(
            "accepted images per group: " + (", ".join(f"{k}: {v}" for k, v in groups.items()) or "none yet"))
        ckpt_input = self.query_one("#in-ckpts", Input)
        steps = sorted((g for g in groups if g.isdigit()), key=int)
        if not ckpt_input.value and len(steps) >= 3:
            ckpt_input.value = " ".join([steps[0], steps[len(steps) // 2], steps[-1]])
        if packs:
            target = select or (self.spec.pack_id if self.spec else packs[0]["id"])
            index = next((i for i, p in enumerate(packs) if p["id"] == target), 0)
            table.move_cursor(row=index)
            self._open_pack(packs[index]["id"])

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self._open_pack(str(event.row_key.value))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key is not None and (self.spec is None or self.spec.pack_id != event.row_key.value):
            self._open_pack(str(event.row_key.value))

    @work(thread=True, exclusive=True, group="survey-pack")
    def _open_pack(self, pack_id: str) -> None:
        from core.reader_study.pack import load_pack  # imported on use: loads numpy, duckdb (start-up cost)

        spec = load_pack(self.app.study, pack_id)
        self.app.call_from_thread(self._pack_opened, spec)

    def _pack_opened(self, spec) -> None:
        if self.spec is None or self.spec.pack_id != spec.pack_id:
            self.quartet = 1
        self.spec = spec
        folder = next((p["out_dir"] for p in self.packs if p["id"] == spec.pack_id), "")
        from core.reader_study.groups import label  # loaded by the worker already

        url = spec.image_base_url or "placeholder (set with `cspine-tui survey-urls`)"
        asks = ("questionnaire" if spec.questionnaire else "no questionnaire (built before it existed)") + (
            ", free text per quartet" if spec.free_text else "")
        self.query_one("#pack-info", Static).update(
            f"{spec.pack_id}\ndesign: quartets (1 real + {', '.join(label(g) for g in spec.checkpoints)})\n"
            f"asks: pick + realism 1-4, {asks}\n"
            f"seed {spec.seed}, {spec.size} px, images at {url}\nfolder {folder}\n"
            f"preview {Path(folder) / 'preview.html'}")
        self._show_quartet()

    # -- the quartet viewer ------------------------------------------------------------------------------
    def action_quartet(self, delta: int) -> None:
        if self.spec is not None:
            self.quartet = (self.quartet - 1 + delta) % self.spec.count + 1
            self._show_quartet()

    def action_toggle_key(self) -> None:
        self.show_key = not self.show_key
        self._show_quartet()

    def _show_quartet(self) -> None:
        from core.reader_study.groups import label  # loaded by the worker already

        spec = self.spec
        if spec is None:
            return
        members = spec.quartet(self.quartet)
        caption = Text(f"Quartet {self.quartet} of {spec.count}  ", style="bold")
        if self.show_key:
            real = next(i.letter for i in members if i.source == "real")
            caption.append(f"real: {real}  ·  " + ", ".join(f"{i.letter} = {label(i.source)}" for i in members),
                           style="bold yellow")
        else:
            caption.append("(k shows the answer key)", style="dim")
        self.query_one("#quartet-caption", Static).update(caption)
        folder = next((Path(p["out_dir"]) for p in self.packs if p["id"] == spec.pack_id), None)
        self._load_images(spec.pack_id, self.quartet, folder,
                          [(i.letter, i.image_file, i.source, i.image_id) for i in members])

    @work(thread=True, exclusive=True, group="survey-images")
    def _load_images(self, pack_id: str, quartet: int, folder: Path | None, members: list[tuple]) -> None:
        images = []
        for letter, image_file, source, image_id in members:
            path = folder / "upload" / "images" / image_file if folder else None
            try:
                img = load_preview(path) if path and path.exists() else None
            except OSError:
                img = None
            images.append((letter, img, source))
        self.app.call_from_thread(self._images_loaded, pack_id, quartet, images)

    def _images_loaded(self, pack_id: str, quartet: int, images: list[tuple]) -> None:
        if self.spec is None or self.spec.pack_id != pack_id or self.quartet != quartet:
            return  # the user moved on
        for letter, img, source in images:
            caption = f"{letter}" + (f"  ({source})" if self.show_key else "")
            self.query_one(f"#img-{letter}", ImagePreview).show(img, caption=caption if img else
                                                                f"{letter}: image file missing")
            self.query_one(f"#img-{letter}", ImagePreview).border_title = caption

    # -- building ----------------------------------------------------------------------------------------
    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "build":
            self.action_build()

    def _form(self) -> dict[str, Any]:
        value = {k: self.query_one(f"#in-{k}", Input).value.strip() for k in ("count", "ckpts", "seed", "url", "out")}
        try:
            count = int(value["count"] or 50)
            seed = int(value["seed"]) if value["seed"] else None
        except ValueError:
            raise CspineError("count and seed must be whole numbers") from None
        groups = value["ckpts"].replace(",", " ").split()
        if len(groups) != 3:
            raise CspineError(f"give three groups separated by spaces (have: {', '.join(self.groups)})")
        out = Path(value["out"]).expanduser() if value["out"] else None
        return {"count": count, "seed": seed, "groups": groups, "image_base_url": value["url"] or None,
                "out": out, "free_text": self.query_one("#in-free", Checkbox).value}

    def action_build(self) -> None:
        if self.building:
            self.notify("a pack is being built")
            return
        try:
            form = self._form()
        except CspineError as exc:
            self.app.report_error(exc)
            return
        self.building = True
        self.query_one("#build", Button).disabled = True
        self.notify(f"building {form['count']} quartets from {', '.join(form['groups'])}…")
        self._build(form)

    @work(thread=True, exclusive=True, group="survey-build")
    def _build(self, form: dict[str, Any]) -> None:
        from datetime import datetime

        from core.reader_study.pack import build_pack  # imported on use: loads numpy, duckdb (start-up cost)

        study = self.app.study
        out = form.pop("out") or study.exports_dir / f"pack-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
        try:
            spec = build_pack(study, out, **form)
        except Exception as exc:  # noqa: BLE001 - shown to the user, the screen keeps working
            self.app.call_from_thread(self._built, None, exc)
            return
        self.app.call_from_thread(self._built, spec, None)

    def _built(self, spec, error: BaseException | None) -> None:
        self.building = False
        self.query_one("#build", Button).disabled = False
        if error is not None:
            self.app.report_error(error)
            return
        self.notify(f"pack {spec.pack_id}: {spec.count} quartets written")
        self.spec = None
        self.action_reload(select=spec.pack_id)
