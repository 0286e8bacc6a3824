"""Statistics of the reader study: pure functions, no database (docs/reference/study.md section 6).

- identification accuracy with a Wilson 95% interval and an exact two-sided binomial test against chance;
- Fleiss' kappa (with irr's z statistic) for any categorical coding of the raters' answers;
- the paired two-sided Wilcoxon signed-rank test exactly as R before 4.6 computes it
  (``wilcox.test(x, y, paired = TRUE)``): zeros dropped, the exact null distribution when n < 50 and there are
  no ties and no zeros, otherwise the normal approximation with continuity correction; the statistic is R's V
  (the sum of the ranks of the positive differences), not SciPy's min(W+, W-);
- Holm's step-down correction (as statsmodels ``method="holm"``; its default is Holm-Sidak); the groups compared
  pairwise (every pair, one Holm family);
- Spearman's rank correlation (a rater covariate such as years of experience against accuracy);
- per-rater mean realism per group as exact fractions of integer sums, so equal differences are equal and
  ties are detected exactly (floating means could split a tie and change p);
- half-up decimal rounding for display (the paper's 3.323 is 1329/400 = 3.3225 rounded half-up);
- violin plots (matplotlib, Agg backend) as PNG and SVG.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from itertools import combinations
from pathlib import Path
from typing import Any, Hashable, Iterable, Mapping, Sequence

from scipy import stats as _st

Number = int | float | Fraction

# ---------------------------------------------------------------------------------------------------
# Rounding


def round_half_up(value: Number | Decimal, places: int = 3) -> Decimal:
    """Round half away from zero in decimal, from the exact value (a Fraction stays exact)."""
    if isinstance(value, Fraction):
        exact = Decimal(value.numerator) / Decimal(value.denominator)
    elif isinstance(value, Decimal):
        exact = value
    else:
        exact = Decimal(repr(float(value)))  # the shortest repr, i.e. what the user sees
    return exact.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def fmt(value: Number | Decimal | None, places: int = 3) -> str:
    """A number for a table or text, rounded half-up; NaN and None as 'n/a'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return str(round_half_up(value, places))


def fmt_p(p: float | None, places: int = 3) -> str:
    """A p-value: half-up to `places` decimals, '< 0.001' below the display resolution."""
    if p is None or math.isnan(p):
        return "n/a"
    if p < 10 ** -places:
        return f"< {10 ** -places:.{places}f}"
    return fmt(p, places)


# ---------------------------------------------------------------------------------------------------
# Proportions


