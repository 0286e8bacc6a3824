"""The utility benchmark (job kind "utility"): train a task model on real, synthetic or mixed images, test it on
real validation images the generator never saw, and compare the training sets on the same test images.

Arms: ``real`` (a fraction of the real train split), ``synthetic`` (the accepted images of the chosen runs,
labelled by the condition they were generated for), ``mixed[:RATIO]`` (the same real fraction plus RATIO
synthetic images per real one, all accepted ones without a ratio). Each arm at each ``--real-fraction`` is one
unit: a model trained for a fixed number of steps (core/utility/models.py), its test predictions saved in the
job's folder, so a stopped job resumes at the unit (and the step) where it stopped. The synthetic arm does
not depend on the real fraction and runs once (its real fraction is 0). Real subsets are nested: the first
10% of one seeded permutation of the train split is inside the first 25%, and so on, so a learning curve
differs by data added, not by a new draw.

A generator trained with ``--data all`` has seen the validation images the benchmark tests on: its runs are
refused. So are external runs (their generator's training data is unknown) unless ``--trust-external``.
"""

from __future__ import annotations

import json
import math
from itertools import combinations
from typing import Any

import numpy as np

from core.ddpm import synthetic
from core.ddpm.data import mix_seed
from core.errors import CspineError
from core.jobs.runner import JobContext, JobPaused, job_record
from core.realset import labels
from core.study import Study
from core.utility import data as udata
from core.utility import metrics as umetrics
from core.utility import results
from core.utility.models import ARCHS, TrainSpec, deterministic, pick_device, predict, softmax, train

ARMS = ("real", "synthetic", "mixed")
DEFAULTS = {"steps": 600, "batch": 32, "lr": 3e-4, "boot": 2000, "arch": "resnet18"}


def parse_arm(text: str) -> tuple[str, float | None]:
    """'real' | 'synthetic' | 'mixed' | 'mixed:RATIO' -> (arm, ratio)."""
    name, _, ratio = str(text).partition(":")
    if name not in ARMS or (ratio and name != "mixed"):
        raise CspineError(f"--train {text!r}: use real, synthetic, mixed or mixed:RATIO (synthetic images per "
                          f"real one, e.g. mixed:1)")
    if not ratio:
        return name, None
    try:
        value = float(ratio)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value <= 0:
        raise CspineError(f"--train {text!r}: the mixing ratio must be a positive number")
    return name, value


def check_runs(study: Study, runs: list[str], *, trust_external: bool = False) -> list[dict[str, Any]]:
    """The runs' rows; a run whose generator saw the validation images (or may have) is refused.

    Only a training job of this study with ``--data train`` on record is known not to have seen them; an
    external set, an imported checkpoint (the paper's weights were trained on every CSXA image) or a job not
    in the study are unknown, and pass only with ``trust_external``."""
    out = []
    for name in runs:
        row = synthetic.find_run(study, name)
        train_job = row.get("train_job")
        try:
            record = job_record(study, train_job) if train_job else None
        except CspineError:
            record = None
        data = record["params"].get("data") if record and record["kind"] == "train" else None
        if data == "all":
            raise CspineError(f"run {name!r} comes from {train_job}, trained with --data all: it has seen every "
                              f"real image, the validation images this benchmark tests on included; use a "
                              f"generator trained with --data train")
        if data != "train" and not trust_external:
            why = ("an external set" if not train_job else f"{train_job} is not in this study" if record is None
                   else f"{train_job} is an imported checkpoint" if record["kind"] != "train"
                   else f"{train_job} records no data selection")
            raise CspineError(f"run {name!r} has no training job with a known data selection ({why}): its "
                              f"generator may have seen the validation images; pass --trust-external if it did not")
        out.append(row)
    return out


