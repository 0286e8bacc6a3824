"""The single-image reader-study design end to end on a tiny synthetic study: build a pack, import simulated
readers' Qualtrics CSV, analyse (docs/guide/reader-designs.md, "Measured").

Prints one JSON line: seconds per stage and what the analysis found for two groups of known detectability.
`--count`, `--readers`, `--size` set the study; not part of benchmarks/suite.py (no peer to compare with).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--readers", type=int, default=8)
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args()
    # imported after the path is set: the benchmark runs from a checkout, not an installed package
    from core.demo.single_raters import simulate_single_readers, write_single_qualtrics_csv
    from core.reader_study.single_analysis import analyze_single
    from core.reader_study.single_pack import build_single_pack
    from core.reader_study.single_responses import import_single_ratings
    from tests.factories.survey import tiny_study

    tmp = Path(tempfile.mkdtemp(prefix="bench-single-"))
    per_group = (args.count - args.count // 2 + 1) // 2
    study = tiny_study(tmp, n_real=args.count // 2 + 10, per_ckpt=2 * per_group, steps=(2000, 4000))
    t0 = time.perf_counter()
    spec = build_single_pack(study, tmp / "pack", groups=["2000", "4000"], count=args.count, seed=1,
                             size=args.size, free_text=True)
    t1 = time.perf_counter()
    readers = simulate_single_readers(spec, args.readers, seed=2, unanswered=0.02,
                                      detectability={"2000": 0.5, "4000": 1.5})
    write_single_qualtrics_csv(tmp / "responses.csv", spec, readers)
    t2 = time.perf_counter()
    summary = import_single_ratings(study, tmp / "responses.csv", spec.pack_id)
    t3 = time.perf_counter()
    res = analyze_single(study, spec.pack_id, report_dir=tmp / "report")
    t4 = time.perf_counter()
    print(json.dumps({
        "bench": "single_design", "count": args.count, "readers": args.readers, "size": args.size,
        "build_s": round(t1 - t0, 2), "import_s": round(t3 - t2, 2), "analyze_s": round(t4 - t3, 2),
        "seen_unanswered": summary["seen_unanswered"],
        "auc_vs_real": {g["group"]: round(g["auc_vs_real"]["estimate"], 3) for g in res["per_group"]
                        if g.get("auc_vs_real")},
        "holm_p": {f"{c['a']} vs {c['b']}": round(c["p_holm"], 4) for c in res["group_comparisons"]},
        "model": res["model"]["method"],
        "model_log_odds": {e["term"]: round(e["log_odds"], 2) for e in res["model"]["effects"]},
        "report": res["report"]["html"]}))


if __name__ == "__main__":
    main()
