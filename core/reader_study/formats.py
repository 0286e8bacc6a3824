"""The files of a quartet pack: Qualtrics QSF and Advanced Format TXT, answer key, manifest, preview, README.

QSF structure follows real exports (docs/reference/study.md section 1): ``SurveyEntry`` + ``SurveyElements`` with
BL (blocks), FL (flow), SO (options), SCO, PROJ, STAT, QC, RS and one SQ per question. Each quartet is its own
block, so Qualtrics shows it on its own page; the flow lists the blocks in order, or inside a
BlockRandomizer (``--shuffle-pages``) that presents all of them in a random order per rater.
Recode values are explicit: the pick question exports 1-4 for A-D, the matrix rows are A-D = 1-4 (columns
``<tag>_1`` .. ``<tag>_4``) and its scale points export 1-4 = the rating.
"""

from __future__ import annotations

import csv
import hashlib
import html
import json
import os
from pathlib import Path
from typing import Any

from core.reader_study import questionnaire
from core.reader_study.preview import build_preview
from core.reader_study.spec import (IMAGE_URL_PLACEHOLDER, LETTERS, QUESTION, RATE, RATER_CODE_TAG, RATER_CODE_TEXT,
                                   SCALE, PackSpec, instructions_html)


def _sid(prefix: str, *parts: Any, length: int = 15) -> str:
    """A deterministic Qualtrics-style id (Qualtrics may assign new ones on import; export tags stay)."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    num = int(digest, 16)
    chars = []
    for _ in range(length):
        num, r = divmod(num, len(alphabet))
        chars.append(alphabet[r])
    return f"{prefix}_{''.join(chars)}"


def _img(spec: PackSpec, image_file: str, letter: str) -> str:
    url = html.escape(spec.url_for(image_file), quote=True)
    return (f'<img src="{url}" alt="Image {letter}" width="{spec.size}" height="{spec.size}" '
            f'style="width:100%;max-width:{spec.size}px;height:auto">')


def pick_choice_html(spec: PackSpec, image_file: str, letter: str) -> str:
    return f"{_img(spec, image_file, letter)}<br><b>{letter}</b>"


# ---------------------------------------------------------------------------------------------------
# QSF


def _sq(spec: PackSpec, qid: str, payload: dict[str, Any]) -> dict[str, Any]:
    base = {"DefaultChoices": False, "Language": [], "DataVisibility": {"Private": False, "Hidden": False},
            "GradingData": [], "QuestionID": qid}
    return {"SurveyID": _sid("SV", spec.pack_id), "Element": "SQ", "PrimaryAttribute": qid,
            "SecondaryAttribute": payload.get("QuestionDescription", "")[:100], "TertiaryAttribute": None,
            "Payload": {**base, **payload}}


def _forced() -> dict[str, Any]:
    return {"Settings": {"ForceResponse": "ON", "ForceResponseType": "ON", "Type": "None"}}


def intro_qsf(spec: Any, instructions: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(questions, blocks) of a survey's first page, for both designs: the instructions, the forced rater code,
    the rater questionnaire (if the pack asks it); the blocks are that intro block and the trash block, to which
    the caller appends one block per page (the layout assemble_qsf expects)."""
    questions: list[dict[str, Any]] = [
        _sq(spec, "QID1", {"QuestionText": instructions, "DataExportTag": "instructions",
                           "QuestionType": "DB", "Selector": "TB", "Configuration": {
                               "QuestionDescriptionOption": "UseText"},
                           "QuestionDescription": "Instructions", "ChoiceOrder": [],
                           "Validation": {"Settings": {"Type": "None"}}, "NextChoiceId": 4, "NextAnswerId": 1}),
        _sq(spec, spec.rater_code_qid, {
            "QuestionText": RATER_CODE_TEXT, "DataExportTag": RATER_CODE_TAG, "QuestionType": "TE",
            "Selector": "SL", "Configuration": {"QuestionDescriptionOption": "UseText"},
            "QuestionDescription": "Rater code", "Validation": _forced(), "NextChoiceId": 4, "NextAnswerId": 1,
            "SearchSource": {"AllowFreeResponse": "false"}}),
    ]
    intro = ["QID1", spec.rater_code_qid]
    if spec.questionnaire:
        for payload in questionnaire.qsf_questions(spec.questionnaire_qid):
            questions.append(_sq(spec, payload["QuestionID"], payload))
            intro.append(payload["QuestionID"])
    blocks = [{"Type": "Default", "Description": "Instructions", "ID": _sid("BL", spec.pack_id, "intro"),
               "BlockElements": [{"Type": "Question", "QuestionID": qid} for qid in intro],
               "Options": {"BlockLocking": "false", "RandomizeQuestions": "false", "BlockVisibility": "Expanded"}},
              {"Type": "Trash", "Description": "Trash / Unused Questions", "ID": _sid("BL", spec.pack_id, "trash"),
               "BlockElements": []}]
    return questions, blocks


