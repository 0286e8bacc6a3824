"""The DDPM: network presets and the noise schedule.

Two network families, called the same way (``net(x, t).sample``) by training, samplers and evaluation:
``lucidrains`` is the study's own network, denoising-diffusion-pytorch's ``Unet`` (core/ddpm/lucidrains.py);
``diffusers`` is diffusers' ``UNet2DModel``. `paper` is the study's network and diffusion. The study used
lucidrains' denoising-diffusion-pytorch through I-SynMed with library defaults (docs/reference/ddpm.md sections 0-1):
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
    # Network family: "lucidrains" (the study's Unet) or "diffusers" (UNet2DModel). Configs stored before the
    # lucidrains family existed have no such key and were diffusers networks, hence the default.
    network: str = "diffusers"
    image_size: int = 256
    channels: int = 1
    # lucidrains Unet settings (family "lucidrains"): its constructor arguments; full_attn () = its default
    # (full attention at the innermost level only, linear attention elsewhere).
    dim: int = 64
    dim_mults: tuple[int, ...] = (1, 2, 4, 8)
    attn_heads: int = 4
    attn_dim_head: int = 32
    full_attn: tuple[bool, ...] = ()
    flash_attn: bool = True
    # diffusers UNet2DModel settings (family "diffusers").
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
    # Conditional generation (core/ddpm/conditioning.py ConditionSpec.to_dict()); None: unconditional.
    condition: dict[str, Any] | None = None
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


_PRECISION_DIFFERENCE = "mixed precision: bf16 where the GPU has it (the reference used fp16 through --amp)"
_DATA_ORDER_DIFFERENCE = (
    "data order: each batch (images, flips, timesteps, noise) is a pure function of (seed, step) instead of a "
    "shuffled DataLoader, which is what makes a resumed run repeat an uninterrupted one exactly; same "
    "distribution (uniform images and timesteps, p = 0.5 flips)")
_DIFFUSERS_DIFFERENCES = (
    "network: diffusers UNet2DModel (GroupNorm, one ResNet block per level down and two up, full attention at "
    "32x32 and in the middle block) instead of lucidrains' Unet (RMSNorm, two blocks per level, linear attention "
    "at the outer levels, 7x7 first convolution); 42,855,873 parameters against 35,705,089; lucidrains weights "
    "cannot be loaded",
    _PRECISION_DIFFERENCE,
)

PRESETS: dict[str, ModelConfig] = {
    # The study's own network: lucidrains' Unet(dim=64, dim_mults=(1, 2, 4, 8), channels=1, flash_attn=True).
    "paper": ModelConfig(name="paper", network="lucidrains", fid_sampler="ddim", fid_sampler_steps=500,
                         differences=(_PRECISION_DIFFERENCE, _DATA_ORDER_DIFFERENCE)),
    # The first version's stand-in for it, on diffusers, kept for runs and comparisons made with it.
    "diffusers-paper": ModelConfig(name="diffusers-paper", differences=_DIFFUSERS_DIFFERENCES),
    # A smaller network at the paper's resolution, without the flip that mirrors lateral films.
    "small": ModelConfig(
        name="small", block_out_channels=(32, 64, 128, 256), horizontal_flip=False,
        differences=_DIFFUSERS_DIFFERENCES[:1] + (
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
    # The study's network family at test size: lucidrains' Unet with dim 8, three levels, 32 px.
    "tiny-paper": ModelConfig(
        name="tiny-paper", network="lucidrains", image_size=32, dim=8, dim_mults=(1, 2, 4), attn_heads=2,
        attn_dim_head=8, learning_rate=1e-3, batch_size=16, grad_accum=1, ema_decay=0.99, ema_update_every=1,
        ema_update_after_step=10, horizontal_flip=False, max_steps=600, checkpoint_every=200, fid_every=200,
        fid_samples=64,
        differences=(
            "32x32 pixels, the study's Unet with dim 8 and three levels (8/16/32 channels), 2 heads of 8",
            "learning rate 1e-3, batch 16 without accumulation, EMA 0.99 every step after 10 steps",
            "no horizontal flip", "600 steps, a checkpoint and an FID every 200 steps with 64 samples",
        ),
    ),
}

NETWORK_FAMILIES = ("lucidrains", "diffusers")


def get_preset(name: str, **overrides: Any) -> ModelConfig:
    if name not in PRESETS:
        raise CspineError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name].with_overrides(**overrides)


# -------------------------------------------------------------------------------------------------
# Noise schedule


def lucidrains_sigmoid_betas(timesteps: int, start: float = -3.0, end: float = 3.0, tau: float = 1.0) -> np.ndarray:
    """The sigmoid schedule of denoising-diffusion-pytorch (Jabri et al. 2212.11972), float64, computed by that
    library's own function: it takes the sigmoid of start and end in float32, which a float64 re-derivation
    misses by up to 6.5e-6 in beta (2.6e-5 relative in alpha_bar).

    Not diffusers' "sigmoid" (GeoDiff betas): alpha_bar_500 = 0.500 and alpha_bar_999 ~ 3e-7 here.
    """
    # The library (and torch) load only when a schedule is built, not when presets are listed.
    from denoising_diffusion_pytorch.denoising_diffusion_pytorch import sigmoid_beta_schedule

    return sigmoid_beta_schedule(timesteps, start=start, end=end, tau=tau).numpy()


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


def levels(cfg: ModelConfig) -> int:
    """Resolution levels of the network (the image side must be a multiple of 2 ** (levels - 1))."""
    return len(cfg.dim_mults) if cfg.network == "lucidrains" else len(cfg.block_out_channels)


def lucidrains_kwargs(cfg: ModelConfig) -> dict[str, Any]:
    """The constructor arguments of lucidrains' Unet for this config."""
    return {"dim": cfg.dim, "dim_mults": tuple(cfg.dim_mults), "channels": cfg.channels,
            "attn_heads": cfg.attn_heads, "attn_dim_head": cfg.attn_dim_head,
            "full_attn": tuple(cfg.full_attn) or None, "flash_attn": cfg.flash_attn}


