"""Memorization audit: exact cosine nearest neighbours of synthetic images among the real ones.

What the paper did (section 2.4): ViT embeddings of all real and synthetic images, real-synthetic pairs ranked
by cosine similarity, the top 100 reviewed side by side by two authors. imagededup's own ``find_duplicates``
builds the full N x N matrix of all images (float16 above 10,000 images, then a Python loop per row); here
only the real x synthetic block is computed, exactly, in float32, a chunk of synthetic rows at a time, keeping
a running global top-k and each synthetic image's nearest real image (memory bounded by the chunk).

Beyond the paper, a calibrated figure: the similarity of each synthetic image to its nearest TRAINING image is
compared with the same for the held-out VALIDATION images (which the model never saw: the "not memorized"
reference). The memorization rate is the share of synthetic images more similar to a training image than the
99.9th percentile of the validation images.

The audit is the job kind ``audit`` (resumable: embeddings are cached per batch); results go to ``audits``,
``audit_pairs`` and ``audit_nearest``; the histogram to ``exports/audits/<audit id>/``. Reviewing the pairs
is in core/audit/review.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from core.errors import CspineError
from core.metrics.embeddings import check_spec
from core.study import Study
from core.jobs.runner import JobPaused

VAL_PERCENTILE = 99.9
DEFAULT_MEMORY_MB = 64.0


# ---------------------------------------------------------------------------------------------------
# Exact chunked search


@dataclass
class BlockSearch:
    """Result of searching queries (rows) against a base set (columns) by cosine similarity."""

    pair_query: np.ndarray   # (k,) row indices, global top-k pairs, best first
    pair_base: np.ndarray    # (k,) column indices
    pair_sim: np.ndarray     # (k,) float32 similarities, descending
    nearest: np.ndarray      # (n_queries,) index of each query's most similar base row (-1 if none)
    nearest_sim: np.ndarray  # (n_queries,) its similarity
    prefix_nearest: np.ndarray | None  # the same restricted to base[:prefix] (the training images)
    prefix_sim: np.ndarray | None
    chunk_rows: int
    block_bytes: int         # bytes of one similarity block (the memory bound, with ~2x for temporaries)


def chunk_rows_for(n_base: int, memory_mb: float = DEFAULT_MEMORY_MB) -> int:
    """Query rows per chunk so one block plus its temporaries (mask, partition copy) fits memory_mb."""
    per_row = max(1, n_base) * (4 + 4 + 1)  # the float32 block, a partition copy, a boolean mask
    return max(1, int(memory_mb * 2**20 // per_row))


def _merge_topk(sims: np.ndarray, q: np.ndarray, b: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
    # Order by similarity desc, then query index, then base index: deterministic, whatever the chunking.
    order = np.lexsort((b, q, -sims.astype(np.float64)))[:k]
    return sims[order], q[order], b[order]


def search_block(queries: np.ndarray, base: np.ndarray, k: int = 100, *, prefix: int | None = None,
                 chunk_rows: int | None = None, memory_mb: float = DEFAULT_MEMORY_MB,
                 progress: Callable[[int, int], None] | None = None) -> BlockSearch:
    """Exact top-k of ``queries @ base.T`` and each row's argmax, never holding more than one chunk.

    Inputs are used as given (L2-normalise them first for cosine similarity), cast to float32. Ties are
    broken by the lower query index, then the lower base index, so the result does not depend on the
    chunk size.
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    base = np.ascontiguousarray(base, dtype=np.float32)
    n_q, n_b = queries.shape[0], base.shape[0]
    if queries.ndim != 2 or base.ndim != 2 or (n_q and n_b and queries.shape[1] != base.shape[1]):
        raise CspineError(f"embedding sizes differ: queries {queries.shape}, base {base.shape}")
    if prefix is not None and not 0 <= prefix <= n_b:
        raise ValueError(f"prefix {prefix} outside 0..{n_b}")
    rows = max(1, min(chunk_rows or chunk_rows_for(n_b, memory_mb), max(n_q, 1)))
    k = max(0, min(int(k), n_q * n_b))
    nearest = np.full(n_q, -1, dtype=np.int64)
    nearest_sim = np.full(n_q, -np.inf, dtype=np.float32)
    use_prefix = prefix is not None and prefix > 0
    pre_nearest = np.full(n_q, -1, dtype=np.int64) if prefix is not None else None
    pre_sim = np.full(n_q, -np.inf, dtype=np.float32) if prefix is not None else None
    top_s = np.zeros(0, dtype=np.float32)
    top_q = np.zeros(0, dtype=np.int64)
    top_b = np.zeros(0, dtype=np.int64)
    base_t = base.T  # a view; BLAS handles the transposed operand
    for start in range(0, n_q if n_b else 0, rows):
        stop = min(start + rows, n_q)
        block = queries[start:stop] @ base_t  # (c, n_b) float32: the only large allocation
        idx = block.argmax(axis=1)
        nearest[start:stop] = idx
        nearest_sim[start:stop] = block[np.arange(stop - start), idx]
        if use_prefix:
            pidx = block[:, :prefix].argmax(axis=1)
            pre_nearest[start:stop] = pidx
            pre_sim[start:stop] = block[np.arange(stop - start), pidx]
        if k:
            flat = block.ravel()
            kk = min(k, flat.size)
            # Candidates: at least as similar as the current k-th best (once k are known), tightened by this
            # chunk's own k-th largest value when the comparison alone lets too many through.
            cand = np.flatnonzero(flat >= top_s[-1]) if top_s.size >= k else None
            if cand is None or cand.size > 4 * k:
                kth = np.partition(flat, flat.size - kk)[flat.size - kk]
                floor = max(kth, top_s[-1]) if top_s.size >= k else kth
                cand = np.flatnonzero(flat >= floor)
            sims = np.concatenate([top_s, flat[cand]])
            qs = np.concatenate([top_q, start + cand // n_b])
            bs = np.concatenate([top_b, cand % n_b])
            top_s, top_q, top_b = _merge_topk(sims, qs, bs, k)
        del block
        if progress:
            progress(stop, n_q)
    return BlockSearch(pair_query=top_q, pair_base=top_b, pair_sim=top_s, nearest=nearest,
                       nearest_sim=nearest_sim, prefix_nearest=pre_nearest, prefix_sim=pre_sim,
                       chunk_rows=rows, block_bytes=rows * n_b * 4)


def brute_force(queries: np.ndarray, base: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
    """Reference for tests: the full matrix, the same ordering rule. (sims, query idx, base idx)."""
    full = np.asarray(queries, np.float32) @ np.asarray(base, np.float32).T
    q, b = np.divmod(np.arange(full.size), full.shape[1])
    return _merge_topk(full.ravel(), q, b, k)


# ---------------------------------------------------------------------------------------------------
# Calibration


def calibrate(synthetic_to_train: np.ndarray, val_to_train: np.ndarray,
              percentile: float = VAL_PERCENTILE) -> dict[str, Any]:
    """Share of synthetic images more similar to a training image than `percentile` of validation images."""
    syn = np.asarray(synthetic_to_train, dtype=np.float64)
    val = np.asarray(val_to_train, dtype=np.float64)
    if val.size == 0 or syn.size == 0:
        return {"memorization_rate": None, "threshold": None, "percentile": percentile,
                "n_synthetic": int(syn.size), "n_val": int(val.size),
                "note": "needs a train/validation split and synthetic images (run `cspine-tui ingest` first)"}
    threshold = float(np.percentile(val, percentile))
    above = syn > threshold
    return {"memorization_rate": float(above.mean()), "n_above": int(above.sum()), "threshold": threshold,
            "percentile": percentile, "n_synthetic": int(syn.size), "n_val": int(val.size),
            "synthetic_median": float(np.median(syn)), "val_median": float(np.median(val)),
            "synthetic_max": float(syn.max()), "val_max": float(val.max()),
            "note": (f"with {val.size} validation images the {percentile}th percentile is close to their maximum"
                     if val.size < 1000 else "")}


def plot_histogram(path: Path, synthetic_to_train: np.ndarray, val_to_train: np.ndarray,
                   threshold: float | None, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    values = [v for v in (synthetic_to_train, val_to_train) if len(v)]
    lo = float(min(np.min(v) for v in values)) if values else 0.0
    hi = float(max(np.max(v) for v in values)) if values else 1.0
    bins = np.linspace(lo, max(hi, lo + 1e-6), 60)
    if len(synthetic_to_train):
        ax.hist(synthetic_to_train, bins=bins, density=True, alpha=0.55,
                label=f"synthetic (n={len(synthetic_to_train)})")
    if len(val_to_train):
        ax.hist(val_to_train, bins=bins, density=True, alpha=0.55, label=f"validation (n={len(val_to_train)})")
    if threshold is not None:
        ax.axvline(threshold, color="k", ls="--", lw=1, label=f"validation {VAL_PERCENTILE}th pct = {threshold:.4f}")
    ax.set_xlabel("cosine similarity to the nearest training image")
    ax.set_ylabel("density")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------------
# Study data


def real_items(study: Study) -> list[dict[str, Any]]:
    """Real images ordered train first, then validation, then unsplit (so training is a column prefix)."""
    return study.store.query(
        "SELECT r.id, r.path, coalesce(s.split, '') AS split FROM real_images r "
        "LEFT JOIN splits s ON s.image_id = r.id "
        "ORDER BY CASE coalesce(s.split, '') WHEN 'train' THEN 0 WHEN 'val' THEN 1 ELSE 2 END, r.id")


def resolve_runs(study: Study, runs: Sequence[str] | None) -> list[dict[str, Any]]:
    """Synthetic runs by id or name (all when none are given); CspineError naming an unknown one."""
    all_runs = study.store.query("SELECT id, name, checkpoint_step FROM synthetic_runs ORDER BY created_at, id")
    if not runs:
        return all_runs
    out = []
    for wanted in runs:
        match = [r for r in all_runs if wanted in (r["id"], r["name"])]
        if not match:
            known = ", ".join(r["name"] for r in all_runs) or "none yet"
            raise CspineError(f"no synthetic run {wanted!r} in {study.root} (known: {known}); see `cspine-tui runs`")
        out.extend(m for m in match if m not in out)
    return out


def synthetic_items(study: Study, run_ids: Sequence[str]) -> list[dict[str, Any]]:
    if not run_ids:
        return []
    return study.store.query(
        "SELECT id, path, run_id FROM synthetic_images WHERE list_contains(?, run_id) ORDER BY run_id, idx",
        [list(run_ids)])


# ---------------------------------------------------------------------------------------------------
# The audit


def run_audit(study: Study, audit_id: str, *, encoder: Any, top: int = 100, runs: Sequence[str] | None = None,
              memory_mb: float = DEFAULT_MEMORY_MB, progress: Callable[[int, int, str], None] | None = None,
              should_stop: Callable[[], bool] | None = None, log: Callable[[str], None] = lambda _m: None,
              params: dict[str, Any] | None = None, job_id: str | None = None) -> dict[str, Any]:
    """Embed, search, calibrate and store one audit; returns its summary. Re-running replaces its rows."""
    from core.metrics.embeddings import embed, l2_normalize  # imported on use: loads PIL (start-up cost)

    real = real_items(study)
    run_rows = resolve_runs(study, runs)
    syn = synthetic_items(study, [r["id"] for r in run_rows])
    if not real:
        raise CspineError(f"the study {study.root} has no real images; ingest them first (`cspine-tui ingest`)")
    if not syn:
        raise CspineError(f"the study {study.root} has no synthetic images{' in the chosen runs' if runs else ''}; "
                          f"sample some first (`cspine-tui sample`)")
    log(f"audit {audit_id}: {len(real)} real x {len(syn)} synthetic images, embedding {encoder.name}")
    real_vecs = l2_normalize(embed(study, encoder, [(r["id"], r["path"]) for r in real], progress=progress,
                                   should_stop=should_stop, label="real"))
    syn_vecs = l2_normalize(embed(study, encoder, [(s["id"], s["path"]) for s in syn], progress=progress,
                                  should_stop=should_stop, label="synthetic"))
    n_train = sum(1 for r in real if r["split"] == "train")
    val_rows = [i for i, r in enumerate(real) if r["split"] == "val"]
    if progress:
        progress(0, len(syn), "searching")
    found = search_block(syn_vecs, real_vecs, top, prefix=n_train, memory_mb=memory_mb,
                         progress=(lambda d, t: progress(d, t, "searching")) if progress else None)
    val_found = search_block(real_vecs[val_rows], real_vecs[:n_train], 0, memory_mb=memory_mb) \
        if val_rows and n_train else None
    syn_train = found.prefix_sim if n_train else np.zeros(0, np.float32)
    val_train = val_found.nearest_sim if val_found is not None else np.zeros(0, np.float32)
    calib = calibrate(syn_train, val_train)

    per_run: dict[str, Any] = {}
    run_of = np.array([s["run_id"] for s in syn])
    for r in run_rows:
        mask = run_of == r["id"]
        entry: dict[str, Any] = {"run_id": r["id"], "checkpoint_step": r["checkpoint_step"], "n": int(mask.sum()),
                                 "max_similarity": float(found.nearest_sim[mask].max()) if mask.any() else None}
        if calib["threshold"] is not None and mask.any():
            entry["memorization_rate"] = float((syn_train[mask] > calib["threshold"]).mean())
        per_run[r["name"]] = entry

    out_dir = study.exports_dir / "audits" / audit_id
    hist = plot_histogram(out_dir / "histogram.png", syn_train, val_train, calib["threshold"],
                          f"audit {audit_id} ({encoder.name})\n{_pct(calib['memorization_rate'])} of synthetic images "
                          f"above the validation {VAL_PERCENTILE}th percentile") if n_train else None
    summary = {"audit_id": audit_id, "embedding": encoder.name, "n_real": len(real), "n_train": n_train,
               "n_val": len(val_rows), "n_synthetic": len(syn), "top": int(found.pair_sim.size),
               "runs": [r["name"] for r in run_rows], "memorization_rate": calib["memorization_rate"],
               "calibration": calib, "per_run": per_run, "chunk_rows": found.chunk_rows,
               "block_mb": round(found.block_bytes / 2**20, 2),
               "histogram": study.rel(hist) if hist else None, "output": str(out_dir)}

    # Rounding can put a self-match a hair above 1; store similarities clipped to [-1, 1].
    pairs = [[audit_id, rank + 1, real[int(b)]["id"], syn[int(q)]["id"], float(np.clip(s, -1.0, 1.0))]
             for rank, (q, b, s) in enumerate(zip(found.pair_query, found.pair_base, found.pair_sim))]
    syn_ids = [s["id"] for s in syn]
    near_ids = [real[int(i)]["id"] for i in found.nearest]
    train_ids = [real[int(i)]["id"] for i in found.prefix_nearest] if n_train else [None] * len(syn)
    train_sims = [float(x) for x in syn_train] if n_train else [None] * len(syn)
    with study.store.connect() as tx:
        for table in ("audit_pairs", "audit_nearest"):
            tx.execute(f"DELETE FROM {table} WHERE audit_id = ?", [audit_id])
        tx.execute("INSERT OR REPLACE INTO audits (id, job_id, embedding, params, result) VALUES (?, ?, ?, ?, ?)",
                   [audit_id, job_id, encoder.name,
                    json.dumps(params or {}), json.dumps(summary)])
        tx.executemany("INSERT INTO audit_pairs (audit_id, rank, real_id, synthetic_id, similarity) "
                       "VALUES (?, ?, ?, ?, ?)", pairs)
        tx.execute(
            "INSERT INTO audit_nearest (audit_id, synthetic_id, real_id, similarity, train_id, train_similarity) "
            "SELECT ?, unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), unnest(?::DOUBLE[]), unnest(?::VARCHAR[]), "
            "unnest(?::DOUBLE[])",
            [audit_id, syn_ids, near_ids, np.clip(found.nearest_sim, -1, 1).astype(float).tolist(), train_ids,
             train_sims])
    log(f"audit {audit_id}: top similarity {pairs[0][4]:.4f}; memorization rate "
        f"{_pct(calib['memorization_rate'])} (threshold {calib['threshold']})")
    return summary


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def audit_params(study: Study, *, embedding: str | None = None, top: int | None = None,
                 runs: Sequence[str] | None = None, memory_mb: float | None = None,
                 vit_weights: Path | str | None = None, encoder_channels: int | None = None,
                 encoder_size: int | None = None) -> dict[str, Any]:
    """An audit job's params, with what is left open taken from study.toml [audit] (embedding, default vit;
    top, default 100); the command and the screen both start audits from these. A missing weight or a bad
    value fails here, in one line, before any job exists."""
    spec = embedding or study.get("audit", "embedding", "vit")
    top = int(top if top is not None else study.get("audit", "top", 100))
    if top < 1:
        raise CspineError(f"--top must be at least 1 (got {top})")
    check_spec(spec, study, vit_weights=vit_weights)
    return {"embedding": spec, "top": top, "runs": list(runs) if runs else None,
            "memory_mb": float(memory_mb if memory_mb is not None else DEFAULT_MEMORY_MB),
            "vit_weights": str(Path(vit_weights).expanduser().resolve()) if vit_weights else None,
            "encoder_channels": encoder_channels, "encoder_size": encoder_size}


def run_audit_job(ctx: Any) -> dict[str, Any]:
    """Job runner (kind ``audit``): params embedding, top, runs, vit_weights, encoder_channels/size, memory_mb."""
    from core.metrics.embeddings import EmbeddingStopped, make_encoder  # imported on use: loads PIL (start-up cost)

    p = ctx.params
    encoder = make_encoder(p.get("embedding") or ctx.study.get("audit", "embedding", "vit"), ctx.study,
                           vit_weights=p.get("vit_weights"), encoder_channels=p.get("encoder_channels"),
                           encoder_size=p.get("encoder_size"))
    try:
        return run_audit(ctx.study, ctx.job_id, encoder=encoder, top=int(p.get("top") or 100), runs=p.get("runs"),
                         memory_mb=float(p.get("memory_mb") or DEFAULT_MEMORY_MB),
                         progress=lambda d, t, m: ctx.progress(d, t, message=m), should_stop=ctx.should_stop,
                         log=ctx.log, params=p, job_id=ctx.job_id)
    except EmbeddingStopped as exc:
        ctx.log(str(exc))
        raise JobPaused(ctx.stop_reason) from None


# ---------------------------------------------------------------------------------------------------
# Reading results


def latest_audit_id(study: Study) -> str:
    audit_id = study.store.scalar("SELECT id FROM audits ORDER BY created_at DESC, id DESC LIMIT 1")
    if audit_id is None:
        raise CspineError(f"no audit in {study.root} yet; run `cspine-tui audit --study {study.root}`")
    return str(audit_id)


def resolve_audit(study: Study, audit_id: str | None) -> str:
    if not audit_id:
        return latest_audit_id(study)
    ids = study.store.column("SELECT id FROM audits WHERE id = ? OR id LIKE ? ORDER BY id",
                             [audit_id, f"%{audit_id}%"])
    if audit_id in ids:
        return audit_id
    if len(ids) != 1:
        raise CspineError(f"no single audit matches {audit_id!r} in {study.root}"
                          + (f" (candidates: {', '.join(ids[:5])})" if ids else "; see `cspine-tui audit-show --list`"))
    return str(ids[0])


def list_audits(study: Study) -> list[dict[str, Any]]:
    """All audits, newest first, with their headline numbers."""
    out = []
    for row in study.store.query("SELECT id, embedding, result, created_at FROM audits ORDER BY created_at DESC"):
        res = json.loads(row["result"]) if row["result"] else {}
        out.append({"audit_id": row["id"], "embedding": row["embedding"], "created_at": str(row["created_at"]),
                    "n_synthetic": res.get("n_synthetic"), "n_real": res.get("n_real"),
                    "memorization_rate": res.get("memorization_rate"), "runs": res.get("runs")})
    return out


def audit_pairs(study: Study, audit_id: str) -> list[dict[str, Any]]:
    """The ranked pairs with both images' paths (relative to the study), best first."""
    return study.store.query(
        "SELECT p.rank, p.similarity, p.real_id, r.path AS real_path, sp.split AS real_split, p.synthetic_id, "
        "s.path AS synthetic_path, s.run_id FROM audit_pairs p LEFT JOIN real_images r ON r.id = p.real_id "
        "LEFT JOIN splits sp ON sp.image_id = p.real_id "
        "LEFT JOIN synthetic_images s ON s.id = p.synthetic_id WHERE p.audit_id = ? ORDER BY p.rank", [audit_id])


def audit_report(study: Study, audit_id: str | None = None) -> dict[str, Any]:
    """The --json document: pairs sorted by similarity, the memorization rate and the rest of the summary."""
    audit_id = resolve_audit(study, audit_id)
    row = study.store.query_one("SELECT result, created_at FROM audits WHERE id = ?", [audit_id])
    summary = json.loads(row["result"]) if row and row["result"] else {}
    pairs = [{"rank": p["rank"], "real_id": p["real_id"], "synthetic_id": p["synthetic_id"],
              "real_path": p["real_path"], "synthetic_path": p["synthetic_path"], "run_id": p["run_id"],
              "real_split": p["real_split"],
              "similarity": p["similarity"]} for p in audit_pairs(study, audit_id)]
    return {"pairs": pairs, "memorization_rate": summary.get("memorization_rate"),
            **{k: v for k, v in summary.items() if k not in ("memorization_rate",)},
            "audit_id": audit_id, "created_at": str(row["created_at"]) if row else None}


def nearest_real(study: Study, audit_id: str | None = None) -> dict[str, dict[str, Any]]:
    """Each audited synthetic image's nearest real and nearest training image with similarities."""
    audit_id = resolve_audit(study, audit_id)
    rows = study.store.query("SELECT synthetic_id, real_id, similarity, train_id, train_similarity "
                             "FROM audit_nearest WHERE audit_id = ?", [audit_id])
    return {r.pop("synthetic_id"): r for r in rows}
