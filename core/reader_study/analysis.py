"""The reader study's analysis (paper section 2.6): from the imported ratings to numbers, figures and a report.

- identification accuracy over all trials and per rater (Wilson 95% CI, exact binomial test vs 25 %);
- Fleiss' kappa of the identification answers over the quartets every rater answered, coded by the chosen
  image's source (default), by screen position, or as correct/incorrect (all three are reported; the paper
  does not say which it used);
- per-rater mean realism per group (real and each group: a checkpoint, a sampling run or an external set,
  core/reader_study/groups.py) as exact fractions of integer sums;
- paired two-sided Wilcoxon signed-rank tests real vs each group, R < 4.6 semantics, Holm over those three
  (the paper's family); and every pair of the four groups, Holm over the six (the generator comparison);
- per group: ratings, mean realism, how often its image was chosen as the real one (Wilson CI, binomial vs 25%);
- the rater questionnaire as strata (per specialty, per experience band) and as a covariate (Spearman of years
  of experience against accuracy); answers seen but not given (Qualtrics -99) counted; free text verbatim;
- violin plots of the per-rater means and of all ratings; a Markdown + HTML report (core/reader_study/report.py).
The result is stored in the ``analyses`` table.
"""

from __future__ import annotations

import json
import secrets
from collections import Counter, defaultdict
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

from core.reader_study import groups as group_sources
from core.reader_study import statistics
from core.reader_study.questionnaire import YEAR_BANDS, years_band
from core.errors import CspineError
from core.study import Study
from core.reader_study.spec import LETTERS, PackSpec
from core.reader_study.power import study_power
from core.reader_study.report import write_report

KAPPA_CODINGS = ("source", "position", "correct")
BAND_ORDER = [name for _, name in YEAR_BANDS] + ["not given"]
Log = Callable[[str], None]


def _load(study: Study, spec: PackSpec, include_simulated: bool) -> tuple[list[dict], ...]:
    """raters, picks, ratings, seen-but-unanswered answers (-99) and free-text comments of the pack."""
    with study.store.connect() as tx:
        raters = tx.query("SELECT id, label, simulated, flags, response_id, specialty, specialty_other, "
                          "years_experience FROM raters WHERE pack_id = ? "
                          + ("" if include_simulated else "AND NOT simulated ") + "ORDER BY label, id",
                          [spec.pack_id])
        ids = [r["id"] for r in raters]
        tables = [tx.query(sql, [spec.pack_id]) for sql in (
            "SELECT rater_id, quartet, chosen_position FROM identifications WHERE pack_id = ?",
            "SELECT rater_id, quartet, position, rating FROM ratings WHERE pack_id = ?",
            "SELECT rater_id, trial, question FROM seen_unanswered WHERE pack_id = ? ORDER BY rater_id, trial",
            "SELECT rater_id, trial, text FROM trial_comments WHERE pack_id = ? ORDER BY trial, rater_id")]
    keep = set(ids)
    return (raters, *[[row for row in rows if row["rater_id"] in keep] for rows in tables])


