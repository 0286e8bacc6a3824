"""The reader-study report: Markdown and HTML with the figures, the tables and a filled-in methods paragraph.

Numbers are shown rounded half-up from their exact values (the paper's convention: 3.3225 -> 3.323), p-values
to three decimals. The paper's published values are shown beside this study's for orientation; its three
checkpoints are matched to this study's in order (first, second, third). Simulated raters are announced at
the top of the report and in every figure title.
"""

from __future__ import annotations

import html
import platform
import re
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any

from core.reader_study import statistics
from core.reader_study.groups import describe, label
from core.reader_study.spec import PackSpec
from core.reader_study.power import power_lines

PAPER = {
    "n_raters": 8, "n_quartets": 50, "accuracy": "29.0%", "fleiss_kappa": "0.061",
    "mean_realism": ["3.323", "3.228", "3.258", "3.320"], "p": ["0.128", "0.236", "1.000"],
    "p_holm": ["0.383", "0.471", "1.000"],
    "checkpoints": ["34 = 68,000 steps", "40 = 80,000 steps", "80 = 160,000 steps"],
}
CODING_TEXT = {
    "source": "source of the chosen image (real or one of the three checkpoints)",
    "position": "screen position of the chosen image (A-D)",
    "correct": "correctness of the choice (real image chosen or not)",
}
CSS = """
body{font:15px/1.5 -apple-system,'Segoe UI',Helvetica,Arial,sans-serif;max-width:1000px;margin:24px auto;padding:0 16px;
color:#222}table{border-collapse:collapse;margin:8px 0 18px}
th,td{border:1px solid #ccc;padding:4px 9px;text-align:right}
th{background:#f1f1f1}td:first-child,th:first-child{text-align:left}img{max-width:100%}
blockquote{border-left:4px solid #c62828;background:#fdecea;margin:12px 0;padding:8px 14px}
code{background:#f4f4f4;padding:0 3px}
"""


def _e(text: Any) -> str:
    """A value safe in a Markdown table cell (no raw HTML, no column breaks)."""
    text = re.sub(r"<(?=[A-Za-z/!?])", "&lt;", str(text))  # no raw HTML; '< 0.001' stays readable
    return text.replace("|", "\\|").replace("\n", " ")


