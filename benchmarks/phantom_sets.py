"""Phantom sets shared by the ingest/detector benchmarks and the tuning script (cached under benchmarks/out/).

Seed ranges are disjoint by construction: the detectors are tuned on TUNE_SEEDS and measured on EVAL_SEEDS.
Each set is balanced: half negatives, half right-facing (crossed), 8/16-bit alternating, heights uniform in
the given range, formats cycling.
"""

from __future__ import annotations

import csv
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

OUT = ROOT / "benchmarks" / "out"
EVAL_BASE = 1_000_000     # evaluation phantoms: seeds 1,000,000 + i
TUNE_BASE = 2_000_000     # tuning phantoms:     seeds 2,000,000 + i
COLUMNS = ("file", "seed", "facing", "negative", "bit_depth", "format", "width", "height")


def phantom_version() -> str:
    """A fingerprint of the generator's source (rendering and file writing): cached sets are rebuilt when
    the phantoms change."""
    import hashlib

    h = hashlib.sha256()
    for name in ("phantom.py", "phantom_draw.py", "phantom_files.py"):
        h.update((ROOT / "core" / name).read_bytes())
    return h.hexdigest()[:10]


def cache_folder(kind: str, count: int) -> Path:
    return OUT / f"{kind}-{count}-phantom{phantom_version()}"


def plan(base: int, count: int, size_range: tuple[int, int], formats: tuple[str, ...],
         bit_depths: tuple[int, ...] = (8, 16)) -> list[dict]:
    rng = np.random.default_rng([base, count])
    # facing x polarity crossed and balanced, then shuffled
    combos = np.array([(i % 2, (i // 2) % 2) for i in range(count)])
    combos = combos[rng.permutation(count)]
    heights = rng.integers(size_range[0], size_range[1] + 1, size=count)
    rows = []
    for i in range(count):
        fmt = formats[i % len(formats)]
        depth = 8 if fmt == "jpeg" else bit_depths[(i // len(formats)) % len(bit_depths)]
        rows.append({"seed": base + i, "negative": bool(combos[i][0]),
                     "facing": "right" if combos[i][1] else "left", "format": fmt, "bit_depth": depth,
                     "height": int(heights[i])})
    return rows


def _write_one(args: tuple[dict, str]) -> dict:
    from core.demo import phantom
    from core.demo import phantom_files

    spec, folder = args
    extra = {k: spec[k] for k in ("aspect",) if k in spec}
    p = phantom.PhantomParams.random(spec["seed"], negative=spec["negative"], facing=spec["facing"],
                                     format=spec["format"], bit_depth=spec["bit_depth"], height=spec["height"],
                                     **extra)
    path = phantom_files.write_phantom(p, Path(folder) / f"phantom_{spec['seed']}")
    return {"file": path.name, "seed": p.seed, "facing": p.facing, "negative": p.negative,
            "bit_depth": p.bit_depth, "format": p.format, "width": p.width, "height": p.height}


def build(folder: Path, specs: list[dict], workers: int | None = None, log=None) -> list[dict]:
    """Write the phantoms of `specs` into `folder` (reusing a complete cached set) and return label rows."""
    folder.mkdir(parents=True, exist_ok=True)
    labels = folder / "labels.csv"
    if labels.exists():
        with open(labels) as fh:
            rows = list(csv.DictReader(fh))
        if [int(r["seed"]) for r in rows] == [s["seed"] for s in specs] and \
                all((folder / r["file"]).exists() for r in rows):
            for r in rows:
                r["negative"] = r["negative"] in ("1", "True", "true")
                for k in ("seed", "bit_depth", "width", "height"):
                    r[k] = int(r[k])
            return rows
    (log or (lambda m: print(m, file=sys.stderr)))(f"writing {len(specs)} phantoms into {folder} (cached)")
    workers = workers or len(os.sched_getaffinity(0))
    with ProcessPoolExecutor(workers) as pool:
        rows = list(pool.map(_write_one, [(s, str(folder)) for s in specs], chunksize=4))
    tmp = labels.with_suffix(".part")
    with open(tmp, "w", newline="") as fh:
        wr = csv.DictWriter(fh, COLUMNS)
        wr.writeheader()
        wr.writerows(rows)
    os.replace(tmp, labels)
    return rows
