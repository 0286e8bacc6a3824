"""Simulated raters and Qualtrics-format response files (the demo, tests, and a dry run of the import).

Simulated raters are clearly labelled (rater code ``simulated-rater-N``; the import marks them
``raters.simulated``). Each has a latent realism per image (the source's level + an image effect + the
rater's noise): the pick is the image that looks most real to them, the ratings are that latent value
rounded into 1-4 with a rater bias. With levels close together this gives near-chance identification and
ratings mostly 3-4, as experts gave in the paper.

`write_qualtrics_csv` writes what Qualtrics exports: the current three-header-row CSV (export tags,
question text, ImportId JSON) or the legacy two-row one, with numeric values or choice text.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

import numpy as np

from core.demo.reviewer import demo_run_ids
from core.reader_study import questionnaire
from core.reader_study.spec import LETTERS, RATER_CODE_TAG, SCALE, PackSpec
from core.reader_study.formats import QUESTION, RATE, RATER_CODE_TEXT
from core.reader_study.pack import available_checkpoints, build_pack, list_packs, load_pack
from core.reader_study.responses import import_ratings


@dataclass
class SimulatedResponse:
    rater_code: str
    response_id: str
    picks: dict[int, int] = field(default_factory=dict)                # quartet -> position 1..4
    ratings: dict[tuple[int, int], int] = field(default_factory=dict)  # (quartet, position) -> 1..4
    finished: bool = True
    status: str = "0"            # Qualtrics response type: 0 = IP address (a normal response), 1 = preview
    channel: str = "anonymous"   # DistributionChannel: anonymous | preview | test | email ...
    recorded: str = "2025-01-01 12:00:00"
    specialty: int | None = None  # questionnaire recode value (1-based index into SPECIALTIES)
    specialty_other: str = ""
    years: int | None = None
    comments: dict[int, str] = field(default_factory=dict)             # quartet -> free text


def simulate_raters(spec: PackSpec, n_raters: int = 8, seed: int = 0, *,
                    levels: dict[str, float] | None = None, image_sd: float = 0.15) -> list[SimulatedResponse]:
    """`levels`: the mean latent realism per source; `image_sd`: the spread of the images' own realism (shared
    by all raters; 0 makes groups of equal level exchangeable for these images, the null the rater-level
    Wilcoxon tests)."""
    rng = np.random.default_rng(seed)
    about = np.random.default_rng([seed, 1])  # questionnaire and free text: the ratings' stream stays as it was
    steps = spec.checkpoints
    levels = levels or {"real": 3.35, **{s: 3.2 + 0.05 * i for i, s in enumerate(steps)}}
    image_effect = {(i.quartet, i.position): rng.normal(0.0, image_sd) for i in spec.items}
    start = datetime(2025, 1, 6, 9, 0, 0)
    out = []
    for r in range(n_raters):
        bias = rng.normal(0.0, 0.15)
        resp = SimulatedResponse(rater_code=f"simulated-rater-{r + 1}", response_id=_rid(rng),
                                 recorded=(start + timedelta(hours=3 * r)).strftime("%Y-%m-%d %H:%M:%S"),
                                 specialty=SIM_SPECIALTIES[r % len(SIM_SPECIALTIES)], years=int(about.integers(2, 31)))
        for q in range(1, spec.count + 1):
            latent = {}
            for item in spec.quartet(q):
                latent[item.position] = levels[item.source] + image_effect[(q, item.position)] + rng.normal(0, 0.45)
                resp.ratings[(q, item.position)] = int(np.clip(np.rint(latent[item.position] + bias), 1, 4))
            resp.picks[q] = max(latent, key=latent.get)
            if spec.free_text and about.random() < 0.2:
                resp.comments[q] = SIM_CUES[int(about.integers(len(SIM_CUES)))]
        out.append(resp)
    return out


# The paper's panel: mostly neuroradiologists, some spine surgeons (recode values of questionnaire.SPECIALTIES).
SIM_SPECIALTIES = (1, 1, 1, 4, 1, 1, 4, 1)
SIM_CUES = ("vertebral endplates too smooth", "soft tissue looks painted", "trabecular pattern repeats",
            "spinous process shapes odd", "noise texture too uniform")


def _rid(rng: np.random.Generator) -> str:
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return "R_" + "".join(alphabet[i] for i in rng.integers(0, len(alphabet), 15))


def preview_and_partial(spec: PackSpec, seed: int = 1) -> list[SimulatedResponse]:
    """A study-team preview and an abandoned response: rows every real export has, which the import excludes."""
    rng = np.random.default_rng(seed)
    preview = SimulatedResponse(rater_code="team-preview", response_id=_rid(rng), status="1", channel="preview",
                                recorded="2025-01-05 17:00:00")
    partial = SimulatedResponse(rater_code="simulated-rater-partial", response_id=_rid(rng), finished=False,
                                recorded="2025-01-07 10:00:00")
    for q in range(1, spec.count + 1):
        preview.picks[q] = 1
        for p in range(1, 5):
            preview.ratings[(q, p)] = 3
    for q in range(1, min(3, spec.count) + 1):  # gave up after a few pages
        partial.picks[q] = 2
        for p in range(1, 5):
            partial.ratings[(q, p)] = 4
    return [preview, partial]


CURRENT_META = [  # (export tag, row-2 label, ImportId)
    ("StartDate", "Start Date", {"ImportId": "startDate", "timeZone": "America/Edmonton"}),
    ("EndDate", "End Date", {"ImportId": "endDate", "timeZone": "America/Edmonton"}),
    ("Status", "Response Type", {"ImportId": "status"}),
    ("IPAddress", "IP Address", {"ImportId": "ipAddress"}),
    ("Progress", "Progress", {"ImportId": "progress"}),
    ("Duration (in seconds)", "Duration (in seconds)", {"ImportId": "duration"}),
    ("Finished", "Finished", {"ImportId": "finished"}),
    ("RecordedDate", "Recorded Date", {"ImportId": "recordedDate", "timeZone": "America/Edmonton"}),
    ("ResponseId", "Response ID", {"ImportId": "_recordId"}),
    ("RecipientLastName", "Recipient Last Name", {"ImportId": "recipientLastName"}),
    ("RecipientFirstName", "Recipient First Name", {"ImportId": "recipientFirstName"}),
    ("RecipientEmail", "Recipient Email", {"ImportId": "recipientEmail"}),
    ("ExternalReference", "External Data Reference", {"ImportId": "externalDataReference"}),
    ("LocationLatitude", "Location Latitude", {"ImportId": "locationLatitude"}),
    ("LocationLongitude", "Location Longitude", {"ImportId": "locationLongitude"}),
    ("DistributionChannel", "Distribution Channel", {"ImportId": "distributionChannel"}),
    ("UserLanguage", "User Language", {"ImportId": "userLanguage"}),
]
LEGACY_META = ["ResponseID", "ResponseSet", "Name", "ExternalDataReference", "EmailAddress", "IPAddress", "Status",
               "StartDate", "EndDate", "Finished"]
STATUS_TEXT = {"0": "IP Address", "1": "Survey Preview", "2": "Survey Test", "8": "Spam"}


def _question_columns(spec: PackSpec) -> list[tuple[str, str, str, tuple]]:
    """(export tag, row-2 text, ImportId, what) for the rater code, the questionnaire and every quartet's questions."""
    cols = [(RATER_CODE_TAG, RATER_CODE_TEXT, f"{spec.rater_code_qid}_TEXT", ("code",))]
    if spec.questionnaire:
        first = spec.questionnaire_qid
        other = questionnaire.OTHER
        cols += [(questionnaire.SPECIALTY_TAG, questionnaire.SPECIALTY_TEXT, f"QID{first}", ("specialty",)),
                 (f"{questionnaire.SPECIALTY_TAG}_{other}_TEXT", f"{questionnaire.SPECIALTY_TEXT} - Other - Text",
                  f"QID{first}_{other}_TEXT", ("specialty_other",)),
                 (questionnaire.YEARS_TAG, questionnaire.YEARS_TEXT, f"QID{first + 1}_TEXT", ("years",))]
    for q in range(1, spec.count + 1):
        cols.append((spec.mc_tag(q), f"Quartet {q} of {spec.count}. {QUESTION}", spec.mc_qid(q), ("pick", q)))
        for p, letter in enumerate(LETTERS, 1):
            cols.append((f"{spec.matrix_tag(q)}_{p}", f"{RATE} - Image {letter}", f"{spec.matrix_qid(q)}_{p}",
                         ("rate", q, p)))
        if spec.free_text:
            cols.append((questionnaire.free_text_tag(q), questionnaire.FREE_TEXT, f"{spec.cue_qid(q)}_TEXT",
                         ("cue", q)))
    return cols