@dataclass(frozen=True)
class Proportion:
    k: int
    n: int
    estimate: float
    ci95: tuple[float, float]
    chance: float
    p_vs_chance: float

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ci95": list(self.ci95)}


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (no continuity correction)."""
    if n <= 0:
        return (math.nan, math.nan)
    z = float(_st.norm.ppf(0.5 + confidence / 2))
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def binomial_test(k: int, n: int, p: float = 0.25) -> float:
    """Exact two-sided binomial test (the same likelihood-ordering rule as R's binom.test)."""
    if n <= 0:
        return math.nan
    return float(_st.binomtest(k, n, p, alternative="two-sided").pvalue)


def proportion(k: int, n: int, chance: float = 0.25) -> Proportion:
    return Proportion(k=k, n=n, estimate=(k / n) if n else math.nan, ci95=wilson_interval(k, n),
                      chance=chance, p_vs_chance=binomial_test(k, n, chance))


# ---------------------------------------------------------------------------------------------------
# Fleiss' kappa


@dataclass(frozen=True)
class FleissKappa:
    kappa: float
    p_bar: float           # mean observed agreement
    p_e: float             # agreement expected by chance
    z: float               # irr::kappam.fleiss z (kappa / its SE under the null)
    p_value: float         # two-sided, from z
    n_subjects: int
    n_raters: int
    categories: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def category_table(answers: Sequence[Sequence[Hashable]],
                   categories: Sequence[Hashable] | None = None) -> tuple[list[list[int]], list[Hashable]]:
    """Subjects x raters answers -> subjects x categories counts (the table Fleiss' kappa takes).

    `categories` fixes the columns (and their order); by default the observed values, sorted by text.
    """
    cats = list(categories) if categories is not None else sorted({a for row in answers for a in row}, key=str)
    index = {c: i for i, c in enumerate(cats)}
    table = []
    for row in answers:
        counts = [0] * len(cats)
        for a in row:
            if a not in index:
                raise ValueError(f"answer {a!r} is not one of the categories {cats}")
            counts[index[a]] += 1
        table.append(counts)
    return table, cats


def fleiss_kappa(table: Sequence[Sequence[int]], categories: Sequence[Hashable] | None = None) -> FleissKappa:
    """Fleiss' kappa (Fleiss 1971) of a subjects x categories count table with equal raters per subject.

    z follows irr::kappam.fleiss: var0 = 2 / (N n (n-1)) * [(sum pq)^2 - sum pq (q-p)] / (sum pq)^2.
    """
    rows = [[int(c) for c in row] for row in table]
    if not rows:
        raise ValueError("Fleiss' kappa needs at least one subject")
    n_raters = sum(rows[0])
    if n_raters < 2 or any(sum(r) != n_raters for r in rows):
        raise ValueError("Fleiss' kappa needs the same number (>= 2) of raters for every subject")
    n_sub = len(rows)
    n_cat = len(rows[0])
    total = n_sub * n_raters
    p_j = [sum(r[j] for r in rows) / total for j in range(n_cat)]
    p_i = [(sum(c * c for c in r) - n_raters) / (n_raters * (n_raters - 1)) for r in rows]
    p_bar = sum(p_i) / n_sub
    p_e = sum(p * p for p in p_j)
    kappa = (p_bar - p_e) / (1 - p_e) if p_e < 1 else math.nan
    pq = [p * (1 - p) for p in p_j]
    s_pq = sum(pq)
    if s_pq > 0:
        var0 = 2 / (n_sub * n_raters * (n_raters - 1)) * (s_pq ** 2 - sum(
            a * ((1 - p) - p) for a, p in zip(pq, p_j))) / s_pq ** 2
        z = kappa / math.sqrt(var0)
        p_value = float(2 * _st.norm.sf(abs(z)))
    else:
        z, p_value = math.nan, math.nan
    cats = [str(c) for c in categories] if categories is not None else [str(j) for j in range(n_cat)]
    return FleissKappa(kappa=kappa, p_bar=p_bar, p_e=p_e, z=z, p_value=p_value, n_subjects=n_sub,
                       n_raters=n_raters, categories=cats)


# ---------------------------------------------------------------------------------------------------
# Wilcoxon signed-rank, R (< 4.6) semantics


@dataclass(frozen=True)
class Wilcoxon:
    statistic_V: float     # R's V: sum of the ranks of the positive differences
    p: float
    method: str            # "exact" | "normal approximation, continuity corrected" | "no non-zero differences"
    n: int                 # non-zero differences used
    n_zeros: int
    ties: bool
    warning: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _midranks(values: Sequence[Fraction]) -> tuple[list[Fraction], list[int]]:
    """Average ranks of exact values (R's rank(ties.method = "average")) and the tie group sizes."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks: list[Fraction] = [Fraction(0)] * len(values)
    groups: list[int] = []
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        avg = Fraction(i + 1 + j + 1, 2)
        for k in range(i, j + 1):
            ranks[order[k]] = avg
        groups.append(j - i + 1)
        i = j + 1
    return ranks, groups


def signrank_cdf(v: float, n: int) -> float:
    """P(V <= v) for the exact null distribution of the signed-rank statistic (R's psignrank)."""
    if v < 0:
        return 0.0
    top = n * (n + 1) // 2
    counts = [0] * (top + 1)
    counts[0] = 1
    for k in range(1, n + 1):  # subsets of {1..n} by their sum
        for s in range(top, k - 1, -1):
            counts[s] += counts[s - k]
    upto = min(int(math.floor(v + 1e-9)), top)
    return sum(counts[: upto + 1]) / 2 ** n


def _exact(x: Any) -> Fraction:
    if isinstance(x, Fraction):
        return x
    if isinstance(x, int):
        return Fraction(x)
    if isinstance(x, Decimal):
        return Fraction(x)
    # A float is taken at its shortest repr, so 3.32 - 3.28 and 3.30 - 3.26 tie as the user expects.
    return Fraction(repr(float(x)))


def wilcoxon_paired(x: Sequence[Number], y: Sequence[Number], exact_limit: int = 50) -> Wilcoxon:
    """Two-sided paired Wilcoxon signed-rank test as R < 4.6 ``wilcox.test(x, y, paired = TRUE)``.

    Differences are computed exactly (pass Fractions, e.g. rating sums over counts, to keep ties exact).
    """
    if len(x) != len(y):
        raise ValueError(f"paired samples differ in length ({len(x)} vs {len(y)})")
    d_all = [_exact(a) - _exact(b) for a, b in zip(x, y)]
    d = [v for v in d_all if v != 0]
    n_zeros = len(d_all) - len(d)
    n = len(d)
    if n == 0:
        return Wilcoxon(statistic_V=0.0, p=math.nan, method="no non-zero differences", n=0, n_zeros=n_zeros,
                        ties=False, warning="all differences are zero; R returns p = NA")
    ranks, groups = _midranks([abs(v) for v in d])
    v_stat = sum((r for r, v in zip(ranks, d) if v > 0), Fraction(0))
    ties = any(g > 1 for g in groups)
    mean = Fraction(n * (n + 1), 4)
    if n < exact_limit and not ties and n_zeros == 0:
        if v_stat > mean:
            p_one = 1.0 - signrank_cdf(float(v_stat) - 1, n)
        else:
            p_one = signrank_cdf(float(v_stat), n)
        return Wilcoxon(statistic_V=float(v_stat), p=min(1.0, 2 * p_one), method="exact", n=n,
                        n_zeros=n_zeros, ties=False)
    sigma2 = Fraction(n * (n + 1) * (2 * n + 1), 24) - Fraction(sum(t ** 3 - t for t in groups), 48)
    z_num = v_stat - mean
    correction = Fraction(1, 2) * (1 if z_num > 0 else -1 if z_num < 0 else 0)
    z = float(z_num - correction) / math.sqrt(float(sigma2))
    p = 2 * min(float(_st.norm.cdf(z)), float(_st.norm.sf(z)))
    warning = None
    if ties or n_zeros:
        warning = "cannot compute exact p-value with " + ("ties and zeroes" if ties and n_zeros
                                                           else "ties" if ties else "zeroes")
    return Wilcoxon(statistic_V=float(v_stat), p=min(1.0, p), method="normal approximation, continuity corrected",
                    n=n, n_zeros=n_zeros, ties=ties, warning=warning)


# ---------------------------------------------------------------------------------------------------
# Holm


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values; NaN stays NaN, outside the family.

    The step-down written out (equal to statsmodels ``multipletests(method="holm")``, which the tests check):
    statsmodels runs a full ``gc.collect()`` on every Holm call, 0.1 s each inside a large process.
    """
    finite = sorted((p, i) for i, p in enumerate(pvalues) if p is not None and not math.isnan(p))
    out = [math.nan] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(finite):
        running = max(running, min(1.0, (len(finite) - rank) * p))
        out[i] = running
    return out


# ---------------------------------------------------------------------------------------------------
# Realism ratings


def rating_sums(ratings: Iterable[tuple[Hashable, str, int]]) -> dict[Hashable, dict[str, tuple[int, int]]]:
    """(rater, group, rating) rows -> {rater: {group: (sum, count)}} in integers."""
    sums: dict[Hashable, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for rater, group, rating in ratings:
        cell = sums[rater][group]
        cell[0] += int(rating)
        cell[1] += 1
    return {r: {g: (s, c) for g, (s, c) in groups.items()} for r, groups in sums.items()}


def per_rater_means(sums: Mapping[Hashable, Mapping[str, tuple[int, int]]]) -> dict[Hashable, dict[str, Fraction]]:
    return {r: {g: Fraction(s, c) for g, (s, c) in groups.items() if c} for r, groups in sums.items()}


def group_means(sums: Mapping[Hashable, Mapping[str, tuple[int, int]]]) -> dict[str, Fraction]:
    """Mean of all ratings per group (equal to the mean of per-rater means when every rater rated all)."""
    tot: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for groups in sums.values():
        for g, (s, c) in groups.items():
            tot[g][0] += s
            tot[g][1] += c
    return {g: Fraction(s, c) for g, (s, c) in tot.items() if c}


def compare_groups(means: Mapping[Hashable, Mapping[str, Fraction]], reference: str,
                   others: Sequence[str]) -> list[dict[str, Any]]:
    """Paired Wilcoxon of the reference group against each other group over raters who rated both, + Holm."""
    rows = []
    for g in others:
        raters = [r for r in means if reference in means[r] and g in means[r]]
        res = wilcoxon_paired([means[r][reference] for r in raters], [means[r][g] for r in raters])
        rows.append({"group": g, "n_raters": len(raters), **res.as_dict()})
    for row, q in zip(rows, holm([r["p"] for r in rows])):
        row["p_holm"] = q
    return rows


def compare_pairs(means: Mapping[Hashable, Mapping[str, Fraction]], groups: Sequence[str]) -> list[dict[str, Any]]:
    """Every pair of groups: paired Wilcoxon over the raters who rated both, Holm over all the pairs at once.

    ``mean_difference`` is the mean over raters of (mean of a - mean of b), exact then as float: positive when
    raters rated group a as more realistic.
    """
    rows = []
    for a, b in combinations(groups, 2):
        raters = [r for r in means if a in means[r] and b in means[r]]
        diffs = [means[r][a] - means[r][b] for r in raters]
        res = wilcoxon_paired([means[r][a] for r in raters], [means[r][b] for r in raters])
        rows.append({"a": a, "b": b, "n_raters": len(raters),
                     "mean_difference": float(sum(diffs, Fraction(0)) / len(diffs)) if diffs else math.nan,
                     **res.as_dict()})
    for row, q in zip(rows, holm([r["p"] for r in rows])):
        row["p_holm"] = q
    return rows


def spearman(x: Sequence[float], y: Sequence[float]) -> dict[str, Any]:
    """Spearman's rank correlation with scipy's two-sided p (t distribution, n - 2 df); n/a below 3 pairs."""
    n = len(x)
    if n < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return {"rho": math.nan, "p": math.nan, "n": n}
    res = _st.spearmanr(x, y)
    return {"rho": float(res.statistic), "p": float(res.pvalue), "n": n}


# ---------------------------------------------------------------------------------------------------
# Plots


def violin_plot(groups: Mapping[str, Sequence[float]], out_base: Path, *, title: str, ylabel: str,
                annotations: Mapping[str, str] | None = None, ylim: tuple[float, float] = (0.8, 4.35),
                points: bool = True) -> tuple[Path, Path]:
    """Violins per group (in the given order) with the mean marked; writes <out_base>.png and .svg."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import numpy as np

    matplotlib.rcParams["svg.hashsalt"] = "cspine-tui"  # deterministic SVG ids
    labels = list(groups)
    data = [np.asarray(list(groups[k]), dtype=float) for k in labels]
    fig, ax = plt.subplots(figsize=(1.7 * len(labels) + 1.5, 4.2), dpi=150)
    positions = list(range(1, len(labels) + 1))
    drawable = [(p, v) for p, v in zip(positions, data) if v.size > 1 and np.ptp(v) > 0]
    if drawable:
        parts = ax.violinplot([v for _, v in drawable], positions=[p for p, _ in drawable], widths=0.8,
                              showmeans=False, showextrema=False)
        for body in parts["bodies"]:
            body.set_facecolor("#8da0cb")
            body.set_edgecolor("#3b4a6b")
            body.set_alpha(0.7)
    for p, v in zip(positions, data):
        if v.size == 0:
            continue
        if points:
            jitter = np.linspace(-0.12, 0.12, v.size) if v.size > 1 else np.zeros(1)
            ax.scatter(p + jitter, v, s=10, color="#333333", zorder=3, linewidths=0)
        ax.hlines(float(v.mean()), p - 0.28, p + 0.28, color="#d95f02", linewidth=2, zorder=4)
    if annotations:
        for p, k in zip(positions, labels):
            if k in annotations:
                ax.text(p, ylim[1] - 0.05, annotations[k], ha="center", va="top", fontsize=8)
    ax.set_xticks(positions, labels)
    ax.set_ylim(*ylim)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    out_base = Path(out_base)
    out_base.parent.mkdir(parents=True, exist_ok=True)
    png, svg = out_base.with_suffix(".png"), out_base.with_suffix(".svg")
    fig.savefig(png, metadata={"Software": None})
    fig.savefig(svg, metadata={"Date": None, "Creator": None})
    plt.close(fig)
    return png, svg


def counts_by(values: Iterable[Hashable]) -> dict[Hashable, int]:
    return dict(Counter(values))
