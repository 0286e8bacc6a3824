"""The DDPM: UNet presets and the noise schedule, on diffusers.

`paper` reproduces the study's network and diffusion as far as diffusers allows. The study used lucidrains'
denoising-diffusion-pytorch through I-SynMed with library defaults (reference/ddpm.md sections 0-1):
v-prediction, lucidrains' sigmoid beta schedule, 1000 steps, Adam(0.9, 0.99) at a constant 5e-5, batch 8 with
2 accumulation steps, gradient clip 1.0, EMA 0.995 updated every 10 steps after a warm-up, random horizontal
flips, loss weighted by SNR/(SNR+1). Each preset lists how it differs from that reference in `differences`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import CspineError


@dataclass
class ModelConfig:
    name: str
    # Network (diffusers UNet2DModel).
    image_size: int = 256
    channels: int = 1
    block_out_channels: tuple[int, ...] = (64, 128, 256, 512)
    layers_per_block: int = 1
    down_block_types: tuple[str, ...] = ("DownBlock2D", "DownBlock2D", "DownBlock2D", "AttnDownBlock2D")
    up_block_types: tuple[str, ...] = ("AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D")
    attention_head_dim: int = 32
    norm_num_groups: int = 8
    # Diffusion.
    prediction_type: str = "v_prediction"
    beta_schedule: str = "lucidrains_sigmoid"   # or any diffusers beta_schedule name ("linear", ...)
    num_train_timesteps: int = 1000
    loss_weighting: str = "snr_over_snr_plus_one"  # lucidrains' weight for v-prediction (= alpha_bar_t)
    # Optimisation.
    learning_rate: float = 5e-5
    adam_betas: tuple[float, float] = (0.9, 0.99)
    batch_size: int = 8
    grad_accum: int = 2
    max_grad_norm: float = 1.0
    ema_decay: float = 0.995
    ema_update_every: int = 10
    ema_update_after_step: int = 100
    ema_power: float = 2 / 3
    horizontal_flip: bool = True
    # Schedule of the run.
    max_steps: int = 160_000
    checkpoint_every: int = 2_000
    fid_every: int = 20_000
    fid_samples: int = 7_250
    # The in-training FID sampler (None: the fast default of core/ddpm/samplers.py); paper: the study's DDIM-500.
    fid_sampler: str | None = None
    fid_sampler_steps: int | None = None
    differences: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise CspineError(f"unknown model settings {sorted(unknown)}; known: {sorted(known)}")
        data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**data)

    def with_overrides(self, **overrides: Any) -> "ModelConfig":
        return ModelConfig.from_dict({**self.to_dict(), **{k: v for k, v in overrides.items() if v is not None}})


_PAPER_DIFFERENCES = (
    "network: diffusers UNet2DModel (GroupNorm, one ResNet block per level down and two up, full attention at "
    "32x32 and in the middle block) instead of lucidrains' Unet (RMSNorm, two blocks per level, linear attention "
    "at the outer levels, 7x7 first convolution); 42.9 M parameters against 35.7 M; lucidrains weights cannot be "
    "loaded",
    "mixed precision: bf16 where the GPU has it (the reference used fp16 through --amp)",
)

PRESETS: dict[str, ModelConfig] = {
    "paper": ModelConfig(name="paper", fid_sampler="ddim", fid_sampler_steps=500, differences=_PAPER_DIFFERENCES),
    # A smaller network at the paper's resolution, without the flip that mirrors lateral films.
    "small": ModelConfig(
        name="small", block_out_channels=(32, 64, 128, 256), horizontal_flip=False,
        differences=_PAPER_DIFFERENCES[:1] + (
            "half the channels of paper (about 11 M parameters)",
            "no horizontal flip: lateral films are standardised to face left, so a flip only teaches the "
            "model right-facing films it must never produce",
        ),
    ),
    # Trains on a CPU in minutes: for the demo and the tests.
    "tiny": ModelConfig(
        name="tiny", image_size=32, block_out_channels=(16, 32, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"), attention_head_dim=16,
        learning_rate=1e-3, batch_size=16, grad_accum=1, ema_decay=0.99, ema_update_every=1,
        ema_update_after_step=10, horizontal_flip=False, max_steps=600, checkpoint_every=200, fid_every=200,
        fid_samples=64,
        differences=(
            "32x32 pixels, three levels of 16/32/64 channels (0.7 M parameters)",
            "learning rate 1e-3, batch 16 without accumulation, EMA 0.99 every step after 10 steps",
            "no horizontal flip", "600 steps, a checkpoint and an FID every 200 steps with 64 samples",
        ),
    ),
}


def get_preset(name: str, **overrides: Any) -> ModelConfig:
    if name not in PRESETS:
        raise CspineError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name].with_overrides(**overrides)


# -------------------------------------------------------------------------------------------------
# Noise schedule


def lucidrains_sigmoid_betas(timesteps: int, start: float = -3.0, end: float = 3.0, tau: float = 1.0) -> np.ndarray:
    """The sigmoid schedule of denoising-diffusion-pytorch (Jabri et al. 2212.11972), float64.

    Not diffusers' "sigmoid" (GeoDiff betas): alpha_bar_500 = 0.500 and alpha_bar_999 ~ 3e-7 here.
    """
    t = np.linspace(0, timesteps, timesteps + 1, dtype=np.float64) / timesteps
    sigmoid = lambda x: 1.0 / (1.0 + np.exp(-x))  # noqa: E731
    v_start, v_end = sigmoid(start / tau), sigmoid(end / tau)
    alphas_cumprod = (-sigmoid((t * (end - start) + start) / tau) + v_end) / (v_end - v_start)
    alphas_cumprod = alphas_cumprod / alphas_cumprod[0]
    betas = 1.0 - alphas_cumprod[1:] / alphas_cumprod[:-1]
    return np.clip(betas, 0.0, 0.999)


def scheduler_config(cfg: ModelConfig) -> dict[str, Any]:
    """Keyword arguments shared by every diffusers scheduler built for this model (trained schedule)."""
    kwargs: dict[str, Any] = {"num_train_timesteps": cfg.num_train_timesteps, "prediction_type": cfg.prediction_type}
    if cfg.beta_schedule == "lucidrains_sigmoid":
        kwargs["trained_betas"] = lucidrains_sigmoid_betas(cfg.num_train_timesteps).tolist()
    else:
        kwargs["beta_schedule"] = cfg.beta_schedule
    return kwargs


def training_scheduler(cfg: ModelConfig):
    """The DDPM scheduler used to add noise in training and for 1000-step ancestral sampling."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(**scheduler_config(cfg), variance_type="fixed_small", clip_sample=True,
                         clip_sample_range=1.0)


