"""core/reader_study/statistics.py against published tables, R results and the paper's numbers
(docs/reference/study.md section 6)."""

from __future__ import annotations

import math
import random
from decimal import Decimal
from fractions import Fraction

import pytest
from scipy import stats as st

from core.reader_study import statistics
from tests.factories.survey import GROUPS, paper_ratings
WIKIPEDIA = [  # 10 subjects x 14 raters x 5 categories (statsmodels test_inter_rater.py table1)
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
]
DIAGNOSES = (  # Fleiss (1971) / R irr `diagnoses`: 30 patients x 6 raters, categories 1-5
    "444444 222555 233335 555555 222444 113333 333355 113334 114444 555555 144444 124444 222333 144444 224445 "
    "333335 111455 111112 224444 133555 555555 244444 224555 114444 144445 222224 111155 224444 133333 555555"
).split()


# -- Fleiss' kappa ------------------------------------------------------------------------------------

def test_fleiss_kappa_wikipedia_table():
    res = statistics.fleiss_kappa(WIKIPEDIA)
    assert res.kappa == pytest.approx(0.209931, abs=5e-7)
    assert res.p_bar == pytest.approx(0.378022, abs=5e-7)
    assert res.p_e == pytest.approx(0.212755, abs=5e-7)
    assert (res.n_subjects, res.n_raters) == (10, 14)


def test_fleiss_kappa_diagnoses_matches_irr():
    answers = [[int(c) for c in row] for row in DIAGNOSES]
    table, cats = statistics.category_table(answers, categories=[1, 2, 3, 4, 5])
    assert [sum(r[j] for r in table) for j in range(5)] == [26, 26, 30, 55, 43]
    res = statistics.fleiss_kappa(table, categories=cats)
    assert res.kappa == pytest.approx(0.4302445, abs=5e-8)  # irr::kappam.fleiss(diagnoses)
    assert res.z == pytest.approx(17.65183, abs=5e-6)
    assert res.p_bar == pytest.approx(0.555556, abs=5e-7)
    assert res.p_e == pytest.approx(0.219938, abs=5e-7)


def test_fleiss_kappa_agrees_with_statsmodels_on_random_tables():
    from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss

    rng = random.Random(3)
    for _ in range(20):
        answers = [[rng.choice("ABCD") for _ in range(8)] for _ in range(50)]
        table, _ = statistics.category_table(answers, categories="ABCD")
        assert statistics.fleiss_kappa(table).kappa == pytest.approx(sm_fleiss(table), abs=1e-12)


def test_fleiss_kappa_refuses_unequal_raters():
    with pytest.raises(ValueError, match="same number"):
        statistics.fleiss_kappa([[2, 1], [1, 1]])


# -- Wilcoxon, R < 4.6 semantics --------------------------------------------------------------------

@pytest.mark.parametrize("v,p", [(6, 0.109375), (7, 0.1484375), (8, 0.1953125), (9, 0.25)])
def test_wilcoxon_exact_n8(v, p):
    # n = 8, no ties, no zeros -> R uses psignrank; the paper's 0.128 / 0.236 are none of these values.
    ranks = list(range(1, 9))
    positive = _subset_with_sum(ranks, v)
    d = [r if r in positive else -r for r in ranks]
    res = statistics.wilcoxon_paired(d, [0] * 8)
    assert res.method == "exact" and res.statistic_V == v and res.n == 8
    assert res.p == pytest.approx(p, abs=1e-12)
    assert res.p == pytest.approx(st.wilcoxon(d, method="exact").pvalue, abs=1e-12)


def _subset_with_sum(values, target):
    for mask in range(1 << len(values)):
        chosen = [v for i, v in enumerate(values) if mask >> i & 1]
        if sum(chosen) == target:
            return set(chosen)
    raise AssertionError(target)


def test_wilcoxon_statistic_is_R_V_not_scipy_min():
    d = [1, 2, 3, 4, 5, 6, 7, 8]
    res = statistics.wilcoxon_paired(d, [0] * 8)
    assert res.statistic_V == 36  # R: V = 36; SciPy reports min(W+, W-) = 0
    assert st.wilcoxon(d).statistic == 0
    assert res.p == pytest.approx(0.0078125)


