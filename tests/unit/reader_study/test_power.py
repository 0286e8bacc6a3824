"""core/reader_study/power.py and power_stats.py: the vectorised tests against the analysis's own (scalar)
implementations and SciPy, the simulated power against closed forms, and the plan's properties.

Monte Carlo tolerances: a simulated power from N independent studies has standard error sqrt(p (1 - p) / N);
a check allows 4.5 of them (a false failure about once in 150,000 runs), with p the closed-form value.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace

import numpy as np
import pytest
from scipy import stats as st

from core.errors import CspineError
from core.reader_study import power, power_stats as ps, statistics

K_SE = 4.5


def _close(simulated: float, exact: float, sims: int) -> None:
    se = math.sqrt(max(exact * (1 - exact), 1e-12) / sims)
    assert abs(simulated - exact) <= K_SE * se, (simulated, exact, se)


def _exact_binomial_power(n: int, p_true: float, p0: float, alpha: float) -> float:
    """sum_k P(k) [binomtest(k) rejects]: SciPy's test, outcome by outcome."""
    return float(sum(st.binom.pmf(k, n, p_true) for k in range(n + 1)
                     if st.binomtest(k, n, p0).pvalue <= alpha))


# -- the vectorised tests equal the analysis's -----------------------------------------------------------

@pytest.mark.parametrize("n,p0", [(1, 0.25), (7, 0.25), (50, 0.25), (400, 0.25), (33, 0.5), (250, 0.5)])
def test_binomial_rejection_table_matches_scipy_binomtest(n, p0):
    table = ps.binomial_rejects(n, p0, 0.05)
    assert list(table) == [st.binomtest(k, n, p0).pvalue <= 0.05 for k in range(n + 1)]


def test_vectorised_wilcoxon_equals_the_analysis_on_ties_and_zeros():
    rng = np.random.default_rng(5)
    for raters in (1, 2, 3, 5, 8, 12):
        d = rng.integers(-4, 5, (300, raters))  # small integers: many ties and zeros
        got = ps.wilcoxon_p(d)
        for row, p in zip(d, got):
            want = statistics.wilcoxon_paired([int(x) for x in row], [0] * raters).p
            assert (math.isnan(p) and math.isnan(want)) or p == pytest.approx(want, abs=1e-12)


def test_vectorised_wilcoxon_exact_branch_matches_scipy():
    d = np.array([[1, -2, 3, 4, 5, 6, 7, 8], [-1, -2, -3, 4, -5, 6, -7, -8]])  # no ties, no zeros: exact
    for row, p in zip(d, ps.wilcoxon_p(d)):
        assert p == pytest.approx(st.wilcoxon(row, method="exact").pvalue, abs=1e-12)


def test_vectorised_holm_equals_statsmodels_with_nan_outside_the_family():
    rng = random.Random(2)
    rows = [[rng.random() for _ in range(4)] for _ in range(12)] + [[0.01, math.nan, 0.04, 0.03]]
    got = ps.holm(np.array(rows))
    for row, adj in zip(rows, got):
        want = statistics.holm(row)
        assert [(math.isnan(a), None if math.isnan(a) else round(a, 12)) for a in adj] == \
            [(math.isnan(w), None if math.isnan(w) else round(w, 12)) for w in want]


def test_vectorised_fleiss_equals_the_analysis():
    rng = np.random.default_rng(1)
    counts = rng.multinomial(6, [0.4, 0.3, 0.2, 0.1], size=(5, 30))  # 5 studies x 30 subjects x 4 categories
    kappa, p = ps.fleiss(counts)
    for i in range(5):
        ref = statistics.fleiss_kappa(counts[i].tolist())
        assert kappa[i] == pytest.approx(ref.kappa, abs=1e-12) and p[i] == pytest.approx(ref.p_value, abs=1e-12)


def test_auc_from_scores_equals_counting_every_pair():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 6, (2, 3, 25))
    truth = np.arange(25) < 11
    got = ps.auc_from_scores(scores, truth, 6)
    for s in range(2):
        for r in range(3):
            real, syn = scores[s, r, truth], scores[s, r, ~truth]
            wins = sum((a > b) + 0.5 * (a == b) for a in real for b in syn)
            assert got[s, r] == pytest.approx(wins / (len(real) * len(syn)), abs=1e-12)


