"""FID of a synthetic run (`cspine-tui fid`) and like-with-like orientation, in `fid` and in in-training FID."""

from __future__ import annotations

import hashlib
import io
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from core.ddpm import synthetic
from core.demo.phantom import render_canonical
from core.metrics import fid

SIZE = 64
N_REAL, N_FAKE = 48, 40


def _add_real(study, images: list[np.ndarray]) -> None:
    """Insert canonical real films (as ingest leaves them: facing left) with a train/val split."""
    rows, splits = [], []
    for i, pix in enumerate(images):
        buf = io.BytesIO()
        Image.fromarray(pix, "L").save(buf, format="PNG")
        digest = hashlib.sha256(buf.getvalue()).hexdigest()
        path = study.real_dir / f"{digest}.png"
        path.write_bytes(buf.getvalue())
        image_id = hashlib.sha256(f"real-{i}".encode()).hexdigest()
        rows.append([image_id, study.rel(path), digest, f"/src/{i}.png", "png", False, False, "stretch"])
        splits.append([image_id, "val" if i % 6 == 0 else "train", 0])
    with study.store.connect() as tx:
        tx.executemany("INSERT INTO real_images (id, path, canonical_sha256, source_path, source_format, inverted, "
                       "flipped, resize_mode) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        tx.executemany("INSERT INTO splits (image_id, split, seed) VALUES (?, ?, ?)", splits)


def _left(seeds) -> list[np.ndarray]:
    return [render_canonical(s, size=SIZE, facing="left") for s in seeds]


def _half_mirrored(images: list[np.ndarray]) -> list[np.ndarray]:
    return [np.ascontiguousarray(a[:, ::-1]) if i % 2 else a for i, a in enumerate(images)]


def _add_run(study, name: str, images: list[np.ndarray]) -> None:
    """A sampled run whose images were saved as generated (``sample --no-orient``): no orientation recorded."""
    synthetic.create_run(study, name, "sampled", sampler="ddim", steps=5, seed=1, checkpoint_step=2,
                         train_job="train-x", weights="ema", params={"precision": "fp32"})
    rows = [synthetic.save_image(study, name, i, a, seed=i, orient=False) for i, a in enumerate(images)]
    synthetic.add_images(study, name, rows)


def _noise_bound(real: fid.RealStats, fake: np.ndarray, rounds: int = 40) -> float:
    """3 standard deviations of the FID over bootstrap resamples of the synthetic set: its sampling noise."""
    rng = np.random.default_rng(0)
    values = [fid.fid_kid(real, fake[rng.integers(0, len(fake), len(fake))], kid_subsets=1)["fid"]
              for _ in range(rounds)]
    return 3 * float(np.std(values))


@pytest.fixture
def fid_study(tmp_path):
    from core.study import Study

    study = Study.create(tmp_path / "study", preset="tiny")
    _add_real(study, _left(range(N_REAL)))
    return study


def _real_stats(study, ext) -> fid.RealStats:
    from core.ddpm.data import load_images

    real = load_images(study, "train", SIZE)
    return fid.real_statistics(study.cache_dir, real.dataset_hash, real.pixels, ext)


def _features(ext, images) -> np.ndarray:
    u8 = torch.from_numpy(np.stack(images)).unsqueeze(1)
    return fid.extract(ext, lambda: iter([u8]))


def test_fid_command_mirroring_half_the_run_stays_within_sampling_noise(fid_study, capsys):
    from cspine_tui.cli.main import main

    study = fid_study
    fakes = _left(range(1000, 1000 + N_FAKE))
    _add_run(study, "facing-left", fakes)
    _add_run(study, "half-mirrored", _half_mirrored(fakes))
    results = {}
    for run in ("facing-left", "half-mirrored"):
        rc = main(["fid", "--study", str(study.root), "--run", run, "--extractor", "proxy", "--json"])
        out = capsys.readouterr()
        assert rc == 0, out.err
        results[run] = json.loads(out.out[:out.out.rindex("}") + 1])
        assert "proxy FID (NOT Inception FID)" in out.err
    left, mixed = results["facing-left"], results["half-mirrored"]
    assert mixed["flipped_at_fid_time"] == N_FAKE // 2 and left["flipped_at_fid_time"] == 0
    assert left["n"] == N_FAKE and left["real"] == "train" and left["sampler_precision"] == "fp32"
    assert left["job"].startswith("fid-") and left["weights"] == "ema" and left["checkpoint_step"] == 2
    # The noise bound: the FID's spread over bootstrap resamples of the synthetic set.
    ext = fid.ProxyExtractor()
    real = _real_stats(study, ext)
    bound = _noise_bound(real, _features(ext, fakes))
    assert abs(mixed["fid"] - left["fid"]) <= bound
    # The bound is tight enough to see orientation: without the detector the mirrored half moves FID past it.
    unoriented = fid.fid_kid(real, _features(ext, _half_mirrored(fakes)), kid_subsets=1)["fid"]
    assert unoriented - left["fid"] > bound


def test_fid_reuses_cached_real_statistics_and_is_stored_with_provenance(fid_study, capsys):
    from core.jobs import runner
    from core.ddpm.run_fid import fid_params, latest_run_fids

    study = fid_study
    _add_run(study, "r", _left(range(2000, 2006)))
    first = runner.run_job(study, runner.create_job(study, "fid", fid_params(study, run="r", extractor="proxy")))
    assert first["state"] == "succeeded", first["error"]
    cache = list((study.cache_dir / "fid").glob("real-*.npz"))
    assert len(cache) == 1
    mtime = cache[0].stat().st_mtime_ns
    second = runner.run_job(study, runner.create_job(study, "fid", fid_params(study, run="r", extractor="proxy")))
    assert second["result"]["fid"] == first["result"]["fid"]
    assert cache[0].stat().st_mtime_ns == mtime  # read back, not recomputed
    assert second["result"]["real_stats_key"] == first["result"]["real_stats_key"]
    stored = latest_run_fids(study)["r"]
    assert stored["job"] == second["id"] and stored["fid"] == pytest.approx(first["result"]["fid"])
    assert stored["kid"] is not None and stored["extractor"] == "proxy" and stored["n"] == 6
    # Another real set is another key.
    third = runner.run_job(study, runner.create_job(study, "fid", fid_params(study, run="r", real="val",
                                                                            extractor="proxy")))
    assert third["result"]["n_real"] == N_REAL // 6 and len(list((study.cache_dir / "fid").glob("real-*"))) == 2


def test_fid_refuses_unknown_runs_and_tiny_runs(fid_study):
    from core.errors import CspineError
    from core.ddpm.run_fid import fid_params

    with pytest.raises(CspineError, match="no synthetic run"):
        fid_params(fid_study, run="nope")
    _add_run(fid_study, "one", _left([5]))
    with pytest.raises(CspineError, match="at least 2"):
        fid_params(fid_study, run="one")


class _DenoiseTo(torch.nn.Module):
    """A 'network' whose x0 prediction is a fixed image per batch slot (v-prediction), so a sampler's output
    is that image: in-training FID's sampling and orientation run as they do on a trained model."""

    def __init__(self, cfg, targets_u8: np.ndarray) -> None:
        super().__init__()
        from core.ddpm.networks import training_scheduler

        self.x0 = torch.from_numpy(targets_u8).float().unsqueeze(1) / 127.5 - 1
        self.ab = training_scheduler(cfg).alphas_cumprod

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> SimpleNamespace:
        ab = self.ab[t.long().reshape(-1)].float().view(-1, 1, 1, 1)
        return SimpleNamespace(sample=(ab.sqrt() * x - self.x0) / (1 - ab).sqrt())


def test_in_training_fid_mirroring_half_the_samples_stays_within_sampling_noise(fid_study):
    from core.ddpm.evaluation import SamplerSpec, generate_uint8
    from core.ddpm.networks import get_preset

    cfg = get_preset("tiny", image_size=SIZE)
    fakes = _left(range(1000, 1000 + N_FAKE))
    spec = SamplerSpec("ddim", 4)

    def samples(images):
        return generate_uint8(_DenoiseTo(cfg, np.stack(images)), cfg, spec, list(range(len(images))), 0, "cpu")

    ext = fid.ProxyExtractor()
    real = _real_stats(fid_study, ext)
    left = samples(fakes)
    # The sampler reproduces its targets (to the rounding of 8-bit PNGs), so the test measures orientation only.
    assert (left[:, 0].int() - torch.from_numpy(np.stack(fakes)).int()).abs().max() <= 1
    mixed = samples(_half_mirrored(fakes))
    fid_left = fid.fid_kid(real, fid.extract(ext, lambda: iter([left])), kid_subsets=1)["fid"]
    fid_mixed = fid.fid_kid(real, fid.extract(ext, lambda: iter([mixed])), kid_subsets=1)["fid"]
    bound = _noise_bound(real, fid.extract(ext, lambda: iter([left])))
    assert abs(fid_mixed - fid_left) <= bound
    unoriented = fid.fid_kid(real, _features(ext, _half_mirrored(fakes)), kid_subsets=1)["fid"]
    assert unoriented - fid_left > bound


def test_fid_job_stopped_between_blocks_resumes_to_the_same_value(fid_study, monkeypatch):
    from core.jobs import runner
    from core.ddpm import run_fid

    study = fid_study
    _add_run(study, "r", _half_mirrored(_left(range(3000, 3007))))
    params = run_fid.fid_params(study, run="r", extractor="proxy")
    whole = runner.run_job(study, runner.create_job(study, "fid", params))
    monkeypatch.setattr(run_fid, "BLOCK", 3)  # blocks of 3, 3, 1 images
    calls = []
    real_extract = fid.extract

    def extract_then_pause(*a, **k):  # a stop request arrives while the first block is computed
        calls.append(1)
        (runner.run_dir(study, job_id) / "pause").touch()
        return real_extract(*a, **k)

    job_id = runner.create_job(study, "fid", params)
    monkeypatch.setattr(fid, "extract", extract_then_pause)
    first = runner.run_job(study, job_id)
    assert first["state"] == "paused" and "3/7" in first["error"] and len(calls) == 1
    monkeypatch.setattr(fid, "extract", real_extract)
    second = runner.run_job(study, job_id)
    assert second["state"] == "succeeded", second["error"]
    assert second["result"]["fid"] == pytest.approx(whole["result"]["fid"], rel=1e-6)  # float32 features saved
    assert second["result"]["flipped_at_fid_time"] == whole["result"]["flipped_at_fid_time"] == 3
