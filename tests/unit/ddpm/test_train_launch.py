"""Launching training: 2 CPU processes with gloo through accelerate, and the Slurm script with its USR1 trap."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
import torch

from core.ddpm.networks import get_preset
from core.ddpm.trainer import train_params
from core.jobs import control, launch, runner
from tests.factories.train import TINY
from tests.factories.waiting import wait_until

pytestmark = pytest.mark.timeout(420)


def adam_step_bound(beta1: float, beta2: float, t: int) -> float:
    """The largest |m_hat / sqrt(v_hat)| Adam can take at step t, whatever the gradients (eps only shrinks it).

    m_t = (1-b1) sum_i b1^(t-i) g_i and v_t = (1-b2) sum_i b2^(t-i) g_i^2; Cauchy-Schwarz on m_t gives
    |m_t| <= (1-b1) sqrt(sum_k (b1^2/b2)^k) sqrt(v_t / (1-b2)), and the bias corrections scale the ratio by
    sqrt(1-b2^t) / (1-b1^t). For the study's (0.9, 0.99) it is 1.000, 1.001, 1.003 at steps 1-3.
    """
    series = sum((beta1 * beta1 / beta2) ** k for k in range(t))
    return (1 - beta1) / (1 - beta2) ** 0.5 * series ** 0.5 * (1 - beta2 ** t) ** 0.5 / (1 - beta1 ** t)


def test_two_cpu_processes_train_like_one(train_study):
    from safetensors.torch import load_file

    study = train_study
    over = {**TINY, "max_steps": 3, "checkpoint_every": 3}
    one = runner.create_job(study, "train", train_params(study, preset="tiny", overrides=over, seed=5))
    assert runner.run_job(study, one)["state"] == "succeeded"
    two = runner.create_job(study, "train", train_params(study, preset="tiny", overrides=over, seed=5,
                                                       num_processes=2))
    record = launch.start(study, two, detach=False).record
    log = "\n".join(control.tail_log(study, two, 40))
    assert record["state"] == "succeeded", f"{record['error']}\n{log}"
    assert record["result"]["processes"] == 2  # a real world of 2, not two ranks both believing they are 0
    assert "2 process(es)" in log
    # Only rank 0 wrote bookkeeping: one row per checkpoint, one line per logged step.
    assert study.store.column("SELECT step FROM checkpoints WHERE job_id = ?", [two]) == [3]
    lines = (runner.run_dir(study, two) / "metrics.jsonl").read_text().splitlines()
    assert sum('"train_loss"' in line for line in lines) == 3
    # Each rank takes half of the same global batch, so both runs see the same gradients up to float32
    # reduction order, which depends on the CPU's kernels. Adam divides each gradient by its own running
    # size, so a weight whose gradient is within rounding of zero can still take a different step: no
    # tolerance on the largest difference can be tighter than what Adam allows. Two checks follow from that:
    # - the hard bound: from the same start, each run moves a weight by at most lr * B_t at step t (B_t from
    #   adam_step_bound), so no two runs with the same start, lr and step count differ by more than
    #   2 * lr * sum(B_t); different initial weights or an extra step exceed it;
    # - the bulk: where a gradient is well above its rounding error the two steps agree to float precision,
    #   so most weights differ by a few float32 ulps (an ulp of a weight below 1 is at most 1.2e-7), far below
    #   the 1% of one step (1e-5) allowed for the median; a rank training on its half batch alone would move
    #   most weights by a good part of a step. Measured on an AMD EPYC: largest difference 1.48e-4 (the
    #   hard bound is 6.0e-3), median 1.5e-8, 0.014% of the weights more than 1e-5 apart.
    cfg = get_preset("tiny")
    b1, b2 = cfg.adam_betas
    steps = over["max_steps"]
    hard = 2 * cfg.learning_rate * sum(adam_step_bound(b1, b2, t) for t in range(1, steps + 1))
    for sub in ("unet", "unet_ema"):  # the EMA starts after step 10: here it is a copy of the weights
        a = load_file(runner.run_dir(study, one) / "checkpoints/step-3" / sub / "diffusion_pytorch_model.safetensors")
        b = load_file(runner.run_dir(study, two) / "checkpoints/step-3" / sub / "diffusion_pytorch_model.safetensors")
        diff = torch.cat([(a[k] - b[k]).abs().flatten() for k in a])
        assert float(diff.max()) <= hard, (sub, float(diff.max()), hard)
        assert float(diff.median()) <= 0.01 * cfg.learning_rate, (sub, float(diff.median()))


def test_sbatch_script_requests_gpus_signal_requeue_and_launches(train_study):
    study = train_study
    job = runner.create_job(study, "train", train_params(study, preset="tiny", num_processes=2))
    script = launch.write_sbatch(study, job, gpus=2, time_limit="24:00:00", signal_lead_s=600)
    text = script.read_text()
    for needle in ("#SBATCH --gres=gpu:2", "#SBATCH --signal=B:USR1@600", "#SBATCH --requeue",
                   "#SBATCH --open-mode=append", "#SBATCH --time=24:00:00", "trap on_usr1 USR1",
                   'scontrol requeue "$SLURM_JOB_ID"', "accelerate.commands.launch --multi_gpu --num_processes 2",
                   f"core.jobs.runner run --study {study.root.resolve()} {job}"):
        assert needle in text, needle
    assert "ACCELERATE_USE_CPU" not in text  # the script is for GPU nodes
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    assert runner.job_record(study, job)["state"] == "queued"
    with pytest.raises(Exception, match="at least 30 s"):
        launch.write_sbatch(study, job, gpus=1, signal_lead_s=5)


@pytest.mark.slow
def test_sbatch_usr1_trap_checkpoints_pauses_and_requeues(train_study, tmp_path):
    """Run the generated script with bash (no Slurm): USR1 must pause the job and call scontrol requeue."""
    study = train_study
    job = runner.create_job(study, "train", train_params(
        study, preset="tiny", overrides={**TINY, "max_steps": 100000, "checkpoint_every": 100000}))
    script = launch.write_sbatch(study, job, gpus=1)
    fake = tmp_path / "bin"
    fake.mkdir()
    calls = tmp_path / "scontrol.calls"
    (fake / "scontrol").write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\n")
    (fake / "scontrol").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "SLURM_JOB_ID": "4242"}
    out = open(tmp_path / "slurm.out", "w")
    proc = subprocess.Popen(["bash", str(script)], env=env, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        wait_until(lambda: (control.job_status(study, job).get("step") or 0) >= 2, 240, "the job to train")
        os.kill(proc.pid, signal.SIGUSR1)
        assert proc.wait(timeout=180) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    record = runner.job_record(study, job)
    assert record["state"] == "paused", (tmp_path / "slurm.out").read_text()
    assert calls.read_text().split() == ["requeue", "4242"]
    step = control.job_status(study, job)["step"]
    assert (runner.run_dir(study, job) / "checkpoints" / f"step-{step}" / "state").is_dir()
