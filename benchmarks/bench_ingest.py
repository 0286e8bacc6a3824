"""Ingest throughput: our parallel ingest job next to a plain single-process PIL loop, same files, same run.

    .venv/bin/python benchmarks/bench_ingest.py [--count 2000] [--workers N]

The files are phantom radiographs of 2000x1500 px, 16-bit grayscale PNG (a third negatives, a third
right-facing), generated once into benchmarks/out/ (git-ignored) and reused. "ours" is the whole ingest
job (`core.ingest.ingest`): hashing, decoding at full bit depth, float Lanczos resize, both detectors,
atomic PNG writes and the database rows, in worker processes. "baseline" is what a short script does in one
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
    from core.ingest import ingest, job_summary
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=None, help="ingest worker processes (default: cores)")
    args = parser.parse_args()
    folder = ps.cache_folder("ingest-2000x1500-16bit", args.count)
    specs = []
    for s in ps.plan(ps.EVAL_BASE + 200_000, args.count, (2000, 2000), ("png",), bit_depths=(16,)):
        specs.append({**s, "negative": s["seed"] % 3 == 0, "facing": "right" if s["seed"] % 3 == 1 else "left",
                      "aspect": 0.75})
    ps.build(folder, specs)
    files = sorted(p for p in folder.iterdir() if p.suffix == ".png")
    megabytes = sum(p.stat().st_size for p in files) / 1e6
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        t_base = baseline(files, work / "baseline")
        t_ours, outcome = ours(folder, work / "study", args.workers)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    from core.ingest import default_workers

    print(json.dumps({
        "benchmark": "ingest", "images": len(files), "source": "phantom PNG 16-bit ~2000x1500",
        "source_megabytes": round(megabytes, 1), "cpu_cores": len(os.sched_getaffinity(0)),
        "workers": args.workers if args.workers is not None else default_workers(),
        "ours_images_per_s": round(len(files) / t_ours, 1), "ours_seconds": round(t_ours, 1),
        "baseline_single_process_pil_images_per_s": round(len(files) / t_base, 1),
        "baseline_seconds": round(t_base, 1), "speedup": round(t_base / t_ours, 2),
        "load_average_1m": round(os.getloadavg()[0], 2), **outcome,
    }))


if __name__ == "__main__":
    main()