def utility_params(study: Study, *, task: str, train: list[str] | None = None, runs: list[str] | None = None,
                   fractions: list[float] | None = None, seed: int = 0, size: int | None = None,
                   arch: str | None = None, steps: int | None = None, batch: int | None = None,
                   lr: float | None = None, boot: int | None = None, mm_per_px: float | None = None,
                   trust_external: bool = False, device: str = "auto") -> dict[str, Any]:
    """Check a benchmark's settings against the study; the job's params."""
    arms = [parse_arm(a) for a in (train or ["real", "synthetic", "mixed"])]
    fractions = sorted({float(f) for f in (fractions or [1.0])})
    if any(not 0 < f <= 1 for f in fractions):
        raise CspineError("--real-fraction must be in (0, 1], e.g. 0.1 0.25 0.5 1")
    space = udata.task_space(study, task)
    needs_synthetic = any(a != "real" for a, _ in arms)
    runs = list(runs or [])
    if needs_synthetic and not runs:
        runs = [r["id"] for r in synthetic.list_runs(study) if r["images"]]
    if needs_synthetic:
        check_runs(study, runs, trust_external=trust_external)
        if not udata.accepted_ids(study, runs):
            raise CspineError(f"no accepted images in run(s) {', '.join(runs) or '(none)'}; screen them first "
                              f"(`cspine-tui screen`) or train on real images only (--train real)")
    arch = arch or DEFAULTS["arch"]
    if arch not in ARCHS:
        raise CspineError(f"--model must be one of {', '.join(ARCHS)}, not {arch!r}")
    canonical = int(study.get("ingest", "size", 256))
    params = {"task": task, "arms": [a if r is None else f"{a}:{r:g}" for a, r in arms], "runs": runs,
              "fractions": fractions, "seed": int(seed), "size": int(size or canonical), "arch": arch,
              "steps": int(steps or DEFAULTS["steps"]), "batch": int(batch or DEFAULTS["batch"]),
              "lr": float(lr or DEFAULTS["lr"]), "boot": int(boot or DEFAULTS["boot"]),
              "mm_per_px": mm_per_px, "trust_external": bool(trust_external), "space": space, "device": device}
    if params["size"] < 16:
        raise CspineError("--size must be at least 16 px")
    return params


def units(params: dict[str, Any]) -> list[tuple[str, str, float | None, float]]:
    """(key, arm, ratio, real fraction) of every unit, in run order."""
    out = []
    arms = [parse_arm(a) for a in params["arms"]]
    if any(a == "synthetic" for a, _ in arms):
        out.append(("synthetic", "synthetic", None, 0.0))
    for f in params["fractions"]:
        for arm, ratio in arms:
            if arm != "synthetic":
                label = arm if ratio is None else f"{arm}:{ratio:g}"
                out.append((f"{label}@{f:g}", label, ratio, f))
    return out


def _plan(ctx: JobContext) -> dict[str, Any]:
    """The images of every set, fixed on the job's first run (a resumed job uses the same ones)."""
    path = ctx.dir / "plan.json"
    if path.exists():
        return json.loads(path.read_text())
    p, study = ctx.params, ctx.study
    space = p["space"]
    train_set = udata.real_set(study, "train", space)
    test_set = udata.real_set(study, "val", space)
    if len(test_set) < 2:
        raise CspineError(f"the validation split of {study.root} has {len(test_set)} labelled images; the benchmark "
                          f"tests on them and needs at least 2")
    order = np.random.default_rng(mix_seed(p["seed"], "real-order")).permutation(len(train_set)).tolist()
    syn_ids: list[str] = []
    if any(parse_arm(a)[0] != "real" for a in p["arms"]):
        syn = udata.synthetic_set(study, udata.accepted_ids(study, p["runs"]), space)
        if len(syn) < 2:
            raise CspineError(f"the accepted images of {', '.join(p['runs'])} carry no {space['task']} condition "
                              f"(unconditional runs?); sample a conditional run for this task")
        syn_ids = syn.ids
    plan = {"train": [train_set.ids[i] for i in order], "synthetic": syn_ids, "test": test_set.ids}
    tmp = path.with_name(".plan.json.tmp")
    tmp.write_text(json.dumps(plan))
    tmp.replace(path)
    return plan


