"""The single-image design's analysis: from the imported answers to numbers, figures and a report.

"Positive" is synthetic: sensitivity = synthetic images called synthetic (confidence 4-6), specificity = real
images called real (1-3). Per reader: sensitivity, specificity and accuracy with Wilson 95% intervals and the
ROC AUC of the six-point confidence with DeLong's interval. Pooled: the same proportions over all answered
trials (Wilson, which treats trials as independent) and, with the reader-averaged AUC, a two-way bootstrap
interval over readers and images (single_stats.pooled_bootstrap). Groups: detection rate and AUC against the
real images per group; every pair of image sources (real and the groups) compared by a permutation test on the
images' detection rates, Holm over the family. Condition consistency: the share of "yes" per group x value
(Wilson). Agreement: Fleiss' kappa of the real/synthetic calls over the trials every reader answered, and
Cohen's kappa when there are exactly two readers. A mixed-effects logistic model of "called synthetic" (reader
random, group and condition fixed, the readers' years of experience as a covariate when every reader gave it)
where the data allow it, else a stated fallback. The rater questionnaire also gives strata: the figures per
specialty and per experience band. Answers exported as -99 (seen, not answered) are counted and left out; the
free text is listed verbatim. The result is stored in ``single_analyses``.
"""

from __future__ import annotations

import itertools
import json
import math
import secrets
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import numpy as np

from core.errors import CspineError
from core.reader_study import questionnaire, single_stats, statistics
from core.reader_study.groups import describe
from core.reader_study.power import study_power
from core.reader_study.single_pack import load_single_pack
from core.reader_study.single_report import write_report
from core.reader_study.single_responses import load_answers
from core.reader_study.single_spec import CONFIDENCE, SYNTHETIC_FROM, SinglePackSpec
from core.study import Study

Log = Callable[[str], None]


def _prop(k: int, n: int) -> dict[str, Any]:
    return {"k": int(k), "n": int(n), "estimate": (k / n) if n else None,
            "wilson95": list(statistics.wilson_interval(k, n)) if n else [None, None]}


def _accuracy(k: int, n: int) -> dict[str, Any]:
    """Accuracy with the exact two-sided binomial test against 50% (guessing; half the images are real)."""
    return {**_prop(k, n), "binomial_p_vs_half": statistics.binomial_test(k, n, 0.5) if n else None}