def test_two_way_auc_test_equals_its_formula_counted_pair_by_pair():
    rng = np.random.default_rng(4)
    scores = rng.integers(0, 6, (2, 4, 12))
    truth = np.arange(12) < 5
    auc, p = ps.auc_two_way(scores, truth, 6)
    assert auc == pytest.approx(ps.auc_from_scores(scores, truth, 6).mean(axis=1), abs=1e-12)
    for s in range(2):
        def beats(a, b):
            return (a > b) + 0.5 * (a == b)
        sc = scores[s]
        real, syn = np.flatnonzero(truth), np.flatnonzero(~truth)
        per_reader = [np.mean([beats(sc[r, i], sc[r, j]) for i in real for j in syn]) for r in range(4)]
        v10 = [np.mean([beats(sc[r, i], sc[r, j]) for r in range(4) for j in syn]) for i in real]
        v01 = [np.mean([beats(sc[r, i], sc[r, j]) for r in range(4) for i in real]) for j in syn]
        var = np.var(per_reader, ddof=1) / 4 + np.var(v10, ddof=1) / 5 + np.var(v01, ddof=1) / 7
        want = 2 * st.norm.sf(abs(np.mean(per_reader) - 0.5) / math.sqrt(var))
        assert p[s] == pytest.approx(want, abs=1e-12)


def test_wilson_width_equals_the_analysis_interval():
    for k, n in ((0, 10), (3, 10), (29, 100), (116, 400), (400, 400)):
        lo, hi = statistics.wilson_interval(k, n)
        assert ps.wilson_width(np.array([k]), n)[0] == pytest.approx(hi - lo, abs=1e-12)


# -- simulated power against closed forms --------------------------------------------------------------

def test_pooled_identification_power_matches_the_exact_binomial_power():
    # No reader or quartet effects: the pooled count is Binomial(R T, p).
    sims = 4000
    effect = power.effect_for("quartets", identification=0.35, reader_sd=0.0, quartet_sd=0.0)
    res = power.simulate(effect, 5, 20, sims=sims, seed=11)
    _close(res["tests"]["identification"]["power"], _exact_binomial_power(100, 0.35, 0.25, 0.05), sims)
    per_reader = _exact_binomial_power(20, 0.35, 0.25, 0.05)
    # a mean over 5 independent readers per study: its SE is at most the one-reader SE / sqrt(5)
    _close(res["tests"]["identification_per_reader"]["power"], per_reader, sims * 5)


def test_pooled_identification_power_with_reader_heterogeneity_matches_quadrature():
    # Readers differ (logit-normal), quartets do not: one reader's count is a mixture of binomials, computed by
    # Gauss-Hermite quadrature; the pooled count is the R-fold convolution of it.
    sims, readers, trials, sd = 4000, 6, 15, 0.8
    effect = power.effect_for("quartets", identification=0.33, reader_sd=sd, quartet_sd=0.0)
    z, w = np.polynomial.hermite_e.hermegauss(100)
    w = w / w.sum()
    lo, hi = -30.0, 30.0  # mu with mean expit(mu + sd Z) = 0.33, by bisection
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if (w / (1 + np.exp(-(mid + sd * z)))).sum() < 0.33 else (lo, mid)
    p_nodes = 1 / (1 + np.exp(-(lo + sd * z)))
    one = sum(wi * st.binom.pmf(np.arange(trials + 1), trials, pi) for wi, pi in zip(w, p_nodes))
    pooled = np.array([1.0])
    for _ in range(readers):
        pooled = np.convolve(pooled, one)
    n = readers * trials
    reject = [st.binomtest(k, n, 0.25).pvalue <= 0.05 for k in range(n + 1)]
    exact = float(pooled[reject].sum())
    res = power.simulate(effect, readers, trials, sims=sims, seed=4)
    _close(res["tests"]["identification"]["power"], exact, sims)
    assert res["estimates"]["accuracy"] == pytest.approx(0.33, abs=K_SE * math.sqrt(pooled @ (
        (np.arange(n + 1) / n - 0.33) ** 2) / sims))


def test_single_design_accuracy_power_matches_the_exact_binomial_power():
    # No heterogeneity and the criterion at 0: every trial is correct with probability Phi(d'/2).
    sims = 4000
    effect = power.effect_for("single", auc=0.62, reader_sd=0.0, criterion_sd=0.0, image_sd=0.0)
    p_correct = float(st.norm.cdf(power.single_d(effect) / 2))
    res = power.simulate(effect, 4, 30, sims=sims, seed=8)
    _close(res["tests"]["accuracy"]["power"], _exact_binomial_power(120, p_correct, 0.5, 0.05), sims)