def _sets(study: Study, plan: dict[str, Any], space: dict[str, Any]) -> dict[str, udata.LabelledSet]:
    def ordered(s: udata.LabelledSet, ids: list[str]) -> udata.LabelledSet:
        pos = {i: k for k, i in enumerate(s.ids)}
        missing = [i for i in ids if i not in pos]
        if missing:
            raise CspineError(f"{len(missing)} image(s) of this job lost their label or were removed (e.g. "
                              f"{missing[0]}); start a new benchmark")
        return s.subset([pos[i] for i in ids])

    out = {"train": ordered(udata.real_set(study, "train", space), plan["train"]),
           "test": ordered(udata.real_set(study, "val", space), plan["test"])}
    out["synthetic"] = ordered(udata.synthetic_set(study, plan["synthetic"], space), plan["synthetic"])
    return out


def training_rows(n_real: int, n_syn: int, arm: str, ratio: float | None, fraction: float, seed: int,
                  key: str) -> tuple[int, list[int]]:
    """How many real images (a prefix of the seeded order) and which synthetic rows a unit trains on."""
    real = 0 if arm == "synthetic" else max(1, int(round(fraction * n_real)))
    if arm == "real":
        return real, []
    take = n_syn if ratio is None else min(n_syn, max(1, int(round(ratio * real))))
    rows = np.random.default_rng(mix_seed(seed, key, "synthetic")).permutation(n_syn)[:take]
    return real, sorted(rows.tolist())


def _targets(s: udata.LabelledSet) -> tuple[np.ndarray, np.ndarray | None]:
    if s.points is not None:
        return s.points.reshape(len(s), -1).astype(np.float32), s.mask
    return s.classes, None


def run(ctx: JobContext) -> dict[str, Any]:
    with deterministic():
        return _run(ctx)


def _run(ctx: JobContext) -> dict[str, Any]:
    p, study = ctx.params, ctx.study
    plan = _plan(ctx)
    sets = _sets(study, plan, p["space"])
    size = p["size"]
    pix = {k: udata.load_pixels(study, s.paths, size) for k, s in sets.items()}
    plan_units = units(p)
    (ctx.dir / "units").mkdir(exist_ok=True)
    spec = TrainSpec(p["arch"], p["steps"], p["batch"], p["lr"], p["seed"], pick_device(p.get("device")))
    total = len(plan_units) * spec.steps
    n_out = (len(p["space"]["points"]) * 2) if p["space"]["task"] == udata.LANDMARKS else len(p["space"]["classes"])
    preds: dict[str, dict[str, Any]] = {}
    for k, (key, arm, ratio, fraction) in enumerate(plan_units):
        done_path = ctx.dir / "units" / f"{key}.json"
        if done_path.exists():
            preds[key] = json.loads(done_path.read_text())
            continue
        n_real, syn_rows = training_rows(len(sets["train"]), len(sets["synthetic"]), arm.split(":")[0], ratio,
                                         fraction, p["seed"], key)
        parts = [(sets["train"].subset(range(n_real)), pix["train"][:n_real])] if n_real else []
        if syn_rows:
            parts.append((sets["synthetic"].subset(syn_rows), pix["synthetic"][syn_rows]))
        x = np.concatenate([px for _, px in parts])
        ys = [_targets(s) for s, _ in parts]
        y = np.concatenate([t for t, _ in ys])
        mask = None if ys[0][1] is None else np.concatenate([m for _, m in ys])
        if len(x) < 2:
            raise CspineError(f"unit {key} has {len(x)} training image; use a larger --real-fraction")
        ctx.log(f"unit {key}: {n_real} real + {len(syn_rows)} synthetic training images, {spec.steps} steps")

        def on_step(step: int, k: int = k, key: str = key) -> None:
            ctx.progress(k * spec.steps + step, total, step=k * spec.steps + step, message=f"{key} step {step}")

        model = train(x, y, mask, n_out, spec, key, ctx.dir / "units" / f"{key}.pt",
                      should_stop=ctx.should_stop, on_step=on_step)
        if model is None:
            raise JobPaused(ctx.stop_reason)
        out = predict(model, pix["test"])
        record = {"key": key, "arm": arm, "fraction": fraction, "n_real": n_real, "n_synthetic": len(syn_rows),
                  "pred": out.tolist()}
        tmp = done_path.with_name(f".{done_path.name}.tmp")
        tmp.write_text(json.dumps(record))
        tmp.replace(done_path)
        (ctx.dir / "units" / f"{key}.pt").unlink(missing_ok=True)
        preds[key] = record
    result = analyse(p, sets["test"], preds, labels.canonical_spacing(study, sets["test"].ids))
    results.save(study, ctx.job_id, p, result)
    ctx.progress(total, total, step=total, message="done", force=True)
    return {**result, "output": study.rel(ctx.dir)}


