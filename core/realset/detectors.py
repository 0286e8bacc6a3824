"""Polarity (negative film?) and orientation (facing left or right?) of a lateral c-spine radiograph.

Both detectors read anatomy, never the side-marker letter (docs/reference/anatomy.md):

* the vertebral column is found without knowing the polarity, as the vertical band with the most horizontal
  edges (end plates and discs alternate down the column);
* polarity: in a positive film the column is brighter than the soft tissue beside it, bone is a small bright
  minority (the histogram's long tail is bright), and the air around the neck is the darkest large region;
* orientation (on a positive image): the airway is a dark band in front of the column, air lies in front
  of the throat below the chin while the nuchal soft tissue behind the neck reaches the film's edge, and
  the laminae and spinous processes put the column's bony edges behind the middle of the film.

Each feature changes sign under the transformation it detects (inversion x -> 1 - x, or mirroring), so a
weighted sum without intercept is exactly symmetric: the score of a mirrored image is minus the score of the
original. The weights were fitted by benchmarks/tune_detectors.py on phantoms whose seeds are disjoint from
the 1,000 that benchmarks/bench_detectors.py measures accuracy on.

Public API (also used on synthetic images by the sampling area)::

    detect_polarity(arr) -> (negative: bool, confidence: float in [0.5, 1])
    detect_orientation(arr_uint8) -> ('left' | 'right', confidence: float in [0.5, 1])

Inputs: a 2-D array, uint8 (0..255), uint16, or float in [0, 1]; any size from 32 px up (canonical 256x256
and 64x64 included). The orientation detector expects a positive image (bone bright).
"""

from __future__ import annotations

import math

import numpy as np

WORK = 64  # the detectors look at a 64x64 version: anatomy this coarse survives any input size
FINE = 128  # cortical edges are read at 128x128

# Fitted weights (see module docstring). Feature order: POLARITY_FEATURES / ORIENTATION_FEATURES.
POLARITY_FEATURES = ("spine_contrast", "cortex_skew", "border_dark")
POLARITY_WEIGHTS = np.array([18.094, 4.789, 3.621])
ORIENTATION_FEATURES = ("throat_air", "airway", "posterior_tissue", "posterior_bone")
ORIENTATION_WEIGHTS = np.array([6.845, 185.467, 22.973, 6.448])


