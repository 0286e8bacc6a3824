"""The rater questionnaire, the per-trial free text and Qualtrics' -99 "seen but unanswered" recode."""

from __future__ import annotations

import json
import re

import pytest

from core.demo.raters import simulate_raters, write_qualtrics_csv
from core.reader_study import pack as survey
from core.reader_study import questionnaire as qn
from core.reader_study.formats import build_qsf, build_txt
from core.reader_study.responses import import_ratings
from tests.factories.survey import tiny_study

CKPTS = ["2000", "4000", "6000"]


@pytest.fixture()
def env(tmp_path):
    study = tiny_study(tmp_path, n_real=6, per_ckpt=5, reject_every=10)
    spec = survey.build_pack(study, tmp_path / "pack", checkpoints=CKPTS, count=3, seed=3, size=32, free_text=True)
    return study, spec, tmp_path


def _questions(qsf: dict) -> dict[str, dict]:
    return {e["PrimaryAttribute"]: e["Payload"] for e in qsf["SurveyElements"] if e["Element"] == "SQ"}


def test_qsf_has_the_questionnaire_on_the_first_page_and_a_free_text_box_per_quartet(env):
    _, spec, _ = env
    qsf = build_qsf(spec)
    questions = _questions(qsf)
    assert len(questions) == len({p["QuestionID"] for p in questions.values()})  # QIDs unique
    tags = {p["DataExportTag"]: p for p in questions.values()}
    assert len(tags) == len(questions)  # export tags unique
    blocks = next(e for e in qsf["SurveyElements"] if e["Element"] == "BL")["Payload"]
    intro = [el["QuestionID"] for el in blocks[0]["BlockElements"]]
    assert [questions[q]["DataExportTag"] for q in intro] == ["instructions", "rater_code", "rater_specialty",
                                                              "rater_years"]
    spec_q = tags["rater_specialty"]
    assert [c["Display"] for c in spec_q["Choices"].values()] == list(qn.SPECIALTIES)
    assert spec_q["Choices"][str(qn.OTHER)]["TextEntry"] == "on"
    assert spec_q["Validation"]["Settings"]["ForceResponse"] == "ON"
    years = tags["rater_years"]["Validation"]["Settings"]
    assert years["ContentType"] == "ValidNumber" and years["ValidNumber"]["Min"] == "0"
    for q in range(1, spec.count + 1):
        page = [questions[el["QuestionID"]]["DataExportTag"] for el in blocks[1 + q]["BlockElements"]]
        assert page == [spec.mc_tag(q), spec.matrix_tag(q), f"cue_{q:03d}"]
        cue = tags[f"cue_{q:03d}"]
        assert cue["Selector"] == "ESTB" and cue["Validation"]["Settings"]["ForceResponse"] == "OFF"
    assert str(len(questions)) == next(e for e in qsf["SurveyElements"] if e["Element"] == "QC")["SecondaryAttribute"]


def test_txt_and_preview_carry_the_same_questions(env):
    _, spec, out = env
    txt = build_txt(spec)
    ids = re.findall(r"\[\[ID:([^\]]+)\]\]", txt)
    assert ids[:4] == ["instructions", "rater_code", "rater_specialty", "rater_specialty_other"]
    assert "rater_years" in ids and [i for i in ids if i.startswith("cue_")] == ["cue_001", "cue_002", "cue_003"]
    assert txt.count("[[Question:TE:Essay]]") == spec.count
    preview = (out / "pack" / "preview.html").read_text()
    assert 'name="rater_specialty"' in preview and 'name="rater_years"' in preview
    assert preview.count('<textarea name="cue_') == spec.count
    assert "data-optional" in preview  # the free text and the Other text are not forced


def test_a_pack_without_free_text_has_no_boxes(tmp_path):
    study = tiny_study(tmp_path, n_real=6, per_ckpt=5, reject_every=10)
    spec = survey.build_pack(study, tmp_path / "p", checkpoints=CKPTS, count=2, seed=1, size=32)
    assert spec.questionnaire and not spec.free_text
    tags = {p["DataExportTag"] for p in _questions(build_qsf(spec)).values()}
    assert "rater_years" in tags and not any(t.startswith("cue_") for t in tags)
    assert "[[Question:TE:Essay]]" not in build_txt(spec)


