"""DDPM training as a job (kind "train"): its parameters, and the entry point the job runner calls.

The parameters of a run are the preset, then study.toml [train], then flags (``train_params``); this module
stays free of torch so the UI and the CLI can build them without its start-up cost. The training itself, on
accelerate, is the ``Trainer`` of core/ddpm/training_loop.py; the checkpoints on disk and their pruning are
core/ddpm/checkpoints.py. The demo's training stage is here too.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from core.ddpm.networks import NETWORK_FAMILIES, ModelConfig, get_preset, levels
from core.errors import CspineError
from core.jobs.runner import JobContext
from core.study import Study
from core.jobs import runner

TRAIN_SETTINGS_EXTRA = ("seed", "data", "keep_last", "keep_ema", "log_every", "fid_extractor", "fid_sampler",
                        "fid_steps", "inception_weights", "mixed_precision", "compile", "deterministic", "val_repeats")


# -------------------------------------------------------------------------------------------------
# Parameters


def resolve_config(study: Study, preset: str | None, overrides: dict[str, Any] | None = None) -> ModelConfig:
    """Preset <- study.toml [train] model settings <- flags (the later wins)."""
    section = dict(study.settings.get("train", {}))
    name = preset or section.pop("preset", None) or "paper"
    section.pop("preset", None)
    # The condition spec is read from the labels (--condition-on), never set by hand.
    model_keys = set(get_preset(name).to_dict()) - {"condition"}
    from_toml = {k: v for k, v in section.items() if k in model_keys}
    unknown = set(section) - model_keys - set(TRAIN_SETTINGS_EXTRA)
    if unknown:
        raise CspineError(f"study.toml [train] has unknown settings {sorted(unknown)}; model settings are "
                          f"{sorted(model_keys - {'name', 'differences'})}, run settings {list(TRAIN_SETTINGS_EXTRA)}")
    return get_preset(name, **from_toml).with_overrides(**(overrides or {}))


def train_params(study: Study, *, preset: str | None = None, overrides: dict[str, Any] | None = None,
                 data: str = "train", seed: int | None = None, condition_on: str | None = None,
                 cond_drop: float | None = None, heatmap_sigma: float | None = None, **run: Any) -> dict[str, Any]:
    """The job parameters of a training run: the resolved model config plus run settings (flags win).

    `condition_on` (``ATTR[,ATTR]``, ``keypoints`` or both) makes a conditional run: its spec, read from the
    study's labels now (core/ddpm/conditioning.py), goes into the model config and so into every checkpoint.
    """
    cfg = resolve_config(study, preset, overrides)
    check_config(cfg)
    if data not in ("train", "all"):
        raise CspineError(f"--data must be train or all, not {data!r}")
    if condition_on:
        from core.ddpm.conditioning import build_spec  # imported on use: reads labels and loads numpy

        spec = build_spec(study, condition_on, drop=0.1 if cond_drop is None else float(cond_drop),
                          sigma=heatmap_sigma, image_size=cfg.image_size, selection=data)
        cfg = dataclasses.replace(cfg, condition=spec.to_dict())
    elif cond_drop is not None or heatmap_sigma is not None:
        raise CspineError("--cond-drop and --heatmap-sigma apply to conditional runs; add --condition-on "
                          "ATTR[,ATTR] | keypoints | ATTR,keypoints")
    toml = study.settings.get("train", {})
    # keep_ema: pruned checkpoints keep their EMA weights (core/ddpm/checkpoints.py); the paper preset's default,
    # because the study chose its checkpoints from the loss curves after training.
    defaults = {"keep_last": 5, "keep_ema": cfg.name == "paper", "log_every": 10 if cfg.max_steps > 2000 else 1,
                "fid_extractor": "inception",
                "fid_sampler": None, "fid_steps": None, "inception_weights": None, "mixed_precision": "auto",
                "compile": False, "deterministic": False, "val_repeats": None, "num_processes": 1}
    settings = {k: run.get(k) if run.get(k) is not None else toml.get(k, v) for k, v in defaults.items()}
    settings["inception_weights"] = settings["inception_weights"] or study.get("fid", "inception_weights")
    for key, value in run.items():
        if key not in settings and value is not None:
            settings[key] = value
    return {"config": cfg.to_dict(), "data": data, "seed": int(seed if seed is not None else toml.get("seed", 0)),
            **settings}


def check_config(cfg: ModelConfig) -> None:
    """Reject settings that cannot train, naming the setting and what it must be."""
    positive = {"max_steps": cfg.max_steps, "checkpoint_every": cfg.checkpoint_every, "batch_size": cfg.batch_size,
                "grad_accum": cfg.grad_accum, "image_size": cfg.image_size, "learning_rate": cfg.learning_rate}
    for name, value in positive.items():
        if not value > 0:
            raise CspineError(f"{name} must be positive, not {value} (flag or study.toml [train] {name})")
    if cfg.fid_every < 0 or cfg.fid_samples < 0:
        raise CspineError("fid_every and fid_samples must be 0 (off) or positive")
    if cfg.fid_every and cfg.fid_samples == 1:
        raise CspineError("an FID needs at least 2 synthetic images (--fid-samples)")
    if cfg.network not in NETWORK_FAMILIES:
        raise CspineError(f"network must be one of {', '.join(NETWORK_FAMILIES)}, not {cfg.network!r}")
    factor = 2 ** (levels(cfg) - 1)
    if cfg.image_size % factor:
        raise CspineError(f"image size {cfg.image_size} must be a multiple of {factor} for a UNet with "
                          f"{levels(cfg)} levels")


def run(ctx: JobContext) -> dict[str, Any]:
    """The "train" job: see core/ddpm/training_loop.py."""
    from core.ddpm.training_loop import Trainer  # imported on use: torch and accelerate load only when a job runs

    return Trainer(ctx).run()


# -------------------------------------------------------------------------------------------------
# The demo's training stage

# Tiny preset, sized for a 2-core CPU: 3 checkpoints for the reader study and one FID evaluation.
DEMO_TRAIN = {"max_steps": 150, "checkpoint_every": 50, "fid_every": 150, "fid_samples": 48, "batch_size": 8}
DEMO_TRAIN_SEED = 2510


def demo_train(study: Study, log) -> str | None:
    """Train the tiny preset on the ingested phantoms (idempotent: resumes or skips a finished demo run)."""
    demo_jobs = [r for r in study.store.query(
        "SELECT id, state, params FROM jobs WHERE kind = 'train' ORDER BY created_at DESC, id DESC")
        if json.loads(r["params"] or "{}").get("demo")]
    if demo_jobs and demo_jobs[0]["state"] == "succeeded":
        return demo_jobs[0]["id"]
    if not study.store.scalar("SELECT count(*) FROM splits WHERE split = 'train'"):
        log("no ingested images with a train split: the train stage needs the ingest stage first; skipped")
        return None
    if demo_jobs and demo_jobs[0]["state"] in ("paused", "failed", "queued"):
        job_id = demo_jobs[0]["id"]
        log(f"resuming demo training job {job_id}")
    else:
        params = train_params(study, preset="tiny", overrides=DEMO_TRAIN, seed=DEMO_TRAIN_SEED, keep_last=0,
                              fid_extractor="auto", val_repeats=2, demo=True)
        job_id = runner.create_job(study, "train", params)
        log(f"training the tiny preset for {DEMO_TRAIN['max_steps']} steps (checkpoints every "
            f"{DEMO_TRAIN['checkpoint_every']}, FID with {DEMO_TRAIN['fid_samples']} samples at the end)")
    record = runner.run_job(study, job_id, foreground=True)
    if record["state"] != "succeeded":
        raise CspineError(f"demo training ended {record['state']}: {record['error']}; run the demo again to "
                          f"resume it")
    fid = study.store.query_one("SELECT value, details FROM metrics WHERE job_id = ? AND name = 'fid' "
                                "ORDER BY step DESC LIMIT 1", [job_id])
    if fid:
        details = json.loads(fid["details"])
        label = "Inception FID" if details.get("extractor") == "inception" else \
            "proxy FID (Inception weights absent; NOT Inception FID)"
        log(f"{label} of the last checkpoint: {fid['value']:.2f} (n={details.get('n')}, {details.get('sampler')})")
    return job_id