def compute(spec: PackSpec, raters: list[dict], picks: list[dict], ratings: list[dict], *,
            kappa_coding: str = "source", unanswered: list[dict] | None = None,
            comments: list[dict] | None = None) -> dict[str, Any]:
    """All statistics of one pack's ratings (pure: no database, no files).

    `raters` rows may carry the questionnaire (specialty, years_experience); `unanswered` are the answers a
    Qualtrics -99 marked as seen but not given; `comments` the free text per trial, kept verbatim.
    """
    if kappa_coding not in KAPPA_CODINGS:
        raise CspineError(f"unknown kappa coding {kappa_coding!r}; use one of {', '.join(KAPPA_CODINGS)}")
    if not raters:
        raise CspineError(f"pack {spec.pack_id} has no imported ratings; import the Qualtrics export with "
                          "`cspine-tui import-ratings`")
    source = {(i.quartet, i.position): i.source for i in spec.items}
    real_pos = {i.quartet: i.position for i in spec.items if i.source == "real"}
    label = {r["id"]: r["label"] for r in raters}
    groups = ["real", *spec.checkpoints]
    warnings: list[str] = []

    # Identification.
    correct_by: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    chosen_source = Counter()
    per_quartet: dict[int, Counter] = defaultdict(Counter)
    answers: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
    for p in picks:
        q, pos, rid = p["quartet"], p["chosen_position"], p["rater_id"]
        ok = pos == real_pos[q]
        correct_by[rid][0] += ok
        correct_by[rid][1] += 1
        src = source[(q, pos)]
        chosen_source[src] += 1
        per_quartet[q][src] += 1
        answers[q][rid] = {"source": src, "position": LETTERS[pos - 1], "correct": "correct" if ok else "incorrect"}
    k = sum(c for c, _ in correct_by.values())
    n = sum(t for _, t in correct_by.values())
    overall = statistics.proportion(k, n)
    per_rater = []
    for r in raters:
        c, t = correct_by.get(r["id"], [0, 0])
        pr = statistics.proportion(c, t)
        per_rater.append({"rater": r["label"], "simulated": bool(r["simulated"]), "trials": t, "correct": c,
                          "accuracy": pr.estimate, "ci95": list(pr.ci95), "binomial_p": pr.p_vs_chance,
                          "flags": json.loads(r["flags"]) if r.get("flags") else {}})

    # Fleiss' kappa over quartets answered by every rater (Fleiss needs equal raters per subject).
    full = [q for q in sorted(answers) if len(answers[q]) == len(raters)]
    kappas: dict[str, dict[str, Any] | None] = {}
    cats = {"source": groups, "position": list(LETTERS), "correct": ["correct", "incorrect"]}
    for coding in KAPPA_CODINGS:
        if len(raters) < 2 or not full:
            kappas[coding] = None
            continue
        table, _ = statistics.category_table([[answers[q][rid][coding] for rid in sorted(answers[q])] for q in full],
                                        categories=cats[coding])
        kappas[coding] = statistics.fleiss_kappa(table, categories=cats[coding]).as_dict()
    if len(raters) < 2:
        warnings.append("Fleiss' kappa needs at least two raters")
    elif len(full) < spec.count:
        warnings.append(f"Fleiss' kappa uses the {len(full)} of {spec.count} quartets answered by every rater")

    # Realism ratings.
    rows = [(r["rater_id"], source[(r["quartet"], r["position"])], r["rating"]) for r in ratings]
    sums = statistics.rating_sums(rows)
    means = statistics.per_rater_means(sums)
    overall_means = statistics.group_means(sums)
    tests = statistics.compare_groups(means, "real", spec.checkpoints) if ratings else []
    for t in tests:
        if t.get("warning"):
            warnings.append(f"Wilcoxon real vs {t['group']}: {t['warning']} (normal approximation, as R < 4.6)")
    pairs = statistics.compare_pairs(means, groups) if ratings else []
    per_group = []
    for g in groups:
        chosen = statistics.proportion(chosen_source.get(g, 0), n)
        per_group.append({"group": g, "label": group_sources.label(g), "kind": group_sources.kind_of(g),
                          "ratings": sum(c for rs in sums.values() for gg, (_, c) in rs.items() if gg == g),
                          "mean_realism": float(overall_means[g]) if g in overall_means else None,
                          "raters": sum(1 for m in means.values() if g in m),
                          "chosen_as_real": chosen.k, "chosen_share": chosen.estimate,
                          "chosen_ci95": list(chosen.ci95), "chosen_binomial_p": chosen.p_vs_chance})

    described = describe_raters(raters, correct_by, sums, groups)
    unanswered = unanswered or []
    if unanswered:
        warnings.append(f"{len(unanswered)} answers were seen but not given (Qualtrics -99); they are counted, "
                        "not scored")
    missing = Counter(u["rater_id"] for u in unanswered)
    for row, r in zip(per_rater, raters):
        row.update({"specialty": r.get("specialty"), "specialty_other": r.get("specialty_other"),
                    "years": r.get("years_experience"), "seen_unanswered": missing.get(r["id"], 0)})
    verbatim = []
    for c in comments or []:
        answer = answers.get(c["trial"], {}).get(c["rater_id"])
        verbatim.append({"trial": c["trial"], "rater": label[c["rater_id"]], "text": c["text"],
                         "chose": answer["source"] if answer else None,
                         "correct": answer["correct"] == "correct" if answer else None})

    return {
        "pack_id": spec.pack_id,
        "n_raters": len(raters),
        "n_quartets": spec.count,
        "n_trials": n,
        "n_correct": k,
        "accuracy": overall.estimate,
        "accuracy_ci95": list(overall.ci95),
        "binomial_p_vs_chance": overall.p_vs_chance,
        "fleiss_kappa": (kappas[kappa_coding] or {}).get("kappa"),
        "kappa_coding": kappa_coding,
        "fleiss_kappa_by_coding": kappas,
        "kappa_quartets": len(full),
        "mean_realism": {g: float(overall_means[g]) for g in groups if g in overall_means},
        "mean_realism_exact": {g: f"{overall_means[g].numerator}/{overall_means[g].denominator}"
                               for g in groups if g in overall_means},
        "n_ratings": {g: sum(c for rs in sums.values() for gg, (_, c) in rs.items() if gg == g) for g in groups},
        "wilcoxon": tests,
        "pairwise": pairs,
        "per_group": per_group,
        "group_labels": {g: group_sources.label(g) for g in groups},
        "by_specialty": described["by_specialty"],
        "by_experience": described["by_experience"],
        "experience_vs_accuracy": described["experience_vs_accuracy"],
        "seen_unanswered": {"total": len(unanswered),
                            "by_question": dict(Counter(_question_kind(u["question"]) for u in unanswered)),
                            "per_rater": {label[rid]: k for rid, k in missing.items()}},
        "comments": verbatim,
        "per_rater": per_rater,
        "per_rater_means": {label[rid]: {g: float(v) for g, v in gm.items()} for rid, gm in means.items()},
        "per_rater_means_exact": {label[rid]: {g: f"{v.numerator}/{v.denominator}" for g, v in gm.items()}
                                  for rid, gm in means.items()},
        "chosen_as_real": {g: chosen_source.get(g, 0) for g in groups},
        "per_quartet": [{"quartet": q, "answers": sum(per_quartet[q].values()),
                         "correct": per_quartet[q].get("real", 0),
                         "chosen": {g: per_quartet[q].get(g, 0) for g in groups}} for q in sorted(per_quartet)],
        "groups": groups,
        "simulated_raters": sum(1 for r in raters if r["simulated"]),
        "warnings": warnings,
        # for the figures; dropped before storing
        "_means": means, "_rating_lists": {g: [float(v) for _, gg, v in rows if gg == g] for g in groups},
    }


