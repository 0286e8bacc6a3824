"""Fixtures for the training tests: a study holding a few small real images with a train/val split.

The images are written straight into the study (as ingest would leave them) so these tests do not depend
on the ingest pipeline; they are 64 px instead of 256 to stay fast, and the tiny preset trains at 32 px.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

TINY = {"image_size": 32, "batch_size": 4, "block_out_channels": [16, 32], "layers_per_block": 1,
        "down_block_types": ["DownBlock2D", "AttnDownBlock2D"], "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
        "attention_head_dim": 8, "fid_samples": 8, "fid_every": 0}


def real_image_row(study, pix: np.ndarray, image_id: str, index: int) -> list:
    """Write a canonical PNG into the real set's folder; the real_images row (insert with REAL_COLUMNS)."""
    buf = io.BytesIO()
    Image.fromarray(pix, "L").save(buf, format="PNG")
    data = buf.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    path = study.real_dir / f"{digest}.png"
    path.write_bytes(data)
    return [image_id, study.rel(path), digest, f"/src/{index}.png", "png", False, False, "stretch"]


REAL_COLUMNS = "id, path, canonical_sha256, source_path, source_format, inverted, flipped, resize_mode"


def add_real_images(study, n: int = 24, size: int = 64, val_every: int = 4, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    rows, splits = [], []
    for i in range(n):
        cx, cy, r = rng.uniform(0.3, 0.7), rng.uniform(0.2, 0.8), rng.uniform(0.08, 0.2)
        img = 0.3 * xx + 0.6 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r)) + rng.normal(0, 0.02, xx.shape)
        pix = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
        rows.append(real_image_row(study, pix, hashlib.sha256(f"source-{seed}-{i}".encode()).hexdigest(), i))
        splits.append([rows[-1][0], "val" if i % val_every == 0 else "train", seed])
    with study.store.connect() as tx:
        tx.executemany(f"INSERT INTO real_images ({REAL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        tx.executemany("INSERT INTO splits (image_id, split, seed) VALUES (?, ?, ?)", splits)
    return [r[0] for r in rows]


@pytest.fixture
def train_study(tmp_path: Path):
    from core.study import Study

    study = Study.create(tmp_path / "study")
    add_real_images(study)
    return study
