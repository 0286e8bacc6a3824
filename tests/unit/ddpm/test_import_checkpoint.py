"""import-checkpoint: a network trained a few steps by lucidrains' own Trainer on phantoms is imported; our
network gives lucidrains' output, our ancestral sampler matches its p_sample_loop in distribution, and files
that are not the study's diffusion are refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.timeout(900)

# A tiny Unet: one head of 8 keeps lucidrains' default attention (4 x 32) from dominating a CPU forward.
UNET = {"dim": 8, "dim_mults": (1, 2), "channels": 1, "attn_heads": 1, "attn_dim_head": 8, "flash_attn": True}


@pytest.fixture(scope="module")
def trainer_file(tmp_path_factory) -> Path:
    """model-1.pt written by lucidrains' Trainer.save after 2 steps on 100 phantom PNGs of 32 px."""
    import denoising_diffusion_pytorch.denoising_diffusion_pytorch as library
    from denoising_diffusion_pytorch import GaussianDiffusion, Trainer, Unet
    from PIL import Image

    from core.demo.phantom import render_canonical

    root = tmp_path_factory.mktemp("lucidrains")
    images = root / "images"
    images.mkdir()
    for i in range(100):  # the Trainer refuses fewer than 100 images
        Image.fromarray(render_canonical(i, size=32)).save(images / f"{i}.png")
    torch.manual_seed(0)
    diffusion = GaussianDiffusion(Unet(**UNET), image_size=32, timesteps=1000, sampling_timesteps=2)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(library, "cpu_count", lambda: 0)  # DataLoader workers in the test process: none
        # Batch 16 is the Trainer's minimum; num_samples 1 keeps its own preview sampling to one image.
        trainer = Trainer(diffusion, str(images), train_batch_size=16, train_num_steps=2, save_and_sample_every=2,
                          num_samples=1, results_folder=str(root / "results"), calculate_fid=False,
                          ema_update_every=1)
        trainer.train()
    return root / "results" / "model-1.pt"


def _lucidrains_diffusion(trainer_file: Path, weights: str, image_size: int):
    from denoising_diffusion_pytorch import GaussianDiffusion, Unet

    data = torch.load(str(trainer_file), weights_only=True)
    state = data["model"] if weights == "online" else \
        {k[len("ema_model."):]: v for k, v in data["ema"].items() if k.startswith("ema_model.")}
    diffusion = GaussianDiffusion(Unet(**UNET), image_size=image_size, timesteps=1000)
    diffusion.load_state_dict(state)
    return diffusion.eval()


