"""Sampling speed: our samplers (`paper` preset, the study's lucidrains Unet) against the study's own library,
lucidrains' denoising-diffusion-pytorch (I-SynMed's Unet(dim=64, dim_mults=(1,2,4,8)), GaussianDiffusion).

Measured in one process, interleaved in rounds so load from other processes hits both alike (medians):

* per-step throughput of ancestral sampling: our loop (core/ddpm/samplers.py ``denoise``, DDPMScheduler step with
  per-image generators) against theirs (``GaussianDiffusion.p_sample``), in image-steps/s and, because the two
  networks differ in cost, in network GFLOP/s (FLOPs of one forward counted with FlopCounterMode): the
  equal-FLOPs ratio is ours / theirs in GFLOP/s;
* images/s of our default fast sampler (core.ddpm.samplers.DEFAULT_FAST_SAMPLER at its default steps, chosen by
  benchmarks/bench_sampler_quality.py as the fewest steps within 10% of ancestral-1000 FID) against the
  reference's 1000-step ancestral sampler; the reference's 1000 steps are its measured per-step time x 1000.

CPU by default (--size 64, float32, --threads 1). With --device cuda: 256 px, bf16 autocast and channels_last
for ours, the reference's own fp32 sampling (as its sample script runs), plus our images/s and the fraction
of the GPU's dense bf16 peak (bench_train.py's table) that our ancestral steps reach.

Prints one JSON line. Needs denoising-diffusion-pytorch (a main dependency).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.ddpm.networks import build_unet, get_preset
from core.ddpm.samplers import (DEFAULT_FAST_SAMPLER, DEFAULT_STEPS, denoise, image_seed,
                           prepare_unet)


def forward_gflops(fn) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Ours:
    label = "cspine-tui (paper preset: the study's lucidrains Unet, our samplers)"

    def __init__(self, size: int, device: torch.device) -> None:
        self.cfg = get_preset("paper", image_size=size)
        self.net = prepare_unet(build_unet(self.cfg), device)
        self.device = device
        self.params = sum(p.numel() for p in self.net.parameters())
        x = torch.zeros(1, 1, size, size, device=device)
        self.gflops = forward_gflops(lambda: self.net(x, torch.tensor([500], device=device)))

    def run(self, sampler: str, steps: int, batch: int) -> float:
        seeds = [image_seed(1, i) for i in range(batch)]
        sync(self.device)
        t0 = time.perf_counter()
        denoise(self.net, self.cfg, sampler, steps, seeds, self.device)
        sync(self.device)
        return time.perf_counter() - t0


class Theirs:
    label = "lucidrains denoising-diffusion-pytorch Unet(dim=64, dim_mults=(1,2,4,8)), GaussianDiffusion"

    def __init__(self, size: int, device: torch.device) -> None:
        from denoising_diffusion_pytorch import GaussianDiffusion, Unet

        self.unet = Unet(dim=64, dim_mults=(1, 2, 4, 8), channels=1, flash_attn=device.type == "cuda")
        self.diff = GaussianDiffusion(self.unet, image_size=size, timesteps=1000).to(device).eval()
        self.device, self.size = device, size
        self.params = sum(p.numel() for p in self.unet.parameters())
        x = torch.zeros(1, 1, size, size, device=device)
        self.gflops = forward_gflops(lambda: self.unet(x, torch.tensor([500], device=device)))

    @torch.inference_mode()
    def run_steps(self, steps: int, batch: int) -> float:
        """`steps` ancestral steps from t = 999 down (their p_sample_loop body)."""
        img = torch.randn(batch, 1, self.size, self.size, device=self.device)
        sync(self.device)
        t0 = time.perf_counter()
        for t in range(999, 999 - steps, -1):
            img, _ = self.diff.p_sample(img, t)
        sync(self.device)
        return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--size", type=int, default=None, help="pixels (default 64 on CPU, 256 on CUDA)")
    ap.add_argument("--batch", type=int, default=None, help="images per batch (default 2 on CPU, 32 on CUDA)")
    ap.add_argument("--measure-steps", type=int, default=5, help="ancestral steps per per-step measurement")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sampler", default=DEFAULT_FAST_SAMPLER)
    ap.add_argument("--steps", type=int, default=None, help="fast sampler steps (default: its default)")
    args = ap.parse_args()

    device = torch.device(args.device)
    size = args.size or (256 if device.type == "cuda" else 64)
    batch = args.batch or (32 if device.type == "cuda" else 2)
    fast_steps = args.steps or DEFAULT_STEPS[args.sampler]
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ours, theirs = Ours(size, device), Theirs(size, device)
    # Warm-up (allocators, kernels, lazy imports) outside the timings.
    ours.run("ddpm", 2, batch)
    theirs.run_steps(2, batch)

    k = args.measure_steps
    ours_step, theirs_step, ours_fast = [], [], []
    for r in range(args.rounds):
        ours_step.append(ours.run("ddpm", k, batch) / k)
        theirs_step.append(theirs.run_steps(k, batch) / k)
        ours_fast.append(ours.run(args.sampler, fast_steps, batch))
        print(f"round {r + 1}/{args.rounds}: ours {ours_step[-1]:.3f} s/step, theirs {theirs_step[-1]:.3f} s/step, "
              f"ours {args.sampler}-{fast_steps} {ours_fast[-1]:.2f} s", file=sys.stderr, flush=True)
    o_step, t_step, o_fast = (statistics.median(v) for v in (ours_step, theirs_step, ours_fast))
    o_ips_step, t_ips_step = batch / o_step, batch / t_step
    o_gflops_s, t_gflops_s = o_ips_step * ours.gflops, t_ips_step * theirs.gflops
    fast_ips = batch / o_fast
    ref_1000_ips = batch / (1000 * t_step)
    ours_1000_ips = batch / (1000 * o_step)
    out = {
        "benchmark": "sample_speed", "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else
        (platform.processor() or platform.machine()),
        "threads": args.threads, "size": size, "batch": batch, "rounds": args.rounds, "measure_steps": k,
        "ours": {"label": ours.label, "params_m": round(ours.params / 1e6, 2),
                 "gflops_per_forward": round(ours.gflops, 3),
                 "ancestral_s_per_step": round(o_step, 4), "image_steps_per_s": round(o_ips_step, 4),
                 "network_gflops_per_s": round(o_gflops_s, 2)},
        "reference": {"label": theirs.label, "params_m": round(theirs.params / 1e6, 2),
                      "gflops_per_forward": round(theirs.gflops, 3), "ancestral_s_per_step": round(t_step, 4),
                      "image_steps_per_s": round(t_ips_step, 4), "network_gflops_per_s": round(t_gflops_s, 2)},
        "per_step_ratio_raw": round(o_ips_step / t_ips_step, 3),
        "per_step_ratio_equal_flops": round(o_gflops_s / t_gflops_s, 3),
        "fast_sampler": {"sampler": args.sampler, "steps": fast_steps, "images_per_s": round(fast_ips, 5)},
        "reference_ancestral_1000_images_per_s": round(ref_1000_ips, 6),
        "ours_ancestral_1000_images_per_s": round(ours_1000_ips, 6),
        "fast_vs_reference_1000_ratio": round(fast_ips / ref_1000_ips, 2),
        "fast_vs_reference_1000_ratio_equal_flops": round(fast_ips * ours.gflops / (ref_1000_ips * theirs.gflops), 2),
        "note": "reference 1000-step figures = measured per-step time x 1000; CPU timings on a shared machine",
        "torch": torch.__version__,
    }
    if device.type == "cuda":  # how much of the GPU's dense bf16 peak our network's forwards reach
        from bench_train import peak_for

        peak = peak_for(out["device_name"])
        out["bf16_peak_tflops"] = peak
        out["ours_fraction_of_bf16_peak"] = round(o_gflops_s / 1e3 / peak, 4) if peak else None
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
