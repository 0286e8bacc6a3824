"""Plausibility pre-screen: a score per synthetic image predicting that the screener will reject it.

The paper names automated post-generation filters as future work; this is one. Two stages:

1. **Atypicality features** (no labels, no weights): every image is described by a bank of histograms of
   oriented gradients (HOG) at five scales -- bone edges, endplates and the airway wall, the structure the
   implausible samples get wrong -- and compared with the REAL set in that space: the PCA reconstruction
   error from the real images' principal subspace ("how far from the manifold of real films") and the mean
   cosine distance to the 5 nearest real images ("distance to the real set"). Ten numbers per image, cached
   in the ``embeddings`` table under a model name that includes a fingerprint of the real set.
2. **A light classifier** trained on the screening decisions made so far (``reviews``: an image any
   reviewer rejected is positive): standardised features, L2 logistic regression with balanced class
   weights (C = 0.1: steadier than 1.0 across seeds with ~20 rejects). With fewer than ``MIN_PER_CLASS``
   rejects or accepts it falls back to the mean rank of the atypicality features.

The screening queue sorts by :func:`prescreen_scores`, ``{synthetic image id: score in [0, 1]}``, higher =
more likely implausible. Scores are stored in ``prescreen_scores`` and recomputed only when decisions,
images or the real set changed (the classifier step takes milliseconds; new images need their features).

Why HOG rather than pixels: on phantom runs with planted defects, nearest-neighbour distance in pixel space
scored an AUROC of ~0.55 (pose and size variation dominate pixels), the HOG bank ~0.9 (README, "Memorization
audit").
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from core.metrics.embeddings import EmbeddingStopped, cached_vectors, load_gray, store_vectors
from core.errors import CspineError
from core.study import Study
from core.jobs.runner import JobPaused

FEATURE_VERSION = "v1"
HOG_SCALES: tuple[tuple[int, int], ...] = ((32, 4), (32, 8), (24, 4), (40, 4), (40, 8))  # (image size, cell)
HOG_BINS = 9
PCA_COMPONENTS = 16
KNN = 5
MIN_PER_CLASS = 5
BATCH = 512

Progress = Callable[[int, int, str], None]


# ---------------------------------------------------------------------------------------------------
# Features


def hog_vector(image: np.ndarray, size: int = 32, cell: int = 4, bins: int = HOG_BINS) -> np.ndarray:
    """Histograms of oriented gradients of an image area-downsampled to size x size, unit norm.

    Unsigned orientations in ``bins`` bins, magnitude-weighted, per ``cell`` x ``cell`` cell; 2x2-cell
    blocks L2-normalised and clipped at 0.2 (Dalal & Triggs), then the whole vector L2-normalised.
    """
    im = np.asarray(Image.fromarray(np.asarray(image, np.uint8)).resize((size, size), Image.Resampling.BOX),
                    np.float32) / 255.0
    gx, gy = _sobel(im)
    mag = np.hypot(gx, gy)
    b = np.minimum((np.mod(np.arctan2(gy, gx), np.pi) / np.pi * bins).astype(np.int64), bins - 1)
    n = size // cell
    cells = np.arange(n * cell) // cell
    flat = (cells[:, None] * n + cells[None, :]) * bins + b[: n * cell, : n * cell]
    hist = np.bincount(flat.ravel(), weights=mag[: n * cell, : n * cell].ravel(), minlength=n * n * bins)
    hist = hist.reshape(n, n, bins).astype(np.float32)
    blocks = np.concatenate([hist[:-1, :-1], hist[1:, :-1], hist[:-1, 1:], hist[1:, 1:]], axis=2)
    blocks = blocks / (np.linalg.norm(blocks, axis=2, keepdims=True) + 1e-3)
    v = np.minimum(blocks, 0.2).ravel()
    return v / (np.linalg.norm(v) + 1e-6)


def _sobel(im: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sobel gradients (x, y) with mirrored edges; equal to scipy.ndimage.sobel(mode='reflect')."""
    p = np.pad(im, 1, mode="symmetric")
    gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    return gx, gy


