"""The benchmark's statistics: AUROC with DeLong's variance and paired test, and the (paired) bootstrap.

AUROC is the Mann-Whitney statistic (ties count one half). DeLong's method (DeLong, DeLong & Clarke-Pearson
1988) estimates the variance of one AUROC, and the covariance of two AUROCs measured on the same cases, from
each case's placement values; this module computes them with midranks (Sun & Xu 2014, O(n log n)), and
tests/unit/utility/test_stats.py checks the result against the O(m n) textbook definition, sklearn's AUROC and
a Monte Carlo variance. The paired test of two AUROCs is the z test on their difference.

Every other metric gets a percentile bootstrap over test images: the same resampled image sets for every
model (paired), so a difference between two models carries the correlation of their errors. A metric is
given to the bootstrap as per-image numerators and denominators (a ratio of sums), which covers a mean over
images, a mean over (image, landmark) pairs and a success rate alike, and vectorises over resamples.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats as sps

Z95 = float(sps.norm.ppf(0.975))


def midranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their mean rank (scipy's 'average' ranking), along the last axis."""
    return sps.rankdata(x, method="average", axis=-1)


def auroc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """P(score of a positive > score of a negative) + 1/2 P(tie); nan without both classes."""
    s, y = np.asarray(scores, float), np.asarray(labels, bool)
    m, n = int(y.sum()), int((~y).sum())
    if m == 0 or n == 0:
        return float("nan")
    r = midranks(s)
    return float((r[y].sum() - m * (m + 1) / 2) / (m * n))


def delong(scores: np.ndarray, labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """AUROCs of k score vectors on the same cases and DeLong's covariance matrix of them.

    scores: (k, N) or (N,); labels: N values, 1 = positive. Returns (aucs (k,), cov (k, k)).
    """
    s = np.atleast_2d(np.asarray(scores, float))
    y = np.asarray(labels, bool)
    pos, neg = s[:, y], s[:, ~y]
    m, n = pos.shape[1], neg.shape[1]
    if m < 2 or n < 2:
        raise ValueError("DeLong's variance needs at least two positive and two negative cases")
    tx, ty, tz = midranks(pos), midranks(neg), midranks(np.concatenate([pos, neg], axis=1))
    aucs = (tz[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * n)
    v10 = (tz[:, :m] - tx) / n          # placement of each positive among the negatives
    v01 = 1.0 - (tz[:, m:] - ty) / m    # placement of each negative among the positives
    s10, s01 = np.atleast_2d(np.cov(v10)), np.atleast_2d(np.cov(v01))
    return aucs, s10 / m + s01 / n


def delong_ci(scores: Sequence[float], labels: Sequence[int], level: float = 0.95) -> tuple[float, float]:
    """Wald interval of one AUROC with DeLong's standard error, clipped to [0, 1]."""
    aucs, cov = delong(np.asarray(scores, float), labels)
    z = float(sps.norm.ppf(0.5 + level / 2))
    se = math.sqrt(max(float(cov[0, 0]), 0.0))
    return max(0.0, float(aucs[0]) - z * se), min(1.0, float(aucs[0]) + z * se)


def delong_test(scores_a: Sequence[float], scores_b: Sequence[float], labels: Sequence[int]) -> dict[str, float]:
    """DeLong's paired test of two AUROCs on the same cases: difference a - b, its 95% interval, z and the
    two-sided p value."""
    aucs, cov = delong(np.vstack([np.asarray(scores_a, float), np.asarray(scores_b, float)]), labels)
    diff = float(aucs[0] - aucs[1])
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    se = math.sqrt(max(var, 0.0))
    if se == 0.0:  # identical rankings: no difference, nothing to test
        return {"a": float(aucs[0]), "b": float(aucs[1]), "diff": diff, "lo": diff, "hi": diff, "se": 0.0,
                "z": 0.0, "p": 1.0}
    z = diff / se
    return {"a": float(aucs[0]), "b": float(aucs[1]), "diff": diff, "lo": diff - Z95 * se, "hi": diff + Z95 * se,
            "se": se, "z": z, "p": float(2 * sps.norm.sf(abs(z)))}


# ---------------------------------------------------------------------------------------------------
# Bootstrap


def bootstrap_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n) resampled case indices, the same for every model compared on these cases."""
    return np.random.default_rng(seed).integers(0, n, size=(int(n_boot), int(n)))


def ratio_of_sums(num: np.ndarray, den: np.ndarray, idx: np.ndarray | None = None) -> np.ndarray | float:
    """sum(num) / sum(den) over all cases, or per resample (rows of idx)."""
    if idx is None:
        d = float(np.sum(den))
        return float(np.sum(num)) / d if d else float("nan")
    d = den[idx].sum(axis=1).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(d > 0, num[idx].sum(axis=1) / np.where(d > 0, d, 1), np.nan)


def auroc_rows(scores: np.ndarray, labels: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """AUROC of each resample (rows of idx); nan where a resample lacks a class."""
    s, y = scores[idx], labels[idx].astype(bool)
    r = midranks(s)
    m = y.sum(axis=1).astype(float)
    n = (~y).sum(axis=1).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((m > 0) & (n > 0), ((r * y).sum(axis=1) - m * (m + 1) / 2) / (m * n), np.nan)


def percentile_ci(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    s = np.asarray(samples, float)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(s, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def paired_summary(a: np.ndarray, b: np.ndarray, point_a: float, point_b: float) -> dict[str, float]:
    """A paired bootstrap comparison from the two models' metric on the same resamples: the difference a - b,
    its percentile interval, and a two-sided p value: twice the smaller share of resampled differences on one
    side of zero, counted as (1 + k) / (1 + B) (Davison & Hinkley 1997, eq. 4.11) so that B resamples never
    claim p = 0; the smallest p is 2 / (1 + B). The interval excludes zero about when p < 0.05."""
    d = np.asarray(a, float) - np.asarray(b, float)
    d = d[np.isfinite(d)]
    lo, hi = percentile_ci(d)
    if d.size:
        side = min(int(np.sum(d <= 0)), int(np.sum(d >= 0)))
        p = float(min(1.0, 2 * (1 + side) / (1 + d.size)))
    else:
        p = float("nan")
    return {"a": point_a, "b": point_b, "diff": point_a - point_b, "lo": lo, "hi": hi, "p": p}


__all__ = ["auroc", "delong", "delong_ci", "delong_test", "bootstrap_indices", "ratio_of_sums", "auroc_rows",
           "percentile_ci", "paired_summary", "midranks"]
