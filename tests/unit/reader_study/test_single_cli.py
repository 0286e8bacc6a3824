"""`single-images`, and `import-ratings` / `analyze` / `survey-urls` dispatching on a single-image pack, from the CLI:
a quartet pack and a single-image pack side by side in one study, each imported and analysed by its own design."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from core.demo.raters import simulate_raters, write_qualtrics_csv
from core.demo.single_raters import simulate_single_readers, write_single_qualtrics_csv
from core.reader_study.pack import build_pack
from core.reader_study.single_pack import load_single_pack
from cspine_tui.cli.main import main
from tests.factories.survey import tiny_study


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def two_designs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    study = tiny_study(tmp)
    quartets = build_pack(study, tmp / "quartets", checkpoints=["2000", "4000", "6000"], count=4, seed=1, size=32)
    code, out, err = _run(["single-images", "--study", str(study.root), "--groups", "ckpt:2000", "run:ckpt-4000",
                           "--count", "8", "--size", "32", "--seed", "3", "--free-text", "--out", str(tmp / "single"),
                           "--json"])
    assert code == 0, err
    return study, quartets, json.loads(out), err, tmp


def test_single_images_json_and_notes(two_designs):
    study, _, doc, err, tmp = two_designs
    assert doc["design"] == "single" and doc["real"] == 4 and doc["groups"] == {"2000": 2, "run:ckpt-4000": 2}
    assert doc["out"] == str((tmp / "single").resolve()) and doc["free_text"] is True
    assert "if you import upload/survey.txt instead, set by hand" in err and "Force response" in err
    assert doc["questionnaire"] is True and any("Back button" in line for line in doc["txt_limits"])
    assert load_single_pack(study, doc["pack_id"]).count == 8


def test_import_and_analyze_dispatch_on_the_design(two_designs):
    study, quartets, doc, _, tmp = two_designs
    spec = load_single_pack(study, doc["pack_id"])
    single_csv = write_single_qualtrics_csv(tmp / "single.csv", spec, simulate_single_readers(spec, 3, seed=2))
    quartet_csv = write_qualtrics_csv(tmp / "quartets.csv", quartets, simulate_raters(quartets, 3, seed=2))
    root = str(study.root)
    # no --pack: the newest pack of either design (the single-image one)
    code, out, err = _run(["import-ratings", "--study", root, str(single_csv), "--json"])
    assert code == 0, err
    assert json.loads(out)["design"] == "single" and json.loads(out)["used"] == 3
    code, out, err = _run(["import-ratings", "--study", root, "--pack", quartets.pack_id, str(quartet_csv), "--json"])
    assert code == 0, err
    assert "design" not in json.loads(out) and json.loads(out)["used"] == 3
    code, out, err = _run(["analyze", "--study", root, "--pack", str(tmp / "single"), "--report", str(tmp / "r1"),
                           "--json"])
    assert code == 0, err
    res = json.loads(out)
    assert res["design"] == "single" and res["n_raters"] == 3 and res["pooled"]["auc"]["estimate"] is not None
    code, out, err = _run(["analyze", "--study", root, "--pack", quartets.pack_id, "--report", str(tmp / "r2")])
    assert code == 0, err
    assert "identification accuracy" in out
    code, out, err = _run(["analyze", "--study", root, "--pack", doc["pack_id"], "--report", str(tmp / "r3")])
    assert code == 0 and "sensitivity" in out and "ROC AUC (mean of readers)" in out and "Holm p" in out


def test_list_all_packs_names_both_designs_newest_first(two_designs):
    from core.reader_study.designs import list_all_packs

    study, quartets, doc, _, _ = two_designs
    packs = list_all_packs(study)
    assert [(p["id"], p["design"]) for p in packs] == [(doc["pack_id"], "single"), (quartets.pack_id, "quartets")]


def test_survey_urls_rewrites_a_single_pack_and_keeps_it_verifiable(two_designs):
    study, _, doc, _, tmp = two_designs
    code, _, err = _run(["survey-urls", "--study", str(study.root), "--pack", str(tmp / "single"),
                         "--image-base-url", "https://img.example.org/s/"])
    assert code == 0, err
    assert "https://img.example.org/s/" in (tmp / "single" / "upload" / "survey.qsf").read_text()
    assert load_single_pack(study, tmp / "single").image_base_url == "https://img.example.org/s/"  # hashes re-recorded


def test_user_errors_exit_2_with_one_line(two_designs):
    study, _, _, _, tmp = two_designs
    code, _, err = _run(["single-images", "--study", str(study.root), "--groups", "ckpt:2000", "--count", "4",
                         "--condition-question", "--out", str(tmp / "c")])
    assert code == 2 and "labelled attributes: none" in err
    code, _, err = _run(["single-images", "--study", str(study.root), "--groups", "external:nope", "--count", "4",
                         "--out", str(tmp / "d")])
    assert code == 2 and "no synthetic run 'nope'" in err
