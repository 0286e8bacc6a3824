"""Training throughput: our training loop on the `paper` network (the study's lucidrains Unet) against the
study's own library, lucidrains' denoising-diffusion-pytorch.

Both train the same way in the same process: 1-channel images, v-prediction with the sigmoid schedule, Adam,
gradient clipping at 1.0, one optimizer step per batch; ours through core.ddpm.evaluation.diffusion_loss, theirs
through ``GaussianDiffusion.forward`` (the reference's defaults: pred_v, sigmoid betas, SNR/(SNR+1) weight).
Steps of the two are interleaved in rounds so that load from other processes hits both alike; the median step
time of each is reported. FLOPs per training step (forward + backward) are counted with
``torch.utils.flop_counter.FlopCounterMode`` on the first (untimed) warm-up step of each.

CPU (unless --no-cpu): --size px (default 64), float32, batch --batch (default 8, the paper's). CUDA (when
available): 256 px, bf16 autocast, the same for both, plus images/s and the fraction of the GPU's dense bf16
peak our model reaches.

Prints one JSON line. Needs denoising-diffusion-pytorch (a main dependency).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.ddpm.networks import build_unet, get_preset, training_scheduler
from core.ddpm.evaluation import diffusion_loss

# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) from the vendors' data sheets.
BF16_PEAK_TFLOPS = {"H100 SXM": 989.4, "H100 80GB HBM3": 989.4, "H100 PCIe": 756.0, "H100 NVL": 835.0,
                    "H200": 989.4, "A100": 312.0, "L40S": 362.1, "L4": 121.0, "A10": 125.0, "RTX 4090": 165.2,
                    "RTX 3090": 71.0, "V100": 125.0}


def peak_for(name: str) -> float | None:
    for key in sorted(BF16_PEAK_TFLOPS, key=len, reverse=True):
        if key.lower() in name.lower():
            return BF16_PEAK_TFLOPS[key]
    return None


class Ours:
    label = "cspine-tui paper (the study's lucidrains Unet through our training loop)"

    def __init__(self, size: int, device: torch.device) -> None:
        self.cfg = get_preset("paper", image_size=size)
        self.net = build_unet(self.cfg).to(device)
        if device.type == "cuda":
            self.net = self.net.to(memory_format=torch.channels_last)
        self.ac = training_scheduler(self.cfg).alphas_cumprod.to(device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=self.cfg.learning_rate, betas=self.cfg.adam_betas)
        self.device = device

    def params(self) -> int:
        return sum(p.numel() for p in self.net.parameters())

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.randint(0, self.cfg.num_train_timesteps, (x.shape[0],), device=x.device)
        mf = torch.channels_last if x.is_cuda else torch.contiguous_format
        return diffusion_loss(self.net, self.cfg, self.ac, (x * 2 - 1).contiguous(memory_format=mf),
                              torch.randn_like(x).contiguous(memory_format=mf), t)


class Theirs:
    label = "lucidrains denoising-diffusion-pytorch Unet(dim=64, dim_mults=(1,2,4,8))"

    def __init__(self, size: int, device: torch.device) -> None:
        from denoising_diffusion_pytorch import GaussianDiffusion, Unet

        # I-SynMed's network; flash attention only where the GPU path allows it.
        self.unet = Unet(dim=64, dim_mults=(1, 2, 4, 8), channels=1, flash_attn=device.type == "cuda")
        self.net = GaussianDiffusion(self.unet, image_size=size, timesteps=1000).to(device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=5e-5, betas=(0.9, 0.99))

    def params(self) -> int:
        return sum(p.numel() for p in self.unet.parameters())

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # takes [0, 1] images, normalises, draws t and noise, returns the weighted v-loss


def train_step(m, x: torch.Tensor, dtype: torch.dtype | None, counter=None) -> None:
    """One optimizer step; with a FlopCounterMode `counter`, its forward + backward are counted."""
    with counter if counter is not None else contextlib.nullcontext():
        with torch.autocast(x.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = m.loss(x)
        loss.backward()
    torch.nn.utils.clip_grad_norm_(m.net.parameters(), 1.0)
    m.opt.step()
    m.opt.zero_grad(set_to_none=True)


def warm_up(m, x: torch.Tensor, dtype: torch.dtype | None, steps: int) -> int:
    """Untimed steps (allocator, autotuning, Adam state); the first one also counts the FLOPs of a training
    step (forward + backward), so counting costs no extra step."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    train_step(m, x, dtype, counter)
    for _ in range(steps - 1):
        train_step(m, x, dtype)
    return int(counter.get_total_flops())


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compare(size: int, batch: int, device: torch.device, dtype: torch.dtype | None, rounds: int,
            steps_per_round: int) -> dict:
    torch.manual_seed(0)
    models = {"ours": Ours(size, device), "lucidrains": Theirs(size, device)}
    x = torch.rand(batch, 1, size, size, device=device)
    out: dict = {"image_size": size, "batch": batch, "precision": str(dtype).replace("torch.", "") if dtype else
                 "float32", "device": str(device)}
    times: dict[str, list[float]] = {k: [] for k in models}
    flops = {name: warm_up(m, x, dtype, 1 if device.type == "cpu" else 3) for name, m in models.items()}
    sync(device)
    for _ in range(rounds):
        for name, m in models.items():
            for _ in range(steps_per_round):
                t0 = time.perf_counter()
                train_step(m, x, dtype)
                sync(device)
                times[name].append(time.perf_counter() - t0)
    raw = {}
    for name, m in models.items():
        step_s = statistics.median(times[name])
        raw[name] = (step_s, flops[name])
        out[name] = {"model": m.label, "params_m": round(m.params() / 1e6, 2), "step_s": round(step_s, 4),
                     "images_per_s": float(f"{batch / step_s:.4g}"), "gflop_per_step": round(flops[name] / 1e9, 1),
                     "achieved_gflops": float(f"{flops[name] / step_s / 1e9:.4g}"), "steps_timed": len(times[name])}
    (o_s, o_f), (t_s, t_f) = raw["ours"], raw["lucidrains"]
    out["throughput_ratio"] = round(t_s / o_s, 3)  # images/s ours over theirs (same batch)
    out["flop_ratio"] = round(o_f / t_f, 3)
    out["throughput_per_flop_ratio"] = round((o_f / o_s) / (t_f / t_s), 3)  # achieved FLOP/s ours over theirs
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=64, help="CPU image size (default 64; --quick runs use 32)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2, help="steps of each model per round")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--gpu-batch", type=int, default=8)
    parser.add_argument("--no-cuda", action="store_true")
    parser.add_argument("--no-cpu", action="store_true", help="only the CUDA comparison (needs a CUDA device)")
    args = parser.parse_args(argv)
    try:
        import denoising_diffusion_pytorch  # noqa: F401
    except ImportError:
        print("error: the reference library denoising-diffusion-pytorch is missing; "
              "pip install denoising-diffusion-pytorch==2.3.4", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    result = {"benchmark": "train_throughput", "torch": torch.__version__, "python": platform.python_version(),
              "cpu_threads": torch.get_num_threads(), "target": "throughput_ratio >= 1.0 (ours / lucidrains)"}
    if not args.no_cpu:
        # The key keeps its historical name; "image_size" inside says the size actually run.
        result["cpu_64px"] = compare(args.size, args.batch, torch.device("cpu"), None, args.rounds, args.steps)
    if torch.cuda.is_available() and not args.no_cuda:
        dev = torch.device("cuda")
        name = torch.cuda.get_device_name(dev)
        gpu = compare(256, args.gpu_batch, dev, torch.bfloat16, args.rounds, max(args.steps, 10))
        peak = peak_for(name)
        gpu["gpu"] = name
        gpu["bf16_peak_tflops"] = peak
        for name in ("ours", "lucidrains"):
            frac = gpu[name]["achieved_gflops"] / 1e3 / peak if peak else None
            gpu[f"{name}_fraction_of_bf16_peak"] = round(frac, 4) if frac is not None else None
        result["cuda_256px"] = gpu
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