def _answer(resp: SimulatedResponse, what: tuple, choice_text: bool, seen_unanswered: bool) -> str:
    """One cell; with `seen_unanswered` a forced question left empty is exported as -99 (Qualtrics' recode)."""
    unanswered = questionnaire.SEEN_UNANSWERED if seen_unanswered and resp.finished else ""
    if what[0] == "code":
        return resp.rater_code
    if what[0] == "specialty":
        v = resp.specialty
        return unanswered if v is None else (questionnaire.SPECIALTIES[v - 1] if choice_text else str(v))
    if what[0] == "specialty_other":
        return resp.specialty_other
    if what[0] == "years":
        return unanswered if resp.years is None else str(resp.years)
    if what[0] == "cue":
        return resp.comments.get(what[1], "")
    if what[0] == "pick":
        v = resp.picks.get(what[1])
        return unanswered if v is None else (LETTERS[v - 1] if choice_text else str(v))
    v = resp.ratings.get((what[1], what[2]))
    return unanswered if v is None else (SCALE[v] if choice_text else str(v))


def write_qualtrics_csv(path: Path | str, spec: PackSpec, responses: list[SimulatedResponse], *,
                        legacy: bool = False, choice_text: bool = False, seen_unanswered: bool = False) -> Path:
    """`seen_unanswered`: the export option "recode seen but unanswered questions as -99"."""
    return write_export_csv(path, _question_columns(spec), responses,
                            lambda r, what: _answer(r, what, choice_text, seen_unanswered), legacy=legacy,
                            choice_text=choice_text, legacy_tail=("LocationLatitude", "LocationLongitude", ""))