@pytest.mark.parametrize("row, expected", [
    ({"rater_specialty": "1", "rater_years": "12"}, ("Neuroradiology", None, 12, [])),
    ({"rater_specialty": "Spine surgery", "rater_years": "7 years"}, ("Spine surgery", None, 7, [])),
    ({"rater_specialty": "6", "rater_specialty_6_TEXT": "Pain medicine", "rater_years": "3"},
     ("Other", "Pain medicine", 3, [])),
    ({"rater_specialty": "Other", "rater_specialty_other": "Chiropractic", "rater_years": "0"},  # the TXT route
     ("Other", "Chiropractic", 0, [])),
    ({"rater_specialty": "-99", "rater_years": "-99"}, (None, None, None, ["rater_specialty", "rater_years"])),
    ({}, (None, None, None, [])),                                   # a pack built before the questionnaire
    ({"QID9": "2", "QID10_TEXT": "20"}, ("Musculoskeletal radiology", None, 20, [])),  # tags renamed: ImportIds
])
def test_read_rater_info(row, expected):
    info = qn.read_rater_info(row, first_qid=9)
    assert (info["specialty"], info["specialty_other"], info["years"], info["seen_unanswered"]) == expected
    assert info["problems"] == []


def test_read_rater_info_reports_what_it_cannot_read():
    info = qn.read_rater_info({"rater_specialty": "9", "rater_years": "about ten"})
    assert info["specialty"] is None and info["years"] is None and len(info["problems"]) == 2
    assert qn.years_band(None) == "not given" and qn.years_band(4) == "0-4 years" and qn.years_band(25) == "20+ years"


def test_free_text_is_read_verbatim_and_minus_99_is_no_text():
    text = 'endplates "too smooth", soft tissue\nlooks painted; ü'
    assert qn.read_free_text({"cue_002": text}, 2) == text
    assert qn.read_free_text({"QID12_TEXT": " x "}, 2, qid="QID12") == " x "
    assert qn.read_free_text({"cue_002": "-99"}, 2) is None and qn.read_free_text({"cue_002": "  "}, 2) is None


def test_import_stores_questionnaire_and_comments(env):
    study, spec, tmp = env
    sims = simulate_raters(spec, 3, seed=5)
    sims[0].comments = {1: 'endplates "too smooth", soft tissue\nlooks painted; ü', 3: "noise"}
    sims[1].specialty, sims[1].specialty_other = qn.OTHER, "Pain medicine"
    sims[2].years = None  # left empty and recoded -99 below
    path = write_qualtrics_csv(tmp / "r.csv", spec, sims, seen_unanswered=True)
    summary = import_ratings(study, path, spec.pack_id)
    assert summary["used"] == 3 and summary["comments"] == 2 + sum(len(s.comments) for s in sims[1:])
    raters = {r["label"]: r for r in study.store.query(
        "SELECT label, specialty, specialty_other, years_experience FROM raters WHERE pack_id = ?", [spec.pack_id])}
    assert raters[sims[0].rater_code]["specialty"] == qn.SPECIALTIES[sims[0].specialty - 1]
    assert raters[sims[0].rater_code]["years_experience"] == sims[0].years
    assert (raters[sims[1].rater_code]["specialty"], raters[sims[1].rater_code]["specialty_other"]) == \
        ("Other", "Pain medicine")
    assert raters[sims[2].rater_code]["years_experience"] is None
    comments = study.store.query("SELECT c.trial, c.text FROM trial_comments c JOIN raters r ON r.id = c.rater_id "
                                 "WHERE r.label = ? ORDER BY trial", [sims[0].rater_code])
    assert [(c["trial"], c["text"]) for c in comments] == sorted(sims[0].comments.items())
    unanswered = study.store.query("SELECT trial, question FROM seen_unanswered")
    assert [(u["trial"], u["question"]) for u in unanswered] == [(0, "rater_years")]


