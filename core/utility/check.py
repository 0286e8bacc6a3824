"""Does a synthetic image show its condition? (job kind "condition_check")

A task model (core/utility/models.py) is trained on the real train split for each checked task: the keypoint
layout ("landmarks") and each attribute the runs were conditioned on. It then looks at every conditioned
image of the chosen runs: the attribute it predicts against the one requested, the keypoints it finds against
the requested layout (radial error in the study's canonical pixels, whatever size the run was sampled at).
The same model's score on the real validation images is recorded beside as the reference: a checker that is
right on 80% of real films cannot confirm more than about that share of the synthetic ones, so agreement is
read against it.

Results: one row per image and task in ``condition_checks``; per checkpoint (train job and step of the runs)
``cond_accuracy`` (share of (image, attribute) pairs whose predicted attribute is the requested one) and
``cond_landmark_px`` (mean radial error over (image, keypoint) pairs) in the metrics table under the training
job, with their breakdown per attribute value and keypoint in the details; the same line is appended to the
training job's metrics.jsonl, so the Training screen shows it beside FID. Each task is one resumable unit.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import numpy as np

from core.ddpm import synthetic
from core.errors import CspineError
from core.jobs.runner import JobContext, JobPaused, run_dir
from core.study import Study
from core.utility import data as udata
from core.utility.metrics import landmark_errors
from core.utility.models import ARCHS, TrainSpec, deterministic, pick_device, predict, softmax, train

DEFAULTS = {"steps": 600, "batch": 32, "lr": 3e-4, "arch": "resnet18"}


def conditioned_images(study: Study, runs: list[str]) -> dict[str, list[str]]:
    """{run: ids of its images generated for a condition}."""
    out = {}
    for run in runs:
        ids = study.store.column("SELECT id FROM synthetic_images WHERE run_id = ? AND condition IS NOT NULL "
                                 "ORDER BY idx", [run])
        if ids:
            out[run] = ids
    return out


def check_params(study: Study, *, runs: list[str] | None = None, tasks: list[str] | None = None, seed: int = 0,
                 size: int | None = None, arch: str | None = None, steps: int | None = None,
                 batch: int | None = None, lr: float | None = None, device: str = "auto") -> dict[str, Any]:
    """Check the settings against the study; the job's params."""
    runs = list(runs or [r["id"] for r in synthetic.list_runs(study)])
    for r in runs:
        synthetic.find_run(study, r)
    images = conditioned_images(study, runs)
    if not images:
        raise CspineError(f"no image of run(s) {', '.join(runs) or '(none)'} was generated for a condition; "
                          f"sample a conditional run first")
    skipped: dict[str, str] = {}
    if tasks:
        spaces = [udata.task_space(study, t) for t in tasks]
    else:  # every condition the runs carry that the real set can check (categorical attributes, keypoints)
        conds = synthetic.conditions_for(study, [i for ids in images.values() for i in ids])
        found = set()
        for c in conds.values():
            if c.get("keypoints"):
                found.add(udata.LANDMARKS)
            found.update((c.get("attributes") or {}).keys())
        spaces = []
        for t in sorted(found):
            try:
                spaces.append(udata.task_space(study, t))
            except CspineError as exc:
                skipped[t] = str(exc)
        if not spaces:
            raise CspineError(f"none of the runs' conditions can be checked against the real set: "
                              f"{'; '.join(skipped.values())}")
        tasks = [s["task"] for s in spaces]
    arch = arch or DEFAULTS["arch"]
    if arch not in ARCHS:
        raise CspineError(f"--model must be one of {', '.join(ARCHS)}, not {arch!r}")
    return {"runs": sorted(images), "tasks": list(tasks), "spaces": spaces, "skipped_tasks": skipped, "seed": int(seed),
            "size": int(size or study.get("ingest", "size", 256)), "arch": arch,
            "steps": int(steps or DEFAULTS["steps"]), "batch": int(batch or DEFAULTS["batch"]),
            "lr": float(lr or DEFAULTS["lr"]), "device": device}


def _targets(s: udata.LabelledSet) -> tuple[np.ndarray, np.ndarray | None]:
    if s.points is not None:
        return s.points.reshape(len(s), -1).astype(np.float32), s.mask
    return s.classes, None


