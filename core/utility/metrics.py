"""The benchmark's metrics on a test set, with 95% bootstrap intervals, and paired comparisons of two models.

Landmarks (errors in the test image's canonical pixels): ``mre_px`` the mean radial error over every (image,
keypoint) pair; ``sr2`` and ``sr4`` the share of pairs within 2 and 4 px at 256 px (the thresholds scale with
the canonical size: 1 and 2 px at 128); ``mre_mm`` the mean radial error in mm when the user gives the size
of a canonical pixel, or else over the test images whose source gave a pixel spacing (DICOM). Attributes:
``accuracy`` (the most probable class) and ``auroc`` (binary: the probability of the second class in sorted
order; more classes: the mean of the one-vs-rest AUROCs).

Every interval resamples test images (the keypoints of one image stay together). Comparisons: DeLong's test
for a binary AUROC, the paired bootstrap (core/utility/stats.py) for everything else.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from core.utility import stats
from core.utility.data import LabelledSet

LOWER_IS_BETTER = {"mre_px", "mre_mm"}


def thresholds(canonical: int) -> tuple[float, float]:
    return 2.0 * canonical / 256.0, 4.0 * canonical / 256.0


def landmark_errors(pred: np.ndarray, test: LabelledSet) -> np.ndarray:
    """(N, P) radial errors in each test image's own pixels (nan where the image lacks the keypoint)."""
    pts = pred.reshape(test.points.shape)
    err = np.linalg.norm(pts - test.points, axis=-1) * np.asarray(test.native, float)[:, None]
    return np.where(test.mask, err, np.nan)


def mm_errors(pred: np.ndarray, test: LabelledSet, spacing: np.ndarray) -> np.ndarray:
    """(N, P) radial errors in mm from each image's (x, y) mm per canonical pixel (N, 2; nan where unknown):
    a stretched film's pixels are not square, so x and y are scaled apart before the distance."""
    d = (pred.reshape(test.points.shape) - test.points) * np.asarray(test.native, float)[:, None, None]
    err = np.sqrt(((d * spacing[:, None, :]) ** 2).sum(-1))
    return np.where(test.mask, err, np.nan)


def case_parts(task: str, pred: np.ndarray, test: LabelledSet, canonical: int,
               mm_per_px: float | None = None, spacing: np.ndarray | None = None) -> dict[str, Any]:
    """Per-image numerators and denominators of each ratio metric; scores and labels for AUROC.

    ``mre_mm``: with ``mm_per_px`` (the user's, the same for every image) or ``spacing`` (per image, from the
    sources' pixel spacing; images without one are left out of this metric)."""
    if task == "landmarks":
        err = landmark_errors(pred, test)
        have = test.mask.astype(float)
        e0 = np.nan_to_num(err, nan=0.0)
        t2, t4 = thresholds(canonical)
        parts: dict[str, Any] = {"mre_px": (e0.sum(1), have.sum(1)),
                                 "sr2": (((e0 <= t2) & test.mask).sum(1).astype(float), have.sum(1)),
                                 "sr4": (((e0 <= t4) & test.mask).sum(1).astype(float), have.sum(1))}
        if mm_per_px:
            parts["mre_mm"] = (e0.sum(1) * float(mm_per_px), have.sum(1))
        elif spacing is not None and np.isfinite(spacing).all(axis=1).any():
            known = np.isfinite(spacing).all(axis=1)
            mm = np.nan_to_num(mm_errors(pred, test, np.where(known[:, None], spacing, 0.0)), nan=0.0)
            parts["mre_mm"] = (np.where(known, mm.sum(1), 0.0), np.where(known, have.sum(1), 0.0))
        return parts
    probs = pred
    correct = (probs.argmax(1) == test.classes).astype(float)
    return {"accuracy": (correct, np.ones(len(correct))), "auroc": {"probs": probs, "labels": test.classes}}


def _auroc(probs: np.ndarray, labels: np.ndarray, idx: np.ndarray | None) -> np.ndarray | float:
    k = probs.shape[1]
    if k == 2:
        if idx is None:
            return stats.auroc(probs[:, 1], labels == 1)
        return stats.auroc_rows(probs[:, 1], (labels == 1), idx)
    per = [stats.auroc(probs[:, c], labels == c) if idx is None else stats.auroc_rows(probs[:, c], labels == c, idx)
           for c in range(k)]
    return float(np.nanmean(per)) if idx is None else np.nanmean(np.vstack(per), axis=0)


def point_and_boot(part: Any, idx: np.ndarray) -> tuple[float, np.ndarray]:
    if isinstance(part, dict):
        return float(_auroc(part["probs"], part["labels"], None)), _auroc(part["probs"], part["labels"], idx)
    num, den = part
    return float(stats.ratio_of_sums(num, den)), stats.ratio_of_sums(num, den, idx)


def evaluate(parts: dict[str, Any], idx: np.ndarray) -> dict[str, dict[str, Any]]:
    """{metric: {value, lo, hi}} with percentile intervals over the resamples idx, plus the resampled values
    under "boot" (for the paired comparisons; not stored)."""
    out = {}
    for name, part in parts.items():
        value, boot = point_and_boot(part, idx)
        lo, hi = stats.percentile_ci(boot)
        out[name] = {"value": value, "lo": lo, "hi": hi, "boot": boot}
    return out


def compare(name: str, a: dict[str, Any], b: dict[str, Any], parts_a: dict[str, Any],
            parts_b: dict[str, Any]) -> dict[str, Any]:
    """Model a against model b on one metric (difference a - b): DeLong for a binary AUROC, else the paired
    bootstrap from the two evaluations' resampled values."""
    part_a, part_b = parts_a[name], parts_b[name]
    if name == "auroc" and part_a["probs"].shape[1] == 2:
        y = part_a["labels"] == 1
        if 2 <= int(y.sum()) <= len(y) - 2:
            res = stats.delong_test(part_a["probs"][:, 1], part_b["probs"][:, 1], y)
            return {**res, "method": "DeLong"}
    res = stats.paired_summary(a["boot"], b["boot"], a["value"], b["value"])
    return {**res, "method": "paired bootstrap"}


__all__ = ["LOWER_IS_BETTER", "thresholds", "landmark_errors", "case_parts", "evaluate", "compare"]
