"""Fixtures for the screening and release tests: synthetic runs registered directly in the database."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from core.study import Study


def write_png(path: Path, seed: int, size: int = 32) -> str:
    """A small deterministic grayscale image (distinct per seed); returns its SHA-256."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    img = (x * (255 // size) + rng.integers(0, 40, (size, size))).clip(0, 255).astype(np.uint8)
    img[size // 4: size // 2, size // 2:] = rng.integers(0, 255)  # an asymmetric block: a flip is visible
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img, "L").save(path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def add_run(study: Study, name: str, checkpoint: int | None, n: int, *, size: int = 32,
            source: str = "sampled", seed0: int = 0, sampler: str = "ddim", steps: int = 50,
            weights: str = "ema") -> list[str]:
    """Register a run of n images (files under images/synthetic/<name>/); returns the image ids."""
    run_id = f"run-{name}"
    folder = study.synthetic_dir / name
    rows = []
    for i in range(n):
        path = folder / f"{i:05d}.png"
        sha = write_png(path, seed0 + i, size)
        rows.append([f"{run_id}-{i}", run_id, i, seed0 + i, study.rel(path), sha])
    with study.store.connect() as tx:
        tx.execute("INSERT INTO synthetic_runs (id, name, source, checkpoint_step, sampler, steps, seed, weights, "
                   "folder) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   [run_id, name, source, checkpoint, sampler, steps, seed0, weights, study.rel(folder)])
        tx.executemany("INSERT INTO synthetic_images (id, run_id, idx, seed, path, sha256) VALUES (?, ?, ?, ?, ?, ?)",
                       rows)
    return [r[0] for r in rows]
