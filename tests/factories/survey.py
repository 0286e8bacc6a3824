"""Fixtures for the reader-study tests (stats, survey pack, response import).

`paper_ratings()` builds a complete 8 raters x 50 quartets data set that reproduces every published number of
the paper except kappa (29.0 % of 400; means 3.323 / 3.228 / 3.258 / 3.320 half-up; p 0.128 / 0.236 / 1.000;
Holm 0.383 / 0.471 / 1.000). The per-rater differences come from docs/reference/study.md section 6: comparison 1
has 7 non-zero differences with one tied pair (V = 23.5), comparison 2 six with one 4-way tie (V = 16.5);
comparison 3 was found by search (sum of differences 1, V at the null mean -> p = 1).

`tiny_study(tmp)` is a study with real images and three sampled checkpoints whose images are screened.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

N_RATERS = 8
N_QUARTETS = 50
GROUPS = ("real", "68000", "80000", "160000")  # the paper's checkpoints 34, 40, 80 at 2,000 steps each
REAL_SUMS = [166] * 7 + [167]  # 1329 in all
DIFFS = {  # real minus checkpoint, in rating points over 50 ratings, per rater
    "68000": [-1, 2, -3, 3, 11, 12, 14, 0],
    "80000": [-1, 5, 5, 5, -5, 17, 0, 0],
    "160000": [-3, -3, -3, -1, 2, 3, 3, 3],
}
CORRECT = [15, 14, 15, 14, 15, 14, 15, 14]  # 116 of 400


def _ratings_with_sum(total: int, n: int, rng: random.Random) -> list[int]:
    q, rem = divmod(total, n)
    values = [q + 1] * rem + [q] * (n - rem)
    assert all(1 <= v <= 4 for v in values), total
    rng.shuffle(values)
    return values


@dataclass
class PaperData:
    ratings: list[tuple[str, int, str, int]]      # (rater, quartet, group, rating)
    picks: list[tuple[str, int, str]]             # (rater, quartet, chosen group)

    def rating_rows(self) -> list[tuple[str, str, int]]:
        return [(r, g, v) for r, _, g, v in self.ratings]


def paper_ratings(seed: int = 29) -> PaperData:
    rng = random.Random(seed)
    ratings, picks = [], []
    for i in range(N_RATERS):
        rater = f"rater{i + 1}"
        sums = {"real": REAL_SUMS[i], **{g: REAL_SUMS[i] - DIFFS[g][i] for g in GROUPS[1:]}}
        per_group = {g: _ratings_with_sum(s, N_QUARTETS, rng) for g, s in sums.items()}
        for q in range(N_QUARTETS):
            for g in GROUPS:
                ratings.append((rater, q + 1, g, per_group[g][q]))
        correct = set(rng.sample(range(N_QUARTETS), CORRECT[i]))
        for q in range(N_QUARTETS):
            picks.append((rater, q + 1, "real" if q in correct else rng.choice(GROUPS[1:])))
    return PaperData(ratings=ratings, picks=picks)


# ---------------------------------------------------------------------------------------------------
# A tiny study with screened synthetic images


def _png(path: Path, seed: int, size: int = 48, mode: str = "L") -> None:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    img = (80 + 60 * np.sin(xx / (3 + seed % 5)) + rng.normal(0, 20, (size, size))).clip(0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(img.astype(np.uint8), "L")
    if mode == "RGB":
        im = im.convert("RGB")
    elif mode == "I;16":
        im = Image.fromarray(img.astype(np.uint16) * 257)  # 16-bit grayscale
    # A metadata chunk that blinding must strip.
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Source", f"image {seed}")
    im.save(path, pnginfo=info)


def tiny_study(tmp: Path, *, n_real: int = 12, per_ckpt: int = 10, steps=(2000, 4000, 6000),
               reject_every: int = 4):
    """A study with `n_real` real images and `per_ckpt` images per checkpoint, every `reject_every`-th rejected."""
    from core.study import Study

    study = Study.create(tmp / "study")
    real_rows, runs, syn_rows, reviews = [], [], [], []
    for i in range(n_real):
        rel = f"images/real/r{i:03d}.png"
        _png(study.abs(rel), seed=i, mode="RGB" if i % 3 == 0 else "L")
        real_rows.append([f"real{i:03d}", rel, f"sha{i}", f"/src/{i}.png", "png", 256, 256, 8, "stretch",
                          False, False])
    for k, step in enumerate(steps):
        run_id = f"run{k}"
        runs.append([run_id, f"ckpt-{step}", "sampled", step])
        for j in range(per_ckpt):
            rel = f"images/synthetic/{run_id}/{j:05d}.png"
            _png(study.abs(rel), seed=1000 * (k + 1) + j, mode="I;16" if j % 5 == 0 else "L")
            image_id = f"{run_id}-{j}"
            syn_rows.append([image_id, run_id, j, rel, f"sha-{image_id}"])
            decision = "reject" if j % reject_every == reject_every - 1 else "accept"
            reviews.append([image_id, "alice", decision])
    with study.store.connect() as tx:
        tx.executemany("INSERT INTO real_images (id, path, canonical_sha256, source_path, source_format, "
                       "orig_width, orig_height, bit_depth, resize_mode, inverted, flipped) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", real_rows)
        tx.executemany("INSERT INTO synthetic_runs (id, name, source, checkpoint_step) VALUES (?, ?, ?, ?)", runs)
        tx.executemany("INSERT INTO synthetic_images (id, run_id, idx, path, sha256) VALUES (?, ?, ?, ?, ?)",
                       syn_rows)
        tx.executemany("INSERT INTO reviews (image_id, reviewer, decision) VALUES (?, ?, ?)", reviews)
    return study
