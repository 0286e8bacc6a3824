"""Sampling jobs (kind "sample"): images from a checkpoint, resumable, shardable, reproducible per image.

A run samples images 0..count-1. Image i is denoised from its own generator seeded ``image_seed(seed, i)``
(core/ddpm/samplers.py), so it does not depend on the other images. The network's floating-point results still
depend on the batch it shares and, on a CPU, on the thread count, so a run fixes both when it starts
(recorded in the run's params) and always computes the same aligned blocks of indices
``[k*batch, (k+1)*batch)``. Hence:

* resumable: a block whose images all have rows is skipped; the rest is computed again and only the missing
  images are written, bit-identical to what an uninterrupted run writes;
* shardable: with N processes (``accelerate launch``, see core/jobs/launch.py) the pending blocks are dealt
  round-robin, rank 0 alone writes rows (the other ranks send theirs over the process group), and the
  images are the ones a single process makes;
* regenerable: :func:`regenerate` recomputes any image from its record.

Every stop request (signal, ``--time-limit``, pause/cancel) is agreed on by all ranks between blocks, the
finished images are recorded, and the job ends paused.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.ddpm import synthetic
from core.errors import CspineError
from core.jobs.runner import JobContext, JobPaused
from core.study import Study
from core.ddpm.checkpoints import list_checkpoints
from core.ddpm.networks import load_config, load_unet
from core.jobs import runner

WEIGHTS = ("ema", "online")
DEVICES = ("auto", "cpu", "cuda")


# ---------------------------------------------------------------------------------------------------
# Checkpoints and parameters


def resolve_checkpoint(study: Study, step: int, job: str | None = None) -> dict[str, Any]:
    """The checkpoints row for `step` (of training job `job` when several jobs have that step)."""
    rows = study.store.query(
        "SELECT job_id, step, path FROM checkpoints WHERE step = ? AND NOT deleted"
        + (" AND job_id LIKE ?" if job else "") + " ORDER BY job_id",
        [int(step), f"%{job}%"] if job else [int(step)])
    if not rows:
        steps = study.store.query("SELECT job_id, step FROM checkpoints WHERE NOT deleted ORDER BY job_id, step")
        have = ", ".join(f"{r['step']} ({r['job_id']})" for r in steps[-12:]) or "none yet; train first"
        raise CspineError(f"no checkpoint at step {step}" + (f" of job {job!r}" if job else "")
                          + f" in {study.root}; available: {have}")
    if len(rows) > 1:
        raise CspineError(f"step {step} exists in several training jobs ({', '.join(r['job_id'] for r in rows)}); "
                          f"choose one with --job")
    row = rows[0]
    folder = study.abs(row["path"])
    if not (folder / "cspine.json").exists():
        raise CspineError(f"checkpoint {row['path']} is missing its model folder (no cspine.json); it may have "
                          f"been pruned. Pick another with `cspine-tui checkpoints`")
    return row


def default_run_name(step: int, sampler: str, steps: int, job_id: str) -> str:
    return f"s{step}-{sampler}{steps}-{job_id.removeprefix('sample-')}"


def sample_params(study: Study, *, checkpoint: int, job: str | None = None, count: int | None,
                  sampler: str | None = None, steps: int | None = None, batch: int | None = None,
                  seed: int | None = None, weights: str | None = None, run: str | None = None,
                  device: str = "auto", compile: bool = False, num_processes: int = 1,
                  cpu_threads: int | None = None, orient: bool = True, precision: str | None = None,
                  condition: list[str] | None = None, per_condition: int | None = None,
                  guidance_scale: float | None = None) -> dict[str, Any]:
    """Validate a sampling request and resolve what it leaves open; the job's params.

    Naming an existing run extends it to `count` images: what the request leaves open (sampler, steps,
    weights, seed) is the run's, and anything it states must agree with the run. A conditional checkpoint
    takes `condition` (ATTR=VALUE pairs), `per_condition` (N images per attribute combination seen in
    training; the count follows) and `guidance_scale` (classifier-free guidance, default 1: no guidance).
    """
    import torch

    # imported on use: loads torch (start-up cost)
    from core.ddpm.networks import load_config
    from core.ddpm.samplers import DEFAULT_FAST_SAMPLER, PRECISIONS, autocast_dtype, check_sampler, precision_name

    if per_condition is None and (count is None or count < 1):
        raise CspineError(f"--count must be at least 1, not {count}" if count is not None else
                          "give --count N (or --per-condition N for a conditional checkpoint)")
    if weights is not None and weights not in WEIGHTS:
        raise CspineError(f"--weights must be one of {', '.join(WEIGHTS)}, not {weights!r}")
    if device not in DEVICES:
        raise CspineError(f"--device must be one of {', '.join(DEVICES)}, not {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise CspineError("--device cuda: no CUDA GPU is visible to this process (use --device cpu)")
    if batch is not None and batch < 1:
        raise CspineError(f"--batch must be at least 1, not {batch}")
    if precision is not None and precision not in PRECISIONS:
        raise CspineError(f"--precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if num_processes < 1:
        raise CspineError(f"--num-processes must be at least 1, not {num_processes}")
    ckpt = resolve_checkpoint(study, checkpoint, job)
    cfg = load_config(study.abs(ckpt["path"]))
    existing = synthetic.get_run(study, run) if run else None
    if existing is not None and condition is None and per_condition is None and guidance_scale is None:
        conditional = existing["params"].get("condition")  # extending a run: its condition settings
    else:
        conditional = condition_params(cfg, ckpt["path"], condition, per_condition, guidance_scale)
    if conditional is not None and conditional["per_condition"]:
        quota = conditional["per_condition"] * len(conditional["combinations"])
        if count is not None and count != quota:
            raise CspineError(f"--per-condition {conditional['per_condition']} over "
                              f"{len(conditional['combinations'])} combinations makes {quota} images; leave "
                              f"--count out (or give --count {quota})")
        count = quota
    if conditional is not None:
        from core.ddpm.conditioning import sampling_plan, spec_of  # imported on use: numpy

        sampling_plan(study, spec_of(cfg), cfg.image_size, seed=0, fixed=conditional["fixed"],
                      per_condition=conditional["per_condition"]).check()
    if existing is not None:
        if existing["source"] != "sampled":
            raise CspineError(f"run {run!r} holds external images; sample into a new run name")
        sampler, steps = sampler or existing["sampler"], steps or existing["steps"]
        weights = weights or existing["weights"]
        seed = existing["seed"] if seed is None else seed
        ran = existing["params"].get("precision")
        if precision is not None and ran is not None and precision not in ("auto", ran):
            raise CspineError(f"run {run!r} was sampled in {ran}, not {precision}; leave --precision out to "
                              f"extend it, or drop --run for a new run")
        precision = precision or ran
    elif run:
        synthetic.check_run_name(run)
    sampler = sampler or DEFAULT_FAST_SAMPLER
    steps = check_sampler(sampler, steps, cfg)
    weights = weights or "ema"
    if not (study.abs(ckpt["path"]) / ("unet_ema" if weights == "ema" else "unet")).is_dir():
        raise CspineError(f"checkpoint {ckpt['path']} has no {weights} weights; try --weights "
                          f"{'online' if weights == 'ema' else 'ema'}")
    if existing is not None:
        asked = {"train_job": ckpt["job_id"], "checkpoint_step": ckpt["step"], "sampler": sampler, "steps": steps,
                 "weights": weights, "seed": seed}
        had = {**{k: existing[k] for k in asked}, "condition": existing["params"].get("condition")}
        asked["condition"] = conditional
        mismatch = [k for k, v in asked.items() if had[k] != v]
        if mismatch:
            raise CspineError(f"run {run!r} was sampled with other settings ("
                              + ", ".join(f"{k} {had[k]}, not {asked[k]}" for k in mismatch)
                              + "); leave them out to extend it, or drop --run for a new run")
    if seed is None:
        seed = secrets.randbelow(2 ** 31)  # recorded: every image can be regenerated from its record
    elif existing is None:
        # The precision this request will run in (a run records the resolved one): fp32 and bf16 images differ.
        dev = "cuda" if device != "cpu" and torch.cuda.is_available() else "cpu"
        resolved = precision_name(autocast_dtype(dev, precision or "auto"))
        twin = study.store.query_one(
            "SELECT id FROM synthetic_runs WHERE source = 'sampled' AND train_job = ? AND checkpoint_step = ? AND "
            "sampler = ? AND steps = ? AND seed = ? AND weights = ? AND "
            "coalesce(json_extract_string(params, '$.precision'), ?) = ? AND "
            "coalesce(json_extract_string(params, '$.condition_key'), '') = ?",
            [ckpt["job_id"], ckpt["step"], sampler, steps, int(seed), weights, resolved, resolved,
             condition_key(conditional)])
        if twin is not None:
            raise CspineError(f"run {twin['id']!r} already sampled this checkpoint with the same sampler, steps, "
                              f"weights and seed {seed}: these images would repeat it. Continue it with "
                              f"--run {twin['id']} --count N, or pick another --seed")
    return {"train_job": ckpt["job_id"], "checkpoint_step": int(ckpt["step"]), "checkpoint_path": ckpt["path"],
            "count": int(count), "sampler": sampler, "steps": int(steps), "batch": batch, "seed": int(seed),
            "weights": weights, "run": run, "device": device, "compile": bool(compile),
            "num_processes": int(num_processes), "cpu_threads": int(cpu_threads or torch.get_num_threads()),
            "orient": bool(orient), "precision": precision or "auto", "condition": conditional}


def condition_params(cfg: Any, where: str, condition: list[str] | None, per_condition: int | None,
                     guidance_scale: float | None) -> dict[str, Any] | None:
    """The conditional part of a sampling request, checked against the checkpoint's condition spec."""
    from core.ddpm.conditioning import parse_fixed, quota_combinations, spec_of  # imported on use: numpy

    spec = spec_of(cfg)
    if spec is None:
        if condition or per_condition is not None or guidance_scale is not None:
            raise CspineError(f"checkpoint {where} is unconditional; --condition, --per-condition and "
                              f"--guidance-scale need a model trained with --condition-on")
        return None
    fixed = parse_fixed(spec, condition or [])
    if guidance_scale is not None and not guidance_scale >= 0:
        raise CspineError(f"--guidance-scale must be 0 or more (1 = the conditional model unguided), "
                          f"not {guidance_scale}")
    combos: list[dict[str, str]] = []
    if per_condition is not None:
        if per_condition < 1:
            raise CspineError(f"--per-condition must be at least 1, not {per_condition}")
        if not spec.attributes:
            raise CspineError("--per-condition needs a model conditioned on attributes; this one is conditioned "
                              "on keypoints only (every image gets a train image's layout)")
        combos = quota_combinations(spec, fixed)
    return {"fixed": fixed, "per_condition": per_condition, "combinations": combos,
            "guidance_scale": 1.0 if guidance_scale is None else float(guidance_scale)}


