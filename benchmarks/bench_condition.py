"""The cost of conditioning: a training step (and a guided sampling step) conditional vs unconditional, same run.

For each network family (``tiny``: diffusers UNet2DModel; ``tiny-paper``: the study's lucidrains Unet; others
with --presets) four networks are built from one preset, differing only in their condition spec:
unconditional, attributes (one attribute of 2 values: a class embedding), keypoints (6 heatmap channels) and
both. A training step is what the trainer does per micro-batch and optimizer step: gather the batch's condition
(heatmaps rendered, mirrored and dropped as core/ddpm/condition_net.py CondTable does), the v-loss forward,
backward, gradient clip and Adam. Steps of the four are interleaved in rounds, so load from other processes hits
all alike; the median of each is reported, and the median over rounds of its ratio to the unconditional step
of the same round. The sampling part times one
denoising step of a batch at guidance 1 (one pass) and guidance 3 (the doubled batch).

Prints one JSON line per (preset, condition); CPU only unless a GPU is visible (then on the GPU). With
``--flops paper:256`` it counts instead the FLOPs of one training step per condition (torch's
FlopCounterMode), which the load of a shared machine cannot blur.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.ddpm.condition_net import CondTable, batch_of, guided
from core.ddpm.conditioning import ConditionSpec
from core.ddpm.evaluation import diffusion_loss
from core.ddpm.networks import build_unet, get_preset, training_scheduler

POINTS = tuple(f"C{k}_body" for k in range(2, 8))
SPECS = {
    "unconditional": None,
    "attributes": ConditionSpec(attributes=("defect",), vocabularies={"defect": ["missing_vertebra", "none"]},
                                drop=0.1),
    "keypoints": ConditionSpec(points=POINTS, sigma=1.0, drop=0.1),
    "attributes+keypoints": ConditionSpec(attributes=("defect",), vocabularies={"defect": ["missing_vertebra",
                                                                                           "none"]},
                                          points=POINTS, sigma=1.0, drop=0.1),
}


class Case:
    def __init__(self, preset: str, size: int, batch: int, name: str, spec: ConditionSpec | None,
                 device: torch.device, n_images: int = 64) -> None:
        overrides = {"image_size": size, "condition": spec.to_dict() if spec else None}
        self.cfg = get_preset(preset, **overrides)
        torch.manual_seed(0)
        self.net = build_unet(self.cfg).to(device).train()
        self.opt = torch.optim.Adam(self.net.parameters(), lr=self.cfg.learning_rate, betas=self.cfg.adam_betas)
        self.ac = training_scheduler(self.cfg).alphas_cumprod.to(device)
        self.name, self.spec, self.batch, self.device, self.size = name, spec, batch, device, size
        rng = np.random.default_rng(0)
        self.table = None
        if spec is not None:
            labels = rng.integers(1, spec.num_classes, n_images).tolist() if spec.attributes else None
            points = rng.uniform(0, size, (n_images, len(POINTS), 2)) if spec.points else None
            self.table = CondTable(spec, labels, points, size)
        self.gen = torch.Generator().manual_seed(1)

    def params(self) -> int:
        return sum(p.numel() for p in self.net.parameters())

    def step(self) -> float:
        t0 = time.perf_counter()
        g, b, s = self.gen, self.batch, self.size
        idx = torch.randint(0, 64, (b,), generator=g)
        x0 = (torch.rand((b, 1, s, s), generator=g) * 2 - 1).to(self.device)
        noise = torch.randn((b, 1, s, s), generator=g).to(self.device)
        t = torch.randint(0, 1000, (b,), generator=g).to(self.device)
        cond = None
        if self.table is not None:
            cond = self.table.batch(idx, torch.rand(b, generator=g) < 0.5, torch.rand(b, generator=g) >= 0.1)
        loss = diffusion_loss(self.net, self.cfg, self.ac, x0, noise, t, cond=cond)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    @torch.no_grad()
    def sample_step(self, scale: float) -> float:
        b, s = self.batch, self.size
        x = torch.randn((b, 1, s, s), generator=self.gen).to(self.device)
        conditions = [{"attributes": {"defect": "none"}, "keypoints": {p: [s / 2, 4.0 + 4 * k]
                                                                        for k, p in enumerate(POINTS)}}] * b
        self.net.eval()
        t0 = time.perf_counter()
        t = torch.tensor(500, device=self.device)
        if self.spec is None:
            self.net(x, t)
        else:
            cond = batch_of(self.spec, conditions, s)
            guided(self.net, x, t, type(cond)(None if cond.heatmaps is None else cond.heatmaps.to(self.device),
                                              None if cond.labels is None else cond.labels.to(self.device)), scale)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.net.train()
        return time.perf_counter() - t0


def flops(preset: str, size: int) -> None:
    """FLOPs of one training step (forward + backward, one image) per condition, counted by torch's
    FlopCounterMode: a figure the machine's load cannot blur."""
    from torch.utils.flop_counter import FlopCounterMode

    base = None
    for name, spec in SPECS.items():
        case = Case(preset, size, 1, name, spec, torch.device("cpu"))
        with FlopCounterMode(display=False) as counter:
            case.step()
        total = counter.get_total_flops()
        base = base or total
        print(json.dumps({"bench": "condition_flops", "preset": preset, "network": case.cfg.network,
                          "condition": name, "size": size, "parameters": case.params(),
                          "train_gflop_per_image": round(total / 1e9, 3),
                          "vs_unconditional": round(total / base, 5)}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="tiny,tiny-paper")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steadier on a shared CPU)")
    ap.add_argument("--flops", default=None, metavar="PRESET:SIZE",
                    help="count the FLOPs of a training step per condition instead (e.g. paper:256)")
    args = ap.parse_args()
    if args.flops:
        preset, _, size = args.flops.partition(":")
        torch.set_num_threads(args.threads)
        flops(preset, int(size or 256))
        return
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    for preset in args.presets.split(","):
        cases = [Case(preset, args.size, args.batch, name, spec, device) for name, spec in SPECS.items()]
        for c in cases:  # warm-up (allocator, oneDNN kernels)
            c.step()
            c.sample_step(1.0)
        train = {c.name: [] for c in cases}
        sample1 = {c.name: [] for c in cases}
        sample3 = {c.name: [] for c in cases}
        for _ in range(args.rounds):
            for c in cases:
                train[c.name].append(c.step())
                sample1[c.name].append(c.sample_step(1.0))
                if c.spec is not None:  # an unconditional network has no guidance
                    sample3[c.name].append(c.sample_step(3.0))

        def paired(times: dict[str, list[float]], name: str) -> float:
            """Median over rounds of this case's time over the unconditional one's in the same round: load
            that drifts between rounds cancels."""
            return statistics.median(a / b for a, b in zip(times[name], train["unconditional"] if times is train
                                                          else sample1["unconditional"]))

        for c in cases:
            med = statistics.median(train[c.name])
            s1 = statistics.median(sample1[c.name])
            s3 = statistics.median(sample3[c.name]) if sample3[c.name] else None
            print(json.dumps({
                "bench": "condition_cost", "preset": preset, "network": c.cfg.network, "condition": c.name,
                "parameters": c.params(), "size": args.size, "batch": args.batch, "rounds": args.rounds,
                "device": str(device), "threads": torch.get_num_threads(), "cpu": platform.processor() or None,
                "train_step_ms": round(med * 1e3, 2), "train_step_vs_unconditional": round(paired(train, c.name), 3),
                "sample_step_ms_guidance1": round(s1 * 1e3, 2),
                "sample_guidance1_vs_unconditional": round(paired(sample1, c.name), 3),
                "sample_step_ms_guidance3": None if s3 is None else round(s3 * 1e3, 2),
                "sample_guidance3_vs_unconditional": None if s3 is None else round(paired(sample3, c.name), 3),
                "train_step_iqr_ms": [round(float(np.percentile(train[c.name], q)) * 1e3, 2) for q in (25, 75)],
            }), flush=True)


if __name__ == "__main__":
    main()
