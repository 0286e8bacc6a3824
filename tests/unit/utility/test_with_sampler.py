"""The benchmark and the check read the conditions the conditional sampler stores (core/ddpm/sampling.py): a
keypoint-conditioned checkpoint's 32 px images beside 64 px real films, through the real sampling job."""

from __future__ import annotations

from pathlib import Path

from core.ddpm.conditioning import build_spec
from core.ddpm.sampling import sample_params
from core.jobs import runner
from core.screening import decisions
from core.study import Study
from core.utility import benchmark, check
from tests.factories.conditioned import add_labelled_images
from tests.factories.sample import make_checkpoint


def test_sampled_conditions_label_the_synthetic_set(tmp_path: Path) -> None:
    study = Study.create(tmp_path / "study", preset="tiny")
    add_labelled_images(study, n=16, size=64)
    spec = build_spec(study, "keypoints", drop=0.1, sigma=None, image_size=32, selection="train")
    make_checkpoint(study, condition=spec.to_dict())  # untrained: the test is about labels, not looks
    study.store.execute("UPDATE jobs SET params = '{\"data\": \"train\"}' WHERE id = 'train-fake'")
    params = sample_params(study, checkpoint=200, device="cpu", batch=3, seed=11, count=6, sampler="ddim", steps=2,
                           run="cond")
    assert runner.run_job(study, runner.create_job(study, "sample", params))["state"] == "succeeded"
    ids = study.store.column("SELECT id FROM synthetic_images WHERE run_id = 'cond'")
    decisions.apply_events(study, [decisions.ReviewEvent("accept", "ann", i) for i in ids])

    p = benchmark.utility_params(study, task="landmarks", train=["synthetic", "real"], runs=["cond"], size=32,
                                 arch="resnet10", steps=2, batch=4, boot=50)
    record = runner.run_job(study, runner.create_job(study, "utility", p))
    assert record["state"] == "succeeded", record["error"]
    syn = next(r for r in record["result"]["results"] if r["unit"] == "synthetic")
    assert syn["n_synthetic"] == 6 and record["result"]["canonical"] == 64

    c = check.check_params(study, runs=["cond"], arch="resnet10", size=32, steps=2, batch=4)
    assert c["tasks"] == ["landmarks"]
    done = runner.run_job(study, runner.create_job(study, "condition_check", c))
    assert done["state"] == "succeeded", done["error"]
    assert done["result"]["tasks"]["landmarks"]["all"]["n"] == 6
    assert done["result"]["checkpoints"][0]["train_job"] == "train-fake"