def test_single_design_mean_auc_equals_the_ordinal_model():
    # The expected empirical AUC of the ordinal scale: P(bin real > bin synthetic) + P(same bin) / 2, with the
    # bin probabilities from normal CDFs between the cut points.
    sims = 1000
    effect = power.effect_for("single", auc=0.7, reader_sd=0.0, criterion_sd=0.0, image_sd=0.0)
    d = power.single_d(effect)
    cuts = np.concatenate([[-np.inf], 0.5 * np.arange(-2, 3), [np.inf]])  # 3 levels per answer, step 0.5
    real, syn = np.diff(st.norm.cdf(cuts - d / 2)), np.diff(st.norm.cdf(cuts + d / 2))
    exact = sum(real[a] * (syn[:a].sum() + 0.5 * syn[a]) for a in range(6))
    res = power.simulate(effect, 3, 40, sims=sims, seed=2)
    # per-reader AUC over 20 x 20 pairs has SD below 0.07 (Hanley-McNeil at AUC 0.7); 3 readers per study
    assert res["estimates"]["auc"] == pytest.approx(exact, abs=K_SE * 0.07 / math.sqrt(3 * sims))
    assert res["estimates"]["sensitivity"] == pytest.approx(st.norm.cdf(d / 2), abs=K_SE * math.sqrt(
        0.25 / (3 * 20 * sims)))


def test_interval_width_matches_its_exact_expectation_and_the_normal_approximation():
    sims, n, p = 3000, 400, 0.35
    effect = power.effect_for("quartets", identification=p, reader_sd=0.0, quartet_sd=0.0)
    res = power.simulate(effect, 8, 50, sims=sims, seed=3)
    widths = [statistics.wilson_interval(k, n) for k in range(n + 1)]
    pmf = st.binom.pmf(np.arange(n + 1), n, p)
    exact = float(sum(q * (hi - lo) for q, (lo, hi) in zip(pmf, widths)))
    spread = math.sqrt(sum(q * (hi - lo - exact) ** 2 for q, (lo, hi) in zip(pmf, widths)))
    assert res["estimates"]["accuracy_ci_width"] == pytest.approx(exact, abs=K_SE * spread / math.sqrt(sims))
    # Wald width 2 z sqrt(pq/n); Wilson's differs by factors 1 + O(z^2/n) (its denominator and the z^2/4n^2
    # term), and averaging over k by O(1/n): 3 z^2/n bounds the relative difference.
    z = st.norm.ppf(0.975)
    wald = 2 * z * math.sqrt(p * (1 - p) / n)
    assert res["estimates"]["accuracy_ci_width"] == pytest.approx(wald, rel=3 * z * z / n)


# -- properties of the plan -------------------------------------------------------------------------------

def test_power_grows_with_readers_trials_and_effect():
    e = power.effect_for("quartets", identification=0.32)
    by_readers = [power.simulate(e, r, 30, sims=800, seed=1)["tests"]["identification"]["power"] for r in (2, 6, 15)]
    by_trials = [power.simulate(e, 4, t, sims=800, seed=1)["tests"]["identification"]["power"] for t in (10, 40, 120)]
    by_effect = [power.simulate(power.effect_for("quartets", identification=p), 4, 30, sims=800, seed=1)
                 ["tests"]["identification"]["power"] for p in (0.3, 0.36, 0.45)]
    # neighbours differ by far more than the Monte Carlo error (SE <= 0.018 at 800 studies)
    for series in (by_readers, by_trials, by_effect):
        assert series[0] + 0.1 < series[1] < series[2] - 0.05 or series[2] > 0.99, series
    shift = [power.simulate(power.effect_for("quartets", rating_shift=[s]), 10, 30, sims=800, seed=1)
             ["tests"]["realism_real_vs_group1"]["power"] for s in (0.05, 0.15, 0.3)]
    assert shift[0] + 0.1 < shift[1] < shift[2] - 0.05 or shift[2] > 0.99, shift


def test_readers_or_trials_depends_on_what_varies():
    # The same 400 trials as 4 readers x 100 images or 20 x 20. When readers differ (and images do not), the AUC
    # test gains from readers; when images differ (and readers do not), from images. Measured gaps are 0.12 and
    # 0.31; each power's SE at 2000 studies is at most 0.011, so a gap of 0.05 is over 3 SEs of the difference.
    def auc_power(reader_sd, image_sd, readers, trials):
        e = power.effect_for("single", auc=0.6, reader_sd=reader_sd, image_sd=image_sd)
        return power.simulate(e, readers, trials, sims=2000, seed=5)["tests"]["auc"]["power"]

    assert auc_power(0.6, 0.0, 20, 20) > auc_power(0.6, 0.0, 4, 100) + 0.05
    assert auc_power(0.0, 1.0, 4, 100) > auc_power(0.0, 1.0, 20, 20) + 0.05


