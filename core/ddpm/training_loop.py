"""The training loop of a "train" job, on accelerate: one process or N (DDP), CPU or CUDA.

One optimizer step = ``grad_accum`` micro-batches of ``batch_size`` images (split over the processes), the
reference's v-loss, gradient clipping, Adam, then the EMA update (core/ddpm/ema.py). Every ``checkpoint_every``
steps: validation loss on the held-out split with fixed timesteps and noise (``--data train``), FID/KID at
``fid_every``, then a checkpoint ``runs/<job>/checkpoints/step-<N>/`` (core/ddpm/checkpoints.py):

    state/          the complete accelerate state: model, optimizer, grad scaler, RNG of every process,
                    and the registered EMA and TrainState (step, loss window, data position)
    unet/ unet_ema/ scheduler/ cspine.json   the networks as safetensors with a config that rebuilds them
                    (core.ddpm.networks.save_model_folder)

A checkpoint is written under a temporary name and renamed when complete, so a killed job never leaves a
half checkpoint; a resumed job continues from the newest complete one and, because every batch is a pure
function of (seed, step) (core/ddpm/data.py), repeats exactly what an uninterrupted run would do. Older
checkpoints beyond ``keep_last`` are pruned (core.ddpm.checkpoints.prune_checkpoints).
A stop request (signal, pause file, cancel, ``--time-limit``) is agreed on by all processes at the next step
boundary, answered with a checkpoint, and leaves the job paused. A non-finite loss fails the job, naming the
step and the last good checkpoint.

This module imports torch, accelerate and the networks at once; core/ddpm/trainer.py (the job's parameters,
imported by the UI) loads it only when a job runs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections import deque
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator

from core.ddpm.checkpoints import (
    CHECKPOINT_PREFIX,
    checkpoint_root,
    complete_checkpoints,
    latest_resumable,
    prune_checkpoints,
)
from core.ddpm.condition_net import CondTable
from core.ddpm.conditioning import LabelTable, canonical_sizes, check_labels_unchanged, label_table, spec_of
from core.ddpm.data import BatchPlan, ValPlan, image_rows, load_images, to_model_range
from core.ddpm.ema import EMA
from core.ddpm.evaluation import diffusion_loss, generate_uint8, resolve_sampler, shard, validation_loss
from core.ddpm.networks import ModelConfig, build_unet, save_model_folder, training_scheduler
from core.disk_errors import DiskFull, disk_full_path, write_failed_for_space
from core.errors import CspineError
from core.jobs.runner import JobContext, JobPaused, sync_metrics
from core.metrics import fid as metrics


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


class Trainer:
    """One training job: set up (data, networks, accelerate, resume), then step, evaluate and checkpoint."""

    def __init__(self, ctx: JobContext) -> None:
        self.ctx, self.study, self.params = ctx, ctx.study, ctx.params
        self.cfg = ModelConfig.from_dict(self.params["config"])
        self.seed = int(self.params.get("seed", 0))
        self.keep_last = int(self.params.get("keep_last", 5))
        self.keep_ema = bool(self.params.get("keep_ema", False))
        self.log_every = max(int(self.params.get("log_every", 1)), 1)
        self.acc, self.precision = make_accelerator(self.params)
        acc = self.acc
        self.rank, self.world, self.device = acc.process_index, acc.num_processes, acc.device
        self.main = acc.is_main_process
        if self.world > 1:  # one line per rank on the launcher's output (log.txt or Slurm's file)
            print(f"{ctx.job_id}: process {self.rank} of {self.world} ({acc.distributed_type})", flush=True)
        torch.manual_seed(self.seed)
        self.cuda = self.device.type == "cuda"
        self.mem_fmt = torch.channels_last if self.cuda else torch.contiguous_format
        self.state = TrainState()
        self._load_data()
        self._prepare_fid()
        self._build()

    # -- set-up ------------------------------------------------------------------------------------
    def _load_data(self) -> None:
        cfg, data = self.cfg, self.params["data"]
        self.spec = spec_of(cfg)
        train_only = val_only = None
        if self.spec is not None:
            train_labels = self._labels(data, check=True)
            train_only = train_labels.ids
        self.train_set = load_images(self.study, data, cfg.image_size, only=train_only,
                                     subset_note=self._subset_note())
        self.val_set = None
        if data == "train":
            val_labels = self._labels("val") if self.spec is not None else None
            val_only = val_labels.ids if val_labels is not None else None
            # A conditional run without labelled validation images has no validation loss (said in the log).
            if val_only is None or val_only:
                self.val_set = load_images(self.study, "val", cfg.image_size, only=val_only,
                                           subset_note=self._subset_note())
        self.cond_train = self.cond_val = None
        if self.spec is not None:
            self.cond_train = self._cond_table(train_labels, self.train_set.ids)
            if self.val_set is not None:
                self.cond_val = self._cond_table(val_labels, self.val_set.ids)
            if self.main:
                val = "" if data != "train" else "; no labelled val image, so no validation loss" \
                    if self.val_set is None else f"; validation on {len(self.val_set)} labelled val images"
                self.ctx.log(f"conditioned on {self.spec.describe()}: training on the {len(self.train_set)} of "
                             f"{self.spec.selection_images} {data} images that carry those labels{val}")
        shape = (cfg.channels, cfg.image_size, cfg.image_size)
        self.plan = BatchPlan(len(self.train_set), cfg.batch_size, cfg.grad_accum, self.seed,
                              cfg.num_train_timesteps, shape, cfg.horizontal_flip, self.rank, self.world,
                              cond_drop=self.spec.drop if self.spec is not None else None)
        self.vplan = ValPlan(len(self.val_set), cfg.num_train_timesteps, shape, self.params.get("val_repeats")) \
            if self.val_set is not None else None
        self.pixels = self.train_set.pixels.to(self.device) if self.cuda else self.train_set.pixels

    def _subset_note(self) -> str:
        return f"labelled:{self.spec.labels_sha256}" if self.spec is not None else ""

    def _labels(self, selection: str, check: bool = False) -> LabelTable:
        """The labels of a selection's images; the training selection's must be those the run was set up with."""
        ids = [r["id"] for r in image_rows(self.study, selection)]
        table = label_table(self.study, self.spec.attributes, self.spec.points, ids)
        if check:
            check_labels_unchanged(self.spec, table)
        return table

    def _cond_table(self, table: LabelTable, ids: list[str]) -> CondTable:
        """Class labels and keypoints (in the network's pixels) in the order of the loaded images."""
        spec, size = self.spec, self.cfg.image_size
        classes = [spec.class_index(table.values[i]) for i in ids] if spec.attributes else None
        points = None
        if spec.points:
            side = canonical_sizes(self.study, ids)
            points = np.stack([table.keypoints[i] * (size / side[i]) for i in ids])
        return CondTable(spec, classes, points, size)

    def _prepare_fid(self) -> None:
        """Fail now, not at step 20,000, when the FID's extractor weights are missing."""
        self.fid_on = self.cfg.fid_every > 0 and self.cfg.fid_samples > 1
        self.extractor = self.sampler = None
        if self.fid_on:
            self.extractor = metrics.get_extractor(self.params.get("fid_extractor", "inception"), self.device,
                                                   weights=self.params.get("inception_weights"))
            self.sampler = resolve_sampler(self.params.get("fid_sampler"), self.params.get("fid_steps"), self.cfg)

    def _build(self) -> None:
        cfg, acc = self.cfg, self.acc
        model = build_unet(cfg).to(memory_format=self.mem_fmt)
        self.ema = EMA(model, cfg.ema_decay, cfg.ema_update_every, cfg.ema_update_after_step, cfg.ema_power)
        self.ema.model.to(self.device)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate, betas=tuple(cfg.adam_betas))
        if self.params.get("compile") and self.cuda:
            model = torch.compile(model)
        self.model, self.optimizer = acc.prepare(model, optimizer)
        acc.register_for_checkpointing(self.ema, self.state)
        self.alphas_cumprod = training_scheduler(cfg).alphas_cumprod.to(self.device)

    def _resume(self) -> None:
        resumed = latest_resumable(self.ctx.dir)
        if resumed:
            self.acc.load_state(str(resumed[1] / "state"))
            self.ctx.log(f"resumed from {resumed[1].name} (step {self.state.step})")
        if self.main:
            self._tidy_run_folder()
            self._announce()

    def _tidy_run_folder(self) -> None:
        """Repair what a kill may have left: metrics past the resumed step, temporaries, unrecorded checkpoints."""
        study, ctx = self.study, self.ctx
        # Lines past the starting step run again (all of them when a kill came before the first checkpoint).
        truncate_metrics(ctx.dir / "metrics.jsonl", self.state.step)
        for stale in checkpoint_root(ctx.dir).glob(".step-*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)
        known = set(study.store.column("SELECT step FROM checkpoints WHERE job_id = ?", [ctx.job_id]))
        unrecorded = [[ctx.job_id, s, study.rel(p)] for s, p in complete_checkpoints(ctx.dir) if s not in known]
        if unrecorded:  # a kill between a checkpoint's rename and its row: the folder is whole, record it
            study.store.executemany("INSERT INTO checkpoints (job_id, step, path) VALUES (?, ?, ?)", unrecorded)
            sync_metrics(study, ctx.job_id)
        self._prune()  # a kill may have cut the last pruning short

    def _announce(self) -> None:
        cfg, device = self.cfg, self.device
        info = {"device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if self.cuda else ""),
                "precision": self.precision, "processes": self.world, "images": len(self.train_set),
                "val_images": len(self.val_set) if self.val_set is not None else 0, "preset": cfg.name}
        self.study.store.execute("UPDATE jobs SET device = ? WHERE id = ?", [info["device"], self.ctx.job_id])
        self.ctx.write_status(**info, max_steps=cfg.max_steps)
        self.ctx.log(f"training {cfg.name} on {len(self.train_set)} images ({self.params['data']}), "
                     f"{info['device']}, precision {self.precision}, {self.world} process(es), "
                     f"batch {cfg.batch_size}x{cfg.grad_accum}")

    def _prune(self) -> None:
        prune_checkpoints(self.study, self.ctx.job_id, self.ctx.dir, self.keep_last, keep_ema=self.keep_ema)

    # -- the loop -------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        self._resume()
        self.model.train()
        fault_step = self.params.get("_test_sigkill_at_step")
        self.window: deque[float] = deque(self.state.window, maxlen=self.log_every)
        self.since_log: list[float] = []
        self.t_last, self.rate = time.monotonic(), None
        steps_this_run = 0
        while self.state.step < self.cfg.max_steps:
            if self._agree(self._wants_stop(steps_this_run)):
                self._pause()
            loss_value = self._train_step()
            steps_this_run += 1
            self._check_finite(loss_value)
            self._record(loss_value)
            s = self.state.step
            do_ckpt, do_fid = self._is_eval_step(s)
            if do_ckpt:
                self.save_checkpoint(s, self.evaluate(s, do_fid))
            if fault_step is not None and s == int(fault_step) and self.main and not self.ctx.resumed:
                os.kill(os.getpid(), signal.SIGKILL)  # test hook: die like an OOM kill or a lost node (first run)
        if self.main:
            sync_metrics(self.study, self.ctx.job_id)
        self._finish()
        final = self.state.last_checkpoint
        return {"output": self.study.rel(Path(final)) if final else None, "steps": self.state.step,
                "preset": self.cfg.name, "data": self.params["data"], "best_fid": self.state.best_fid,
                "processes": self.world, "precision": self.precision}

    def _wants_stop(self, steps_this_run: int) -> bool:
        if self.ctx.should_stop():
            # A time limit shorter than the start-up still makes progress on every restart.
            return steps_this_run > 0 or not (self.ctx.stop_reason or "").startswith("time limit")
        return False

    def _pause(self) -> None:
        """Answer a stop request with a checkpoint at this step and leave the job paused."""
        s, reason = self.state.step, self.ctx.stop_reason or "stop requested"
        if self.state.last_checkpoint is None or not self.state.last_checkpoint.endswith(f"{CHECKPOINT_PREFIX}{s}"):
            self.save_checkpoint(s, {"reason": reason})
        self._finish()
        raise JobPaused(f"{reason}; checkpoint at step {s}")

    def _agree(self, flag: bool) -> bool:
        """True on every process when any process says so (a stop must happen at the same step everywhere)."""
        if self.world == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        return bool(self.acc.reduce(t, reduction="sum").item() > 0)

    def _train_step(self) -> float:
        """One optimizer step over grad_accum micro-batches; returns the loss (mean over processes)."""
        cfg, acc, model = self.cfg, self.acc, self.model
        step = self.state.step
        loss_sum = 0.0
        for micro in range(cfg.grad_accum):
            sync = micro == cfg.grad_accum - 1
            with acc.no_sync(model) if not sync and self.world > 1 else nullcontext():
                loss = self._micro_batch_loss(step, micro) / cfg.grad_accum
                acc.backward(loss)
            loss_sum += float(loss.detach())
        acc.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.update(acc.unwrap_model(model, keep_torch_compile=False))
        self.state.step = step + 1
        if self.world > 1:
            return float(acc.reduce(torch.tensor([loss_sum], device=self.device), "mean").item())
        return loss_sum

    def _micro_batch_loss(self, step: int, micro: int) -> torch.Tensor:
        b, device, fmt = self.plan.batch_at(step, micro), self.device, self.mem_fmt
        x0 = to_model_range(self.pixels[b.indices.to(self.pixels.device)]).to(device)
        flip = b.flip.to(device).view(-1, 1, 1, 1)
        x0 = torch.where(flip, x0.flip(-1), x0).contiguous(memory_format=fmt)
        noise = b.noise.to(device).contiguous(memory_format=fmt)
        cond = self.cond_train.batch(b.indices, b.flip, b.keep, device) if self.cond_train is not None else None
        return diffusion_loss(self.model, self.cfg, self.alphas_cumprod, x0, noise, b.timesteps.to(device),
                              cond=cond)

    def _check_finite(self, loss_value: float) -> None:
        if torch.isfinite(torch.tensor(loss_value)):
            return
        last = self.state.last_checkpoint
        raise CspineError(
            f"training diverged: the loss was {loss_value} at step {self.state.step}; the last good checkpoint "
            f"is {self.study.rel(Path(last)) if last else 'none (no checkpoint yet)'}; lower the learning rate "
            f"(--lr) and start again, or resume to retry from that checkpoint")

    def _record(self, loss_value: float) -> None:
        """The loss window, the logged mean every log_every steps, and progress with speed and memory."""
        cfg, s = self.cfg, self.state.step
        self.window.append(loss_value)
        self.state.window = list(self.window)
        self.since_log.append(loss_value)
        now = time.monotonic()
        dt, self.t_last = now - self.t_last, now
        rate = self.rate = 1 / dt if self.rate is None else 0.9 * self.rate + 0.1 / max(dt, 1e-9)
        if s % self.log_every == 0 or s == cfg.max_steps:
            self.ctx.metric(s, train_loss={"value": sum(self.since_log) / len(self.since_log),
                                           "window": len(self.since_log)}, steps_per_s=rate)
            self.since_log = []
        self.ctx.progress(s, cfg.max_steps, step=s, message=f"loss {loss_value:.4f}", steps_per_s=round(rate, 3),
                          images_per_s=round(rate * cfg.batch_size * cfg.grad_accum, 2),
                          eta_s=round((cfg.max_steps - s) / rate) if rate else None,
                          memory_mb=round(memory_mb(self.device), 1))

    def _is_eval_step(self, step: int) -> tuple[bool, bool]:
        """(checkpoint at this step, FID at this step)."""
        fid = self.fid_on and step % self.cfg.fid_every == 0
        return fid or step % self.cfg.checkpoint_every == 0 or step == self.cfg.max_steps, fid

    def _finish(self) -> None:
        self.acc.wait_for_everyone()
        self.acc.end_training()

    # -- evaluation -----------------------------------------------------------------------------
    def evaluate(self, step: int, with_fid: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.vplan is not None:
            out.update(self._validation(step))
        if with_fid:
            out.update(self._fid(step))
        return out

    def _validation(self, step: int) -> dict[str, float]:
        out = {}
        for name, net in (("val_loss", self.model), ("val_loss_ema", self.ema.model)):
            total, count = validation_loss(net, self.cfg, self.alphas_cumprod, self.val_set, self.vplan,
                                           self.device, rank=self.rank, world=self.world,
                                           memory_format=self.mem_fmt, autocast=self.acc.autocast,
                                           conditions=self.cond_val)
            t = self.acc.reduce(torch.tensor([total, float(count)], dtype=torch.float64, device=self.device), "sum")
            out[name] = float(t[0] / t[1])
        vplan = self.vplan
        self.ctx.metric(step, val_loss={"value": out["val_loss"], "pairs": len(vplan), "repeats": vplan.repeats,
                                        "weights": "online"},
                        val_loss_ema={"value": out["val_loss_ema"], "pairs": len(vplan), "weights": "ema"})
        return out

    def _fid(self, step: int) -> dict[str, float]:
        """FID/KID of the EMA network's samples, each process sampling its share; recorded by the main one."""
        cfg, world, extractor = self.cfg, self.world, self.extractor
        t0 = time.monotonic()
        mine = shard(cfg.fid_samples, self.rank, world)
        batch = int(self.params.get("fid_batch", 64))
        feats = []
        for i in range(0, len(mine), batch):
            imgs = generate_uint8(self.ema.model, cfg, self.sampler, mine[i:i + batch], self.seed, self.device,
                                  conditions=self.cond_train)
            feats.append(extractor(imgs.float() / 255.0))
        local = torch.cat(feats) if feats else torch.zeros((0, extractor.dim), dtype=torch.float64)
        per = -(-cfg.fid_samples // world)
        padded = torch.zeros((per, extractor.dim), dtype=torch.float64)
        padded[:len(local)] = local
        gathered = self.acc.gather(padded.to(self.device)).cpu()
        out = {}
        if self.main:
            fake = torch.cat([gathered[r * per: r * per + len(shard(cfg.fid_samples, r, world))]
                              for r in range(world)]).numpy()
            out["fid"] = self._record_fid(step, fake, t0)
        self.acc.wait_for_everyone()
        return out

    def _record_fid(self, step: int, fake, t0: float) -> float:
        study, sampler = self.study, self.sampler
        real_set = load_images(study, self.params.get("fid_real", "all"), self.cfg.image_size)
        real = metrics.real_statistics(study.cache_dir, real_set.dataset_hash, real_set.pixels, self.extractor)
        res = metrics.fid_kid(real, fake)
        details = {**metrics.describe(self.extractor), **sampler.describe(), "n": res["n_fake"],
                   "n_real": res["n_real"], "real": real_set.selection, "weights": "ema",
                   "seconds": round(time.monotonic() - t0, 1), "real_stats_key": res["real_stats_key"]}
        self.ctx.metric(step, fid={"value": res["fid"], **details},
                        kid={"value": res["kid"], "std": res["kid_std"], "subset_size": res["kid_subset_size"],
                             **details})
        best = self.state.best_fid
        self.state.best_fid = res["fid"] if best is None else min(best, res["fid"])
        self.ctx.log(f"step {step}: FID {res['fid']:.3f} KID {res['kid']:.5f} ({details['extractor']}, "
                     f"{sampler.name}, n={res['n_fake']}, {details['seconds']} s)")
        return res["fid"]

    # -- checkpoints ----------------------------------------------------------------------------
    def save_checkpoint(self, step: int, extra_meta: dict[str, Any]) -> Path:
        """Write step-<N> under a temporary name, rename it when whole, record it and prune older ones."""
        root = checkpoint_root(self.ctx.dir)
        final, tmp = root / f"{CHECKPOINT_PREFIX}{step}", root / f".{CHECKPOINT_PREFIX}{step}.tmp"
        if self.main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        previous, self.state.last_checkpoint = self.state.last_checkpoint, str(final)
        self.acc.wait_for_everyone()
        try:
            self._write_checkpoint(tmp, step, extra_meta)
        except Exception as exc:
            self.state.last_checkpoint = previous
            if self.main:  # no partial checkpoint stays behind; the last complete one is what a resume uses
                full = disk_full_path(exc) is not None or write_failed_for_space(tmp)
                shutil.rmtree(tmp, ignore_errors=True)
                if full:  # torch.save hides the errno ("unexpected pos ..."): say what happened
                    raise DiskFull(self.study.rel(final)) from exc
            raise
        if self.main:
            self._publish_checkpoint(tmp, final, step)
        self.acc.wait_for_everyone()
        return final

    def _write_checkpoint(self, tmp: Path, step: int, extra_meta: dict[str, Any]) -> None:
        self.acc.save_state(str(tmp / "state"))
        self.acc.wait_for_everyone()
        if self.main:
            save_model_folder(tmp, self.acc.unwrap_model(self.model, keep_torch_compile=False), self.ema.model,
                              self.cfg, step, extra={"job": self.ctx.job_id, "data": self.params["data"],
                                                     "seed": self.seed, "dataset_hash": self.train_set.dataset_hash,
                                                     **extra_meta})

    def _publish_checkpoint(self, tmp: Path, final: Path, step: int) -> None:
        study, job_id = self.study, self.ctx.job_id
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        study.store.execute(
            "INSERT INTO checkpoints (job_id, step, path) VALUES (?, ?, ?) ON CONFLICT (job_id, step) "
            "DO UPDATE SET path = excluded.path, deleted = FALSE", [job_id, step, study.rel(final)])
        sync_metrics(study, job_id)
        self._prune()
        self.ctx.log(f"checkpoint {final.name}")


# -------------------------------------------------------------------------------------------------
# Helpers


def make_accelerator(params: dict[str, Any]) -> tuple[Accelerator, str]:
    """The Accelerator for a job's settings and the precision it resolved ('auto' -> bf16/fp16/no)."""
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


def memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return float("nan")


def truncate_metrics(path: Path, max_step: int) -> None:
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