def _unit(ctx: JobContext, k: int, space: dict[str, Any], syn: udata.LabelledSet) -> dict[str, Any]:
    """Train the checker of one task on the real train split; its outputs on real val and the synthetic set."""
    p, study = ctx.params, ctx.study
    task = space["task"]
    done = ctx.dir / "units" / f"{task}.json"
    if done.exists():
        return json.loads(done.read_text())
    train_set = udata.real_set(study, "train", space)
    val_set = udata.real_set(study, "val", space)
    if len(train_set) < 2:
        raise CspineError(f"the real train split has {len(train_set)} image(s) labelled for {task}; the checker "
                          f"needs at least 2")
    x = udata.load_pixels(study, train_set.paths, p["size"])
    y, mask = _targets(train_set)
    n_out = len(space["points"]) * 2 if task == udata.LANDMARKS else len(space["classes"])
    spec = TrainSpec(p["arch"], p["steps"], p["batch"], p["lr"], p["seed"], pick_device(p.get("device")))
    total = len(p["spaces"]) * spec.steps
    ctx.log(f"checker {task}: {len(train_set)} real training images, {spec.steps} steps")
    model = train(x, y, mask, n_out, spec, f"check:{task}", ctx.dir / "units" / f"{task}.pt",
                  should_stop=ctx.should_stop,
                  on_step=lambda s: ctx.progress(k * spec.steps + s, total, step=k * spec.steps + s,
                                                 message=f"checker {task} step {s}"))
    if model is None:
        raise JobPaused(ctx.stop_reason)
    rec = {"task": task, "val_ids": val_set.ids,
           "val": predict(model, udata.load_pixels(study, val_set.paths, p["size"])).tolist(),
           "syn_ids": syn.ids, "syn": predict(model, udata.load_pixels(study, syn.paths, p["size"])).tolist()}
    tmp = done.with_name(f".{done.name}.tmp")
    tmp.write_text(json.dumps(rec))
    tmp.replace(done)
    (ctx.dir / "units" / f"{task}.pt").unlink(missing_ok=True)
    return rec


def _verdicts(space: dict[str, Any], s: udata.LabelledSet, out: np.ndarray, canonical: int) -> list[dict[str, Any]]:
    """Per image: requested, predicted, agree (attributes) or mean radial error and per-point errors in the
    study's canonical pixels (a 64 px run's errors are scaled to 256 px: comparable with real films')."""
    rows = []
    if space["task"] == udata.LANDMARKS:
        err = landmark_errors(out, s) * (canonical / np.asarray(s.native, float))[:, None]
        for i, image in enumerate(s.ids):
            have = s.mask[i]
            rows.append({"image": image, "error_px": float(np.nanmean(err[i])) if have.any() else None,
                         "errors": {p: float(err[i, j]) for j, p in enumerate(space["points"]) if have[j]}})
        return rows
    pred = softmax(out).argmax(1)
    for i, image in enumerate(s.ids):
        want, got = space["classes"][int(s.classes[i])], space["classes"][int(pred[i])]
        rows.append({"image": image, "requested": want, "predicted": got, "agree": want == got})
    return rows


def summarise(space: dict[str, Any], verdicts: list[dict[str, Any]]) -> dict[str, Any]:
    """Agreement over a set of images: accuracy overall and per requested value, or the mean radial error over
    (image, keypoint) pairs overall and per keypoint."""
    if not verdicts:
        return {"n": 0}
    if space["task"] == udata.LANDMARKS:
        errs: dict[str, list[float]] = {}
        for v in verdicts:
            for p, e in v["errors"].items():
                errs.setdefault(p, []).append(e)
        flat = [e for es in errs.values() for e in es]
        return {"n": len(verdicts), "pairs": len(flat), "value": float(np.mean(flat)) if flat else None,
                "per_point": {p: {"value": float(np.mean(es)), "n": len(es)} for p, es in sorted(errs.items())}}
    per: dict[str, list[bool]] = {}
    for v in verdicts:
        per.setdefault(v["requested"], []).append(v["agree"])
    return {"n": len(verdicts), "value": float(np.mean([v["agree"] for v in verdicts])),
            "per_value": {k: {"value": float(np.mean(a)), "n": len(a)} for k, a in sorted(per.items())}}


def run(ctx: JobContext) -> dict[str, Any]:
    with deterministic():
        return _run(ctx)


