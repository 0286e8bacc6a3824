"""Samplers and sampling jobs: every sampler on a tiny model, seeds, regeneration, resume, time limits."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image

from core.jobs import control

from core.jobs import runner

from core.ddpm import synthetic
from core.errors import CspineError
from core.ddpm.networks import get_preset, lucidrains_sigmoid_betas
from core.ddpm.sampling import blocks, pending_blocks, regenerate, sample_params
from core.ddpm.samplers import (DEFAULT_FAST_SAMPLER, SAMPLERS, denoise, image_seed, make_scheduler, prepare_unet,
                           sample_batch, to_uint8)
from tests.factories.sample import MICRO, make_checkpoint


@pytest.fixture(scope="module")
def micro():
    from core.ddpm.networks import build_unet

    cfg = get_preset("tiny", **MICRO)
    torch.manual_seed(0)
    return cfg, prepare_unet(build_unet(cfg), "cpu")


# ---------------------------------------------------------------------------------------------------
# Schedulers and the batch function


@pytest.mark.parametrize("name", SAMPLERS)
def test_scheduler_uses_trained_schedule_and_trailing_steps(name):
    cfg = get_preset("tiny")
    sched = make_scheduler(name, cfg, 10)
    assert sched.config.prediction_type == "v_prediction"
    expected = np.cumprod(1 - lucidrains_sigmoid_betas(1000))
    assert np.allclose(sched.alphas_cumprod.numpy(), expected, rtol=1e-5, atol=1e-9)
    assert int(sched.timesteps[0]) == 999  # trailing: sampling starts where alpha_bar ~ 3e-7
    assert len(sched.timesteps) == 10


def test_ancestral_default_walks_every_timestep():
    sched = make_scheduler("ddpm", get_preset("tiny"), None)
    assert sched.timesteps.tolist() == list(range(999, -1, -1))
    assert sched.config.variance_type == "fixed_small" and sched.config.clip_sample


@pytest.mark.parametrize("name,steps", [("ddpm", 40), ("ddim", 8), ("dpmpp", 8), ("unipc", 8)])
def test_every_sampler_gives_reproducible_8bit_images(micro, name, steps):
    cfg, unet = micro
    a = sample_batch(unet, cfg, name, steps, [11, 12], "cpu")
    assert a.shape == (2, 32, 32) and a.dtype == np.uint8
    assert np.array_equal(a, sample_batch(unet, cfg, name, steps, [11, 12], "cpu"))
    assert not np.array_equal(a[0], a[1])  # different seeds, different images


class _Shrink(torch.nn.Module):
    """A stand-in network (v = 0.1 x) so the 1000-step loop tests the sampler, not the UNet's speed."""

    def forward(self, x, t):
        return type("Out", (), {"sample": 0.1 * x})()


def test_thousand_step_ancestral_sampling_runs_to_the_end():
    cfg = get_preset("tiny", **MICRO)
    calls = []
    a = sample_batch(_Shrink(), cfg, "ddpm", None, [1, 2], "cpu", on_step=lambda k, n: calls.append((k, n)))
    assert calls[-1] == (1000, 1000) and len(calls) == 1000
    assert a.shape == (2, 32, 32) and 0 < a.std()
    assert np.array_equal(a, sample_batch(_Shrink(), cfg, "ddpm", None, [1, 2], "cpu"))


@pytest.mark.parametrize("name", SAMPLERS)
def test_an_image_draws_only_from_its_own_generator(micro, name):
    """Image 0 must not change when its batch companion changes (up to float rounding of the network)."""
    cfg, unet = micro
    steps = 30 if name == "ddpm" else 8  # strided ancestral still draws fresh noise at every step
    x = denoise(unet, cfg, name, steps, [5, 6], "cpu")
    y = denoise(unet, cfg, name, steps, [5, 99], "cpu")
    assert torch.allclose(x[0], y[0], atol=1e-3)
    assert not torch.allclose(x[1], y[1], atol=1e-1)


