"""The rater questionnaire and the per-trial free text, for every reader-study design.

Every pack asks each rater, on its first page after the rater code, two short questions with fixed export tags
(so the import finds them whatever the design):

- ``rater_specialty``: one answer from `SPECIALTIES`; the last, "Other", takes a text (in the QSF a text entry on
  the choice, exported as ``rater_specialty_<n>_TEXT``; in the TXT, which cannot attach text to a choice, the
  separate question ``rater_specialty_other``);
- ``rater_years``: years of experience reading radiographs, a whole number (QSF: number validation 0-70).

With ``--free-text`` each trial page also carries an optional essay box "What gave it away?" (export tag
`free_text_tag(trial)`, e.g. ``cue_007``), collected verbatim.

Qualtrics' export option "recode seen but unanswered questions as -99" writes ``-99`` into a question a rater saw
and left empty (docs/reference/study.md section 4: unanswered is otherwise an empty cell). `is_seen_unanswered`
recognises it; it is never a value.

Functions any design uses: `rater_questions`, `qsf_questions(next_qid)`, `txt_block`, `preview_html`,
`read_rater_info(row)`, `free_text_tag`, `free_text_qsf`, `free_text_txt`, `free_text_preview`,
`read_free_text(row, trial)`. A ``row`` is one export row as a mapping from column name to cell: the export
tag (row 1) and, for current exports, the ImportId (row 3) both as keys (`responses.Header.row_mapping`).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any, Mapping

SEEN_UNANSWERED = "-99"
SPECIALTY_TAG = "rater_specialty"
SPECIALTY_OTHER_TAG = "rater_specialty_other"  # the TXT route's separate question
YEARS_TAG = "rater_years"
SPECIALTIES = ("Neuroradiology", "Musculoskeletal radiology", "General radiology", "Spine surgery",
               "Radiology trainee (resident or fellow)", "Other")
OTHER = len(SPECIALTIES)  # recode value of "Other"
SPECIALTY_TEXT = "Your specialty:"
OTHER_TEXT = "If you chose Other: which specialty?"
YEARS_TEXT = "Years of experience reading radiographs (a whole number):"
YEARS_MAX = 70
FREE_TEXT = ("Optional: what gave it away? Describe anything that made an image look real or computer-generated "
             "to you.")
# Experience bands for the analysis' strata (years, inclusive lower bound).
YEAR_BANDS = ((0, "0-4 years"), (5, "5-9 years"), (10, "10-19 years"), (20, "20+ years"))


@dataclass(frozen=True)
class RaterQuestion:
    tag: str
    text: str
    kind: str                        # choice | number
    choices: tuple[str, ...] = ()


def rater_questions() -> list[RaterQuestion]:
    """The questionnaire, in the order it is shown."""
    return [RaterQuestion(SPECIALTY_TAG, SPECIALTY_TEXT, "choice", SPECIALTIES),
            RaterQuestion(YEARS_TAG, YEARS_TEXT, "number")]


def is_seen_unanswered(value: str | None) -> bool:
    """True for Qualtrics' "seen but unanswered" code (-99), with or without decimals ("-99.0")."""
    return value is not None and re.fullmatch(r"\s*-99(?:\.0+)?\s*", value) is not None


# ---------------------------------------------------------------------------------------------------
# Survey renderings


def _forced(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"Settings": {"ForceResponse": "ON", "ForceResponseType": "ON", "Type": "None", **(extra or {})}}


def qsf_questions(next_qid: int) -> list[dict[str, Any]]:
    """SQ payloads of the questionnaire (QID<next_qid>, QID<next_qid + 1>), to wrap as survey elements."""
    order = [str(i) for i in range(1, len(SPECIALTIES) + 1)]
    choices: dict[str, dict[str, Any]] = {str(i): {"Display": s} for i, s in enumerate(SPECIALTIES, 1)}
    choices[str(OTHER)].update({"TextEntry": "on", "TextEntrySize": "Small"})
    specialty = {"QuestionID": f"QID{next_qid}", "QuestionText": SPECIALTY_TEXT, "DataExportTag": SPECIALTY_TAG,
                 "QuestionType": "MC", "Selector": "SAVR", "SubSelector": "TX",
                 "Configuration": {"QuestionDescriptionOption": "UseText"}, "QuestionDescription": "Specialty",
                 "Choices": choices, "ChoiceOrder": order, "RecodeValues": {c: c for c in order},
                 "Validation": _forced(), "NextChoiceId": len(order) + 1, "NextAnswerId": 1}
    years = {"QuestionID": f"QID{next_qid + 1}", "QuestionText": YEARS_TEXT, "DataExportTag": YEARS_TAG,
             "QuestionType": "TE", "Selector": "SL", "Configuration": {"QuestionDescriptionOption": "UseText"},
             "QuestionDescription": "Years of experience",
             "Validation": _forced({"Type": "ContentType", "ContentType": "ValidNumber",
                                    "ValidNumber": {"Min": "0", "Max": str(YEARS_MAX), "NumDecimals": "0"}}),
             "NextChoiceId": 4, "NextAnswerId": 1, "SearchSource": {"AllowFreeResponse": "false"}}
    return [specialty, years]


def txt_block() -> list[str]:
    """The questionnaire in Advanced Format TXT (lines, to go into the instructions block)."""
    lines = ["[[Question:MC:SingleAnswer:Vertical]]", f"[[ID:{SPECIALTY_TAG}]]", SPECIALTY_TEXT, "[[AdvancedChoices]]"]
    for i, s in enumerate(SPECIALTIES, 1):
        lines += [f"[[Choice:{i}]]", s]
    lines += ["", "[[Question:TE:SingleLine]]", f"[[ID:{SPECIALTY_OTHER_TAG}]]", OTHER_TEXT, "",
              "[[Question:TE:SingleLine]]", f"[[ID:{YEARS_TAG}]]", YEARS_TEXT, ""]
    return lines


