"""Simulated readers of a single-image pack and their Qualtrics export (tests, the demo, a dry run of the import).

The model is the equal-variance Gaussian signal-detection model of rating-scale ROC studies: a reader's
evidence that an image is synthetic is its group's detectability d' (0 for real images) plus an image effect
(the same for every reader) plus the reader's own noise N(0, 1); five ordered thresholds, shifted by the
reader's bias, cut it into the confidence 1-6. The pooled AUC of a group against the real images is then
about Phi(d' / sqrt(2 + 2 sd_image^2)). The condition question is answered "yes" with the group's consistency
probability. Raters are labelled ``simulated-rater-N`` (the import marks them simulated); they answer the rater
questionnaire as the quartets' simulated raters do (core/demo/raters.py: the paper's panel of specialties, a
number of years) from a stream of their own, so the answers' stream does not depend on it.

`write_single_qualtrics_csv` writes what Qualtrics exports for the pack's survey (current or legacy header,
numeric values or choice text), with "-99" where `unanswered` marked an answer as seen but not answered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from core.demo.raters import SIM_CUES, SIM_SPECIALTIES, _rid, write_export_csv
from core.reader_study import questionnaire
from core.reader_study.single_spec import CONFIDENCE, QUESTION, SinglePackSpec, condition_question
from core.reader_study.spec import RATER_CODE_TAG, RATER_CODE_TEXT

THRESHOLDS = (-0.9, -0.3, 0.3, 0.9, 1.5)  # evidence cut points between confidence 1|2|...|6 (unbiased reader)


@dataclass
class SingleResponse:
    rater_code: str
    response_id: str
    answers: dict[int, dict[str, object]] = field(default_factory=dict)  # trial -> {call, cond, why}
    finished: bool = True
    status: str = "0"
    channel: str = "anonymous"
    recorded: str = "2025-01-01 12:00:00"
    specialty: int | None = None  # questionnaire recode value (1-based index into SPECIALTIES); None: -99
    years: int | None = None
    comments: dict[int, str] = field(default_factory=dict)  # trial -> free text


def simulate_single_readers(spec: SinglePackSpec, n_readers: int = 6, seed: int = 0, *,
                            detectability: dict[str, float] | None = None,
                            consistency: dict[str, float] | None = None, image_sd: float = 0.3,
                            bias_sd: float = 0.3, unanswered: float = 0.0) -> list[SingleResponse]:
    """Readers answering every trial; `detectability` and `consistency` are per group ('real' included for the
    latter; d' of real is 0). `unanswered` is the chance that an answer is exported as -99."""
    rng = np.random.default_rng(seed)
    about = np.random.default_rng([seed, 1])  # questionnaire and free text
    d = {"real": 0.0, **{g: 0.5 for g in spec.groups}, **(detectability or {})}
    d["real"] = 0.0
    cons = {"real": 0.85, **{g: 0.7 for g in spec.groups}, **(consistency or {})}
    image_effect = {i.trial: rng.normal(0.0, image_sd) for i in spec.items}
    start = datetime(2025, 1, 6, 9, 0, 0)
    out = []
    for r in range(n_readers):
        bias = rng.normal(0.0, bias_sd)
        resp = SingleResponse(rater_code=f"simulated-rater-{r + 1}", response_id=_rid(rng),
                              recorded=(start + timedelta(hours=3 * r)).strftime("%Y-%m-%d %H:%M:%S"),
                              specialty=SIM_SPECIALTIES[r % len(SIM_SPECIALTIES)], years=int(about.integers(2, 31)))
        for item in spec.items:
            evidence = d[item.source] + image_effect[item.trial] + rng.normal()
            conf = 1 + int(np.sum(evidence > np.asarray(THRESHOLDS) + bias))
            answer: dict[str, object] = {"call": conf}
            if spec.asks_condition(item):
                answer["cond"] = "yes" if rng.random() < cons[item.source] else "no"
            if spec.free_text and conf >= 5 and about.random() < 0.5:
                resp.comments[item.trial] = SIM_CUES[int(about.integers(len(SIM_CUES)))]
            for what in list(answer):
                if unanswered and rng.random() < unanswered:
                    answer[what] = None  # seen, not answered: exported as -99
            resp.answers[item.trial] = answer
        out.append(resp)
    return out


def _columns(spec: SinglePackSpec) -> list[tuple[str, str, str, tuple]]:
    cols = [(RATER_CODE_TAG, RATER_CODE_TEXT, f"{spec.rater_code_qid}_TEXT", ("code",))]
    if spec.questionnaire:
        first, other = spec.questionnaire_qid, questionnaire.OTHER
        cols += [(questionnaire.SPECIALTY_TAG, questionnaire.SPECIALTY_TEXT, f"QID{first}", ("specialty",)),
                 (f"{questionnaire.SPECIALTY_TAG}_{other}_TEXT", f"{questionnaire.SPECIALTY_TEXT} - Other - Text",
                  f"QID{first}_{other}_TEXT", ("specialty_other",)),
                 (questionnaire.YEARS_TAG, questionnaire.YEARS_TEXT, f"QID{first + 1}_TEXT", ("years",))]
    for item in spec.items:
        t = item.trial
        cols.append((spec.tag(t, "call"), f"Image {t} of {spec.count}. {QUESTION}", spec.qid(t, "call"),
                     ("call", t)))
        if spec.asks_condition(item):
            cols.append((spec.tag(t, "cond"), condition_question(spec.condition_attribute, item.condition),
                         spec.qid(t, "cond"), ("cond", t)))
        if spec.free_text:
            cols.append((spec.tag(t, "why"), questionnaire.FREE_TEXT, f"{spec.qid(t, 'why')}_TEXT", ("why", t)))
    return cols


def _answer(resp: SingleResponse, what: tuple, choice_text: bool) -> str:
    if what[0] == "code":
        return resp.rater_code
    if what[0] == "specialty":
        v = resp.specialty
        return "-99" if v is None else (questionnaire.SPECIALTIES[v - 1] if choice_text else str(v))
    if what[0] == "specialty_other":
        return ""
    if what[0] == "years":
        return "-99" if resp.years is None else str(resp.years)
    if what[0] == "why":
        return resp.comments.get(what[1], "")
    answer = resp.answers.get(what[1])
    if answer is None or what[0] not in answer:
        return ""
    value = answer[what[0]]
    if value is None:
        return "-99"
    if what[0] == "call":
        return CONFIDENCE[int(value)] if choice_text else str(value)
    return str(value).capitalize() if choice_text else str(1 if value == "yes" else 2)


def write_single_qualtrics_csv(path: Path | str, spec: SinglePackSpec, responses: list[SingleResponse], *,
                               legacy: bool = False, choice_text: bool = False) -> Path:
    return write_export_csv(path, _columns(spec), responses, lambda r, what: _answer(r, what, choice_text),
                            legacy=legacy, choice_text=choice_text)
