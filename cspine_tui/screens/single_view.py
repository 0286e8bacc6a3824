"""How the analysis screen shows a single-image analysis (core/reader_study/single_analysis.py): the pooled
figures, the groups and their comparisons, the readers, agreement and the model, as Rich tables; the ROC plot
is the figure on the right (or, where the terminal draws no pixels, the groups table again with the PNG's path).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text


def _pct(x: float | None) -> str:
    from core.reader_study.statistics import fmt  # loaded by the screen's worker already (scipy)

    return "n/a" if x is None else f"{fmt(100 * x, 1)}%"


def _ci(pair: list | None, pct: bool = True) -> str:
    from core.reader_study.statistics import fmt  # loaded by the screen's worker already

    if not pair or pair[0] is None:
        return "n/a"
    return f"{_pct(pair[0])}-{_pct(pair[1])}" if pct else f"{fmt(pair[0])}-{fmt(pair[1])}"


def summary_table(r: dict[str, Any]) -> Table:
    from core.reader_study.statistics import fmt  # loaded by the screen's worker already

    p = r["pooled"]
    t = Table("measure (synthetic = positive)", "pooled", "bootstrap 95% CI", title="Single-image reader study" + (
        f"  [bold red]SIMULATED readers: {r['simulated_raters']}[/]" if r.get("simulated_raters") else ""),
        title_justify="left", expand=True)
    t.add_row("readers x images", f"{r['n_raters']} x {r['n_images']} ({r['n_answers']} answers, "
              f"{r['seen_unanswered']} seen not answered)", "-")
    for m in ("sensitivity", "specificity", "accuracy"):
        t.add_row(m, f"{_pct(p[m]['estimate'])} ({p[m]['k']}/{p[m]['n']})", _ci(p[m]["bootstrap95"]))
    t.add_row("ROC AUC (mean of readers)", fmt(p["auc"]["estimate"]), _ci(p["auc"]["bootstrap95"], pct=False))
    if r.get("fleiss_kappa"):
        t.add_row("Fleiss' kappa (calls)", fmt(r["fleiss_kappa"]["kappa"]), "-")
    if r.get("cohen_kappa"):
        t.add_row("Cohen's kappa", fmt(r["cohen_kappa"]["kappa"]), "-")
    return t


def groups_table(r: dict[str, Any]) -> Group:
    from core.reader_study.groups import describe  # loaded with the analysis
    from core.reader_study.statistics import fmt, fmt_p  # loaded by the screen's worker already

    t = Table("source", "images", "called synthetic", "AUC vs real", title="Groups", title_justify="left",
              expand=True, box=box.SIMPLE_HEAD)
    for g in r["per_group"]:
        auc = g.get("auc_vs_real")
        t.add_row(describe(g["group"]), str(g["images"]), _pct(g["called_synthetic"]["estimate"]),
                  f"{fmt(auc['estimate'])} ({_ci(auc['bootstrap95'], pct=False)})" if auc else "-")
    c = Table("comparison", "detection", "p", "Holm p", title="Every pair (permutation test, Holm)",
              title_justify="left", expand=True, box=box.SIMPLE_HEAD)
    for x in r["group_comparisons"]:
        c.add_row(f"{describe(x['a'])} vs {describe(x['b'])}", f"{_pct(x['mean_a'])} / {_pct(x['mean_b'])}",
                  fmt_p(x["p"]), fmt_p(x["p_holm"]))
    return Group(t, c)


def readers_table(r: dict[str, Any]) -> Group:
    from core.reader_study.statistics import fmt  # loaded by the screen's worker already

    t = Table("reader", "specialty, years", "sens.", "spec.", "AUC", title="Readers", title_justify="left",
              expand=True, box=box.SIMPLE_HEAD)
    t.columns[0].overflow = "fold"
    for x in r["per_reader"]:
        about = ", ".join(str(v) for v in (x.get("specialty"), x.get("years")) if v is not None) or "-"
        t.add_row(x["rater"], about, _pct(x["sensitivity"]["estimate"]), _pct(x["specificity"]["estimate"]),
                  fmt(x["auc"]["auc"]))
    model = r["model"]
    notes = [Text(f"model: {model['method']} ({model.get('why', '')})", style="dim")]
    notes += [Text(f"note: {w}", style="dim") for w in r.get("warnings", [])]
    return Group(t, *notes)


def figure(r: dict[str, Any]) -> Path:
    report = r.get("report") or {}
    return Path(report.get("dir", r.get("report_dir") or "")) / r.get("figures", {}).get("roc_png", "roc.png")
