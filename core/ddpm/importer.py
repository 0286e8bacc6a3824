"""Bring the study's own models in: a checkpoint written by lucidrains' ``Trainer.save`` becomes a checkpoint
of an ``imported`` job, so sampling, screening, audit, quartets and release work on it.

A ``model-N.pt`` holds ``step``, ``model`` (the GaussianDiffusion state: ``model.*`` is the Unet, the rest are
the diffusion's buffers: betas, alphas_cumprod, ..., loss_weight), ``opt``, ``ema`` (ema-pytorch's state:
``ema_model.*`` the averaged GaussianDiffusion, ``online_model.*``, ``initted``, ``step``), ``scaler`` and
``version``. No constructor arguments are stored, so:

* the network's settings (dim, dim_mults, channels, attention layout, heads) are read from the weights' shapes
  (``infer_unet_kwargs``); flags override them, and the weights must then load strictly;
* the schedule and the objective are read from the buffers and must be the study's: lucidrains' sigmoid
  schedule and v-prediction with the loss weight SNR/(SNR+1) (= alphas_cumprod). Anything else is refused in
  one line naming what was found: the samplers here are checked against that diffusion only, and sampling a
  network with another objective's formulas would give wrong images without an error;
* the image size is the study's (the `paper` preset after study.toml) or a flag: the Unet itself works at any
  multiple of 2 ** (levels - 1), so the weights cannot say it.

The file is a torch pickle: it is read with ``torch.load(weights_only=True)``, which refuses anything but
tensors and plain containers (the Trainer's file holds only those, plus the version string), so importing a
file cannot run code from it.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from core.ddpm.checkpoints import CHECKPOINT_PREFIX
from core.ddpm.networks import ModelConfig, levels, lucidrains_kwargs, lucidrains_sigmoid_betas, save_model_folder
from core.ddpm.trainer import resolve_config
from core.errors import CspineError
from core.study import Study

JOB_KIND = "imported"
# Buffers are float32 in the file (lucidrains registers them so); our schedule is float64: float32 rounding is
# at most 2**-24 relative (6e-8 on values <= 1), so 1e-6 is far above rounding and far below any other schedule.
SCHEDULE_TOLERANCE = 1e-6
NETWORK_OVERRIDES = ("dim", "dim_mults", "attn_heads", "attn_dim_head", "full_attn", "flash_attn")


def read_trainer_file(path: Path) -> dict[str, Any]:
    """The dict ``Trainer.save`` wrote; one clear line when the file is not one."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CspineError(f"{path}: no such file; give the model-N.pt that lucidrains' Trainer.save wrote")
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # a torn file, not a torch file, or a pickle that holds code
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CspineError(f"{path} is not a readable lucidrains checkpoint ({first[:160]})") from exc
    missing = [k for k in ("step", "model", "ema") if not isinstance(data, dict) or k not in data]
    if missing:
        raise CspineError(f"{path} is not a lucidrains Trainer.save file: it has no {', '.join(missing)}")
    return data