def condition_widths(cfg: ModelConfig) -> tuple[int, int]:
    """(extra input channels, class-embedding rows) of a conditional network; (0, 0) for an unconditional one.

    Both families take a keypoint layout as heatmap channels beside the noisy image and attributes as a class
    embedding added to the timestep embedding (core/ddpm/conditioning.py).
    """
    if not cfg.condition:
        return 0, 0
    from core.ddpm.conditioning import ConditionSpec  # imported on use: keeps this module's imports light

    spec = ConditionSpec.from_dict(cfg.condition)
    return spec.extra_channels, spec.num_classes


def build_unet(cfg: ModelConfig):
    """A freshly initialised network of the config's family; both are called as ``net(x, t).sample``
    (conditional ones through core/ddpm/condition_net.py ``predict``)."""
    extra, classes = condition_widths(cfg)
    if cfg.network == "lucidrains":
        from core.ddpm import lucidrains  # imported on use: loads denoising-diffusion-pytorch (start-up cost)

        kwargs = lucidrains_kwargs(cfg)
        if extra:  # the heatmaps are extra input channels; the output stays the image's
            kwargs.update(channels=cfg.channels + extra, out_dim=cfg.channels)
        if classes:
            kwargs["num_classes"] = classes
        return lucidrains.build(kwargs)
    if cfg.network != "diffusers":
        raise CspineError(f"unknown network family {cfg.network!r}; choose one of {', '.join(NETWORK_FAMILIES)}")
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=cfg.image_size, in_channels=cfg.channels + extra, out_channels=cfg.channels,
        num_class_embeds=classes or None,
        block_out_channels=tuple(cfg.block_out_channels), layers_per_block=cfg.layers_per_block,
        down_block_types=tuple(cfg.down_block_types), up_block_types=tuple(cfg.up_block_types),
        attention_head_dim=cfg.attention_head_dim, norm_num_groups=cfg.norm_num_groups,
    )


# -------------------------------------------------------------------------------------------------
# Model folders inside a checkpoint: unet/, unet_ema/ (plain diffusers), scheduler/, cspine.json

MODEL_META = "cspine.json"


def save_model_folder(folder: Path, unet, ema_unet, cfg: ModelConfig, step: int, extra: dict | None = None) -> None:
    """Write the weights as safetensors plus a config that rebuilds the network. A diffusers network loads with
    plain diffusers (UNet2DModel.from_pretrained(folder, subfolder='unet')); a lucidrains one with
    ``core.ddpm.lucidrains.load`` (its weights file loads into a plain lucidrains Unet). ``unet`` may be None
    (an EMA-only folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    if unet is not None:
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
    if network_family(path) == "lucidrains":
        from core.ddpm import lucidrains  # imported on use: loads denoising-diffusion-pytorch (start-up cost)

        return lucidrains.load(path)
    return UNet2DModel.from_pretrained(path)


def network_family(model_folder: Path) -> str:
    """'lucidrains' or 'diffusers', from a saved network folder's config.json."""
    config = json.loads((Path(model_folder) / "config.json").read_text())
    return "lucidrains" if config.get("_class_name") == "LucidrainsUnet" else "diffusers"


def network_summary(checkpoint: Path) -> dict[str, Any]:
    """The network family and parameter count of a checkpoint, read from its files without building it."""
    from safetensors import safe_open

    folder = Path(checkpoint)
    sub = next((folder / s for s in ("unet_ema", "unet") if (folder / s / "config.json").exists()), None)
    if sub is None:
        return {"network": None, "parameters": None}
    count = 0
    with safe_open(str(sub / "diffusion_pytorch_model.safetensors"), "pt") as fh:
        for key in fh.keys():
            shape = fh.get_slice(key).get_shape()
            count += int(np.prod(shape)) if shape else 1
    return {"network": network_family(sub), "parameters": count}


def load_config(folder: Path) -> ModelConfig:
    return ModelConfig.from_dict(read_model_meta(folder)["config"])
