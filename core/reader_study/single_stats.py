"""Statistics of the single-image design: pure functions on arrays, no database.

- ROC AUC from the confidence scale as the Mann-Whitney probability P(synthetic rated higher) + 1/2 P(tie),
  computed from midranks; per reader with DeLong's (1988) variance and a normal 95% interval clipped to [0, 1];
- the pooled figures (reader-averaged AUC, pooled sensitivity / specificity / accuracy) with a two-way
  bootstrap over readers and images (images resampled within real and within each group; percentile 95%
  interval): it keeps both sources of variation an MRMC study has, which a Wilson interval on pooled trials
  (also reported) ignores;
- a permutation test between two groups on the images' detection rates (share of readers calling the image
  synthetic): an image's answers move together, so readers' correlation through shared images is respected;
- Cohen's kappa for two readers (Fleiss' kappa is statistics.fleiss_kappa);
- the mixed-effects logistic model of "called synthetic" (statsmodels BinomialBayesMixedGLM, variational Bayes;
  reader as a random intercept, group and condition fixed) and its fallback, a binomial GLM with
  cluster-robust (by reader) standard errors.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from scipy import stats as _st

Z95 = float(_st.norm.ppf(0.975))


def _midranks(values: np.ndarray) -> np.ndarray:
    return _st.rankdata(values, method="average")


def auc(pos: Sequence[float], neg: Sequence[float]) -> float:
    """P(pos > neg) + 1/2 P(pos == neg) over all pairs (the Mann-Whitney U / (n1 n0))."""
    x, y = np.asarray(pos, float), np.asarray(neg, float)
    if x.size == 0 or y.size == 0:
        return math.nan
    ranks = _midranks(np.concatenate([x, y]))
    return float((ranks[:x.size].sum() - x.size * (x.size + 1) / 2) / (x.size * y.size))


def delong(pos: Sequence[float], neg: Sequence[float]) -> dict[str, float]:
    """AUC with DeLong's variance (placement values from midranks) and a normal 95% interval in [0, 1]."""
    x, y = np.asarray(pos, float), np.asarray(neg, float)
    m, n = x.size, y.size
    if m < 2 or n < 2:
        return {"auc": auc(x, y), "se": math.nan, "ci95": [math.nan, math.nan], "n_pos": m, "n_neg": n}
    combined = _midranks(np.concatenate([x, y]))
    v10 = (combined[:m] - _midranks(x)) / n          # per positive: share of negatives below it (ties 1/2)
    v01 = 1.0 - (combined[m:] - _midranks(y)) / m    # per negative: share of positives above it
    a = float(v10.mean())
    var = float(np.var(v10, ddof=1) / m + np.var(v01, ddof=1) / n)
    se = math.sqrt(var)
    return {"auc": a, "se": se, "ci95": [max(0.0, a - Z95 * se), min(1.0, a + Z95 * se)], "n_pos": m, "n_neg": n}


def cohen_kappa(a: Sequence[Any], b: Sequence[Any]) -> float:
    """Cohen's (1960) kappa of two raters' answers on the same subjects (unweighted)."""
    if len(a) != len(b) or not a:
        return math.nan
    cats = sorted(set(a) | set(b), key=str)
    n = len(a)
    p_o = sum(x == y for x, y in zip(a, b)) / n
    p_e = sum((list(a).count(c) / n) * (list(b).count(c) / n) for c in cats)
    return (p_o - p_e) / (1 - p_e) if p_e < 1 else math.nan


def roc_points(pos: Sequence[float], neg: Sequence[float], levels: Sequence[int]) -> list[tuple[float, float]]:
    """Empirical ROC: (false positive rate, true positive rate) for 'synthetic' = confidence >= k, k high to low."""
    x, y = np.asarray(pos, float), np.asarray(neg, float)
    pts = [(0.0, 0.0)]
    for k in sorted(levels, reverse=True)[:-1]:
        pts.append((float((y >= k).mean()) if y.size else math.nan, float((x >= k).mean()) if x.size else math.nan))
    return pts + [(1.0, 1.0)]


# ---------------------------------------------------------------------------------------------------
# Two-way bootstrap of the pooled figures