def test_wilcoxon_ties_and_zeros_bortz_example():
    # Bortz-Lienert-Boehnke; R 4.2.2 wilcox.test(x1, x2, paired = TRUE): V = 13, p-value = 0.1436
    x1 = (9, 14, 8, 11, 14, 10, 8, 14, 12, 14, 13, 9, 15, 12, 9)
    x2 = (13, 15, 9, 12, 16, 10, 8, 13, 12, 16, 9, 10, 16, 12, 9)
    res = statistics.wilcoxon_paired(x1, x2)
    assert res.statistic_V == 13
    assert res.p == pytest.approx(0.143581, abs=5e-7)
    assert res.method.startswith("normal") and res.ties and res.n_zeros == 5
    assert "ties and zeroes" in res.warning


def test_wilcoxon_reference_reconstructions_of_the_paper():
    c1 = statistics.wilcoxon_paired([-1, 2, -3, 3, 11, 12, 14, 0], [0] * 8)
    c2 = statistics.wilcoxon_paired([-1, 5, 5, 5, -5, 17, 0, 0], [0] * 8)
    assert (c1.statistic_V, c1.n) == (23.5, 7)
    assert (c2.statistic_V, c2.n) == (16.5, 6)
    assert 0.12750 <= c1.p < 0.12783 and c1.p == pytest.approx(0.127508, abs=5e-7)
    assert 0.23550 <= c2.p < 0.23575 and c2.p == pytest.approx(0.235559, abs=5e-7)
    # R 4.2.2 on the integer rating sums (Debian r-base-core), printed with %.10f:
    assert (round(c1.p, 10), round(c2.p, 10)) == (0.1275083305, 0.2355589199)


def test_wilcoxon_matches_scipy_R_equivalent_call_on_random_integer_data():
    # reference: SciPy equals R with correction=True, method='asymptotic' when ties/zeros, 'exact' otherwise.
    rng = random.Random(11)
    for _ in range(200):
        n = rng.randint(3, 30)
        d = [rng.randint(-6, 6) for _ in range(n)]
        nz = [v for v in d if v]
        if len(nz) < 2:
            continue
        res = statistics.wilcoxon_paired(d, [0] * n)
        tie_or_zero = len(set(map(abs, nz))) < len(nz) or len(nz) < n
        ref = st.wilcoxon(d, zero_method="wilcox", correction=True,
                          method="asymptotic" if tie_or_zero else "exact")
        assert res.p == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-12)
        assert res.statistic_V == sum(r for r, v in zip(st.rankdata([abs(v) for v in nz]), nz) if v > 0)


def test_wilcoxon_ties_between_means_are_exact():
    # 120/50 - 121/50 and 162/50 - 163/50 are equal, but not as binary floating-point differences.
    assert 2.4 - 2.42 != 3.24 - 3.26
    x, y = [Fraction(120, 50), Fraction(162, 50), Fraction(170, 50)], [Fraction(121, 50), Fraction(163, 50), 3]
    assert statistics.wilcoxon_paired(x, y).ties
    # floats are taken at their shortest repr, so the means 2.4, 3.24, ... tie the same way
    assert statistics.wilcoxon_paired([float(v) for v in x], [float(v) for v in y]).ties


def test_wilcoxon_all_zero_is_nan_like_R():
    res = statistics.wilcoxon_paired([1, 2, 3], [1, 2, 3])
    assert math.isnan(res.p) and res.n == 0


# -- Holm ------------------------------------------------------------------------------------------

def test_holm_on_rounded_paper_values_gives_0384_0472():
    assert statistics.holm([0.128, 0.236, 1.0]) == pytest.approx([0.384, 0.472, 1.0])