def _sub_state(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def diffusion_states(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(online GaussianDiffusion state, EMA GaussianDiffusion state)."""
    ema = _sub_state(data["ema"], "ema_model.")
    if not ema:
        raise CspineError("the file's ema state has no ema_model.* weights; was it written by Trainer.save?")
    return dict(data["model"]), ema


def infer_unet_kwargs(unet: dict[str, Any]) -> dict[str, Any]:
    """lucidrains Unet constructor arguments from its state dict's shapes."""
    try:
        init = unet["init_conv.weight"]
        final = unet["final_conv.weight"]
    except KeyError as exc:
        raise CspineError(f"the weights are not a lucidrains Unet (no {exc.args[0]})") from None
    if "time_mlp.0.weights" in unet:
        raise CspineError("the Unet uses learned or random Fourier time features; the study's used sinusoidal "
                          "ones and the importer supports those only")
    dim, channels = int(init.shape[0]), int(final.shape[0])
    if int(init.shape[1]) != channels:
        raise CspineError(f"the Unet takes {int(init.shape[1])} input channels for {channels} output channels "
                          f"(self-conditioning or learned variance); the study's did neither")
    n = len({int(m.group(1)) for k in unet if (m := re.match(r"downs\.(\d+)\.", k))})
    mults, full, heads, dim_heads = [], [], set(), set()
    for i in range(n):
        down = unet.get(f"downs.{i}.3.1.weight", unet.get(f"downs.{i}.3.weight"))
        mults.append(int(down.shape[0]) // dim)
        is_full = f"downs.{i}.2.to_out.weight" in unet
        full.append(is_full)
        mem = unet[f"downs.{i}.2.mem_kv"]  # full: (2, heads, mem, dim_head); linear: (2, heads, dim_head, mem)
        heads.add(int(mem.shape[1]))
        dim_heads.add(int(mem.shape[3] if is_full else mem.shape[2]))
    if len(heads) != 1 or len(dim_heads) != 1:
        raise CspineError(f"the Unet's levels have different attention heads {sorted(heads)} or head sizes "
                          f"{sorted(dim_heads)}; give --attn-heads and --attn-dim-head")
    default_full = [False] * (n - 1) + [True]
    return {"dim": dim, "dim_mults": tuple(mults), "channels": channels, "attn_heads": heads.pop(),
            "attn_dim_head": dim_heads.pop(), "full_attn": None if full == default_full else tuple(full)}


def check_diffusion(buffers: dict[str, Any]) -> int:
    """The number of trained timesteps, after checking schedule and objective are the study's."""
    try:
        betas = buffers["betas"].double().numpy()
        alphas_cumprod = buffers["alphas_cumprod"].double().numpy()
        loss_weight = buffers["loss_weight"].double().numpy()
    except KeyError as exc:
        raise CspineError(f"the diffusion state has no {exc.args[0]} buffer; was it a GaussianDiffusion?") from None
    steps = len(betas)
    off = float(np.abs(betas - lucidrains_sigmoid_betas(steps)).max())
    if off > SCHEDULE_TOLERANCE:
        raise CspineError(f"the checkpoint's noise schedule is not lucidrains' sigmoid schedule of {steps} steps "
                          f"(betas differ by up to {off:.3g}); the study trained with beta_schedule='sigmoid'")
    if np.abs(loss_weight - alphas_cumprod).max() > SCHEDULE_TOLERANCE:
        found = "pred_noise" if np.allclose(loss_weight, 1.0) else \
            "pred_x0" if np.allclose(loss_weight, alphas_cumprod / (1 - alphas_cumprod), rtol=1e-4) else \
            "v with min-SNR weighting or another objective"
        raise CspineError(f"the checkpoint's objective looks like {found} (its loss weight is not SNR/(SNR+1)); "
                          f"the study trained objective='pred_v' without min-SNR, the only one imported")
    return steps


def import_checkpoint(study: Study, file: Path | str, *, step: int | None = None, image_size: int | None = None,
                      **overrides: Any) -> dict[str, Any]:
    """Import a ``Trainer.save`` file as checkpoint ``step`` of a new ``imported`` job; returns what was made."""
    from core.ddpm import lucidrains  # imported on use: loads torch and denoising-diffusion-pytorch

    file = Path(file).expanduser().resolve()
    data = read_trainer_file(file)
    online_state, ema_state = diffusion_states(data)
    unet_online, unet_ema = _sub_state(online_state, "model."), _sub_state(ema_state, "model.")
    steps = check_diffusion(online_state)
    kwargs = infer_unet_kwargs(unet_online)
    unknown = set(overrides) - set(NETWORK_OVERRIDES)
    if unknown:
        raise CspineError(f"unknown network settings {sorted(unknown)}; known: {', '.join(NETWORK_OVERRIDES)}")
    paper = resolve_config(study, "paper")
    settings = {**kwargs, "flash_attn": paper.flash_attn, **{k: v for k, v in overrides.items() if v is not None}}
    settings["full_attn"] = tuple(settings["full_attn"] or ())
    cfg = paper.with_overrides(name="imported", num_train_timesteps=steps, image_size=image_size, **settings,
                               differences=(f"imported from {file.name}: trained by lucidrains' own Trainer "
                                            f"(version {data.get('version', 'unknown')}, step {int(data['step'])})",))
    factor = 2 ** (levels(cfg) - 1)
    if cfg.image_size % factor:
        raise CspineError(f"image size {cfg.image_size} must be a multiple of {factor} for this {levels(cfg)}-level "
                          f"Unet (--image-size)")
    nets = []
    for label, state in (("online", unet_online), ("EMA", unet_ema)):
        net = lucidrains.build(lucidrains_kwargs(cfg))
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise CspineError(f"the {label} weights do not fit a Unet with {lucidrains_kwargs(cfg)}: "
                              f"{str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else exc}; "
                              f"check the network flags") from None
        nets.append(net)
    step = int(data["step"]) if step is None else int(step)
    if step < 0:
        raise CspineError(f"--step must be 0 or more, not {step}")
    return _record(study, file, data, cfg, step, *nets)


def _record(study: Study, file: Path, data: dict[str, Any], cfg: ModelConfig, step: int, online, ema) -> dict:
    from core.ddpm.lucidrains import parameter_count  # imported on use: loads torch (start-up cost)

    """Write the checkpoint folder, then the job and checkpoint rows (folder first: a row never names a
    missing folder)."""
    job_id = f"{JOB_KIND}-{datetime.now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    run = study.runs_dir / job_id
    final = run / "checkpoints" / f"{CHECKPOINT_PREFIX}{step}"
    tmp = final.with_name(f".{final.name}.tmp")
    sha256 = _sha256(file)
    source = {"file": str(file), "sha256": sha256, "file_step": int(data["step"]),
              "library_version": data.get("version"), "unet": lucidrains_kwargs(cfg)}
    try:
        save_model_folder(tmp, online, ema, cfg, step, extra={"job": job_id, "imported_from": source})
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(run, ignore_errors=True)
        raise
    params = {"config": cfg.to_dict(), **source}
    result = {"job": job_id, "step": step, "output": str(final), "network": "lucidrains",
              "parameters": parameter_count(ema), "image_size": cfg.image_size,
              "timesteps": cfg.num_train_timesteps, "unet": {k: list(v) if isinstance(v, tuple) else v
                                                              for k, v in lucidrains_kwargs(cfg).items()},
              "source": str(file), "sha256": sha256}
    (run / "job.json").write_text(json.dumps({"id": job_id, "kind": JOB_KIND, "params": params}, indent=2))
    (run / "log.txt").write_text(f"{datetime.now().strftime('%H:%M:%S')} imported {file} (sha256 {sha256}, "
                                 f"step {int(data['step'])} in the file) as checkpoint step {step}\n")
    with study.store.connect() as tx:
        tx.execute("INSERT INTO jobs (id, kind, state, params, started_at, ended_at, output, result) "
                   "VALUES (?, ?, 'succeeded', ?, current_timestamp, current_timestamp, ?, ?)",
                   [job_id, JOB_KIND, json.dumps(params), study.rel(final), json.dumps(result)])
        tx.execute("INSERT INTO checkpoints (job_id, step, path, kept) VALUES (?, ?, ?, TRUE)",
                   [job_id, step, study.rel(final)])
    return result


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