def compute(spec: SinglePackSpec, data: dict[str, list[dict]], *, reps: int = 2000, seed: int = 0) -> dict[str, Any]:
    """All statistics of one single-image pack's answers (pure: no database, no files).

    data: single_responses.load_answers' {"raters", "answers", "seen", "comments"}."""
    raters, answers = data["raters"], data["answers"]
    if not raters:
        raise CspineError(f"pack {spec.pack_id} has no imported ratings; import the Qualtrics export with "
                          "`cspine-tui import-ratings`")
    label = {r["id"]: r["label"] for r in raters}
    order = [r["id"] for r in raters]
    items = {i.trial: i for i in spec.items}
    trials = sorted(items)
    col = {t: k for k, t in enumerate(trials)}
    conf = np.full((len(order), len(trials)), np.nan)
    seen = defaultdict(int)
    for u in data["seen"]:
        seen[u["rater_id"]] += 1
    years = {r["id"]: r.get("years_experience") for r in raters}
    cond_answers: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    model_rows = []
    row = {rid: k for k, rid in enumerate(order)}
    confidence_of = {}
    for a in answers:
        item = items.get(a["trial"])
        if item is None:
            continue
        rid = a["rater_id"]
        confidence_of[(rid, a["trial"])] = a["confidence"]
        if a["confidence"] is not None:
            conf[row[rid], col[a["trial"]]] = a["confidence"]
            model_rows.append({"reader": label[rid], "group": item.source, "condition": item.condition,
                               "years": years[rid], "called": int(a["confidence"] >= SYNTHETIC_FROM)})
        if a["condition_answer"] in ("yes", "no") and item.condition is not None:
            cell = cond_answers[(item.source, item.condition)]
            cell[0] += a["condition_answer"] == "yes"
            cell[1] += 1
    free_text = [{"trial": c["trial"], "source": items[c["trial"]].source, "rater": label[c["rater_id"]],
                  "text": c["text"], "confidence": confidence_of.get((c["rater_id"], c["trial"]))}
                 for c in data["comments"] if c["trial"] in items]
    truth = np.array([1 if items[t].image_kind == "synthetic" else 0 for t in trials])
    group = np.array([items[t].source for t in trials])
    valid = ~np.isnan(conf)
    called = valid & (np.nan_to_num(conf) >= SYNTHETIC_FROM)
    sources = ["real", *spec.groups]
    warnings: list[str] = []

    per_reader = []
    for r, rid in enumerate(order):
        v, c = valid[r], called[r]
        syn, real = v & (truth == 1), v & (truth == 0)
        per_reader.append({
            "rater": label[rid], "simulated": bool(raters[r]["simulated"]), "answered": int(v.sum()),
            "specialty": raters[r].get("specialty_other") if raters[r].get("specialty") == "Other"
            else raters[r].get("specialty"), "years": years[rid],
            "seen_unanswered": seen[rid],
            "sensitivity": _prop(int((c & syn).sum()), int(syn.sum())),
            "specificity": _prop(int((~c & real).sum()), int(real.sum())),
            "accuracy": _accuracy(int((c & syn).sum() + (~c & real).sum()), int(v.sum())),
            "auc": single_stats.delong(conf[r, syn], conf[r, real]),
            "flags": json.loads(raters[r]["flags"]) if raters[r].get("flags") else {}})

    boot = single_stats.pooled_bootstrap(conf, truth, group, spec.groups, synthetic_from=SYNTHETIC_FROM,
                                         reps=reps, seed=seed)
    syn_all, real_all = valid & (truth == 1), valid & (truth == 0)
    pooled = {
        "sensitivity": {**_prop(int((called & syn_all).sum()), int(syn_all.sum())),
                        "bootstrap95": boot["ci95"]["sensitivity"]},
        "specificity": {**_prop(int((~called & real_all).sum()), int(real_all.sum())),
                        "bootstrap95": boot["ci95"]["specificity"]},
        "accuracy": {**_accuracy(int((called & syn_all).sum() + (~called & real_all).sum()), int(valid.sum())),
                     "bootstrap95": boot["ci95"]["accuracy"]},
        "auc": {"estimate": boot["estimate"]["auc"], "bootstrap95": boot["ci95"]["auc"],
                "what": "mean of the readers' AUCs"},
    }

    # Per image: the share of its readers who called it synthetic (the unit the group tests permute).
    answered = valid.sum(axis=0)
    detection = np.divide(called.sum(axis=0), answered, out=np.full(len(trials), np.nan), where=answered > 0)
    per_group = []
    for g in sources:
        cols = group == g
        k, n = int(called[:, cols].sum()), int(valid[:, cols].sum())
        entry = {"group": g, "images": int(cols.sum()), "answers": n, "called_synthetic": _prop(k, n)}
        if g == "real":  # real images called synthetic = 1 - specificity
            entry["called_synthetic"]["bootstrap95"] = [1 - x for x in boot["ci95"]["specificity"][::-1]]
        else:
            entry["auc_vs_real"] = {"estimate": boot["estimate"][f"auc:{g}"], "bootstrap95": boot["ci95"][f"auc:{g}"]}
            entry["called_synthetic"]["bootstrap95"] = boot["ci95"][f"sensitivity:{g}"]
        per_group.append(entry)
    comparisons = []
    for a, b in itertools.combinations(sources, 2):
        test = single_stats.permutation_test(detection[group == a], detection[group == b], seed=seed)
        comparisons.append({"a": a, "b": b, **test})
    for c, p in zip(comparisons, statistics.holm([c["p"] for c in comparisons])):
        c["p_holm"] = p

    conditions = [{"group": g, "value": v, "yes": y, "answers": n, **_prop(y, n)}
                  for (g, v), (y, n) in sorted(cond_answers.items(), key=lambda kv: (sources.index(kv[0][0])
                                                                                    if kv[0][0] in sources else 99,
                                                                                    kv[0][1]))]

    full = [k for k in range(len(trials)) if valid[:, k].all()]
    fleiss = None
    if len(order) >= 2 and full:
        table, _ = statistics.category_table([["synthetic" if called[r, k] else "real" for r in range(len(order))]
                                              for k in full], categories=["real", "synthetic"])
        fleiss = statistics.fleiss_kappa(table, categories=["real", "synthetic"]).as_dict()
        if len(full) < len(trials):
            warnings.append(f"Fleiss' kappa uses the {len(full)} of {len(trials)} images every reader answered")
    else:
        warnings.append("Fleiss' kappa needs at least two readers who answered the same images")
    cohen = None
    if len(order) == 2 and full:
        cohen = {"raters": [label[order[0]], label[order[1]]], "images": len(full),
                 "kappa": single_stats.cohen_kappa([bool(called[0, k]) for k in full],
                                                   [bool(called[1, k]) for k in full])}

    model = single_stats.logistic_model(model_rows, use_condition=spec.condition_attribute is not None,
                                        use_years=all(years[rid] is not None for rid in order))
    if model["method"] == "none" or model["method"].startswith("GLM"):
        warnings.append(f"logistic model: {model['why']}")
    if sum(seen.values()):
        warnings.append(f"{sum(seen.values())} answers were seen but not answered (-99); left out of every statistic")

    return {
        "design": "single", "pack_id": spec.pack_id, "n_raters": len(order), "n_images": len(trials),
        "n_answers": int(valid.sum()), "seen_unanswered": int(sum(seen.values())), "groups": spec.groups,
        "sources": sources, "condition_attribute": spec.condition_attribute, "synthetic_from": SYNTHETIC_FROM,
        "scale": {str(k): v for k, v in CONFIDENCE.items()}, "pooled": pooled, "per_group": per_group,
        "group_comparisons": comparisons, "per_reader": per_reader, "conditions": conditions,
        "strata": _strata(per_reader),
        "fleiss_kappa": fleiss, "cohen_kappa": cohen, "model": model,
        "free_text": sorted(free_text, key=lambda f: (f["trial"], f["rater"])),
        "bootstrap": {"reps": reps, "seed": seed}, "permutation": {"reps": 9999, "seed": seed},
        "simulated_raters": sum(1 for r in raters if r["simulated"]), "warnings": warnings,
        # for the figures; dropped before storing
        "_conf": conf, "_truth": truth, "_group": group,
    }