def test_minus_99_answers_are_counted_not_refused_and_never_scored(env):
    study, spec, tmp = env
    sims = simulate_raters(spec, 2, seed=6)
    del sims[0].picks[2]                       # seen, not answered
    del sims[0].ratings[(2, 1)], sims[0].ratings[(3, 4)]
    path = write_qualtrics_csv(tmp / "r99.csv", spec, sims, seen_unanswered=True)
    assert "-99" in path.read_text()
    summary = import_ratings(study, path, spec.pack_id)
    assert summary["used"] == 2 and summary["seen_unanswered"] == 3
    assert any("-99" in f for f in summary["flags"])
    rid = study.store.scalar("SELECT id FROM raters WHERE label = ?", [sims[0].rater_code])
    got = study.store.query("SELECT trial, question FROM seen_unanswered WHERE rater_id = ? ORDER BY 1, 2", [rid])
    assert [(g["trial"], g["question"]) for g in got] == [(2, "pick"), (2, "rate_1"), (3, "rate_4")]
    assert study.store.scalar("SELECT count(*) FROM identifications WHERE rater_id = ?", [rid]) == spec.count - 1
    assert study.store.scalar("SELECT count(*) FROM ratings WHERE rater_id = ?", [rid]) == 4 * spec.count - 2
    assert study.store.scalar("SELECT min(rating) FROM ratings") >= 1
    flags = json.loads(study.store.scalar("SELECT flags FROM raters WHERE id = ?", [rid]))
    assert flags["seen_unanswered"] == 3


def test_a_minus_99_rater_code_is_no_code(env):
    study, spec, tmp = env
    sims = simulate_raters(spec, 2, seed=7)
    sims[1].rater_code = "-99"  # the code box left empty with the -99 recode on: the response id labels the rater
    import_ratings(study, write_qualtrics_csv(tmp / "c.csv", spec, sims, seen_unanswered=True), spec.pack_id)
    labels = set(study.store.column("SELECT label FROM raters"))
    assert labels == {sims[0].rater_code, sims[1].response_id}


def test_strata_and_covariate_add_up_by_hand():
    from core.reader_study.analysis import describe_raters

    raters = [{"id": "a", "specialty": "Neuroradiology", "years_experience": 3},
              {"id": "b", "specialty": "Neuroradiology", "years_experience": 12},
              {"id": "c", "specialty": "Spine surgery", "years_experience": 25},
              {"id": "d", "specialty": None, "years_experience": None}]
    correct = {"a": [2, 10], "b": [5, 10], "c": [7, 10], "d": [1, 10]}
    sums = {"a": {"real": (30, 10)}, "b": {"real": (20, 10)}, "c": {"real": (40, 10)}, "d": {"real": (10, 10)}}
    out = describe_raters(raters, correct, sums, ["real"])
    spec = {s["stratum"]: s for s in out["by_specialty"]}
    assert (spec["Neuroradiology"]["raters"], spec["Neuroradiology"]["correct"], spec["Neuroradiology"]["trials"]) \
        == (2, 7, 20)
    assert spec["Neuroradiology"]["mean_realism"]["real"] == pytest.approx(50 / 20)  # pooled ratings, not raters
    assert spec["not given"]["raters"] == 1
    assert [s["stratum"] for s in out["by_experience"]] == ["0-4 years", "10-19 years", "20+ years", "not given"]
    cov = out["experience_vs_accuracy"]
    assert cov["n"] == 3 and cov["rho"] == pytest.approx(1.0)  # years and accuracy in the same order


def test_methods_paragraph_names_the_panel():
    from core.reader_study.report import _panel_sentence

    r = {"per_rater": [{"specialty": "Neuroradiology", "years": 4}, {"specialty": "Neuroradiology", "years": 9},
                       {"specialty": "Spine surgery", "years": 20}, {"specialty": None, "years": None}]}
    assert _panel_sentence(r) == ("Raters reported specialties Neuroradiology 2, Spine surgery 1; years of "
                                  "experience median 9.0 (range 4 to 20, 3 raters). ")
    assert _panel_sentence({"per_rater": [{"specialty": None, "years": None}]}) == ""
