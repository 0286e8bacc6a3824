"""Fixtures for the sampling tests (and for any area that needs checkpoints or synthetic images).

`make_checkpoint` writes an untrained network, deterministically from a torch seed, as a training job's
checkpoint ``runs/<job>/checkpoints/step-<N>`` with its ``jobs`` and ``checkpoints`` rows: sampling does not
care whether the weights were trained, and no test here waits for training.
"""

from __future__ import annotations

from pathlib import Path

import pytest

# Smaller than the tiny preset (two levels, 16/32 channels) so 1000-step ancestral sampling stays fast.
MICRO = {"image_size": 32, "block_out_channels": (16, 32), "layers_per_block": 1,
         "down_block_types": ("DownBlock2D", "AttnDownBlock2D"), "up_block_types": ("AttnUpBlock2D", "UpBlock2D"),
         "attention_head_dim": 8}


def make_checkpoint(study, job_id: str = "train-fake", step: int = 200, *, torch_seed: int = 0,
                    ema_shift: float = 0.01, **overrides) -> Path:
    """Save a tiny model as a checkpoint of training job `job_id` and register it; returns its folder."""
    import torch

    from core.ddpm.networks import build_unet, get_preset, save_model_folder

    cfg = get_preset("tiny", **{**MICRO, **overrides})
    torch.manual_seed(torch_seed)
    unet = build_unet(cfg)
    ema = build_unet(cfg)
    ema.load_state_dict(unet.state_dict())
    with torch.no_grad():  # EMA weights that differ from the online ones, so `--weights` matters
        for p in ema.parameters():
            p.add_(ema_shift * torch.randn(p.shape, generator=torch.Generator().manual_seed(torch_seed + 1)))
    folder = study.runs_dir / job_id / "checkpoints" / f"step-{step}"
    save_model_folder(folder, unet, ema, cfg, step)
    with study.store.connect() as tx:
        if tx.scalar("SELECT count(*) FROM jobs WHERE id = ?", [job_id]) == 0:
            tx.execute("INSERT INTO jobs (id, kind, state, params) VALUES (?, 'train', 'succeeded', '{}')", [job_id])
        tx.execute("INSERT INTO checkpoints (job_id, step, path) VALUES (?, ?, ?)", [job_id, step, study.rel(folder)])
    return folder


@pytest.fixture
def sample_study(tmp_path: Path):
    """A study with one tiny checkpoint: training job 'train-fake', step 200."""
    from core.study import Study

    study = Study.create(tmp_path / "study", preset="tiny")
    make_checkpoint(study)
    return study


@pytest.fixture
def twin_study(tmp_path: Path):
    """A second study holding a bit-identical checkpoint (for comparing runs with the same seed)."""
    from core.study import Study

    study = Study.create(tmp_path / "twin", preset="tiny")
    make_checkpoint(study)
    return study
