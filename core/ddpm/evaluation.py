"""Evaluations during training: the diffusion loss, validation loss with fixed noise, in-training FID/KID.

The loss is the reference's: per-sample MSE on the prediction target (v for the paper), weighted by
SNR/(SNR+1) = alpha_bar_t (lucidrains' ``loss_weight`` for ``pred_v`` without min-SNR), averaged.

In-training FID samples the EMA model with a sampler that is recorded with every value. The sampling
module (core/ddpm/sampling.py ``generate_batch``, core/ddpm/samplers.py) provides the samplers and the fast default
(DPM-Solver++); without it this module's own DDIM
(eta 0, trailing timesteps including t = T-1, x0 clipped, as the reference's ``ddim_sample``) and ancestral
DDPM (the 1000-step ``p_sample_loop``) are used. Each synthetic image i starts from its own seeded noise, so
the set does not depend on the batch size or the number of processes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch

from core.ddpm import sampling
from core.ddpm.data import ImageSet, ValPlan, mix_seed, to_model_range
from core.ddpm.networks import ModelConfig, scheduler_config, training_scheduler
from core.ddpm.samplers import DEFAULT_FAST_SAMPLER, DEFAULT_STEPS, SAMPLERS as EXTERNAL
from core.errors import CspineError

SAMPLERS = ("ddim", "ddpm")


def target_and_weight(cfg: ModelConfig, alphas_cumprod: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor,
                      t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(noisy input, regression target, per-sample loss weight) for timesteps t."""
    ab = alphas_cumprod.to(x0.device)[t].float().view(-1, 1, 1, 1)
    sa, sb = ab.sqrt(), (1 - ab).sqrt()
    xt = sa * x0 + sb * noise
    if cfg.prediction_type == "v_prediction":
        target = sa * noise - sb * x0
    elif cfg.prediction_type == "epsilon":
        target = noise
    else:
        target = x0
    weight = ab.flatten() if cfg.loss_weighting == "snr_over_snr_plus_one" else torch.ones_like(ab.flatten())
    return xt, target, weight


def diffusion_loss(model: torch.nn.Module, cfg: ModelConfig, alphas_cumprod: torch.Tensor, x0: torch.Tensor,
                   noise: torch.Tensor, t: torch.Tensor, *, reduce: bool = True) -> torch.Tensor:
    xt, target, weight = target_and_weight(cfg, alphas_cumprod, x0, noise, t)
    out = model(xt, t).sample.float()
    per_sample = ((out - target) ** 2).mean(dim=(1, 2, 3)) * weight
    return per_sample.mean() if reduce else per_sample


@torch.no_grad()
def validation_loss(model: torch.nn.Module, cfg: ModelConfig, alphas_cumprod: torch.Tensor, val: ImageSet,
                    plan: ValPlan, device: torch.device, *, rank: int = 0, world: int = 1, batch_size: int = 32,
                    memory_format: torch.memory_format = torch.contiguous_format,
                    autocast: Callable[[], Any] | None = None) -> tuple[float, int]:
    """(sum of weighted per-pair losses, number of pairs) over this process's share of the fixed plan."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    mine = list(range(rank, len(plan), world))
    for i in range(0, len(mine), batch_size):
        pairs = mine[i:i + batch_size]
        idx = plan.index[pairs]
        x0 = to_model_range(val.pixels[idx]).to(device).contiguous(memory_format=memory_format)
        noise = plan.noise(pairs).to(device).contiguous(memory_format=memory_format)
        t = plan.timesteps[pairs].to(device)
        with autocast() if autocast else _null():
            losses = diffusion_loss(model, cfg, alphas_cumprod, x0, noise, t, reduce=False)
        total += float(losses.double().sum())
        count += len(pairs)
    model.train(was_training)
    return total, count


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


# -------------------------------------------------------------------------------------------------
# Sampling for FID


@dataclass(frozen=True)
class SamplerSpec:
    name: str = "ddim"
    steps: int = 50
    source: str = "core.ddpm.evaluation"

    def describe(self) -> dict[str, Any]:
        return {"sampler": self.name, "sampler_steps": self.steps, "sampler_source": self.source}


def _external_sampler() -> Callable[..., torch.Tensor] | None:
    """core.ddpm.sampling's batch generator when the sampling module provides one (same contract as ours)."""
    return getattr(sampling, "generate_batch", None)


def resolve_sampler(name: str | None, steps: int | None) -> SamplerSpec:
    """The in-training FID sampler: core.ddpm.sampling's fast default when installed, else DDIM-50 from here."""
    if _external_sampler() is not None:

        name = name or DEFAULT_FAST_SAMPLER
        if name not in EXTERNAL:
            raise CspineError(f"unknown in-training FID sampler {name!r}; use one of {', '.join(EXTERNAL)}")
        return SamplerSpec(name, int(steps or DEFAULT_STEPS[name]), "core.ddpm.sampling")
    name = name or "ddim"
    if name not in SAMPLERS:
        raise CspineError(f"unknown in-training FID sampler {name!r}; use one of {', '.join(SAMPLERS)}")
    if name == "ddpm":
        return SamplerSpec(name, 0, "core.ddpm.evaluation")  # ancestral sampling walks every trained timestep
    return SamplerSpec(name, int(steps or 50), "core.ddpm.evaluation")


def initial_noise(indices: list[int], seed: int, shape: tuple[int, int, int]) -> torch.Tensor:
    return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(mix_seed(seed, "fid", i)))
                        for i in indices])


@torch.no_grad()
def generate_uint8(model: torch.nn.Module, cfg: ModelConfig, spec: SamplerSpec, indices: list[int], seed: int,
                   device: torch.device, autocast: Callable[[], Any] | None = None) -> torch.Tensor:
    """Images for the given sample indices as uint8 (B, C, H, W), rounded like saved PNGs."""
    shape = (cfg.channels, cfg.image_size, cfg.image_size)
    if spec.source == "core.ddpm.sampling":
        images = _external_sampler()(model, cfg, spec.name, spec.steps, [mix_seed(seed, "fid", i) for i in indices],
                                     device=device)
        return images if images.dtype == torch.uint8 else _to_uint8(images)
    if spec.name == "ddim":
        from diffusers import DDIMScheduler

        sched = DDIMScheduler(**scheduler_config(cfg), clip_sample=True, clip_sample_range=1.0,
                              set_alpha_to_one=True, timestep_spacing="trailing")
        sched.set_timesteps(spec.steps)
    else:
        sched = training_scheduler(cfg)
        sched.set_timesteps(cfg.num_train_timesteps)
    x = initial_noise(indices, seed, shape).to(device)
    gen = torch.Generator().manual_seed(mix_seed(seed, "fid-steps", indices[0]))
    for t in sched.timesteps:
        with autocast() if autocast else _null():
            out = model(x, t.to(device)).sample.float()
        if spec.name == "ddim":
            x = sched.step(out, t, x, eta=0.0).prev_sample
        else:
            x = sched.step(out, t, x, generator=gen).prev_sample
    return _to_uint8(x)


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()


def shard(n: int, rank: int, world: int) -> list[int]:
    per = math.ceil(n / world)
    return list(range(rank * per, min(n, (rank + 1) * per)))