def pooled_bootstrap(conf: np.ndarray, truth: np.ndarray, group: np.ndarray, groups: Sequence[str], *,
                     synthetic_from: int, reps: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Reader-averaged AUC (overall and per group vs real) and pooled sensitivity / specificity / accuracy, with
    percentile 95% intervals from resampling readers and images (within real and within each group).

    conf: readers x trials confidences (NaN = not answered); truth: 1 synthetic / 0 real per trial;
    group: the trial's group ('real' for real images)."""
    conf = np.asarray(conf, float)
    valid = ~np.isnan(conf)
    called = np.where(valid, conf >= synthetic_from, False).astype(float)
    real_idx = np.flatnonzero(truth == 0)
    strata = [real_idx] + [np.flatnonzero(group == g) for g in groups]
    # pairwise comparison tensors, readers x synthetic trials x real trials: psi and "both answered"
    syn_idx = np.flatnonzero(truth == 1)
    cs, cr = conf[:, syn_idx][:, :, None], conf[:, real_idx][:, None, :]
    both = ~np.isnan(cs) & ~np.isnan(cr)
    psi = np.where(both, (cs > cr) + 0.5 * (cs == cr), 0.0)
    pos_in_syn = {g: np.isin(syn_idx, np.flatnonzero(group == g)) for g in groups}

    def figures(wr: np.ndarray, wt: np.ndarray) -> dict[str, float]:
        w_syn, w_real = wt[syn_idx], wt[real_idx]
        out = {}
        for name, mask in [("auc", np.ones(syn_idx.size, bool))] + [(f"auc:{g}", pos_in_syn[g]) for g in groups]:
            ws = np.where(mask, w_syn, 0.0)
            num = np.einsum("rsl,s,l->r", psi, ws, w_real)
            den = np.einsum("rsl,s,l->r", both, ws, w_real)
            per_reader = np.divide(num, den, out=np.full(num.shape, np.nan), where=den > 0)
            keep = (wr > 0) & ~np.isnan(per_reader)
            out[name] = float(np.average(per_reader[keep], weights=wr[keep])) if keep.any() else math.nan
        weights = wr[:, None] * wt[None, :] * valid
        for name, cols, hit in (("sensitivity", truth == 1, called), ("specificity", truth == 0, 1 - called),
                                ("accuracy", np.ones(truth.size, bool), np.where(truth == 1, called, 1 - called))):
            w = weights[:, cols]
            out[name] = float((w * hit[:, cols]).sum() / w.sum()) if w.sum() else math.nan
        for g in groups:
            w = weights[:, group == g]
            out[f"sensitivity:{g}"] = float((w * called[:, group == g]).sum() / w.sum()) if w.sum() else math.nan
        return out

    n_readers, n_trials = conf.shape
    estimate = figures(np.ones(n_readers), np.ones(n_trials))
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {k: [] for k in estimate}
    for _ in range(reps):
        wr = np.bincount(rng.integers(0, n_readers, n_readers), minlength=n_readers).astype(float)
        wt = np.zeros(n_trials)
        for s in strata:
            if s.size:
                wt[s] = np.bincount(rng.integers(0, s.size, s.size), minlength=s.size)
        for k, v in figures(wr, wt).items():
            draws[k].append(v)
    ci = {}
    for k, v in draws.items():
        arr = np.asarray(v)
        arr = arr[~np.isnan(arr)]
        ci[k] = [float(np.percentile(arr, 2.5)), float(np.percentile(arr, 97.5))] if arr.size else [math.nan] * 2
    return {"estimate": estimate, "ci95": ci, "reps": reps, "seed": seed}


# ---------------------------------------------------------------------------------------------------
# Comparing groups


def permutation_test(a: Sequence[float], b: Sequence[float], *, reps: int = 9999, seed: int = 0) -> dict[str, Any]:
    """Two-sided permutation test of mean(a) - mean(b) (scipy.stats.permutation_test, exact when the number of
    splits is at most `reps`)."""
    x, y = np.asarray(a, float), np.asarray(b, float)
    x, y = x[~np.isnan(x)], y[~np.isnan(y)]
    if x.size < 1 or y.size < 1:
        return {"difference": math.nan, "p": math.nan, "n_a": int(x.size), "n_b": int(y.size),
                "mean_a": float(x.mean()) if x.size else math.nan, "mean_b": float(y.mean()) if y.size else math.nan}
    res = _st.permutation_test((x, y), lambda u, v, axis: np.mean(u, axis=axis) - np.mean(v, axis=axis),
                               permutation_type="independent", vectorized=True, n_resamples=reps,
                               alternative="two-sided", rng=np.random.default_rng(seed))
    return {"difference": float(x.mean() - y.mean()), "p": float(res.pvalue), "n_a": int(x.size),
            "n_b": int(y.size), "mean_a": float(x.mean()), "mean_b": float(y.mean())}


# ---------------------------------------------------------------------------------------------------
# Mixed-effects logistic model


def logistic_model(rows: list[dict[str, Any]], *, use_condition: bool, use_years: bool = False,
                   min_readers: int = 3) -> dict[str, Any]:
    """P(called synthetic) ~ group (+ condition) (+ years of experience / 10) with a reader random intercept, or
    the stated fallback.

    rows: {"reader", "group", "condition", "years", "called"} per answered trial. Returns the method, why, and per fixed
    effect the log-odds estimate, its SE (posterior SD for the Bayesian model), the odds ratio and a 95% interval.
    """
    import pandas as pd  # imported on use: pandas and statsmodels are slow to import
    import statsmodels.api as sm
    from statsmodels.genmod.bayes_mixed_glm import BinomialBayesMixedGLM

    df = pd.DataFrame(rows)
    if df.empty:
        return {"method": "none", "why": "no answered trials", "effects": []}
    readers = df["reader"].nunique()
    terms = ["C(group, Treatment('real'))"]
    if use_condition and df["condition"].notna().all() and df["condition"].nunique() > 1:
        terms.append("C(condition)")
    if use_years and df["years"].notna().all() and df["years"].nunique() > 1:
        df["years10"] = df["years"].astype(float) / 10  # per decade of experience: a readable odds ratio
        terms.append("years10")
    formula = "called ~ " + " + ".join(terms)
    for col in ("group", "condition") if "C(condition)" in terms else ("group",):
        rates = df.groupby(col)["called"].mean()
        extreme = [str(k) for k, v in rates.items() if v in (0.0, 1.0)]
        if extreme:
            return {"method": "none", "formula": formula, "effects": [],
                    "why": f"{col} {', '.join(extreme)} was called synthetic in all or none of its trials (complete "
                           "separation: the log odds are infinite); see the rates table"}
    if readers >= min_readers:
        model = BinomialBayesMixedGLM.from_formula(formula, {"reader": "0 + C(reader)"}, df)
        fit = model.fit_vb()
        names, est, sd = model.exog_names, np.asarray(fit.fe_mean), np.asarray(fit.fe_sd)
        out = {"method": "BinomialBayesMixedGLM (variational Bayes)", "formula": formula + " + (1 | reader)",
               "why": f"{readers} readers: reader as a random intercept",
               "reader_sd": float(np.exp(fit.vcp_mean[0])), "interval": "posterior mean +- 1.96 posterior SD"}
    else:
        fit = sm.GLM.from_formula(formula, df, family=sm.families.Binomial())
        if readers >= 2:
            res = fit.fit(cov_type="cluster", cov_kwds={"groups": pd.factorize(df["reader"])[0]})
            why = (f"only {readers} readers (a random effect needs >= {min_readers}): binomial GLM, standard errors "
                   "cluster-robust by reader (few clusters: the errors are themselves uncertain)")
        else:
            res = fit.fit()
            why = "one reader: plain binomial GLM (no between-reader variation to model)"
        names, est, sd = list(res.params.index), np.asarray(res.params), np.asarray(res.bse)
        out = {"method": "GLM binomial", "formula": formula, "why": why, "interval": "Wald, estimate +- 1.96 SE"}
    effects = []
    for name, b, s in zip(names, est, sd):
        effects.append({"term": _term(name), "log_odds": float(b), "se": float(s), "odds_ratio": float(np.exp(b)),
                        "ci95": [float(np.exp(b - Z95 * s)), float(np.exp(b + Z95 * s))],
                        "z": float(b / s) if s > 0 else math.nan,
                        "p": float(2 * _st.norm.sf(abs(b / s))) if s > 0 else math.nan})
    return {**out, "effects": effects, "n": int(len(df)), "readers": int(readers)}


def _term(name: str) -> str:
    """C(group, Treatment('real'))[T.ckpt:68000] -> group ckpt:68000 (vs real)."""
    if name == "Intercept":
        return "intercept (real images)"
    if name.startswith("C(group"):
        return f"group {name.split('[T.', 1)[1].rstrip(']')} (vs real)"
    if name.startswith("C(condition)"):
        return f"condition {name.split('[T.', 1)[1].rstrip(']')}"
    if name == "years10":
        return "years of experience (per 10)"
    return name
