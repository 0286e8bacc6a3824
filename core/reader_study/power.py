"""Planning a reader study by power: simulate many studies under a stated truth and run the analysis's tests.

Designs (docs/guide/planning.md):

- ``quartets`` (the paper's): every reader sees the same T quartets (one real image, one from each of G groups),
  picks the image they believe is real and rates all four for realism (1-4).
  Identification: reader r picks the real image of quartet q with probability
  expit(mu + u_r + v_q), u_r ~ N(0, reader_sd^2) (readers differ), v_q ~ N(0, quartet_sd^2) (some real images
  are easier to spot, for every reader: this is what makes Fleiss' kappa positive); mu is solved so that the mean
  identification rate over readers and quartets is the stated ``identification``. A wrong pick falls on one of
  the G synthetic images at random. Ratings: the simulated raters of core/demo/raters.py (latent realism =
  group level + image effect + rater bias + noise, rounded into 1-4); group g's level is the real level minus
  ``rating_shift[g]``.
- ``single``: every reader sees the same T images, a fraction real, and answers real/synthetic with a confidence
  (an ordinal scale of 2 x levels points). Equal-variance binormal reader model: latent x = +-d_r/2 + v_i + e,
  d_r ~ N(d, reader_sd^2), v_i ~ N(0, image_sd^2) shared by all readers, e ~ N(0, 1); the reader calls "real"
  above their own criterion c_r ~ N(0, criterion_sd^2), with confidence cut points every ``confidence_step``
  around it. d is set so that the average reader's AUC is the stated ``auc``: Phi(d / sqrt(2 (1 + image_sd^2))).

Each simulated study is analysed with the analysis's own rules (core/reader_study/power_stats.py); power is the
fraction of simulated studies in which a test rejects at ``alpha``. Everything is drawn from one seeded NumPy
generator per (seed, readers, trials), so a plan is reproducible and a grid point does not depend on the others.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from itertools import combinations
from typing import Any

import numpy as np
from scipy import optimize as _opt
from scipy import special as _sp
from scipy import stats as _st

from core.errors import CspineError
from core.reader_study import power_stats as ps

DESIGNS = ("quartets", "single")
TARGET = 0.8
READER_GRID = (2, 3, 4, 5, 6, 7, 8, 10, 12, 15, 20, 25, 30, 40, 50)
TRIAL_GRID = (10, 20, 30, 40, 50, 60, 80, 100, 150, 200, 300, 400)
SEARCH_SIMS = 500           # studies per grid point in the search (Monte Carlo SE about 0.018 at 80%)
_CHUNK_VALUES = 2_000_000   # latent values per chunk of simulated studies (about 16 MB of float64)


@dataclass(frozen=True)
class QuartetEffect:
    """The truth a quartet study is planned for."""
    identification: float = 0.35        # mean probability of picking the real image (chance 0.25)
    reader_sd: float = 0.3              # SD of readers' log-odds of identification
    quartet_sd: float = 1.1             # SD of quartets' log-odds (kappa 0.061 at 29%, as the paper)
    rating_shift: tuple[float, ...] = (0.25,)  # real minus group mean realism, per group (missing groups: 0)
    groups: int = 3                     # synthetic images per quartet
    pairwise: bool = False              # Holm over all pairs of groups (real included), not real vs each
    real_level: float = 3.35            # the rest as the demo's simulated raters (core/demo/raters.py)
    rater_bias_sd: float = 0.15
    image_sd: float = 0.15
    rating_sd: float = 0.45

    def shifts(self) -> list[float]:
        return [*self.rating_shift[: self.groups], *[0.0] * (self.groups - len(self.rating_shift))]


@dataclass(frozen=True)
class SingleEffect:
    """The truth a single-image study is planned for."""
    auc: float = 0.65                   # the average reader's ROC AUC (0.5 = cannot tell)
    reader_sd: float = 0.3              # SD of readers' d'
    criterion_sd: float = 0.25          # SD of readers' thresholds for calling an image real
    image_sd: float = 0.3               # SD of images' latent realism, shared by all readers
    real_fraction: float = 0.5          # share of real images among the trials
    confidence_levels: int = 3          # per answer, so the scale has 2 x levels points
    confidence_step: float = 0.5        # latent distance between confidence cut points


Effect = QuartetEffect | SingleEffect
TESTS = {  # name -> (design, what it is)
    "identification": ("quartets", "identification vs 25% chance, pooled exact binomial"),
    "identification_per_reader": ("quartets", "one reader's identification vs 25%, exact binomial"),
    "kappa": ("both", "Fleiss' kappa vs 0 (irr z-test)"),
    "accuracy": ("single", "accuracy vs 50%, pooled exact binomial"),
    "accuracy_per_reader": ("single", "one reader's accuracy vs 50%, exact binomial"),
    "auc": ("single", "mean reader AUC vs 0.5, readers and images random (two-way)"),
}


def effect_for(design: str, **values: Any) -> Effect:
    """The design's effect with the given values (None = default), checked; errors name the option."""
    if design not in DESIGNS:
        raise CspineError(f"unknown design {design!r}; use one of {', '.join(DESIGNS)}")
    cls = QuartetEffect if design == "quartets" else SingleEffect
    names = {f.name for f in fields(cls)}
    wrong = sorted(k for k, v in values.items() if v is not None and k not in names)
    if wrong:
        raise CspineError(f"{', '.join(wrong)} does not apply to the {design} design; leave it out")
    kwargs = {k: (tuple(v) if k == "rating_shift" else v) for k, v in values.items() if v is not None}
    effect = cls(**kwargs)
    _check(effect)
    return effect


