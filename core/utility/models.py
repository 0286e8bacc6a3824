"""The task models: torchvision ResNets on the 1-channel canonical image, trained from scratch.

Why torchvision's ResNet-18: a standard, widely reported baseline for radiograph classification and landmark
regression, maintained with torch itself (no extra dependency, the same code on CPU and GPU), small enough
(11 M parameters) to train from scratch on a few hundred images, and ``weights=None`` builds it without any
download (hospital servers are often offline; ImageNet weights would also add a colour-photo prior that the
real-vs-synthetic comparison should not depend on). The first convolution takes one channel. ``resnet10`` is
the same torchvision ResNet class with one block per stage, for the demo and the tests on CPU.

Landmarks are regressed as coordinates: the head outputs (x, y) per keypoint as fractions of the image
width, trained with a smooth-L1 loss over the keypoints an image has. Heatmaps are more precise at 256 px but
need an upsampling decoder the torchvision backbone does not have; a coordinate head keeps the model the
library's own. The coordinate head starts at the training set's mean layout (``start_at_mean_layout``).
Attributes get a softmax head trained with cross-entropy.

Training runs on the GPU when torch sees one (``--device``), else on the CPU. Training is a fixed number of
optimizer steps (equal compute for every training set, so a mixed set is not favoured by more updates), Adam,
batches drawn from a per-epoch permutation seeded by (seed, unit, epoch): the batch at any step is a pure
function of the step, so a resumed unit continues exactly where it stopped.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from core.ddpm.data import mix_seed

ARCHS = ("resnet18", "resnet10")


@contextlib.contextmanager
def deterministic() -> Iterator[None]:
    """torch's deterministic algorithms for the duration (a warning where an op has none), then as before: the
    setting is process-wide and other work in the process (tests, the demo) must not inherit it."""
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def build_model(arch: str, n_outputs: int) -> nn.Module:
    from torchvision.models import resnet18  # imported on use: torchvision's model zoo is slow to import
    from torchvision.models.resnet import BasicBlock, ResNet  # imported on use: as above

    if arch == "resnet18":
        model = resnet18(weights=None, num_classes=n_outputs)
    elif arch == "resnet10":
        model = ResNet(BasicBlock, [1, 1, 1, 1], num_classes=n_outputs)
    else:
        raise ValueError(f"unknown model {arch!r}; one of {ARCHS}")
    model.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    return model


@dataclass
class TrainSpec:
    arch: str
    steps: int
    batch: int
    lr: float
    seed: int
    device: str = "cpu"


def pick_device(requested: str | None) -> str:
    """'auto' (or None): the GPU when torch sees one, else the CPU."""
    if requested in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def to_input(u8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(u8).float().div_(127.5).sub_(1.0)


def batch_rows(n: int, step: int, batch: int, seed: int, unit: str) -> np.ndarray:
    """The training rows of optimizer step `step`: consecutive slices of per-epoch permutations."""
    start = step * batch
    rows = []
    while len(rows) < batch:
        epoch, pos = divmod(start + len(rows), n)
        perm = np.random.default_rng(mix_seed(seed, unit, epoch)).permutation(n)
        rows.extend(perm[pos:pos + batch - len(rows)].tolist())
    return np.array(rows)


def loss_fn(out: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return nn.functional.cross_entropy(out, target)
    b = out.shape[0]
    per = nn.functional.smooth_l1_loss(out.view(b, -1, 2), target.view(b, -1, 2), reduction="none",
                                       beta=0.02).sum(-1)  # (B, P): one loss per keypoint
    return (per * mask).sum() / mask.sum().clamp(min=1)


def train(pixels: np.ndarray, target: np.ndarray, mask: np.ndarray | None, n_outputs: int, spec: TrainSpec,
          unit: str, state_path: Path, *, should_stop: Callable[[], bool], on_step: Callable[[int], None],
          save_every: int = 50) -> nn.Module | None:
    """Train one model; returns it, or None when stopped (its state saved in `state_path` to resume from)."""
    torch.manual_seed(mix_seed(spec.seed, unit, "init"))
    model = build_model(spec.arch, n_outputs)
    if mask is not None:
        start_at_mean_layout(model, target, mask)
    model.to(spec.device)
    opt = torch.optim.Adam(model.parameters(), lr=spec.lr)
    step = 0
    if state_path.exists():
        saved = torch.load(state_path, map_location=spec.device, weights_only=True)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["opt"])
        step = int(saved["step"])
    model.train()
    x_all = to_input(pixels)
    y_all = torch.from_numpy(target)
    m_all = None if mask is None else torch.from_numpy(mask.astype(np.float32))
    while step < spec.steps:
        if should_stop():
            _save(state_path, model, opt, step)
            return None
        rows = torch.from_numpy(batch_rows(len(pixels), step, min(spec.batch, len(pixels)), spec.seed, unit))
        out = model(x_all[rows].to(spec.device))
        loss = loss_fn(out, y_all[rows].to(spec.device), None if m_all is None else m_all[rows].to(spec.device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        on_step(step)
        if step % save_every == 0 and step < spec.steps:
            _save(state_path, model, opt, step)
    return model


def start_at_mean_layout(model: nn.Module, target: np.ndarray, mask: np.ndarray) -> None:
    """Start the coordinate head at the training set's mean keypoint layout (bias) with small weights, so a
    short training refines a plausible layout instead of first walking from random outputs to the anatomy."""
    pts = target.reshape(len(target), -1, 2)
    m = mask[..., None].astype(np.float64)
    mean = (pts * m).sum(0) / np.maximum(m.sum(0), 1)
    with torch.no_grad():
        model.fc.bias.copy_(torch.from_numpy(mean.reshape(-1)).float())
        model.fc.weight.mul_(0.01)


def _save(path: Path, model: nn.Module, opt: torch.optim.Optimizer, step: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step}, tmp)
    tmp.replace(path)


@torch.no_grad()
def predict(model: nn.Module, pixels: np.ndarray, batch: int = 64) -> np.ndarray:
    """Raw outputs: (N, 2P) keypoint fractions, or (N, C) class logits (see softmax)."""
    model.eval()
    device = next(model.parameters()).device
    outs = []
    for i in range(0, len(pixels), batch):
        outs.append(model(to_input(pixels[i:i + batch]).to(device)).cpu())
    out = torch.cat(outs) if outs else torch.zeros((0, 0))
    return out.numpy().astype(np.float64)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
