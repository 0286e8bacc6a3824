"""Training data: the study's canonical real PNGs as one uint8 tensor, and a deterministic batch plan.

Images are the ingested canonical 8-bit grayscale PNGs (``real_images.path``, relative to the study root),
selected by the ``splits`` table: ``train`` (the 85 % monitored with validation loss) or ``all`` (the paper's
final model, monitored with FID). Presets below 256 px get an antialiased bilinear downsize (PIL). The whole
set is held in memory as uint8 (4,963 images at 256 px are 325 MB) and cached under ``cache/`` keyed by a hash
of the image ids, their content hashes and the size, so a resumed job starts in a second.

The batch plan makes the data position a pure function of the optimizer step: sample ``p`` of the stream is
image ``perm_e[p mod n]`` of epoch ``e = p // n`` where ``perm_e`` is a permutation seeded by ``(seed, e)``;
timesteps, noise and flips come from a generator seeded by ``(seed, step, micro-step)``. A resumed run thus
sees exactly the batches an uninterrupted one would, and N processes split each global batch into N
contiguous slices, so the global batch is the same for any number of processes (like the reference's
``split_batches=True``).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from core.errors import CspineError
from core.study import Study

DATA_CHOICES = ("train", "all")


def mix_seed(*parts: Any) -> int:
    """A 63-bit seed from any parts (stable across runs and machines, unlike hash())."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


@dataclass
class ImageSet:
    """Canonical images of one selection, resized to ``size``: pixels uint8 (N, 1, size, size)."""

    ids: list[str]
    pixels: torch.Tensor
    size: int
    selection: str
    dataset_hash: str

    def __len__(self) -> int:
        return len(self.ids)


def image_rows(study: Study, selection: str) -> list[dict[str, Any]]:
    """Rows (id, path, canonical_sha256) of the real set for 'train', 'val' or 'all', ordered by id."""
    if selection not in ("train", "val", "all"):
        raise CspineError(f"unknown data selection {selection!r}; use train, val or all")
    with study.store.connect() as tx:
        if selection == "all":
            rows = tx.query("SELECT id, path, canonical_sha256 FROM real_images ORDER BY id")
        else:
            rows = tx.query(
                "SELECT r.id, r.path, r.canonical_sha256 FROM real_images r JOIN splits s ON s.image_id = r.id "
                "WHERE s.split = ? ORDER BY r.id", [selection])
            if not rows and tx.scalar("SELECT count(*) FROM splits") == 0:
                raise CspineError(
                    f"study {study.root} has no train/val split; ingest images first (`cspine-tui ingest`) "
                    f"or train on every image with --data all")
    if not rows:
        raise CspineError(f"study {study.root} has no real images in the {selection!r} selection; "
                          f"ingest images first with `cspine-tui ingest`")
    return rows


def dataset_hash(rows: list[dict[str, Any]], size: int, extra: str = "") -> str:
    h = hashlib.sha256(f"size={size};resize=pil-bilinear;{extra}\n".encode())
    for r in rows:
        h.update(f"{r['id']}:{r['canonical_sha256']}\n".encode())
    return h.hexdigest()


