"""Fit the weights of core/realset/detectors.py on tuning phantoms (seeds disjoint from the evaluation set).

    .venv/bin/python benchmarks/tune_detectors.py [--count 400]

Each detector is a weighted sum of anatomical features without intercept (so it is exactly symmetric under
the transformation it detects); the weights are an L2-regularised logistic regression fitted by Newton's
method. Prints one JSON line with the weights (paste them into core/realset/detectors.py) and the tuning accuracy.
Features are computed on the same canonical float image the ingest pipeline gives the detectors.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

import phantom_sets as ps


def features_of(args: tuple[str, dict, int]) -> tuple[list[float], list[float]]:
    from core.realset import detectors
    from core.realset.canonical import IngestOptions, content_box, resize_decoded
    from core.realset.readers import decode_bytes

    path, row, size = args
    data = Path(path).read_bytes()
    dec = decode_bytes(data, Path(path).suffix)
    opts = IngestOptions(size=size)
    _, _, w, h = content_box(dec.width, dec.height, opts.size, opts.resize)
    content = resize_decoded(dec, w, h)
    pol = detectors.polarity_features(content).tolist()
    positive = 1.0 - content if row["negative"] and not dec.inverted_by_tag else content
    ori = detectors.orientation_features(positive).tolist()
    return pol, ori


def canonical_features(args: tuple[int, int, str]) -> list[float]:
    from core.realset import detectors
    from core.demo import phantom

    seed, size, facing = args
    return detectors.orientation_features(phantom.render_canonical(seed, size, facing)).tolist()


def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = 1.0, iters: int = 50) -> np.ndarray:
    """Logistic regression without intercept; y in {0, 1}. Features are standardised for the fit."""
    scale = X.std(axis=0) + 1e-12
    Z = X / scale
    w = np.zeros(Z.shape[1])
    for _ in range(iters):
        p = 1 / (1 + np.exp(-Z @ w))
        grad = Z.T @ (p - y) + l2 * w
        hess = (Z * (p * (1 - p))[:, None]).T @ Z + l2 * np.eye(len(w))
        w -= np.linalg.solve(hess, grad)
    return w / scale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--canonical", type=int, default=100, help="canonical 64/256 px phantoms per size")
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    t0 = time.perf_counter()
    folder = ps.cache_folder("detector-tune", args.count)
    specs = ps.plan(ps.TUNE_BASE, args.count, (900, 2500), ("png", "jpeg", "tiff"))
    rows = ps.build(folder, specs, args.workers)
    with ProcessPoolExecutor(args.workers) as pool:
        feats = list(pool.map(features_of, [(str(folder / r["file"]), r, 256) for r in rows], chunksize=4))
        canon = list(pool.map(canonical_features,
                              [(ps.TUNE_BASE + 50_000 + i, size, "right" if i % 2 else "left")
                               for size in (64, 256) for i in range(args.canonical)], chunksize=8))
    P = np.array([f[0] for f in feats])
    yp = np.array([0.0 if r["negative"] else 1.0 for r in rows])
    Xo = np.array([f[1] for f in feats] + canon)
    yo = np.array([1.0 if r["facing"] == "left" else 0.0 for r in rows]
                  + [0.0 if i % 2 else 1.0 for size in (64, 256) for i in range(args.canonical)])
    from core.realset import detectors

    wp, wo = fit_logistic(P, yp), fit_logistic(Xo, yo)
    print(json.dumps({
        "tuning_seeds": [ps.TUNE_BASE, ps.TUNE_BASE + args.count - 1],
        "polarity": {"features": detectors.POLARITY_FEATURES, "weights": [round(float(v), 3) for v in wp],
                     "tuning_accuracy": float(((P @ wp > 0) == (yp > 0.5)).mean())},
        "orientation": {"features": detectors.ORIENTATION_FEATURES, "weights": [round(float(v), 3) for v in wo],
                        "tuning_accuracy": float(((Xo @ wo > 0) == (yo > 0.5)).mean())},
        "images": len(rows), "canonical_images": 2 * args.canonical,
        "seconds": round(time.perf_counter() - t0, 1),
    }))


if __name__ == "__main__":
    main()
