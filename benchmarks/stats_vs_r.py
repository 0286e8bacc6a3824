"""core/reader_study/statistics.py side by side with R (`Rscript` on PATH): paired Wilcoxon, Holm and the binomial test.

Random reader studies (8-20 raters, per-rater rating sums over 50 ratings, so ties and zeros are common) are
tested with core.reader_study.statistics.wilcoxon_paired and with R's wilcox.test(paired = TRUE) on the same
integer sums; prints one JSON line: cases, max |p difference|, V mismatches, and how often R on *floating* means
(sum / 50) gives a different p because floating differences split exact ties.

    .venv/bin/python benchmarks/stats_vs_r.py [--cases 300] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.reader_study import statistics

R_SCRIPT = r"""
lines <- readLines(commandArgs(TRUE)[1])
for (ln in lines) {
  v <- as.numeric(strsplit(ln, " ")[[1]]); n <- length(v) / 2
  x <- v[1:n]; y <- v[(n + 1):(2 * n)]
  a <- suppressWarnings(wilcox.test(x, y, paired = TRUE))
  b <- suppressWarnings(wilcox.test(x / 50, y / 50, paired = TRUE))
  cat(sprintf("%.15g %.15g %.15g\n", a$statistic, a$p.value, b$p.value))
}
"""


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if shutil.which("Rscript") is None:
        print(json.dumps({"benchmark": "stats_vs_r", "skipped": "Rscript not on PATH"}))
        return 0
    rng = random.Random(args.seed)
    cases = []
    for _ in range(args.cases):
        n = rng.randint(8, 20)
        x = [rng.randint(150, 180) for _ in range(n)]
        y = [v - rng.randint(-6, 6) for v in x]
        cases.append((x, y))
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "cases.txt"
        data.write_text("\n".join(" ".join(map(str, x + y)) for x, y in cases) + "\n")
        script = Path(tmp) / "w.R"
        script.write_text(R_SCRIPT)
        out = subprocess.run(["Rscript", str(script), str(data)], capture_output=True, text=True, check=True)
        r_rows = [list(map(float, ln.split())) for ln in out.stdout.strip().splitlines()]
        holm_r = subprocess.run(["Rscript", "-e", "cat(sprintf('%.15g', p.adjust(c(0.128, 0.236, 1, 0.01, "
                                 "0.04), 'holm')))"], capture_output=True, text=True, check=True).stdout.split()
    max_dp, v_mismatch, float_differs, nan_both = 0.0, 0, 0, 0
    for (x, y), (v_r, p_r, p_float) in zip(cases, r_rows):
        res = statistics.wilcoxon_paired([Fraction(a, 50) for a in x], [Fraction(b, 50) for b in y])
        if p_r != p_r:  # NaN: all differences zero
            nan_both += res.p != res.p
            continue
        max_dp = max(max_dp, abs(res.p - p_r))
        v_mismatch += res.statistic_V != v_r
        float_differs += abs(p_float - p_r) > 1e-12
    holm_ours = statistics.holm([0.128, 0.236, 1, 0.01, 0.04])
    print(json.dumps({
        "benchmark": "stats_vs_r", "cases": len(cases), "r_version": _r_version(),
        "wilcoxon_max_abs_p_diff": max_dp, "wilcoxon_V_mismatches": v_mismatch, "all_zero_cases_nan_in_both": nan_both,
        "r_on_float_means_differs_in": float_differs,
        "holm_max_abs_diff": max(abs(a - float(b)) for a, b in zip(holm_ours, holm_r)),
    }))
    return 0


def _r_version() -> str:
    out = subprocess.run(["Rscript", "-e", "cat(R.version.string)"], capture_output=True, text=True)
    return out.stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
