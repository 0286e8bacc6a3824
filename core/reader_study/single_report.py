"""The single-image design's report: Markdown and HTML with the figures, the tables, the readers' free text
verbatim, and a methods paragraph filled in with the study's numbers (the quartet report's style and helpers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.reader_study.report import _e, _pct, _table, _versions, write_markdown_html
from core.reader_study.groups import describe
from core.reader_study.power import power_lines
from core.reader_study.single_spec import SinglePackSpec
from core.reader_study.statistics import fmt, fmt_p


def _ci(pair: list | None, pct: bool = True) -> str:
    if not pair or pair[0] is None:
        return "n/a"
    f = _pct if pct else fmt
    return f"{f(pair[0])} to {f(pair[1])}"


def _prop_cells(p: dict[str, Any]) -> list[str]:
    return [f"{_pct(p['estimate'])} ({p['k']}/{p['n']})", _ci(p["wilson95"])]


def methods_paragraph(r: dict[str, Any], spec: SinglePackSpec) -> str:
    real = sum(i.image_kind == "real" for i in spec.items)
    order = "a random order per reader" if spec.shuffle_pages else "the same order for every reader"
    sim = f" ({r['simulated_raters']} of them SIMULATED, not human readers)" if r["simulated_raters"] else ""
    cond = (f" Under each image that carried a value of {spec.condition_attribute!r}, readers were asked whether the "
            "image showed it (yes/no); consistency is the share of yes answers per group and value, with Wilson "
            "95% intervals." if spec.condition_attribute else "")
    model = r["model"]
    modelled = (f" The call 'synthetic' was not modelled: {model.get('why', '')}." if model.get("method") == "none"
                else f" The call 'synthetic' was modelled by {model['method']} ({model.get('why', '')}).")
    years = (" The readers' specialty and years of experience came from a questionnaire on the first page; the "
             "figures are also given per specialty and per experience band." if spec.questionnaire else "")
    return (
        f"{r['n_raters']} readers{sim} judged {r['n_images']} single images ({real} real, the others synthetic "
        f"from {', '.join(map(describe, spec.groups))}), one per page in {order} (seed {spec.seed}), blinded by "
        "identical re-encoding and opaque file names. For each image they answered whether it was real or "
        "synthetic on a six-point confidence scale (1 = certainly real to 6 = certainly synthetic); answers 4-6 "
        "count as the call 'synthetic'. Sensitivity is the share of synthetic images called synthetic, "
        "specificity the share of real images called real, accuracy the share of correct calls (tested against "
        "50% with the exact two-sided binomial test); per reader with Wilson 95% intervals, pooled over "
        "readers with Wilson intervals (trials treated as independent) and with percentile intervals of a two-way "
        f"bootstrap ({r['bootstrap']['reps']} resamples of readers and of images within real and within each "
        "group). The ROC AUC of the confidence scale is the Mann-Whitney probability that a synthetic image is "
        "rated higher than a real one (ties count one half), per reader with DeLong's variance and pooled as the "
        "mean of the readers' AUCs with the bootstrap interval. Image sources were compared pairwise by two-sided "
        f"permutation tests ({r['permutation']['reps']} permutations) of the images' detection rates (share of "
        "readers calling the image synthetic), with Holm's correction over all pairs. Agreement on the calls is "
        "Fleiss' kappa over the images every reader answered (and Cohen's kappa for two readers)."
        + cond + modelled + years
        + f" Answers exported as -99 (seen, not answered; {r['seen_unanswered']} in all) were counted and left out. "
        f"The analysis was run with cspine-tui ({_versions()})."
    )


def build_markdown(r: dict[str, Any], spec: SinglePackSpec) -> str:
    out = [f"# Single-image reader study report ({spec.pack_id})", ""]
    if r["simulated_raters"]:
        out += [f"> **SIMULATED DATA.** {r['simulated_raters']} of {r['n_raters']} readers are simulated "
                "(labelled `simulated-rater-N`). These numbers describe no human reader; they show that the "
                "pipeline runs end to end.", ""]
    out += [f"Analysis `{r['analysis_id']}` of {r['created_at']}; pack built with seed {spec.seed} from "
            f"{', '.join(map(describe, spec.groups))}; study `{r['study']}`.", "", "## Summary", ""]
    p = r["pooled"]
    out += [_table(["measure (synthetic = positive)", "pooled", "Wilson 95% CI", "bootstrap 95% CI"], [
        ["readers / images / answers", f"{r['n_raters']} / {r['n_images']} / {r['n_answers']}", "-", "-"],
        ["seen, not answered (-99)", r["seen_unanswered"], "-", "-"],
        ["sensitivity", *_prop_cells(p["sensitivity"]), _ci(p["sensitivity"]["bootstrap95"])],
        ["specificity", *_prop_cells(p["specificity"]), _ci(p["specificity"]["bootstrap95"])],
        ["accuracy", *_prop_cells(p["accuracy"]), _ci(p["accuracy"]["bootstrap95"])],
        ["binomial p, accuracy vs 50%", fmt_p(p["accuracy"]["binomial_p_vs_half"]), "-", "-"],
        ["ROC AUC (mean of readers)", fmt(p["auc"]["estimate"]), "-", _ci(p["auc"]["bootstrap95"], pct=False)],
    ]), ""]
    out += ["## Groups", "", "Share of each source's answers that called the image synthetic (for real images "
            "this is 1 - specificity) and the readers' mean AUC of the group against the real images:", "",
            _table(["source", "images", "called synthetic", "Wilson 95% CI", "bootstrap 95% CI", "AUC vs real",
                    "AUC bootstrap 95% CI"],
                   [[describe(g["group"]), g["images"], *_prop_cells(g["called_synthetic"]),
                     _ci(g["called_synthetic"].get("bootstrap95")),
                     fmt(g["auc_vs_real"]["estimate"]) if g.get("auc_vs_real") else "-",
                     _ci(g["auc_vs_real"]["bootstrap95"], pct=False) if g.get("auc_vs_real") else "-"]
                    for g in r["per_group"]]), ""]
    out += ["Every pair of sources, two-sided permutation test of the images' detection rates, Holm over the "
            "family:", "", _table(["comparison", "images", "mean detection", "difference", "p", "Holm p"], [
                [f"{describe(c['a'])} vs {describe(c['b'])}", f"{c['n_a']} / {c['n_b']}",
                 f"{_pct(c['mean_a'])} / {_pct(c['mean_b'])}", fmt(c["difference"]),
                 fmt_p(c["p"]), fmt_p(c["p_holm"])] for c in r["group_comparisons"]]), ""]
    out += ["## Readers", "", _table(
        ["reader", "specialty", "years", "answered", "-99", "sensitivity", "specificity", "accuracy",
         "p vs 50%", "AUC (DeLong 95% CI)", "notes"],
        [[x["rater"] + (" (simulated)" if x["simulated"] else ""), x["specialty"] or "-",
          "-" if x["years"] is None else x["years"], x["answered"], x["seen_unanswered"],
          f"{_pct(x['sensitivity']['estimate'])} ({_ci(x['sensitivity']['wilson95'])})",
          f"{_pct(x['specificity']['estimate'])} ({_ci(x['specificity']['wilson95'])})",
          f"{_pct(x['accuracy']['estimate'])} ({_ci(x['accuracy']['wilson95'])})",
          fmt_p(x["accuracy"]["binomial_p_vs_half"]),
          f"{fmt(x['auc']['auc'])} ({_ci(x['auc']['ci95'], pct=False)})",
          "; ".join(f"{k}: {v}" for k, v in x["flags"].items()) or "-"] for x in r["per_reader"]]), ""]
    out += ["Per specialty and per experience band (the rater questionnaire; answers pooled within the stratum, "
            "Wilson 95% intervals; the AUC is the mean of the stratum's readers):", "", _table(
                ["stratum", "readers", "sensitivity", "specificity", "accuracy", "mean AUC"],
                [[f"{s['by']}: {s['value']}", s["readers"],
                  *[f"{_pct(s[m]['estimate'])} ({_ci(s[m]['wilson95'])})" for m in ("sensitivity", "specificity",
                                                                                    "accuracy")],
                  fmt(s["mean_auc"])] for s in r["strata"]]), ""]
    fk, ck = r["fleiss_kappa"], r["cohen_kappa"]
    out += ["## Agreement", "", _table(["measure", "value", "details"], [
        ["Fleiss' kappa (real/synthetic calls)", fmt(fk["kappa"]) if fk else "n/a",
         f"{fk['n_subjects']} images x {fk['n_raters']} readers; z = {fmt(fk['z'], 2)}, p = {fmt_p(fk['p_value'])}"
         if fk else "needs two readers"],
        ["Cohen's kappa", fmt(ck["kappa"]) if ck else "n/a",
         f"{' vs '.join(ck['raters'])}, {ck['images']} images" if ck else "only with exactly two readers"]]), ""]
    if r["conditions"]:
        out += [f"## Condition consistency ({_e(spec.condition_attribute)})", "", _table(
            ["source", "value", "yes / answers", "share yes", "Wilson 95% CI"],
            [[describe(c["group"]), c["value"], f"{c['yes']}/{c['answers']}", _pct(c["estimate"]), _ci(c["wilson95"])]
             for c in r["conditions"]]), ""]
    m = r["model"]
    out += ["## Logistic model of the call 'synthetic'", "", f"{_e(m.get('method'))}: `{m.get('formula', '-')}`. "
            f"{_e(m.get('why', ''))}." + (f" Reader SD (log odds) {fmt(m['reader_sd'])}." if "reader_sd" in m else ""),
            ""]
    if m["effects"]:
        out += [_table(["term", "log odds", "SE", "odds ratio", "95% interval", "z (approx.)"],
                       [[e["term"], fmt(e["log_odds"]), fmt(e["se"]), fmt(e["odds_ratio"]),
                         _ci(e["ci95"], pct=False), fmt(e["z"], 2)] for e in m["effects"]]),
                "", f"Interval: {m.get('interval', '')}.", ""]
    figs = r["figures"]
    out += [f"![Confidence per source]({figs['violins_png']})", "", f"![ROC per group]({figs['roc_png']})", ""]
    if r["free_text"]:
        out += ["## What gave it away? (free text, verbatim)", "", _table(
            ["image", "source", "reader", "confidence", "text"],
            [[f["trial"], describe(f["source"]), f["rater"], f["confidence"] if f["confidence"] is not None else "-",
              f["text"]] for f in r["free_text"]]), ""]
    out += ["## Methods", "", methods_paragraph(r, spec), ""]
    out += power_lines(r["power"]) if r.get("power") else []  # the power the study had (core/reader_study/power.py)
    if r["warnings"]:
        out += ["## Notes", ""] + [f"- {_e(w)}" for w in r["warnings"]] + [""]
    return "\n".join(out)


def write_report(r: dict[str, Any], spec: SinglePackSpec, out: Path) -> dict[str, str]:
    figs = r["figures"]
    return write_markdown_html(build_markdown(r, spec), out, f"Single-image reader study report {spec.pack_id}",
                               {figs["violins_png"]: figs["violins_svg"], figs["roc_png"]: figs["roc_svg"]})
