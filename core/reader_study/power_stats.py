"""The reader study's tests, vectorised over many simulated studies at once (for core/reader_study/power.py).

Each function takes arrays whose first axis is the simulated study and returns one p-value (or statistic) per
study, computed by the same rule as the analysis (core/reader_study/statistics.py), so a simulated rejection
is a rejection the real analysis would make:

- the exact two-sided binomial test (R's ``binom.test`` likelihood-ordering rule, as SciPy's ``binomtest``):
  as a rejection table over every count 0..n, built once per n;
- the Wilson 95% interval's width;
- the paired Wilcoxon signed-rank test with R < 4.6 semantics (zeros dropped; exact null distribution when
  fewer than 50 non-zero differences, no ties and no zeros; otherwise the continuity-corrected normal
  approximation with the tie correction), from integer differences so ties are exact;
- Holm's step-down adjustment over a family of tests (NaN p-values are outside the family);
- Fleiss' kappa with irr's z test against kappa = 0;
- the empirical ROC AUC (Mann-Whitney, ties counted one half) from an ordinal confidence scale, and the
  readers' mean AUC against 0.5 with readers and images random.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import stats as _st

# R's binom.test (and SciPy's binomtest) count outcomes as "as extreme" when their probability is within
# this relative error of the observed one.
_RELERR = 1 + 1e-7


@lru_cache(maxsize=256)
def binomial_rejects(n: int, p0: float, alpha: float) -> np.ndarray:
    """rejects[k] is True when k successes of n reject p = p0 at `alpha` (exact two-sided test)."""
    pmf = _st.binom.pmf(np.arange(n + 1), n, p0)
    order = np.sort(pmf)
    cum = np.cumsum(order)
    # p-value of k = total probability of the outcomes no more likely than k
    idx = np.searchsorted(order, pmf * _RELERR, side="right")
    pvalue = np.minimum(1.0, cum[idx - 1])
    out = pvalue <= alpha
    out.setflags(write=False)
    return out


def wilson_width(k: np.ndarray, n: int, confidence: float = 0.95) -> np.ndarray:
    """Width of the Wilson score interval (as statistics.wilson_interval, clipped to [0, 1])."""
    z = float(_st.norm.ppf(0.5 + confidence / 2))
    p = np.asarray(k, dtype=float) / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return np.minimum(1.0, centre + half) - np.maximum(0.0, centre - half)


@lru_cache(maxsize=64)
def _signrank_cdf(n: int) -> np.ndarray:
    """P(V <= v) for v = 0..n(n+1)/2 under the null (R's psignrank), by counting subsets of 1..n by sum."""
    top = n * (n + 1) // 2
    counts = [0] * (top + 1)
    counts[0] = 1
    for k in range(1, n + 1):
        for s in range(top, k - 1, -1):
            counts[s] += counts[s - k]
    total = 2 ** n
    running, out = 0, []
    for c in counts:  # exact integers until the one division
        running += c
        out.append(running / total)
    return np.asarray(out)


def wilcoxon_p(d: np.ndarray) -> np.ndarray:
    """Two-sided paired Wilcoxon p per row of integer differences d (studies x raters); NaN if all are zero."""
    d = np.asarray(d)
    a = np.abs(d)
    nz = d != 0
    m = nz.sum(axis=1)
    # midranks among the non-zero |d|: (number smaller) + (number equal, self included, + 1) / 2
    smaller = ((a[:, :, None] > a[:, None, :]) & nz[:, None, :]).sum(axis=2)
    equal = ((a[:, :, None] == a[:, None, :]) & nz[:, None, :]).sum(axis=2)
    ranks = smaller + (equal + 1) / 2.0
    v = np.where(d > 0, ranks, 0.0).sum(axis=1)
    ties = np.where(nz, equal > 1, False).any(axis=1)
    tie_term = np.where(nz, equal.astype(float) ** 2 - 1, 0.0).sum(axis=1)  # = sum over tie groups of t^3 - t
    zeros = d.shape[1] - m
    mean = m * (m + 1) / 4.0
    sigma2 = m * (m + 1) * (2 * m + 1) / 24.0 - tie_term / 48.0
    num = v - mean
    z = (num - 0.5 * np.sign(num)) / np.sqrt(np.where(sigma2 > 0, sigma2, 1.0))
    p = np.minimum(1.0, 2 * np.minimum(_st.norm.cdf(z), _st.norm.sf(z)))
    exact = (m < 50) & ~ties & (zeros == 0) & (m > 0)
    if exact.any():
        n = d.shape[1]  # no zeros: every rater's difference counts
        cdf = _signrank_cdf(n)
        vi = np.rint(v[exact]).astype(int)
        upper = 1.0 - cdf[np.maximum(vi - 1, 0)]
        lower = cdf[vi]
        p_one = np.where(vi > mean[exact], upper, lower)
        p[exact] = np.minimum(1.0, 2 * p_one)
    p[m == 0] = np.nan
    return p


def holm(p: np.ndarray) -> np.ndarray:
    """Holm-adjusted p per row (studies x tests); a NaN stays NaN and leaves the family, as statistics.holm."""
    p = np.asarray(p, dtype=float)
    finite = np.isfinite(p)
    size = finite.sum(axis=1, keepdims=True)
    order = np.argsort(np.where(finite, p, np.inf), axis=1)
    sorted_p = np.take_along_axis(p, order, axis=1)
    factor = size - np.arange(p.shape[1])[None, :]
    adjusted = np.minimum(1.0, np.maximum.accumulate(np.where(np.isfinite(sorted_p), sorted_p * factor, -np.inf),
                                                     axis=1))
    out = np.empty_like(p)
    np.put_along_axis(out, order, adjusted, axis=1)
    out[~finite] = np.nan
    return out


def fleiss(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fleiss' kappa and irr's two-sided z-test p per study from counts (studies x subjects x categories)."""
    counts = np.asarray(counts, dtype=float)
    n_sub = counts.shape[1]
    raters = counts[0, 0].sum()
    p_j = counts.sum(axis=1) / (n_sub * raters)
    p_i = ((counts ** 2).sum(axis=2) - raters) / (raters * (raters - 1))
    p_bar = p_i.mean(axis=1)
    p_e = (p_j ** 2).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = np.where(p_e < 1, (p_bar - p_e) / (1 - p_e), np.nan)
        pq = p_j * (1 - p_j)
        s_pq = pq.sum(axis=1)
        var0 = 2 / (n_sub * raters * (raters - 1)) * (s_pq ** 2 - (pq * ((1 - p_j) - p_j)).sum(axis=1)) / s_pq ** 2
        z = np.where(s_pq > 0, kappa / np.sqrt(var0), np.nan)
    return kappa, 2 * _st.norm.sf(np.abs(z))


def auc_from_scores(scores: np.ndarray, truth: np.ndarray, levels: int) -> np.ndarray:
    """Empirical AUC per (study, reader) from ordinal scores 0..levels-1 (studies x readers x trials).

    AUC = P(score of a real image > score of a synthetic one) + P(equal) / 2, over all real x synthetic pairs.
    """
    onehot = scores[..., None] == np.arange(levels)
    real = onehot[:, :, truth].sum(axis=2).astype(float)
    synthetic = onehot[:, :, ~truth].sum(axis=2).astype(float)
    below = np.cumsum(synthetic, axis=2) - synthetic
    wins = (real * (below + 0.5 * synthetic)).sum(axis=2)
    return wins / (truth.sum() * (~truth).sum())


def auc_two_way(scores: np.ndarray, truth: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Readers' mean AUC and its two-sided p against 0.5 per study, readers and images both random.

    The variance is the sum of the readers' part, var(reader AUCs) / R (0 with one reader), and the images'
    part, DeLong's structural components averaged over readers: var(V10) / n_real + var(V01) / n_synthetic,
    where V10 of a real image is the share of synthetic images it outscores (ties one half) and V01 of a
    synthetic image the share of real images that outscore it. A normal approximation to the two-way
    (readers x images) bootstrap interval the single-image analysis reports.
    """
    onehot = scores[..., None] == np.arange(levels)
    real_hist = onehot[:, :, truth].sum(axis=2).astype(float)
    syn_hist = onehot[:, :, ~truth].sum(axis=2).astype(float)
    n1, n0 = int(truth.sum()), int((~truth).sum())
    syn_below = (np.cumsum(syn_hist, axis=2) - syn_hist + 0.5 * syn_hist) / n0
    real_above = (real_hist.sum(axis=2, keepdims=True) - np.cumsum(real_hist, axis=2) + 0.5 * real_hist) / n1
    v10 = np.take_along_axis(syn_below, scores[:, :, truth], axis=2)    # studies x readers x real images
    v01 = np.take_along_axis(real_above, scores[:, :, ~truth], axis=2)  # studies x readers x synthetic
    per_reader = v10.mean(axis=2)
    readers = scores.shape[1]
    var = (per_reader.var(axis=1, ddof=1) / readers if readers > 1 else 0.0) \
        + v10.mean(axis=1).var(axis=1, ddof=1) / n1 + v01.mean(axis=1).var(axis=1, ddof=1) / n0
    auc = per_reader.mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (auc - 0.5) / np.sqrt(var)
    return auc, np.where(var > 0, 2 * _st.norm.sf(np.abs(z)), np.nan)