def _finite(v: float | None) -> float | None:
    """A number, or None where there is none (an AUROC on a test set with one class): JSON has no NaN."""
    return None if v is None or not math.isfinite(float(v)) else float(v)


def analyse(p: dict[str, Any], test: udata.LabelledSet, preds: dict[str, dict[str, Any]],
            spacing: dict[str, tuple[float, float]] | None = None) -> dict[str, Any]:
    """Metrics of every unit with bootstrap intervals, and paired comparisons of the arms at each fraction.
    spacing: {test image: (x, y) mm per canonical pixel} for the images whose source gave one."""
    task = p["space"]["task"]
    spacing = spacing or {}
    mm = np.array([spacing.get(i, (np.nan, np.nan)) for i in test.ids], float).reshape(len(test), 2)
    canonical = int(np.median(test.native)) if test.native and test.native[0] else int(p["size"])
    idx = np.random.default_rng(mix_seed(p["seed"], "bootstrap")).integers(0, len(test), (p["boot"], len(test)))
    parts, evals, rows = {}, {}, []
    for key, rec in preds.items():
        out = np.asarray(rec["pred"], float)
        if task != udata.LANDMARKS:
            out = softmax(out)
        parts[key] = umetrics.case_parts("landmarks" if task == udata.LANDMARKS else "attribute", out, test,
                                         canonical, p.get("mm_per_px"), mm)
        evals[key] = umetrics.evaluate(parts[key], idx)
        for name, e in evals[key].items():
            rows.append({"unit": key, "arm": rec["arm"], "fraction": rec["fraction"], "metric": name,
                         "value": _finite(e["value"]), "lo": _finite(e["lo"]), "hi": _finite(e["hi"]),
                         "n_real": rec["n_real"],
                         "n_synthetic": rec["n_synthetic"], "n_test": len(test)})
    comparisons = []
    by_fraction: dict[float, list[str]] = {}
    for key, rec in preds.items():
        if rec["arm"] != "synthetic":
            by_fraction.setdefault(rec["fraction"], []).append(key)
    for fraction, keys in sorted(by_fraction.items()):
        keys = keys + (["synthetic"] if "synthetic" in preds else [])
        for a, b in combinations(keys, 2):
            for name in evals[a]:
                c = umetrics.compare(name, evals[a][name], evals[b][name], parts[a], parts[b])
                comparisons.append({"fraction": fraction, "metric": name, "a": a, "b": b, "method": c["method"],
                                    "value_a": _finite(c["a"]), "value_b": _finite(c["b"]),
                                    **{k: _finite(c[k]) for k in ("diff", "lo", "hi", "p")}})
    thresholds = umetrics.thresholds(canonical) if task == udata.LANDMARKS else None
    mm_source = ("--mm-per-px" if p.get("mm_per_px") else
                 f"source pixel spacing of {len(spacing)} of {len(test)} test images" if spacing else None)
    return {"task": task, "n_test": len(test), "canonical": canonical, "thresholds_px": thresholds,
            "mm_source": mm_source if task == udata.LANDMARKS else None,
            "results": rows, "comparisons": comparisons, "boot": p["boot"], "seed": p["seed"]}


__all__ = ["ARMS", "DEFAULTS", "parse_arm", "check_runs", "utility_params", "units", "training_rows", "run",
           "analyse"]
