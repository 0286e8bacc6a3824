"""The utility job on labelled phantoms: reproducible from its seed (a paused and resumed job included), refuses a
generator that saw the test images, learning-curve subsets, results in the store."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import CspineError
from core.jobs import runner
from core.study import Study
from core.utility import benchmark, report, results
from tests.factories.utility import phantom_study

TINY = {"arch": "resnet10", "steps": 6, "batch": 8, "boot": 200}


@pytest.fixture
def pstudy(tmp_path: Path) -> Study:
    study = Study.create(tmp_path / "study")
    phantom_study(study, n_train=16, n_val=10, n_syn=12)
    return study


def _numbers(result: dict) -> list:
    return [(r["unit"], r["metric"], r["value"], r["lo"], r["hi"]) for r in result["results"]] + \
        [(c["a"], c["b"], c["metric"], c["diff"], c["lo"], c["hi"], c["p"]) for c in result["comparisons"]]


def _run(study: Study, params: dict, pause_at: int | None = None) -> dict:
    job = runner.create_job(study, "utility", params)
    hook = None
    if pause_at is not None:
        def hook(done: float, total: int, message: str) -> None:
            if done >= pause_at:
                (runner.run_dir(study, job) / "pause").touch()
    record = runner.run_job(study, job, on_progress=hook)
    if pause_at is not None:
        assert record["state"] == "paused"
        assert (runner.run_dir(study, job) / "units" / "synthetic.json").exists()
        record = runner.run_job(study, job)
    assert record["state"] == "succeeded", record["error"]
    return record


def test_same_seed_same_numbers_even_across_a_pause(pstudy: Study) -> None:
    params = benchmark.utility_params(pstudy, task="curve", seed=3, **TINY)
    first = _run(pstudy, params)["result"]
    # Paused in the middle of the second unit (after step 2 of 6), then resumed from its saved state.
    resumed = _run(pstudy, params, pause_at=TINY["steps"] + 2)["result"]
    other = _run(pstudy, {**params, "seed": 4})["result"]
    assert _numbers(first) == _numbers(resumed)
    assert _numbers(first) != _numbers(other)
    units = {r["unit"] for r in first["results"]}
    assert units == {"synthetic", "real@1", "mixed@1"}
    assert {c["method"] for c in first["comparisons"] if c["metric"] == "auroc"} == {"DeLong"}
    assert {c["method"] for c in first["comparisons"] if c["metric"] == "accuracy"} == {"paired bootstrap"}
    for r in first["results"]:
        assert r["lo"] <= r["value"] <= r["hi"] and r["n_test"] == 10


def test_landmarks_learning_curve_and_stored_results(pstudy: Study) -> None:
    params = benchmark.utility_params(pstudy, task="landmarks", train=["real", "mixed:0.5"], fractions=[0.5, 1],
                                      mm_per_px=0.8, **TINY)
    record = _run(pstudy, params)
    result = record["result"]
    rows = {(r["unit"], r["metric"]): r for r in result["results"]}
    assert {u for u, _ in rows} == {"real@0.5", "real@1", "mixed:0.5@0.5", "mixed:0.5@1"}
    assert rows[("real@0.5", "mre_px")]["n_real"] == 8 and rows[("mixed:0.5@0.5", "mre_px")]["n_synthetic"] == 4
    assert rows[("real@1", "mre_mm")]["value"] == pytest.approx(0.8 * rows[("real@1", "mre_px")]["value"])
    assert result["thresholds_px"] == [0.25, 0.5]  # 2 and 4 px at 256, at a 32 px canonical size
    stored = results.job_results(pstudy, record["id"])
    assert len(stored["results"]) == len(result["results"])
    assert len(stored["comparisons"]) == len(result["comparisons"]) == 2 * 4  # 2 fractions x 4 metrics
    curves = results.learning_curves(stored["results"], "mre_px")
    assert [pt[0] for pt in curves["real"]] == [0.5, 1.0]
    assert results.benchmark_jobs(pstudy)[0]["id"] == record["id"]
    section = report.markdown_section(pstudy)
    assert section.startswith("## Utility of the synthetic images") and f"`{record['id']}`" in section
    assert section.count("| mixed:0.5@1 | 16 | 8 | ") == 4  # its four metrics, one row each
    assert "paired bootstrap" in section


def test_no_benchmark_no_report_section(tmp_path: Path) -> None:
    assert report.markdown_section(Study.create(tmp_path / "study")) == ""


def test_real_subsets_are_nested_and_mixing_ratio_is_kept() -> None:
    small, _ = benchmark.training_rows(40, 30, "real", None, 0.25, 0, "real@0.25")
    big, _ = benchmark.training_rows(40, 30, "real", None, 0.5, 0, "real@0.5")
    assert (small, big) == (10, 20)  # prefixes of one seeded order: the 25% set is inside the 50% set
    n_real, syn = benchmark.training_rows(40, 30, "mixed", 2.0, 0.25, 0, "mixed:2@0.25")
    assert n_real == 10 and len(syn) == 20 and len(set(syn)) == 20
    assert len(benchmark.training_rows(40, 30, "mixed", None, 0.25, 0, "k")[1]) == 30
    assert benchmark.training_rows(40, 30, "synthetic", None, 0.0, 0, "synthetic")[0] == 0


def test_refuses_a_generator_trained_on_every_image(tmp_path: Path) -> None:
    study = Study.create(tmp_path / "study")
    info = phantom_study(study, n_train=6, n_val=4, n_syn=4, data="all")
    with pytest.raises(CspineError, match=f"{info['job']}, trained with --data all"):
        benchmark.utility_params(study, task="curve")
    # Real images only: no generator, nothing to refuse.
    assert benchmark.utility_params(study, task="curve", train=["real"])["runs"] == []


def test_refuses_generators_of_unknown_data_unless_trusted(pstudy: Study) -> None:
    job = pstudy.store.scalar("SELECT train_job FROM synthetic_runs")
    pstudy.store.execute("UPDATE jobs SET kind = 'imported' WHERE id = ?", [job])
    with pytest.raises(CspineError, match=f"{job} is an imported checkpoint"):
        benchmark.utility_params(pstudy, task="curve")
    pstudy.store.execute("UPDATE synthetic_runs SET train_job = 'train-gone'")
    with pytest.raises(CspineError, match="train-gone is not in this study"):
        benchmark.utility_params(pstudy, task="curve")
    pstudy.store.execute("UPDATE synthetic_runs SET train_job = NULL, source = 'external'")
    with pytest.raises(CspineError, match="no training job with a known data selection \\(an external set\\)"):
        benchmark.utility_params(pstudy, task="curve")
    assert benchmark.utility_params(pstudy, task="curve", trust_external=True)["runs"] == ["syn"]


@pytest.mark.parametrize("arm", ["mixed:0", "mixed:x", "real:2", "fake"])
def test_bad_arms_are_one_line_errors(arm: str) -> None:
    with pytest.raises(CspineError, match="--train"):
        benchmark.parse_arm(arm)


def test_unknown_task_and_unscreened_runs_are_refused(pstudy: Study) -> None:
    with pytest.raises(CspineError, match="no attribute 'age'"):
        benchmark.utility_params(pstudy, task="age")
    pstudy.store.execute("DELETE FROM reviews")
    with pytest.raises(CspineError, match="no accepted images"):
        benchmark.utility_params(pstudy, task="curve")


def test_cli_refuses_a_leaking_generator_in_one_line(tmp_path: Path, capsys) -> None:
    from cspine_tui.cli.main import main

    study = Study.create(tmp_path / "study")
    phantom_study(study, n_train=6, n_val=4, n_syn=4, data="all")
    assert main(["utility", "--study", str(study.root), "--task", "curve", "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("error: run 'syn' comes from train-")
    assert study.store.scalar("SELECT count(*) FROM jobs WHERE kind = 'utility'") == 0
