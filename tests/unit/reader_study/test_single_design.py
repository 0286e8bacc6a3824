"""The single-image design end to end: pack -> Qualtrics export CSV -> import -> analysis, with simulated readers.

Group comparisons are tested with fixed seeds. The "no difference" checks use Holm-adjusted permutation tests at
alpha = 0.05, so for an arbitrary seed they would fail with probability at most 5% (the family-wise error
rate); test_single_stats.py measures the test's false-positive rate on 300 null data sets.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess

import pytest

from core.demo.raters import preview_and_partial
from core.demo.single_raters import SingleResponse, simulate_single_readers, write_single_qualtrics_csv
from core.errors import CspineError
from core.reader_study.questionnaire import SPECIALTIES
from core.reader_study.pack import png_chunks
from core.reader_study.single_analysis import analyze_single, latest_single_analysis
from core.reader_study.single_pack import build_single_pack, design_of, load_single_pack, plan_trials
from core.reader_study.single_responses import import_single_ratings
from tests.factories.survey import tiny_study

GROUPS = ["ckpt:2000", "ckpt:4000"]  # as given on the command line
SOURCES = ["2000", "4000"]  # the sources they become (the answer key's and the analysis' group names)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("single")
    study = tiny_study(tmp, n_real=40, per_ckpt=24)  # 18 accepted per checkpoint
    spec = build_single_pack(study, tmp / "pack", groups=GROUPS, count=60, seed=11, size=32, free_text=True)
    return study, spec, tmp


def _import(study, spec, tmp, name, responses, **kw):
    path = write_single_qualtrics_csv(tmp / f"{name}.csv", spec, responses, **kw)
    return import_single_ratings(study, path, spec.pack_id)


def _pairs(result) -> dict[tuple[str, str], dict]:
    return {(c["a"], c["b"]): c for c in result["group_comparisons"]}


# -- the pack ---------------------------------------------------------------------------------------

def test_share_and_selection(env):
    study, spec, _ = env
    assert plan_trials(60, 2) == (30, [15, 15]) and plan_trials(7, 2) == (3, [2, 2])
    assert spec.groups == SOURCES
    assert [sum(i.source == g for i in spec.items) for g in ["real", *SOURCES]] == [30, 15, 15]
    ids = [i.image_id for i in spec.items]
    assert len(set(ids)) == 60
    rejected = set(study.store.column("SELECT image_id FROM reviews WHERE decision = 'reject'"))
    assert not rejected & set(ids)
    assert [i.trial for i in spec.items] == list(range(1, 61))
    kinds = "".join("r" if i.image_kind == "real" else "s" for i in spec.items)
    assert "rrrrrrrrrr" not in kinds and "ssssssssss" not in kinds  # a shuffled order, not blocks by source
    rows = study.store.query("SELECT trial, source, image_file FROM single_items WHERE pack_id = ? ORDER BY trial",
                             [spec.pack_id])
    assert [(r["trial"], r["source"], r["image_file"]) for r in rows] == \
        [(i.trial, i.source, i.image_file) for i in spec.items]


def test_same_seed_same_draw(env, tmp_path):
    study, spec, _ = env
    again = build_single_pack(study, tmp_path / "again", groups=GROUPS, count=60, seed=11, size=32, free_text=True)
    assert [(i.image_id, i.source, i.image_file) for i in again.items] == \
        [(i.image_id, i.source, i.image_file) for i in spec.items]


def test_blinding_and_upload(env):
    study, spec, tmp = env
    upload = tmp / "pack" / "upload"
    assert sorted(p.name for p in upload.iterdir()) == ["images", "survey.qsf", "survey.txt"]
    names = sorted(p.name for p in (upload / "images").iterdir())
    assert names == sorted(i.image_file for i in spec.items)
    assert all(re.fullmatch(r"[0-9a-f]{16}\.png", n) for n in names)
    for n in names[:5]:
        assert png_chunks((upload / "images" / n).read_bytes()) == ["IHDR", "IDAT", "IEND"]
    text = (upload / "survey.qsf").read_text() + (upload / "survey.txt").read_text()
    for item in spec.items:
        assert item.image_id not in text
    assert "ckpt" not in text and spec.pack_id not in text and "answer_key" not in text


def test_qsf_pages_questions_and_recodes(env):
    _, spec, tmp = env
    qsf = json.loads((tmp / "pack" / "upload" / "survey.qsf").read_text())
    questions = {e["PrimaryAttribute"]: e["Payload"] for e in qsf["SurveyElements"] if e["Element"] == "SQ"}
    blocks = next(e for e in qsf["SurveyElements"] if e["Element"] == "BL")["Payload"]
    pages = [b for b in blocks if b["Type"] == "Standard"]
    sq = [e for e in qsf["SurveyElements"] if e["Element"] == "SQ"]
    assert len(pages) == 60 and len(sq) == len(questions) == 2 + 2 + 60 * 2  # no QID twice
    intro = next(b for b in blocks if b["Type"] == "Default")["BlockElements"]
    assert [questions[e["QuestionID"]]["DataExportTag"] for e in intro] == \
        ["instructions", "rater_code", "rater_specialty", "rater_years"]  # the questionnaire on the first page
    call = questions[spec.qid(7, "call")]
    assert call["DataExportTag"] == "T007_call" and call["RecodeValues"] == {str(k): str(k) for k in range(1, 7)}
    assert call["Choices"]["1"]["Display"] == "1 - certainly real" and spec.trial(7).image_file in call["QuestionText"]
    assert call["Validation"]["Settings"]["ForceResponse"] == "ON"
    why = questions[spec.qid(7, "why")]
    assert why["DataExportTag"] == "cue_007" and why["QuestionType"] == "TE"
    assert why["Validation"]["Settings"]["ForceResponse"] == "OFF"
    flow = next(e for e in qsf["SurveyElements"] if e["Element"] == "FL")["Payload"]["Flow"]
    assert [f["ID"] for f in flow[1:-1]] == [b["ID"] for b in pages]  # fixed order without --shuffle-pages


def test_txt_key_preview_readme(env):
    _, spec, tmp = env
    txt = (tmp / "pack" / "upload" / "survey.txt").read_text()
    assert txt.count("[[Block:Trial ") == 60 and txt.count("[[ID:T") == 60 and txt.count("[[ID:cue_") == 60
    assert "[[ID:rater_specialty]]" in txt and "[[ID:rater_years]]" in txt
    assert "[[Choice:6]]\n6 - certainly synthetic" in txt
    with open(tmp / "pack" / "answer_key.csv") as fh:
        key = list(csv.DictReader(fh))
    assert [(int(r["trial"]), r["source"], r["image_file"]) for r in key] == \
        [(i.trial, i.source, i.image_file) for i in spec.items]
    preview = (tmp / "pack" / "preview.html").read_text()
    assert preview.count('<section class="page"') == 62 and preview.count('name="t1_call"') == 6
    readme = (tmp / "pack" / "README.md").read_text()
    assert "Force response" in readme and "-99" in readme  # the TXT caveat and the -99 export option
    assert "specialty and years of experience" in readme


def test_an_edited_pack_is_refused(env, tmp_path):
    study, _, _ = env
    spec = build_single_pack(study, tmp_path / "p", groups=GROUPS, count=6, seed=2, size=32)
    shutil.copytree(tmp_path / "p", tmp_path / "copy")
    key = tmp_path / "p" / "answer_key.csv"
    key.write_text(key.read_text().replace("real", "REAL", 1))
    with pytest.raises(CspineError, match="edited after export: answer_key.csv was changed"):
        load_single_pack(study, tmp_path / "p")
    with pytest.raises(CspineError, match="edited after export"):
        load_single_pack(study, spec.pack_id)


def test_refusals(env, tmp_path):
    study, _, _ = env
    with pytest.raises(CspineError, match="no synthetic images from checkpoint '999'"):
        build_single_pack(study, tmp_path / "a", groups=["ckpt:999"], count=4)
    with pytest.raises(CspineError, match="not ckpt:STEP"):
        build_single_pack(study, tmp_path / "b", groups=["latest:x"], count=4)
    with pytest.raises(CspineError, match="group checkpoint 2000 has 18 accepted images"):
        build_single_pack(study, tmp_path / "c", groups=["2000"], count=40)
    with pytest.raises(CspineError, match="the groups must differ"):
        build_single_pack(study, tmp_path / "d", groups=["2000", "ckpt:2000"], count=4)
    with pytest.raises(CspineError, match="share 18 images"):  # a run of that checkpoint: not disjoint
        build_single_pack(study, tmp_path / "e", groups=["2000", "run:ckpt-2000"], count=4)


# -- import -----------------------------------------------------------------------------------------

def test_import_formats_agree_and_minus_99_is_seen_not_answered(env, tmp_path):
    study, _, _ = env
    spec = build_single_pack(study, tmp_path / "p", groups=GROUPS, count=10, seed=5, size=32, free_text=True)
    readers = simulate_single_readers(spec, 3, seed=4, unanswered=0.2)
    readers[0].specialty = None  # the questionnaire seen and left unanswered too
    n_seen = sum(v is None for r in readers for a in r.answers.values() for v in a.values()) + 1
    assert n_seen > 1
    summaries = []
    for k, (legacy, text) in enumerate([(False, False), (True, True), (False, True)]):
        s2 = build_single_pack(study, tmp_path / f"q{k}", groups=GROUPS, count=10, seed=5, size=32, free_text=True)
        summaries.append(_import(study, s2, tmp_path, f"f{k}", readers, legacy=legacy, choice_text=text))
        rows = study.store.query("SELECT trial, confidence, condition_answer FROM single_answers WHERE pack_id = ? "
                                 "ORDER BY rater_id, trial", [s2.pack_id])
        if k == 0:
            first = rows
        assert sorted(map(str, rows)) == sorted(map(str, first))  # the same answers whatever the export options
    assert [s["seen_unanswered"] for s in summaries] == [n_seen] * 3
    assert [s["questionnaire"] for s in summaries] == [3] * 3
    assert summaries[1]["format"] == "qualtrics-legacy-2-header" and summaries[1]["values"] == "choice text"
    assert any("-99" in f for f in summaries[0]["flags"])
    pack_id = summaries[0]["pack_id"]
    seen = study.store.query("SELECT rater_id, trial, question FROM seen_unanswered WHERE pack_id = ?", [pack_id])
    assert len(seen) == n_seen and {u["question"] for u in seen} <= {"call", "cond", "rater_specialty"}
    assert [u["trial"] for u in seen if u["question"] == "rater_specialty"] == [0]
    answered = {(a["rater_id"], a["trial"]) for a in study.store.query(
        "SELECT rater_id, trial FROM single_answers WHERE pack_id = ? AND confidence IS NOT NULL", [pack_id])}
    assert not {(u["rater_id"], u["trial"]) for u in seen if u["question"] == "call"} & answered
    comments = study.store.column("SELECT text FROM trial_comments WHERE pack_id = ? ORDER BY rater_id, trial",
                                  [pack_id])
    assert comments == [c for r in readers for _, c in sorted(r.comments.items())] and comments  # verbatim
    raters = study.store.query("SELECT label, specialty, years_experience FROM raters WHERE pack_id = ? "
                               "ORDER BY label", [pack_id])
    assert [(r["specialty"], r["years_experience"]) for r in raters] == \
        [(SPECIALTIES[r.specialty - 1] if r.specialty else None, r.years) for r in readers]


def test_import_excludes_previews_and_partials_and_is_idempotent(env, tmp_path):
    study, _, _ = env
    spec = build_single_pack(study, tmp_path / "p", groups=GROUPS, count=6, seed=6, size=32)
    extra = [SingleResponse(rater_code=r.rater_code, response_id=r.response_id, finished=r.finished,
                            status=r.status, channel=r.channel, recorded=r.recorded,
                            answers={t: {"call": 3} for t in range(1, 7)} if r.finished else {1: {"call": 2}})
             for r in preview_and_partial(spec)]
    readers = simulate_single_readers(spec, 2, seed=1)
    dup = SingleResponse("simulated-rater-1", "R_dupdupdupdupdup", {t: {"call": 6} for t in range(1, 7)},
                         recorded="2025-02-01 00:00:00")
    path = write_single_qualtrics_csv(tmp_path / "r.csv", spec, readers + extra + [dup])
    s = import_single_ratings(study, path, spec.pack_id)
    assert s["used"] == 2 and s["excluded"]["preview"] == 1 and s["excluded"]["incomplete"] == 1
    assert s["excluded"]["duplicate_rater"] == 1
    again = import_single_ratings(study, path, spec.pack_id)
    assert again["already_imported_as"] == s["import_id"]
    assert study.store.scalar("SELECT count(*) FROM single_answers WHERE pack_id = ?", [spec.pack_id]) == 12


def test_import_refuses_what_does_not_fit(env, tmp_path):
    study, _, _ = env
    spec = build_single_pack(study, tmp_path / "p", groups=GROUPS, count=6, seed=7, size=32)
    other = build_single_pack(study, tmp_path / "o", groups=GROUPS, count=8, seed=7, size=32)
    path = write_single_qualtrics_csv(tmp_path / "big.csv", other, simulate_single_readers(other, 1))
    with pytest.raises(CspineError, match="has questions for image"):
        import_single_ratings(study, path, spec.pack_id)
    bad = write_single_qualtrics_csv(tmp_path / "bad.csv", spec, simulate_single_readers(spec, 1))
    with open(bad, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh))
    rows[3][rows[0].index("T001_call")] = "7"
    with open(bad, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    with pytest.raises(CspineError, match="'7' is not a confidence 1-6"):
        import_single_ratings(study, bad, spec.pack_id)
    assert study.store.scalar("SELECT count(*) FROM raters WHERE pack_id = ?", [spec.pack_id]) == 0


# -- analysis: a clearly worse group is found, equal groups are not --------------------------------

def test_a_clearly_worse_group_is_found(env):
    study, spec, tmp = env
    readers = simulate_single_readers(spec, 8, seed=21, detectability={"2000": 0.2, "4000": 2.0})
    _import(study, spec, tmp, "worse", readers)
    res = analyze_single(study, spec.pack_id, report_dir=tmp / "report-worse", reps=500)
    groups = {g["group"]: g for g in res["per_group"]}
    assert groups["4000"]["auc_vs_real"]["bootstrap95"][0] > 0.5  # readers tell it from real images
    assert groups["4000"]["called_synthetic"]["estimate"] > groups["2000"]["called_synthetic"]["estimate"]
    pair = _pairs(res)[("2000", "4000")]
    assert pair["p_holm"] < 0.05 and pair["difference"] < 0
    assert res["model"]["method"].startswith("BinomialBayesMixedGLM")
    effects = {e["term"]: e for e in res["model"]["effects"]}
    assert effects["group 4000 (vs real)"]["log_odds"] > effects["group 2000 (vs real)"]["log_odds"] + 1
    assert "years of experience (per 10)" in effects  # every reader answered the questionnaire: a covariate
    strata = {(x["by"], x["value"]): x for x in res["strata"]}
    assert strata[("specialty", "Neuroradiology")]["readers"] + strata[("specialty", "Spine surgery")]["readers"] == 8
    neuro = [x for x in res["per_reader"] if x["specialty"] == "Neuroradiology"]
    assert strata[("specialty", "Neuroradiology")]["accuracy"]["k"] == sum(x["accuracy"]["k"] for x in neuro)
    assert sum(x["readers"] for x in res["strata"] if x["by"] == "experience") == 8
    report = (tmp / "report-worse" / "report.md").read_text()
    assert "SIMULATED DATA" in report and "What gave it away?" in report and "roc.png" in report
    assert "## Power" in report and res["power"]["design"] == "single" and res["power"]["readers"] == 8
    assert res["pooled"]["accuracy"]["binomial_p_vs_half"] < 0.05
    assert (tmp / "report-worse" / "roc.svg").is_file() and (tmp / "report-worse" / "confidence_violins.png").is_file()
    assert latest_single_analysis(study, spec.pack_id)["analysis_id"] == res["analysis_id"]


def test_no_difference_is_not_found(env, tmp_path):
    study, _, _ = env
    spec = build_single_pack(study, tmp_path / "p", groups=GROUPS, count=60, seed=12, size=32)
    readers = simulate_single_readers(spec, 8, seed=22, detectability={"2000": 0.0, "4000": 0.0})
    _import(study, spec, tmp_path, "null", readers)
    res = analyze_single(study, spec.pack_id, report_dir=tmp_path / "r", reps=500)
    assert all(c["p_holm"] >= 0.05 for c in res["group_comparisons"])  # real and both groups alike
    assert res["pooled"]["auc"]["bootstrap95"][0] < 0.5 < res["pooled"]["auc"]["bootstrap95"][1]


def test_conditions_consistency_and_model_with_condition(env, tmp_path):
    from core.realset.labels import replace_labels

    study, _, _ = env
    real_ids = study.store.column("SELECT id FROM real_images ORDER BY id")
    replace_labels(study, "lab1", "attributes", file=None, file_sha256=None, summary={},
                   attributes=[(i, "curvature", ["lordotic", "straight"][k % 2], None)
                               for k, i in enumerate(real_ids)])
    for k, i in enumerate(study.store.column("SELECT id FROM synthetic_images ORDER BY id")):
        study.store.execute("UPDATE synthetic_images SET condition = ? WHERE id = ?",
                            [json.dumps({"attributes": {"curvature": ["lordotic", "straight"][k % 2]}}), i])
    spec = build_single_pack(study, tmp_path / "p", groups=GROUPS, count=40, seed=13, size=32,
                             condition_attribute="curvature")
    assert all(i.condition in ("lordotic", "straight") for i in spec.items)
    qsf = (tmp_path / "p" / "upload" / "survey.qsf").read_text()
    assert qsf.count("Does this image show curvature: ") == 40 * 3  # text, description, SecondaryAttribute
    readers = simulate_single_readers(spec, 4, seed=3, detectability={"4000": 1.5},
                                      consistency={"real": 0.95, "2000": 0.9, "4000": 0.2})
    _import(study, spec, tmp_path, "cond", readers, choice_text=True)
    res = analyze_single(study, spec.pack_id, report_dir=tmp_path / "r", reps=200)
    cells = {(c["group"], c["value"]): c for c in res["conditions"]}
    assert {g for g, _ in cells} == {"real", *SOURCES}
    expected = {(s, i.condition): 0 for i in spec.items for s in [i.source]}
    for r in readers:  # the yes answers, counted from the simulated responses themselves
        for i in spec.items:
            expected[(i.source, i.condition)] += r.answers[i.trial]["cond"] == "yes"
    assert {k: c["yes"] for k, c in cells.items()} == expected
    assert cells[("4000", "lordotic")]["estimate"] < cells[("2000", "lordotic")]["estimate"]
    assert "C(condition)" in res["model"]["formula"]


def test_design_dispatch(env, tmp_path):
    study, spec, tmp = env
    assert design_of(study, tmp / "pack") == "single" and design_of(study, spec.pack_id) == "single"
    assert design_of(study, "pack-that-does-not-exist") == "quartets"  # the quartet loader names the error


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")
def test_preview_loads_every_image_in_headless_chromium(env, tmp_path):
    _, spec, tmp = env
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom"]
    dom = subprocess.run(flags + [(tmp / "pack" / "preview.html").resolve().as_uri() + "#q3"], capture_output=True,
                         text=True, timeout=120).stdout
    total = re.search(r'data-images-total="(\d+)"', dom)
    loaded = re.search(r'data-images-loaded="(\d+)"', dom)
    assert total and loaded, dom[:500]
    assert int(total.group(1)) == int(loaded.group(1)) == spec.count
