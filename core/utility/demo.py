"""The demo's utility stage: a small benchmark on the labelled phantoms, and the condition check of any
conditional demo run.

Landmarks on the phantoms' keypoints, a learning curve over 25% and 100% of the real train split, and, when the
study has accepted images generated for a keypoint layout from a generator trained on the train split, the
synthetic and mixed training sets beside it. A ResNet-10 at 48 px for 25 steps per model keeps the stage to
seconds on a CPU; its numbers show the pipeline end to end, not what the method can reach (docs/guide/utility.md).
Idempotent: a finished demo benchmark is reported again, a stopped one resumed.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from core.ddpm import synthetic
from core.errors import CspineError
from core.jobs import runner
from core.realset import labels
from core.study import Study
from core.utility import benchmark, check, data

DEMO_SEED = 2510
DEMO = {"size": 48, "arch": "resnet10", "steps": 25, "batch": 16, "boot": 1000, "fractions": [0.25, 1.0]}


def _demo_job(study: Study, kind: str) -> dict[str, Any] | None:
    rows = study.store.query("SELECT id, state, params FROM jobs WHERE kind = ? ORDER BY created_at DESC, id DESC",
                             [kind])
    return next((r for r in rows if json.loads(r["params"] or "{}").get("demo")), None)


def _run(study: Study, kind: str, params: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any] | None:
    job = _demo_job(study, kind)
    if job and job["state"] == "succeeded":
        return runner.job_record(study, job["id"])["result"]
    job_id = job["id"] if job and job["state"] in ("paused", "failed", "queued") else \
        runner.create_job(study, kind, {**params, "demo": True})
    record = runner.run_job(study, job_id, foreground=True, on_progress=lambda *_: None)
    if record["state"] != "succeeded":
        raise CspineError(f"demo {kind} job {job_id} ended {record['state']}: {record['error']}; run the demo again "
                          f"to resume it")
    return record["result"]


def conditioned_runs(study: Study) -> list[str]:
    """The demo's own runs (from a demo training job; a user's runs in the demo study are left alone) with
    accepted images generated for a keypoint layout, from a generator that never saw the validation split."""
    demo_jobs = {r["id"] for r in study.store.query("SELECT id, params FROM jobs WHERE kind = 'train'")
                 if json.loads(r["params"] or "{}").get("demo")}
    out = []
    for r in synthetic.list_runs(study):
        if r["train_job"] not in demo_jobs:
            continue
        ids = data.accepted_ids(study, [r["id"]])
        if not ids or not any(c.get("keypoints") for c in synthetic.conditions_for(study, ids).values()):
            continue
        try:
            benchmark.check_runs(study, [r["id"]])
        except CspineError:
            continue
        out.append(r["id"])
    return out


def demo_utility(study: Study, log: Callable[[str], None], **overrides: Any) -> dict[str, Any] | None:
    settings = {**DEMO, **overrides}
    if not labels.point_names(study):
        log("no keypoints on the real images: the utility stage needs the labels stage first; skipped")
        return None
    runs = conditioned_runs(study)
    arms = ["real", "synthetic", "mixed"] if runs else ["real"]
    if not runs:
        log("no accepted images generated for a keypoint layout: the benchmark trains on real images only "
            "(sample a keypoint-conditioned run for the synthetic and mixed sets)")
    params = benchmark.utility_params(study, task=data.LANDMARKS, train=arms, runs=runs,
                                      fractions=settings["fractions"], seed=DEMO_SEED, size=settings["size"],
                                      arch=settings["arch"], steps=settings["steps"], batch=settings["batch"],
                                      boot=settings["boot"])
    log(f"utility benchmark: landmarks, {', '.join(arms)} at {', '.join(f'{f:.0%}' for f in settings['fractions'])}"
        f" of the real train split ({settings['arch']}, {settings['size']} px, {settings['steps']} steps each)")
    result = _run(study, "utility", params, log)
    for r in result["results"]:
        if r["metric"] == "mre_px":
            log(f"  {r['unit']}: mean radial error {r['value']:.2f} px (95% CI {r['lo']:.2f}-{r['hi']:.2f}) on "
                f"{r['n_test']} real validation films")
    if runs:
        cparams = check.check_params(study, runs=runs, seed=DEMO_SEED, size=settings["size"], arch=settings["arch"],
                                     steps=settings["steps"], batch=settings["batch"])
        checked = _run(study, "condition_check", cparams, log)
        for task, t in checked["tasks"].items():
            log(f"  condition check {task}: {t['all'].get('value'):.3f} on {t['all']['n']} images (checker on real "
                f"validation films: {t['reference'].get('value'):.3f})")
    return result


__all__ = ["DEMO", "DEMO_SEED", "conditioned_runs", "demo_utility"]
