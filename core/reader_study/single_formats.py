"""The files of a single-image pack: Qualtrics QSF and Advanced Format TXT, answer key, manifest, preview, README.

The QSF is put together from the quartet pack's building blocks (formats._sq, _forced, _img, _sid, intro_qsf
and assemble_qsf: the same flow, options and SurveyEntry). Each trial is its own block, hence its own page: the
image and "real or synthetic?" as a six-point single answer (recode 1-6 = the confidence), then, where the image
carries a condition, "does this image show <attribute>: <value>?" (Yes = 1, No = 2), then, with --free-text, an
optional multi-line text "what made you decide?". Everything but the free text has forced response.
"""

from __future__ import annotations

import csv
import html
import json
from pathlib import Path
from typing import Any

from core.reader_study import preview as quartet_preview
from core.reader_study import questionnaire
from core.reader_study.groups import describe
from core.reader_study.formats import _forced, _img, _sid, _sq, _write_text, assemble_qsf, intro_qsf
from core.reader_study.spec import IMAGE_URL_PLACEHOLDER, RATER_CODE_TAG, RATER_CODE_TEXT
from core.reader_study.single_spec import (CONDITION_CHOICES, CONFIDENCE, INSTRUCTIONS, INSTRUCTIONS_CONDITION,
                                          INSTRUCTIONS_WHY, QUESTION, SingleItem, SinglePackSpec,
                                          condition_question)


def txt_limits(spec: SinglePackSpec) -> list[str]:
    """What survey.txt cannot carry and how to set it in Qualtrics by hand (README and command output)."""
    out = ["forced response: in each 'Trial' block select the real-or-synthetic question"
           + (" and the condition question" if spec.condition_attribute else "") + " -> Response requirements -> "
           "Force response; the same for the rater code, specialty and years questions (not for the optional "
           "free-text boxes)",
           "Back button: Survey options -> Responses -> uncheck 'Back button'"]
    if spec.questionnaire:
        out.append("the number check on years of experience: select the question -> Validation type -> Content "
                   f"type -> Number, 0 to {questionnaire.YEARS_MAX}")
    if spec.shuffle_pages:
        out.append(f"page randomisation (--shuffle-pages): Survey flow -> Add a new element here -> Randomizer; "
                   f"drag the {spec.count} blocks 'Trial 001' ... 'Trial {spec.count:03d}' into it; set 'Randomly "
                   f"present {spec.count} of the following elements' and tick 'Evenly present elements'; leave the "
                   "Instructions block above it. Without this every rater sees the same order")
    else:
        out.append("page order: the blocks are in the pack's order (Trial 001, 002, ...), the same for every rater, "
                   "as in survey.qsf; nothing to do")
    return out


def instructions(spec: SinglePackSpec) -> str:
    return INSTRUCTIONS.format(n=spec.count, condition=INSTRUCTIONS_CONDITION if spec.condition_attribute else "",
                               why=INSTRUCTIONS_WHY if spec.free_text else "")


def _head(spec: SinglePackSpec, item: SingleItem) -> str:
    return (f"<p><b>Image {item.trial} of {spec.count}.</b></p>{_img(spec, item.image_file, str(item.trial))}"
            f"<p>{QUESTION}</p>")


def _mc(spec: SinglePackSpec, qid: str, tag: str, text: str, choices: dict[int, str], description: str):
    order = [str(k) for k in choices]
    return _sq(spec, qid, {
        "QuestionText": text, "DataExportTag": tag, "QuestionType": "MC", "Selector": "SAHR", "SubSelector": "TX",
        "Configuration": {"QuestionDescriptionOption": "UseText", "LabelPosition": "BELOW"},
        "QuestionDescription": description, "Choices": {str(k): {"Display": v} for k, v in choices.items()},
        "ChoiceOrder": order, "RecodeValues": {k: k for k in order}, "Validation": _forced(),
        "NextChoiceId": len(choices) + 1, "NextAnswerId": 1})