def _pct(x: float | None) -> str:
    return "n/a" if x is None or x != x else f"{statistics.round_half_up(100 * x, 1)}%"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_e(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _versions() -> str:
    out = [f"Python {platform.python_version()}"]
    for pkg in ("scipy", "statsmodels", "matplotlib", "numpy"):
        try:
            out.append(f"{pkg} {metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(out)


def methods_paragraph(r: dict[str, Any], spec: PackSpec) -> str:
    ck = spec.checkpoints
    kappa = r["fleiss_kappa_by_coding"].get(r["kappa_coding"]) or {}
    tests = {t["group"]: t for t in r["wilcoxon"]}
    means = r["mean_realism_exact_fraction"]
    order = ("a random order per rater" if spec.shuffle_pages else "the same order for every rater")
    sim = (f" ({r['simulated_raters']} of them SIMULATED, not human readers)" if r["simulated_raters"] else "")
    syn = ", ".join(f"{statistics.fmt(means[c])} ({label(c)})" for c in ck if c in means)
    vs = "; ".join(f"{label(c)}: V = {statistics.fmt(tests[c]['statistic_V'], 1)}, "
                   f"p = {statistics.fmt_p(tests[c]['p'])}" for c in ck if c in tests)
    if all(c.isdigit() for c in ck):
        sources = f"the checkpoints at {', '.join(ck[:-1])} and {ck[-1]} training steps"
    else:
        sources = f"three groups ({', '.join(describe(c) for c in ck)})"
    pairs = r.get("pairwise") or []
    pair_text = ("; ".join(f"{label(t['a'])} vs {label(t['b'])}: Holm p = {statistics.fmt_p(t['p_holm'])}"
                           for t in pairs))
    holm = ", ".join(statistics.fmt_p(tests[c]["p_holm"]) for c in ck if c in tests)
    kappa_text = (f"\u03ba = {statistics.fmt(kappa.get('kappa'))}" if kappa
                  else "not computable with fewer than two raters")
    lo, hi = r["accuracy_ci95"]
    return (
        f"{r['n_raters']} raters{sim} completed a blinded validation task of {r['n_quartets']} quartets, each "
        f"holding one real radiograph and one synthetic image from each of {sources}, "
        f"presented one quartet per page in {order}, with the position of the real "
        f"image drawn at random per quartet (seed {spec.seed}). For each quartet, raters chose the image they "
        f"believed was real and rated the realism of every image on a four-point scale (1 = unrealistic; "
        f"4 = fully realistic). Identification accuracy was the proportion of the {r['n_trials']} trials in which "
        f"the real image was chosen ({_pct(r['accuracy'])}; Wilson 95% CI {_pct(lo)} to {_pct(hi)}; exact "
        f"two-sided binomial test against the 25% chance rate, p = {statistics.fmt_p(r['binomial_p_vs_chance'])}). "
        f"Inter-rater agreement on the identification was quantified with Fleiss' \u03ba over the "
        f"{r['kappa_quartets']} quartets answered by every rater, coding each answer by the "
        f"{CODING_TEXT[r['kappa_coding']]} ({kappa_text}). For the realism ratings, each rater's mean score per "
        f"image group was computed. The mean score for the real images (overall mean "
        f"{statistics.fmt(means.get('real'))}; synthetic {syn}) was compared with that of each synthetic group with "
        f"paired, two-sided Wilcoxon signed-rank tests ({vs}); as in R before version 4.6, the exact null "
        f"distribution was used without ties or zero differences and the normal approximation with continuity "
        f"correction otherwise, with ties detected exactly from integer rating sums. Holm's procedure adjusted "
        f"for the three comparisons (adjusted p = {holm}). "
        + (f"To compare the groups with each other, every pair of the four groups was tested the same way and "
           f"Holm's procedure applied over the {len(pairs)} pairs ({pair_text}). " if pairs else "")
        + _panel_sentence(r)
        + f"Means are rounded half-up to three decimals. The "
        f"analysis was run with cspine-tui ({_versions()}); rating distributions are shown as violin plots made "
        f"with Matplotlib."
    )


def _panel_sentence(r: dict[str, Any]) -> str:
    """Who the raters were, from the questionnaire ("" when nobody answered it)."""
    specialties = Counter(p["specialty"] for p in r["per_rater"] if p.get("specialty"))
    years = sorted(p["years"] for p in r["per_rater"] if p.get("years") is not None)
    if not specialties and not years:
        return ""
    parts = []
    if specialties:
        parts.append("specialties " + ", ".join(f"{k} {v}" for k, v in specialties.most_common()))
    if years:
        median = statistics.fmt((years[(len(years) - 1) // 2] + years[len(years) // 2]) / 2, 1)
        parts.append(f"years of experience median {median} (range {years[0]} to {years[-1]}, {len(years)} raters)")
    return f"Raters reported {'; '.join(parts)}. "


def _specialty(p: dict[str, Any]) -> str:
    if not p.get("specialty"):
        return "-"
    return f"{p['specialty']}: {p['specialty_other']}" if p.get("specialty_other") else p["specialty"]


def _group_sections(r: dict[str, Any]) -> list[str]:
    """Every statistic per group, and every pair of groups compared (one Holm family)."""
    out = ["## Group comparisons", "", "Per group (chosen as real: share of all trials, Wilson 95% CI, exact "
           "binomial test against the 25% a guess gives each image):", "", _table(
               ["group", "kind", "raters", "ratings", "mean realism", "chosen as real", "95% CI", "binomial p"],
               [[g["label"], g["kind"], g["raters"], g["ratings"], statistics.fmt(g["mean_realism"]),
                 f"{g['chosen_as_real']} ({_pct(g['chosen_share'])})",
                 f"{_pct(g['chosen_ci95'][0])} to {_pct(g['chosen_ci95'][1])}",
                 statistics.fmt_p(g["chosen_binomial_p"])] for g in r.get("per_group", [])]), ""]
    pairs = r.get("pairwise") or []
    out += [f"Every pair of groups: paired two-sided Wilcoxon signed-rank tests on the per-rater means (as above), "
            f"Holm over all {len(pairs)} pairs; mean difference = mean over raters of (first - second), positive "
            "when the first looked more realistic:", "", _table(
                ["pair", "raters", "mean difference", "V", "method", "p", "Holm p"],
                [[f"{label(t['a'])} vs {label(t['b'])}", t["n_raters"], statistics.fmt(t["mean_difference"]),
                  statistics.fmt(t["statistic_V"], 1), t["method"], statistics.fmt_p(t["p"]),
                  statistics.fmt_p(t["p_holm"])] for t in pairs]), ""]
    return out


def _fence(text: str) -> str:
    """`text` as a fenced block, verbatim (the fence is longer than any run of tildes in the text)."""
    longest = max((len(m) for m in re.findall(r"~+", text)), default=0)
    fence = "~" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def _reader_sections(r: dict[str, Any], groups: list[str]) -> list[str]:
    """The questionnaire as strata and covariate, -99 counts, and the free text verbatim."""
    out: list[str] = ["## Readers", ""]
    for title, key in (("By specialty", "by_specialty"), ("By years of experience", "by_experience")):
        out += [f"{title} (intervals treat every trial as independent, which a rater's trials are not: read them "
                "as descriptive):", "", _table(
                    ["stratum", "raters", "trials", "accuracy", "95% CI", *[f"mean realism, {label(g)}"
                                                                           for g in groups]],
                    [[s["stratum"], s["raters"], s["trials"], _pct(s["accuracy"]),
                      f"{_pct(s['ci95'][0])} to {_pct(s['ci95'][1])}",
                      *[statistics.fmt(s["mean_realism"].get(g)) for g in groups]] for s in r.get(key, [])]), ""]
    cov = r.get("experience_vs_accuracy") or {}
    out += [f"Years of experience against accuracy, per rater: Spearman's rho = {statistics.fmt(cov.get('rho'))}, "
            f"p = {statistics.fmt_p(cov.get('p'))} ({cov.get('n', 0)} raters who gave their years).", ""]
    seen = r.get("seen_unanswered") or {}
    if seen.get("total"):
        out += ["### Seen but not answered", "", f"{seen['total']} answers were exported as -99 (Qualtrics: seen "
                "but unanswered); they are counted here and scored nowhere.", "", _table(
                    ["rater", "answers seen, not given"], [[k, v] for k, v in seen["per_rater"].items()]), "",
                "By question: " + ", ".join(f"{k} {v}" for k, v in seen["by_question"].items()) + ".", ""]
    comments = r.get("comments") or []
    if comments:
        out += ["## What gave it away (free text, verbatim)", "",
                f"{len(comments)} comments, as the raters wrote them, with what they chose on that page.", ""]
        for c in comments:
            chose = "-" if c["chose"] is None else f"chose {label(c['chose'])}, " + (
                "correct" if c["correct"] else "incorrect")
            out += [f"**Quartet {c['trial']}**, {_e(c['rater'])} ({chose}):", "", _fence(c["text"]), ""]
    return out


def build_markdown(r: dict[str, Any], spec: PackSpec) -> str:
    from fractions import Fraction

    groups = r["groups"]
    ck = spec.checkpoints
    r["mean_realism_exact_fraction"] = {g: Fraction(v) for g, v in r["mean_realism_exact"].items()}
    means = r["mean_realism_exact_fraction"]
    tests = {t["group"]: t for t in r["wilcoxon"]}
    kappa = r["fleiss_kappa_by_coding"].get(r["kappa_coding"]) or {}
    out = [f"# Reader study report ({spec.pack_id})", ""]
    if r["simulated_raters"]:
        out += [f"> **SIMULATED DATA.** {r['simulated_raters']} of {r['n_raters']} raters are simulated "
                "(labelled `simulated-rater-N`). These numbers describe no human reader; they show that the "
                "pipeline runs end to end.", ""]
    out += [f"Analysis `{r['analysis_id']}` of {r['created_at']}; pack built with seed {spec.seed} from "
            f"groups {', '.join(label(c) for c in ck)}; study `{r['study']}`.", "", "## Summary", ""]
    summary = [
        ["raters", r["n_raters"], PAPER["n_raters"]],
        ["quartets", r["n_quartets"], PAPER["n_quartets"]],
        ["identification accuracy", f"{_pct(r['accuracy'])} ({r['n_correct']}/{r['n_trials']}; 95% CI "
         f"{_pct(r['accuracy_ci95'][0])} to {_pct(r['accuracy_ci95'][1])})", PAPER["accuracy"]],
        ["binomial p vs 25% chance", statistics.fmt_p(r["binomial_p_vs_chance"]), "-"],
        [f"Fleiss' kappa ({r['kappa_coding']} coding)", statistics.fmt(kappa.get("kappa")) if kappa else "n/a",
         PAPER["fleiss_kappa"] + " (coding not stated)"],
        ["mean realism, real", statistics.fmt(means.get("real")), PAPER["mean_realism"][0]],
    ]
    for i, c in enumerate(ck):
        t = tests.get(c, {})
        summary.append([f"mean realism, {label(c)}", statistics.fmt(means.get(c)),
                        f"{PAPER['mean_realism'][i + 1]} (checkpoint {PAPER['checkpoints'][i]})"])
        summary.append([f"Wilcoxon real vs {label(c)}: p / Holm p",
                        f"{statistics.fmt_p(t.get('p'))} / {statistics.fmt_p(t.get('p_holm'))}",
                        f"{PAPER['p'][i]} / {PAPER['p_holm'][i]}"])
    out += [_table(["measure", "this study", "paper"], summary), ""]

    out += ["## Identification", "", _table(
        ["rater", "specialty", "years", "trials", "correct", "accuracy", "95% CI", "binomial p", "notes"],
        [[p["rater"] + (" (simulated)" if p["simulated"] else ""), _specialty(p),
          "-" if p.get("years") is None else p["years"], p["trials"], p["correct"], _pct(p["accuracy"]),
          f"{_pct(p['ci95'][0])} to {_pct(p['ci95'][1])}", statistics.fmt_p(p["binomial_p"]),
          "; ".join(f"{k}: {v}" for k, v in p["flags"].items()) or "-"] for p in r["per_rater"]]), ""]
    out += ["Which image was chosen as the real one:", "", _table(
        ["source", "chosen", "share"],
        [[label(g), r["chosen_as_real"][g],
          _pct(r["chosen_as_real"][g] / r["n_trials"] if r["n_trials"] else None)] for g in groups]), ""]
    krows = []
    for coding, k in r["fleiss_kappa_by_coding"].items():
        krows.append([coding + (" (reported)" if coding == r["kappa_coding"] else ""),
                      *(["n/a"] * 5 if not k else [statistics.fmt(k["kappa"]), statistics.fmt(k["p_bar"]),
                                                   statistics.fmt(k["p_e"]), statistics.fmt(k["z"], 2),
                                                   statistics.fmt_p(k["p_value"])])])
    out += [f"Fleiss' kappa over the {r['kappa_quartets']} quartets answered by every rater, by coding of the "
            "answers (same observed agreement P, different chance agreement Pe):", "",
            _table(["coding", "kappa", "P", "Pe", "z", "p"], krows), ""]

    out += ["## Realism ratings", "", _table(
        ["group", "ratings", "mean (exact)", "mean"],
        [[label(g), r["n_ratings"].get(g, 0), r["mean_realism_exact"].get(g, "-"),
          statistics.fmt(means.get(g))] for g in groups]), ""]
    out += ["Per-rater means:", "", _table(
        ["rater", *[label(g) for g in groups]],
        [[rater, *[statistics.fmt(m.get(g)) for g in groups]] for rater, m in r["per_rater_means"].items()]), ""]
    out += ["Paired two-sided Wilcoxon signed-rank tests, real vs each group (R < 4.6 `wilcox.test(paired = "
            "TRUE)`; V = sum of the ranks of the positive differences real - synthetic):", "", _table(
                ["comparison", "raters", "non-zero", "zeros", "ties", "V", "method", "p", "Holm p"],
                [[f"real vs {label(t['group'])}", t["n_raters"], t["n"], t["n_zeros"], "yes" if t["ties"] else "no",
                  statistics.fmt(t["statistic_V"], 1), t["method"], statistics.fmt_p(t["p"]),
                  statistics.fmt_p(t["p_holm"])]
                 for t in r["wilcoxon"]]), ""]
    out += _group_sections(r)
    figs = r["figures"]
    out += [f"![Per-rater mean realism per group]({figs['rater_means_png']})", "",
            f"![All realism ratings per group]({figs['ratings_png']})", ""]
    out += ["## Quartets", "", _table(
        ["quartet", "answers", "real chosen", *[f"{label(c)} chosen" for c in ck]],
        [[q["quartet"], q["answers"], q["correct"], *[q["chosen"][c] for c in ck]] for q in r["per_quartet"]]), ""]
    out += _reader_sections(r, groups)
    if r.get("_utility_markdown"):  # core/utility/report.py: the task-based utility benchmark and checks
        out += [r["_utility_markdown"], ""]
    out += ["## Methods", "", methods_paragraph(r, spec), ""]
    out += power_lines(r["power"]) if r.get("power") else []  # the power the study had (core/reader_study/power.py)
    if r["warnings"]:
        out += ["## Notes", ""] + [f"- {_e(w)}" for w in r["warnings"]] + [""]
    return "\n".join(out)


def write_report(r: dict[str, Any], spec: PackSpec, out: Path) -> dict[str, str]:
    text = build_markdown(r, spec)
    r.pop("mean_realism_exact_fraction", None)
    figs = r["figures"]
    return write_markdown_html(text, out, f"Reader study report {spec.pack_id}",
                               {figs["rater_means_png"]: figs["rater_means_svg"],
                                figs["ratings_png"]: figs["ratings_svg"]})


def write_markdown_html(text: str, out: Path, title: str, svg_for: dict[str, str]) -> dict[str, str]:
    """Write a report (either design) as report.md and report.html; the HTML shows the vector figures (`svg_for`:
    PNG path -> SVG path). Returns the folder and both files' paths."""
    from markdown_it import MarkdownIt  # imported on use: only reports need it

    md_path = out / "report.md"
    md_path.write_text(text, encoding="utf-8")
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(text)
    for png, svg in svg_for.items():
        body = body.replace(f'src="{png}"', f'src="{svg}"')
    page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head><body>{body}</body></html>\n")
    html_path = out / "report.html"
    html_path.write_text(page, encoding="utf-8")
    return {"dir": str(out.resolve()), "markdown": str(md_path.resolve()), "html": str(html_path.resolve())}