def build_qsf(spec: PackSpec) -> dict[str, Any]:
    questions, blocks = intro_qsf(spec, instructions_html(spec))
    for q in range(1, spec.count + 1):
        members = spec.quartet(q)
        choices = {str(i.position): {"Display": pick_choice_html(spec, i.image_file, i.letter)} for i in members}
        order = [str(p) for p in range(1, 5)]
        questions.append(_sq(spec, spec.mc_qid(q), {
            "QuestionText": f"<p><b>Quartet {q} of {spec.count}.</b> {QUESTION}</p>",
            "DataExportTag": spec.mc_tag(q), "QuestionType": "MC", "Selector": "SAHR", "SubSelector": "TX",
            "Configuration": {"QuestionDescriptionOption": "UseText", "LabelPosition": "BELOW"},
            "QuestionDescription": f"Quartet {q}: {QUESTION}", "Choices": choices, "ChoiceOrder": order,
            "RecodeValues": {p: p for p in order}, "Validation": _forced(), "NextChoiceId": 5, "NextAnswerId": 1}))
        questions.append(_sq(spec, spec.matrix_qid(q), {
            "QuestionText": f"<p>{RATE}</p>", "DataExportTag": spec.matrix_tag(q), "QuestionType": "Matrix",
            "Selector": "Likert", "SubSelector": "SingleAnswer",
            "Configuration": {"QuestionDescriptionOption": "UseText", "TextPosition": "inline",
                              "ChoiceColumnWidth": 25, "RepeatHeaders": "none", "WhiteSpace": "OFF",
                              "MobileFirst": True},
            "QuestionDescription": f"Quartet {q}: {RATE}",
            "Choices": {p: {"Display": f"Image {LETTERS[int(p) - 1]}"} for p in order}, "ChoiceOrder": order,
            "Answers": {str(k): {"Display": v} for k, v in SCALE.items()},
            "AnswerOrder": [str(k) for k in SCALE], "RecodeValues": {str(k): str(k) for k in SCALE},
            "ChoiceDataExportTags": False, "Validation": _forced(), "NextChoiceId": 5, "NextAnswerId": 5}))
        page = [spec.mc_qid(q), spec.matrix_qid(q)]
        if spec.free_text:
            questions.append(_sq(spec, spec.cue_qid(q), questionnaire.free_text_qsf(q, spec.cue_qid(q))))
            page.append(spec.cue_qid(q))
        blocks.append({"Type": "Standard", "SubType": "", "Description": f"Quartet {q:02d}",
                       "ID": _sid("BL", spec.pack_id, q),
                       "BlockElements": [{"Type": "Question", "QuestionID": qid} for qid in page],
                       "Options": {"BlockLocking": "false", "RandomizeQuestions": "false",
                                   "BlockVisibility": "Collapsed"}})
    return assemble_qsf(spec, questions, blocks)