def _check(e: Effect) -> None:
    bad: list[str] = []
    sds = {k: v for k, v in asdict(e).items() if k.endswith("_sd")}
    bad += [f"{k} = {v} (must be >= 0)" for k, v in sds.items() if v < 0]
    if isinstance(e, QuartetEffect):
        if not 0 < e.identification < 1:
            bad.append(f"identification rate {e.identification} (must be between 0 and 1)")
        if e.groups < 1:
            bad.append(f"groups = {e.groups} (must be >= 1)")
        if any(abs(s) >= 3 for s in e.rating_shift):
            bad.append("rating shift beyond the 1-4 scale")
    else:
        if not 0 < e.auc < 1:
            bad.append(f"AUC {e.auc} (must be between 0 and 1)")
        if not 0 < e.real_fraction < 1:
            bad.append(f"real fraction {e.real_fraction} (must be between 0 and 1)")
        if e.confidence_levels < 1 or e.confidence_step <= 0:
            bad.append("confidence levels must be >= 1 and their step > 0")
    if bad:
        raise CspineError("cannot plan with " + "; ".join(bad))


# ---------------------------------------------------------------------------------------------------
# Simulation


def _logit_mean(p: float, sd: float) -> float:
    """mu such that E[expit(mu + sd Z)] = p, Z standard normal (Gauss-Hermite quadrature)."""
    if sd == 0:
        return float(_sp.logit(p))
    z, w = np.polynomial.hermite_e.hermegauss(80)
    w = w / w.sum()
    return float(_opt.brentq(lambda mu: float((_sp.expit(mu + sd * z) * w).sum()) - p, -40, 40, xtol=1e-12))