def _strata(per_reader: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The readers' figures per specialty and per experience band (from the rater questionnaire)."""
    out = []
    for by, key in (("specialty", lambda x: x["specialty"] or "not given"),
                    ("experience", lambda x: questionnaire.years_band(x["years"]))):
        cells: dict[str, list[dict]] = defaultdict(list)
        for x in per_reader:
            cells[key(x)].append(x)
        for value, xs in sorted(cells.items()):
            entry = {"by": by, "value": value, "readers": len(xs)}
            for m in ("sensitivity", "specificity", "accuracy"):
                entry[m] = _prop(sum(x[m]["k"] for x in xs), sum(x[m]["n"] for x in xs))
            aucs = [x["auc"]["auc"] for x in xs if x["auc"]["auc"] is not None and not math.isnan(x["auc"]["auc"])]
            entry["mean_auc"] = float(np.mean(aucs)) if aucs else None
            out.append(entry)
    return out


def analyze_single(study: Study, pack: str | Path | None = None, *, report_dir: Path | str | None = None,
                   include_simulated: bool = True, reps: int = 2000, seed: int = 0,
                   log: Log | None = None) -> dict[str, Any]:
    """Analyse a single-image pack's imported answers, write the figures and the report, record the analysis."""
    log = log or (lambda _m: None)
    spec = load_single_pack(study, pack)  # a pack edited by hand since export is refused
    data = load_answers(study, spec.pack_id, include_simulated)
    result = _finite(compute(spec, data, reps=reps, seed=seed))
    analysis_id = f"analysis-{datetime.now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    out = Path(report_dir).expanduser() if report_dir else study.exports_dir / f"report-{analysis_id}"
    if out.exists() and any(out.iterdir()):
        raise CspineError(f"report folder {out} exists and is not empty; choose a new --report folder")
    out.mkdir(parents=True, exist_ok=True)
    result.update(analysis_id=analysis_id, created_at=datetime.now().isoformat(timespec="seconds"),
                  study=str(study.root.resolve()))
    result["power"] = study_power(result, study.settings.get("plan"))  # docs/guide/planning.md
    result["figures"] = _figures(result, out)
    log(f"figures written to {out}")
    result["report"] = write_report(result, spec, out)
    stored = {k: v for k, v in result.items() if not k.startswith("_")}
    params = {"include_simulated": include_simulated, "reps": reps, "seed": seed}
    study.store.execute("INSERT INTO single_analyses (id, pack_id, params, result, report_dir) VALUES (?, ?, ?, ?, ?)",
                        [analysis_id, spec.pack_id, json.dumps(params), json.dumps(stored, default=str), str(out)])
    (out / "analysis.json").write_text(json.dumps(stored, indent=1, default=str))
    log(f"report: {result['report']['html']}")
    return stored


def _figures(result: dict[str, Any], out: Path) -> dict[str, str]:
    conf, truth, group = result["_conf"], result["_truth"], result["_group"]
    sim = " (SIMULATED readers)" if result["simulated_raters"] else ""
    notes = {describe(g["group"]): f"AUC vs real {statistics.fmt(g['auc_vs_real']['estimate'])}"
             for g in result["per_group"] if g.get("auc_vs_real") and g["auc_vs_real"]["estimate"] is not None}
    data = {describe(g): conf[:, group == g][~np.isnan(conf[:, group == g])].tolist() for g in result["sources"]}
    png, svg = statistics.violin_plot(data, out / "confidence_violins", ylim=(0.5, 6.9), annotations=notes,
                                      title=f"Confidence 1 = certainly real ... 6 = certainly synthetic{sim}",
                                      ylabel="confidence (all answers)", points=False)
    roc_png, roc_svg = _roc_plot(conf, truth, group, result["groups"], out / "roc", sim)
    return {"violins_png": png.name, "violins_svg": svg.name, "roc_png": roc_png.name, "roc_svg": roc_svg.name}


def _roc_plot(conf: np.ndarray, truth: np.ndarray, group: np.ndarray, groups: list[str], base: Path,
              sim: str) -> tuple[Path, Path]:
    """Empirical ROC curves of all answers pooled, each group against the real images."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    matplotlib.rcParams["svg.hashsalt"] = "cspine-tui"  # deterministic SVG ids
    fig, ax = plt.subplots(figsize=(4.6, 4.4), dpi=150)
    neg = conf[:, truth == 0]
    neg = neg[~np.isnan(neg)]
    for g in groups:
        pos = conf[:, group == g]
        pos = pos[~np.isnan(pos)]
        if pos.size and neg.size:
            pts = single_stats.roc_points(pos, neg, list(CONFIDENCE))
            ax.plot(*zip(*pts), marker="o", markersize=3,
                    label=f"{describe(g)} (pooled AUC {statistics.fmt(single_stats.auc(pos, neg))})")
    ax.plot([0, 1], [0, 1], color="#999999", linestyle="--", linewidth=1, label="chance")
    ax.set_xlabel("real images called synthetic (1 - specificity)")
    ax.set_ylabel("synthetic images called synthetic (sensitivity)")
    ax.set_title(f"ROC of the confidence scale{sim}", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    fig.tight_layout()
    png, svg = base.with_suffix(".png"), base.with_suffix(".svg")
    fig.savefig(png, metadata={"Software": None})
    fig.savefig(svg, metadata={"Date": None, "Creator": None})
    plt.close(fig)
    return png, svg


def _finite(value: Any) -> Any:
    """NaN becomes None (valid JSON); arrays for the figures pass through."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: (v if k.startswith("_") else _finite(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def latest_single_analysis(study: Study, pack_id: str | None = None) -> dict[str, Any] | None:
    row = study.store.query_one("SELECT id, result, report_dir FROM single_analyses "
                                + ("WHERE pack_id = ? " if pack_id else "") + "ORDER BY created_at DESC, id DESC",
                                [pack_id] if pack_id else None)
    return None if row is None else {**json.loads(row["result"]), "report_dir": row["report_dir"]}
