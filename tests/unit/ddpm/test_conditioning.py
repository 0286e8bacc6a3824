"""Conditional generation: condition dropout, heatmaps, guidance arithmetic, both families, checkpoints carrying
the spec, exact resume, conditions stored and mirrored with their images, --per-condition quotas, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from core.ddpm import synthetic
from core.ddpm.condition_net import batch_of, guided, heatmaps, predict
from core.ddpm.conditioning import ConditionSpec, build_spec, mirror_condition, spec_of
from core.ddpm.data import BatchPlan
from core.ddpm.networks import build_unet, get_preset, load_config, load_unet
from core.ddpm.sampling import regenerate, sample_params
from core.ddpm.trainer import train_params
from core.errors import CspineError
from core.jobs import runner
from tests.factories.conditioned import POINTS, add_labelled_images, body_points
from tests.factories.sample import MICRO, make_checkpoint
from tests.factories.train import TINY

pytestmark = pytest.mark.timeout(300)

TINY_PAPER = {"image_size": 32, "batch_size": 4, "fid_every": 0}


@pytest.fixture
def labelled(tmp_path):
    """16 labelled phantoms (12 train, 4 val) and 4 unlabelled ones."""
    from core.study import Study

    study = Study.create(tmp_path / "study")
    add_labelled_images(study, n=16, unlabelled=4)
    return study


def _spec(study, on="defect,keypoints", drop=0.1) -> ConditionSpec:
    return build_spec(study, on, drop=drop, sigma=None, image_size=32, selection="train")


# ---------------------------------------------------------------------------------------------------
# Dropout, heatmaps, guidance


def test_dropout_mask_is_a_pure_function_of_step_and_leaves_the_batches_alone():
    shape = (1, 8, 8)
    plain = BatchPlan(20, 16, 2, seed=7, num_timesteps=1000, image_shape=shape, horizontal_flip=True)
    cond = BatchPlan(20, 16, 2, seed=7, num_timesteps=1000, image_shape=shape, horizontal_flip=True, cond_drop=0.5)
    again = BatchPlan(20, 16, 2, seed=7, num_timesteps=1000, image_shape=shape, horizontal_flip=True, cond_drop=0.5)
    kept = []
    for step in range(100):
        for micro in range(2):
            a, b, c = plain.batch_at(step, micro), cond.batch_at(step, micro), again.batch_at(step, micro)
            assert a.keep is None
            # The unconditional stream (images, timesteps, noise, flips) is untouched by the dropout draw.
            assert torch.equal(a.indices, b.indices) and torch.equal(a.timesteps, b.timesteps)
            assert torch.equal(a.noise, b.noise) and torch.equal(a.flip, b.flip)
            assert torch.equal(b.keep, c.keep)  # a resumed plan draws the same mask
            kept.append(b.keep)
    # 3,200 Bernoulli(0.5) draws: standard deviation of the kept fraction 0.0088; 5 of them is 0.044.
    assert abs(float(torch.cat(kept).float().mean()) - 0.5) < 0.044
    assert bool(BatchPlan(20, 16, 1, 7, 1000, shape, False, cond_drop=0.0).batch_at(3, 0).keep.all())
    # Two processes each get their slice of the same mask.
    halves = [BatchPlan(20, 16, 1, 7, 1000, shape, False, rank=r, world_size=2, cond_drop=0.5).batch_at(5, 0).keep
              for r in range(2)]
    assert torch.equal(torch.cat(halves), BatchPlan(20, 16, 1, 7, 1000, shape, False, cond_drop=0.5)
                       .batch_at(5, 0).keep)


def test_heatmaps_peak_at_the_point_mirror_exactly_and_vanish_for_missing_points():
    size, sigma = 32, 1.5
    pts = torch.tensor([[[10.5, 20.5], [3.25, 7.75], [float("nan"), float("nan")]]])
    hm = heatmaps(pts, size, sigma)
    assert hm.shape == (1, 3, size, size)
    assert float(hm[0, 0, 20, 10]) == 1.0  # the point is pixel (10, 20)'s centre: exp(0)
    assert hm[0, 0].argmax() == 20 * size + 10
    # The closed form at a pixel one away in x and two in y from (3.25, 7.75).
    expected = np.exp(-((4.5 - 3.25) ** 2 + (9.5 - 7.75) ** 2) / (2 * sigma ** 2))
    assert abs(float(hm[0, 1, 9, 4]) - expected) < 1e-6  # float32 exp of an argument near -1: ~1e-7
    assert float(hm[0, 2].abs().max()) == 0.0
    mirrored = pts.clone()
    mirrored[..., 0] = size - mirrored[..., 0]
    # Mirroring x -> size - x moves pixel centre i + 0.5 to size - (i + 0.5), the centre of pixel size-1-i; the
    # float32 subtractions differ by at most a few ulp of 32 (4e-6), and the Gaussian's slope is below 1/sigma.
    assert float((heatmaps(mirrored, size, sigma) - hm.flip(-1)).abs().max()) < 1e-5


def _conditional_net(family: str, spec: ConditionSpec):
    preset = "tiny" if family == "diffusers" else "tiny-paper"
    cfg = get_preset(preset, **(MICRO if family == "diffusers" else TINY_PAPER), condition=spec.to_dict())
    torch.manual_seed(0)
    net = build_unet(cfg).eval()
    if family == "diffusers":  # diffusers starts the class table at N(0, 1) too; make it matter for the test
        torch.nn.init.normal_(net.class_embedding.weight, std=3.0)
    else:
        torch.nn.init.normal_(net.time_mlp.classes.weight, std=3.0)
    return cfg, net


@pytest.mark.parametrize("family", ["diffusers", "lucidrains"])
def test_guidance_arithmetic_on_both_families(labelled, family):
    spec = _spec(labelled)
    cfg, net = _conditional_net(family, spec)
    conditions = [{"attributes": {"defect": "none"}, "keypoints": {f"{p}_body": [16.0, 4.0 + 4 * k]
                                                                   for k, p in enumerate(POINTS)}},
                  {"attributes": {"defect": "missing_vertebra"}, "keypoints": {"C3_body": [12.0, 9.0]}}]
    cond = batch_of(spec, conditions, 32)
    x = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    t = torch.tensor(500)
    with torch.no_grad():
        c = predict(net, x, t, cond)
        u = predict(net, x, t, cond.null())
        assert torch.equal(guided(net, x, t, cond, 1.0), c)   # scale 1: the conditional pass itself
        assert torch.equal(guided(net, x, t, cond, 0.0), u)   # scale 0: the unconditional pass itself
        w3 = guided(net, x, t, cond, 3.0)
    gap = float((c - u).abs().max())
    assert gap > 1e-2  # the condition changes the prediction, so a wrong formula would show
    # The doubled batch may reduce in another order than two single passes: each prediction is off by at
    # most ~1e-5 relative, and u + 3 (c - u) = 3c - 2u multiplies that by |3| + |2| = 5.
    scale = float(torch.maximum(c.abs(), u.abs()).max())
    assert float((w3 - (u + 3.0 * (c - u))).abs().max()) <= 5 * 1e-5 * scale + 1e-6
    assert float((w3 - c).abs().max()) > gap  # guidance moved past the conditional prediction


def test_unconditional_networks_are_built_as_before():
    from denoising_diffusion_pytorch import Unet

    from core.ddpm.networks import lucidrains_kwargs

    cfg = get_preset("tiny-paper", **TINY_PAPER)
    torch.manual_seed(0)
    ours = build_unet(cfg)
    torch.manual_seed(0)
    theirs = Unet(**lucidrains_kwargs(cfg))
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()))
    assert "num_classes" not in ours.init_kwargs and build_unet(get_preset("tiny")).class_embedding is None


# ---------------------------------------------------------------------------------------------------
# Training


def _train(study, preset, **kw):
    overrides = {**(TINY if preset == "tiny" else TINY_PAPER), **kw.pop("overrides", {})}
    params = train_params(study, preset=preset, overrides=overrides, val_repeats=2, **kw)
    return runner.run_job(study, runner.create_job(study, "train", params))


@pytest.mark.parametrize("preset", ["tiny", "tiny-paper"])
def test_both_families_train_conditioned_and_the_checkpoint_carries_the_spec(labelled, preset):
    rec = _train(labelled, preset, overrides={"max_steps": 1, "checkpoint_every": 1},
                 condition_on="defect,keypoints", cond_drop=0.2, heatmap_sigma=1.5)
    assert rec["state"] == "succeeded", rec["error"]
    log = "\n".join(runner.run_dir(labelled, rec["id"]).joinpath("log.txt").read_text().splitlines())
    assert "training on the 12 of 15 train images that carry those labels" in log  # the unlabelled 3 left out
    folder = runner.run_dir(labelled, rec["id"]) / "checkpoints" / "step-1"
    spec = spec_of(load_config(folder))
    assert spec.attributes == ("defect",) and spec.vocabularies == {"defect": ["missing_vertebra", "none"]}
    assert spec.points == tuple(f"{p}_body" for p in POINTS) and (spec.sigma, spec.drop) == (1.5, 0.2)
    assert spec.num_classes == 3 and {c["attributes"]["defect"] for c in spec.combinations} == {"none",
                                                                                                 "missing_vertebra"}
    from core.ddpm.checkpoints import list_checkpoints

    assert [r["condition"] for r in list_checkpoints(labelled, rec["id"])] == ["defect, keypoints"]
    net = load_unet(folder)
    state = net.state_dict()
    if preset == "tiny":
        assert net.config.in_channels == 1 + len(POINTS) and net.config.num_class_embeds == 3
    else:
        assert state["init_conv.weight"].shape[1] == 1 + len(POINTS) and state["final_conv.weight"].shape[0] == 1
        assert state["time_mlp.classes.weight"].shape[0] == 3


def test_conditional_resume_repeats_the_uninterrupted_run(labelled):
    common = {"overrides": {"max_steps": 4, "checkpoint_every": 4, "ema_update_after_step": 1},
              "condition_on": "defect,keypoints", "cond_drop": 0.5, "seed": 3, "deterministic": True}
    ref = _train(labelled, "tiny", **common)
    assert ref["state"] == "succeeded", ref["error"]
    params = train_params(labelled, preset="tiny", overrides={**TINY, **common["overrides"]}, val_repeats=2,
                          **{k: v for k, v in common.items() if k != "overrides"})
    params["time_limit_s"] = 0.01  # shorter than the start-up: every run makes one step and pauses
    job = runner.create_job(labelled, "train", params)
    states = [runner.run_job(labelled, job)["state"]]
    while states[-1] == "paused" and len(states) < 6:
        states.append(runner.run_job(labelled, job)["state"])
    assert states[0] == "paused" and states[-1] == "succeeded", states

    def weights(job_id):
        from safetensors.torch import load_file

        return load_file(runner.run_dir(labelled, job_id) / "checkpoints" / "step-4" / "unet" /
                         "diffusion_pytorch_model.safetensors")

    a, b = weights(ref["id"]), weights(job)
    assert a.keys() == b.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6  # deterministic kernels on one CPU


def test_training_refusals_are_one_line(labelled, tmp_path, capsys):
    from core.study import Study
    from cspine_tui.cli.main import main

    assert main(["train", "--study", str(labelled.root), "--preset", "tiny", "--condition-on", "sex"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no attribute sex among the study's labels (defect)") and "\n" not in err
    with pytest.raises(CspineError, match="no attribute sex among the study's labels"):
        train_params(labelled, preset="tiny", condition_on="sex")
    with pytest.raises(CspineError, match="--cond-drop must be in"):
        train_params(labelled, preset="tiny", condition_on="defect", cond_drop=1.0)
    with pytest.raises(CspineError, match="apply to conditional runs"):
        train_params(labelled, preset="tiny", cond_drop=0.1)
    bare = Study.create(tmp_path / "bare")
    from tests.factories.train import add_real_images

    add_real_images(bare, n=8)
    with pytest.raises(CspineError, match="the study has no keypoints"):
        train_params(bare, preset="tiny", condition_on="keypoints")


# ---------------------------------------------------------------------------------------------------
# Sampling


@pytest.fixture
def conditional_ckpt(labelled):
    """An untrained conditional checkpoint (sampling does not care whether the weights learned)."""
    spec = _spec(labelled)
    make_checkpoint(labelled, condition=spec.to_dict())
    return labelled, spec


def _sample(study, **kw):
    kw.setdefault("sampler", "ddim")
    kw.setdefault("steps", 2)
    params = sample_params(study, checkpoint=200, device="cpu", batch=3, seed=kw.pop("seed", 11), **kw)
    rec = runner.run_job(study, runner.create_job(study, "sample", params))
    assert rec["state"] == "succeeded", rec["error"]
    return rec["result"]["run"]


def test_per_condition_quota_stores_each_condition_and_regenerates(conditional_ckpt):
    study, spec = conditional_ckpt
    run = _sample(study, count=None, per_condition=3, guidance_scale=2.0)
    rows = study.store.query("SELECT id, idx, flipped, condition FROM synthetic_images WHERE run_id = ? "
                             "ORDER BY idx", [run])
    conds = [json.loads(r["condition"]) for r in rows]
    assert [c["attributes"]["defect"] for c in conds] == ["missing_vertebra"] * 3 + ["none"] * 3
    assert all(len(c["keypoints"]) == len(POINTS) for c in conds)
    assert synthetic.conditions_for(study, [r["id"] for r in rows]) == {r["id"]: c for r, c in zip(rows, conds)}
    # The stored keypoints are the plan's, mirrored exactly where the image was mirrored.
    from core.ddpm.conditioning import sampling_plan

    plan = sampling_plan(study, spec, 32, seed=11, fixed={}, per_condition=3)
    for r, c in zip(rows, conds):
        want = plan.condition(r["idx"])
        assert c == (mirror_condition(want, 32) if r["flipped"] else want)
    assert np.array_equal(regenerate(study, rows[4]["id"]), synthetic.read_image(study, rows[4]["id"]))
    run_params = synthetic.get_run(study, run)["params"]
    assert run_params["condition"]["guidance_scale"] == 2.0 and run_params["condition"]["per_condition"] == 3


def test_fixed_condition_draws_layouts_from_matching_train_images(conditional_ckpt):
    study, spec = conditional_ckpt
    run = _sample(study, count=4, condition=["defect=none"], guidance_scale=1.0)
    conds = [json.loads(c) for c in study.store.column(
        "SELECT condition FROM synthetic_images WHERE run_id = ? ORDER BY idx", [run])]
    assert {c["attributes"]["defect"] for c in conds} == {"none"}
    # Every layout is a train image's layout at 32 px (phantoms' bodies stack top to bottom).
    for c in conds:
        ys = [c["keypoints"][f"{p}_body"][1] for p in POINTS]
        assert ys == sorted(ys)


def test_saving_a_mirrored_image_mirrors_its_keypoints(sample_study):
    from core.demo.phantom import render_canonical

    right = render_canonical(0, size=64, facing="right")
    pts = body_points(64)
    condition = {"keypoints": {f"{p}_body": [64 - x, y] for p, (x, y) in zip(POINTS, pts)}}
    synthetic.create_run(sample_study, "mirror", "external")
    row = synthetic.save_image(sample_study, "mirror", 0, right, condition=condition)
    assert row.flipped  # the detector turned the right-facing film to face left
    # Back on the left-facing anatomy: the phantom's own body centres (x -> 64 - x twice; stored to 1e-4 px).
    got = row.condition["keypoints"]
    assert set(got) == {f"{p}_body" for p in POINTS}
    for p, (x, y) in zip(POINTS, pts):
        assert abs(got[f"{p}_body"][0] - x) <= 5e-5 + 1e-9 and got[f"{p}_body"][1] == y
    synthetic.add_images(sample_study, "mirror", [row])
    assert synthetic.conditions_for(sample_study, ["mirror-0"])["mirror-0"] == row.condition


def test_sampling_refusals_are_one_line(conditional_ckpt):
    study, _spec_ = conditional_ckpt
    make_checkpoint(study, job_id="train-plain", step=100)
    with pytest.raises(CspineError, match="is unconditional"):
        sample_params(study, checkpoint=100, count=2, condition=["defect=none"])
    with pytest.raises(CspineError, match="has no value 'broken'"):
        sample_params(study, checkpoint=200, count=2, condition=["defect=broken"])
    with pytest.raises(CspineError, match="not conditioned on 'sex'"):
        sample_params(study, checkpoint=200, count=2, condition=["sex=F"])
    with pytest.raises(CspineError, match="makes 4 images"):
        sample_params(study, checkpoint=200, count=5, per_condition=2)
    with pytest.raises(CspineError, match="--guidance-scale must be 0 or more"):
        sample_params(study, checkpoint=200, count=2, guidance_scale=-1.0)


def test_keypoint_only_model_refuses_a_quota(labelled):
    make_checkpoint(labelled, condition=_spec(labelled, on="keypoints").to_dict())
    with pytest.raises(CspineError, match="conditioned on keypoints only"):
        sample_params(labelled, checkpoint=200, count=None, per_condition=2)


def test_cli_sample_per_condition(conditional_ckpt, capsys):
    from cspine_tui.cli.main import main

    study, _ = conditional_ckpt
    code = main(["sample", "--study", str(study.root), "--checkpoint", "200", "--per-condition", "1",
                 "--guidance-scale", "1.5", "--sampler", "ddim", "--steps", "2", "--device", "cpu", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["images"] == 2
    assert main(["sample", "--study", str(study.root), "--checkpoint", "200", "--count", "2",
                 "--condition", "defect"]) == 2
    assert "--condition takes ATTR=VALUE" in capsys.readouterr().err