def _chunks(sims: int, per_study: int) -> list[int]:
    size = max(1, min(sims, _CHUNK_VALUES // max(1, per_study)))
    return [min(size, sims - s) for s in range(0, sims, size)]


@dataclass
class _Draws:
    """Per simulated study: which tests rejected, and the numbers the plan summarises."""
    rejects: dict[str, list[np.ndarray]] = field(default_factory=dict)
    values: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def add(self, kind: str, name: str, arr: np.ndarray) -> None:
        getattr(self, kind).setdefault(name, []).append(np.asarray(arr))

    def joined(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        return ({k: np.concatenate(v) for k, v in self.rejects.items()},
                {k: np.concatenate(v) for k, v in self.values.items()})


def _pairs(e: QuartetEffect) -> list[tuple[int, int]]:
    """Wilcoxon comparisons as (group, group) indices, 0 = real: real vs each group, or all pairs."""
    return list(combinations(range(e.groups + 1), 2)) if e.pairwise else [(0, g) for g in range(1, e.groups + 1)]


def _quartets(e: QuartetEffect, readers: int, trials: int, alpha: float, n: int, rng: np.random.Generator,
              out: _Draws) -> None:
    g1 = e.groups + 1
    mu = _logit_mean(e.identification, math.hypot(e.reader_sd, e.quartet_sd))
    u = rng.normal(0.0, e.reader_sd, (n, readers, 1))
    v = rng.normal(0.0, e.quartet_sd, (n, 1, trials))
    correct = rng.random((n, readers, trials)) < _sp.expit(mu + u + v)
    per_reader = correct.sum(axis=2)
    k = per_reader.sum(axis=1)
    out.add("values", "correct", k)
    out.add("rejects", "identification", ps.binomial_rejects(readers * trials, 0.25, alpha)[k])
    out.add("rejects", "identification_per_reader", ps.binomial_rejects(trials, 0.25, alpha)[per_reader].mean(axis=1))
    if readers >= 2:  # Fleiss' kappa, answers coded by the chosen image's source (the analysis's default)
        chosen = np.where(correct, 0, rng.integers(1, g1, (n, readers, trials)))
        counts = (chosen[..., None] == np.arange(g1)).sum(axis=1)
        kappa, kp = ps.fleiss(counts)
        out.add("values", "kappa", kappa)
        out.add("rejects", "kappa", kp < alpha)
    levels = np.array([e.real_level, *[e.real_level - s for s in e.shifts()]])
    latent = (levels + rng.normal(0.0, e.image_sd, (n, 1, trials, g1)) + rng.normal(0.0, e.rater_bias_sd,
              (n, readers, 1, 1)) + rng.normal(0.0, e.rating_sd, (n, readers, trials, g1)))
    sums = np.clip(np.rint(latent), 1, 4).astype(np.int64).sum(axis=2)  # integer sums: ties exact
    out.add("values", "realism_real", sums[:, :, 0].mean(axis=1) / trials)
    pairs = _pairs(e)
    p = np.stack([ps.wilcoxon_p(sums[:, :, a] - sums[:, :, b]) for a, b in pairs], axis=1)
    reject = ps.holm(p) < alpha  # NaN (every difference zero) never rejects
    for i, (a, b) in enumerate(pairs):
        out.add("rejects", _realism_name(a, b), reject[:, i])
    out.add("rejects", "realism_any", reject.any(axis=1))


def _realism_name(a: int, b: int) -> str:
    return f"realism_{'real' if a == 0 else f'group{a}'}_vs_group{b}"


def single_d(e: SingleEffect) -> float:
    """The average reader's d' for the stated AUC, given the image effect's share of the latent variance."""
    return float(math.sqrt(2) * _st.norm.ppf(e.auc) * math.sqrt(1 + e.image_sd ** 2))


def _single(e: SingleEffect, readers: int, trials: int, alpha: float, n: int, rng: np.random.Generator,
            out: _Draws) -> None:
    truth = np.arange(trials) < real_count(e, trials)
    d = single_d(e) + rng.normal(0.0, e.reader_sd, (n, readers, 1))
    c = rng.normal(0.0, e.criterion_sd, (n, readers, 1))
    x = (np.where(truth, 0.5, -0.5) * d + rng.normal(0.0, e.image_sd, (n, 1, trials))
         + rng.normal(0.0, 1.0, (n, readers, trials)))
    levels = e.confidence_levels
    cuts = c + e.confidence_step * np.arange(-(levels - 1), levels)  # (n, readers, 2 levels - 1)
    score = (x[..., None] > cuts[:, :, None, :]).sum(axis=-1)         # 0 .. 2 levels - 1
    call_real = score >= levels                                       # above the reader's own criterion
    correct = call_real == truth
    per_reader = correct.sum(axis=2)
    k = per_reader.sum(axis=1)
    out.add("values", "correct", k)
    # "positive" is synthetic, as in the single-image analysis
    out.add("values", "sensitivity_hits", (~call_real[:, :, ~truth]).sum(axis=(1, 2)))
    out.add("values", "specificity_hits", call_real[:, :, truth].sum(axis=(1, 2)))
    out.add("rejects", "accuracy", ps.binomial_rejects(readers * trials, 0.5, alpha)[k])
    out.add("rejects", "accuracy_per_reader", ps.binomial_rejects(trials, 0.5, alpha)[per_reader].mean(axis=1))
    auc, auc_p = ps.auc_two_way(score, truth, 2 * levels)
    out.add("values", "auc", auc)
    out.add("rejects", "auc", auc_p < alpha)  # NaN (no spread at all) never rejects
    if readers >= 2:
        counts = np.stack([(~call_real).sum(axis=1), call_real.sum(axis=1)], axis=2)
        kappa, kp = ps.fleiss(counts)
        out.add("values", "kappa", kappa)
        out.add("rejects", "kappa", kp < alpha)


def real_count(e: SingleEffect, trials: int) -> int:
    """Real images among the trials: the stated fraction, at least one of each kind."""
    return int(min(trials - 1, max(1, round(trials * e.real_fraction))))


def simulate(effect: Effect, readers: int, trials: int, *, alpha: float = 0.05, sims: int = 2000,
             seed: int = 0) -> dict[str, Any]:
    """Power of every test at one (readers, trials): {"tests": {name: {...}}, "estimates": {...}}."""
    single = isinstance(effect, SingleEffect)
    if readers < 1 or trials < (2 if single else 1) or sims < 1:
        raise CspineError(f"cannot simulate {readers} readers x {trials} trials x {sims} studies; use at least 1 "
                          f"reader, {2 if single else 1} trials and 1 simulated study")
    if not 0 < alpha < 1:
        raise CspineError(f"alpha {alpha} must be between 0 and 1")
    rng = np.random.default_rng([seed, readers, trials])
    draws = _Draws()
    per_study = readers * trials * (2 * effect.confidence_levels if single else effect.groups + 1)
    for n in _chunks(sims, per_study):
        (_single if single else _quartets)(effect, readers, trials, alpha, n, rng, draws)
    rejects, values = draws.joined()
    tests = {}
    for name, hits in rejects.items():
        power = float(hits.mean())
        tests[name] = {"power": power, "mc_se": math.sqrt(max(power * (1 - power), 1e-12) / sims),
                       "test": TESTS.get(name, (None, _realism_text(name, effect)))[1]}
    n_trials = readers * trials
    acc = values["correct"] / n_trials
    estimates: dict[str, Any] = {
        "accuracy": float(acc.mean()),
        "accuracy_ci_width": float(ps.wilson_width(values["correct"], n_trials).mean()),
        "accuracy_spread_95": float(np.quantile(acc, 0.975) - np.quantile(acc, 0.025)),
    }
    if "kappa" in values:
        estimates["kappa"] = float(np.nanmean(values["kappa"]))
    if single:
        n_real = real_count(effect, trials) * readers
        n_syn = n_trials - n_real
        estimates.update({
            "auc": float(values["auc"].mean()),
            "sensitivity": float(values["sensitivity_hits"].mean() / n_syn),
            "specificity": float(values["specificity_hits"].mean() / n_real),
            "sensitivity_ci_width": float(ps.wilson_width(values["sensitivity_hits"], n_syn).mean()),
            "specificity_ci_width": float(ps.wilson_width(values["specificity_hits"], n_real).mean()),
        })
    else:
        estimates["realism_real"] = float(values["realism_real"].mean())
    return {"readers": readers, "trials": trials, "tests": tests, "estimates": estimates}


def _realism_text(name: str, e: Effect) -> str:
    a, b = name.removeprefix("realism_").split("_vs_") if "_vs_" in name else ("any", "")
    family = (f"Holm over all {len(_pairs(e))} pairs" if getattr(e, "pairwise", False)
              else f"Holm over {getattr(e, 'groups', 0)} groups")
    if a == "any":
        return f"realism: any comparison significant (paired Wilcoxon, {family})"
    return f"realism {a} vs {b}, paired Wilcoxon over readers, {family}"


# ---------------------------------------------------------------------------------------------------
# The plan


def primary_tests(effect: Effect) -> list[str]:
    """The tests the search sizes the study for: the pooled accuracy test and the main comparison."""
    if isinstance(effect, SingleEffect):
        return ["accuracy", "auc"]
    shifts = effect.shifts()
    g = max(range(len(shifts)), key=lambda i: abs(shifts[i])) + 1  # the largest stated shift
    return ["identification", _realism_name(0, g)]


def search(effect: Effect, readers: int, trials: int, *, alpha: float = 0.05, sims: int = SEARCH_SIMS,
           seed: int = 0, target: float = TARGET) -> dict[str, Any]:
    """Smallest readers (at the stated trials) and trials (at the stated readers) giving `target` power.

    Walks READER_GRID and TRIAL_GRID upwards and takes, per primary test, the first grid value whose simulated
    power reaches the target; stops early once every primary test has reached it. Discrete tests' power is not
    strictly monotone (it saw-tooths in n), so a value just below the one found may also do.
    """
    out: dict[str, Any] = {"target": target, "sims_per_point": sims, "reader_grid": list(READER_GRID),
                           "trial_grid": list(TRIAL_GRID), "readers_needed": {}, "trials_needed": {}}
    for axis, grid in (("readers", READER_GRID), ("trials", TRIAL_GRID)):
        found: dict[str, dict[str, Any] | None] = {t: None for t in primary_tests(effect)}
        for value in grid:
            r, t = (value, trials) if axis == "readers" else (readers, value)
            if isinstance(effect, SingleEffect) and t < 2:
                continue
            res = simulate(effect, r, t, alpha=alpha, sims=sims, seed=seed)
            for name in found:
                power = res["tests"].get(name, {}).get("power", 0.0)
                if found[name] is None and power >= target:
                    found[name] = {axis: value, "power": power}
            if all(found.values()):
                break
        out[f"{axis}_needed"] = found
    return out


def wilcoxon_floor(readers: int) -> float:
    """The smallest two-sided p a paired Wilcoxon over `readers` can give: every difference of one sign, either
    all distinct (exact test) or all tied (normal approximation, the smallest variance)."""
    distinct = np.arange(1, readers + 1)[None, :]
    tied = np.ones((1, readers), dtype=int)
    return float(min(ps.wilcoxon_p(distinct)[0], ps.wilcoxon_p(tied)[0]))


def plan(design: str, readers: int, trials: int, effect: Effect | None = None, *, alpha: float = 0.05,
         sims: int = 2000, seed: int = 0, target: float = TARGET, run_search: bool = True) -> dict[str, Any]:
    """The plan: the assumptions, each test's power, interval widths, and (optionally) the readers and trials
    needed for `target` power."""
    effect = effect or effect_for(design)
    res = simulate(effect, readers, trials, alpha=alpha, sims=sims, seed=seed)
    notes: list[str] = []
    if isinstance(effect, QuartetEffect):
        family = len(_pairs(effect))
        floor = wilcoxon_floor(readers)
        if readers < 2 or floor * family > alpha:
            notes.append(f"with {readers} readers the smallest Wilcoxon p is {floor:.4f}; Holm over {family} "
                         f"comparisons needs {alpha / family:.4f} or less, so no realism difference can be found "
                         "whatever the number of quartets")
    # The same readers and trials at chance: how often the primary tests reject when nothing differs. Readers
    # and trials that differ make the pooled binomial test reject more often than alpha (it treats every trial
    # as independent), which a plan must show.
    null = (replace(effect, identification=0.25, rating_shift=()) if isinstance(effect, QuartetEffect)
            else replace(effect, auc=0.5))
    null_tests = simulate(null, readers, trials, alpha=alpha, sims=sims, seed=seed + 1)["tests"]
    false_positive = {name: null_tests[name]["power"] for name in primary_tests(effect) if name in null_tests}
    for name, rate in false_positive.items():
        if rate > alpha + 3 * math.sqrt(alpha * (1 - alpha) / sims):
            notes.append(f"{res['tests'][name]['test']}: rejects in {_pct(rate)} of the studies at chance (not "
                         f"{_pct(alpha)}) because readers and trials differ; it speaks for these readers and "
                         "images, not for readers and images in general")
    if readers < 2:
        notes.append("Fleiss' kappa needs at least two readers")
    doc = {
        "design": design, "readers": readers, "trials": trials, "total_trials": readers * trials,
        "alpha": alpha, "sims": sims, "seed": seed, "effect": {"kind": type(effect).__name__, **asdict(effect)},
        "tests": res["tests"], "estimates": res["estimates"], "primary": primary_tests(effect),
        "false_positive": false_positive, "notes": notes,
    }
    if isinstance(effect, SingleEffect):
        doc["effect"]["d_prime"] = single_d(effect)
    if run_search:
        doc["search"] = search(effect, readers, trials, alpha=alpha, sims=min(sims, SEARCH_SIMS), seed=seed,
                               target=target)
    return doc


# ---------------------------------------------------------------------------------------------------
# The power the finished study had


def effect_from_settings(saved: dict[str, Any] | None, design: str, groups: int | None = None) -> Effect:
    """The effect a study recorded with `plan-study --save` (its [plan] settings), else the default."""
    values = dict((saved or {}).get("effect", {})) if (saved or {}).get("design") == design else {}
    values.pop("kind", None)
    values.pop("d_prime", None)
    if groups is not None and design == "quartets":
        values["groups"] = groups
    return effect_for(design, **values)


def study_power(result: dict[str, Any], saved_plan: dict[str, Any] | None = None, *, sims: int = 1000,
                seed: int = 0) -> dict[str, Any]:
    """The power a finished analysis (its design, readers, trials and groups) had to detect the planned effect
    (the one recorded with `plan-study --save` for that design, else the default)."""
    design = result.get("design", "quartets")
    readers = int(result["n_raters"])
    trials = int(result["n_quartets"] if design == "quartets" else result["n_images"])
    groups = max(1, len(result.get("groups", [])) - 1) if design == "quartets" else None
    planned = bool(saved_plan) and saved_plan.get("design") == design
    problem = None
    try:  # a plan edited by hand into nonsense must not cost the user the analysis
        effect = effect_from_settings(saved_plan, design, groups)
        alpha = float(saved_plan.get("alpha", 0.05)) if planned else 0.05
        if not 0 < alpha < 1:
            raise CspineError(f"alpha {alpha} must be between 0 and 1")
    except (CspineError, TypeError, ValueError) as exc:
        problem = f"the plan in study.toml [plan] was not used ({exc}); run `plan-study --save` again"
        effect, alpha, planned = effect_from_settings(None, design, groups), 0.05, False
    doc = plan(design, readers, trials, effect, alpha=alpha, sims=sims, seed=seed, run_search=False)
    doc["effect_source"] = "planned (plan-study --save)" if planned else "default (no plan recorded)"
    if problem:
        doc["effect_source"] = "default (the saved plan is not valid)"
        doc["notes"].append(problem)
    if design == "quartets":  # the study's own group names for "group1", "group2", ... (longest first: group10)
        names = [str(g) for g in result.get("groups", [])[1:]]
        for t in doc["tests"].values():
            for i in sorted(range(len(names)), reverse=True):
                t["test"] = t["test"].replace(f"group{i + 1}", names[i])
    return doc


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def power_lines(doc: dict[str, Any]) -> list[str]:
    """The report's "Power" section (Markdown lines) for a study_power() document."""
    e, tests = doc["effect"], doc["tests"]
    unit = "quartets" if doc["design"] == "quartets" else "images"
    head = (f"With {doc['readers']} readers x {doc['trials']} {unit}, {doc['sims']} studies simulated under the "
            f"{doc['effect_source']} effect (seed {doc['seed']}, alpha {doc['alpha']}; docs/guide/planning.md):")
    rows = []
    if doc["design"] == "quartets":
        rows.append(f"- identification vs 25% (pooled binomial): power {_pct(tests['identification']['power'])} "
                    f"to detect a true identification rate of {_pct(e['identification'])} (reader SD "
                    f"{e['reader_sd']}, quartet SD {e['quartet_sd']} on the log-odds scale);")
        for name in doc["primary"][1:]:
            if name in tests:
                shift = max(e["rating_shift"], key=abs) if e["rating_shift"] else 0.0
                rows.append(f"- {tests[name]['test']}: power {_pct(tests[name]['power'])} to detect a realism "
                            f"difference of {shift} points;")
    else:
        rows.append(f"- accuracy vs 50% (pooled binomial): power {_pct(tests['accuracy']['power'])} at an average "
                    f"reader AUC of {e['auc']};")
        if "auc" in tests:
            rows.append(f"- mean reader AUC vs 0.5 (readers and images random): power {_pct(tests['auc']['power'])};")
    rows.append(f"- expected width of the accuracy 95% interval: {100 * doc['estimates']['accuracy_ci_width']:.1f} "
                "percentage points.")
    rows += [f"- note: {n}" for n in doc["notes"]]
    return ["## Power", "", head, "", *rows, "",
            "A non-significant result at low power is not evidence that the images are indistinguishable.", ""]



# ---------------------------------------------------------------------------------------------------
# Text


def saved_plan(doc: dict[str, Any]) -> dict[str, Any]:
    """What `plan-study --save` records in study.toml ([plan]): the design, size, alpha and effect."""
    effect = {k: (list(v) if isinstance(v, tuple) else v) for k, v in doc["effect"].items()
              if k not in ("kind", "d_prime")}
    return {"design": doc["design"], "readers": doc["readers"], "trials": doc["trials"], "alpha": doc["alpha"],
            "seed": doc["seed"], "effect": effect}


def assumptions_text(doc: dict[str, Any]) -> str:
    e = doc["effect"]
    if doc["design"] == "quartets":
        shifts = ", ".join(f"{s:g}" for s in e["rating_shift"]) or "none"
        return (f"true identification rate {_pct(e['identification'])} (chance 25%); readers' log-odds SD "
                f"{e['reader_sd']:g}, quartets' {e['quartet_sd']:g}; realism real minus group: {shifts} "
                f"(of {e['groups']} groups; rating noise as the demo's simulated raters)")
    return (f"average reader AUC {e['auc']:g} (d' {e['d_prime']:.2f}); readers' d' SD {e['reader_sd']:g}, "
            f"criterion SD {e['criterion_sd']:g}, images' SD {e['image_sd']:g}; {_pct(e['real_fraction'])} real; "
            f"{2 * e['confidence_levels']}-point confidence scale")


def plan_text(doc: dict[str, Any]) -> list[str]:
    """The plan as lines for a terminal (plan-study without --json, the TUI's plan widget)."""
    unit = "quartets" if doc["design"] == "quartets" else "images"
    est = doc["estimates"]
    width = max(len(t["test"]) for t in doc["tests"].values())
    lines = [f"{doc['design']} design: {doc['readers']} readers x {doc['trials']} {unit} = {doc['total_trials']} "
             f"trials; alpha {doc['alpha']:g}; {doc['sims']} simulated studies (seed {doc['seed']})",
             f"assumed: {assumptions_text(doc)}", "",
             f"{'test':<{width}} {'power':>6}  MC SE"]
    for t in doc["tests"].values():
        lines.append(f"{t['test']:<{width}} {_pct(t['power']):>6}  {100 * t['mc_se']:.1f}")
    lines += ["", f"expected accuracy {100 * est['accuracy']:.1f}%; its Wilson 95% interval is "
              f"{100 * est['accuracy_ci_width']:.1f} points wide on average; the estimate itself spreads over "
              f"{100 * est['accuracy_spread_95']:.1f} points (central 95% of the simulated studies)"]
    if "kappa" in est:
        lines.append(f"expected Fleiss' kappa {est['kappa']:.3f}")
    if doc["design"] == "single":
        lines.append(f"expected sensitivity (synthetic called synthetic) {100 * est['sensitivity']:.1f}% (interval "
                     f"{100 * est['sensitivity_ci_width']:.1f} points), specificity "
                     f"{100 * est['specificity']:.1f}% (interval "
                     f"{100 * est['specificity_ci_width']:.1f} points), mean reader AUC {est['auc']:.3f}")
    s = doc.get("search")
    if s:
        lines += ["", f"for {_pct(s['target'])} power ({s['sims_per_point']} studies per grid point, first grid "
                      f"value reaching it):"]
        for name in doc["primary"]:
            r, t = s["readers_needed"].get(name), s["trials_needed"].get(name)
            r_text = f"{r['readers']} readers" if r else f"more than {s['reader_grid'][-1]} readers"
            t_text = f"{t['trials']} {unit}" if t else f"more than {s['trial_grid'][-1]} {unit}"
            lines.append(f"  {doc['tests'][name]['test']}: {r_text} at {doc['trials']} {unit}, or {t_text} at "
                         f"{doc['readers']} readers")
    lines += [f"note: {n}" for n in doc["notes"]]
    return lines
