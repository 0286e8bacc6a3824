"""Render the README's benchmark table and the paper-scale cost from a results file of `python -m benchmarks`.

    .venv/bin/python -m benchmarks.report [benchmarks/out/results-<date>.jsonl]   # default: the newest

The paper-scale study (paper section 2.2): 160,000 training steps at batch 8 (the `paper` preset accumulates
2 batches per step, so 16 images per optimizer step), an FID evaluation every 20,000 steps (8) on 7,250
synthetic images each, and 27,000 sampled images. GPU hours come only from measured gpu_* lines; without
them the cost reads "not measured (no GPU)". The CPU-hours figure is an extrapolation, labelled as such.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .runner import OUT

TRAIN_STEPS, BATCH, GRAD_ACCUM = 160_000, 8, 2
FID_EVALS, FID_IMAGES, SAMPLED = 8, 7_250, 27_000
NO_GPU = "not measured (no GPU)"


def load(path: Path) -> tuple[dict, list[dict], dict]:
    meta, end, results = {}, {}, []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        obj = json.loads(line)
        if "meta" in obj:
            meta = obj["meta"]
        elif "meta_end" in obj:
            end = obj["meta_end"]
        else:
            results.append(obj)
    return meta, results, end


def newest() -> Path | None:
    files = sorted(OUT.glob("results-*.jsonl"))
    return files[-1] if files else None


def _num(v: float | None) -> str:
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}" if abs(v) >= 0.01 else f"{v:.2e}"


def target_of(r: dict) -> tuple[str, bool | None]:
    """(target text, met?) from the line's config."""
    c = r["config"]
    if c.get("target_ratio") is not None:
        t = c["target_ratio"]
        return f"ratio >= {t:g}", (r["ratio"] >= t) if r["ratio"] is not None else None
    if c.get("target_ms") is not None:
        t = c["target_ms"]
        return f"<= {t:g} ms", (r["ours"] <= t) if r["ours"] is not None else None
    return "-", None


def render_table(results: list[dict]) -> str:
    lines = ["| benchmark | unit | ours | peer | peer's value | ratio (> 1: ours better) | target | met |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        c = r["config"]
        target, met = target_of(r)
        if "skipped" in c:
            ours = NO_GPU if "CUDA" in c["skipped"] else f"skipped: {c['skipped']}"
        elif "error" in c:
            ours = f"failed: {c['error'][:80]}"
        else:
            ours = _num(r["ours"])
        peer = f"{r['peer']} {r['peer_version'] or ''}".strip() if r["peer"] else "none"
        met_s = {True: "yes", False: "**no**", None: "-"}[met]
        lines.append(f"| `{r['name']}` | {r['unit']} | {ours} | {peer} | {_num(r['peer_value'])} | "
                     f"{_num(r['ratio'])} | {target} | {met_s} |")
    return "\n".join(lines)


def _by_name(results: list[dict]) -> dict[str, dict]:
    return {r["name"]: r for r in results if r["ours"] is not None}


def paper_scale_cost(results: list[dict]) -> str:
    got = _by_name(results)
    train_images = TRAIN_STEPS * BATCH * GRAD_ACCUM
    sample_images = FID_EVALS * FID_IMAGES + SAMPLED
    work = (f"{TRAIN_STEPS:,} steps x {BATCH} images x {GRAD_ACCUM} accumulated = {train_images:,} training "
            f"images; {FID_EVALS} FID evaluations x {FID_IMAGES:,} + {SAMPLED:,} = {sample_images:,} sampled "
            "images (FID feature extraction not included)")
    parts = [f"Paper-scale study: {work}."]
    gt, gs = got.get("gpu_train_256"), got.get("gpu_sample_256")
    if gt and gs:
        train_h = train_images / gt["ours"] / 3600
        fast_h = sample_images / gs["ours"] / 3600
        anc = gs["config"].get("ours_ancestral_1000_images_per_s")
        anc_h = sample_images / anc / 3600 if anc else None
        parts.append(f"GPU hours on {gt['device']} (256 px, bf16, measured): training {train_h:,.1f} h, "
                     f"sampling with {gs['config']['sampler']} {fast_h:,.1f} h"
                     + (f" (with the paper's 1000-step ancestral sampler {anc_h:,.0f} h)" if anc_h else "")
                     + f"; total {train_h + fast_h:,.1f} GPU hours.")
    else:
        parts.append(f"GPU hours: {NO_GPU} - no gpu_train_256 / gpu_sample_256 figures in this run.")
    ct, cs = got.get("train_step"), got.get("sample_step")
    if ct and cs:
        cfg, scfg = ct["config"], cs["config"]
        px = (256 / cfg["image_size"]) ** 2
        gflop_train = cfg["gflop_per_step"]["ours"] / cfg["batch"] * px  # per image at 256 px
        train_h = train_images * gflop_train / ct["ours"] / 3600
        spx = (256 / scfg["image_size"]) ** 2
        steps = got.get("sample_default_vs_paper", {}).get("config", {}).get("fast_steps", 10)
        gflop_sample = scfg["gflops_per_forward"]["ours"] * spx * steps
        sample_h = sample_images * gflop_sample / cs["ours"] / 3600
        parts.append(f"CPU-hours (EXTRAPOLATED, not measured at 256 px: the achieved GFLOP/s measured in this "
                     f"run, {ct['ours']:.3g} training at {cfg['image_size']} px batch {cfg['batch']} and "
                     f"{cs['ours']:.3g} sampling at {scfg['image_size']} px, applied to the FLOPs scaled by "
                     f"pixel count to 256 px): training ~{train_h:,.0f} h, sampling with {steps} steps "
                     f"~{sample_h:,.0f} h on {ct['device']}.")
    return " ".join(parts)


def render(path: Path) -> str:
    meta, results, end = load(path)
    head = (f"Measured {meta.get('date', '?')} on {meta.get('device', '?')}, load average "
            f"{meta.get('load_avg', '?')} before and {end.get('load_avg', '?')} after; "
            f"`{meta.get('command', 'python -m benchmarks')}` took {end.get('seconds', '?')} s.")
    return "\n\n".join([head, render_table(results), paper_scale_cost(results)])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.splitlines()[0])
    ap.add_argument("file", type=Path, nargs="?", default=None)
    args = ap.parse_args(argv)
    path = args.file or newest()
    if path is None or not path.exists():
        print(f"error: no results file ({path or OUT / 'results-*.jsonl'}); run python -m benchmarks first",
              file=sys.stderr)
        return 2
    print(render(path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