def condition_key(conditional: dict[str, Any] | None) -> str:
    """What makes two conditional runs' images the same besides seed and sampler ('' for unconditional)."""
    import json

    return "" if conditional is None else json.dumps(conditional, sort_keys=True)


# ---------------------------------------------------------------------------------------------------
# Process group (one process, or N under accelerate launch)


@dataclass
class _Group:
    world: int = 1
    rank: int = 0
    device: Any = None

    @classmethod
    def start(cls, device: str) -> "_Group":
        import torch

        world = int(os.environ.get("WORLD_SIZE", "1"))
        cuda = torch.cuda.is_available() and device != "cpu"
        if world <= 1:
            return cls(device=torch.device("cuda" if cuda else "cpu"))
        from accelerate import PartialState

        state = PartialState(cpu=not cuda)  # gloo on CPUs (docs/reference/cluster.md), NCCL on GPUs
        if state.num_processes != world:
            raise CspineError(f"expected {world} sampling processes but accelerate set up {state.num_processes}")
        return cls(world=world, rank=state.process_index, device=state.device)

    def gather(self, obj: Any) -> list[Any]:
        if self.world == 1:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def close(self, clean: bool) -> None:
        if self.world == 1:
            return
        import torch.distributed as dist

        if dist.is_initialized():
            if clean:
                dist.barrier()  # without it, ranks sometimes abort at exit (docs/reference/cluster.md)
            dist.destroy_process_group()


