"""The benchmark's statistics against independent computations: sklearn's AUROC, the O(m n) textbook DeLong,
Monte Carlo variances and error rates, and the coverage of the bootstrap on a known case."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from core.utility import stats
from core.utility.data import LabelledSet
from core.utility.metrics import case_parts, compare, evaluate, thresholds


def brute_delong(a: np.ndarray, b: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """DeLong, DeLong & Clarke-Pearson (1988) by their definition: psi over every (positive, negative) pair."""
    def placements(s):
        pos, neg = s[y], s[~y]
        psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        return psi.mean(), psi.mean(axis=1), psi.mean(axis=0)
    auc_a, v10a, v01a = placements(a)
    auc_b, v10b, v01b = placements(b)
    m, n = len(v10a), len(v01a)
    s10 = np.cov(np.vstack([v10a, v10b]))
    s01 = np.cov(np.vstack([v01a, v01b]))
    cov = s10 / m + s01 / n
    return auc_a, auc_b, cov


def test_auroc_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        y = rng.integers(0, 2, 60)
        s = rng.integers(0, 6, 60).astype(float)  # many ties
        assert stats.auroc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_fast_delong_equals_textbook_definition() -> None:
    rng = np.random.default_rng(2)
    y = rng.random(80) < 0.4
    a = rng.normal(size=80) + y
    b = np.round(0.6 * a + rng.normal(size=80), 1)  # correlated with a, with ties
    aucs, cov = stats.delong(np.vstack([a, b]), y)
    auc_a, auc_b, ref = brute_delong(a, b, y)
    # Both sum the same placement values in a different order: equal to rounding (1e-12).
    assert aucs == pytest.approx([auc_a, auc_b], abs=1e-12)
    assert cov == pytest.approx(ref, abs=1e-12)
    test = stats.delong_test(a, b, y)
    z = (auc_a - auc_b) / math.sqrt(ref[0, 0] + ref[1, 1] - 2 * ref[0, 1])
    assert test["z"] == pytest.approx(z, rel=1e-9)


def test_delong_variance_matches_monte_carlo() -> None:
    """The mean DeLong variance over many binormal data sets against the spread of the AUROC itself."""
    rng = np.random.default_rng(3)
    reps, m, n = 2000, 40, 60
    aucs, variances = [], []
    for _ in range(reps):
        s = np.concatenate([rng.normal(1.0, 1, m), rng.normal(0, 1, n)])
        y = np.r_[np.ones(m, bool), np.zeros(n, bool)]
        a, c = stats.delong(s, y)
        aucs.append(a[0])
        variances.append(c[0, 0])
    mc = np.var(aucs, ddof=1)
    # A variance from 2000 draws has a relative standard error of sqrt(2/1999) = 3.2%; DeLong's estimator is
    # unbiased to O(1/n) (a few %): 15% allows four standard errors plus that bias.
    assert np.mean(variances) == pytest.approx(mc, rel=0.15)


def test_delong_test_holds_its_level_under_the_null() -> None:
    """Two correlated predictors of equal true AUROC: p < 0.05 about 5% of the time."""
    rng = np.random.default_rng(4)
    reps, m, n = 1500, 40, 40
    y = np.r_[np.ones(m, bool), np.zeros(n, bool)]
    rejections = 0
    for _ in range(reps):
        shared = rng.normal(size=m + n)
        a = 0.8 * y + shared + 0.7 * rng.normal(size=m + n)
        b = 0.8 * y + shared + 0.7 * rng.normal(size=m + n)
        rejections += stats.delong_test(a, b, y)["p"] < 0.05
    rate = rejections / reps
    # Binomial standard error at 5% with 1500 draws: 0.0056; four of them either side.
    assert 0.05 - 0.023 < rate < 0.05 + 0.023


def test_delong_test_finds_a_real_difference() -> None:
    rng = np.random.default_rng(5)
    y = np.r_[np.ones(100, bool), np.zeros(100, bool)]
    good = 2.0 * y + rng.normal(size=200)
    poor = 0.3 * y + rng.normal(size=200)
    res = stats.delong_test(good, poor, y)
    assert res["diff"] > 0 and res["p"] < 1e-6 and res["lo"] > 0


def test_bootstrap_percentile_interval_covers_a_known_proportion() -> None:
    """Coverage of the 95% percentile interval of a proportion (p = 0.3, n = 200) over 300 data sets."""
    rng = np.random.default_rng(6)
    covered, reps = 0, 300
    for r in range(reps):
        x = (rng.random(200) < 0.3).astype(float)
        idx = stats.bootstrap_indices(200, 1000, seed=r)
        lo, hi = stats.percentile_ci(stats.ratio_of_sums(x, np.ones(200), idx))
        covered += lo <= 0.3 <= hi
    # True coverage is about 0.94 here; the standard error of a share from 300 data sets is 0.013.
    assert 0.89 <= covered / reps <= 0.99


def test_ratio_of_sums_and_row_auroc_match_direct_loops() -> None:
    rng = np.random.default_rng(7)
    num, den = rng.random(30), rng.integers(1, 5, 30).astype(float)
    idx = stats.bootstrap_indices(30, 50, seed=1)
    fast = stats.ratio_of_sums(num, den, idx)
    assert fast == pytest.approx([num[i].sum() / den[i].sum() for i in idx], abs=1e-12)
    s, y = rng.normal(size=30), rng.random(30) < 0.5
    rows = stats.auroc_rows(s, y, idx)
    direct = [stats.auroc(s[i], y[i]) for i in idx]
    assert np.allclose(rows, direct, equal_nan=True)


def test_bootstrap_indices_are_reproducible_from_the_seed() -> None:
    a, b, c = (stats.bootstrap_indices(10, 20, seed=s) for s in (3, 3, 4))
    assert (a == b).all() and not (a == c).all()


def test_landmark_metrics_on_a_known_case() -> None:
    """Every prediction off by (3, 4) px: mean radial error 5 px; 2/4 px at 256 are 0.5/1 px at 64."""
    n, p, w = 5, 3, 64
    pts = np.random.default_rng(8).uniform(0.2, 0.8, (n, p, 2)).astype(np.float32)
    mask = np.ones((n, p), bool)
    mask[0, 1] = False  # an image without one keypoint: not counted
    test = LabelledSet([f"i{k}" for k in range(n)], [""] * n, "real", points=pts, mask=mask, native=[w] * n)
    pred = (pts + np.array([3, 4]) / w).reshape(n, -1)
    parts = case_parts("landmarks", pred, test, canonical=w, mm_per_px=0.5)
    ev = evaluate(parts, stats.bootstrap_indices(n, 100, seed=0))
    assert ev["mre_px"]["value"] == pytest.approx(5.0, abs=1e-4)  # float32 fractions: ~1e-5 px
    assert ev["mre_mm"]["value"] == pytest.approx(2.5, abs=1e-4)
    assert ev["sr4"]["value"] == 0.0 and thresholds(64) == (0.5, 1.0)
    near = (pts + np.array([0.3, 0.4]) / w * 0.9).reshape(n, -1)  # 0.45 px off: within 1 px, not 0.5 px
    ev2 = evaluate(case_parts("landmarks", near, test, canonical=w), stats.bootstrap_indices(n, 100, seed=0))
    assert ev2["sr4"]["value"] == 1.0


def test_attribute_comparison_uses_delong_for_two_classes_and_bootstrap_for_more() -> None:
    rng = np.random.default_rng(9)
    y2 = np.r_[np.zeros(20, int), np.ones(20, int)]
    test = LabelledSet([str(i) for i in range(40)], [""] * 40, "real", classes=y2, native=[0] * 40)
    idx = stats.bootstrap_indices(40, 200, seed=0)

    def probs(signal: float, k: int, y: np.ndarray) -> np.ndarray:
        z = rng.normal(size=(len(y), k))
        z[np.arange(len(y)), y] += signal
        e = np.exp(z)
        return e / e.sum(1, keepdims=True)

    pa, pb = case_parts("attr", probs(2, 2, y2), test, 0), case_parts("attr", probs(0.5, 2, y2), test, 0)
    ea, eb = evaluate(pa, idx), evaluate(pb, idx)
    assert ea["auroc"]["value"] == pytest.approx(roc_auc_score(y2, pa["auroc"]["probs"][:, 1]))
    assert compare("auroc", ea["auroc"], eb["auroc"], pa, pb)["method"] == "DeLong"
    assert compare("accuracy", ea["accuracy"], eb["accuracy"], pa, pb)["method"] == "paired bootstrap"
    y3 = np.arange(40) % 3
    test3 = LabelledSet(test.ids, test.paths, "real", classes=y3, native=[0] * 40)
    p3 = case_parts("attr", probs(2, 3, y3), test3, 0)
    macro = roc_auc_score(y3, p3["auroc"]["probs"], multi_class="ovr", average="macro")
    assert evaluate(p3, idx)["auroc"]["value"] == pytest.approx(macro, abs=1e-12)
    assert compare("auroc", evaluate(p3, idx)["auroc"], evaluate(p3, idx)["auroc"], p3, p3)["method"] == \
        "paired bootstrap"


def test_paired_bootstrap_p_is_never_zero_and_symmetric() -> None:
    far = stats.paired_summary(np.full(999, 1.0), np.zeros(999), 1.0, 0.0)
    assert far["p"] == pytest.approx(2 / 1000) and far["lo"] == far["hi"] == 1.0
    rng = np.random.default_rng(10)
    a, b = rng.normal(size=999), rng.normal(size=999)
    assert stats.paired_summary(a, b, 0, 0)["p"] == pytest.approx(stats.paired_summary(b, a, 0, 0)["p"])
    assert stats.paired_summary(a, b, 0, 0)["p"] > 0.5  # no difference: most resamples on both sides


def test_mm_error_uses_each_images_x_and_y_spacing() -> None:
    """(3, 4) px off with 0.5 mm x 1.0 mm pixels is sqrt(1.5^2 + 4^2) mm; an image without a spacing is left
    out of the mm metric (its pixel error still counts in mre_px)."""
    n, w = 3, 64
    pts = np.full((n, 1, 2), 0.5, np.float32)
    test = LabelledSet(["a", "b", "c"], [""] * n, "real", points=pts, mask=np.ones((n, 1), bool), native=[w] * n)
    pred = (pts + np.array([3, 4]) / w).reshape(n, -1)
    spacing = np.array([[0.5, 1.0], [0.5, 1.0], [np.nan, np.nan]])
    ev = evaluate(case_parts("landmarks", pred, test, w, spacing=spacing), stats.bootstrap_indices(n, 50, seed=0))
    assert ev["mre_mm"]["value"] == pytest.approx(math.hypot(1.5, 4.0), abs=1e-4)
    assert ev["mre_px"]["value"] == pytest.approx(5.0, abs=1e-4)
    none = case_parts("landmarks", pred, test, w, spacing=np.full((n, 2), np.nan))
    assert "mre_mm" not in none
