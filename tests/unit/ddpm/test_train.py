"""Training: presets and settings, a short run with checkpoints plain diffusers loads, exact resume after
SIGKILL, time limit, divergence, pruning, and the CLI listing."""

from __future__ import annotations

import json

import pytest
import torch

from core.jobs import control

from core.jobs import runner
from core.errors import CspineError
from core.ddpm.trainer import resolve_config, train_params
from tests.factories.train import TINY, add_real_images

pytestmark = pytest.mark.timeout(300)


def _run(study, **kw):
    overrides = {**TINY, **kw.pop("overrides", {})}
    kw.setdefault("val_repeats", 2)  # 12 validation pairs: enough to test, cheap on a shared CPU
    params = train_params(study, preset="tiny", overrides=overrides, **kw)
    job_id = runner.create_job(study, "train", params)
    return runner.run_job(study, job_id)


def _weights(study, job_id, step, sub="unet"):
    from safetensors.torch import load_file

    return load_file(runner.run_dir(study, job_id) / "checkpoints" / f"step-{step}" / sub /
                     "diffusion_pytorch_model.safetensors")


def _max_diff(a, b) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_presets_say_how_they_differ_and_settings_layer(study):
    from core.ddpm.networks import PRESETS

    for name, cfg in PRESETS.items():
        assert cfg.differences, f"preset {name} must list how it differs from the reference"
    paper = resolve_config(study, "paper")
    assert (paper.batch_size, paper.grad_accum, paper.learning_rate, paper.ema_decay) == (8, 2, 5e-5, 0.995)
    assert paper.prediction_type == "v_prediction" and paper.beta_schedule == "lucidrains_sigmoid"
    # study.toml [train] overrides the preset; flags override study.toml.
    study.set("train", "learning_rate", 2e-4)
    assert resolve_config(study, "small").learning_rate == 2e-4
    assert resolve_config(study, "small", {"learning_rate": 3e-4}).learning_rate == 3e-4
    study.set("train", "keep_last", 7)
    assert train_params(study, preset="tiny")["keep_last"] == 7
    assert train_params(study, preset="tiny", keep_last=2)["keep_last"] == 2
    study.set("train", "lerning_rate", 1.0)
    with pytest.raises(CspineError, match="unknown settings"):
        resolve_config(study, "tiny")
    with pytest.raises(CspineError, match="unknown preset"):
        resolve_config(study, "huge")


def test_tiny_with_no_fid_flags_records_real_inception_fid_offline(tmp_path, monkeypatch):
    """A fresh machine: no Inception file anywhere but the installed package; no FID flags at all."""
    from core.study import Study

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "fresh-torch-home"))
    study = Study.create(tmp_path / "fresh")
    add_real_images(study, n=4)  # the real Inception costs ~1 s an image on a busy CPU: 4 real + 2 synthetic
    rec = _run(study, overrides={"max_steps": 2, "checkpoint_every": 2, "fid_every": 2, "fid_samples": 2})
    assert rec["state"] == "succeeded", rec["error"]
    fid = study.store.query_one("SELECT value, details FROM metrics WHERE job_id = ? AND name = 'fid'",
                                      [rec["id"]])
    details = json.loads(fid["details"])
    assert details["extractor"] == "inception" and fid["value"] > 0
    assert details["weights_sha256"] and "299" in details["preprocessing"]
    assert details["sampler"] == "unipc" and details["n"] == 2  # tiny has no preset FID sampler: the fast default


def test_paper_preset_fid_sampler_is_the_studys_ddim_500():
    from core.ddpm.evaluation import resolve_sampler
    from core.ddpm.networks import get_preset

    spec = resolve_sampler(None, None, get_preset("paper"))
    assert (spec.name, spec.steps, spec.precision) == ("ddim", 500, "fp32")
    assert resolve_sampler("dpmpp", None, get_preset("paper")).steps == 20  # another sampler: its own default
    assert resolve_sampler(None, 50, get_preset("paper")).steps == 50