def test_holm_on_unrounded_reconstruction_gives_the_papers_0383_0471():
    q = statistics.holm([0.12750833049058289, 0.23555891992407948, 1.0])
    assert q == pytest.approx([0.382525, 0.471118, 1.0], abs=5e-7)
    assert [str(statistics.round_half_up(v)) for v in q] == ["0.383", "0.471", "1.000"]


def test_holm_is_not_holm_sidak_and_keeps_nan_out():
    from statsmodels.stats.multitest import multipletests

    p = [0.01, 0.04, 0.03]
    assert statistics.holm(p) != pytest.approx(list(multipletests(p)[1]))  # the default 'hs'
    q = statistics.holm([0.02, math.nan, 0.04])
    assert q[0] == pytest.approx(0.04) and math.isnan(q[1]) and q[2] == pytest.approx(0.04)


def test_holm_equals_statsmodels_holm(monkeypatch):
    import gc

    from statsmodels.stats.multitest import multipletests

    monkeypatch.setattr(gc, "collect", lambda *a: 0)  # its Holm collects garbage on every call (slow, no effect)
    rng = random.Random(5)
    for n in (1, 2, 3, 6, 15):
        for _ in range(40):
            p = [rng.choice([rng.random(), rng.random() / 50, 1.0]) for _ in range(n)]
            p[rng.randrange(n)] = p[0]  # ties
            assert statistics.holm(p) == pytest.approx(list(multipletests(p, method="holm")[1]), rel=1e-12)


# -- proportions -----------------------------------------------------------------------------------

def test_accuracy_wilson_and_binomial():
    from statsmodels.stats.proportion import proportion_confint

    res = statistics.proportion(116, 400)
    assert res.estimate == 0.29
    lo, hi = proportion_confint(116, 400, method="wilson")
    assert res.ci95 == pytest.approx((lo, hi), abs=1e-12)
    assert res.p_vs_chance == pytest.approx(st.binomtest(116, 400, 0.25).pvalue)
    assert res.p_vs_chance == pytest.approx(0.0732332298654, abs=1e-12)  # R 4.2.2 binom.test(116, 400, 0.25)


# -- the paper's numbers end to end ------------------------------------------------------------------

def test_paper_fixture_reproduces_the_published_numbers():
    data = paper_ratings()
    sums = statistics.rating_sums(data.rating_rows())
    means = statistics.group_means(sums)
    assert [means[g] * 400 for g in GROUPS] == [1329, 1291, 1303, 1328]
    assert [str(statistics.round_half_up(means[g])) for g in GROUPS] == ["3.323", "3.228", "3.258", "3.320"]
    # Python's round() is half-even on the binary value and misses the paper's 3.323 / 3.258:
    assert round(float(means["real"]), 3) == 3.322 and round(float(means["80000"]), 3) == 3.257
    rows = statistics.compare_groups(statistics.per_rater_means(sums), "real", GROUPS[1:])
    assert [statistics.fmt(r["p"]) for r in rows] == ["0.128", "0.236", "1.000"]
    assert [statistics.fmt(r["p_holm"]) for r in rows] == ["0.383", "0.471", "1.000"]
    assert [r["n_raters"] for r in rows] == [8, 8, 8]
    correct = sum(1 for _, _, g in data.picks if g == "real")
    assert statistics.proportion(correct, len(data.picks)).estimate == 0.29


def test_round_half_up_and_formatting():
    assert statistics.round_half_up(Fraction(1329, 400)) == Decimal("3.323")
    assert statistics.round_half_up(2.675, 2) == Decimal("2.68")  # round(2.675, 2) == 2.67
    assert statistics.fmt(None) == "n/a" and statistics.fmt_p(0.00001) == "< 0.001" and statistics.fmt_p(0.5) == "0.500"


def test_violin_plot_writes_png_and_svg(tmp_path):
    png, svg = statistics.violin_plot({"real": [3.2, 3.4, 3.3], "68000": [3.1, 3.3, 3.25], "x": []},
                                 tmp_path / "fig" / "violin", title="t", ylabel="mean rating",
                                 annotations={"68000": "p = 0.5"})
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    text = svg.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text