def test_imported_checkpoint_gives_lucidrains_outputs_and_is_listed(trainer_file, study, capsys):
    from core.ddpm.networks import load_unet
    from core.ddpm.samplers import prepare_unet
    from cspine_tui.cli.main import main

    capsys.readouterr()
    assert main(["import-checkpoint", "--study", str(study.root), str(trainer_file), "--image-size", "32",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["step"] == 2 and out["network"] == "lucidrains" and out["image_size"] == 32
    assert out["unet"] == {**UNET, "dim_mults": [1, 2], "full_attn": None}  # read from the weights' shapes
    folder = Path(out["output"])
    assert folder.is_absolute() and (folder / "unet").is_dir() and (folder / "unet_ema").is_dir()

    x = torch.randn(4, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0, 250, 700, 999])
    for weights in ("online", "ema"):
        theirs = _lucidrains_diffusion(trainer_file, weights, 32).model
        ours = prepare_unet(load_unet(folder, weights), "cpu")  # as sampling jobs load it (channels_last)
        with torch.no_grad():
            diff = float((ours(x, t).sample - theirs(x, t)).abs().max())
        # Same weights, same code; channels_last picks other convolution kernels, whose float32 sums differ
        # in order only: ~1e-6 on outputs of size ~1, so 1e-5 (the bound) holds with margin.
        assert diff <= 1e-5, (weights, diff)

    assert main(["checkpoints", "--study", str(study.root), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["job"], r["step"], r["network"], r["parameters"]) for r in rows] == \
        [(out["job"], 2, "lucidrains", out["parameters"])]
    assert study.store.scalar("SELECT kind FROM jobs WHERE id = ?", [out["job"]]) == "imported"
    # Sampling works on it as on a trained checkpoint (and so do screening, audit and release, which use runs).
    assert main(["sample", "--study", str(study.root), "--job", out["job"], "--checkpoint", "2", "--count", "2",
                 "--sampler", "ddim", "--steps", "2"]) == 0
    assert study.store.scalar("SELECT count(*) FROM synthetic_images") == 2
    assert main(["import-checkpoint", "--study", str(study.root), str(trainer_file), "--step", "68000",
                 "--image-size", "32", "--dim", "16"]) == 2  # a wrong override: the weights do not fit
    assert "do not fit" in capsys.readouterr().err


def _save_trainer_like(path: Path, **diffusion_kwargs) -> Path:
    from denoising_diffusion_pytorch import GaussianDiffusion, Unet

    diffusion = GaussianDiffusion(Unet(**UNET), image_size=32, timesteps=1000, **diffusion_kwargs)
    state = diffusion.state_dict()
    torch.save({"step": 10, "model": state, "opt": {}, "ema": {f"ema_model.{k}": v for k, v in state.items()},
                "scaler": None, "version": "2.3.4"}, path)
    return path


def test_files_that_are_not_the_studys_diffusion_are_one_line_errors(study, tmp_path, capsys):
    from cspine_tui.cli.main import main

    cases = {
        _save_trainer_like(tmp_path / "linear.pt", beta_schedule="linear"): "not lucidrains' sigmoid schedule",
        _save_trainer_like(tmp_path / "eps.pt", objective="pred_noise"): "looks like pred_noise",
        tmp_path / "missing.pt": "no such file",
    }
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    cases[garbage] = "not a readable lucidrains checkpoint"
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, plain)
    cases[plain] = "not a lucidrains Trainer.save file"
    for path, expected in cases.items():
        capsys.readouterr()
        assert main(["import-checkpoint", "--study", str(study.root), str(path)]) == 2
        err = capsys.readouterr().err.strip()
        assert expected in err and len(err.splitlines()) == 1, err
    assert study.store.scalar("SELECT count(*) FROM jobs") == 0  # nothing half-imported


@pytest.mark.slow
def test_ancestral_samples_match_lucidrains_p_sample_loop_in_distribution(trainer_file, study):
    from core.ddpm.importer import import_checkpoint
    from core.ddpm.networks import load_config, load_unet
    from core.ddpm.samplers import prepare_unet, sample_batch

    # Sampled at 16 px (the Unet is convolutional; both sides alike) so 2 x 1000 steps stay affordable.
    size, n = 16, 48
    out = import_checkpoint(study, trainer_file, image_size=size)
    folder = Path(out["output"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 2000 steps of small ops: on a loaded CPU, extra threads only spin (10x slower)
    try:
        ours = sample_batch(prepare_unet(load_unet(folder, "ema"), "cpu"), load_config(folder), "ddpm", 1000,
                            list(range(n)), "cpu").astype(np.float64) / 255.0
        torch.manual_seed(0)
        with torch.no_grad():
            theirs = _lucidrains_diffusion(trainer_file, "ema", size).p_sample_loop((n, 1, size, size))[:, 0]
    finally:
        torch.set_num_threads(threads)
    theirs = theirs.double().numpy()
    # Power, measured once at 8 px and n = 32: the correct sampler gives z = 0.09 (mean) and 0.39 (contrast);
    # the same sampler told the network predicts epsilon gives z = 9.4 on contrast. A linear schedule instead of
    # the sigmoid one is not seen by these statistics on a 2-step network (z <= 0.8); the schedule is checked
    # exactly instead (test_files_that_are_not_the_studys_diffusion_are_one_line_errors, the importer's betas).
    # Images are independent draws on both sides, so per-image statistics are i.i.d. within each set: a
    # two-sample z-test on their means, |diff| <= 5 standard errors (a false alarm once in ~1.7 million runs
    # per statistic), plus 1/510 for our rounding to 8 bits (at most half a grey level per pixel, so on any
    # mean or standard deviation of pixels too, by the triangle inequality; theirs stays float).
    for name, stat in (("mean", lambda a: a.mean(axis=(1, 2))), ("contrast", lambda a: a.std(axis=(1, 2)))):
        a, b = stat(ours), stat(theirs)
        se = np.sqrt(a.var(ddof=1) / n + b.var(ddof=1) / n)
        assert abs(a.mean() - b.mean()) <= 5 * se + 1 / 510, (name, a.mean(), b.mean(), se)
