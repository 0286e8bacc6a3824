"""The study report carries the utility section when the study has a benchmark, and none when it has not."""

from __future__ import annotations

from pathlib import Path

from core.demo import raters
from core.jobs import runner
from core.reader_study import pack, responses
from core.reader_study.analysis import analyze
from core.utility import results
from tests.factories.survey import tiny_study
from tests.factories.utility import fake_benchmark


def test_reader_study_report_includes_the_utility_section(tmp_path: Path) -> None:
    study = tiny_study(tmp_path, n_real=8, per_ckpt=4, reject_every=1000)
    spec = pack.build_pack(study, tmp_path / "pack", checkpoints=["2000", "4000", "6000"], count=3, seed=1, size=32)
    csv = raters.write_qualtrics_csv(tmp_path / "sim.csv", spec, raters.simulate_raters(spec, 3, seed=1))
    responses.import_ratings(study, csv, spec.pack_id)
    before = analyze(study, spec.pack_id, report_dir=tmp_path / "before")
    assert "Utility" not in Path(before["report"]["markdown"]).read_text()
    job = fake_benchmark(study)
    status = runner.read_json(runner.run_dir(study, job) / "status.json")
    results.save(study, job, runner.job_record(study, job)["params"], status["result"])
    runner.set_state(study, job, "succeeded")
    after = analyze(study, spec.pack_id, report_dir=tmp_path / "after")
    text = Path(after["report"]["markdown"]).read_text()
    assert "## Utility of the synthetic images" in text and f"`{job}`" in text and "DeLong" in text
    assert text.index("## Utility") < text.index("## Methods")
    assert "Utility of the synthetic images" in Path(after["report"]["html"]).read_text()