def _question_kind(question: str) -> str:
    """pick | rating | questionnaire (the seen_unanswered table's question, grouped for the report)."""
    if question.startswith("rate_"):
        return "rating"
    if question.startswith("rater_"):
        return "questionnaire"
    return question


def _stratum(name: str, ids: list[str], correct_by: dict[str, list[int]],
             sums: dict[Any, dict[str, tuple[int, int]]], groups: list[str]) -> dict[str, Any]:
    k = sum(correct_by.get(i, [0, 0])[0] for i in ids)
    n = sum(correct_by.get(i, [0, 0])[1] for i in ids)
    pr = statistics.proportion(k, n)
    pooled = statistics.group_means({i: sums[i] for i in ids if i in sums})
    return {"stratum": name, "raters": len(ids), "trials": n, "correct": k, "accuracy": pr.estimate,
            "ci95": list(pr.ci95), "mean_realism": {g: float(pooled[g]) for g in groups if g in pooled}}


def describe_raters(raters: list[dict], correct_by: dict[str, list[int]],
                    sums: dict[Any, dict[str, tuple[int, int]]], groups: list[str]) -> dict[str, Any]:
    """The questionnaire as strata (per specialty, per experience band) and as a covariate (years vs accuracy).

    A stratum's interval treats its trials as independent (a rater's trials are not), so it is descriptive.
    """
    specialty: dict[str, list[str]] = defaultdict(list)
    band: dict[str, list[str]] = defaultdict(list)
    for r in raters:
        specialty[r.get("specialty") or "not given"].append(r["id"])
        band[years_band(r.get("years_experience"))].append(r["id"])
    pairs = [(r["years_experience"], correct_by[r["id"]][0] / correct_by[r["id"]][1]) for r in raters
             if r.get("years_experience") is not None and correct_by.get(r["id"], [0, 0])[1]]
    return {"by_specialty": [_stratum(k, v, correct_by, sums, groups) for k, v in sorted(specialty.items())],
            "by_experience": [_stratum(k, band[k], correct_by, sums, groups) for k in BAND_ORDER if k in band],
            "experience_vs_accuracy": statistics.spearman([p[0] for p in pairs], [p[1] for p in pairs])}


