"""DDPM training as a job (kind "train"), on accelerate: one process or N (DDP), CPU or CUDA.

One optimizer step = ``grad_accum`` micro-batches of ``batch_size`` images (split over the processes), the
reference's v-loss, gradient clipping, Adam, then the EMA update (core/ddpm/ema.py). Every ``checkpoint_every``
steps: validation loss on the held-out split with fixed timesteps and noise (``--data train``), FID/KID at
``fid_every``, then a checkpoint ``runs/<job>/checkpoints/step-<N>/``:

    state/          the complete accelerate state: model, optimizer, grad scaler, RNG of every process,
                    and the registered EMA and TrainState (step, loss window, data position)
    unet/ unet_ema/ scheduler/ cspine.json   plain diffusers folders (core.ddpm.networks.save_model_folder)

A checkpoint is written under a temporary name and renamed when complete, so a killed job never leaves a
half checkpoint; a resumed job continues from the newest complete one and, because every batch is a pure
function of (seed, step) (core/ddpm/data.py), repeats exactly what an uninterrupted run would do. Older
checkpoints beyond ``keep_last`` are deleted unless marked kept; those with an FID keep their model folders.
A stop request (signal, pause file, cancel, ``--time-limit``) is agreed on by all processes at the next step
boundary, answered with a checkpoint, and leaves the job paused. A non-finite loss fails the job, naming the
step and the last good checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.disk_errors import DiskFull, disk_full_path, write_failed_for_space
from core.errors import CspineError
from core.jobs.runner import JobContext, JobPaused, sync_metrics
from core.ddpm.networks import ModelConfig, get_preset
from core.study import Study

CHECKPOINT_PREFIX = "step-"
TRAIN_SETTINGS_EXTRA = ("seed", "data", "keep_last", "log_every", "fid_extractor", "fid_sampler", "fid_steps",
                        "inception_weights", "mixed_precision", "compile", "deterministic", "val_repeats")


# -------------------------------------------------------------------------------------------------
# Parameters


def resolve_config(study: Study, preset: str | None, overrides: dict[str, Any] | None = None) -> ModelConfig:
    """Preset <- study.toml [train] model settings <- flags (the later wins)."""
    section = dict(study.settings.get("train", {}))
    name = preset or section.pop("preset", None) or "paper"
    section.pop("preset", None)
    model_keys = set(get_preset(name).to_dict())
    from_toml = {k: v for k, v in section.items() if k in model_keys}
    unknown = set(section) - model_keys - set(TRAIN_SETTINGS_EXTRA)
    if unknown:
        raise CspineError(f"study.toml [train] has unknown settings {sorted(unknown)}; model settings are "
                          f"{sorted(model_keys - {'name', 'differences'})}, run settings {list(TRAIN_SETTINGS_EXTRA)}")
    return get_preset(name, **from_toml).with_overrides(**(overrides or {}))


def train_params(study: Study, *, preset: str | None = None, overrides: dict[str, Any] | None = None,
                 data: str = "train", seed: int | None = None, **run: Any) -> dict[str, Any]:
    """The job parameters of a training run: the resolved model config plus run settings (flags win)."""
    cfg = resolve_config(study, preset, overrides)
    check_config(cfg)
    if data not in ("train", "all"):
        raise CspineError(f"--data must be train or all, not {data!r}")
    toml = study.settings.get("train", {})
    defaults = {"keep_last": 5, "log_every": 10 if cfg.max_steps > 2000 else 1, "fid_extractor": "inception",
                "fid_sampler": None, "fid_steps": None, "inception_weights": None, "mixed_precision": "auto",
                "compile": False, "deterministic": False, "val_repeats": None, "num_processes": 1}
    settings = {k: run.get(k) if run.get(k) is not None else toml.get(k, v) for k, v in defaults.items()}
    settings["inception_weights"] = settings["inception_weights"] or study.get("fid", "inception_weights")
    for key, value in run.items():
        if key not in settings and value is not None:
            settings[key] = value
    return {"config": cfg.to_dict(), "data": data, "seed": int(seed if seed is not None else toml.get("seed", 0)),
            **settings}


def check_config(cfg: ModelConfig) -> None:
    """Reject settings that cannot train, naming the setting and what it must be."""
    positive = {"max_steps": cfg.max_steps, "checkpoint_every": cfg.checkpoint_every, "batch_size": cfg.batch_size,
                "grad_accum": cfg.grad_accum, "image_size": cfg.image_size, "learning_rate": cfg.learning_rate}
    for name, value in positive.items():
        if not value > 0:
            raise CspineError(f"{name} must be positive, not {value} (flag or study.toml [train] {name})")
    if cfg.fid_every < 0 or cfg.fid_samples < 0:
        raise CspineError("fid_every and fid_samples must be 0 (off) or positive")
    if cfg.fid_every and cfg.fid_samples == 1:
        raise CspineError("an FID needs at least 2 synthetic images (--fid-samples)")
    factor = 2 ** (len(cfg.block_out_channels) - 1)
    if cfg.image_size % factor:
        raise CspineError(f"image size {cfg.image_size} must be a multiple of {factor} for a UNet with "
                          f"{len(cfg.block_out_channels)} levels")


@dataclass
class TrainState:
    """Registered for checkpointing: everything the loop needs besides model, optimizer and EMA."""

    step: int = 0
    window: list[float] = field(default_factory=list)
    last_checkpoint: str | None = None
    best_fid: float | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "window": list(self.window), "last_checkpoint": self.last_checkpoint or "",
                "best_fid": -1.0 if self.best_fid is None else self.best_fid}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.window = [float(v) for v in state["window"]]
        self.last_checkpoint = state["last_checkpoint"] or None
        self.best_fid = None if float(state["best_fid"]) < 0 else float(state["best_fid"])


# -------------------------------------------------------------------------------------------------
# Checkpoints on disk


def checkpoint_root(run_folder: Path) -> Path:
    return Path(run_folder) / "checkpoints"


def complete_checkpoints(run_folder: Path) -> list[tuple[int, Path]]:
    out = []
    root = checkpoint_root(run_folder)
    if root.exists():
        for p in root.iterdir():
            if p.name.startswith(CHECKPOINT_PREFIX) and (p / "cspine.json").exists():
                try:
                    out.append((int(p.name[len(CHECKPOINT_PREFIX):]), p))
                except ValueError:
                    continue
    return sorted(out)


def latest_resumable(run_folder: Path) -> tuple[int, Path] | None:
    for step, path in reversed(complete_checkpoints(run_folder)):
        if (path / "state").is_dir():
            return step, path
    return None


def _truncate_metrics(path: Path, max_step: int) -> None:
    """Drop lines after the resumed checkpoint: those steps run again and write their lines anew."""
    if not path.exists():
        return
    keep = []
    for raw in path.read_bytes().splitlines(keepends=True):
        try:
            if json.loads(raw).get("step", 0) <= max_step:
                keep.append(raw)
        except json.JSONDecodeError:
            continue  # a torn last line from a killed writer
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(b"".join(keep))
    os.replace(tmp, path)


def prune_checkpoints(study: Study, job_id: str, run_folder: Path, keep_last: int) -> list[int]:
    """Delete checkpoints beyond the newest ``keep_last`` unless kept; FID checkpoints keep their models."""
    if keep_last <= 0:
        return []
    ckpts = complete_checkpoints(run_folder)
    old = ckpts[:-keep_last]
    if not old:
        return []
    rows = study.store.query("SELECT step, kept FROM checkpoints WHERE job_id = ?", [job_id])
    kept = {r["step"] for r in rows if r["kept"]}
    fid_steps = set(study.store.column("SELECT step FROM metrics WHERE job_id = ? AND name = 'fid'", [job_id]))
    deleted, trimmed = [], []
    for step, path in old:
        if step in kept:
            continue
        if step in fid_steps:
            if (path / "state").exists():
                shutil.rmtree(path / "state", ignore_errors=True)
                trimmed.append(step)
            continue
        deleted.append(step)
    if deleted:  # rows first: a kill in the middle of a deletion must not leave a row naming a half folder
        study.store.executemany("UPDATE checkpoints SET deleted = TRUE WHERE job_id = ? AND step = ?",
                                [[job_id, s] for s in deleted])
    for step, path in old:
        if step in deleted:
            shutil.rmtree(path, ignore_errors=True)
    return deleted


# -------------------------------------------------------------------------------------------------
# The runner


def _memory_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return float("nan")


def _make_accelerator(params: dict[str, Any]):
    import torch
    from accelerate import Accelerator

    cuda = torch.cuda.is_available() and not params.get("cpu")
    mp = params.get("mixed_precision") or "auto"
    if mp == "auto":
        mp = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "no"
    if not cuda and mp != "no":
        raise CspineError(f"mixed precision {mp} needs a CUDA GPU; this job runs on the CPU (use --precision no)")
    if params.get("deterministic"):
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        # On CUDA a few kernels have no deterministic variant: warn there (exact resume is promised on CPU).
        torch.use_deterministic_algorithms(True, warn_only=cuda)
        torch.backends.cudnn.benchmark = False
    elif cuda:
        torch.backends.cudnn.benchmark = True
    acc = Accelerator(cpu=not cuda, mixed_precision=mp)
    wanted = int(params.get("num_processes") or 1)
    if acc.num_processes != wanted:
        raise CspineError(f"expected {wanted} training processes but accelerate started {acc.num_processes}; "
                          f"launch multi-process runs through `cspine-tui train --num-processes N`")
    return acc, mp


def run(ctx: JobContext) -> dict[str, Any]:
    import torch

    from core.metrics import fid as metrics
    from core.ddpm.data import BatchPlan, ValPlan, load_images, to_model_range
    from core.ddpm.ema import EMA
    from core.ddpm.networks import build_unet, save_model_folder, training_scheduler
    from core.ddpm.evaluation import (diffusion_loss, generate_uint8, resolve_sampler, shard, validation_loss)

    params, study = ctx.params, ctx.study
    cfg = ModelConfig.from_dict(params["config"])
    seed = int(params.get("seed", 0))
    acc, precision = _make_accelerator(params)
    rank, world, device, main = acc.process_index, acc.num_processes, acc.device, acc.is_main_process
    if world > 1:  # one line per rank on the launcher's output (log.txt or Slurm's file): the ranks are distinct
        print(f"{ctx.job_id}: process {rank} of {world} ({acc.distributed_type})", flush=True)
    torch.manual_seed(seed)
    cuda = device.type == "cuda"
    mem_fmt = torch.channels_last if cuda else torch.contiguous_format

    train_set = load_images(study, params["data"], cfg.image_size)
    val_set = load_images(study, "val", cfg.image_size) if params["data"] == "train" else None
    fid_on = cfg.fid_every > 0 and cfg.fid_samples > 1
    extractor = sampler = None
    if fid_on:  # fail now, not at step 20,000, when the Inception weights are missing
        extractor = metrics.get_extractor(params.get("fid_extractor", "inception"), device,
                                          weights=params.get("inception_weights"))
        sampler = resolve_sampler(params.get("fid_sampler"), params.get("fid_steps"), cfg)

    model = build_unet(cfg).to(memory_format=mem_fmt)
    ema = EMA(model, cfg.ema_decay, cfg.ema_update_every, cfg.ema_update_after_step, cfg.ema_power)
    ema.model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate, betas=tuple(cfg.adam_betas))
    if params.get("compile") and cuda:
        model = torch.compile(model)
    model, optimizer = acc.prepare(model, optimizer)
    state = TrainState()
    acc.register_for_checkpointing(ema, state)
    alphas_cumprod = training_scheduler(cfg).alphas_cumprod.to(device)
    plan = BatchPlan(len(train_set), cfg.batch_size, cfg.grad_accum, seed, cfg.num_train_timesteps,
                     (cfg.channels, cfg.image_size, cfg.image_size), cfg.horizontal_flip, rank, world)
    vplan = ValPlan(len(val_set), cfg.num_train_timesteps, (cfg.channels, cfg.image_size, cfg.image_size),
                    params.get("val_repeats")) if val_set is not None else None
    pixels = train_set.pixels.to(device) if cuda else train_set.pixels

    resumed = latest_resumable(ctx.dir)
    if resumed:
        acc.load_state(str(resumed[1] / "state"))
        ctx.log(f"resumed from {resumed[1].name} (step {state.step})")
    if main:
        # Lines past the starting step run again (all of them when a kill came before the first checkpoint).
        _truncate_metrics(ctx.dir / "metrics.jsonl", state.step)
        for stale in checkpoint_root(ctx.dir).glob(".step-*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)
        known = set(study.store.column("SELECT step FROM checkpoints WHERE job_id = ?", [ctx.job_id]))
        unrecorded = [[ctx.job_id, s, study.rel(p)] for s, p in complete_checkpoints(ctx.dir) if s not in known]
        if unrecorded:  # a kill between a checkpoint's rename and its row: the folder is whole, record it
            study.store.executemany("INSERT INTO checkpoints (job_id, step, path) VALUES (?, ?, ?)", unrecorded)
            sync_metrics(study, ctx.job_id)
        prune_checkpoints(study, ctx.job_id, ctx.dir, int(params.get("keep_last", 5)))  # a kill may have cut it
        info = {"device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if cuda else ""),
                "precision": precision, "processes": world, "images": len(train_set),
                "val_images": len(val_set) if val_set is not None else 0, "preset": cfg.name}
        study.store.execute("UPDATE jobs SET device = ? WHERE id = ?", [info["device"], ctx.job_id])
        ctx.write_status(**info, max_steps=cfg.max_steps)
        ctx.log(f"training {cfg.name} on {len(train_set)} images ({params['data']}), {info['device']}, "
                f"precision {precision}, {world} process(es), batch {cfg.batch_size}x{cfg.grad_accum}")

    def autocast():
        return acc.autocast()

    def is_eval_step(step: int) -> tuple[bool, bool]:
        fid = fid_on and step % cfg.fid_every == 0
        return fid or step % cfg.checkpoint_every == 0 or step == cfg.max_steps, fid

    def agree(flag: bool) -> bool:
        if world == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=device)
        return bool(acc.reduce(t, reduction="sum").item() > 0)

    def save_checkpoint(step: int, extra_meta: dict[str, Any]) -> Path:
        root = checkpoint_root(ctx.dir)
        final, tmp = root / f"{CHECKPOINT_PREFIX}{step}", root / f".{CHECKPOINT_PREFIX}{step}.tmp"
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        previous, state.last_checkpoint = state.last_checkpoint, str(final)
        acc.wait_for_everyone()
        try:
            acc.save_state(str(tmp / "state"))
            acc.wait_for_everyone()
            if main:
                save_model_folder(tmp, acc.unwrap_model(model, keep_torch_compile=False), ema.model, cfg, step,
                                  extra={"job": ctx.job_id, "data": params["data"], "seed": seed,
                                         "dataset_hash": train_set.dataset_hash, **extra_meta})
        except Exception as exc:
            state.last_checkpoint = previous
            if main:  # no partial checkpoint stays behind; the last complete one is what a resume uses
                full = disk_full_path(exc) is not None or write_failed_for_space(tmp)
                shutil.rmtree(tmp, ignore_errors=True)
                if full:  # torch.save hides the errno ("unexpected pos ..."): say what happened
                    raise DiskFull(study.rel(final)) from exc
            raise
        if main:
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            study.store.execute(
                "INSERT INTO checkpoints (job_id, step, path) VALUES (?, ?, ?) ON CONFLICT (job_id, step) "
                "DO UPDATE SET path = excluded.path, deleted = FALSE", [ctx.job_id, step, study.rel(final)])
            sync_metrics(study, ctx.job_id)
            prune_checkpoints(study, ctx.job_id, ctx.dir, int(params.get("keep_last", 5)))
            ctx.log(f"checkpoint {final.name}")
        acc.wait_for_everyone()
        return final

    def evaluate(step: int, with_fid: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if vplan is not None:
            for name, net in (("val_loss", model), ("val_loss_ema", ema.model)):
                total, count = validation_loss(net, cfg, alphas_cumprod, val_set, vplan, device, rank=rank,
                                               world=world, memory_format=mem_fmt, autocast=autocast)
                t = acc.reduce(torch.tensor([total, float(count)], dtype=torch.float64, device=device), "sum")
                out[name] = float(t[0] / t[1])
            ctx.metric(step, val_loss={"value": out["val_loss"], "pairs": len(vplan), "repeats": vplan.repeats,
                                       "weights": "online"},
                       val_loss_ema={"value": out["val_loss_ema"], "pairs": len(vplan), "weights": "ema"})
        if with_fid:
            t0 = time.monotonic()
            mine = shard(cfg.fid_samples, rank, world)
            feats = []
            for i in range(0, len(mine), int(params.get("fid_batch", 64))):
                idx = mine[i:i + int(params.get("fid_batch", 64))]
                imgs = generate_uint8(ema.model, cfg, sampler, idx, seed, device)
                feats.append(extractor(imgs.float() / 255.0))
            local = torch.cat(feats) if feats else torch.zeros((0, extractor.dim), dtype=torch.float64)
            per = -(-cfg.fid_samples // world)
            padded = torch.zeros((per, extractor.dim), dtype=torch.float64)
            padded[:len(local)] = local
            gathered = acc.gather(padded.to(device)).cpu()
            if main:
                fake = torch.cat([gathered[r * per: r * per + len(shard(cfg.fid_samples, r, world))]
                                  for r in range(world)]).numpy()
                real_set = load_images(study, params.get("fid_real", "all"), cfg.image_size)
                real = metrics.real_statistics(study.cache_dir, real_set.dataset_hash, real_set.pixels, extractor)
                res = metrics.fid_kid(real, fake)
                details = {**metrics.describe(extractor), **sampler.describe(), "n": res["n_fake"],
                           "n_real": res["n_real"], "real": real_set.selection, "weights": "ema",
                           "seconds": round(time.monotonic() - t0, 1), "real_stats_key": res["real_stats_key"]}
                ctx.metric(step, fid={"value": res["fid"], **details},
                           kid={"value": res["kid"], "std": res["kid_std"], "subset_size": res["kid_subset_size"],
                                **details})
                out["fid"] = res["fid"]
                state.best_fid = res["fid"] if state.best_fid is None else min(state.best_fid, res["fid"])
                ctx.log(f"step {step}: FID {res['fid']:.3f} KID {res['kid']:.5f} ({details['extractor']}, "
                        f"{sampler.name}, n={res['n_fake']}, {details['seconds']} s)")
            acc.wait_for_everyone()
        return out

    model.train()
    fault_step = params.get("_test_sigkill_at_step")
    window: deque[float] = deque(state.window, maxlen=max(int(params.get("log_every", 1)), 1))
    since_log: list[float] = []
    t_last, rate = time.monotonic(), None
    stop = False
    steps_this_run = 0
    while state.step < cfg.max_steps:
        wants_stop = ctx.should_stop()
        if wants_stop and steps_this_run == 0 and (ctx.stop_reason or "").startswith("time limit"):
            wants_stop = False  # a limit shorter than the start-up still makes progress on every restart
        if agree(wants_stop):
            stop = True
            break
        step = state.step
        loss_sum = 0.0
        for micro in range(cfg.grad_accum):
            b = plan.batch_at(step, micro)
            x0 = to_model_range(pixels[b.indices.to(pixels.device)]).to(device)
            flip = b.flip.to(device).view(-1, 1, 1, 1)
            x0 = torch.where(flip, x0.flip(-1), x0).contiguous(memory_format=mem_fmt)
            noise = b.noise.to(device).contiguous(memory_format=mem_fmt)
            t = b.timesteps.to(device)
            sync = micro == cfg.grad_accum - 1
            with (acc.no_sync(model) if not sync and world > 1 else _Null()):
                loss = diffusion_loss(model, cfg, alphas_cumprod, x0, noise, t) / cfg.grad_accum
                acc.backward(loss)
            loss_sum += float(loss.detach())
        acc.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ema.update(acc.unwrap_model(model, keep_torch_compile=False))
        loss_value = float(acc.reduce(torch.tensor([loss_sum], device=device), "mean").item()) if world > 1 \
            else loss_sum
        state.step = step + 1
        steps_this_run += 1
        if not torch.isfinite(torch.tensor(loss_value)):
            last = state.last_checkpoint
            raise CspineError(
                f"training diverged: the loss was {loss_value} at step {state.step}; the last good checkpoint is "
                f"{study.rel(Path(last)) if last else 'none (no checkpoint yet)'}; lower the learning rate "
                f"(--lr) and start again, or resume to retry from that checkpoint")
        window.append(loss_value)
        state.window = list(window)
        since_log.append(loss_value)
        now = time.monotonic()
        dt, t_last = now - t_last, now
        rate = 1 / dt if rate is None else 0.9 * rate + 0.1 / max(dt, 1e-9)
        s = state.step
        if s % max(int(params.get("log_every", 1)), 1) == 0 or s == cfg.max_steps:
            ctx.metric(s, train_loss={"value": sum(since_log) / len(since_log), "window": len(since_log)},
                       steps_per_s=rate)
            since_log = []
        ctx.progress(s, cfg.max_steps, step=s, message=f"loss {loss_value:.4f}", steps_per_s=round(rate, 3),
                     images_per_s=round(rate * cfg.batch_size * cfg.grad_accum, 2),
                     eta_s=round((cfg.max_steps - s) / rate) if rate else None,
                     memory_mb=round(_memory_mb(device), 1))
        do_ckpt, do_fid = is_eval_step(s)
        if do_ckpt:
            found = evaluate(s, do_fid)
            save_checkpoint(s, {k: v for k, v in found.items()})
        if fault_step is not None and s == int(fault_step) and main and not ctx.resumed:
            os.kill(os.getpid(), signal.SIGKILL)  # test hook: die like an OOM kill or a lost node (first run only)

    if stop:
        s = state.step
        if state.last_checkpoint is None or not state.last_checkpoint.endswith(f"{CHECKPOINT_PREFIX}{s}"):
            save_checkpoint(s, {"reason": ctx.stop_reason or "stop requested"})
        _finish(acc)
        raise JobPaused(f"{ctx.stop_reason or 'stop requested'}; checkpoint at step {s}")
    if main:
        sync_metrics(study, ctx.job_id)
    _finish(acc)
    final = state.last_checkpoint
    return {"output": study.rel(Path(final)) if final else None, "steps": state.step, "preset": cfg.name,
            "data": params["data"], "best_fid": state.best_fid, "processes": world, "precision": precision}


def _finish(acc) -> None:
    acc.wait_for_everyone()
    acc.end_training()


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


# -------------------------------------------------------------------------------------------------
# The demo's training stage

# Tiny preset, sized for a 2-core CPU: 3 checkpoints for the reader study and one FID evaluation.
DEMO_TRAIN = {"max_steps": 150, "checkpoint_every": 50, "fid_every": 150, "fid_samples": 48, "batch_size": 8}
DEMO_TRAIN_SEED = 2510


def demo_train(study: Study, log) -> str | None:
    """Train the tiny preset on the ingested phantoms (idempotent: resumes or skips a finished demo run)."""
    from core.jobs import runner
    demo_jobs = [r for r in study.store.query(
        "SELECT id, state, params FROM jobs WHERE kind = 'train' ORDER BY created_at DESC, id DESC")
        if json.loads(r["params"] or "{}").get("demo")]
    if demo_jobs and demo_jobs[0]["state"] == "succeeded":
        return demo_jobs[0]["id"]
    if not study.store.scalar("SELECT count(*) FROM splits WHERE split = 'train'"):
        log("no ingested images with a train split: the train stage needs the ingest stage first; skipped")
        return None
    if demo_jobs and demo_jobs[0]["state"] in ("paused", "failed", "queued"):
        job_id = demo_jobs[0]["id"]
        log(f"resuming demo training job {job_id}")
    else:
        params = train_params(study, preset="tiny", overrides=DEMO_TRAIN, seed=DEMO_TRAIN_SEED, keep_last=0,
                              fid_extractor="auto", val_repeats=2, demo=True)
        job_id = runner.create_job(study, "train", params)
        log(f"training the tiny preset for {DEMO_TRAIN['max_steps']} steps (checkpoints every "
            f"{DEMO_TRAIN['checkpoint_every']}, FID with {DEMO_TRAIN['fid_samples']} samples at the end)")
    record = runner.run_job(study, job_id, foreground=True)
    if record["state"] != "succeeded":
        raise CspineError(f"demo training ended {record['state']}: {record['error']}; run the demo again to "
                          f"resume it")
    fid = study.store.query_one("SELECT value, details FROM metrics WHERE job_id = ? AND name = 'fid' "
                                "ORDER BY step DESC LIMIT 1", [job_id])
    if fid:
        details = json.loads(fid["details"])
        label = "Inception FID" if details.get("extractor") == "inception" else \
            "proxy FID (Inception weights absent; NOT Inception FID)"
        log(f"{label} of the last checkpoint: {fid['value']:.2f} (n={details.get('n')}, {details.get('sampler')})")
    return job_id
