"""python -m benchmarks [--quick] [--json] [--only NAME ...] [--out FILE]

Runs every benchmark (benchmarks/suite.py), each script in its own process, and prints one JSON line per
result with --json (otherwise a table). Always writes a JSON-lines file (default
benchmarks/out/results-<date>.jsonl): a {"meta": ...} line first (date, machine, load, command), then the
results, then a {"meta_end": ...} line (duration, load after). `python -m benchmarks.report FILE` renders the
README table from it. Exit code: 0 when every benchmark ran or was skipped, 1 when any failed, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .runner import Result, default_out_path, machine_meta, run_all
from .suite import BENCHES, names


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}"


def table(results: list[Result]) -> str:
    rows = [("name", "unit", "ours", "peer", "ratio", "note")]
    for r in results:
        note = r.config.get("error") or r.config.get("skipped") or ""
        rows.append((r.name, r.unit, _fmt(r.ours), _fmt(r.peer_value), _fmt(r.ratio), note[:60]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small configurations (< 15 min on 2 CPU cores)")
    ap.add_argument("--json", action="store_true", help="one JSON line per result on stdout")
    ap.add_argument("--only", nargs="+", metavar="NAME", help=f"run only these ({', '.join(names())})")
    ap.add_argument("--out", type=Path, default=None, help="results file (default benchmarks/out/results-<date>.jsonl)")
    ap.add_argument("--list", action="store_true", help="list the benchmark names and exit")
    args = ap.parse_args(argv)
    if args.list:
        print("\n".join(names()))
        return 0
    benches = BENCHES
    if args.only:
        unknown = sorted(set(args.only) - set(names()))
        if unknown:
            print(f"error: unknown benchmark {', '.join(unknown)}; choose from {', '.join(names())}",
                  file=sys.stderr)
            return 2
        benches = [b for b in BENCHES if b.selected_by(args.only)]
    out = args.out or default_out_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    meta = machine_meta() | {"command": "python -m benchmarks " + " ".join(argv if argv is not None else sys.argv[1:]),
                             "quick": args.quick, "benchmarks": [b.name for b in benches]}

    def log(msg: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)

    log(f"machine: {meta['device']}, load average {meta['load_avg']}; results -> {out}")
    with open(out, "w") as fh:
        fh.write(json.dumps({"meta": meta}) + "\n")
        fh.flush()

        def emit(r: Result) -> None:
            line = json.dumps(r.to_json())
            fh.write(line + "\n")
            fh.flush()
            if args.json:
                print(line, flush=True)

        results = run_all(benches, args.quick, emit, log)
        end = {"seconds": round(time.monotonic() - started, 1), "load_avg": [round(x, 2) for x in os.getloadavg()],
               "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "failed": [r.name for r in results if r.failed]}
        fh.write(json.dumps({"meta_end": end}) + "\n")
    if not args.json:
        print(table(results))
    log(f"done in {end['seconds']:.0f} s, load average {end['load_avg']}; results in {out}")
    if end["failed"]:
        log(f"FAILED: {', '.join(end['failed'])}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
