"""Samplers for the trained DDPM, and a pure function that denoises one batch with per-image generators.

Four samplers, all diffusers schedulers built on the trained schedule and prediction type
(``core.ddpm.networks.scheduler_config``) with ``timestep_spacing='trailing'``, so sampling starts at t = 999 where the
lucidrains sigmoid schedule has alpha_bar ~ 3e-7 (docs/reference/ddpm.md section 2):

    ddpm   ancestral sampling (the paper: 1000 steps, posterior "fixed small" variance, x0 clipped to [-1, 1])
    ddim   DDIM, eta = 0, x0 clipped and the noise re-derived from the clipped x0 (diffusers
           ``use_clipped_model_output=True``): lucidrains' ``ddim_sample``, what the study's FID used with
           ``sampling_timesteps 500`` (the tests check it against lucidrains on the same network and noise)
    dpmpp  DPM-Solver++ multistep, order 3 (the diffusers recommendation for unconditional sampling)
    unipc  UniPC multistep (bh2), order 3

x0 is clipped to [-1, 1] in every sampler, as the reference does (for the solvers through thresholding with a
maximum of 1, which is a plain clamp). The loop is ours, not a pipeline's: image i of a batch draws its
initial noise and, for the ancestral sampler, every step's noise from its own CPU generator, so the image does
not depend on which other images share its batch or on which device drew the noise. Batch size and CPU thread
count still change the floating-point reduction order of the network, so callers that promise bit-identical
images (core/ddpm/sampling.py) keep both fixed for a run.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Sequence

import numpy as np
import torch

from core.errors import CspineError
from core.ddpm.condition_net import CondBatch, guided
from core.ddpm.networks import ModelConfig, condition_widths, scheduler_config

SAMPLERS: tuple[str, ...] = ("ddpm", "ddim", "dpmpp", "unipc")

# The step count each sampler gets when none is asked for. ddpm's 1000 is the paper's ancestral sampler; the
# others are each sampler's fewest steps within 10% of the ancestral-1000 FID in
# benchmarks/bench_sampler_quality.py (first measured with a proxy extractor; re-measured with the real
# Inception, docs/benchmarks.md, where every fast configuration scored better than ancestral-1000).
DEFAULT_STEPS: dict[str, int] = {"ddpm": 1000, "ddim": 50, "dpmpp": 20, "unipc": 10}

# The fast sampler used when a user asks for none (sampling jobs, the demo, in-training FID of presets without
# their own FID sampler). Real-Inception evidence (tiny model, 64 images): UniPC-10 has the lowest FID and KID
# of the 10-step samplers and is within 2.4% FID (KID within one standard deviation) of DDIM-500, the study's
# FID sampler.
DEFAULT_FAST_SAMPLER = "unipc"

SOLVER_ORDER = 3

# Network precision while sampling: auto = bf16 on a CUDA device that has it, float32 elsewhere; fp32 is the
# study's (lucidrains samples without autocast).
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")

StepCallback = Callable[[int, int], None]


def check_sampler(name: str, steps: int | None, cfg: ModelConfig) -> int:
    """Validate a sampler name and step count; returns the step count to use."""
    if name not in SAMPLERS:
        raise CspineError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    steps = DEFAULT_STEPS[name] if steps is None else int(steps)
    if not 1 <= steps <= cfg.num_train_timesteps:
        raise CspineError(f"--steps must be between 1 and {cfg.num_train_timesteps} (the trained timesteps), "
                          f"not {steps}")
    return steps


def make_scheduler(name: str, cfg: ModelConfig, steps: int | None = None):
    """A fresh diffusers scheduler for `name`, configured to the trained schedule, with its timesteps set.

    Multistep solvers keep state between steps, so every batch needs its own scheduler.
    """
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler

    steps = check_sampler(name, steps, cfg)
    common: dict[str, Any] = {**scheduler_config(cfg), "timestep_spacing": "trailing"}
    if name == "ddpm":
        sched = DDPMScheduler(**common, variance_type="fixed_small", clip_sample=True, clip_sample_range=1.0)
    elif name == "ddim":
        sched = DDIMScheduler(**common, clip_sample=True, clip_sample_range=1.0, set_alpha_to_one=True)
    elif name == "dpmpp":
        sched = DPMSolverMultistepScheduler(**common, algorithm_type="dpmsolver++", solver_order=SOLVER_ORDER,
                                            thresholding=True, sample_max_value=1.0, lower_order_final=True,
                                            final_sigmas_type="zero")
    else:
        sched = UniPCMultistepScheduler(**common, solver_order=SOLVER_ORDER, solver_type="bh2", predict_x0=True,
                                        thresholding=True, sample_max_value=1.0, lower_order_final=True,
                                        final_sigmas_type="zero")
    sched.set_timesteps(steps)
    return sched


def image_seed(run_seed: int, index: int) -> int:
    """The seed of image `index` of a run: a 63-bit hash of (run seed, index), stored with the image."""
    digest = hashlib.sha256(f"cspine-tui/sample/{int(run_seed)}/{int(index)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def generators(seeds: Sequence[int]) -> list[torch.Generator]:
    # CPU generators: the noise of an image is the same whichever device runs the network.
    return [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds]


def initial_noise(cfg: ModelConfig, gens: Sequence[torch.Generator]) -> torch.Tensor:
    shape = (cfg.channels, cfg.image_size, cfg.image_size)
    return torch.stack([torch.randn(shape, generator=g, dtype=torch.float32) for g in gens])


def autocast_dtype(device: torch.device | str, precision: str = "auto") -> torch.dtype:
    """The network's dtype for `precision`: auto is bf16 on a CUDA device that has it, float32 elsewhere (CPU
    results stay bit-reproducible)."""
    device = torch.device(device)
    if precision not in PRECISIONS:
        raise CspineError(f"--precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "fp32":
        return torch.float32
    bf16 = device.type == "cpu" or torch.cuda.is_bf16_supported()
    if precision == "bf16":
        if not bf16:
            raise CspineError(f"--precision bf16: {device} has no bfloat16 support; use --precision fp32")
        return torch.bfloat16
    return torch.bfloat16 if device.type == "cuda" and bf16 else torch.float32


def precision_name(dtype: torch.dtype) -> str:
    return "bf16" if dtype == torch.bfloat16 else "fp32"


def prepare_unet(unet: torch.nn.Module, device: torch.device | str, *, compile: bool = False) -> torch.nn.Module:
    """Move a network to `device` for sampling: eval mode, channels_last (faster convolutions on CUDA and
    with oneDNN on CPUs too: 13% per forward of the paper network at 64 px, measured) and opt-in torch.compile
    on CUDA."""
    device = torch.device(device)
    unet = unet.to(device).eval().requires_grad_(False).to(memory_format=torch.channels_last)
    if device.type == "cuda" and compile:
        unet = torch.compile(unet)
    return unet


@torch.inference_mode()
def denoise(unet: torch.nn.Module, cfg: ModelConfig, sampler: str, steps: int | None, seeds: Sequence[int],
            device: torch.device | str, dtype: torch.dtype | None = None,
            on_step: StepCallback | None = None, cond: CondBatch | None = None,
            guidance: float = 1.0) -> torch.Tensor:
    """Run `sampler` on one batch, image i seeded by seeds[i]; returns float32 images in [-1, 1] on the CPU.

    `dtype` is the autocast dtype of the network (default: bf16 on CUDA, float32 elsewhere); the scheduler's
    arithmetic always runs in float32. A conditional network gets `cond` (image i's condition in row i) with
    classifier-free guidance scale `guidance` (core/ddpm/condition_net.py ``guided``); without `cond` the loop
    is the unconditional one, unchanged.
    """
    device = torch.device(device)
    dtype = dtype or autocast_dtype(device)
    sched = make_scheduler(sampler, cfg, steps)
    gens = generators(seeds)
    x = (initial_noise(cfg, gens).to(device) * sched.init_noise_sigma).contiguous(memory_format=torch.channels_last)
    # The solvers are deterministic; only steps that accept a generator may draw noise, and they get the list
    # of per-image generators (diffusers draws image i's noise from generators[i]).
    step_kwargs: dict[str, Any] = {} if sampler == "unipc" else {"generator": gens}
    if sampler == "ddim":
        step_kwargs.update(eta=0.0, use_clipped_model_output=True)
    use_autocast = dtype != torch.float32
    if cond is not None:
        cond = CondBatch(None if cond.heatmaps is None else cond.heatmaps.to(device),
                         None if cond.labels is None else cond.labels.to(device))
    timesteps = sched.timesteps
    for k, t in enumerate(timesteps):
        model_in = sched.scale_model_input(x, t)
        t_in = t.to(device)
        with torch.autocast(device_type=device.type, dtype=dtype, enabled=use_autocast):
            out = unet(model_in, t_in).sample if cond is None else guided(unet, model_in, t_in, cond, guidance)
        x = sched.step(out.float(), t, x, **step_kwargs).prev_sample
        if on_step is not None:
            on_step(k + 1, len(timesteps))
    return x.float().clamp(-1.0, 1.0).cpu()


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] floats (B, C, H, W) -> 8-bit (B, H, W) for one channel, rounding (the reference truncated)."""
    arr = torch.round((images.clamp(-1.0, 1.0) + 1.0) * 127.5).to(torch.uint8).numpy()
    return arr[:, 0] if arr.shape[1] == 1 else arr.transpose(0, 2, 3, 1)


def sample_batch(unet: torch.nn.Module, cfg: ModelConfig, sampler: str, steps: int | None, seeds: Sequence[int],
                 device: torch.device | str, dtype: torch.dtype | None = None,
                 on_step: StepCallback | None = None, cond: CondBatch | None = None,
                 guidance: float = 1.0) -> np.ndarray:
    """Denoise one batch and return 8-bit images (B, H, W), image i from its own generator seeded seeds[i].

    The network must already be on `device` (see `prepare_unet`). Used by sampling jobs and in-training FID.
    """
    if not seeds:
        return np.zeros((0, cfg.image_size, cfg.image_size), dtype=np.uint8)
    return to_uint8(denoise(unet, cfg, sampler, steps, seeds, device, dtype, on_step, cond, guidance))


def default_batch_size(unet: torch.nn.Module, cfg: ModelConfig, device: torch.device | str,
                       guidance: float = 1.0) -> int:
    """A batch that keeps the device busy: moderate on CPU; on CUDA sized from a measured probe.

    On CUDA one forward pass of two images measures the activation memory per image, and the batch takes
    about 60% of the free memory (the rest is headroom for the scheduler and the allocator). Guidance other
    than 0 or 1 runs a doubled batch, so it gets half.
    """
    device = torch.device(device)
    pixels = cfg.image_size * cfg.image_size
    doubled = 2 if cfg.condition and guidance not in (0.0, 1.0) else 1
    if device.type != "cuda":
        return int(min(32, max(2, 2 ** 20 // pixels)) // doubled) or 1
    extra, classes = condition_widths(cfg)
    x = torch.zeros(2, cfg.channels + extra, cfg.image_size, cfg.image_size, device=device)
    kwargs = {"class_labels": torch.zeros(2, dtype=torch.long, device=device)} if classes else {}
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    dtype = autocast_dtype(device)
    with torch.inference_mode(), torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
        unet(x.contiguous(memory_format=torch.channels_last), torch.tensor([500, 500], device=device), **kwargs)
    torch.cuda.synchronize(device)
    per_image = max(1, (torch.cuda.max_memory_allocated(device) - base) / 2) * doubled
    free, _total = torch.cuda.mem_get_info(device)
    return int(min(512, max(1, (free * 0.6) // per_image)))


__all__ = ["SAMPLERS", "DEFAULT_STEPS", "DEFAULT_FAST_SAMPLER", "PRECISIONS", "check_sampler", "make_scheduler",
           "image_seed", "generators", "initial_noise", "autocast_dtype", "precision_name", "prepare_unet", "denoise",
           "to_uint8", "sample_batch", "default_batch_size"]
