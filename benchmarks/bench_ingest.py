"""Ingest throughput: our parallel ingest job next to a plain single-process PIL loop, same files, same run.

    .venv/bin/python benchmarks/bench_ingest.py [--count 2000] [--workers N]

The files are phantom radiographs of 2000x1500 px, 16-bit grayscale PNG (a third negatives, a third
right-facing), generated once into benchmarks/out/ (git-ignored; ~5 MB each) and reused. To keep generation
affordable on a small machine, each rendered phantom yields ten files that differ in their quantum noise,
polarity and facing: every file has different bytes (no duplicates) and costs the same to decode. "ours" is the
whole ingest job (`core.realset.ingest.ingest`): hashing, decoding at full bit depth, float Lanczos resize, both
detectors, atomic PNG writes and the database rows, in worker processes. "baseline" is what a short script does in one
process: open, convert to float, resize to 256x256 (Lanczos), convert to 8-bit, save. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import phantom_sets as ps


def baseline(files: list[Path], out: Path) -> float:
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for i, path in enumerate(files):
        with Image.open(path) as im:
            f = im.convert("F") if im.mode.startswith("I") else im.convert("L").convert("F")
            scale = 255.0 / 65535.0 if im.mode.startswith("I") else 1.0
        small = f.resize((256, 256), Image.Resampling.LANCZOS).point(lambda v: v * scale)
        small.convert("L").save(out / f"{i}.png")
    return time.perf_counter() - t0


def ours(files_dir: Path, study_dir: Path, workers: int | None) -> tuple[float, dict]:
    from core.realset.ingest import ingest, job_summary
    from core.study import Study

    study = Study.create(study_dir)
    t0 = time.perf_counter()
    record = ingest(study, [files_dir], workers=workers, on_progress=lambda *_: None)
    elapsed = time.perf_counter() - t0
    if record["state"] != "succeeded":
        raise SystemExit(f"ingest failed: {record['error']}")
    summary = job_summary(study, record["id"])
    return elapsed, {"ingested": summary["ingested"], "skipped": len(summary["skipped"]),
                     "flagged": study.store.scalar("SELECT count(*) FROM real_images WHERE flagged")}


VARIANTS = 10


def _write_group(args: tuple[int, str]) -> list[str]:
    import numpy as np
    from PIL import Image

    from core.demo import phantom

    base, folder = args
    p = phantom.PhantomParams.random(ps.EVAL_BASE + 200_000 + base, height=2000, aspect=0.75, format="png",
                                     bit_depth=16, negative=False, facing="left")
    film = phantom.render(p)
    rng = np.random.default_rng([base, 7])
    names = []
    for j in range(VARIANTS):
        v = film + rng.normal(0.0, 0.004, film.shape).astype(np.float32)
        if j % 3 == 1:
            v = v[:, ::-1]
        if j % 3 == 0:
            v = 1.0 - v
        q = np.rint(np.clip(v, 0, 1) * 65535).astype(np.uint16)
        name = f"phantom_{base:04d}_{j}.png"
        tmp = Path(folder) / (name + ".part")
        Image.fromarray(np.ascontiguousarray(q)).save(tmp, format="PNG", compress_level=1)  # as write_phantom
        os.replace(tmp, Path(folder) / name)
        names.append(name)
    return names


def build_set(count: int) -> list[Path]:
    """The first `count` files of the cached set, writing the groups that are missing."""
    folder = ps.OUT / f"ingest-2000x1500-16bit-phantom{ps.phantom_version()}"
    folder.mkdir(parents=True, exist_ok=True)
    groups = [g for g in range(-(-count // VARIANTS))
              if not (folder / f"phantom_{g:04d}_{VARIANTS - 1}.png").exists()]
    if groups:
        import sys
        from concurrent.futures import ProcessPoolExecutor

        print(f"writing {len(groups) * VARIANTS} phantom files into {folder} (cached)", file=sys.stderr)
        with ProcessPoolExecutor(len(os.sched_getaffinity(0))) as pool:
            list(pool.map(_write_group, [(g, str(folder)) for g in groups]))
    return sorted(p for p in folder.iterdir() if p.suffix == ".png")[:count]


def cpu_per_image(files: list[Path], work: Path) -> tuple[float, float]:
    """CPU seconds per image of the baseline and of our whole pipeline in one process (workers=0): the
    figures a loaded shared machine cannot distort much, unlike wall-clock throughput."""
    from core.realset import ingest
    from core.study import Study

    t0 = time.process_time()
    baseline(files, work / "cpu-baseline")
    base = (time.process_time() - t0) / len(files)
    src = work / "cpu-src"
    src.mkdir()
    for p in files:
        os.symlink(p, src / p.name)
    study = Study.create(work / "cpu-study")
    t0 = time.process_time()
    ingest(study, [src], workers=0, on_progress=lambda *_: None)
    return base, (time.process_time() - t0) / len(files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=None, help="ingest worker processes (default: cores)")
    parser.add_argument("--cpu-sample", type=int, default=100, help="images for the CPU-time measurement")
    args = parser.parse_args()
    files = build_set(args.count)
    megabytes = sum(p.stat().st_size for p in files) / 1e6
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        src = work / "src"
        src.mkdir()
        for p in files:  # the ingest reads a folder: link exactly these files into one
            os.symlink(p, src / p.name)
        load_before = os.getloadavg()[0]
        t_base = baseline(files, work / "baseline")
        t_ours, outcome = ours(src, work / "study", args.workers)
        load_after = os.getloadavg()[0]
        cpu_base, cpu_ours = cpu_per_image(files[: min(len(files), args.cpu_sample)], work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    from core.realset.ingest import default_workers

    print(json.dumps({
        "benchmark": "ingest", "images": len(files), "source": "phantom PNG 16-bit 2000x1500",
        "source_megabytes": round(megabytes, 1), "cpu_cores": len(os.sched_getaffinity(0)),
        "workers": args.workers if args.workers is not None else default_workers(),
        "ours_images_per_s": round(len(files) / t_ours, 1), "ours_seconds": round(t_ours, 1),
        "baseline_single_process_pil_images_per_s": round(len(files) / t_base, 1),
        "baseline_seconds": round(t_base, 1), "speedup": round(t_base / t_ours, 2),
        "load_average_1m": [round(load_before, 2), round(load_after, 2)],
        "cpu_seconds_per_image": {"baseline": round(cpu_base, 4), "ours_in_one_process": round(cpu_ours, 4),
                                  "sample": min(len(files), args.cpu_sample)},
        # What an otherwise idle machine would give: one process for the loop, every core for ours.
        "idle_estimate_images_per_s": {"baseline": round(1 / cpu_base, 1),
                                       "ours": round(len(os.sched_getaffinity(0)) / cpu_ours, 1)},
        **outcome,
    }))


if __name__ == "__main__":
    main()