def read_canonical(path: Path, size: int) -> np.ndarray:
    """One canonical PNG as uint8 (size, size); downsized with PIL's antialiased bilinear filter if needed."""
    try:
        with Image.open(path) as im:
            im = im.convert("L")
            if im.size != (size, size):
                im = im.resize((size, size), Image.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    except FileNotFoundError:
        raise CspineError(f"canonical image {path} is missing; re-ingest its source or restore the study's "
                          f"images/real folder") from None
    except OSError as exc:
        raise CspineError(f"canonical image {path} cannot be read ({exc}); re-ingest its source") from None


def load_images(study: Study, selection: str, size: int, *, use_cache: bool = True,
                only: list[str] | None = None, subset_note: str = "") -> ImageSet:
    """The selection's images; with `only`, just those ids (a conditional run's labelled subset, which
    `subset_note` names in the dataset hash)."""
    rows = image_rows(study, selection)
    if only is not None:
        wanted = set(only)
        rows = [r for r in rows if r["id"] in wanted]
        if not rows:
            raise CspineError(f"no {selection!r} image of {study.root} carries the labels this run needs")
    digest = dataset_hash(rows, size, subset_note)
    cache = study.cache_dir / "train-data" / f"{digest[:32]}.npy"
    pixels: np.ndarray | None = None
    if use_cache and cache.exists():
        try:
            pixels = np.load(cache)
            if pixels.shape != (len(rows), 1, size, size):
                pixels = None
        except (OSError, ValueError):
            pixels = None  # a damaged cache is rebuilt, never trusted
    if pixels is None:
        pixels = np.stack([read_canonical(study.abs(r["path"]), size) for r in rows])[:, None]
        if use_cache:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(f".{cache.stem}.{os.getpid()}.tmp.npy")
            np.save(tmp, pixels)
            os.replace(tmp, cache)
    return ImageSet(ids=[r["id"] for r in rows], pixels=torch.from_numpy(np.ascontiguousarray(pixels)),
                    size=size, selection=selection, dataset_hash=digest)


def to_model_range(pixels_u8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1] as the reference (ToTensor, then x * 2 - 1)."""
    return pixels_u8.float() / 255.0 * 2.0 - 1.0


@dataclass(frozen=True)
class Batch:
    indices: torch.Tensor     # image indices of this process's slice
    timesteps: torch.Tensor
    noise: torch.Tensor       # float32, CPU
    flip: torch.Tensor        # bool
    keep: torch.Tensor | None = None   # bool: the image keeps its condition (None: no condition dropout)


class BatchPlan:
    """Which images, timesteps, noise and flips every micro-step uses; a pure function of (seed, step)."""

    def __init__(self, n_images: int, batch_size: int, grad_accum: int, seed: int, num_timesteps: int,
                 image_shape: tuple[int, int, int], horizontal_flip: bool,
                 rank: int = 0, world_size: int = 1, cond_drop: float | None = None) -> None:
        if batch_size % world_size:
            raise CspineError(f"batch size {batch_size} does not split over {world_size} processes; choose a "
                              f"batch size divisible by --num-processes")
        self.n, self.batch, self.accum, self.seed = n_images, batch_size, grad_accum, seed
        self.T, self.shape, self.flip = num_timesteps, image_shape, horizontal_flip
        self.rank, self.world = rank, world_size
        self.cond_drop = cond_drop
        self._perm_epoch = -1
        self._perm: torch.Tensor | None = None

    def position(self, step: int) -> dict[str, int]:
        """The data position before optimizer step `step` (epoch and offset within its permutation)."""
        p = step * self.accum * self.batch
        return {"epoch": p // self.n, "offset": p % self.n, "samples_seen": p}

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch != self._perm_epoch:
            gen = torch.Generator().manual_seed(mix_seed(self.seed, "epoch", epoch))
            self._perm, self._perm_epoch = torch.randperm(self.n, generator=gen), epoch
        return self._perm  # type: ignore[return-value]

    def batch_at(self, step: int, micro: int) -> Batch:
        start = (step * self.accum + micro) * self.batch
        idx = []
        for p in range(start, start + self.batch):
            idx.append(int(self._permutation(p // self.n)[p % self.n]))
        gen = torch.Generator().manual_seed(mix_seed(self.seed, "step", step, micro))
        t = torch.randint(0, self.T, (self.batch,), generator=gen)
        noise = torch.randn((self.batch, *self.shape), generator=gen)
        flip = torch.rand(self.batch, generator=gen) < 0.5 if self.flip else torch.zeros(self.batch, dtype=torch.bool)
        keep = None
        if self.cond_drop is not None:
            # Its own generator: the images, timesteps, noise and flips stay those of an unconditional run.
            drop_gen = torch.Generator().manual_seed(mix_seed(self.seed, "cond-drop", step, micro))
            keep = torch.rand(self.batch, generator=drop_gen) >= self.cond_drop
        per = self.batch // self.world
        sl = slice(self.rank * per, (self.rank + 1) * per)
        return Batch(torch.tensor(idx[sl]), t[sl], noise[sl], flip[sl], None if keep is None else keep[sl])


class ValPlan:
    """Fixed (image, timestep, noise) triples for the validation loss, identical at every checkpoint.

    Timesteps are stratified over [0, T) across all image x repeat pairs (assigned in a seeded order), so a
    small validation set still covers the whole schedule evenly; each pair's noise has its own seed, so it
    is generated chunk by chunk and never held whole in memory.
    """

    def __init__(self, n_images: int, num_timesteps: int, image_shape: tuple[int, int, int],
                 repeats: int | None = None, seed: int = 20251022) -> None:
        # Enough pairs (about 512) that the estimate is steady on tiny validation sets.
        self.repeats = repeats or max(1, min(16, -(-512 // max(n_images, 1))))
        self.seed, self.shape = seed, image_shape
        total = n_images * self.repeats
        gen = torch.Generator().manual_seed(seed)
        strata = ((torch.arange(total, dtype=torch.float64) + 0.5) / total * num_timesteps).long()
        self.timesteps = strata[torch.randperm(total, generator=gen)]
        self.index = torch.arange(total) % max(n_images, 1)

    def __len__(self) -> int:
        return len(self.index)

    def noise(self, pairs: range) -> torch.Tensor:
        return torch.stack([torch.randn(self.shape, generator=torch.Generator().manual_seed(
            mix_seed(self.seed, "val", i))) for i in pairs])