def analyze(study: Study, pack: str | Path | None = None, *, kappa_coding: str = "source",
            report_dir: Path | str | None = None, include_simulated: bool = True,
            log: Log | None = None) -> dict[str, Any]:
    """Analyse a pack's imported ratings, write the figures and the report, record the analysis."""
    from core.reader_study.pack import load_checked_pack  # imported on use: loads numpy, PIL (start-up cost)

    log = log or (lambda _m: None)
    spec = load_checked_pack(study, pack)  # a pack edited by hand since export is refused
    raters, picks, ratings, unanswered, comments = _load(study, spec, include_simulated)
    result = _finite(compute(spec, raters, picks, ratings, kappa_coding=kappa_coding, unanswered=unanswered,
                             comments=comments))
    analysis_id = f"analysis-{datetime.now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    out = Path(report_dir).expanduser() if report_dir else study.exports_dir / f"report-{analysis_id}"
    if out.exists() and any(out.iterdir()):
        raise CspineError(f"report folder {out} exists and is not empty; choose a new --report folder")
    out.mkdir(parents=True, exist_ok=True)
    result["analysis_id"] = analysis_id
    result["created_at"] = datetime.now().isoformat(timespec="seconds")
    result["study"] = str(study.root.resolve())
    result["power"] = study_power(result, study.settings.get("plan"))  # docs/guide/planning.md
    result["figures"] = _figures(result, spec, out)
    log(f"figures written to {out}")
    report = write_report(result, spec, out)
    result["report"] = report
    stored = {k: v for k, v in result.items() if not k.startswith("_")}
    params = {"kappa_coding": kappa_coding, "include_simulated": include_simulated}
    study.store.execute("INSERT INTO analyses (id, pack_id, params, result, report_dir) VALUES (?, ?, ?, ?, ?)",
                        [analysis_id, spec.pack_id, json.dumps(params), json.dumps(stored, default=str), str(out)])
    (out / "analysis.json").write_text(json.dumps(stored, indent=1, default=str))
    log(f"report: {report['html']}")
    return stored


def _figures(result: dict[str, Any], spec: PackSpec, out: Path) -> dict[str, str]:
    groups = result["groups"]
    means: dict[str, dict[str, Fraction]] = result["_means"]
    names = {g: group_sources.label(g) for g in groups}
    notes = {names[t["group"]]: f"Holm p = {statistics.fmt_p(t['p_holm'])}" for t in result["wilcoxon"]}
    sim = " (SIMULATED raters)" if result["simulated_raters"] else ""
    png, svg = statistics.violin_plot({names[g]: [float(m[g]) for m in means.values() if g in m] for g in groups},
                                 out / "realism_rater_means",
                                 title=f"Per-rater mean realism, {result['n_raters']} raters{sim}",
                                 ylabel="mean realism rating (1-4)", annotations=notes)
    png2, svg2 = statistics.violin_plot({names[g]: result["_rating_lists"].get(g, []) for g in groups},
                                   out / "realism_all_ratings", title=f"All realism ratings{sim}",
                                   ylabel="realism rating (1-4)", annotations=notes, points=False)
    return {"rater_means_png": png.name, "rater_means_svg": svg.name, "ratings_png": png2.name,
            "ratings_svg": svg2.name}


def _finite(value: Any) -> Any:
    """NaN (e.g. R's NA p-value when all differences are zero) becomes None, so the result is valid JSON."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def latest_analysis(study: Study, pack_id: str | None = None) -> dict[str, Any] | None:
    row = study.store.query_one("SELECT id, result, report_dir, created_at FROM analyses "
                                + ("WHERE pack_id = ? " if pack_id else "") + "ORDER BY created_at DESC, id DESC",
                                [pack_id] if pack_id else None)
    if row is None:
        return None
    return {**json.loads(row["result"]), "report_dir": row["report_dir"]}