# ---------------------------------------------------------------------------------------------------
# Blocks


def blocks(count: int, batch: int) -> list[list[int]]:
    """The aligned blocks of indices a run always computes together, each a full batch.

    The last block runs past `count` (the extra images are computed and dropped), so once a run's batch is
    fixed an image's pixels do not depend on the count a job asked for: extending the run later gives the
    images one longer run with that batch gives.
    """
    return [list(range(s, s + batch)) for s in range(0, count, batch)]


def pending_blocks(count: int, batch: int, done: set[int]) -> list[list[int]]:
    return [b for b in blocks(count, batch) if any(i < count and i not in done for i in b)]


def _load_network(study: Study, params: dict[str, Any], device, *, compile: bool = False):
    from core.ddpm.samplers import prepare_unet  # imported on use: loads torch (start-up cost)

    folder = study.abs(params["checkpoint_path"])
    cfg = load_config(folder)
    unet = prepare_unet(load_unet(folder, params["weights"]), device, compile=compile)
    return cfg, unet


# ---------------------------------------------------------------------------------------------------
# The job


def run(ctx: JobContext) -> dict[str, Any]:
    group = _Group.start(ctx.params.get("device", "auto"))
    clean = False
    try:
        result = _run(ctx, group)
        clean = True
        return result
    except JobPaused:
        clean = True
        raise
    finally:
        group.close(clean)