def as_float(arr: np.ndarray) -> np.ndarray:
    a = np.asarray(arr)
    if a.ndim == 3:  # RGB(A): luma
        a = a[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    if a.ndim != 2 or min(a.shape) < 8:
        raise ValueError(f"expected a 2-D grayscale image of at least 8x8 pixels, got shape {np.shape(arr)}")
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if a.dtype == np.uint16:
        return a.astype(np.float32) / 65535.0
    a = a.astype(np.float32)
    if a.size and (a.min() < -1e-3 or a.max() > 1.0 + 1e-3):
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    return a


def work_image(arr: np.ndarray, size: int = WORK) -> np.ndarray:
    """The image at size x size by area averaging, contrast-normalised to its 1st-99th percentiles."""
    a = as_float(arr)
    h, w = a.shape
    ys = (np.arange(size + 1) * h) // size
    xs = (np.arange(size + 1) * w) // size
    if h >= size and w >= size:
        sums = np.add.reduceat(np.add.reduceat(a, ys[:-1], axis=0), xs[:-1], axis=1)
        g = sums / np.outer(np.diff(ys), np.diff(xs))
    else:  # smaller than the work size: nearest-neighbour upsampling
        g = a[np.minimum((np.arange(size) * h) // size, h - 1)][:, np.minimum((np.arange(size) * w) // size, w - 1)]
    lo, hi = np.percentile(g, [1, 99])
    if hi - lo < 1e-6:
        return np.zeros((size, size), dtype=np.float32)
    return np.clip((g - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def _smooth1d(v: np.ndarray, k: int) -> np.ndarray:
    """Moving average with an odd window (symmetric, so mirroring commutes with it)."""
    if k <= 1:
        return v
    pad = k // 2
    return np.convolve(np.pad(v, pad, mode="edge"), np.ones(k) / k, mode="valid")


def _box2d(a: np.ndarray, k: int) -> np.ndarray:
    """k x k moving average (odd k, edges replicated)."""
    pad = k // 2
    c = np.pad(a, pad, mode="edge").cumsum(0).cumsum(1)
    c = np.pad(c, ((1, 0), (1, 0)))
    return (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) / (k * k)


def _neck(g: np.ndarray) -> np.ndarray:
    n = g.shape[0]
    return g[int(0.35 * n): int(0.95 * n)]


def edge_profile(g: np.ndarray) -> np.ndarray:
    """Horizontal-edge energy per column in the neck's rows: end plates, discs, laminae, spinous processes."""
    e = np.abs(np.diff(_neck(g), axis=0)).mean(axis=0)
    e = _smooth1d(e, 3)
    return np.clip(e - np.median(e), 0.0, None)


def spine_column(g: np.ndarray) -> int:
    """x of the bony column: the middle band with the most horizontal edges."""
    n = g.shape[1]
    energy = _smooth1d(edge_profile(g), 5)
    lo = int(0.15 * n)
    hi = n - lo  # a window symmetric under mirroring
    return lo + int(np.argmax(energy[lo:hi]))


def _sigmoid_conf(score: float) -> float:
    return 1.0 / (1.0 + math.exp(-min(abs(score), 50.0)))


# ---------------------------------------------------------------------------------------------------
# Polarity


def polarity_features(arr: np.ndarray) -> np.ndarray:
    """Features that are positive for a positive film and flip sign when the image is inverted."""
    g = work_image(arr)
    xs = spine_column(g)
    rows = _neck(g)
    band = 3
    spine = rows[:, max(0, xs - band): xs + band + 1].mean()
    left = rows[:, max(0, xs - 4 * band): max(1, xs - 2 * band + 1)]
    right = rows[:, min(WORK - 1, xs + 2 * band): xs + 4 * band + 1]
    flank = np.concatenate([left.ravel(), right.ravel()]).mean() if left.size + right.size else rows.mean()
    spine_contrast = float(spine - flank)
    # Cortical bone draws thin bright outlines in a positive film: the fine detail is skewed bright.
    f = work_image(arr, FINE)
    resid = (f - _box2d(f, 5))[FINE // 8: -FINE // 8, FINE // 8: -FINE // 8]
    m2 = float((resid ** 2).mean())
    cortex_skew = float((resid ** 3).mean() / m2 ** 1.5) if m2 > 1e-12 else 0.0
    # Air around the neck: the outer columns darker than the middle in a positive.
    border = np.concatenate([g[:, :4].ravel(), g[:, -4:].ravel()]).mean()
    border_dark = float(g[:, WORK // 4: 3 * WORK // 4].mean() - border)
    return np.array([spine_contrast, cortex_skew, border_dark], dtype=np.float64)


def polarity_score(arr: np.ndarray) -> float:
    """> 0: positive (bone bright); < 0: negative."""
    return float(polarity_features(arr) @ POLARITY_WEIGHTS)


def detect_polarity(arr: np.ndarray) -> tuple[bool, float]:
    """(negative, confidence): negative=True means bone is dark and the image should be inverted."""
    score = polarity_score(arr)
    return score < 0, _sigmoid_conf(score)


# ---------------------------------------------------------------------------------------------------
# Orientation


def orientation_features(arr: np.ndarray) -> np.ndarray:
    """Features that are positive for a left-facing positive film and flip sign when it is mirrored."""
    g = work_image(arr)
    n = WORK
    x = np.arange(n) - (n - 1) / 2
    # Soft-tissue silhouette, low: below the chin there is air in front of the throat, while the nuchal soft
    # tissue behind the neck runs to the edge. A low percentile ignores bright collimator strips; the
    # outermost columns are left out for the same reason.
    low = g[int(0.45 * n): int(0.90 * n)]
    throat_air = float(np.percentile(low[:, -(n // 4):-3], 20) - np.percentile(low[:, 3: n // 4], 20))
    # Airway: narrow dark vertical bands (a horizontal black top-hat) in front of the bony column, whose
    # position is the centroid of horizontal-edge energy (end plates, laminae, spinous processes).
    e = edge_profile(g)
    centroid = float((e * x).sum() / e.sum()) if e.sum() > 1e-9 else 0.0
    neck = _neck(g)
    valleys = (_hclose(neck, 7) - neck).mean(axis=0)
    airway = float((valleys * np.sign(centroid - x)).sum() / n)
    # Soft-tissue silhouette, whole neck: the posterior half (nuchal tissue, posterior elements) is brighter
    # than the anterior half (airway, air in front of the throat).
    mid = g[int(0.40 * n): int(0.90 * n)].mean(axis=0)
    posterior_tissue = float((mid * np.sign(x)).sum() / n)
    # Spinous processes and laminae put the bony edges behind the middle of the film.
    posterior_bone = centroid / n
    return np.array([throat_air, airway, posterior_tissue, posterior_bone], dtype=np.float64)


def _hclose(a: np.ndarray, k: int) -> np.ndarray:
    """Grey closing along rows with a flat k-wide element (dilate then erode)."""
    pad = k // 2
    p = np.pad(a, ((0, 0), (pad, pad)), mode="edge")
    win = np.lib.stride_tricks.sliding_window_view(p, k, axis=1)
    dil = win.max(axis=-1)
    p2 = np.pad(dil, ((0, 0), (pad, pad)), mode="edge")
    return np.lib.stride_tricks.sliding_window_view(p2, k, axis=1).min(axis=-1)


def orientation_score(arr: np.ndarray) -> float:
    """> 0: facing left; < 0: facing right."""
    return float(orientation_features(arr) @ ORIENTATION_WEIGHTS)


def detect_orientation(arr_uint8: np.ndarray) -> tuple[str, float]:
    """('left' | 'right', confidence) for a positive lateral film (bone bright)."""
    score = orientation_score(arr_uint8)
    return ("left" if score >= 0 else "right"), _sigmoid_conf(score)


__all__ = ["detect_polarity", "detect_orientation", "polarity_features", "orientation_features",
           "polarity_score", "orientation_score", "work_image", "spine_column", "POLARITY_FEATURES",
           "ORIENTATION_FEATURES"]