def assemble_qsf(spec: Any, questions: list[dict[str, Any]], blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """The survey document around the questions: flow (the intro block, then the page blocks in order or in a
    BlockRandomizer), options, the other elements Qualtrics expects, and the SurveyEntry. `blocks` holds the
    intro block, the trash block and one block per page; `spec` has pack_id, count, shuffle_pages, created_at
    (a quartet or a single-image pack)."""
    sid = _sid("SV", spec.pack_id)
    flow_id = iter(range(2, 10 ** 6))
    quartet_flow = [{"Type": "Standard", "ID": b["ID"], "FlowID": f"FL_{next(flow_id)}"} for b in blocks[2:]]
    flow: list[dict[str, Any]] = [{"Type": "Block", "ID": blocks[0]["ID"], "FlowID": f"FL_{next(flow_id)}"}]
    if spec.shuffle_pages:
        flow.append({"Type": "BlockRandomizer", "FlowID": f"FL_{next(flow_id)}", "SubSet": spec.count,
                     "EvenPresentation": True, "Flow": quartet_flow})
    else:
        flow.extend(quartet_flow)
    flow.append({"Type": "EndSurvey", "FlowID": f"FL_{next(flow_id)}"})

    def element(code: str, primary: str, payload: Any, secondary: Any = None, tertiary: Any = None):
        return {"SurveyID": sid, "Element": code, "PrimaryAttribute": primary, "SecondaryAttribute": secondary,
                "TertiaryAttribute": tertiary, "Payload": payload}

    rs = _sid("RS", spec.pack_id)
    elements = [
        element("BL", "Survey Blocks", blocks),
        element("FL", "Survey Flow", {"Type": "Root", "FlowID": "FL_1", "Flow": flow,
                                      "Properties": {"Count": next(flow_id) - 1, "RemovedFieldsets": []}}),
        element("SO", "Survey Options", {
            "BackButton": "false", "SaveAndContinue": "true", "SurveyProtection": "PublicSurvey",
            "BallotBoxStuffingPrevention": "false", "NoIndex": "Yes", "SecureResponseFiles": "true",
            "SurveyExpiration": None, "SurveyTermination": "DefaultMessage", "Header": "", "Footer": "",
            "ProgressBarDisplay": "Text", "PartialData": "+1 week", "ValidationMessage": None,
            "PreviousButton": " ← ", "NextButton": " → ", "SurveyTitle": "Radiograph realism study",
            "SkinLibrary": "", "SkinType": "templated", "Skin": {"brandingId": None, "templateId": "*base",
                                                                 "overrides": None},
            "NewScoring": 1, "AnonymizeResponse": "No", "CollectGeoLocation": "false", "ShowExportTags": "false",
            "AvailableLanguages": {"EN": []}}),
        element("SCO", "Scoring", {"ScoringCategories": [], "ScoringCategoryGroups": [],
                                   "ScoringSummaryCategory": None, "ScoringSummaryAfterQuestions": 0,
                                   "ScoringSummaryAfterSurvey": 0, "DefaultScoringCategory": None,
                                   "AutoScoringCategory": None}),
        element("PROJ", "CORE", {"ProjectCategory": "CORE", "SchemaVersion": "1.1.0"}, None, "1.1.0"),
        element("STAT", "Survey Statistics", {"MobileCompatible": True, "ID": "Survey Statistics"}),
        element("QC", "Survey Question Count", None, str(len(questions))),
        element("RS", rs, None, "Default Response Set"),
        *questions,
    ]
    entry = {"SurveyID": sid, "SurveyName": "Radiograph realism study", "SurveyDescription": None,
             "SurveyOwnerID": _sid("UR", "owner"), "SurveyBrandID": "", "DivisionID": None,
             "SurveyLanguage": "EN", "SurveyActiveResponseSet": rs, "SurveyStatus": "Inactive",
             "SurveyStartDate": "0000-00-00 00:00:00", "SurveyExpirationDate": "0000-00-00 00:00:00",
             "SurveyCreationDate": spec.created_at.replace("T", " "), "CreatorID": _sid("UR", "owner"),
             "LastModified": spec.created_at.replace("T", " "), "LastAccessed": "0000-00-00 00:00:00",
             "LastActivated": "0000-00-00 00:00:00", "Deleted": None}
    return {"SurveyEntry": entry, "SurveyElements": elements}


# ---------------------------------------------------------------------------------------------------
# Advanced Format TXT


def build_txt(spec: PackSpec) -> str:
    """The survey in Advanced Format TXT. The pick question's choices are the images themselves, as in the QSF.

    TXT cannot express forced response, the Back button setting or a block randomizer (docs/reference/study.md
    section 2); `txt_limits` says what to set by hand after importing, and the pack README repeats it.
    """
    lines = ["[[AdvancedFormat]]", "", "[[Block:Instructions]]", "", "[[Question:DB]]", "[[ID:instructions]]",
             instructions_html(spec), "", "[[Question:TE:SingleLine]]", f"[[ID:{RATER_CODE_TAG}]]", RATER_CODE_TEXT, ""]
    if spec.questionnaire:
        lines += questionnaire.txt_block()
    for q in range(1, spec.count + 1):
        lines += [f"[[Block:Quartet {q:02d}]]", "", "[[Question:MC:SingleAnswer:Horizontal]]",
                  f"[[ID:{spec.mc_tag(q)}]]", f"<p><b>Quartet {q} of {spec.count}.</b> {QUESTION}</p>",
                  "[[AdvancedChoices]]"]
        for i in spec.quartet(q):
            lines += [f"[[Choice:{i.position}]]", pick_choice_html(spec, i.image_file, i.letter)]
        lines += ["", "[[Question:Matrix]]", f"[[ID:{spec.matrix_tag(q)}]]", RATE, "[[AdvancedChoices]]"]
        for p, letter in enumerate(LETTERS, 1):
            lines += [f"[[Choice:{p}]]", f"Image {letter}"]
        lines.append("[[AdvancedAnswers]]")
        for k, v in SCALE.items():
            lines += [f"[[Answer:{k}]]", v]
        lines.append("")
        if spec.free_text:
            lines += questionnaire.free_text_txt(q)
    return "\n".join(lines)


def txt_limits(spec: PackSpec) -> list[str]:
    """What survey.txt cannot carry and how to set it in Qualtrics by hand (README and command output)."""
    out = ["forced response: in each quartet block select the pick question and the matrix -> Response "
           "requirements -> Force response; the same for the rater code, specialty and years questions "
           "(not for the optional free-text boxes)",
           "Back button: Survey options -> Responses -> uncheck 'Back button'",
           "the number check on years of experience: select the question -> Validation type -> Content type -> "
           f"Number, 0 to {questionnaire.YEARS_MAX}" if spec.questionnaire else ""]
    if spec.shuffle_pages:
        out.append(f"page randomisation (--shuffle-pages): Survey flow -> Add a new element here -> Randomizer; "
                   f"drag the {spec.count} blocks 'Quartet 01' ... 'Quartet {spec.count:02d}' into it; set "
                   f"'Randomly present {spec.count} of the following elements' and tick 'Evenly present elements'; "
                   "leave the Instructions block above it. Without this every rater sees the same order")
    else:
        out.append("page order: the blocks are in the pack's order (Quartet 01, 02, ...), the same for every rater, "
                   "as in survey.qsf; nothing to do")
    return [line for line in out if line]


# ---------------------------------------------------------------------------------------------------
# Answer key, manifest, README, preview


ANSWER_KEY_COLUMNS = ["quartet", "position", "image_file", "source", "mc_export_tag", "mc_choice_recode",
                      "matrix_export_tag", "matrix_row_recode", "image_id", "pack_id"]


def write_answer_key(path: Path, spec: PackSpec) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(ANSWER_KEY_COLUMNS)
        for i in sorted(spec.items, key=lambda i: (i.quartet, i.position)):
            w.writerow([i.quartet, i.letter, i.image_file, i.source, spec.mc_tag(i.quartet), i.position,
                        spec.matrix_tag(i.quartet), i.position, i.image_id, spec.pack_id])


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_pack_files(folder: Path, spec: PackSpec) -> None:
    """Write (or rewrite, after the image URLs changed) every text file of a pack."""
    upload = folder / "upload"
    upload.mkdir(parents=True, exist_ok=True)
    _write_text(upload / "survey.qsf", json.dumps(build_qsf(spec), indent=1, ensure_ascii=False))
    _write_text(upload / "survey.txt", build_txt(spec))
    write_answer_key(folder / "answer_key.csv", spec)
    _write_text(folder / "pack.json", json.dumps(spec.to_json(), indent=1))
    _write_text(folder / "preview.html", build_preview(spec))
    _write_text(folder / "README.md", build_readme(spec))


def _questionnaire_note(spec: PackSpec) -> str:
    if not spec.questionnaire:
        return ""
    note = ("The first page also asks each rater's specialty and years of experience (reported per specialty and "
            "experience band). ")
    if spec.free_text:
        note += 'Each quartet page ends with an optional free-text box "what gave it away?" (reported verbatim). '
    return note


def build_readme(spec: PackSpec) -> str:
    url_note = (f"The survey loads the images from `{spec.url_for('<file>')}`." if spec.image_base_url else
                "Per-image URLs were set from a CSV." if spec.image_urls else
                f"**The image URLs are still the placeholder `{IMAGE_URL_PLACEHOLDER}`** - set them first (step 1).")
    return f"""# Reader-study pack {spec.pack_id}

{spec.count} blinded quartets (one real radiograph and one accepted synthetic image from each of the checkpoints
{", ".join(spec.checkpoints)}), drawn with seed {spec.seed} on {spec.created_at}.

| file | who sees it |
|---|---|
| `upload/survey.qsf` | Qualtrics (Survey -> Tools -> Import/Export -> Import Survey) |
| `upload/survey.txt` | the same survey in Advanced Format TXT (alternative import) |
| `upload/images/` | the {4 * spec.count} images, {spec.size}x{spec.size} 8-bit grayscale PNG, opaque names |
| `preview.html` | the study team: the survey as raters will see it, offline (open it in a browser) |
| `answer_key.csv` | **nobody outside the study team**: which image is real; never upload it |
| `pack.json` | the manifest `cspine-tui import-ratings` reads (pack id, seed, key, export tags) |

## 1. Host the images

{url_note}

* **Any HTTPS host** (a web server, an S3 bucket, GitHub Pages): upload `upload/images/` so that every file is
  reachable as `<base URL>/<file name>`, then run
  `cspine-tui survey-urls --pack <this folder> --image-base-url https://host/path/`
  (or build the pack with `--image-base-url`). This rewrites `survey.qsf`, `survey.txt` and the preview;
  the key does not change.
* **Qualtrics Graphics Library**: upload the images (Library -> Graphics), copy each graphic's URL
  (`https://<brand>.<dc>.qualtrics.com/ControlPanel/Graphic.php?IM=IM_...`) into a CSV with the columns
  `image_file,url`, then run `cspine-tui survey-urls --pack <this folder> --image-urls that.csv`.

File names are random and say nothing about the image; do not rename the files.

## 2. Import the survey

Import `upload/survey.qsf`. It has an instructions page with a rater-code question, then one page per
quartet: "{QUESTION}" (one answer, images A-D) and a 4-point realism matrix (rows A-D, 1 = unrealistic ...
4 = fully realistic). Every question {"but the free-text box " if spec.free_text else ""}has forced response; the Back
button is off{
"; the quartet pages are shown in a random order per rater (block randomizer)" if spec.shuffle_pages else
"; all raters see the quartets in the same order"}. {_questionnaire_note(spec)}Do not change the export tags
(`Q01_pick`, `Q01_rate`, `rater_specialty`, `rater_years`{", `cue_001`" if spec.free_text else ""}, ...) or the
recode values: the import matches columns by them.

**If you import `survey.txt` instead**: the Advanced Format TXT cannot express everything the QSF sets. After
importing it, set by hand:

{chr(10).join("* " + line for line in txt_limits(spec))}

Preview the survey in Qualtrics and compare it with `preview.html`: the images must show.

## 3. Collect and export responses

Give each rater a code (e.g. R1 ... R8) to enter on the first page. After the study, export
Data & Analysis -> Export & Import -> Export Data -> CSV (numeric values or choice text both work; keep
"Export viewing order data" off or on, it is ignored; "Recode seen but unanswered questions as -99" on or off:
a -99 is counted as seen but not answered, never as a rating). Then:

    cspine-tui import-ratings --study <study> --pack <this folder> responses.csv
    cspine-tui analyze --study <study>

Preview and test responses and unfinished responses are excluded (and counted); a rater code that
answered twice keeps its first finished response and is flagged.
"""
