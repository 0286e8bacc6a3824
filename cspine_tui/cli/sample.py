"""sample, add-synthetic, runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cspine_tui.cli.common import (add_job_options, add_json, add_launch_options, add_study, finish, open_study,
                                   print_json, run_as_job, table_console)
from core.errors import CspineError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sample", help="generate synthetic images from a checkpoint (a resumable job)",
        description="Sample --count images from a training checkpoint into images/synthetic/<run>/. Image i "
                    "is seeded from (--seed, i): a stopped job resumes where it stopped, N processes give the "
                    "images one process gives, and any image can be regenerated from its record.")
    add_study(p)
    add_json(p)
    add_job_options(p)
    p.add_argument("--checkpoint", type=int, required=True, metavar="STEP", help="checkpoint step to sample")
    p.add_argument("--job", default=None, help="training job of the checkpoint (when several have that step)")
    p.add_argument("--count", type=int, default=None, metavar="N",
                   help="images in the run (with --run of an existing run: its new total); required unless "
                        "--per-condition gives it")
    p.add_argument("--sampler", choices=["ddpm", "ddim", "dpmpp", "unipc"], default=None,
                   help="ddpm = the paper's 1000-step ancestral sampler; default: the fast default (see README)")
    p.add_argument("--steps", type=int, default=None, help="sampler steps (default: the sampler's default)")
    p.add_argument("--batch", type=int, default=None,
                   help="images per batch, fixed for the run (default: fill the device; moderate on CPU)")
    p.add_argument("--seed", type=int, default=None, help="run seed (default: drawn and recorded)")
    p.add_argument("--weights", choices=["ema", "online"], default=None,
                   help="ema (default) or online weights (the reference's sampling script used online ones)")
    p.add_argument("--run", default=None,
                   help="run name (folder under images/synthetic/); an existing run is extended to --count")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--compile", action="store_true", help="torch.compile the network (CUDA only)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default=None,
                   help="network precision: fp32 (the study's), bf16, or auto (default: bf16 on a GPU that has "
                        "it, else fp32); recorded with the run")
    add_launch_options(p, processes_help="processes (GPUs) through accelerate launch; images are the same as "
                                         "with one")
    g = p.add_argument_group("conditional checkpoints (docs/guide/conditioning.md)")
    g.add_argument("--condition", action="append", default=None, metavar="ATTR=VALUE",
                   help="fix an attribute for every image (repeatable); the rest of each image's condition, and "
                        "its keypoint layout, come from a train image with those values")
    g.add_argument("--per-condition", type=int, default=None, metavar="N",
                   help="N images for every attribute combination seen in training (the count follows)")
    g.add_argument("--guidance-scale", type=float, default=None, metavar="W",
                   help="classifier-free guidance: eps_uncond + W (eps_cond - eps_uncond); 1 = the conditional "
                        "model unguided (default), 0 = unconditional, above 1 stronger (two network passes)")
    p.add_argument("--no-orient", action="store_true",
                   help="keep images as generated (default: mirror right-facing ones to face left, recorded)")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("add-synthetic", help="register images made elsewhere as a synthetic run",
                       description="Copy images made elsewhere (e.g. the paper's released set) into "
                                   "images/synthetic/<run>/ at the study's canonical size, 8-bit grey, mirrored "
                                   "to face left (recorded), so they can be screened, audited and used in "
                                   "quartets. Re-running with the same --run adds only new files.")
    add_study(p)
    add_json(p)
    add_job_options(p)
    p.add_argument("--run", required=True, help="run name")
    p.add_argument("--no-recursive", action="store_true", help="do not descend into sub-folders")
    p.add_argument("paths", nargs="+", type=Path, metavar="FILES_OR_DIRS")
    p.set_defaults(func=cmd_add_synthetic)

    p = sub.add_parser("runs", help="list synthetic runs (sampled and external) with their image counts")
    add_study(p)
    add_json(p)
    p.set_defaults(func=cmd_runs)


def cmd_sample(args: argparse.Namespace) -> int:
    from core.ddpm.sampling import sample_params  # imported on use: loads numpy (start-up cost)

    study = open_study(args)
    if args.sbatch and args.sbatch_cpu:
        args.device = "cpu"  # CPU-only nodes: sample there on the CPU even if a GPU shows up
    params = sample_params(
        study, checkpoint=args.checkpoint, job=args.job, count=args.count, sampler=args.sampler, steps=args.steps,
        batch=args.batch, seed=args.seed, weights=args.weights, run=args.run, device=args.device,
        compile=args.compile, num_processes=args.num_processes, orient=not args.no_orient, precision=args.precision,
        condition=args.condition, per_condition=args.per_condition, guidance_scale=args.guidance_scale)
    if args.sbatch and args.device == "cpu":
        args.sbatch_cpu = True  # --device cpu: the script asks for cores, not GPUs
    record = run_as_job(args, study, "sample", params)
    if record is not None and record["state"] == "succeeded":
        result = record["result"] or {}
        print(f"run {result.get('run')}: {result.get('images')} images in {result.get('output')}", file=sys.stderr)
    return finish(study, record, record["result"] if record else None, as_json=args.json)


def cmd_add_synthetic(args: argparse.Namespace) -> int:
    from core.ddpm.synthetic import check_run_name  # imported on use: loads numpy (start-up cost)

    study = open_study(args)
    check_run_name(args.run)
    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:
        raise CspineError(f"not found: {', '.join(missing[:5])}; give image files or folders")
    params = {"run": args.run, "paths": [str(p.expanduser().absolute()) for p in args.paths],
              "recursive": not args.no_recursive}
    record = run_as_job(args, study, "add_synthetic", params)
    if record is not None and record["state"] == "succeeded":
        r = record["result"]
        print(f"run {r['run']}: {r['added']} added, {r['already_present']} already present, "
              f"{len(r['skipped'])} skipped; {r['images']} images in {r['output']}", file=sys.stderr)
        for s in r["skipped"][:10]:
            print(f"  skipped {s['path']}: {s['reason']}", file=sys.stderr)
    return finish(study, record, record["result"] if record else None, as_json=args.json)


def cmd_runs(args: argparse.Namespace) -> int:
    from core.ddpm.synthetic import list_runs  # imported on use: loads numpy (start-up cost)

    study = open_study(args)
    rows = list_runs(study)
    if args.json:
        print_json(rows, study)
        return 0
    from rich.table import Table

    table = Table("run", "source", "checkpoint", "sampler", "steps", "weights", "seed", "images", "flipped")
    for r in rows:
        ckpt = f"{r['checkpoint_step']} ({r['train_job']})" if r["checkpoint_step"] is not None else ""
        table.add_row(r["id"], r["source"], ckpt, r["sampler"] or "", str(r["steps"] or ""), r["weights"] or "",
                      "" if r["seed"] is None else str(r["seed"]), str(r["images"]), str(r["flipped_images"]))
    table_console().print(table)
    return 0