def test_short_run_writes_checkpoints_plain_diffusers_loads(train_study):
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    from core.ddpm.checkpoints import list_checkpoints, set_kept

    study = train_study
    rec = _run(study, overrides={"max_steps": 6, "checkpoint_every": 2, "fid_every": 6, "fid_samples": 6},
               fid_extractor="proxy", fid_sampler="ddim", fid_steps=4, keep_last=1, deterministic=True)
    assert rec["state"] == "succeeded", rec["error"]
    job = rec["id"]
    assert rec["result"]["output"].endswith("checkpoints/step-6") and rec["result"]["steps"] == 6
    folder = study.abs(rec["result"]["output"])
    unet = UNet2DModel.from_pretrained(folder, subfolder="unet")
    ema = UNet2DModel.from_pretrained(folder, subfolder="unet_ema")
    assert unet.config.in_channels == 1 and unet.config.sample_size == 32
    sched = DDPMScheduler.from_pretrained(folder, subfolder="scheduler")
    assert sched.config.prediction_type == "v_prediction" and sched.config.trained_betas is not None
    images = DDPMPipeline(unet=ema, scheduler=sched)(batch_size=1, num_inference_steps=3, output_type="np").images
    assert images.shape == (1, 32, 32, 1)
    assert (folder / "state").is_dir()  # the full accelerate state for resuming

    # keep_last=1: step-2 and step-4 were deleted (rows marked), step-6 stays.
    rows = list_checkpoints(study, job, include_deleted=True)
    assert [(r["step"], r["deleted"]) for r in rows] == [(2, True), (4, True), (6, False)]
    live = list_checkpoints(study, job)
    assert len(live) == 1 and live[0]["resumable"]
    r = live[0]
    assert r["train_loss"] > 0 and r["val_loss"] > 0 and r["fid"] > 0 and r["fid_extractor"] == "proxy"
    fid = study.store.query_one("SELECT details FROM metrics WHERE job_id = ? AND name = 'fid'", [job])
    details = json.loads(fid["details"])
    assert details["extractor"] == "proxy" and "NOT Inception" in details["note"]
    assert details["sampler"] == "ddim" and details["sampler_steps"] == 4 and details["n"] == 6
    assert details["sampler_precision"] == "fp32" and "face left" in details["orientation"]
    names = set(study.store.column("SELECT DISTINCT name FROM metrics WHERE job_id = ?", [job]))
    assert {"train_loss", "val_loss", "val_loss_ema", "fid", "kid"} <= names
    set_kept(study, job, 6)
    assert list_checkpoints(study, job)[0]["kept"]
    with pytest.raises(CspineError, match="already deleted"):
        set_kept(study, job, 2)


def test_validation_loss_uses_fixed_timesteps_and_noise(train_study):
    from core.ddpm.data import ValPlan, load_images
    from core.ddpm.networks import build_unet, get_preset, training_scheduler
    from core.ddpm.evaluation import validation_loss

    cfg = get_preset("tiny", **TINY)
    val = load_images(train_study, "val", 32)
    plan = ValPlan(len(val), cfg.num_train_timesteps, (1, 32, 32))
    assert len(plan) >= 96 and int(plan.timesteps.min()) < 100 and int(plan.timesteps.max()) > 900
    torch.manual_seed(0)
    net = build_unet(cfg)
    ac = training_scheduler(cfg).alphas_cumprod
    a = validation_loss(net, cfg, ac, val, plan, torch.device("cpu"))
    b = validation_loss(net, cfg, ac, val, ValPlan(len(val), cfg.num_train_timesteps, (1, 32, 32)),
                        torch.device("cpu"))
    assert a == b  # same pairs, same noise: bit-identical
    # Split over 2 "processes", the sums add up to the single-process value.
    parts = [validation_loss(net, cfg, ac, val, plan, torch.device("cpu"), rank=r, world=2) for r in (0, 1)]
    assert sum(p[1] for p in parts) == a[1]
    assert sum(p[0] for p in parts) == pytest.approx(a[0], rel=1e-9)


def test_exact_resume_after_sigkill_matches_uninterrupted_run(train_study):
    study = train_study
    common = {"overrides": {"max_steps": 6, "checkpoint_every": 3, "ema_update_after_step": 1}, "seed": 3,
              "deterministic": True}
    ref = _run(study, **common)
    assert ref["state"] == "succeeded", ref["error"]

    params = train_params(study, preset="tiny", overrides={**TINY, **common["overrides"]}, seed=3,
                          deterministic=True, val_repeats=2, _test_sigkill_at_step=4)
    job = runner.create_job(study, "train", params)
    runner.start_detached(study, job)
    dead = control.wait_for(study, job, timeout=240)
    assert dead["state"] == "failed" and "died" in dead["error"]  # recognised as a dead process
    assert (runner.run_dir(study, job) / "checkpoints" / "step-3" / "state").is_dir()
    assert not (runner.run_dir(study, job) / "checkpoints" / "step-6").exists()
    done = runner.run_job(study, job)  # resume
    assert done["state"] == "succeeded", done["error"]
    assert "resumed from step-3" in "\n".join(control.tail_log(study, job, 50))
    for sub in ("unet", "unet_ema"):
        assert _max_diff(_weights(study, ref["id"], 6, sub), _weights(study, job, 6, sub)) <= 1e-6
    # The metrics of the steps that ran twice were replaced, not duplicated.
    steps = [json.loads(line)["step"] for line in
             (runner.run_dir(study, job) / "metrics.jsonl").read_text().splitlines() if "train_loss" in line]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_time_limit_pauses_with_a_checkpoint_and_resume_continues(train_study):
    study = train_study
    params = train_params(study, preset="tiny", overrides={**TINY, "max_steps": 100000, "checkpoint_every": 100000})
    params["time_limit_s"] = 0.5  # shorter than the start-up: each run still makes a step
    job = runner.create_job(study, "train", params)
    first = runner.run_job(study, job)
    assert first["state"] == "paused" and "time limit" in first["error"]
    step1 = control.job_status(study, job)["step"]
    assert step1 >= 1 and (runner.run_dir(study, job) / "checkpoints" / f"step-{step1}" / "state").is_dir()
    second = runner.run_job(study, job)
    assert second["state"] == "paused"
    assert control.job_status(study, job)["step"] > step1