def test_to_uint8_rounds_instead_of_truncating():
    x = torch.tensor([10.6, 10.4, 0.0, 255.0, 300.0, -5.0]) / 127.5 - 1.0
    assert to_uint8(x.view(1, 1, 1, -1)).ravel().tolist() == [11, 10, 0, 255, 255, 0]


def test_image_seeds_are_stable_and_distinct():
    seeds = [image_seed(7, i) for i in range(1000)]
    assert len(set(seeds)) == 1000 and all(0 <= s < 2 ** 63 for s in seeds)
    assert image_seed(7, 3) == seeds[3] and image_seed(8, 3) != seeds[3]


def test_blocks_are_aligned_full_batches():
    assert blocks(5, 2) == [[0, 1], [2, 3], [4, 5]]
    assert pending_blocks(5, 2, {0, 1, 4}) == [[2, 3]]
    assert pending_blocks(5, 2, {0, 1, 2, 3, 4}) == []


# ---------------------------------------------------------------------------------------------------
# Jobs


def _sample(study, **kw):
    params = sample_params(study, checkpoint=kw.pop("checkpoint", 200), **{"sampler": "ddim", "steps": 4,
                                                                            "batch": 2, "seed": 3, **kw})
    job_id = runner.create_job(study, "sample", params)
    return runner.run_job(study, job_id)


def _pixels(study, run_id):
    rows = study.store.query("SELECT idx, path FROM synthetic_images WHERE run_id = ? ORDER BY idx", [run_id])
    return {r["idx"]: np.asarray(Image.open(study.abs(r["path"]))) for r in rows}


def test_sample_job_writes_images_rows_and_provenance(sample_study):
    study = sample_study
    record = _sample(study, count=3, sampler="dpmpp", steps=5)
    assert record["state"] == "succeeded", record["error"]
    run_id = record["result"]["run"]
    run = synthetic.get_run(study, run_id)
    assert (run["source"], run["train_job"], run["checkpoint_step"], run["sampler"], run["steps"], run["seed"],
            run["weights"]) == ("sampled", "train-fake", 200, "dpmpp", 5, 3, "ema")
    assert run["params"]["batch"] == 2 and run["params"]["image_size"] == 32
    rows = study.store.query("SELECT * FROM synthetic_images WHERE run_id = ? ORDER BY idx", [run_id])
    assert [r["idx"] for r in rows] == [0, 1, 2]
    folder = study.synthetic_dir / run_id
    for r in rows:
        path = study.abs(r["path"])
        assert path.parent == folder and path.name == f"{r['idx']:06d}.png"
        assert r["id"] == f"{run_id}-{r['idx']}" and r["seed"] == image_seed(3, r["idx"])
        assert hashlib.sha256(path.read_bytes()).hexdigest() == r["sha256"]
        im = Image.open(path)
        assert im.mode == "L" and im.size == (32, 32)
        assert r["orientation_confidence"] is not None
    listed = {j["id"]: j for j in control.list_jobs(study, kind="sample")}
    assert listed[record["id"]]["output"] == str(folder.resolve())


def test_flip_is_recorded_and_applied(sample_study, monkeypatch):
    from core.realset import detectors

    monkeypatch.setattr(detectors, "detect_orientation", lambda arr: ("right", 0.9))
    record = _sample(sample_study, count=2)
    run_id = record["result"]["run"]
    rows = sample_study.store.query("SELECT * FROM synthetic_images WHERE run_id = ?", [run_id])
    assert all(r["flipped"] and r["orientation_confidence"] == 0.9 for r in rows)
    # The stored image is the mirror of what the network made: regeneration undoes nothing else.
    assert np.array_equal(regenerate(sample_study, rows[0]["id"]),
                          np.asarray(Image.open(sample_study.abs(rows[0]["path"]))))


def test_regenerate_from_record_is_bit_identical(sample_study):
    record = _sample(sample_study, count=3)
    run_id = record["result"]["run"]
    stored = _pixels(sample_study, run_id)
    for idx in (0, 2):
        assert np.array_equal(regenerate(sample_study, f"{run_id}-{idx}"), stored[idx])


