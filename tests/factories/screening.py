"""Fixtures for the screening and release tests: synthetic runs registered through core/ddpm/synthetic.py."""

from __future__ import annotations

import numpy as np

from core.ddpm import synthetic
from core.study import Study


def tiny_image(seed: int, size: int = 32) -> np.ndarray:
    """A small deterministic grayscale image, distinct per seed and asymmetric (so a flip is visible)."""
    rng = np.random.default_rng(seed)
    _, x = np.mgrid[0:size, 0:size]
    img = (x * (255 // size) + rng.integers(0, 40, (size, size))).clip(0, 255).astype(np.uint8)
    img[size // 4: size // 2, size // 2:] = rng.integers(0, 255)
    return img


def add_run(study: Study, name: str, checkpoint: int | None, n: int, *, size: int = 32,
            source: str = "sampled", seed0: int = 0, sampler: str = "ddim", steps: int = 50,
            weights: str = "ema") -> list[str]:
    """Register a run of n images (images/synthetic/<name>/); returns the image ids in index order."""
    run_id = synthetic.create_run(study, name, source, checkpoint_step=checkpoint, sampler=sampler, steps=steps,
                                  seed=seed0, weights=weights)
    rows = [synthetic.save_image(study, run_id, i, tiny_image(seed0 + i, size), seed=seed0 + i, orient=False)
            for i in range(n)]
    synthetic.add_images(study, run_id, rows)
    return [synthetic.image_id(run_id, i) for i in range(n)]