def _run(ctx: JobContext, group: _Group) -> dict[str, Any]:
    import torch

    # imported on use: loads torch (start-up cost)
    from core.ddpm.samplers import autocast_dtype, default_batch_size, image_seed, precision_name, sample_batch

    study, p = ctx.study, ctx.params
    run_id = p.get("run") or default_run_name(p["checkpoint_step"], p["sampler"], p["steps"], ctx.job_id)
    device = group.device
    existing = synthetic.get_run(study, run_id)
    threads = int((existing or {}).get("params", {}).get("cpu_threads") or p["cpu_threads"])
    if device.type == "cpu":
        torch.set_num_threads(threads)
    cfg, unet = _load_network(study, p, device, compile=bool(p.get("compile")) and device.type == "cuda")
    dtype = autocast_dtype(device, p.get("precision", "auto"))
    conditional = p.get("condition")
    plan = _plan(study, cfg, p, existing)
    guidance = float(conditional["guidance_scale"]) if conditional else 1.0
    if existing is not None and existing["params"].get("batch"):
        batch = int(existing["params"]["batch"])
        if existing["params"].get("device") not in (None, device.type) and group.rank == 0:
            ctx.log(f"note: run {run_id} began on {existing['params']['device']} and continues on "
                    f"{device.type}; its images stay valid but are not bit-identical across devices")
    else:
        batch = int(p.get("batch") or default_batch_size(unet, cfg, device, guidance))
        batch = min(min(group.gather(batch)), int(p["count"]))  # every rank must cut the same blocks
    folder = synthetic.run_folder(study, run_id)
    if group.rank == 0:
        synthetic.create_run(
            study, run_id, "sampled", job_id=ctx.job_id, train_job=p["train_job"],
            checkpoint_step=p["checkpoint_step"], sampler=p["sampler"], steps=p["steps"], seed=p["seed"],
            weights=p["weights"], exist_ok=True,
            params={"batch": batch, "cpu_threads": threads, "device": device.type, "orient": p["orient"],
                    "precision": precision_name(dtype),
                    "checkpoint_path": p["checkpoint_path"], "image_size": cfg.image_size,
                    "prediction_type": cfg.prediction_type, "torch": torch.__version__,
                    "diffusers": _version("diffusers"), "condition": conditional,
                    "condition_key": condition_key(conditional),
                    "condition_plan_sha256": plan[1] if plan else None})
        if existing is None:
            ctx.log(f"run {run_id}: folder {study.rel(folder)}")
        removed = synthetic.clean_partial_files(folder)
        if removed:
            ctx.log(f"removed {removed} partial files left by an interrupted writer")
    done = synthetic.done_indices(study, run_id)
    group.gather(None)  # nobody writes before every rank has read what is done
    count = int(p["count"])
    todo = pending_blocks(count, batch, done)
    n_done = sum(1 for i in done if i < count)
    ctx.log(f"sampling {count - n_done} of {count} images with {p['sampler']} x {p['steps']} steps "
            f"({p['weights']} weights, {precision_name(dtype)}) on {device} in blocks of {batch}, "
            f"{group.world} process(es)")
    # Images made and seconds spent sampling by the job's earlier runs: the job's rate is over sampling time,
    # so the time it sat paused between runs (or loading the network) never lowers it.
    made_before, seconds_before = int(ctx.before.get("made") or 0), float(ctx.before.get("sampling_s") or 0.0)
    ctx.progress(n_done, count, message="starting", output=str(folder.resolve()), run=run_id, force=True,
                 made=made_before, sampling_s=seconds_before)
    made, started = 0, time.monotonic()
    n_blocks = len(blocks(count, batch))  # numbered over the whole run, so a resumed job counts on
    rounds = (len(todo) + group.world - 1) // group.world
    for r in range(rounds):
        if any(group.gather(ctx.should_stop())):
            ctx.request_stop(ctx.stop_reason or "another process was asked to stop")
            raise JobPaused(f"{ctx.stop_reason}; {n_done}/{count} images done, resume to continue")
        k = r * group.world + group.rank
        rows: list[synthetic.SyntheticImage] = []
        if k < len(todo):
            block = todo[k]
            seeds = [image_seed(p["seed"], i) for i in block]
            # The images this round adds over all processes: the bar moves with the steps of the blocks.
            adding = sum(1 for b in todo[r * group.world:(r + 1) * group.world] for i in b
                         if i < count and i not in done)

            def on_step(s: int, n: int) -> None:
                if group.rank == 0:
                    ctx.progress(n_done, count, partial=adding * s / n,
                                 message=f"block {block[0] // batch + 1}/{n_blocks}: step {s}/{n}")

            conditions, cond = _block_conditions(plan, cfg, block)
            images = sample_batch(unet, cfg, p["sampler"], p["steps"], seeds, device, dtype, on_step=on_step,
                                  cond=cond, guidance=guidance)
            for i, seed, arr, c in zip(block, seeds, images, conditions):
                if i < count and i not in done:
                    rows.append(synthetic.save_image(study, run_id, i, arr, seed=seed, orient=p["orient"],
                                                     condition=c))
        gathered = [row for part in group.gather(rows) for row in part]
        if group.rank == 0:
            synthetic.add_images(study, run_id, gathered)
        made += len(gathered)
        n_done += len(gathered)
        seconds = seconds_before + time.monotonic() - started
        rate = (made_before + made) / max(1e-9, seconds)
        ctx.progress(n_done, count, message=f"{rate:.2f} images/s", images_per_s=rate, made=made_before + made,
                     sampling_s=seconds)
    elapsed = time.monotonic() - started
    total = len(synthetic.done_indices(study, run_id)) if group.rank == 0 else n_done
    ctx.log(f"run {run_id}: {made} images made in {elapsed:.1f} s; {total} in the run")
    made_all, seconds_all = made_before + made, seconds_before + elapsed
    return {"output": str(folder.resolve()), "run": run_id, "images": total, "made": made_all,
            "seconds": round(seconds_all, 2),
            "images_per_s": round(made_all / seconds_all, 4) if seconds_all > 0 else None,
            "batch": batch, "device": str(device), "processes": group.world}