def test_online_weights_are_offered_and_recorded(sample_study):
    ema = _sample(sample_study, count=2)
    online = _sample(sample_study, count=2, weights="online")
    assert synthetic.get_run(sample_study, online["result"]["run"])["weights"] == "online"
    a, b = _pixels(sample_study, ema["result"]["run"]), _pixels(sample_study, online["result"]["run"])
    assert not np.array_equal(a[0], b[0])


def test_pause_then_resume_equals_uninterrupted_run(sample_study, twin_study, monkeypatch):
    reference = _sample(twin_study, count=5, run="r")
    assert reference["state"] == "succeeded"

    real_add = synthetic.add_images

    def add_then_pause(study, run_id, rows):  # a stop request arrives after the first block is recorded
        n = real_add(study, run_id, rows)
        (runner.run_dir(study, job_id)).joinpath("pause").touch()
        return n

    params = sample_params(sample_study, checkpoint=200, sampler="ddim", steps=4, batch=2, seed=3, count=5, run="r")
    job_id = runner.create_job(sample_study, "sample", params)
    monkeypatch.setattr(synthetic, "add_images", add_then_pause)
    first = runner.run_job(sample_study, job_id)
    assert first["state"] == "paused" and "2/5" in first["error"]
    assert synthetic.done_indices(sample_study, "r") == {0, 1}
    monkeypatch.setattr(synthetic, "add_images", real_add)
    # A writer killed between the PNG and its row, and one killed mid-write, left these behind.
    folder = sample_study.synthetic_dir / "r"
    (folder / "000002.png").write_bytes(b"stale")
    (folder / f"{synthetic.TMP_MARK}000003.png.999").write_bytes(b"half")
    second = runner.run_job(sample_study, job_id)
    assert second["state"] == "succeeded", second["error"]
    assert sorted(p.name for p in folder.iterdir()) == [f"{i:06d}.png" for i in range(5)]
    a, b = _pixels(sample_study, "r"), _pixels(twin_study, "r")
    assert a.keys() == b.keys() == set(range(5))
    assert all(np.array_equal(a[i], b[i]) for i in a)
    assert sample_study.store.scalar("SELECT count(*) FROM synthetic_images") == 5


def test_extending_a_run_gives_the_images_of_one_longer_run(sample_study, twin_study):
    assert _sample(twin_study, count=5, run="r")["state"] == "succeeded"
    assert _sample(sample_study, count=3, run="r")["state"] == "succeeded"
    assert _sample(sample_study, count=5, run="r", seed=None)["state"] == "succeeded"
    a, b = _pixels(sample_study, "r"), _pixels(twin_study, "r")
    assert a.keys() == set(range(5)) and all(np.array_equal(a[i], b[i]) for i in a)
    # What an extension leaves out is the run's; what it states must agree.
    params = sample_params(sample_study, checkpoint=200, count=9, run="r")
    assert (params["sampler"], params["steps"], params["seed"], params["weights"]) == ("ddim", 4, 3, "ema")
    with pytest.raises(CspineError, match="steps 4, not 9"):
        sample_params(sample_study, checkpoint=200, count=9, run="r", steps=9)


def test_time_limit_pauses_between_batches(sample_study):
    params = sample_params(sample_study, checkpoint=200, sampler="ddim", steps=4, batch=2, seed=3, count=4)
    job_id = runner.create_job(sample_study, "sample", {**params, "time_limit_s": 1e-6})
    record = runner.run_job(sample_study, job_id)
    assert record["state"] == "paused" and "time limit" in record["error"]
    assert sample_study.store.scalar("SELECT count(*) FROM synthetic_images") == 0
    with sample_study.store.connect() as tx:  # lift the limit, as a new allocation would
        tx.execute("UPDATE jobs SET params = ? WHERE id = ?", [json.dumps(params), job_id])
    assert runner.run_job(sample_study, job_id)["state"] == "succeeded"
    assert sample_study.store.scalar("SELECT count(*) FROM synthetic_images") == 4


