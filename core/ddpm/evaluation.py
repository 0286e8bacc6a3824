"""Evaluations during training: the diffusion loss, validation loss with fixed noise, in-training FID/KID.

The loss is the reference's: per-sample MSE on the prediction target (v for the paper), weighted by
SNR/(SNR+1) = alpha_bar_t (lucidrains' ``loss_weight`` for ``pred_v`` without min-SNR), averaged.

In-training FID samples the EMA model with a sampler of core/ddpm/samplers.py that is recorded with every
value: the preset's FID sampler (``paper``: the study's DDIM-500, eta 0, noise re-derived from the clipped
x0, in float32), else the fast default; ``--fid-sampler``/``--fid-steps`` choose another. Each synthetic
image i starts from its own seeded noise, so the set does not depend on the batch size or the number of
processes. Like the images a sampling job saves, and like the real set after ingest, every FID sample is
mirrored to face left by the orientation detector before its features are taken (:func:`orient_left`), so
the two FID sets differ in anatomy, not in which way the films face.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from core.ddpm.condition_net import CondBatch, CondTable, predict
from core.ddpm.data import ImageSet, ValPlan, mix_seed, to_model_range
from core.ddpm.networks import ModelConfig
from core.ddpm.samplers import DEFAULT_FAST_SAMPLER, autocast_dtype, check_sampler, sample_batch
from core.ddpm.synthetic import standardise_orientation


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
                   noise: torch.Tensor, t: torch.Tensor, *, reduce: bool = True,
                   cond: CondBatch | None = None) -> torch.Tensor:
    """The weighted loss; `cond` is a conditional network's condition of the batch (core/ddpm/condition_net.py)."""
    xt, target, weight = target_and_weight(cfg, alphas_cumprod, x0, noise, t)
    out = predict(model, xt, t, cond).float()
    per_sample = ((out - target) ** 2).mean(dim=(1, 2, 3)) * weight
    return per_sample.mean() if reduce else per_sample


@torch.no_grad()
def validation_loss(model: torch.nn.Module, cfg: ModelConfig, alphas_cumprod: torch.Tensor, val: ImageSet,
                    plan: ValPlan, device: torch.device, *, rank: int = 0, world: int = 1, batch_size: int = 32,
                    memory_format: torch.memory_format = torch.contiguous_format,
                    autocast: Callable[[], Any] | None = None,
                    conditions: CondTable | None = None) -> tuple[float, int]:
    """(sum of weighted per-pair losses, number of pairs) over this process's share of the fixed plan; a
    conditional network is scored with each validation image's full condition (`conditions`)."""
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
        cond = conditions.batch(idx, device=device) if conditions is not None else None
        with autocast() if autocast else _null():
            losses = diffusion_loss(model, cfg, alphas_cumprod, x0, noise, t, reduce=False, cond=cond)
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
    name: str
    steps: int
    precision: str = "fp32"   # the study sampled its FID images without autocast

    def describe(self) -> dict[str, Any]:
        return {"sampler": self.name, "sampler_steps": self.steps, "sampler_precision": self.precision,
                "orientation": ORIENTATION}


ORIENTATION = "synthetic images mirrored to face left by the detector, as ingest does for real films"


def resolve_sampler(name: str | None, steps: int | None, cfg: ModelConfig) -> SamplerSpec:
    """The in-training FID sampler: the one asked for, else the preset's (paper: DDIM-500), else the fast default."""
    name = name or cfg.fid_sampler or DEFAULT_FAST_SAMPLER
    if steps is None and name == cfg.fid_sampler:
        steps = cfg.fid_sampler_steps
    return SamplerSpec(name, check_sampler(name, steps, cfg))


def orient_left(images: np.ndarray) -> tuple[np.ndarray, int]:
    """8-bit films (B, H, W) mirrored to face left where the detector says they face right; (images, flipped)."""
    out, flipped = [], 0
    for arr in images:
        arr, was_flipped, _ = standardise_orientation(arr)
        out.append(arr)
        flipped += was_flipped
    return (np.stack(out) if out else images), flipped


@torch.no_grad()
def generate_uint8(model: torch.nn.Module, cfg: ModelConfig, spec: SamplerSpec, indices: list[int], seed: int,
                   device: torch.device, conditions: CondTable | None = None) -> torch.Tensor:
    """FID images for the given sample indices as uint8 (B, 1, H, W): rounded like saved PNGs, facing left.

    A conditional network samples image i with the condition of training image mix_seed(seed, i) mod n (the
    training set's distribution of conditions), unguided (scale 1: the conditional model itself)."""
    cond = None
    if conditions is not None:
        n = conditions.count
        cond = conditions.batch(torch.tensor([mix_seed(seed, "fid-condition", i) % n for i in indices]))
    images = sample_batch(model, cfg, spec.name, spec.steps, [mix_seed(seed, "fid", i) for i in indices], device,
                          autocast_dtype(device, spec.precision), cond=cond)
    return torch.from_numpy(orient_left(images)[0]).unsqueeze(1)


def shard(n: int, rank: int, world: int) -> list[int]:
    per = math.ceil(n / world)
    return list(range(rank * per, min(n, (rank + 1) * per)))
