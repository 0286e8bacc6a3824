"""The survey screen: build a blinded reader-study pack of either design, plan its power, and look through it.

Left: the study's packs of both designs (quartets, single images) with their groups and raters, the groups a pack
can draw from with their accepted-image counts (checkpoints, sampling runs, external sets), and the build form
(design, count, groups, seed, image base URL, output folder, free-text box, for single images the condition
question). `w` shows the power plan (cspine_tui/widgets/power_plan.py), prefilled with the form's design and count.
Right: the selected pack's trial as raters see it: a quartet's four previews labelled A-D, or a single image; the
answer key stays hidden until `k` (someone may be looking over your shoulder). Building runs in a worker thread;
the new pack is selected when it is done.
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
from textual.widgets import Button, Checkbox, DataTable, Footer, Header, Input, Label, Select, Static

from core.errors import CspineError
from cspine_tui.widgets.power_plan import PowerPlan
from cspine_tui.widgets.preview import ImagePreview, load_preview

DEFAULT_COUNT = {"quartets": 50, "single": 100}  # the paper's 50 quartets; 100 single images (reader-designs.md)


class SurveyScreen(Screen):
    HELP = ("Build a pack: choose the design (quartets: 1 real + 3 synthetic, pick the real one and rate realism; "
            "single images: one image per page, real or synthetic on a confidence scale), fill in the form (groups "
            "separated by spaces: a checkpoint step, run:NAME for a sampling run or external:NAME for a set added "
            "with add-synthetic; quartets take exactly three; an empty seed is drawn at random and recorded; tick "
            "the box for an optional 'what gave it away?' text per trial; for single images, an attribute name "
            "adds 'does this image show <condition>?') and press b or the Build button. Every pack asks the "
            "raters' specialty and years of experience. w shows the power plan: how likely the analysis is to "
            "find the effect you expect with that many readers and trials. Pick a pack in the table to see its "
            "trials: n / p (or the arrows) move, k shows or hides the answer key. The pack folder holds upload/ "
            "(survey.qsf, survey.txt, images/) for Qualtrics, preview.html, answer_key.csv and a README.")
    BINDINGS = [
        Binding("b", "build", "Build pack"),
        Binding("n,right", "quartet(1)", "Next quartet"),
        Binding("p,left", "quartet(-1)", "Previous quartet"),
        Binding("k", "toggle_key", "Show/hide key"),
        Binding("w", "toggle_plan", "Power plan"),
        Binding("r", "reload", "Refresh"),
        Binding("escape", "app.pop_screen", "Back"),
    ]
    DEFAULT_CSS = """
    SurveyScreen #side { width: 52; height: 1fr; }
    SurveyScreen #packs { height: auto; max-height: 10; }
    SurveyScreen #form Input { width: 1fr; }
    SurveyScreen #form Label { width: 12; padding: 1 0 0 0; }
    SurveyScreen #form Select { width: 1fr; }
    SurveyScreen #plan { display: none; }
    SurveyScreen #plan.shown { display: block; }
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
        self.spec = None  # the selected pack: a PackSpec (quartets) or a SinglePackSpec (single images)
        self.quartet = 1  # the trial shown: a quartet, or a single image's page
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
                    with Horizontal():
                        yield Label("design")
                        yield Select([("quartets", "quartets"), ("single images", "single")], value="quartets",
                                     allow_blank=False, id="in-design")
                    for label, ident, placeholder in (
                            ("count", "count", "50"),
                            ("groups", "ckpts", "three, e.g. 68000 run:cond external:gan"),
                            ("seed", "seed", "random (recorded)"),
                            ("condition", "cond", "single images: attribute to ask about"),
                            ("image URL", "url", "https://host/path/ (later ok)"),
                            ("folder", "out", "<study>/exports/pack-<time>")):
                        with Horizontal():
                            yield Label(label)
                            yield Input(placeholder=placeholder, id=f"in-{ident}",
                                        value="50" if ident == "count" else "")
                    yield Checkbox("free text: 'what gave it away?' per trial", id="in-free")
                    yield Button("Build pack (b)", id="build", variant="primary")
                yield PowerPlan(id="plan", classes="panel")
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
        table.add_columns("pack", "design", "trials", "groups", "raters")
        # After the first paint: opening the screen never waits for its data.
        self.call_after_refresh(self.action_reload)

    def palette_commands(self) -> list[tuple[str, str, Callable[[], Any]]]:
        return [("Build pack", "a blinded pack of the form's design + Qualtrics survey", self.action_build),
                ("Show or hide the answer key", "which image is real, and each image's group", self.action_toggle_key),
                ("Power plan", "readers and trials for 80% power (plan-study)", self.action_toggle_plan),
                ("Next trial", "", lambda: self.action_quartet(1)),
                ("Previous trial", "", lambda: self.action_quartet(-1))]

    # -- loading -----------------------------------------------------------------------------------------
    def action_reload(self, select: str | None = None) -> None:
        self._load(select)

    @work(thread=True, exclusive=True, group="survey-load")
    def _load(self, select: str | None) -> None:
        # imported on use: loads numpy, duckdb (start-up cost)
        from core.reader_study.designs import list_all_packs
        from core.reader_study.groups import available

        packs = list_all_packs(self.app.study)
        groups = available(self.app.study)
        self.app.call_from_thread(self._loaded, packs, groups, select)

    def _loaded(self, packs: list[dict[str, Any]], groups: dict[str, int], select: str | None) -> None:
        from core.reader_study.groups import label  # loaded by the worker already

        self.packs, self.groups = packs, groups
        table = self.query_one("#packs", DataTable)
        table.clear()
        for p in packs:
            single = p["design"] == "single"
            table.add_row(p["id"].removeprefix("pack-"), "single" if single else "quartets",
                          str(p["trials"] if single else p["quartets"]),
                          ", ".join(label(g) for g in (p["groups"] if single else p["checkpoints"])), str(p["raters"]),
                          key=p["id"])
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
        # imported on use: load numpy, duckdb (start-up cost)
        from core.reader_study.pack import load_pack
        from core.reader_study.single_pack import load_single_pack

        single = any(p["id"] == pack_id and p["design"] == "single" for p in self.packs)
        spec = (load_single_pack if single else load_pack)(self.app.study, pack_id)
        self.app.call_from_thread(self._pack_opened, spec)

    def _pack_opened(self, spec) -> None:
        from core.reader_study.groups import label  # loaded by the worker already

        if self.spec is None or self.spec.pack_id != spec.pack_id:
            self.quartet = 1
        self.spec = spec
        folder = next((p["out_dir"] for p in self.packs if p["id"] == spec.pack_id), "")
        url = spec.image_base_url or "placeholder (set with `cspine-tui survey-urls`)"
        asks = ("questionnaire" if spec.questionnaire else "no questionnaire (built before it existed)") + (
            ", free text per trial" if spec.free_text else "")
        if self._single:
            design = f"single images ({', '.join(label(g) for g in spec.groups)}, and real ones)"
            cond = f", 'does it show {spec.condition_attribute}?'" if spec.condition_attribute else ""
            asks = f"real or synthetic, confidence 1-6{cond}, {asks}"
        else:
            design = f"quartets (1 real + {', '.join(label(g) for g in spec.checkpoints)})"
            asks = f"pick + realism 1-4, {asks}"
        self.query_one("#pack-info", Static).update(
            f"{spec.pack_id}\ndesign: {design}\nasks: {asks}\n"
            f"seed {spec.seed}, {spec.size} px, images at {url}\nfolder {folder}\n"
            f"preview {Path(folder) / 'preview.html'}")
        for letter in "BCD":  # a single-image trial shows one image, in A's place
            self.query_one(f"#img-{letter}", ImagePreview).display = not self._single
        self._show_quartet()

    @property
    def _single(self) -> bool:
        return getattr(self.spec, "design", "quartets") == "single"

    # -- the trial viewer --------------------------------------------------------------------------------
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
        if self._single:
            item = spec.trial(self.quartet)
            caption = Text(f"Image {self.quartet} of {spec.count}  ", style="bold")
            if self.show_key:
                cond = f"  ·  asked: {spec.condition_attribute} = {item.condition}" if spec.asks_condition(item) else ""
                caption.append(f"{'real' if item.source == 'real' else label(item.source)}{cond}", style="bold yellow")
            members = [("A", item.image_file, item.source, item.image_id)]
        else:
            quartet = spec.quartet(self.quartet)
            caption = Text(f"Quartet {self.quartet} of {spec.count}  ", style="bold")
            if self.show_key:
                real = next(i.letter for i in quartet if i.source == "real")
                caption.append(f"real: {real}  ·  " + ", ".join(f"{i.letter} = {label(i.source)}" for i in quartet),
                               style="bold yellow")
            members = [(i.letter, i.image_file, i.source, i.image_id) for i in quartet]
        if not self.show_key:
            caption.append("(k shows the answer key)", style="dim")
        self.query_one("#quartet-caption", Static).update(caption)
        folder = next((Path(p["out_dir"]) for p in self.packs if p["id"] == spec.pack_id), None)
        self._load_images(spec.pack_id, self.quartet, folder, members)

    # -- the power plan ----------------------------------------------------------------------------------
    def action_toggle_plan(self) -> None:
        plan = self.query_one("#plan", PowerPlan)
        plan.toggle_class("shown")
        if plan.has_class("shown"):
            design = str(self.query_one("#in-design", Select).value)
            plan.query_one("#pp-design", Select).value = design
            count = self.query_one("#in-count", Input).value.strip()
            if count.isdigit():
                plan.query_one("#pp-trials", Input).value = count
            # After the refresh that lays the plan out: before it, the plan has no place to scroll to.
            self.call_after_refresh(self.query_one("#side", VerticalScroll).scroll_to_widget, plan, top=True)

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

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "in-design":  # the other design's default count, unless one was typed
            count = self.query_one("#in-count", Input)
            if count.value.strip() in {str(c) for c in DEFAULT_COUNT.values()} | {""}:
                count.value = str(DEFAULT_COUNT[str(event.value)])

    def _form(self) -> dict[str, Any]:
        keys = ("count", "ckpts", "seed", "cond", "url", "out")
        value = {k: self.query_one(f"#in-{k}", Input).value.strip() for k in keys}
        design = str(self.query_one("#in-design", Select).value)
        try:
            count = int(value["count"] or DEFAULT_COUNT[design])
            seed = int(value["seed"]) if value["seed"] else None
        except ValueError:
            raise CspineError("count and seed must be whole numbers") from None
        groups = value["ckpts"].replace(",", " ").split()
        if design == "quartets" and len(groups) != 3:
            raise CspineError(f"give three groups separated by spaces (have: {', '.join(self.groups)})")
        if not groups:
            raise CspineError(f"give at least one group (have: {', '.join(self.groups)})")
        if value["cond"] and design == "quartets":
            raise CspineError("the condition question is asked in single-image packs only; clear it or "
                              "choose the single-images design")
        out = Path(value["out"]).expanduser() if value["out"] else None
        form = {"design": design, "count": count, "seed": seed, "groups": groups,
                "image_base_url": value["url"] or None, "out": out,
                "free_text": self.query_one("#in-free", Checkbox).value}
        if design == "single":
            form["condition_attribute"] = value["cond"] or None
        return form

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
        what = "quartets" if form["design"] == "quartets" else "single images"
        self.notify(f"building {form['count']} {what} from {', '.join(form['groups'])}…")
        self._build(form)

    @work(thread=True, exclusive=True, group="survey-build")
    def _build(self, form: dict[str, Any]) -> None:
        from datetime import datetime

        from core.reader_study.pack import build_pack  # imported on use: loads numpy, duckdb (start-up cost)
        from core.reader_study.single_pack import build_single_pack  # the same

        study = self.app.study
        design = form.pop("design")
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out = form.pop("out") or study.exports_dir / (f"pack-{stamp}" if design == "quartets" else f"single-{stamp}")
        try:
            if design == "single":
                spec = build_single_pack(study, out, **form)
            else:
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
        what = "single images" if getattr(spec, "design", "quartets") == "single" else "quartets"
        self.notify(f"pack {spec.pack_id}: {spec.count} {what} written")
        self.spec = None
        self.action_reload(select=spec.pack_id)
