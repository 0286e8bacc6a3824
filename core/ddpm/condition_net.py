"""The tensors of conditional generation: keypoint heatmaps, class labels, and one call for both network families.

A conditioned network is called as ``net(cat([x, heatmaps]), t, class_labels=labels).sample``: diffusers'
UNet2DModel takes ``class_labels`` itself (``num_class_embeds``); the study's Unet takes them through
core/ddpm/lucidrains.py. :func:`predict` is that call, and the unconditional call ``net(x, t).sample``
unchanged when there is no condition, so unconditional results stay bit-identical.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from core.ddpm.conditioning import NULL_CLASS, ConditionSpec, keypoint_array


@dataclass
class CondBatch:
    """The condition of a batch: heatmaps (B, K, H, W) or None, class labels (B,) or None."""

    heatmaps: torch.Tensor | None
    labels: torch.Tensor | None

    def null(self) -> "CondBatch":
        """The same batch without its condition (what condition dropout trains)."""
        return CondBatch(None if self.heatmaps is None else torch.zeros_like(self.heatmaps),
                         None if self.labels is None else torch.full_like(self.labels, NULL_CLASS))

    def cat(self, other: "CondBatch") -> "CondBatch":
        return CondBatch(None if self.heatmaps is None else torch.cat([self.heatmaps, other.heatmaps]),
                         None if self.labels is None else torch.cat([self.labels, other.labels]))


def heatmaps(points: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """Gaussian heatmaps (B, K, size, size), peak 1 at each point, zero for NaN points.

    ``points`` (B, K, 2) are (x, y) in continuous pixel coordinates (pixel i spans [i, i+1), centre i + 0.5), so
    the heatmap of mirrored points (x -> size - x) is exactly the mirrored heatmap.
    """
    points = points.float()
    valid = torch.isfinite(points).all(-1)                       # (B, K)
    pts = torch.where(valid[..., None], points, torch.zeros_like(points))
    centres = torch.arange(size, dtype=torch.float32, device=points.device) + 0.5
    gx = torch.exp(-((centres - pts[..., 0:1]) ** 2) / (2 * sigma * sigma))   # (B, K, W)
    gy = torch.exp(-((centres - pts[..., 1:2]) ** 2) / (2 * sigma * sigma))   # (B, K, H)
    return gy[..., :, None] * gx[..., None, :] * valid[..., None, None].float()


def predict(net: torch.nn.Module, x: torch.Tensor, t: Any, cond: CondBatch | None = None) -> torch.Tensor:
    """The network's prediction for x at t under `cond` (None: the plain unconditional call)."""
    if cond is None:
        return net(x, t).sample
    if cond.heatmaps is not None:
        x = torch.cat([x, cond.heatmaps.to(device=x.device, dtype=x.dtype)], dim=1)
    if cond.labels is None:
        return net(x, t).sample
    return net(x, t, class_labels=cond.labels.to(x.device)).sample


class CondTable:
    """The labels of a training image set as tensors: class per image and keypoints in the network's pixels."""

    def __init__(self, spec: ConditionSpec, labels: Sequence[int] | None, points: np.ndarray | None,
                 image_size: int) -> None:
        self.spec, self.size = spec, image_size
        self.labels = torch.tensor(list(labels), dtype=torch.long) if spec.attributes else None
        self.points = torch.from_numpy(np.asarray(points, dtype=np.float32)) if spec.points else None
        self.count = len(self.labels) if self.labels is not None else len(self.points)

    def batch(self, index: torch.Tensor, flip: torch.Tensor | None = None, keep: torch.Tensor | None = None,
              device: torch.device | str = "cpu") -> CondBatch:
        """The condition of images `index`, mirrored where `flip`, dropped (null) where not `keep`; the heatmaps
        are rendered on `device` (the training device: no per-step transfer of full-size maps)."""
        index = index.cpu()
        labels = hm = None
        if self.labels is not None:
            labels = self.labels[index].to(device)
            if keep is not None:
                labels = torch.where(keep.to(device), labels, torch.full_like(labels, NULL_CLASS))
        if self.points is not None:
            hm = heatmaps(self.points[index].to(device), self.size, self.spec.sigma)
            if flip is not None:
                hm = torch.where(flip.to(device).view(-1, 1, 1, 1), hm.flip(-1), hm)
            if keep is not None:
                hm = hm * keep.to(device).view(-1, 1, 1, 1).float()
        return CondBatch(hm, labels)


def batch_of(spec: ConditionSpec, conditions: Sequence[dict[str, Any]], image_size: int) -> CondBatch:
    """The CondBatch of stored-format conditions (the network's own pixels, before any mirroring)."""
    labels = hm = None
    if spec.attributes:
        labels = torch.tensor([spec.class_index(c.get("attributes") or {}) for c in conditions], dtype=torch.long)
    if spec.points:
        pts = np.stack([keypoint_array(spec, c) for c in conditions]) if conditions else \
            np.zeros((0, len(spec.points), 2))
        hm = heatmaps(torch.from_numpy(pts), image_size, spec.sigma)
    return CondBatch(hm, labels)


def guided(net: torch.nn.Module, x: torch.Tensor, t: Any, cond: CondBatch, scale: float) -> torch.Tensor:
    """Classifier-free guidance: u + scale * (c - u), u and c the null and conditional predictions.

    scale 1 is the conditional pass alone and scale 0 the unconditional pass alone (one network call each);
    any other scale runs both in one doubled batch. For v-prediction this is the same guidance as on epsilon:
    eps = sqrt(1 - a) x + sqrt(a) v is affine in v with weights (1 - scale) + scale = 1.
    """
    if scale == 1.0:
        return predict(net, x, t, cond)
    if scale == 0.0:
        return predict(net, x, t, cond.null())
    n = x.shape[0]
    out = predict(net, torch.cat([x, x]), t, cond.null().cat(cond)).float()
    uncond, conditional = out[:n], out[n:]
    return uncond + scale * (conditional - uncond)
