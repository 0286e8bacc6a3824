"""The whole reader study end to end: pack -> Qualtrics CSV -> import -> analysis -> report.

The paper fixture (tests/factories/survey.py) goes through the real import path and must come out with the
published numbers; simulated raters must come out labelled as such.
"""

from __future__ import annotations

import json

import pytest

from core.reader_study import analysis

from core.reader_study import responses

from core.reader_study import statistics

from core.reader_study import pack
from core.demo import raters
from core.errors import CspineError
from core.demo.raters import SimulatedResponse, write_qualtrics_csv
from tests.factories.survey import GROUPS, paper_ratings, tiny_study
STEPS = GROUPS[1:]
REQUIRED = {"n_raters", "n_quartets", "n_trials", "accuracy", "accuracy_ci95", "binomial_p_vs_chance",
            "fleiss_kappa", "mean_realism", "wilcoxon"}


@pytest.fixture(scope="module")
def paper_study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("paper")
    study = tiny_study(tmp, n_real=50, per_ckpt=50, steps=tuple(int(s) for s in STEPS), reject_every=1000)
    spec = pack.build_pack(study, tmp / "pack", checkpoints=list(STEPS), count=50, seed=2510, size=32)
    pos = {(i.quartet, i.source): i.position for i in spec.items}
    data = paper_ratings()
    by_rater: dict[str, SimulatedResponse] = {}
    for n, rater in enumerate(sorted({r for r, *_ in data.ratings}, key=lambda s: int(s[5:]))):
        by_rater[rater] = SimulatedResponse(f"R{n + 1}", f"R_paper{n + 1:010d}",
                                            recorded=f"2025-03-0{1 + n % 8} 10:00:00")
    for rater, q, group, value in data.ratings:
        by_rater[rater].ratings[(q, pos[(q, group)])] = value
    for rater, q, group in data.picks:
        by_rater[rater].picks[q] = pos[(q, group)]
    csv_path = write_qualtrics_csv(tmp / "responses.csv", spec, list(by_rater.values()))
    summary = responses.import_ratings(study, csv_path)
    assert summary["used"] == 8
    return study, spec, tmp


def test_paper_numbers_through_the_import(paper_study):
    study, spec, tmp = paper_study
    res = analysis.analyze(study, report_dir=tmp / "report-paper")
    assert REQUIRED <= set(res)
    assert (res["n_raters"], res["n_quartets"], res["n_trials"], res["n_correct"]) == (8, 50, 400, 116)
    assert res["accuracy"] == 0.29 and statistics.fmt(100 * res["accuracy"], 1) == "29.0"
    assert [statistics.fmt(res["mean_realism"][g]) for g in GROUPS] == ["3.323", "3.228", "3.258", "3.320"]
    assert res["mean_realism_exact"] == {"real": "1329/400", "68000": "1291/400", "80000": "1303/400",
                                         "160000": "83/25"}
    tests = res["wilcoxon"]
    assert [t["group"] for t in tests] == list(STEPS)
    assert [t["statistic_V"] for t in tests] == [23.5, 16.5, 18.5]  # R 4.2.2 on the same sums
    assert [statistics.fmt(t["p"]) for t in tests] == ["0.128", "0.236", "1.000"]
    assert [statistics.fmt(t["p_holm"]) for t in tests] == ["0.383", "0.471", "1.000"]
    assert all(t["method"].startswith("normal") for t in tests)
    assert res["simulated_raters"] == 0
    assert res["fleiss_kappa"] == res["fleiss_kappa_by_coding"]["source"]["kappa"]
    assert res["kappa_quartets"] == 50
    # the report
    md = (tmp / "report-paper" / "report.md").read_text()
    html = (tmp / "report-paper" / "report.html").read_text()
    assert "SIMULATED" not in md
    assert "| identification accuracy | 29.0% (116/400" in md
    assert "Holm's procedure adjusted for the three comparisons (adjusted p = 0.383, 0.471, 1.000)" in md
    assert "overall mean 3.323" in md and "<table>" in html and 'src="realism_rater_means.svg"' in html
    for name in ("realism_rater_means.png", "realism_rater_means.svg", "realism_all_ratings.png",
                 "analysis.json"):
        assert (tmp / "report-paper" / name).stat().st_size > 1000
    row = study.store.query_one("SELECT * FROM analyses WHERE id = ?", [res["analysis_id"]])
    assert json.loads(row["result"])["n_trials"] == 400
    assert analysis.latest_analysis(study)["analysis_id"] == res["analysis_id"]


def test_kappa_codings_differ_only_in_chance_agreement(paper_study):
    study, spec, tmp = paper_study
    res = analysis.analyze(study, kappa_coding="position", report_dir=tmp / "report-position")
    k = res["fleiss_kappa_by_coding"]
    assert res["fleiss_kappa"] == k["position"]["kappa"]
    assert k["source"]["p_bar"] == pytest.approx(k["position"]["p_bar"])  # same answers, same agreement
    assert k["source"]["p_e"] != pytest.approx(k["position"]["p_e"])
    assert k["correct"]["categories"] == ["correct", "incorrect"]
    with pytest.raises(CspineError, match="unknown kappa coding"):
        analysis.analyze(study, kappa_coding="letters")