def test_the_same_seed_gives_the_same_plan_and_another_seed_does_not():
    a = power.plan("quartets", 4, 20, sims=300, seed=7, run_search=False)
    b = power.plan("quartets", 4, 20, sims=300, seed=7, run_search=False)
    c = power.plan("quartets", 4, 20, sims=300, seed=8, run_search=False)
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert a["tests"] != c["tests"]


def test_at_chance_the_tests_hold_their_level_without_heterogeneity():
    sims = 3000
    e = power.effect_for("quartets", identification=0.25, reader_sd=0.0, quartet_sd=0.0, rating_shift=[0.0])
    res = power.simulate(e, 8, 40, sims=sims, seed=9)
    exact = _exact_binomial_power(320, 0.25, 0.25, 0.05)  # the exact test's true size, at most alpha
    _close(res["tests"]["identification"]["power"], exact, sims)
    assert res["tests"]["realism_any"]["power"] <= 0.05 + K_SE * math.sqrt(0.05 * 0.95 / sims)


def test_too_few_readers_cannot_show_a_realism_difference():
    # 6 readers: the smallest Wilcoxon p is min(2/2^6 exact, all-tied normal approximation) and Holm over 3
    # needs p <= 0.05/3, so even a huge shift is never found. 7 readers can (2/2^7 * 3 < 0.05), but only without
    # ties among their differences (one tied pair: normal approximation, p = 0.022, * 3 > 0.05); 8 readers can
    # with a tied pair too (p = 0.014).
    tied = 2 * st.norm.sf((21 - 10.5 - 0.5) / math.sqrt(6 * 7 * 13 / 24 - (6 ** 3 - 6) / 48))
    assert power.wilcoxon_floor(6) == pytest.approx(min(2 / 2 ** 6, tied), abs=1e-12)
    big = power.effect_for("quartets", rating_shift=[1.5])
    assert power.simulate(big, 6, 100, sims=300)["tests"]["realism_real_vs_group1"]["power"] == 0.0
    assert 0.05 < power.simulate(big, 7, 100, sims=300)["tests"]["realism_real_vs_group1"]["power"] < 0.9
    assert power.simulate(big, 8, 100, sims=300)["tests"]["realism_real_vs_group1"]["power"] > 0.9
    doc = power.plan("quartets", 6, 50, big, sims=200, run_search=False)
    assert any("no realism difference can be found" in n for n in doc["notes"])


def test_pairwise_comparisons_widen_the_holm_family():
    # All pairs of real + 3 groups: 6 comparisons, so the first Holm step needs p <= 0.05/6. 8 readers reach it
    # only with 8 distinct differences of one sign (exact p = 2/2^8; one tied pair gives p = 0.014), so the power
    # drops far below that of real vs each group (family of 3); 7 readers never reach it (2/2^7 > 0.05/6).
    e = power.effect_for("quartets", rating_shift=[0.4], pairwise=True)
    res = power.simulate(e, 8, 50, sims=300)
    assert set(res["tests"]) >= {"realism_real_vs_group1", "realism_group1_vs_group2", "realism_group2_vs_group3"}
    assert "Holm over all 6 pairs" in res["tests"]["realism_real_vs_group1"]["test"]
    each = power.simulate(replace(e, pairwise=False), 8, 50, sims=300)["tests"]["realism_real_vs_group1"]["power"]
    for name in ("realism_real_vs_group1", "realism_group1_vs_group2"):  # group 1 differs from both alike
        assert 0.05 < res["tests"][name]["power"] < each - 0.3
    assert power.simulate(e, 7, 50, sims=300)["tests"]["realism_real_vs_group1"]["power"] == 0.0
    assert any("Holm over 6" in n for n in power.plan("quartets", 7, 50, e, sims=100, run_search=False)["notes"])


def test_search_returns_the_first_grid_value_reaching_the_target():
    e = power.effect_for("quartets", identification=0.35)
    s = power.search(e, 8, 50, sims=300, seed=2)
    found = s["readers_needed"]["identification"]["readers"]
    i = power.READER_GRID.index(found)
    at = power.simulate(e, found, 50, sims=300, seed=2)["tests"]["identification"]["power"]
    before = power.simulate(e, power.READER_GRID[i - 1], 50, sims=300, seed=2)["tests"]["identification"]["power"]
    assert at >= 0.8 > before
    assert s["trials_needed"]["identification"]["trials"] in power.TRIAL_GRID