def hog_bank(image: np.ndarray) -> list[np.ndarray]:
    return [hog_vector(image, s, c) for s, c in HOG_SCALES]


@dataclass
class RealModel:
    """The real set in each HOG space: its principal subspace and its (normalised) vectors."""

    means: list[np.ndarray]
    components: list[np.ndarray]
    vectors: list[np.ndarray]

    @classmethod
    def fit(cls, banks: Sequence[list[np.ndarray]]) -> "RealModel":
        means, comps, vecs = [], [], []
        for j in range(len(HOG_SCALES)):
            x = np.stack([b[j] for b in banks]).astype(np.float32)
            mean = x.mean(axis=0)
            k = max(1, min(PCA_COMPONENTS, x.shape[0] - 1, x.shape[1]))
            # Principal axes from the SVD of the centred data (exact; the real set is at most a few thousand).
            _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
            means.append(mean)
            comps.append(vt[:k].astype(np.float32))
            vecs.append(x)
        return cls(means, comps, vecs)

    def features(self, banks: Sequence[list[np.ndarray]]) -> np.ndarray:
        """(n, 2 * scales): per scale the reconstruction error and the mean distance to the K nearest reals."""
        cols = []
        for j in range(len(HOG_SCALES)):
            x = np.stack([b[j] for b in banks]).astype(np.float32)
            centred = x - self.means[j]
            recon = centred @ self.components[j].T @ self.components[j]
            cols.append(((centred - recon) ** 2).sum(axis=1))
            sims = x @ self.vectors[j].T
            k = min(KNN, sims.shape[1])
            cols.append(1.0 - np.sort(sims, axis=1)[:, -k:].mean(axis=1))
        return np.stack(cols, axis=1).astype(np.float32)


def feature_names() -> list[str]:
    return [f"{kind}_hog{s}c{c}" for s, c in HOG_SCALES for kind in ("recon", "knn")]


def _real_fingerprint(real: Sequence[dict[str, Any]]) -> str:
    digest = hashlib.sha256("\n".join(sorted(r["id"] for r in real)).encode()).hexdigest()
    return digest[:12]


def feature_model_name(real: Sequence[dict[str, Any]]) -> str:
    return f"prescreen-hog-{FEATURE_VERSION}-{_real_fingerprint(real)}"


def compute_features(study: Study, *, progress: Progress | None = None,
                     should_stop: Callable[[], bool] | None = None) -> tuple[list[str], np.ndarray, str]:
    """(synthetic ids, features (n, 10), model name); features are cached per image and real set."""
    real = study.store.query("SELECT id, path FROM real_images ORDER BY id")
    syn = study.store.query("SELECT id, path FROM synthetic_images ORDER BY run_id, idx")
    if not real:
        raise CspineError(f"the pre-screen compares synthetic images with the real set, and {study.root} has no "
                          f"real images yet; ingest them first (`cspine-tui ingest`)")
    model = feature_model_name(real)
    ids = [s["id"] for s in syn]
    have = cached_vectors(study, model) if syn else {}
    todo = [s for s in syn if s["id"] not in have]
    if todo:
        if progress:
            progress(0, len(real), "pre-screen: describing the real set")
        real_model = RealModel.fit([hog_bank(load_gray(study.abs(r["path"]))) for r in real])
        for start in range(0, len(todo), BATCH):
            if should_stop is not None and should_stop():
                raise EmbeddingStopped(f"pre-screen: stopped after {start} of {len(todo)} new images")
            batch = todo[start:start + BATCH]
            feats = real_model.features([hog_bank(load_gray(study.abs(s["path"]))) for s in batch])
            store_vectors(study, model, [s["id"] for s in batch], feats)
            have.update({s["id"]: f for s, f in zip(batch, feats)})
            if progress:
                progress(start + len(batch), len(todo), "pre-screen: synthetic features")
    width = 2 * len(HOG_SCALES)
    x = np.stack([have[i] for i in ids]).astype(np.float64) if ids else np.zeros((0, width))
    return ids, x, model


# ---------------------------------------------------------------------------------------------------
# Scoring


