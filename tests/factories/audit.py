"""Tiny studies for the audit and pre-screen tests: real images with a split, synthetic runs, reviews."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from core.study import Study


def blob_image(rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """A smooth random grey image (a few Gaussian blobs), distinct enough in pixel space."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    img = np.zeros((size, size), np.float32)
    for _ in range(4):
        cy, cx = rng.uniform(0, size, 2)
        s = rng.uniform(size / 10, size / 4)
        img += rng.uniform(0.3, 1.0) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    img = img / img.max()
    return (img * 220 + 20).astype(np.uint8)


def _write_png(path: Path, array: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def add_real(study: Study, arrays: Sequence[np.ndarray], splits: Sequence[str]) -> list[str]:
    rows, split_rows, ids = [], [], []
    for i, (arr, split) in enumerate(zip(arrays, splits)):
        path = study.real_dir / f"real{i:04d}.png"
        sha = _write_png(path, arr)
        image_id = f"r{i:04d}-{sha[:8]}"
        ids.append(image_id)
        rows.append([image_id, study.rel(path), sha, f"src/{i}.png", "stretch", False, False])
        if split:
            split_rows.append([image_id, split, 0])
    with study.store.connect() as tx:
        tx.executemany("INSERT INTO real_images (id, path, canonical_sha256, source_path, resize_mode, inverted, "
                       "flipped) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        tx.executemany("INSERT INTO splits (image_id, split, seed) VALUES (?, ?, ?)", split_rows)
    return ids


def add_run(study: Study, run_id: str, arrays: Sequence[np.ndarray], *, step: int = 1000) -> list[str]:
    rows, ids = [], []
    for i, arr in enumerate(arrays):
        path = study.synthetic_dir / run_id / f"{i:05d}.png"
        sha = _write_png(path, arr)
        ids.append(f"{run_id}-{i}")
        rows.append([f"{run_id}-{i}", run_id, i, i, study.rel(path), sha])
    with study.store.connect() as tx:
        tx.execute("INSERT INTO synthetic_runs (id, name, source, checkpoint_step) VALUES (?, ?, 'sampled', ?)",
                   [run_id, f"{run_id}-name", step])
        tx.executemany("INSERT INTO synthetic_images (id, run_id, idx, seed, path, sha256) VALUES (?, ?, ?, ?, ?, ?)",
                       rows)
    return ids


def add_reviews(study: Study, decisions: dict[str, str], reviewer: str = "screener") -> None:
    study.store.executemany(
        "INSERT OR REPLACE INTO reviews (image_id, reviewer, decision, reason) VALUES (?, ?, ?, ?)",
        [[i, reviewer, d, "test" if d == "reject" else None] for i, d in decisions.items()])


def planted_study(study: Study, *, n_train: int = 40, n_val: int = 12, n_syn: int = 30, seed: int = 0,
                  plant_index: int = 7, planted_train: int = 5) -> dict:
    """Real images with a split and one run whose image `plant_index` is a copy of training image `planted_train`."""
    rng = np.random.default_rng(seed)
    real = [blob_image(rng) for _ in range(n_train + n_val)]
    real_ids = add_real(study, real, ["train"] * n_train + ["val"] * n_val)
    syn = [blob_image(rng) for _ in range(n_syn)]
    syn[plant_index] = real[planted_train].copy()
    syn_ids = add_run(study, "run-a", syn)
    return {"real_ids": real_ids, "syn_ids": syn_ids, "planted_real": real_ids[planted_train],
            "planted_syn": syn_ids[plant_index]}
