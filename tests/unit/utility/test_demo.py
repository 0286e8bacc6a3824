"""The demo's utility stage on a small labelled phantom study: benchmark and condition check, idempotent."""

from __future__ import annotations

from pathlib import Path

from core.study import Study
from core.utility.demo import demo_utility
from tests.factories.utility import phantom_study

SMALL = {"size": 32, "steps": 3, "batch": 8, "boot": 100, "fractions": [0.5, 1.0]}


def test_demo_stage_runs_benchmark_and_check_once(tmp_path: Path) -> None:
    study = Study.create(tmp_path / "study")
    info = phantom_study(study, n_train=8, n_val=4, n_syn=6)
    lines: list[str] = []
    # A user's conditional run in the demo study is not the demo's: real images only.
    assert {r["unit"] for r in demo_utility(study, lines.append, **SMALL)["results"]} == {"real@0.5", "real@1"}
    study.store.execute("DELETE FROM jobs WHERE kind = 'utility'")
    study.store.execute("UPDATE jobs SET params = ? WHERE id = ?", ['{"data": "train", "demo": true}', info["job"]])
    result = demo_utility(study, lines.append, **SMALL)
    assert {r["unit"] for r in result["results"]} == {"synthetic", "real@0.5", "mixed@0.5", "real@1", "mixed@1"}
    assert any("condition check landmarks" in x for x in lines) and any("condition check curve" in x for x in lines)
    check = study.store.query_one("SELECT params FROM jobs WHERE kind = 'condition_check'")
    assert '"facing"' in check["params"]  # one value on the real set: not checkable, skipped with its reason
    jobs = study.store.scalar("SELECT count(*) FROM jobs")
    again = demo_utility(study, lines.append, **SMALL)
    assert study.store.scalar("SELECT count(*) FROM jobs") == jobs and again == result


def test_demo_stage_without_labels_is_skipped(tmp_path: Path) -> None:
    lines: list[str] = []
    assert demo_utility(Study.create(tmp_path / "study"), lines.append) is None
    assert "needs the labels stage" in lines[0]


def test_demo_training_is_conditioned_on_keypoints_when_the_study_has_them(tmp_path: Path, monkeypatch) -> None:
    """The wiring the utility stage relies on: with the labels stage's keypoints, the demo's generator is
    keypoint-conditioned, so its samples carry layouts; without keypoints it is trained as before."""
    from core.ddpm import trainer
    from core.jobs import runner
    from tests.factories.conditioned import add_labelled_images
    from tests.factories.train import TINY

    monkeypatch.setattr(trainer, "DEMO_TRAIN", {**TINY, "max_steps": 1, "checkpoint_every": 1, "fid_every": 0})
    study = Study.create(tmp_path / "study")
    add_labelled_images(study, n=8, size=64)
    lines: list[str] = []
    job = trainer.demo_train(study, lines.append)
    condition = runner.job_record(study, job)["params"]["config"]["condition"]
    assert condition["points"] and any("conditioned on the keypoint layout" in x for x in lines)