def test_bad_requests_are_clear_errors(sample_study):
    with pytest.raises(CspineError, match="no checkpoint at step 999"):
        sample_params(sample_study, checkpoint=999, count=1)
    with pytest.raises(CspineError, match="unknown sampler"):
        sample_params(sample_study, checkpoint=200, count=1, sampler="euler")
    with pytest.raises(CspineError, match="--steps"):
        sample_params(sample_study, checkpoint=200, count=1, sampler="ddim", steps=0)
    with pytest.raises(CspineError, match="--count"):
        sample_params(sample_study, checkpoint=200, count=0)
    with pytest.raises(CspineError, match="--weights"):
        sample_params(sample_study, checkpoint=200, count=1, weights="best")
    with pytest.raises(CspineError, match="not usable as a folder name"):
        sample_params(sample_study, checkpoint=200, count=1, run="../x")
    make_checkpoint(sample_study, "train-other", 200, torch_seed=1)
    with pytest.raises(CspineError, match="several training jobs"):
        sample_params(sample_study, checkpoint=200, count=1)
    assert sample_params(sample_study, checkpoint=200, job="other", count=1)["train_job"] == "train-other"


def test_same_seed_twice_is_refused_with_a_way_out(sample_study):
    record = _sample(sample_study, count=2)
    with pytest.raises(CspineError, match=f"--run {record['result']['run']}"):
        sample_params(sample_study, checkpoint=200, sampler="ddim", steps=4, seed=3, count=4)


def test_default_sampler_is_the_fast_one(sample_study):
    params = sample_params(sample_study, checkpoint=200, count=1)
    assert params["sampler"] == DEFAULT_FAST_SAMPLER and params["steps"] < 1000
    assert params["weights"] == "ema" and params["seed"] is not None


def test_demo_stage_samples_three_checkpoints_once(sample_study):
    from core.ddpm.sampling import demo_checkpoints, demo_sample

    for step in (400, 600, 800):
        make_checkpoint(sample_study, "train-fake", step, torch_seed=step)
    assert demo_checkpoints(sample_study) == []  # not the demo's training job: not the demo's to sample
    sample_study.store.execute("UPDATE jobs SET params = '{\"demo\": true}' WHERE id = 'train-fake'")
    assert [c["step"] for c in demo_checkpoints(sample_study)] == [200, 600, 800]
    logs: list[str] = []
    runs = demo_sample(sample_study, logs.append, count=3)
    assert runs == ["demo-s200", "demo-s600", "demo-s800"]
    for name in runs:
        run = synthetic.get_run(sample_study, name)
        assert run["sampler"] == DEFAULT_FAST_SAMPLER and len(synthetic.done_indices(sample_study, name)) == 3
    n_jobs = sample_study.store.scalar("SELECT count(*) FROM jobs WHERE kind = 'sample'")
    demo_sample(sample_study, logs.append, count=3)  # idempotent: nothing to do
    assert sample_study.store.scalar("SELECT count(*) FROM jobs WHERE kind = 'sample'") == n_jobs


def test_precision_is_chosen_recorded_and_kept_by_regeneration(sample_study):
    fp32 = _sample(sample_study, count=2, precision="fp32")
    bf16 = _sample(sample_study, count=2, precision="bf16", seed=4)
    runs = {r: synthetic.get_run(sample_study, r) for r in (fp32["result"]["run"], bf16["result"]["run"])}
    assert [r["params"]["precision"] for r in runs.values()] == ["fp32", "bf16"]
    b = _pixels(sample_study, bf16["result"]["run"])
    again = _sample(sample_study, count=2, precision="fp32", seed=4)  # the bf16 run's seed in fp32
    assert not np.array_equal(_pixels(sample_study, again["result"]["run"])[0], b[0])  # the choice matters
    bf16_run = bf16["result"]["run"]
    assert np.array_equal(regenerate(sample_study, f"{bf16_run}-1"), b[1])  # regenerated in the recorded bf16
    with pytest.raises(CspineError, match="sampled in bf16, not fp32"):
        sample_params(sample_study, checkpoint=200, count=4, run=bf16_run, precision="fp32")