def test_non_finite_loss_fails_naming_step_and_last_checkpoint(train_study):
    rec = _run(train_study, overrides={"max_steps": 40, "checkpoint_every": 2, "learning_rate": 1e12})
    assert rec["state"] == "failed"
    assert "diverged" in rec["error"] and " at step " in rec["error"]
    assert "last good checkpoint is runs/" in rec["error"] or "none (no checkpoint yet)" in rec["error"]


def test_train_requires_a_split_or_data_all(tmp_path):
    from core.study import Study

    study = Study.create(tmp_path / "s")
    rec = _run(study, overrides={"max_steps": 1})
    assert rec["state"] == "failed" and "ingest" in rec["error"]


def test_checkpoints_cli_json(train_study, capsys):
    from cspine_tui.cli.main import main

    rec = _run(train_study, overrides={"max_steps": 2, "checkpoint_every": 1})
    assert rec["state"] == "succeeded"
    capsys.readouterr()
    assert main(["checkpoints", "--study", str(train_study.root), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["step"] for r in rows] == [1, 2]
    assert {"job", "step", "path", "train_loss", "val_loss", "fid"} <= rows[0].keys()
    from core.ddpm.networks import build_unet, get_preset

    params = sum(p.numel() for p in build_unet(get_preset("tiny", **TINY)).parameters())
    assert (rows[0]["network"], rows[0]["parameters"]) == ("diffusers", params)
    assert main(["checkpoints", "--study", str(train_study.root), "--keep", f"{rec['id']}:2"]) == 0
    assert main(["checkpoints", "--study", str(train_study.root), "--keep", "nonsense"]) == 2


def test_demo_train_stage_is_idempotent(train_study, monkeypatch):
    from core.ddpm import trainer

    monkeypatch.setattr(trainer, "DEMO_TRAIN", {**TINY, "max_steps": 3, "checkpoint_every": 1, "fid_every": 3,
                                              "fid_samples": 4})
    logs: list[str] = []
    job = trainer.demo_train(train_study, logs.append)
    assert job and runner.job_record(train_study, job)["state"] == "succeeded"
    steps = train_study.store.column("SELECT step FROM checkpoints WHERE job_id = ? AND NOT deleted", [job])
    assert steps == [1, 2, 3]  # the reader study needs 3 checkpoints: none pruned
    assert any("FID" in line for line in logs)
    fid = json.loads(train_study.store.scalar("SELECT details FROM metrics WHERE job_id = ? AND name = 'fid'", [job]))
    # Without the Inception weights the demo's FID is the labelled proxy, never passed off as Inception.
    assert fid["extractor"] in ("inception", "proxy")
    if fid["extractor"] == "proxy":
        assert any("NOT Inception" in line for line in logs)
    again = trainer.demo_train(train_study, logs.append)
    assert again == job and len(control.list_jobs(train_study, kind="train")) == 1


def test_impossible_settings_are_one_clear_error(study):
    with pytest.raises(CspineError, match="max_steps must be positive"):
        train_params(study, preset="tiny", overrides={"max_steps": 0})
    with pytest.raises(CspineError, match="multiple of 4"):
        train_params(study, preset="tiny", overrides={"image_size": 30})
    with pytest.raises(CspineError, match="--data must be"):
        train_params(study, preset="tiny", data="val")
    with pytest.raises(CspineError, match="fid_every and fid_samples must be 0"):
        train_params(study, preset="tiny", overrides={"fid_every": -1})
    with pytest.raises(CspineError, match="at least 2 synthetic images"):
        train_params(study, preset="tiny", overrides={"fid_every": 10, "fid_samples": 1})