def preview_html() -> str:
    """The questionnaire as the offline preview shows it (inputs marked data-optional are not forced)."""
    radios = "".join(f'<label style="display:block"><input type="radio" name="{SPECIALTY_TAG}" value="{i}"> '
                     f"{html.escape(s)}</label>" for i, s in enumerate(SPECIALTIES, 1))
    return (f"<p>{html.escape(SPECIALTY_TEXT)}</p>{radios}<p><label>{html.escape(OTHER_TEXT)} "
            f'<input type="text" name="{SPECIALTY_OTHER_TAG}" size="30" data-optional></label></p>'
            f'<p><label>{html.escape(YEARS_TEXT)} <input type="number" name="{YEARS_TAG}" min="0" '
            f'max="{YEARS_MAX}" step="1" style="width:5em"></label></p>')


def free_text_tag(trial: int) -> str:
    return f"cue_{trial:03d}"


def free_text_qsf(trial: int, qid: str) -> dict[str, Any]:
    """SQ payload of trial `trial`'s optional free-text box (an essay text box, not forced)."""
    return {"QuestionID": qid, "QuestionText": f"<p>{html.escape(FREE_TEXT)}</p>",
            "DataExportTag": free_text_tag(trial), "QuestionType": "TE", "Selector": "ESTB",
            "Configuration": {"QuestionDescriptionOption": "UseText", "InputWidth": 680, "InputHeight": 60},
            "QuestionDescription": f"Trial {trial}: what gave it away?",
            "Validation": {"Settings": {"ForceResponse": "OFF", "Type": "None"}},
            "NextChoiceId": 4, "NextAnswerId": 1, "SearchSource": {"AllowFreeResponse": "false"}}


def free_text_txt(trial: int) -> list[str]:
    return ["[[Question:TE:Essay]]", f"[[ID:{free_text_tag(trial)}]]", FREE_TEXT, ""]


def free_text_preview(trial: int) -> str:
    return (f"<p>{html.escape(FREE_TEXT)}</p><textarea name=\"{free_text_tag(trial)}\" rows=\"2\" "
            'style="width:100%" data-optional></textarea>')


# ---------------------------------------------------------------------------------------------------
# Reading an export row


def _get(row: Mapping[str, str], *keys: str | None) -> str | None:
    """The first present, non-empty cell among `keys` (export tags or ImportIds)."""
    for k in keys:
        if k is not None and (row.get(k) or "").strip():
            return row[k].strip()
    return None


def _specialty(value: str) -> str | None:
    if value.isdigit() and 1 <= int(value) <= len(SPECIALTIES):
        return SPECIALTIES[int(value) - 1]
    for s in SPECIALTIES:  # choice text export
        if value.casefold() == s.casefold():
            return s
    return None


def read_rater_info(row: Mapping[str, str], first_qid: int | None = None) -> dict[str, Any]:
    """{"specialty", "specialty_other", "years", "seen_unanswered": [tags], "problems": [text]} of one row.

    `first_qid` is the questionnaire's first QID number in this survey (for ImportId columns when a user renamed
    the export tags). Missing columns give None (a pack built before the questionnaire existed); -99 gives None
    and the tag in ``seen_unanswered``; a value that is not a choice or a number gives None and a problem.
    """
    qid = (lambda k, suffix: f"QID{first_qid + k}{suffix}") if first_qid is not None else (lambda k, suffix: None)
    out: dict[str, Any] = {"specialty": None, "specialty_other": None, "years": None, "seen_unanswered": [],
                           "problems": []}
    raw = _get(row, SPECIALTY_TAG, qid(0, ""))
    if raw is not None:
        if is_seen_unanswered(raw):
            out["seen_unanswered"].append(SPECIALTY_TAG)
        else:
            out["specialty"] = _specialty(raw)
            if out["specialty"] is None:
                out["problems"].append(f"{SPECIALTY_TAG} {raw[:40]!r} is not one of the specialties")
    other = _get(row, f"{SPECIALTY_TAG}_{OTHER}_TEXT", SPECIALTY_OTHER_TAG, qid(0, f"_{OTHER}_TEXT"))
    if other is not None and not is_seen_unanswered(other):
        out["specialty_other"] = other
    raw = _get(row, YEARS_TAG, qid(1, "_TEXT"))
    if raw is not None:
        if is_seen_unanswered(raw):
            out["seen_unanswered"].append(YEARS_TAG)
        else:
            m = re.fullmatch(r"\s*(\d{1,3})(?:[.,]0*)?\s*(?:years?|yrs?|y)?\.?\s*", raw, re.I)
            if m and int(m.group(1)) <= YEARS_MAX:
                out["years"] = int(m.group(1))
            else:
                out["problems"].append(f"{YEARS_TAG} {raw[:40]!r} is not a whole number of years 0-{YEARS_MAX}")
    return out


def read_free_text(row: Mapping[str, str], trial: int, qid: str | None = None) -> str | None:
    """Trial `trial`'s free text, verbatim (None when empty or -99); `qid` the ImportId fallback (QIDn)."""
    for key in (free_text_tag(trial), f"{qid}_TEXT" if qid else None):
        if key is not None and key in row:
            value = row[key]
            return None if not value.strip() or is_seen_unanswered(value) else value
    return None


def years_band(years: int | None) -> str:
    """The experience band of `years` (YEAR_BANDS), or "not given"."""
    if years is None:
        return "not given"
    label = YEAR_BANDS[0][1]
    for low, name in YEAR_BANDS:
        if years >= low:
            label = name
    return label
