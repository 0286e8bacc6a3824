"""Plausibility pre-screen on phantom runs with planted implausible images: AUROC and decisions saved.

For each seed: plausible phantoms as the real set; a synthetic run in which every 7th image is one of the five
planted defects (airway posterior, elements swapped, missing or doubled vertebra, distortion); a simulated
screener decides the first `--decided` images correctly; the pre-screen scores the rest. Reported beside it in
the same run, on the same images: the nearest-real distance in pixel space (the audit's `pixel` embedding),
the baseline a naive pre-screen would use, and the pre-screen without any decisions (atypicality only).

Prints one JSON line. Runs in memory (no study folder) with the same functions the study path uses.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.demo import phantom
from core.metrics.embeddings import pixel_vector
from core.screening.prescreen import RealModel, auroc, hog_bank, review_savings, score_features


def one_seed(seed: int, n_real: int, n_syn: int, n_decided: int, size: int) -> dict:
    base = 1_000_000 * (seed + 1)
    real = [phantom.render_canonical(base + i, size=size) for i in range(n_real)]
    defects = [phantom.DEFECTS[(i // 7) % len(phantom.DEFECTS)] if i % 7 == 3 else None for i in range(n_syn)]
    syn = [phantom.render_canonical(base + 500_000 + i, size=size, defect=d) for i, d in enumerate(defects)]
    y = np.array([d is not None for d in defects], dtype=np.int64)
    t0 = time.perf_counter()
    x = RealModel.fit([hog_bank(r) for r in real]).features([hog_bank(s) for s in syn]).astype(np.float64)
    labels = np.full(n_syn, -1)
    labels[:n_decided] = y[:n_decided]
    scores, mode, _ = score_features(x, labels)
    seconds = time.perf_counter() - t0
    unsup, _, _ = score_features(x, None)
    pr = np.stack([pixel_vector(r) for r in real])
    ps = np.stack([pixel_vector(s) for s in syn])
    pixel_distance = 1.0 - (ps @ pr.T).max(axis=1)
    rest = slice(n_decided, None)
    per_kind = {}
    for kind in phantom.DEFECTS:
        m = np.array([d in (kind, None) for d in defects])[rest]
        per_kind[kind] = round(auroc(scores[rest][m], y[rest][m]), 3)
    return {"seed": seed, "mode": mode, "auroc": round(auroc(scores[rest], y[rest]), 3),
            "auroc_no_decisions": round(auroc(unsup[rest], y[rest]), 3),
            "auroc_pixel_nearest_real": round(auroc(pixel_distance[rest], y[rest]), 3),
            "per_defect_auroc": per_kind, "planted_undecided": int(y[rest].sum()),
            "undecided": int(n_syn - n_decided),
            "recall_0.9": review_savings(scores[rest], y[rest], 0.9),
            "recall_1.0": review_savings(scores[rest], y[rest], 1.0),
            "score_seconds": round(seconds, 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--real", type=int, default=300)
    p.add_argument("--synthetic", type=int, default=600)
    p.add_argument("--decided", type=int, default=150)
    p.add_argument("--size", type=int, default=64, help="phantom size in pixels (the features use 24-40 px)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    a = p.parse_args()
    runs = [one_seed(s, a.real, a.synthetic, a.decided, a.size) for s in a.seeds]
    aurocs = [r["auroc"] for r in runs]
    print(json.dumps({"benchmark": "prescreen", "real": a.real, "synthetic": a.synthetic, "decided": a.decided,
                      "size": a.size, "cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
                      "auroc_mean": round(float(np.mean(aurocs)), 3), "auroc_min": min(aurocs),
                      "pixel_baseline_mean": round(float(np.mean([r["auroc_pixel_nearest_real"] for r in runs])), 3),
                      "runs": runs}))


if __name__ == "__main__":
    main()