def _plan(study: Study, cfg: Any, p: dict[str, Any], existing: dict[str, Any] | None):
    """(the run's SamplingPlan, its digest) for a conditional run, None otherwise; an extended or resumed run
    must draw its conditions from the same labels as its first images."""
    conditional = p.get("condition")
    if not conditional:
        return None
    from core.ddpm.conditioning import plan_digest, sampling_plan, spec_of  # imported on use: numpy

    plan = sampling_plan(study, spec_of(cfg), cfg.image_size, seed=p["seed"], fixed=conditional["fixed"],
                         per_condition=conditional["per_condition"])
    digest = plan_digest(plan)
    recorded = (existing or {}).get("params", {}).get("condition_plan_sha256")
    if recorded and recorded != digest:
        raise CspineError(f"the train split's labels changed since run {existing['id']} began (its conditions "
                          f"were drawn from them); sample into a new run")
    return plan, digest


def _block_conditions(plan, cfg: Any, block: list[int]):
    """The conditions of a block's images (stored format, network pixels) and their CondBatch; None for an
    unconditional run."""
    if plan is None:
        return [None] * len(block), None
    from core.ddpm.condition_net import batch_of  # imported on use: loads torch (start-up cost)

    conditions = [plan[0].condition(i) for i in block]
    return conditions, batch_of(plan[0].spec, conditions, cfg.image_size)


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