def test_heterogeneous_readers_make_the_pooled_test_reject_at_chance():
    doc = power.plan("quartets", 8, 50, power.effect_for("quartets", reader_sd=0.5), sims=1000, run_search=False)
    assert doc["false_positive"]["identification"] > 0.1
    assert any("rejects in" in n for n in doc["notes"])


def test_effects_are_checked_with_messages_naming_the_option():
    with pytest.raises(CspineError, match="rating_shift does not apply to the single design"):
        power.effect_for("single", rating_shift=[0.3])
    with pytest.raises(CspineError, match="AUC 1.2"):
        power.effect_for("single", auc=1.2)
    with pytest.raises(CspineError, match="reader_sd = -1"):
        power.effect_for("quartets", reader_sd=-1)


# -- the finished study's power -----------------------------------------------------------------------------

def test_study_power_uses_the_saved_plan_and_says_so():
    result = {"n_raters": 8, "n_quartets": 50, "groups": ["real", "a", "b"]}
    default = power.study_power(result, None, sims=300)
    assert default["effect_source"].startswith("default") and default["effect"]["groups"] == 2
    saved = power.saved_plan(power.plan("quartets", 8, 50, power.effect_for("quartets", identification=0.45),
                                        sims=100, run_search=False))
    planned = power.study_power(result, saved, sims=300)
    assert planned["effect_source"].startswith("planned") and planned["effect"]["identification"] == 0.45
    assert planned["tests"]["identification"]["power"] > default["tests"]["identification"]["power"]
    text = "\n".join(power.power_lines(planned))
    assert text.startswith("## Power") and "45%" in text and "8 readers x 50 quartets" in text
    broken = power.study_power(result, {**saved, "effect": {**saved["effect"], "identification": 2}}, sims=100)
    assert broken["effect"]["identification"] == 0.35 and "was not used" in broken["notes"][-1]
    # a single-image analysis (its result names the design and counts images); the quartet plan does not apply
    single = power.study_power({"design": "single", "n_raters": 3, "n_images": 40, "groups": ["gan"]}, saved,
                               sims=300)
    assert (single["design"], single["trials"], single["effect"]["auc"]) == ("single", 40, 0.65)
    assert single["effect_source"].startswith("default") and "reader AUC" in "\n".join(power.power_lines(single))


def test_a_plan_saved_with_the_cli_is_the_power_the_report_states(tmp_path, capsys):
    from core.demo import raters
    from core.reader_study import analysis, pack, responses
    from cspine_tui.cli.main import main
    from tests.factories.survey import tiny_study

    study = tiny_study(tmp_path, n_real=6, per_ckpt=6, reject_every=1000)
    assert main(["plan-study", "--study", str(study.root), "--readers", "4", "--trials", "6", "--effect", "0.5",
                 "--sims", "100", "--no-search", "--save", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["saved_to"] == str(study.settings_path.resolve())
    spec = pack.build_pack(study, tmp_path / "pack", checkpoints=["2000", "4000", "6000"], count=6, seed=1, size=32)
    responses.import_ratings(study, raters.write_qualtrics_csv(tmp_path / "sim.csv", spec,
                                                               raters.simulate_raters(spec, 4, seed=2)))
    from core.study import Study

    res = analysis.analyze(Study.open(study.root))
    got = res["power"]
    assert (got["readers"], got["trials"], got["effect"]["identification"]) == (4, 6, 0.5)
    assert got["effect_source"].startswith("planned") and "realism real vs 2000" in "\n".join(
        t["test"] for t in got["tests"].values())
    md = open(res["report"]["markdown"]).read()
    assert "## Power" in md and "true identification rate of 50%" in md
    assert md.index("## Methods") < md.index("## Power")


def test_plan_study_cli_prints_the_plan_and_refuses_options_of_the_other_design(capsys):
    from cspine_tui.cli.main import main

    assert main(["plan-study", "--design", "single", "--readers", "3", "--trials", "20", "--sims", "200"]) == 0
    out = capsys.readouterr().out
    assert "single design: 3 readers x 20 images" in out and "for 80% power" in out
    assert main(["plan-study", "--design", "single", "--readers", "3", "--trials", "20",
                 "--rating-shift", "0.3"]) == 2
    assert "error: --rating-shift applies to --design quartets only" in capsys.readouterr().err