def write_export_csv(path: Path | str, qcols: list[tuple[str, str, str, tuple]], responses: list[Any],
                     answer: Callable[[Any, tuple], str], *, legacy: bool, choice_text: bool,
                     legacy_tail: tuple[str, ...] = ()) -> Path:
    """A Qualtrics export CSV of simulated responses (either design): the metadata columns, then one column per
    `qcols` entry (export tag, question text, import id, what) rendered by `answer(response, what)`.
    `legacy`: the old two-row export (V1..V10), with `legacy_tail` header columns left empty in every row."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows: list[list[str]] = []
    if legacy:
        rows.append([f"V{i}" for i in range(1, 11)] + [c[0] for c in qcols] + list(legacy_tail))
        rows.append(LEGACY_META + [c[1] for c in qcols] + list(legacy_tail))
        for r in responses:
            status = STATUS_TEXT.get(r.status, r.status) if choice_text else r.status
            meta = [r.response_id, "Default Response Set", "Anonymous", "", "", "", status, r.recorded,
                    r.recorded, ("True" if r.finished else "False") if choice_text else str(int(r.finished))]
            rows.append(meta + [answer(r, c[3]) for c in qcols] + [""] * len(legacy_tail))
    else:
        rows.append([m[0] for m in CURRENT_META] + [c[0] for c in qcols])
        rows.append([m[1] for m in CURRENT_META] + [c[1] for c in qcols])
        rows.append([json.dumps(m[2], separators=(",", ":")) for m in CURRENT_META]
                    + [json.dumps({"ImportId": c[2]}, separators=(",", ":")) for c in qcols])
        for r in responses:
            status = STATUS_TEXT.get(r.status, r.status) if choice_text else r.status
            finished = ("True" if r.finished else "False") if choice_text else str(int(r.finished))
            progress = "100" if r.finished else "9"
            meta = [r.recorded, r.recorded, status, "", progress, "1800", finished, r.recorded, r.response_id,
                    "", "", "", "", "", "", r.channel, "EN"]
            rows.append(meta + [answer(r, c[3]) for c in qcols])
    with open(path, "w", newline="", encoding="utf-8-sig") as fh:
        csv.writer(fh).writerows(rows)
    return path


# ---------------------------------------------------------------------------------------------------
# The demo's reader study

DEMO_QUARTETS = 50
DEMO_RATERS = 8
DEMO_SIZE = 256


def demo_reader_study(study, log) -> None:
    """Build a pack from three checkpoints' accepted images, import 8 simulated raters' Qualtrics CSV, analyse.

    Idempotent: the pack, the import (same file -> same hash) and the analysis are each done once.
    """
    from core.reader_study.analysis import analyze, latest_analysis  # imported on use: loads scipy (start-up cost)

    pack_id = study.get("survey", "demo_pack")
    if pack_id and any(p["id"] == pack_id for p in list_packs(study)):
        spec = load_pack(study, pack_id)
    else:
        # The checkpoints the demo sampled, not a user's own (their images are not the demo's to draw).
        demo_steps = {str(s) for s in study.store.column(
            "SELECT DISTINCT checkpoint_step FROM synthetic_runs WHERE list_contains(?::VARCHAR[], id) "
            "AND checkpoint_step IS NOT NULL", [demo_run_ids(study)])}
        have = {s: n for s, n in available_checkpoints(study).items() if s in demo_steps}
        ready = [s for s, n in sorted(have.items(), key=lambda kv: int(kv[0])) if n >= DEMO_QUARTETS]
        n_real = int(study.store.scalar("SELECT count(*) FROM real_images"))
        if len(ready) < 3 or n_real < DEMO_QUARTETS:
            log(f"reader study skipped: it needs {DEMO_QUARTETS} real images (have {n_real}) and 3 checkpoints "
                f"with >= {DEMO_QUARTETS} accepted images (have "
                + (", ".join(f"{s}: {n}" for s, n in have.items()) or "none") + ")")
            return
        chosen = [ready[0], ready[len(ready) // 2], ready[-1]] if len(ready) > 3 else ready
        out = study.exports_dir / "demo-pack"
        if out.exists():
            import shutil

            shutil.rmtree(out)  # a pack that was never recorded (interrupted build)
        spec = build_pack(study, out, checkpoints=chosen, count=DEMO_QUARTETS, seed=2510, size=DEMO_SIZE, log=log)
        study.set("survey", "demo_pack", spec.pack_id)
    csv_path = study.exports_dir / "demo-pack-SIMULATED-qualtrics-responses.csv"
    sims = simulate_raters(spec, DEMO_RATERS, seed=2510) + preview_and_partial(spec)
    write_qualtrics_csv(csv_path, spec, sims)
    summary = import_ratings(study, csv_path, spec.pack_id, simulated=True)
    if not summary.get("already_imported_as"):
        log(f"imported {summary['used']} SIMULATED raters (excluded: preview {summary['excluded']['preview']}, "
            f"incomplete {summary['excluded']['incomplete']}) from {csv_path.name}")
    if latest_analysis(study, spec.pack_id) is None:
        res = analyze(study, spec.pack_id, log=log)
        log(f"reader study (SIMULATED raters): accuracy {100 * res['accuracy']:.1f}%, Fleiss' kappa "
            f"{res['fleiss_kappa']:.3f}; report {res['report']['html']}")