def _run(ctx: JobContext) -> dict[str, Any]:
    p, study = ctx.params, ctx.study
    (ctx.dir / "units").mkdir(exist_ok=True)
    images = conditioned_images(study, p["runs"])
    run_of = {i: r for r, ids in images.items() for i in ids}
    per_task, rows = {}, []
    for k, space in enumerate(p["spaces"]):
        syn = udata.synthetic_set(study, [i for ids in images.values() for i in ids], space)
        rec = _unit(ctx, k, space, syn)
        syn = _ordered(syn, rec["syn_ids"])
        val = _ordered(udata.real_set(study, "val", space), rec["val_ids"])
        canonical = int(study.get("ingest", "size", 256))
        ref = _verdicts(space, val, np.asarray(rec["val"], float), canonical)
        verdicts = _verdicts(space, syn, np.asarray(rec["syn"], float), canonical)
        by_run: dict[str, list[dict[str, Any]]] = {}
        for v in verdicts:
            by_run.setdefault(run_of[v["image"]], []).append(v)
        per_task[space["task"]] = {"reference": summarise(space, ref), "all": summarise(space, verdicts),
                                   "runs": {r: summarise(space, vs) for r, vs in sorted(by_run.items())},
                                   "verdicts": verdicts}
        rows += [[ctx.job_id, v["image"], space["task"], run_of[v["image"]], v.get("requested"),
                  v.get("predicted"), v.get("agree"), v.get("error_px")] for v in verdicts]
    with study.store.connect() as tx:
        tx.execute("DELETE FROM condition_checks WHERE job_id = ?", [ctx.job_id])
        tx.executemany("INSERT INTO condition_checks (job_id, image_id, task, run_id, requested, predicted, agree, "
                       "error_px) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    checkpoints = record_checkpoint_metrics(study, ctx.job_id, p["spaces"], per_task, run_of)
    ctx.progress(1, 1, message="done", force=True)
    for t in per_task.values():
        del t["verdicts"]
    return {"tasks": per_task, "checkpoints": checkpoints, "runs": p["runs"],
            "skipped_tasks": p.get("skipped_tasks", {}), "output": study.rel(ctx.dir)}


def _ordered(s: udata.LabelledSet, ids: list[str]) -> udata.LabelledSet:
    pos = {i: k for k, i in enumerate(s.ids)}
    if any(i not in pos for i in ids):
        raise CspineError("labels or conditions changed while this check was stopped; start a new check")
    return s.subset([pos[i] for i in ids])


def record_checkpoint_metrics(study: Study, job_id: str, spaces: list[dict[str, Any]],
                              per_task: dict[str, dict[str, Any]], run_of: dict[str, str]) -> list[dict[str, Any]]:
    """cond_accuracy / cond_landmark_px per (training job, checkpoint step), in the metrics table and the training
    job's metrics.jsonl; returns what was written."""
    runs = {r["id"]: r for r in synthetic.list_runs(study)}
    groups: dict[tuple[str, int], list[str]] = {}
    for run in sorted(set(run_of.values())):
        row = runs.get(run)
        if row and row["train_job"] and row["checkpoint_step"] is not None:
            groups.setdefault((row["train_job"], int(row["checkpoint_step"])), []).append(run)
    written = []
    for (train_job, step), group in sorted(groups.items()):
        line: dict[str, Any] = {}
        attr_pairs: list[bool] = []
        attr_details: dict[str, Any] = {}
        for space in spaces:
            task = space["task"]
            verdicts = [v for v in per_task[task]["verdicts"] if run_of[v["image"]] in group]
            summary = summarise(space, verdicts)
            if task == udata.LANDMARKS:
                if summary.get("value") is not None:
                    line["cond_landmark_px"] = {**summary, "reference": per_task[task]["reference"].get("value"),
                                                "runs": group, "check_job": job_id}
            elif verdicts:
                attr_pairs += [v["agree"] for v in verdicts]
                attr_details[task] = {**summary, "reference": per_task[task]["reference"].get("value")}
        if attr_pairs:
            line["cond_accuracy"] = {"value": float(np.mean(attr_pairs)), "n": len(attr_pairs),
                                     "attributes": attr_details, "runs": group, "check_job": job_id}
        if not line:
            continue
        study.store.executemany(
            "INSERT OR REPLACE INTO metrics (job_id, step, name, value, details) VALUES (?, ?, ?, ?, ?)",
            [[train_job, step, name, d["value"], json.dumps(d)] for name, d in line.items()])
        _append_metrics_line(study, train_job, step, line)
        written.append({"train_job": train_job, "step": step, **{k: v["value"] for k, v in line.items()}})
    return written


def _append_metrics_line(study: Study, train_job: str, step: int, values: dict[str, Any]) -> None:
    """One line in the training job's metrics.jsonl (one write, as the job's own lines are), so the Training
    screen shows it with FID; a training job without a folder here (imported checkpoints) only has the table."""
    folder = run_dir(study, train_job)
    if not folder.is_dir():
        return
    line = json.dumps({"step": int(step), "time": time.time(), **values}) + "\n"
    fd = os.open(folder / "metrics.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


__all__ = ["DEFAULTS", "check_params", "conditioned_images", "summarise", "run", "record_checkpoint_metrics"]
