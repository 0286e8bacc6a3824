"""The utility results in the store: saving a benchmark's results and reading them and the condition checks back
(report, CLI); no torch here, so the report imports it cheaply.

A job's rows are replaced as a whole (one transaction), so re-analysing a job never leaves a mix of two runs.
"""

from __future__ import annotations

import json
from typing import Any

from core.study import Study

LABELS = {"mre_px": "mean radial error (px)", "mre_mm": "mean radial error (mm)", "sr2": "within 2 px @256",
          "sr4": "within 4 px @256", "accuracy": "accuracy", "auroc": "AUROC"}


def save(study: Study, job_id: str, params: dict[str, Any], result: dict[str, Any]) -> None:
    with study.store.connect() as tx:
        tx.execute("DELETE FROM utility_results WHERE job_id = ?", [job_id])
        tx.execute("DELETE FROM utility_comparisons WHERE job_id = ?", [job_id])
        tx.executemany(
            "INSERT INTO utility_results (job_id, unit, arm, real_fraction, metric, value, lo, hi, n_real, "
            "n_synthetic, n_test) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [[job_id, r["unit"], r["arm"], r["fraction"], r["metric"], _num(r["value"]), _num(r["lo"]),
              _num(r["hi"]), r["n_real"], r["n_synthetic"], r["n_test"]] for r in result["results"]])
        tx.executemany(
            "INSERT INTO utility_comparisons (job_id, real_fraction, metric, unit_a, unit_b, value_a, value_b, diff, "
            "lo, hi, p, method) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [[job_id, c["fraction"], c["metric"], c["a"], c["b"], _num(c["value_a"]), _num(c["value_b"]),
              _num(c["diff"]), _num(c["lo"]), _num(c["hi"]), _num(c["p"]), c["method"]]
             for c in result["comparisons"]])


def _num(v: Any) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if v == v else None  # NaN (no interval: a resample set without both classes) stored as NULL


def benchmark_jobs(study: Study) -> list[dict[str, Any]]:
    """Every utility job with results, newest first: id, task, arms, fractions, runs, state."""
    rows = study.store.query(
        "SELECT j.id, j.state, j.params, j.created_at FROM jobs j WHERE j.kind = 'utility' "
        "AND EXISTS (SELECT 1 FROM utility_results u WHERE u.job_id = j.id) ORDER BY j.created_at DESC, j.id DESC")
    out = []
    for r in rows:
        p = json.loads(r["params"]) if r["params"] else {}
        out.append({"id": r["id"], "state": r["state"], "created_at": str(r["created_at"]), "task": p.get("task"),
                    "arms": p.get("arms", []), "fractions": p.get("fractions", []), "runs": p.get("runs", []),
                    "arch": p.get("arch"), "steps": p.get("steps"), "size": p.get("size")})
    return out


def job_results(study: Study, job_id: str) -> dict[str, Any]:
    """One job's metric rows and comparisons as stored."""
    with study.store.connect() as tx:
        res = tx.query("SELECT * FROM utility_results WHERE job_id = ? ORDER BY real_fraction, unit, metric",
                       [job_id])
        comp = tx.query("SELECT * FROM utility_comparisons WHERE job_id = ? ORDER BY real_fraction, metric, unit_a, "
                        "unit_b", [job_id])
    return {"job": job_id, "results": res, "comparisons": comp}


def latest_checks(study: Study) -> list[dict[str, Any]]:
    """The newest condition metrics per training job and step: [{train_job, step, name, value, details}]."""
    rows = study.store.query("SELECT job_id, step, name, value, details FROM metrics "
                             "WHERE name IN ('cond_accuracy', 'cond_landmark_px') ORDER BY job_id, step, name")
    for r in rows:
        r["details"] = json.loads(r["details"]) if r["details"] else {}
    return rows


def learning_curves(rows: list[dict[str, Any]], metric: str) -> dict[str, list[tuple[float, float, float, float]]]:
    """{arm: [(real fraction, value, lo, hi), ...]} of one metric, by increasing fraction."""
    out: dict[str, list[tuple[float, float, float, float]]] = {}
    for r in rows:
        if r["metric"] == metric and r["value"] is not None:
            out.setdefault(r["arm"], []).append((float(r["real_fraction"]), r["value"], r["lo"], r["hi"]))
    return {arm: sorted(pts) for arm, pts in out.items()}


__all__ = ["LABELS", "save", "benchmark_jobs", "job_results", "latest_checks", "learning_curves"]