def screening_labels(study: Study) -> dict[str, int]:
    """1 for a synthetic image any reviewer rejected, 0 for one only accepted (the any_reject rule)."""
    rows = study.store.query(
        "SELECT r.image_id, max(CASE WHEN r.decision = 'reject' THEN 1 ELSE 0 END) AS rejected "
        "FROM reviews r JOIN synthetic_images s ON s.id = r.image_id GROUP BY r.image_id")
    return {r["image_id"]: int(r["rejected"]) for r in rows}


def average_ranks(values: Sequence[float]) -> np.ndarray:
    """1-based ranks, ties sharing their average rank (scipy.stats.rankdata's default, without its import)."""
    v = np.asarray(values, dtype=float)
    order = np.argsort(v, kind="mergesort")
    _, start, counts = np.unique(v[order], return_index=True, return_counts=True)
    ranks = np.empty(len(v))
    ranks[order] = np.repeat(start + (counts + 1) / 2.0, counts)
    return ranks


def _rank01(v: np.ndarray) -> np.ndarray:
    return (average_ranks(v) - 1) / max(1, len(v) - 1)


def score_features(x: np.ndarray, labels: np.ndarray | None) -> tuple[np.ndarray, str, Any]:
    """Scores in [0, 1] from features; labels: 1/0 where decided, -1 where not. (scores, mode, classifier)."""
    if x.shape[0] == 0:
        return np.zeros(0), "empty", None
    unsupervised = np.mean([_rank01(x[:, j]) for j in range(x.shape[1])], axis=0)
    if labels is None or min((labels == 1).sum(), (labels == 0).sum()) < MIN_PER_CLASS:
        return unsupervised, "unsupervised", None
    clf = _classifier()
    known = labels >= 0
    clf.fit(x[known], labels[known])
    return clf.predict_proba(x)[:, 1], "classifier", clf


def _classifier() -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, class_weight="balanced", max_iter=5000))


def cross_validated_auroc(x: np.ndarray, y: np.ndarray, folds: int = 5) -> float | None:
    """AUROC of the classifier on decided images, each predicted by a model that did not see it."""
    from sklearn.model_selection import StratifiedKFold

    if min((y == 1).sum(), (y == 0).sum()) < max(folds, MIN_PER_CLASS):
        return None
    pred = np.zeros(len(y))
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=0).split(x, y):
        pred[test] = _classifier().fit(x[train], y[train]).predict_proba(x[test])[:, 1]
    return auroc(pred, y)


def auroc(scores: Sequence[float], labels: Sequence[int]) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties count one half); None without both classes."""
    s, y = np.asarray(scores, float), np.asarray(labels, int)
    n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
    if not n_pos or not n_neg:
        return None
    ranks = average_ranks(s)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def review_savings(scores: Sequence[float], labels: Sequence[int], recall: float = 1.0) -> dict[str, Any]:
    """Decisions needed to find `recall` of the rejects in score order vs in random order (expected)."""
    s, y = np.asarray(scores, float), np.asarray(labels, int)
    n, pos = len(y), int(y.sum())
    if not pos:
        return {"recall": recall, "positives": 0}
    need = int(np.ceil(recall * pos - 1e-9))
    order = np.argsort(-s, kind="stable")
    ordered = int(np.searchsorted(np.cumsum(y[order]), need) + 1)
    random_expected = need * (n + 1) / (pos + 1)  # expected position of the need-th of pos in a random order
    return {"recall": recall, "positives": pos, "n": n, "ordered": ordered,
            "random_expected": round(random_expected, 1), "saved": round(random_expected - ordered, 1),
            "saved_fraction": round(1 - ordered / random_expected, 3)}


def _fingerprint(study: Study, model: str, n_images: int) -> str:
    row = study.store.query_one("SELECT count(*) AS n, max(decided_at) AS last FROM reviews")
    return f"{model}|{n_images}|{row['n']}|{row['last']}"


def compute_scores(study: Study, *, progress: Progress | None = None,
                   should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Features, labels, scores and the classifier's cross-validated AUROC; stores the scores."""
    ids, x, model = compute_features(study, progress=progress, should_stop=should_stop)
    decided = screening_labels(study)
    y = np.array([decided.get(i, -1) for i in ids], dtype=np.int64)
    scores, mode, _ = score_features(x, y)
    known = y >= 0
    cv = cross_validated_auroc(x[known], y[known]) if mode == "classifier" else None
    fingerprint = _fingerprint(study, model, len(ids))
    with study.store.connect() as tx:
        tx.execute("DELETE FROM prescreen_scores")
        if ids:
            tx.execute(
                "INSERT INTO prescreen_scores (image_id, score, distance, classifier, embedding, fingerprint) "
                "SELECT unnest(?::VARCHAR[]), unnest(?::DOUBLE[]), unnest(?::DOUBLE[]), unnest(?::DOUBLE[]), ?, ?",
                [ids, scores.astype(float).tolist(), x[:, 1].astype(float).tolist(),
                 [float(s) if mode == "classifier" else None for s in scores], model, fingerprint])
    return {"ids": ids, "features": x, "labels": y, "scores": scores, "mode": mode, "model": model,
            "cv_auroc": cv, "fingerprint": fingerprint}


