"""Accuracy of the polarity and orientation detectors on phantoms NOT used to tune them; one JSON line.

    .venv/bin/python benchmarks/bench_detectors.py [--count 1000] [--canonical 200] [--workers N]

The evaluation phantoms (seeds 1,000,000 + i; tuning used 2,000,000 + i) are balanced over polarity and
facing, alternate 8/16-bit, cycle PNG/JPEG/TIFF and have heights uniform in 900-2500 px. Each file goes
through the ingest's own per-file path (core.realset.ingest.process_file: decode, resize, detect, invert, mirror),
and the recorded decisions are compared with the phantom labels. The orientation detector is also measured
on positive canonical phantoms rendered directly at 256 and 64 px (the synthetic-image use). The target is
>= 99% for each detector.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor

import phantom_sets as ps


def ingest_one(path: str) -> dict:
    from core.realset.ingest import IngestOptions, process_file

    res = process_file(path, frozenset(), IngestOptions(size=256))
    return {"outcome": res.outcome, "reason": res.reason, **{k: res.row.get(k) for k in
            ("inverted", "flipped", "polarity_confidence", "orientation_confidence", "flagged")}}


def canonical_one(args: tuple[int, int, str]) -> tuple[str, float]:
    from core.realset import detectors
    from core.demo import phantom

    seed, size, facing = args
    return detectors.detect_orientation(phantom.render_canonical(seed, size, facing))


def _acc(pairs: list[bool]) -> float | None:
    return round(sum(pairs) / len(pairs), 4) if pairs else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--canonical", type=int, default=200, help="canonical phantoms per size (256, 64)")
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    t0 = time.perf_counter()
    folder = ps.cache_folder("detector-eval", args.count)
    specs = ps.plan(ps.EVAL_BASE, args.count, (900, 2500), ("png", "jpeg", "tiff"))
    assert not {s["seed"] for s in specs} & set(range(ps.TUNE_BASE, ps.TUNE_BASE + 100_000)), "seed overlap"
    rows = ps.build(folder, specs, args.workers)
    t1 = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(ingest_one, [str(folder / r["file"]) for r in rows], chunksize=4))
        canon_specs = [(ps.EVAL_BASE + 500_000 + i, size, "right" if i % 2 else "left")
                       for size in (256, 64) for i in range(args.canonical)]
        canon = list(pool.map(canonical_one, canon_specs, chunksize=8))
    t2 = time.perf_counter()
    pol, ori, flagged = [], [], 0
    groups: dict[str, dict[str, list[bool]]] = defaultdict(lambda: {"polarity": [], "orientation": []})
    errors = []
    for r, res in zip(rows, results):
        if res["outcome"] != "ingested":
            errors.append({"file": r["file"], "error": res["reason"]})
            continue
        p_ok = res["inverted"] == r["negative"]
        o_ok = res["flipped"] == (r["facing"] == "right")
        pol.append(p_ok)
        ori.append(o_ok)
        flagged += bool(res["flagged"])
        size = "900-1400" if r["height"] < 1400 else "1400-1950" if r["height"] < 1950 else "1950-2500"
        for key in (f"bit_depth={r['bit_depth']}", f"format={r['format']}", f"facing={r['facing']}",
                    f"negative={r['negative']}", f"height={size}"):
            groups[key]["polarity"].append(p_ok)
            groups[key]["orientation"].append(o_ok)
        if not (p_ok and o_ok):
            errors.append({"file": r["file"], "negative": r["negative"], "facing": r["facing"],
                           "polarity_ok": p_ok, "orientation_ok": o_ok,
                           "polarity_confidence": res["polarity_confidence"],
                           "orientation_confidence": res["orientation_confidence"]})
    canon_ok = defaultdict(list)
    for (seed, size, facing), (found, _conf) in zip(canon_specs, canon):
        canon_ok[size].append(found == facing)
    print(json.dumps({
        "benchmark": "detectors", "images": len(rows), "eval_seeds": [ps.EVAL_BASE, ps.EVAL_BASE + len(rows) - 1],
        "polarity_accuracy": _acc(pol), "orientation_accuracy": _acc(ori),
        "flagged_fraction": round(flagged / max(1, len(pol)), 4),
        "canonical_orientation_accuracy": {str(k): _acc(v) for k, v in canon_ok.items()},
        "by_group": {k: {"n": len(v["polarity"]), "polarity": _acc(v["polarity"]),
                         "orientation": _acc(v["orientation"])} for k, v in sorted(groups.items())},
        "errors": errors[:20], "n_errors": len(errors),
        "seconds": {"generate": round(t1 - t0, 1), "measure": round(t2 - t1, 1)},
    }))


if __name__ == "__main__":
    main()
