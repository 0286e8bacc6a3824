"""The memorization audit screen: each top real-synthetic pair side by side, judged by two blinded reviewers.

A reviewer (``app.reviewer``) sees only their own verdicts. The agreement panel (Cohen's kappa and the pairs to
adjudicate) opens only once that reviewer has judged every pair, so nobody is swayed by the other's calls.
Verdicts are written on one background thread in key order; the screen never waits for the database.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Header, Input, Static

from core.audit import nearest

from core.audit import review
from core.errors import CspineError
from cspine_tui.widgets.preview import ImagePreview, load_preview
from core.jobs import runner
from core.metrics.embeddings import check_spec

VERDICT_STYLE = {"memorized": "bold red", "not": "green", "unsure": "yellow"}


@dataclass
class VerdictWritten(Message):
    error: BaseException | None


class AuditNoteModal(ModalScreen[str | None]):
    """A note for the current pair's verdict (enter saves, an empty note clears it, escape cancels)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    AuditNoteModal { align: center middle; }
    AuditNoteModal > Vertical { width: 70; height: auto; border: thick $accent; background: $panel; padding: 1 2; }
    """

    def __init__(self, rank: int, current: str | None) -> None:
        super().__init__()
        self.rank, self.current = rank, current or ""

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"Note for pair #{self.rank} (enter saves, escape cancels)")
            yield Input(value=self.current, placeholder="e.g. same vertebral contours and collimation edge",
                        id="note")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)


class AuditScreen(Screen):
    HELP = ("Judge each real-synthetic pair (real left, synthetic right, most similar first): m memorized, "
            "n not memorized, u unsure; e adds a note. Your verdicts are yours alone: the agreement panel "
            "(g: Cohen's kappa and the pairs to adjudicate) opens once you have judged every pair. "
            "x exports the verdicts CSV and a PNG sheet of the pairs to exports/audits/<audit>/. "
            "The paper's a-priori definition of explicit memorization: near-identical vertebral contours, "
            "soft-tissue silhouettes, or acquisition artifacts beyond plausible sampling variability.")
    BINDINGS = [
        Binding("m", "verdict('memorized')", "memorized"),
        Binding("n", "verdict('not')", "not"),
        Binding("u", "verdict('unsure')", "unsure"),
        Binding("e", "note", "note"),
        Binding("right,j", "move(1)", "next"),
        Binding("left,k", "move(-1)", "prev"),
        Binding("g", "agreement", "agreement"),
        Binding("x", "export", "export"),
        Binding("escape", "back", "back", show=False),
    ]
    DEFAULT_CSS = """
    AuditScreen #pair { width: 1fr; height: 1fr; }
    AuditScreen #images { height: 1fr; }
    AuditScreen #images ImagePreview { width: 1fr; height: 1fr; }
    AuditScreen #labels { height: 1; }
    AuditScreen #labels Static { width: 1fr; content-align: center middle; color: $text-muted; }
    AuditScreen #side { width: 46; height: 1fr; }
    AuditScreen #facts { height: auto; }
    AuditScreen #agreement { height: 1fr; display: none; }
    AuditScreen.-agreement #agreement { display: block; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.audit_id: str | None = None
        self.summary: dict[str, Any] = {}
        self.pairs: list[dict[str, Any]] = []
        self.mine: dict[int, dict[str, Any]] = {}
        self.pos = 0
        self.loaded = False
        self.showing_agreement = False
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-writer")
        self._pending_writes = 0

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            with Vertical(id="pair"):
                with Horizontal(id="images"):
                    yield ImagePreview(self.app.image_protocol, caption="real", id="real")
                    yield ImagePreview(self.app.image_protocol, caption="synthetic", id="synthetic")
                with Horizontal(id="labels"):
                    yield Static("real", id="real-label")
                    yield Static("synthetic", id="synthetic-label")
            with Vertical(id="side"):
                yield Static("loading the audit…", id="facts", classes="panel")
                yield Static("", id="agreement", classes="panel")
        yield Footer()

    def on_mount(self) -> None:
        self.reload()

    def on_unmount(self) -> None:
        self._writer.shutdown(wait=True)  # verdicts reach the database before the app exits

    # -- loading -----------------------------------------------------------------------------------------
    def reload(self, audit_id: str | None = None) -> None:
        self.loaded = False
        self._load(audit_id or self.audit_id)

    @work(thread=True, exclusive=True, group="audit-load")
    def _load(self, audit_id: str | None) -> None:
        study, reviewer = self.app.study, self.app.reviewer
        try:
            audit_id = nearest.resolve_audit(study, audit_id)
        except CspineError:
            self.app.call_from_thread(self._loaded, None, {}, [], {})
            return
        report = nearest.audit_report(study, audit_id)
        pairs = report.pop("pairs")
        mine = review.verdicts_of(study, audit_id, reviewer)
        self.app.call_from_thread(self._loaded, audit_id, report, pairs, mine)

    def _loaded(self, audit_id: str | None, summary: dict, pairs: list, mine: dict) -> None:
        self.audit_id, self.summary, self.pairs, self.mine = audit_id, summary, pairs, mine
        undecided = [i for i, p in enumerate(pairs) if p["rank"] not in mine]
        self.pos = undecided[0] if undecided else 0
        self.loaded = True
        self.refresh_view()

    @property
    def current(self) -> dict[str, Any] | None:
        return self.pairs[self.pos] if self.pairs and 0 <= self.pos < len(self.pairs) else None

    # -- drawing -----------------------------------------------------------------------------------------
    def refresh_view(self) -> None:
        self.set_class(self.showing_agreement, "-agreement")
        facts = self.query_one("#facts", Static)
        pair = self.current
        if pair is None:
            facts.update(Text("No memorization audit yet.\nRun one with `cspine-tui audit --embedding pixel` "
                              "(or vit), or ctrl+p → Run audit.", style="dim") if self.loaded else "loading…")
            for box in ("#real", "#synthetic"):
                self.query_one(box, ImagePreview).show(None, caption="no pair")
            return
        facts.update(self._facts(pair))
        split = {"train": "training image", "val": "validation image"}.get(pair.get("real_split") or "", "real image")
        self.query_one("#real-label", Static).update(f"{split} {str(pair['real_id'])[:12]}")
        self.query_one("#synthetic-label", Static).update(f"synthetic {pair['synthetic_id']}")
        self._show_images(pair["rank"], pair["real_path"], pair["synthetic_path"])

    def _facts(self, pair: dict[str, Any]) -> Table:
        t = Table.grid(padding=(0, 1))
        t.add_column(style="bold")
        t.add_column()
        rate = self.summary.get("memorization_rate")
        t.add_row("audit", f"{self.audit_id} ({self.summary.get('embedding')})")
        t.add_row("pair", f"#{pair['rank']} of {len(self.pairs)}")
        t.add_row("similarity", f"{pair['similarity']:.4f}")
        t.add_row("real", str(pair["real_id"])[:24])
        t.add_row("synthetic", f"{pair['synthetic_id']} ({pair.get('run_id')})")
        t.add_row("calibrated", "n/a" if rate is None else f"{100 * rate:.2f}% above val {VAL_PCT}th pct")
        mine = self.mine.get(pair["rank"])
        verdict = Text(mine["verdict"], style=VERDICT_STYLE[mine["verdict"]]) if mine else Text("—", style="dim")
        t.add_row("you", Text.assemble(f"{self.app.reviewer}: ", verdict))
        if mine and mine.get("note"):
            t.add_row("note", mine["note"])
        done = len(self.mine)
        t.add_row("judged", f"{done}/{len(self.pairs)}" + ("  (done: g shows agreement)" if self._finished
                                                         else ""))
        return t

    @property
    def _finished(self) -> bool:
        return bool(self.pairs) and all(p["rank"] in self.mine for p in self.pairs)

    @work(thread=True, exclusive=True, group="audit-images")
    def _show_images(self, rank: int, real_path: str | None, synthetic_path: str | None) -> None:
        study = self.app.study
        images = []
        for rel in (real_path, synthetic_path):
            try:
                images.append(load_preview(study.abs(rel)) if rel else None)
            except OSError:
                images.append(None)
        self.app.call_from_thread(self._put_images, rank, *images)

    def _put_images(self, rank: int, real_img: Any, synthetic_img: Any) -> None:
        if self.current is None or self.current["rank"] != rank:
            return  # the user moved on
        self.query_one("#real", ImagePreview).show(real_img, caption="real image missing")
        self.query_one("#synthetic", ImagePreview).show(synthetic_img, caption="synthetic image missing")

    # -- actions -----------------------------------------------------------------------------------------
    def action_move(self, step: int) -> None:
        if self.pairs:
            self.pos = max(0, min(len(self.pairs) - 1, self.pos + step))
            self.refresh_view()

    def action_verdict(self, verdict: str) -> None:
        pair = self.current
        if pair is None or self.audit_id is None:
            return
        note = (self.mine.get(pair["rank"]) or {}).get("note")
        self.mine[pair["rank"]] = {"verdict": verdict, "note": note}
        self._write(self.audit_id, pair["rank"], verdict, note)
        if self.pos < len(self.pairs) - 1:
            self.pos += 1
        self.refresh_view()

    def action_note(self) -> None:
        pair = self.current
        if pair is None:
            return
        mine = self.mine.get(pair["rank"])
        if mine is None:
            self.notify("judge the pair first (m / n / u), then add a note", timeout=3)
            return

        def done(note: str | None, rank: int = pair["rank"], audit_id: str = self.audit_id or "") -> None:
            if note is None:
                return
            entry = self.mine[rank]
            entry["note"] = note or None
            self._write(audit_id, rank, entry["verdict"], entry["note"])
            self.refresh_view()

        self.app.push_screen(AuditNoteModal(pair["rank"], mine.get("note")), done)

    def _write(self, audit_id: str, rank: int, verdict: str, note: str | None) -> None:
        study, reviewer = self.app.study, self.app.reviewer

        def write() -> None:
            # post_message, not call_from_thread: it never blocks, even while the screen is unmounting.
            try:
                review.record_verdict(study, audit_id, rank, reviewer, verdict, note)
            except Exception as exc:  # noqa: BLE001 - shown to the user, the screen keeps running
                self.post_message(VerdictWritten(exc))
            else:
                self.post_message(VerdictWritten(None))

        self._pending_writes += 1
        self._writer.submit(write)

    def on_verdict_written(self, message: "VerdictWritten") -> None:
        self._pending_writes -= 1
        if message.error is not None:
            self.app.report_error(message.error)

    def action_agreement(self) -> None:
        if self.showing_agreement:
            self.showing_agreement = False
            self.refresh_view()
            return
        if not self._finished:
            self.notify(f"verdicts stay blind until you have judged every pair ({len(self.mine)}/"
                        f"{len(self.pairs)} so far)", timeout=4)
            return
        self._agreement()

    @work(thread=True, exclusive=True, group="audit-agreement")
    def _agreement(self) -> None:
        result = review.agreement(self.app.study, self.audit_id or "")
        self.app.call_from_thread(self._show_agreement, result)

    def _show_agreement(self, result: dict[str, Any]) -> None:
        self.showing_agreement = True
        sims = {p["rank"]: p["similarity"] for p in self.pairs}
        lines = Text()
        if len(result["reviewers"]) < 2:
            lines.append("Waiting for a second reviewer.\n", style="bold")
            lines.append(result.get("note", ""))
        else:
            a, b = result["reviewers"]
            kappa = "n/a" if result["kappa"] is None else f"{result['kappa']:.3f}"
            observed = result["observed_agreement"]
            lines.append(f"{a} vs {b}\n", style="bold")
            lines.append(f"both judged {result['n_both']}/{result['n_pairs']}\nCohen's kappa {kappa}\n"
                         f"observed agreement {'n/a' if observed is None else f'{observed:.3f}'}\n")
            lines.append(f"memorized by both: {result['memorized_by_both'] or 'none'}\n")
            pending = {r: len(v) for r, v in result["pending"].items() if v}
            if pending:
                lines.append("pending: " + ", ".join(f"{r} {n}" for r, n in pending.items()) + "\n")
            lines.append(f"\nadjudicate ({len(result['adjudicate'])}):\n", style="bold")
            for item in result["adjudicate"]:
                lines.append(f"#{item['rank']:<3} {sims.get(item['rank'], 0):.4f}  {a}={item[a]}  {b}={item[b]}\n")
        self.query_one("#agreement", Static).update(lines)
        self.refresh_view()

    def action_export(self) -> None:
        if self.audit_id is not None:
            self._export()

    @work(thread=True, exclusive=True, group="audit-export")
    def _export(self) -> None:
        study = self.app.study
        folder = study.exports_dir / "audits" / self.audit_id
        csv_path = review.export_verdicts_csv(study, self.audit_id, folder / "verdicts.csv")
        sheet = review.export_sheet(study, self.audit_id, folder / "pairs.png")
        self.app.call_from_thread(self.notify, f"wrote {study.rel(csv_path)} and {study.rel(sheet)}", timeout=6)

    def action_back(self) -> None:
        if self.showing_agreement:
            self.action_agreement()
        else:
            self.app.pop_screen()

    # -- command palette ---------------------------------------------------------------------------------
    def palette_commands(self) -> list[tuple[str, str, Any]]:
        commands = [("Run audit (pixel embedding)", "start a background audit job; reload when it is done",
                     partial(self._start_audit, "pixel")),
                    ("Run audit (ViT embedding)", "needs the ViT weights in the torch hub cache",
                     partial(self._start_audit, "vit")),
                    ("Reload audit", "show the latest audit", partial(self.reload, None))]
        try:
            ids = self.app.study.store.column("SELECT id FROM audits ORDER BY created_at DESC LIMIT 20")
        except CspineError:
            ids = []
        commands += [(f"Open audit {i}", "review this audit's pairs", partial(self.reload, i)) for i in ids]
        return commands

    @work(thread=True, exclusive=True, group="audit-start")
    def _start_audit(self, embedding: str) -> None:
        study = self.app.study
        check_spec(embedding, study)  # a missing weight: one line, no job
        job_id = runner.create_job(study, "audit", {"embedding": embedding,
                                                  "top": int(study.get("audit", "top", 100))})
        runner.start_detached(study, job_id)
        self.app.call_from_thread(self.notify, f"audit job {job_id} started; ctrl+p → Reload audit when done",
                                  timeout=6)


VAL_PCT = nearest.VAL_PERCENTILE