# -------------------------------------------------------------------------------------------------
# Network


def build_unet(cfg: ModelConfig):
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=cfg.image_size, in_channels=cfg.channels, out_channels=cfg.channels,
        block_out_channels=tuple(cfg.block_out_channels), layers_per_block=cfg.layers_per_block,
        down_block_types=tuple(cfg.down_block_types), up_block_types=tuple(cfg.up_block_types),
        attention_head_dim=cfg.attention_head_dim, norm_num_groups=cfg.norm_num_groups,
    )


# -------------------------------------------------------------------------------------------------
# Model folders inside a checkpoint: unet/, unet_ema/ (plain diffusers), scheduler/, cspine.json

MODEL_META = "cspine.json"


def save_model_folder(folder: Path, unet, ema_unet, cfg: ModelConfig, step: int, extra: dict | None = None) -> None:
    """Write the weights so plain diffusers loads them: UNet2DModel.from_pretrained(folder, subfolder='unet')."""
    folder.mkdir(parents=True, exist_ok=True)
    unet.save_pretrained(folder / "unet")
    if ema_unet is not None:
        ema_unet.save_pretrained(folder / "unet_ema")
    training_scheduler(cfg).save_pretrained(folder / "scheduler")
    (folder / MODEL_META).write_text(json.dumps({"step": step, "config": cfg.to_dict(), **(extra or {})}, indent=2))


def read_model_meta(folder: Path) -> dict[str, Any]:
    path = Path(folder) / MODEL_META
    if not path.exists():
        raise CspineError(f"{folder} is not a cspine-tui checkpoint (no {MODEL_META}); pick one from "
                          f"`cspine-tui checkpoints`")
    return json.loads(path.read_text())


def load_unet(folder: Path, weights: str = "ema"):
    """Load a checkpoint's network: 'ema' (default; what the study meant to sample) or 'online' weights."""
    from diffusers import UNet2DModel

    sub = {"ema": "unet_ema", "online": "unet"}.get(weights)
    if sub is None:
        raise CspineError(f"weights must be 'ema' or 'online', not {weights!r}")
    path = Path(folder) / sub
    if not path.exists():
        raise CspineError(f"checkpoint {folder} has no {sub}/ folder; is the checkpoint complete?")
    return UNet2DModel.from_pretrained(path)


def load_config(folder: Path) -> ModelConfig:
    return ModelConfig.from_dict(read_model_meta(folder)["config"])
