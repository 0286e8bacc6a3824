"""SIGKILL at seeded moments during the job kinds (ingest, audit, sampling, training), then `cspine-tui resume`.

Each job runs detached (its own session, as `--detach` starts it); the whole process group is killed
(ingest's worker pool too) once the job has reported a seeded amount of progress plus a seeded delay.
Afterwards the study must open, show the job as died and resumable, reference only whole files, and the
resumed job must end with exactly what an uninterrupted run of the same request gives.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.jobs import runner
from core.study import Study
from tests.reliability.killing import (Moment, check_study, control, kill_job_at, resume, settle_killed, start_job,
                                       stray_temporaries)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

CHEAP_SEEDS = (11, 23, 37)
COSTLY_SEEDS = (5, 71)


def _run_foreground(study: Study, kind: str, params: dict) -> dict:
    record = runner.run_job(study, runner.create_job(study, kind, params), foreground=True, on_progress=lambda *_: None)
    assert record["state"] == "succeeded", record["error"]
    return record


def _kill_and_resume(study: Study, kind: str, params: dict, moment: Moment, *, via_cli: bool = True,
                     timeout: float = 240.0) -> str:
    """Start the job detached, SIGKILL its group at `moment`, check the study, resume, check again.

    `via_cli` resumes with `cspine-tui resume` in a fresh process; the costly kinds (torch start-up) resume
    through the same core call in this process instead, which keeps the slow suite inside its budget.
    """
    job_id, pgid = start_job(study, kind, params)
    kill_job_at(study, job_id, pgid, moment, timeout=timeout)
    print(f"{kind} {job_id}: {moment}")
    settled = settle_killed(study, job_id)
    check_study(study.root)  # whole right after the kill, before anything repairs it
    if settled["state"] != "succeeded":
        if via_cli:
            resume(study, job_id, timeout=timeout)
        else:
            record = runner.run_job(study, job_id, foreground=True, on_progress=lambda *_: None)
            assert record["state"] == "succeeded", record["error"]
            if settled["state"] == "failed":  # it had started: the second run says it resumed
                assert " resumed in pid " in "\n".join(control.tail_log(study, job_id, 200))
    check_study(study.root)
    return job_id


# ---------------------------------------------------------------------------------------------------
# Ingest: 2 worker processes, a duplicate and an unreadable file among the sources


N_FILMS = 30


@pytest.fixture(scope="module")
def ingest_sources(tmp_path_factory) -> Path:
    from tests.factories.ingest import draw_film, save_dicom, save_pil
    src = tmp_path_factory.mktemp("sources")
    for i in range(N_FILMS):
        film = draw_film(160, 128, seed=i, negative=i % 5 == 1, facing="right" if i % 3 == 0 else "left")
        if i % 4 == 3:
            save_dicom(film, src / f"film{i:02d}.dcm", monochrome1=i % 8 == 7)
        else:
            save_pil(film, src / f"film{i:02d}.png")
    shutil.copy(src / "film00.png", src / "copy-of-film00.png")  # a duplicate: recorded once, not stored twice
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    return src


def _ingest_study(root: Path) -> Study:
    study = Study.create(root, preset="tiny")
    study.set("ingest", "size", 64)  # canonical 64 px keeps every worker quick on a shared CPU
    return study


def _ingest_params(src: Path) -> dict:
    from core.realset.ingest import ingest_params

    return ingest_params([src], split_seed=5, workers=2)


def _ingested(study: Study) -> dict:
    with study.store.connect() as tx:
        rows = tx.query("SELECT id, canonical_sha256, path, inverted, flipped, resize_mode FROM real_images "
                        "ORDER BY id")
        splits = tx.query("SELECT image_id, split, seed FROM splits ORDER BY image_id")
        stored = tx.column("SELECT source_path FROM real_images")
        events = tx.query("SELECT source_path, outcome FROM ingest_events")
    accounted = sorted([Path(p).name for p in stored] + [Path(e["source_path"]).name for e in events])
    files = sorted(p.name for p in study.real_dir.iterdir())
    return {"rows": rows, "splits": splits, "accounted": accounted, "files": files,
            "outcomes": sorted(e["outcome"] for e in events),
            "pixels": {f: np.asarray(Image.open(study.real_dir / f)).tobytes() for f in files}}


@pytest.fixture(scope="module")
def ingest_reference(ingest_sources, tmp_path_factory) -> dict:
    study = _ingest_study(tmp_path_factory.mktemp("ingest-ref") / "study")
    _run_foreground(study, "ingest", _ingest_params(ingest_sources))
    return _ingested(study)


@pytest.mark.parametrize("seed", [*CHEAP_SEEDS, "at-spawn"])
def test_sigkill_during_ingest_then_resume_gives_the_uninterrupted_real_set(seed, ingest_sources, ingest_reference,
                                                                            tmp_path):
    study = _ingest_study(tmp_path / "study")
    if seed == "at-spawn":  # before the runner begins: the job must not stay 'queued' with no process
        moment = Moment(seed=0, after=0, delay_s=0.0)
    else:
        moment = Moment.pick(seed, N_FILMS - 6, max_delay_s=0.1)  # mid-run: a file takes ~10-30 ms per worker
    _kill_and_resume(study, "ingest", _ingest_params(ingest_sources), moment)
    got = _ingested(study)
    # Every source file accounted for exactly once (stored, duplicate or skipped): nothing lost or doubled.
    assert got["accounted"] == ingest_reference["accounted"]
    assert len(got["accounted"]) == N_FILMS + 2
    assert got["rows"] == ingest_reference["rows"]
    assert got["splits"] == ingest_reference["splits"]
    assert got["outcomes"] == ingest_reference["outcomes"]
    assert got["files"] == ingest_reference["files"], "orphan or missing canonical files"
    assert got["pixels"] == ingest_reference["pixels"]
    assert not stray_temporaries(study.real_dir), "a killed writer's temporary file was left among the real images"


# ---------------------------------------------------------------------------------------------------
# Audit: pixel embeddings (weights-free), cached per batch, resumed


@pytest.fixture(scope="module")
def audit_template(tmp_path_factory) -> Path:
    from tests.factories.audit import planted_study
    root = tmp_path_factory.mktemp("audit-template") / "study"
    study = Study.create(root, preset="tiny")
    planted_study(study, n_train=200, n_val=40, n_syn=260, seed=3)
    return root


def _audit_params() -> dict:
    return {"embedding": "pixel", "top": 25, "memory_mb": 0.05}  # small blocks: the search runs in many chunks


def _audit_result(study: Study, audit_id: str) -> dict:
    with study.store.connect() as tx:
        pairs = tx.query("SELECT rank, real_id, synthetic_id, similarity FROM audit_pairs WHERE audit_id = ? "
                         "ORDER BY rank", [audit_id])
        nearest = tx.query("SELECT synthetic_id, real_id, similarity, train_id, train_similarity FROM audit_nearest "
                           "WHERE audit_id = ? ORDER BY synthetic_id", [audit_id])
        result = json.loads(tx.scalar("SELECT result FROM audits WHERE id = ?", [audit_id]))
    keep = ("memorization_rate", "calibration", "per_run", "n_real", "n_train", "n_val", "n_synthetic", "top")
    return {"pairs": pairs, "nearest": nearest, "summary": {k: result[k] for k in keep}}


@pytest.fixture(scope="module")
def audit_reference(audit_template, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("audit-ref") / "study"
    shutil.copytree(audit_template, root)
    study = Study.open(root)
    record = _run_foreground(study, "audit", _audit_params())
    return _audit_result(study, record["id"])


@pytest.mark.parametrize("seed", CHEAP_SEEDS)
def test_sigkill_during_audit_then_resume_gives_the_same_pairs(seed, audit_template, audit_reference, tmp_path):
    root = tmp_path / "study"
    shutil.copytree(audit_template, root)
    study = Study.open(root)
    moment = Moment.pick(seed, 240, max_delay_s=0.5)  # progress counts real images embedded first
    job_id = _kill_and_resume(study, "audit", _audit_params(), moment)
    got = _audit_result(study, job_id)
    assert got["pairs"] == audit_reference["pairs"]
    assert got["nearest"] == audit_reference["nearest"]
    assert got["summary"] == audit_reference["summary"]
    assert study.store.scalar("SELECT count(*) FROM embeddings") == 500  # each image embedded once, cached


# ---------------------------------------------------------------------------------------------------
# Sampling: bit-identical images after resume


SAMPLE = {"sampler": "ddpm", "steps": 12, "batch": 2, "seed": 9, "count": 6}


def _sample_study(root: Path) -> Study:
    from tests.factories.sample import make_checkpoint
    study = Study.create(root, preset="tiny")
    make_checkpoint(study)  # deterministic from a torch seed: identical weights in every study
    return study


def _sample_params(study: Study) -> dict:
    from core.ddpm.sampling import sample_params

    return sample_params(study, checkpoint=200, run="r", **SAMPLE)


def _sampled(study: Study) -> dict:
    rows = study.store.query("SELECT idx, seed, path, sha256 FROM synthetic_images WHERE run_id = 'r' ORDER BY idx")
    return {"rows": rows, "files": sorted(p.name for p in (study.synthetic_dir / "r").iterdir()),
            "pixels": {r["idx"]: np.asarray(Image.open(study.abs(r["path"]))).tobytes() for r in rows}}


@pytest.fixture(scope="module")
def sample_reference(tmp_path_factory) -> dict:
    study = _sample_study(tmp_path_factory.mktemp("sample-ref") / "study")
    _run_foreground(study, "sample", _sample_params(study))
    return _sampled(study)


@pytest.mark.parametrize("seed", COSTLY_SEEDS)
def test_sigkill_during_sampling_then_resume_gives_bit_identical_images(seed, sample_reference, tmp_path):
    study = _sample_study(tmp_path / "study")
    moment = Moment.pick(seed, SAMPLE["count"], max_delay_s=1.0)
    _kill_and_resume(study, "sample", _sample_params(study), moment, via_cli=seed == COSTLY_SEEDS[0])
    got = _sampled(study)
    assert got["rows"] == sample_reference["rows"]  # same seeds, same bytes (sha256), one row per image
    assert got["files"] == sample_reference["files"]
    assert got["pixels"] == sample_reference["pixels"]


# ---------------------------------------------------------------------------------------------------
# Training: bit-identical weights and the same metrics after resume


TRAIN_STEPS = 4


def _train_params(study: Study) -> dict:
    from core.ddpm.trainer import train_params
    from tests.factories.train import TINY
    overrides = {**TINY, "max_steps": TRAIN_STEPS, "checkpoint_every": 2, "ema_update_after_step": 1}
    return train_params(study, preset="tiny", overrides=overrides, seed=3, deterministic=True, val_repeats=1,
                        keep_last=1)  # keep_last 1: pruning runs (and can be killed) too


def _trained(study: Study, job_id: str) -> dict:
    from safetensors.torch import load_file

    folder = runner.run_dir(study, job_id) / "checkpoints" / f"step-{TRAIN_STEPS}"
    weights = {sub: load_file(folder / sub / "diffusion_pytorch_model.safetensors") for sub in ("unet", "unet_ema")}
    metrics = study.store.query("SELECT step, name, value FROM metrics WHERE job_id = ? AND name IN "
                                "('train_loss', 'val_loss', 'val_loss_ema') ORDER BY step, name", [job_id])
    live = study.store.column("SELECT step FROM checkpoints WHERE job_id = ? AND NOT deleted ORDER BY step", [job_id])
    lines = [json.loads(x) for x in (runner.run_dir(study, job_id) / "metrics.jsonl").read_text().splitlines()]
    return {"weights": weights, "metrics": metrics, "live": live,
            "loss_steps": [x["step"] for x in lines if "train_loss" in x]}


@pytest.fixture(scope="module")
def train_study_for_kills(tmp_path_factory) -> Path:
    from tests.factories.train import add_real_images
    root = tmp_path_factory.mktemp("train") / "study"
    add_real_images(Study.create(root, preset="tiny"))
    return root


@pytest.fixture(scope="module")
def train_reference(train_study_for_kills) -> dict:
    study = Study.open(train_study_for_kills)
    record = _run_foreground(study, "train", _train_params(study))
    return _trained(study, record["id"])


@pytest.mark.parametrize("seed", COSTLY_SEEDS)
def test_sigkill_during_training_then_resume_gives_bit_identical_weights(seed, train_study_for_kills,
                                                                         train_reference):
    study = Study.open(train_study_for_kills)
    moment = Moment.pick(seed, TRAIN_STEPS, max_delay_s=1.0)  # progress = optimizer steps
    job_id = _kill_and_resume(study, "train", _train_params(study), moment, via_cli=seed == COSTLY_SEEDS[0])
    got = _trained(study, job_id)
    for sub in ("unet", "unet_ema"):
        ref = train_reference["weights"][sub]
        assert got["weights"][sub].keys() == ref.keys()
        differing = [k for k in ref if not torch_equal(got["weights"][sub][k], ref[k])]
        assert not differing, f"{sub}: {len(differing)} tensors differ from the uninterrupted run, e.g. {differing[:3]}"
    assert got["metrics"] == train_reference["metrics"]  # the steps that ran twice were replaced, not added
    assert got["loss_steps"] == list(range(1, TRAIN_STEPS + 1))
    assert got["live"] == train_reference["live"] == [TRAIN_STEPS]
    assert not stray_temporaries(runner.run_dir(study, job_id) / "checkpoints")


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_training_killed_before_its_first_checkpoint_or_around_a_checkpoint_row(train_study_for_kills,
                                                                                 train_reference):
    """Windows a random moment rarely hits, pinned: no checkpoint yet, a checkpoint without its row, no pruning."""
    study = Study.open(train_study_for_kills)
    params = {**_train_params(study), "_test_sigkill_at_step": 1}  # the runner kills itself after step 1
    job_id, _pgid = start_job(study, "train", params)
    died = control.wait_for(study, job_id, timeout=240)
    assert died["state"] == "failed" and "died" in died["error"]
    assert not (runner.run_dir(study, job_id) / "checkpoints" / "step-2").exists()
    check_study(study.root)
    assert runner.run_job(study, job_id, on_progress=lambda *_: None)["state"] == "succeeded"
    got = _trained(study, job_id)
    assert got["loss_steps"] == list(range(1, TRAIN_STEPS + 1)), "the steps that ran again were logged twice"
    assert got["metrics"] == train_reference["metrics"]
    assert all(torch_equal(got["weights"]["unet"][k], v) for k, v in train_reference["weights"]["unet"].items())

    # A kill after the last checkpoint's rename but before its row: the resumed job records the whole folder.
    study.store.execute("DELETE FROM checkpoints WHERE job_id = ? AND step = ?", [job_id, TRAIN_STEPS])
    study.store.execute("UPDATE jobs SET state = 'failed' WHERE id = ?", [job_id])
    assert runner.run_job(study, job_id, on_progress=lambda *_: None)["state"] == "succeeded"
    assert _trained(study, job_id)["live"] == [TRAIN_STEPS]
    check_study(study.root)

    # A kill after the last checkpoint's row but before pruning: the resumed job prunes on start. The state is
    # made by a run that kept everything, then held to keep_last 1 as if its pruning had been cut short.
    keep_all = {**_train_params(study), "keep_last": 5}
    job_id = runner.create_job(study, "train", keep_all)
    assert runner.run_job(study, job_id, on_progress=lambda *_: None)["state"] == "succeeded"
    assert _trained(study, job_id)["live"] == [2, TRAIN_STEPS]
    study.store.execute("UPDATE jobs SET state = 'failed', params = ? WHERE id = ?",
                        [json.dumps({**keep_all, "keep_last": 1}), job_id])
    assert runner.run_job(study, job_id, on_progress=lambda *_: None)["state"] == "succeeded"
    assert _trained(study, job_id)["live"] == [TRAIN_STEPS]
    assert not (runner.run_dir(study, job_id) / "checkpoints" / "step-2").exists()
    check_study(study.root)
