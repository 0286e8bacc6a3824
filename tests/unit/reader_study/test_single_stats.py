"""The single-image design's statistics against independent computations: scikit-learn and SciPy for the AUC and
Cohen's kappa, brute-force pair loops for DeLong's variance, statsmodels and Scott's pi for Fleiss' kappa of two
raters, exhaustive enumeration for the permutation test, closed-form log odds for the GLM fallback, and
simulations (seeded) for the coverage of DeLong's interval and the false-positive rate of the group test.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from core.reader_study import single_stats as ss
from core.reader_study import statistics


def _scores(seed: int, m: int = 30, n: int = 25) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(1, 7, m).astype(float), rng.integers(1, 7, n).astype(float)  # many ties


@pytest.mark.parametrize("seed", range(5))
def test_auc_is_the_mann_whitney_probability(seed):
    x, y = _scores(seed)
    want = roc_auc_score(np.r_[np.ones(x.size), np.zeros(y.size)], np.r_[x, y])
    u = stats.mannwhitneyu(x, y, alternative="two-sided").statistic  # U of the first sample
    assert ss.auc(x, y) == pytest.approx(want, abs=1e-12) == pytest.approx(u / (x.size * y.size), abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_delong_variance_equals_the_brute_force_placement_values(seed):
    x, y = _scores(seed, 17, 13)
    psi = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])  # every pair, by definition
    v10 = [float(np.mean([(a > b) + 0.5 * (a == b) for b in y])) for a in x]
    v01 = [float(np.mean([(a > b) + 0.5 * (a == b) for a in x])) for b in y]
    var = np.var(v10, ddof=1) / x.size + np.var(v01, ddof=1) / y.size
    got = ss.delong(x, y)
    assert got["auc"] == pytest.approx(psi.mean(), abs=1e-12)
    assert got["se"] ** 2 == pytest.approx(var, rel=1e-12)
    lo, hi = got["ci95"]
    assert lo == pytest.approx(max(0, psi.mean() - 1.959964 * math.sqrt(var)), abs=1e-6)
    assert hi == pytest.approx(min(1, psi.mean() + 1.959964 * math.sqrt(var)), abs=1e-6)


def test_delong_interval_covers_the_true_auc_about_95_percent():
    # Binormal scores, d' = 1: true AUC = Phi(1 / sqrt 2). 400 data sets of 100 + 100 (at 40 + 40 DeLong's normal
    # interval is measurably liberal, about 92%); the coverage's binomial SD is sqrt(.95 * .05 / 400) = 0.011, so
    # 3 SD either side.
    rng = np.random.default_rng(5)
    true = stats.norm.cdf(1 / math.sqrt(2))
    hits = 0
    for _ in range(400):
        lo, hi = ss.delong(rng.normal(1, 1, 100), rng.normal(0, 1, 100))["ci95"]
        hits += lo <= true <= hi
    assert abs(hits / 400 - 0.95) < 3 * math.sqrt(0.95 * 0.05 / 400)


@pytest.mark.parametrize("seed", range(4))
def test_cohen_kappa_matches_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    a = list(rng.integers(0, 2, 50))
    b = [v if rng.random() < 0.7 else 1 - v for v in a]
    assert ss.cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)


def test_fleiss_of_two_raters_is_scotts_pi():
    from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss

    rng = np.random.default_rng(3)
    a = rng.integers(0, 2, 60)
    b = np.where(rng.random(60) < 0.8, a, 1 - a)
    table, _ = statistics.category_table([[int(x), int(y)] for x, y in zip(a, b)], categories=[0, 1])
    p_o = float(np.mean(a == b))
    pooled = (a.sum() + b.sum()) / 120
    p_e = pooled ** 2 + (1 - pooled) ** 2
    got = statistics.fleiss_kappa(table).kappa
    assert got == pytest.approx((p_o - p_e) / (1 - p_e), abs=1e-12) == pytest.approx(sm_fleiss(np.array(table)))


def test_permutation_test_equals_exhaustive_enumeration():
    a, b = [0.1, 0.4, 0.35, 0.9, 0.2], [0.7, 0.8, 0.5, 1.0]
    pooled = a + b
    splits = list(itertools.combinations(range(9), 5))  # 126: fewer than reps, so SciPy enumerates them all
    diffs = [np.mean([pooled[i] for i in s]) - np.mean([pooled[i] for i in range(9) if i not in s]) for s in splits]
    observed = np.mean(a) - np.mean(b)
    # two-sided as SciPy defines it: twice the smaller one-sided p (the null of a difference of means between
    # groups of unequal size is not symmetric, so this is not the share of |difference| >= |observed|)
    upper = sum(d >= observed - 1e-12 for d in diffs) / len(diffs)
    lower = sum(d <= observed + 1e-12 for d in diffs) / len(diffs)
    got = ss.permutation_test(a, b, reps=999)
    assert got["p"] == pytest.approx(min(1.0, 2 * min(upper, lower)), abs=1e-12)
    assert got["difference"] == pytest.approx(np.mean(a) - np.mean(b))


def _null_matrix(rng, readers=8, images=30, image_sd=0.3):
    evidence = rng.normal(0, image_sd, images)[None, :] + rng.normal(0, 1, (readers, images))
    evidence += rng.normal(0, 0.3, (readers, 1))  # reader bias
    return (evidence > 0.3).mean(axis=0)  # per image: share of readers calling it synthetic


def test_permutation_test_false_positive_rate_is_at_most_alpha():
    # 300 data sets where two groups of 15 images come from the same generator (readers share images, as in a
    # study). Rejections at 0.05 must stay within 0.05 + 3 binomial SD (sqrt(.05 * .95 / 300) = 0.0126).
    rng = np.random.default_rng(17)
    rejected = 0
    for k in range(300):
        rates = _null_matrix(rng)
        rejected += ss.permutation_test(rates[:15], rates[15:], reps=999, seed=k)["p"] < 0.05
    assert rejected / 300 <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 300)


def _study_matrix(seed=2, readers=6):
    rng = np.random.default_rng(seed)
    truth = np.r_[np.zeros(20), np.ones(20)].astype(int)
    group = np.array(["real"] * 20 + ["g1"] * 10 + ["g2"] * 10)
    d = np.select([group == "g1", group == "g2"], [0.8, 1.6], 0.0)
    conf = np.clip(np.rint(3.5 + d + rng.normal(0, 1.2, (readers, 40))), 1, 6)
    conf[0, 3] = conf[2, 25] = np.nan  # -99: not answered
    return conf, truth, group


def test_pooled_bootstrap_estimates_equal_direct_computations():
    conf, truth, group = _study_matrix()
    res = ss.pooled_bootstrap(conf, truth, group, ["g1", "g2"], synthetic_from=4, reps=300, seed=1)
    est = res["estimate"]

    def reader_auc(mask):
        out = []
        for row in conf:
            ok = ~np.isnan(row) & (mask | (truth == 0))
            out.append(roc_auc_score(truth[ok], row[ok]))
        return float(np.mean(out))

    assert est["auc"] == pytest.approx(reader_auc(truth == 1), abs=1e-12)
    assert est["auc:g1"] == pytest.approx(reader_auc(group == "g1"), abs=1e-12)
    valid = ~np.isnan(conf)
    called = np.nan_to_num(conf) >= 4
    assert est["sensitivity"] == pytest.approx((called & valid & (truth == 1)).sum() / (valid & (truth == 1)).sum())
    assert est["specificity"] == pytest.approx((~called & valid & (truth == 0)).sum() / (valid & (truth == 0)).sum())
    assert est["sensitivity:g2"] == pytest.approx((called & valid & (group == "g2")).sum()
                                                  / (valid & (group == "g2")).sum())
    for k, (lo, hi) in res["ci95"].items():
        assert lo <= est[k] <= hi, k
    again = ss.pooled_bootstrap(conf, truth, group, ["g1", "g2"], synthetic_from=4, reps=300, seed=1)
    assert again["ci95"] == res["ci95"]  # seeded


def _rows(conf, group, readers):
    return [{"reader": f"r{r}", "group": group[t], "condition": None, "called": int(conf[r, t] >= 4)}
            for r in readers for t in range(conf.shape[1]) if not np.isnan(conf[r, t])]


def test_glm_fallback_coefficients_are_the_closed_form_log_odds_ratios():
    conf, _, group = _study_matrix()
    rows = _rows(conf, group, [0, 1, 2])
    res = ss.logistic_model(rows, use_condition=False, min_readers=4)
    assert res["method"] == "GLM binomial" and "cluster-robust" in res["why"]

    def logit(g):
        called = [r["called"] for r in rows if r["group"] == g]
        p = sum(called) / len(called)
        return math.log(p / (1 - p))

    effects = {e["term"]: e["log_odds"] for e in res["effects"]}
    assert effects["intercept (real images)"] == pytest.approx(logit("real"), abs=1e-6)
    for g in ("g1", "g2"):
        assert effects[f"group {g} (vs real)"] == pytest.approx(logit(g) - logit("real"), abs=1e-6)
    one = [dict(r, reader="r0") for r in rows]  # the same answers as if from one reader
    assert ss.logistic_model(one, use_condition=False)["why"].startswith("one reader")


def test_mixed_model_agrees_with_the_glm_when_readers_barely_differ():
    conf, _, group = _study_matrix(readers=8)
    rows = _rows(conf, group, range(8))
    mixed = ss.logistic_model(rows, use_condition=False)
    plain = ss.logistic_model(rows, use_condition=False, min_readers=99)  # forces the GLM
    assert mixed["method"].startswith("BinomialBayesMixedGLM") and plain["method"] == "GLM binomial"
    m = {e["term"]: e["log_odds"] for e in mixed["effects"]}
    p = {e["term"]: e["log_odds"] for e in plain["effects"]}
    # no reader effect was simulated: the random intercept's SD is small and the fixed effects close (the
    # shrinkage of a normal prior and the VB approximation move them a little)
    for term in p:
        assert m[term] == pytest.approx(p[term], abs=0.35), term
    assert m["group g2 (vs real)"] > m["group g1 (vs real)"] > 0


def test_complete_separation_is_reported_not_fitted():
    rows = [{"reader": f"r{r}", "group": g, "condition": None, "called": int(g != "real" or t % 2)}
            for r in range(4) for g in ("real", "g1") for t in range(10)]
    res = ss.logistic_model(rows, use_condition=False)
    assert res["method"] == "none" and "complete separation" in res["why"] and "g1" in res["why"]


def test_roc_points_run_from_corner_to_corner():
    x, y = _scores(1)
    pts = ss.roc_points(x, y, range(1, 7))
    assert pts[0] == (0.0, 0.0) and pts[-1] == (1.0, 1.0) and len(pts) == 7
    assert all(a[0] <= b[0] and a[1] <= b[1] for a, b in zip(pts, pts[1:]))
    # the trapezoidal area under the empirical ROC is the Mann-Whitney AUC (ties count one half)
    area = sum((b[0] - a[0]) * (a[1] + b[1]) / 2 for a, b in zip(pts, pts[1:]))
    assert area == pytest.approx(ss.auc(x, y), abs=1e-12)


@pytest.mark.parametrize("k,n", [(10, 10), (7, 10), (3, 10), (31, 50), (25, 50)])
def test_accuracy_binomial_p_against_half_is_the_summed_pmf(k, n):
    from core.reader_study.single_analysis import _accuracy

    pmf = [math.comb(n, i) / 2 ** n for i in range(n + 1)]
    # two-sided exact test: the probability of every outcome no more likely than the observed one (R's rule)
    want = min(1.0, sum(q for q in pmf if q <= pmf[k] * (1 + 1e-7)))
    assert _accuracy(k, n)["binomial_p_vs_half"] == pytest.approx(want, abs=1e-12)
