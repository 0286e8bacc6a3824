"""The condition check on phantoms: a run whose images show their condition agrees with it far better than a run
conditioned on a lie, and the agreement lands beside FID (metrics table and the training job's metrics.jsonl)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.errors import CspineError
from core.jobs import runner
from core.study import Study
from core.utility import check, report, results
from tests.factories.utility import add_phantom_run, balanced_seeds, phantom_study

SIZE = 32
DISPLACE = 10.0  # px at 32 px: the lie's keypoints sit a third of the image lower


@pytest.fixture(scope="module")
def checked(tmp_path_factory) -> dict:
    study = Study.create(tmp_path_factory.mktemp("check") / "study")
    info = phantom_study(study, n_train=24, n_val=8, n_syn=12, mirror=True, size=SIZE)
    seeds = balanced_seeds(12, info["seeds"][-1] + 1, SIZE)
    add_phantom_run(study, "lie", seeds, SIZE, job=info["job"], step=200, displace=DISPLACE, swap_facing=True,
                    mirror=True)
    params = check.check_params(study, tasks=["facing", "landmarks"], arch="resnet10", steps=30, batch=16)
    record = runner.run_job(study, runner.create_job(study, "condition_check", params))
    assert record["state"] == "succeeded", record["error"]
    return {"study": study, "job": info["job"], "record": record}


def test_truthful_images_agree_with_their_condition_and_lies_do_not(checked: dict) -> None:
    tasks = checked["record"]["result"]["tasks"]
    facing, marks = tasks["facing"]["runs"], tasks["landmarks"]["runs"]
    # Mirror images are learnt in a few steps: the truthful run agrees with most conditions, the lie (every
    # facing swapped) with few; the two are complements, so any checker better than chance separates them.
    assert facing["syn"]["value"] - facing["lie"]["value"] >= 0.5
    assert facing["syn"]["per_value"].keys() == {"left", "right"}
    # A checker whose error on real films is e px is at least DISPLACE - e px off the displaced layout.
    ref = tasks["landmarks"]["reference"]["value"]
    assert marks["syn"]["value"] < marks["lie"]["value"] - 3
    assert marks["lie"]["value"] >= DISPLACE - ref


def test_agreement_is_recorded_per_checkpoint_beside_fid(checked: dict) -> None:
    study, job = checked["study"], checked["job"]
    rows = {(r["job_id"], r["step"], r["name"]): r for r in results.latest_checks(study)}
    assert set(rows) == {(job, s, n) for s in (100, 200) for n in ("cond_accuracy", "cond_landmark_px")}
    assert rows[(job, 100, "cond_accuracy")]["value"] > rows[(job, 200, "cond_accuracy")]["value"]
    assert rows[(job, 200, "cond_landmark_px")]["details"]["runs"] == ["lie"]
    lines = [json.loads(x) for x in (runner.run_dir(study, job) / "metrics.jsonl").read_text().splitlines()]
    assert {ln["step"] for ln in lines} == {100, 200}
    assert all("cond_accuracy" in ln and "cond_landmark_px" in ln for ln in lines)
    section = report.markdown_section(study)
    assert "### Does each image show its condition?" in section and section.count(f"| {job} |") == 4
    per_image = study.store.query("SELECT task, count(*) AS n FROM condition_checks GROUP BY task ORDER BY task")
    assert per_image == [{"task": "facing", "n": 24}, {"task": "landmarks", "n": 24}]


def test_unconditional_runs_are_refused(tmp_path: Path) -> None:
    study = Study.create(tmp_path / "study")
    info = phantom_study(study, n_train=4, n_val=2, n_syn=2)
    study.store.execute("UPDATE synthetic_images SET condition = NULL")
    with pytest.raises(CspineError, match="generated for a condition"):
        check.check_params(study)
    assert info["job"]


def test_landmark_errors_are_in_canonical_pixels_whatever_the_run_size() -> None:
    """A 32 px image 1.5 px off (3-4-5 triangle, scaled) is 3 px off at a 64 px canonical size."""
    import numpy as np

    from core.utility.data import LabelledSet

    pts = np.array([[[0.5, 0.5]]], np.float32)
    s = LabelledSet(["i"], [""], "synthetic", points=pts, mask=np.ones((1, 1), bool), native=[32])
    out = (pts + np.array([0.9, 1.2]) / 32).reshape(1, -1)
    space = {"task": "landmarks", "points": ["C3_body"]}
    assert check._verdicts(space, s, out, 64)[0]["error_px"] == pytest.approx(3.0, abs=1e-4)
    assert check._verdicts(space, s, out, 32)[0]["error_px"] == pytest.approx(1.5, abs=1e-4)