def prescreen_scores(study: Study, *, refresh: bool = False) -> dict[str, float]:
    """{synthetic image id: score in [0, 1]}, higher = more likely to be rejected as implausible.

    For the screening queue: sort unreviewed images by descending score to meet the implausible ones first.
    Stored scores are returned when nothing changed since they were computed (decisions, images, real set);
    otherwise they are recomputed (fast once features are cached). Empty when there are no synthetic images.
    """
    n_syn = int(study.store.scalar("SELECT count(*) FROM synthetic_images"))
    if n_syn == 0:
        return {}
    if not refresh:
        real = study.store.query("SELECT id FROM real_images")
        if real:
            want = _fingerprint(study, feature_model_name(real), n_syn)
            rows = study.store.query("SELECT image_id, score FROM prescreen_scores WHERE fingerprint = ?", [want])
            if len(rows) == n_syn:
                return {r["image_id"]: float(r["score"]) for r in rows}
    result = compute_scores(study)
    return {i: float(s) for i, s in zip(result["ids"], result["scores"])}


def stored_report(study: Study, limit: int | None = None) -> dict[str, Any]:
    """The stored scores as `cspine-tui prescreen` prints them: most likely implausible first."""
    rows = study.store.query(
        "SELECT p.image_id, p.score, p.classifier, p.embedding, s.path, "
        "(SELECT max(CASE WHEN r.decision = 'reject' THEN 1 ELSE 0 END) FROM reviews r "
        " WHERE r.image_id = p.image_id) AS rejected "
        "FROM prescreen_scores p LEFT JOIN synthetic_images s ON s.id = p.image_id "
        "ORDER BY p.score DESC, p.image_id" + (" LIMIT ?" if limit else ""), [limit] if limit else None)
    return {"ranking": [{"image_id": r["image_id"], "score": r["score"], "path": r["path"],
                         "decision": {1: "reject", 0: "accept"}.get(r["rejected"])} for r in rows],
            "embedding": rows[0]["embedding"] if rows else None,
            "mode": ("classifier" if rows and rows[0]["classifier"] is not None else "unsupervised") if rows
            else "empty"}


def run_prescreen_job(ctx: Any) -> dict[str, Any]:
    """Job runner (kind ``prescreen``): features for new images (cached per batch, resumable), then scores."""
    try:
        result = compute_scores(ctx.study, progress=lambda d, t, m: ctx.progress(d, t, message=m),
                                should_stop=ctx.should_stop)
    except EmbeddingStopped as exc:
        ctx.log(str(exc))
        raise JobPaused(ctx.stop_reason) from None
    y = result["labels"]
    summary = {"mode": result["mode"], "embedding": result["model"], "n_scored": len(result["ids"]),
               "n_labelled": int((y >= 0).sum()), "n_rejected": int((y == 1).sum()),
               "cv_auroc": result["cv_auroc"], "features": feature_names()}
    ctx.log(f"pre-screen: {summary['n_scored']} images scored ({summary['mode']}, "
            f"{summary['n_labelled']} decisions, cross-validated AUROC {summary['cv_auroc']})")
    return summary