# ---------------------------------------------------------------------------------------------------
# Regeneration


def regenerate(study: Study, image_id: str, device: str = "cpu") -> Any:
    """Recompute a sampled image from its record (the pixels as stored, mirrored as recorded).

    The whole block the image was made in is recomputed with the run's batch size and thread count, as
    that is what makes the floating-point results identical.
    """
    import numpy as np
    import torch

    from core.ddpm.samplers import autocast_dtype, image_seed, sample_batch  # imported on use: loads torch

    row = study.store.query_one("SELECT * FROM synthetic_images WHERE id = ?", [image_id])
    if row is None:
        raise CspineError(f"no synthetic image {image_id!r} in {study.root}")
    run = synthetic.find_run(study, row["run_id"])
    if run["source"] != "sampled":
        raise CspineError(f"image {image_id} comes from an external set; it cannot be regenerated here")
    rp = run["params"]
    params = {"checkpoint_path": rp["checkpoint_path"], "weights": run["weights"], "seed": run["seed"],
              "condition": rp.get("condition")}
    dev = torch.device(device)
    old_threads = torch.get_num_threads()
    if dev.type == "cpu":
        torch.set_num_threads(int(rp["cpu_threads"]))
    try:
        cfg, unet = _load_network(study, params, dev)
        batch, idx = int(rp["batch"]), int(row["idx"])
        start = idx - idx % batch
        block = list(range(start, start + batch))
        plan = _plan(study, cfg, params, run)
        _conditions, cond = _block_conditions(plan, cfg, block)
        guidance = float(rp["condition"]["guidance_scale"]) if rp.get("condition") else 1.0
        images = sample_batch(unet, cfg, run["sampler"], run["steps"], [image_seed(run["seed"], i) for i in block],
                              dev, autocast_dtype(dev, rp.get("precision", "auto")), cond=cond, guidance=guidance)
    finally:
        torch.set_num_threads(old_threads)
    arr = images[idx - start]
    if row["flipped"]:
        arr = np.ascontiguousarray(arr[:, ::-1])
    return arr


__all__ = ["resolve_checkpoint", "sample_params", "default_run_name", "blocks", "pending_blocks", "run",
           "regenerate"]


