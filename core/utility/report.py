"""The utility section of the study report (core/reader_study/report.py includes it): the newest benchmark of
each task with its intervals and paired comparisons, and the newest condition check per checkpoint.

Markdown only, built from the store; an empty string when the study has neither, so the report stays as it was.
"""

from __future__ import annotations

from typing import Any

from core.study import Study
from core.utility import results
from core.utility.results import LABELS


def _f(v: Any, spec: str = ".3f") -> str:
    return "n/a" if v is None else format(v, spec)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows], ""]


def markdown_section(study: Study) -> str:
    jobs = [j for j in results.benchmark_jobs(study) if j["state"] == "succeeded"]
    checks = results.latest_checks(study)
    if not jobs and not checks:
        return ""
    out = ["## Utility of the synthetic images", ""]
    newest: dict[str, dict[str, Any]] = {}
    for j in jobs:
        newest.setdefault(j["task"], j)
    for task, j in sorted(newest.items()):
        stored = results.job_results(study, j["id"])
        rows = stored["results"]
        n_test = rows[0]["n_test"] if rows else 0
        out += [f"### Task: {task} (`{j['id']}`)", "",
                f"A torchvision {j['arch']} trained from scratch for {j['steps']} steps at {j['size']} px on each "
                f"training set, tested on the same {n_test} real validation images (never seen by the generator); "
                f"synthetic images: the accepted images of {', '.join(j['runs']) or 'no run'}, labelled by their "
                f"condition. Intervals: 95% percentile bootstrap over test images.", ""]
        out += _table(["model", "real images", "synthetic images", "metric", "value", "95% interval"],
                      [[r["unit"], r["n_real"], r["n_synthetic"], LABELS.get(r["metric"], r["metric"]),
                        _f(r["value"]), f"{_f(r['lo'])} to {_f(r['hi'])}"] for r in rows])
        comp = stored["comparisons"]
        if comp:
            out += ["Paired comparisons on the same test images (difference = first - second):", ""]
            out += _table(["first", "second", "metric", "difference", "95% interval", "p", "method"],
                          [[c["unit_a"], c["unit_b"], LABELS.get(c["metric"], c["metric"]), _f(c["diff"], "+.3f"),
                            f"{_f(c['lo'], '+.3f')} to {_f(c['hi'], '+.3f')}", _f(c["p"]), c["method"]]
                           for c in comp])
    if checks:
        out += ["### Does each image show its condition?", "",
                "A model trained on the real train split looked at every conditioned image; agreement with the "
                "requested condition per checkpoint, beside the same model's score on real validation images.", ""]
        rows = []
        for c in checks:
            d = c["details"]
            if c["name"] == "cond_accuracy":
                ref = "; ".join(f"{a}: {_f(x.get('reference'))}" for a, x in d.get("attributes", {}).items())
                rows.append([c["job_id"], c["step"], "attribute accuracy", _f(c["value"]), d.get("n"), ref])
            else:
                rows.append([c["job_id"], c["step"], "landmark error (px)", _f(c["value"], ".2f"), d.get("n"),
                             _f(d.get("reference"), ".2f")])
        out += _table(["training job", "step", "measure", "synthetic", "images", "checker on real"], rows)
    return "\n".join(out)


__all__ = ["markdown_section"]