def test_cli_analyze_json_is_one_document(paper_study, capsys):
    from cspine_tui.cli.main import main

    study, spec, tmp = paper_study
    assert main(["analyze", "--study", str(study.root), "--json", "--report", str(tmp / "report-cli")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert REQUIRED <= set(data)
    assert set(data["mean_realism"]) == {"real", *STEPS}
    assert {"group", "statistic_V", "p", "p_holm"} <= set(data["wilcoxon"][0])
    assert data["accuracy_ci95"][0] < 0.29 < data["accuracy_ci95"][1]
    assert main(["analyze", "--study", str(study.root), "--report", str(tmp / "report-cli")]) == 2
    assert "not empty" in capsys.readouterr().err


def test_simulated_raters_end_to_end(tmp_path):
    study = tiny_study(tmp_path, n_real=12, per_ckpt=12, reject_every=1000)
    spec = pack.build_pack(study, tmp_path / "pack", checkpoints=["2000", "4000", "6000"], count=12, seed=1,
                             size=32)
    sims = raters.simulate_raters(spec, 8, seed=5) + raters.preview_and_partial(spec)
    s = responses.import_ratings(study, write_qualtrics_csv(tmp_path / "sim.csv", spec, sims))
    assert s["used"] == 8 and s["simulated_raters"] == 8
    assert s["excluded"]["preview"] == 1 and s["excluded"]["incomplete"] == 1
    assert study.store.scalar("SELECT bool_and(simulated) FROM raters")
    ratings = study.store.column("SELECT rating FROM ratings")
    assert sum(r >= 3 for r in ratings) / len(ratings) > 0.7  # mostly 3-4, like the experts
    res = analysis.analyze(study)
    assert res["simulated_raters"] == 8 and 0.05 < res["accuracy"] < 0.6
    md = open(res["report"]["markdown"]).read()
    assert "**SIMULATED DATA.**" in md and "(8 of them SIMULATED" in md
    assert res["report"]["dir"].startswith(str(study.exports_dir.resolve()))
    with pytest.raises(CspineError, match="no imported ratings"):
        analysis.analyze(study, include_simulated=False)


def test_one_rater_has_no_kappa(tmp_path):
    study = tiny_study(tmp_path, n_real=4, per_ckpt=4, reject_every=1000)
    spec = pack.build_pack(study, tmp_path / "pack", checkpoints=["2000", "4000", "6000"], count=4, seed=1,
                             size=32)
    one = SimulatedResponse("R1", "R_one", picks={q: 1 for q in range(1, 5)},
                            ratings={(q, p): 3 for q in range(1, 5) for p in range(1, 5)})
    responses.import_ratings(study, write_qualtrics_csv(tmp_path / "one.csv", spec, [one]))
    res = analysis.analyze(study)
    assert res["fleiss_kappa"] is None and "at least two raters" in " ".join(res["warnings"])
    assert all(t["p"] is None and t["p_holm"] is None for t in res["wilcoxon"])  # all zero: R gives NA
    assert "n/a" in open(res["report"]["markdown"]).read()


def test_demo_stage_skips_clearly_then_runs_once(tmp_path, monkeypatch):
    monkeypatch.setattr(raters, "DEMO_QUARTETS", 6)
    monkeypatch.setattr(raters, "DEMO_SIZE", 32)
    logs: list[str] = []
    small = tiny_study(tmp_path / "small", n_real=8, per_ckpt=4, reject_every=1000)
    small.store.execute("UPDATE synthetic_runs SET name = 'demo-s' || checkpoint_step")  # the demo's run names
    raters.demo_reader_study(small, logs.append)
    assert "reader study skipped" in logs[-1] and "2000: 4" in logs[-1]
    assert small.store.scalar("SELECT count(*) FROM quartet_packs") == 0
    study = tiny_study(tmp_path / "ok", n_real=8, per_ckpt=8, reject_every=1000)
    logs.clear()
    raters.demo_reader_study(study, logs.append)  # runs the demo did not make are not its to draw from
    assert "reader study skipped" in logs[-1]
    study.store.execute("UPDATE synthetic_runs SET name = 'demo-s' || checkpoint_step")  # the demo's run names
    raters.demo_reader_study(study, logs.append)
    assert any("8 SIMULATED raters" in m for m in logs) and "report" in logs[-1]
    raters.demo_reader_study(study, logs.append)  # idempotent: nothing new
    for table, n in (("quartet_packs", 1), ("rating_imports", 1), ("raters", 8), ("analyses", 1)):
        assert study.store.scalar(f"SELECT count(*) FROM {table}") == n
    assert study.store.scalar("SELECT bool_and(simulated) FROM raters")
    assert study.store.scalar("SELECT min(label) FROM raters").startswith("simulated-rater-")