def build_qsf(spec: SinglePackSpec) -> dict[str, Any]:
    questions, blocks = intro_qsf(spec, instructions(spec))
    for item in spec.items:
        t = item.trial
        page = [_mc(spec, spec.qid(t, "call"), spec.tag(t, "call"), _head(spec, item), CONFIDENCE,
                    f"Image {t}: {QUESTION}")]
        if spec.asks_condition(item):
            text = condition_question(spec.condition_attribute, item.condition)
            page.append(_mc(spec, spec.qid(t, "cond"), spec.tag(t, "cond"), f"<p>{html.escape(text)}</p>",
                            CONDITION_CHOICES, f"Image {t}: {text}"))
        if spec.free_text:
            page.append(_sq(spec, spec.qid(t, "why"), questionnaire.free_text_qsf(t, spec.qid(t, "why"))))
        questions += page
        blocks.append({"Type": "Standard", "SubType": "", "Description": f"Trial {t:03d}",
                       "ID": _sid("BL", spec.pack_id, t),
                       "BlockElements": [{"Type": "Question", "QuestionID": q["PrimaryAttribute"]} for q in page],
                       "Options": {"BlockLocking": "false", "RandomizeQuestions": "false",
                                   "BlockVisibility": "Collapsed"}})
    return assemble_qsf(spec, questions, blocks)


def build_txt(spec: SinglePackSpec) -> str:
    lines = ["[[AdvancedFormat]]", "", "[[Block:Instructions]]", "", "[[Question:DB]]", "[[ID:instructions]]",
             instructions(spec), "", "[[Question:TE:SingleLine]]", f"[[ID:{RATER_CODE_TAG}]]", RATER_CODE_TEXT, ""]
    if spec.questionnaire:
        lines += questionnaire.txt_block()
    for item in spec.items:
        t = item.trial
        lines += [f"[[Block:Trial {t:03d}]]", "", "[[Question:MC:SingleAnswer:Horizontal]]",
                  f"[[ID:{spec.tag(t, 'call')}]]", _head(spec, item), "[[AdvancedChoices]]"]
        for k, v in CONFIDENCE.items():
            lines += [f"[[Choice:{k}]]", v]
        if spec.asks_condition(item):
            lines += ["", "[[Question:MC:SingleAnswer:Horizontal]]", f"[[ID:{spec.tag(t, 'cond')}]]",
                      html.escape(condition_question(spec.condition_attribute, item.condition)), "[[AdvancedChoices]]"]
            for k, v in CONDITION_CHOICES.items():
                lines += [f"[[Choice:{k}]]", v]
        lines.append("")
        if spec.free_text:
            lines += questionnaire.free_text_txt(t)
    return "\n".join(lines)


ANSWER_KEY_COLUMNS = ["trial", "image_file", "image_kind", "source", "condition_attribute", "condition_value",
                      "call_export_tag", "condition_export_tag", "image_id", "pack_id"]


def write_answer_key(path: Path, spec: SinglePackSpec) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(ANSWER_KEY_COLUMNS)
        for i in spec.items:
            asked = spec.asks_condition(i)
            w.writerow([i.trial, i.image_file, i.image_kind, i.source, spec.condition_attribute if asked else "",
                        i.condition if asked else "", spec.tag(i.trial, "call"),
                        spec.tag(i.trial, "cond") if asked else "", i.image_id, spec.pack_id])


def build_preview(spec: SinglePackSpec) -> str:
    """The survey as raters will see it, offline (the quartet preview's style and page script)."""
    e = html.escape
    about = questionnaire.preview_html() if spec.questionnaire else ""
    pages = [f'<section class="page" data-title="Instructions">{instructions(spec)}'
             f'<p><label>{e(RATER_CODE_TEXT)} <input type="text" name="rater_code" size="12"></label></p>{about}'
             "</section>"]
    for item in spec.items:
        t = item.trial
        scale = "".join(f'<label class="choice"><input type="radio" name="t{t}_call" value="{k}"> {e(v)}</label>'
                        for k, v in CONFIDENCE.items())
        body = (f'<p><b>Image {t} of {spec.count}.</b></p><img src="upload/images/{e(item.image_file)}" '
                f'alt="Image {t}" width="{spec.size}" height="{spec.size}" style="max-width:{spec.size}px;'
                f'width:100%;height:auto;background:#000"><p>{QUESTION}</p><div class="choices">{scale}</div>')
        if spec.asks_condition(item):
            yes_no = "".join(f'<label class="choice"><input type="radio" name="t{t}_cond" value="{k}"> {v}</label>'
                             for k, v in CONDITION_CHOICES.items())
            body += (f"<p>{e(condition_question(spec.condition_attribute, item.condition))}</p>"
                     f'<div class="choices">{yes_no}</div>')
        if spec.free_text:  # optional, as in Qualtrics: the page script's forced-response check skips it
            body += questionnaire.free_text_preview(t)
        pages.append(f'<section class="page" data-title="Image {t}" id="q{t}">{body}</section>')
    bar = (f"Study-team preview of single-image pack {e(spec.pack_id)} ({spec.count} images; "
           f"{quartet_preview.page_order('images', spec.shuffle_pages)}); offline,\nnothing is recorded.")
    return quartet_preview.preview_document(bar, pages)


