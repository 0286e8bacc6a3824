"""Exact real x synthetic top-k (core.audit.nearest.search_block) vs imagededup's find_duplicates, same vectors.

Random 768-d float32 vectors (default 27,000 synthetic x 5,000 real, as in the paper's audit). Each method
runs in its own child process that builds the same vectors from the same seed, so peak memory (ru_maxrss
minus the RSS once the vectors exist) is measured cleanly. imagededup gets a threshold just below our k-th
best similarity (float16 rounding allowance), so its output contains the same top pairs; we check that it
does and how many of our top-k it ranks identically. imagededup is constructed with a trivial CustomModel so
it never tries to download MobileNet weights (encodings are given, the model is unused).

Prints one JSON line. `--quick` runs 2,000 x 1,000 for iteration; `--skip-imagededup` times ours only.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def vectors(n_syn: int, n_real: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n_syn, dim), dtype=np.float32),
            rng.standard_normal((n_real, dim), dtype=np.float32))


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def cpu_s() -> float:
    """CPU seconds of this process and its finished children (imagededup's pool): robust to a busy machine."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def worker_ours(a: argparse.Namespace) -> dict:
    from core.audit.nearest import search_block
    from core.metrics.embeddings import l2_normalize

    syn, real = vectors(a.synthetic, a.real, a.dim, a.seed)
    base = rss_mb()
    t0, c0 = time.perf_counter(), cpu_s()
    qn, bn = l2_normalize(syn), l2_normalize(real)  # normalised copies of the inputs (what the audit stores)
    normalised = rss_mb()
    t1 = time.perf_counter()
    found = search_block(qn, bn, a.top, memory_mb=a.memory_mb)
    seconds, cpu, search_seconds = time.perf_counter() - t0, cpu_s() - c0, time.perf_counter() - t1
    peak = peak_mb()
    # A second, untimed pass under tracemalloc: the bytes the search alone allocated at its peak.
    import tracemalloc

    tracemalloc.start()
    search_block(qn, bn, a.top, memory_mb=a.memory_mb)
    traced = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return {"seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3), "search_seconds": round(search_seconds, 3),
            "peak_rss_delta_mb": round(peak - base, 1), "normalised_inputs_mb": round(normalised - base, 1),
            "search_peak_rss_delta_mb": round(peak - normalised, 1),
            "search_tracemalloc_peak_mb": round(traced, 1), "memory_budget_mb": a.memory_mb,
            "block_mb": round(found.block_bytes / 2**20, 1),
            "chunk_rows": found.chunk_rows,
            "pairs": [[int(q), int(b), float(s)] for q, b, s in zip(found.pair_query, found.pair_base,
                                                                      found.pair_sim)]}


def worker_imagededup(a: argparse.Namespace) -> dict:
    import logging

    import torch
    from imagededup.methods import CNN
    from imagededup.utils.models import CustomModel

    syn, real = vectors(a.synthetic, a.real, a.dim, a.seed)
    cnn = CNN(verbose=False, model_config=CustomModel(name="unused", model=torch.nn.Identity(),
                                                      transform=lambda im: im))
    logging.getLogger("imagededup").setLevel(logging.WARNING)
    encoding_map = {f"s{i}": syn[i] for i in range(len(syn))}
    encoding_map.update({f"r{j}": real[j] for j in range(len(real))})
    base = rss_mb()
    t0, c0 = time.perf_counter(), cpu_s()
    result = cnn.find_duplicates(encoding_map=encoding_map, min_similarity_threshold=float(a.threshold),
                                 scores=True)
    seconds, cpu = time.perf_counter() - t0, cpu_s() - c0
    peak = peak_mb()
    pairs = []
    for key, dups in result.items():
        if key.startswith("s"):
            pairs.extend([int(key[1:]), int(d[1:]), float(s)] for d, s in dups if d.startswith("r"))
    pairs.sort(key=lambda p: (-p[2], p[0], p[1]))
    return {"seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3), "peak_rss_delta_mb": round(peak - base, 1),
            "pairs": pairs[: max(a.top * 3, 1000)]}


def child(kind: str, a: argparse.Namespace, **extra: float) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, "--synthetic", str(a.synthetic), "--real", str(a.real),
           "--dim", str(a.dim), "--top", str(a.top), "--seed", str(a.seed), "--memory-mb", str(a.memory_mb)]
    for k, v in extra.items():
        cmd += [f"--{k}", str(v)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"{kind} worker failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--synthetic", type=int, default=27_000)
    p.add_argument("--real", type=int, default=5_000)
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--top", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--memory-mb", type=float, default=64.0)
    p.add_argument("--quick", action="store_true", help="2,000 x 1,000 vectors")
    p.add_argument("--skip-imagededup", action="store_true")
    p.add_argument("--worker", choices=["ours", "imagededup"], help=argparse.SUPPRESS)
    p.add_argument("--threshold", type=float, default=0.0, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.quick:
        a.synthetic, a.real = 2_000, 1_000
    if a.worker:
        print(json.dumps(worker_ours(a) if a.worker == "ours" else worker_imagededup(a)))
        return

    ours = child("ours", a)
    kth = ours["pairs"][-1][2]
    line = {"benchmark": "audit_topk", "synthetic": a.synthetic, "real": a.real, "dim": a.dim, "top": a.top,
            "cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
            "ours": {k: v for k, v in ours.items() if k != "pairs"}}
    if not a.skip_imagededup:
        threshold = kth - 0.002  # float16 spacing near 0.1-0.2 is ~1e-4; leave room
        ref = child("imagededup", a, threshold=threshold)
        theirs = {(q, b) for q, b, _ in ref["pairs"]}
        ours_pairs = [(q, b) for q, b, _ in ours["pairs"]]
        same_rank = sum(1 for x, y in zip(ours_pairs, [(q, b) for q, b, _ in ref["pairs"]]) if x == y)
        max_diff = max(abs(s - t) for (q, b, s) in ours["pairs"] for (q2, b2, t) in ref["pairs"]
                       if (q, b) == (q2, b2)) if theirs else None
        line.update({
            "imagededup": {k: v for k, v in ref.items() if k != "pairs"} | {"threshold": round(threshold, 5)},
            "speedup": round(ref["seconds"] / ours["seconds"], 1),
            "cpu_speedup": round(ref["cpu_seconds"] / max(ours["cpu_seconds"], 1e-3), 1),
            "memory_ratio": round(ref["peak_rss_delta_mb"] / max(ours["peak_rss_delta_mb"], 1e-3), 1),
            "top_k_found_by_imagededup": sum(1 for x in ours_pairs if x in theirs) / len(ours_pairs),
            "same_rank_positions": same_rank, "max_abs_similarity_diff": max_diff,
        })
    print(json.dumps(line))


if __name__ == "__main__":
    main()
