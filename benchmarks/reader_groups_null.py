"""How often the all-pairs group comparison (core/reader_study/analysis.py) says "different" by chance, and finds
a group that is worse: simulated raters (core/demo/raters.py), no database, no files.

For each image spread (`--image-sd`: the images' own realism, shared by every rater) it simulates `--studies`
studies of `--raters` x `--quartets` in which all four groups have the same level, and as many in which one
group is `--delta` lower; prints one JSON line per spread: the share of null studies with any Holm p < 0.05 in
the six pairs (family-wise false positives), the share of single null pairs with unadjusted p < 0.05, and the
share of studies in which all three pairs of the worse group reach Holm p < 0.05.

    .venv/bin/python benchmarks/reader_groups_null.py [--studies 400] [--raters 8] [--quartets 50]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.demo.raters import simulate_raters
from core.reader_study.analysis import compute
from core.reader_study.spec import PackSpec, QuartetItem

GROUPS = ["real", "68000", "run:conditional", "external:gan"]


def spec_for(count: int, seed: int) -> PackSpec:
    rng = np.random.default_rng(seed)
    items = [QuartetItem(q, int(pos), "real" if g == "real" else "synthetic", f"{g}-{q}", g, f"{q}-{pos}.png")
             for q in range(1, count + 1) for g, pos in zip(GROUPS, rng.permutation(4) + 1)]
    return PackSpec(pack_id="bench", seed=seed, checkpoints=GROUPS[1:], count=count, size=32, image_base_url=None,
                    shuffle_pages=False, created_at="", items=items)


def pairwise(spec: PackSpec, sims) -> list[dict]:
    raters = [{"id": s.response_id, "label": s.rater_code, "simulated": True, "flags": None} for s in sims]
    picks = [{"rater_id": s.response_id, "quartet": q, "chosen_position": p} for s in sims for q, p in s.picks.items()]
    ratings = [{"rater_id": s.response_id, "quartet": q, "position": p, "rating": v}
               for s in sims for (q, p), v in s.ratings.items()]
    return compute(spec, raters, picks, ratings)["pairwise"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--studies", type=int, default=400)
    ap.add_argument("--raters", type=int, default=8)
    ap.add_argument("--quartets", type=int, default=50)
    ap.add_argument("--delta", type=float, default=0.5, help="how much lower the worse group's level is")
    ap.add_argument("--image-sd", type=float, nargs="+", default=[0.0, 0.15])
    args = ap.parse_args()
    for sd in args.image_sd:
        family = single = single_n = found = 0
        for s in range(args.studies):
            spec = spec_for(args.quartets, s)
            null = pairwise(spec, simulate_raters(spec, args.raters, seed=s, levels={g: 3.3 for g in GROUPS},
                                                  image_sd=sd))
            family += any(t["p_holm"] is not None and t["p_holm"] < 0.05 for t in null)
            single += sum(t["p"] is not None and t["p"] < 0.05 for t in null)
            single_n += len(null)
            levels = {g: 3.3 for g in GROUPS} | {"external:gan": 3.3 - args.delta}
            worse = pairwise(spec, simulate_raters(spec, args.raters, seed=s, levels=levels, image_sd=sd))
            found += all(t["p_holm"] is not None and t["p_holm"] < 0.05 for t in worse
                         if "external:gan" in (t["a"], t["b"]))
        print(json.dumps({"bench": "reader_groups_null", "image_sd": sd, "raters": args.raters,
                          "quartets": args.quartets, "studies": args.studies,
                          "family_false_positive_rate": family / args.studies,
                          "pair_unadjusted_rate": single / single_n, "delta": args.delta,
                          "worse_group_found_rate": found / args.studies}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