def build_readme(spec: SinglePackSpec) -> str:
    url_note = (f"The survey loads the images from `{spec.url_for('<file>')}`." if spec.image_base_url else
                "Per-image URLs were set from a CSV." if spec.image_urls else
                f"**The image URLs are still the placeholder `{IMAGE_URL_PLACEHOLDER}`** - set them first (step 1).")
    real = sum(i.image_kind == "real" for i in spec.items)
    shares = ", ".join(f"{describe(g)}: {sum(i.source == g for i in spec.items)}" for g in spec.groups)
    cond = (f' and "does this image show {spec.condition_attribute}: <value>?" (Yes/No) under every image that '
            "carries that attribute" if spec.condition_attribute else "")
    why = ' and an optional free text "what gave it away?" (reported verbatim)' if spec.free_text else ""
    about = ("The first page also asks each rater's specialty and years of experience (reported per specialty and "
             "experience band). " if spec.questionnaire else "")
    return f"""# Single-image reader-study pack {spec.pack_id}

{spec.count} blinded images, one per page: {real} real, and synthetic from {shares}; drawn with seed
{spec.seed} on {spec.created_at}.

| file | who sees it |
|---|---|
| `upload/survey.qsf` | Qualtrics (Survey -> Tools -> Import/Export -> Import Survey) |
| `upload/survey.txt` | the same questions in Advanced Format TXT (alternative import; see its limits below) |
| `upload/images/` | the {spec.count} images, {spec.size}x{spec.size} 8-bit grayscale PNG, opaque names |
| `preview.html` | the study team: the survey as raters will see it, offline |
| `answer_key.csv` | **nobody outside the study team**: which image is real; never upload it |
| `pack.json` | the manifest `cspine-tui import-ratings` reads |

## 1. Host the images

{url_note}

Upload `upload/images/` to any HTTPS host and run
`cspine-tui survey-urls --pack <this folder> --image-base-url https://host/path/`, or upload them to the
Qualtrics Graphics Library and give `--image-urls` a CSV of `image_file,url` rows. Do not rename the files.

## 2. Import the survey

Import `upload/survey.qsf`: an instructions page with a rater-code question, then one page per image with
"{QUESTION}" on a six-point scale (1 = certainly real ... 6 = certainly synthetic){cond}{why}. Forced
response everywhere but the free text; the Back button is off{
"; the pages are shown in a random order per rater (block randomizer)" if spec.shuffle_pages else
"; all raters see the images in the same order"}. {about}Do not change the export tags (`T001_call`,
`rater_specialty`, `rater_years`{", `cue_001`" if spec.free_text else ""}, ...) or the recode values: the import
matches columns by them.

**If you import `survey.txt` instead**: the Advanced Format TXT cannot express everything the QSF sets. After
importing it, set by hand:

{chr(10).join("* " + line for line in txt_limits(spec))}

## 3. Collect and export responses

Export Data & Analysis -> Export Data -> CSV (numeric values or choice text). "Recode seen but unanswered
questions as -99" may be on or off: -99 is imported as seen, not answered, and counted. Then:

    cspine-tui import-ratings --study <study> --pack <this folder> responses.csv
    cspine-tui analyze --study <study> --pack <this folder>
"""


def write_pack_files(folder: Path, spec: SinglePackSpec) -> None:
    """Write (or rewrite, after the image URLs changed) every text file of a single-image pack."""
    upload = folder / "upload"
    upload.mkdir(parents=True, exist_ok=True)
    _write_text(upload / "survey.qsf", json.dumps(build_qsf(spec), indent=1, ensure_ascii=False))
    _write_text(upload / "survey.txt", build_txt(spec))
    write_answer_key(folder / "answer_key.csv", spec)
    _write_text(folder / "pack.json", json.dumps(spec.to_json(), indent=1))
    _write_text(folder / "preview.html", build_preview(spec))
    _write_text(folder / "README.md", build_readme(spec))