# ---------------------------------------------------------------------------------------------------
# The demo stage


DEMO_IMAGES_PER_CHECKPOINT = 70
DEMO_SEED = 2510


def demo_checkpoints(study: Study, wanted: int = 3) -> list[dict[str, Any]]:
    """Up to `wanted` checkpoints of the demo's newest training job (params.demo) that has any: first, middle
    and last. A user's own training jobs in the demo study are not the demo's to sample."""
    rows = study.store.query(
        "SELECT c.job_id, c.step, c.path FROM checkpoints c JOIN jobs j ON j.id = c.job_id "
        "WHERE NOT c.deleted AND json_extract(j.params, '$.demo') = 'true' "
        "ORDER BY j.created_at DESC, c.job_id DESC, c.step")
    if not rows:
        return []
    newest = [r for r in rows if r["job_id"] == rows[0]["job_id"]]
    if len(newest) <= wanted:
        return newest
    picks = sorted({round(k * (len(newest) - 1) / (wanted - 1)) for k in range(wanted)})
    return [newest[i] for i in picks]


def demo_sample(study: Study, log, count: int = DEMO_IMAGES_PER_CHECKPOINT) -> list[str]:
    """The demo's sampling stage: `count` images from each of 3 checkpoints with the default fast sampler.

    Idempotent: run names are fixed (demo-s<step>), so a re-run extends or skips them.
    """
    from core.ddpm.samplers import DEFAULT_FAST_SAMPLER, DEFAULT_STEPS  # imported on use: loads torch (start-up cost)

    ckpts = demo_checkpoints(study)
    if not ckpts:
        log("no checkpoints yet: the sample stage needs the train stage first; skipped")
        return []
    runs = []
    for c in ckpts:
        name = f"demo-s{c['step']}"
        have = len(synthetic.done_indices(study, name)) if synthetic.get_run(study, name) else 0
        runs.append(name)
        if have >= count:
            continue
        log(f"sampling {count} images from checkpoint {c['step']} ({DEFAULT_FAST_SAMPLER} x "
            f"{DEFAULT_STEPS[DEFAULT_FAST_SAMPLER]} steps) into {name}")
        # One block of exactly `count` images: nothing is computed past the count.
        params = sample_params(study, checkpoint=c["step"], job=c["job_id"], count=count, seed=DEMO_SEED + c["step"],
                               run=name, device="cpu", batch=count)
        record = runner.run_job(study, runner.create_job(study, "sample", params), foreground=True)
        if record["state"] != "succeeded":
            raise CspineError(f"demo sampling from checkpoint {c['step']} ended {record['state']}: "
                              f"{record['error']}; run the demo again to continue")
    return runs


# ---------------------------------------------------------------------------------------------------
# What the sampling screen shows


def checkpoint_overview(study: Study) -> list[dict[str, Any]]:
    """Every checkpoint with its losses and FID (core.ddpm.checkpoints) and the images sampled from it so far."""
    counts = {(r["train_job"], r["checkpoint_step"]): r["n"] for r in study.store.query(
        "SELECT r.train_job, r.checkpoint_step, count(s.id) AS n FROM synthetic_runs r "
        "LEFT JOIN synthetic_images s ON s.run_id = r.id WHERE r.source = 'sampled' "
        "GROUP BY r.train_job, r.checkpoint_step")}
    rows = list_checkpoints(study)
    for r in rows:
        r["generated"] = int(counts.get((r["job"], r["step"]), 0))
    return rows


def newest_images(study: Study, run_id: str, limit: int = 6) -> list[Path]:
    """The highest-numbered finished PNGs of a run, read from its folder (no database)."""
    folder = synthetic.run_folder(study, run_id)
    if not folder.is_dir():
        return []
    names = sorted((p for p in folder.iterdir() if p.suffix == ".png" and p.stem.isdigit()),
                   key=lambda p: int(p.stem), reverse=True)
    return names[:limit]
