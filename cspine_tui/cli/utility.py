"""utility and condition-check: what synthetic images are worth to a task model, and whether they show their
condition (docs/guide/utility.md)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cspine_tui.cli.common import add_job_options, add_json, add_study, finish, open_study, positive_int, \
    run_as_job, table_console


def _fraction(text: str) -> float:
    try:
        value = float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a fraction: {text!r} (e.g. 0.25 or 25%)") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"a real fraction must be in (0, 1], not {text}")
    return value


def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (same seed, same numbers)")
    p.add_argument("--size", type=positive_int, default=None,
                   help="model input size in px (default: the study's canonical size)")
    p.add_argument("--model", choices=["resnet18", "resnet10"], default=None,
                   help="torchvision ResNet-18 (default) or the same class with one block per stage (CPU demos)")
    p.add_argument("--steps", type=positive_int, default=None, help="optimizer steps per model (default 600)")
    p.add_argument("--batch", type=positive_int, default=None, help="batch size (default 32)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 3e-4)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="where the models train (default auto: the GPU when there is one)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "utility", help="train a task model on real, synthetic or mixed images and compare them (a job)",
        description="Trains a torchvision ResNet (from scratch) to find the keypoints (--task landmarks) or predict "
                    "an attribute (--task NAME) on each training set, tests every model on the real validation "
                    "images (which the generator never saw) and compares the sets on the same test images: "
                    "95% bootstrap intervals, DeLong for AUROC, paired bootstrap otherwise. Synthetic images are "
                    "the accepted images of --run, labelled by the condition they were generated for.")
    add_study(p)
    add_json(p)
    add_job_options(p)
    p.add_argument("--task", required=True, help="landmarks, or the name of a real-image attribute")
    p.add_argument("--train", nargs="+", action="extend", default=None, metavar="SET",
                   help="training sets to compare: real, synthetic, mixed or mixed:RATIO (RATIO synthetic images "
                        "per real one); default all three")
    p.add_argument("--run", nargs="+", action="extend", default=None, metavar="RUN",
                   help="synthetic runs whose accepted images are used (default: every run)")
    p.add_argument("--real-fraction", nargs="+", action="extend", type=_fraction, default=None, metavar="F",
                   help="share(s) of the real train split to train on, e.g. 0.1 0.25 0.5 1 (a learning curve; "
                        "default 1)")
    p.add_argument("--mm-per-px", type=float, default=None,
                   help="size of a canonical pixel in mm, when known: adds the mean radial error in mm")
    p.add_argument("--boot", type=positive_int, default=None, help="bootstrap resamples (default 2000)")
    p.add_argument("--trust-external", action="store_true",
                   help="accept runs without a training job on record (you know their generator never saw the "
                        "validation images)")
    _model_options(p)
    p.set_defaults(func=cmd_utility)

    c = sub.add_parser(
        "condition-check", help="does each synthetic image show the condition it was generated for? (a job)",
        description="Trains a checker per task on the real train split, lets it look at every conditioned image of "
                    "the runs and records the agreement with the requested condition per checkpoint (attribute "
                    "accuracy, landmark error in px) beside FID, with the checker's own score on real validation "
                    "images for reference.")
    add_study(c)
    add_json(c)
    add_job_options(c)
    c.add_argument("--run", nargs="+", action="extend", default=None, metavar="RUN",
                   help="runs to check (default: every run with conditioned images)")
    c.add_argument("--task", nargs="+", action="extend", default=None, metavar="TASK",
                   help="landmarks and/or attribute names (default: every one the runs are conditioned on)")
    _model_options(c)
    c.set_defaults(func=cmd_condition_check)


def cmd_utility(args: argparse.Namespace) -> int:
    from core.utility.benchmark import utility_params  # imported on use: loads torch (start-up cost)

    study = open_study(args)
    params = utility_params(study, task=args.task, train=args.train, runs=args.run, fractions=args.real_fraction,
                            seed=args.seed, size=args.size, arch=args.model, steps=args.steps, batch=args.batch,
                            lr=args.lr, boot=args.boot, mm_per_px=args.mm_per_px,
                            trust_external=args.trust_external, device=args.device)
    record = run_as_job(args, study, "utility", params)
    if record is not None and record["state"] == "succeeded" and not args.json:
        _print_benchmark(record["result"])
    return finish(study, record, record["result"] if record else None, as_json=args.json)


def _fmt(v: Any, spec: str = ".3f") -> str:
    return "–" if v is None or v != v else format(v, spec)


def _print_benchmark(r: dict[str, Any]) -> None:
    from rich.table import Table

    console = table_console(stderr=True)
    t = Table(title=f"utility: {r['task']} on {r['n_test']} real validation images (95% bootstrap intervals)")
    for col in ("model", "real", "synthetic", "metric", "value", "95% interval"):
        t.add_column(col)
    for row in r["results"]:
        t.add_row(row["unit"], str(row["n_real"]), str(row["n_synthetic"]), row["metric"], _fmt(row["value"]),
                  f"{_fmt(row['lo'])} – {_fmt(row['hi'])}")
    console.print(t)
    c = Table(title="paired comparisons (difference = first - second)")
    for col in ("first", "second", "metric", "difference", "95% interval", "p", "method"):
        c.add_column(col)
    for row in r["comparisons"]:
        c.add_row(row["a"], row["b"], row["metric"], _fmt(row["diff"], "+.3f"),
                  f"{_fmt(row['lo'], '+.3f')} – {_fmt(row['hi'], '+.3f')}", _fmt(row["p"]), row["method"])
    console.print(c)


def cmd_condition_check(args: argparse.Namespace) -> int:
    from core.utility.check import check_params  # imported on use: loads torch (start-up cost)

    study = open_study(args)
    params = check_params(study, runs=args.run, tasks=args.task, seed=args.seed, size=args.size, arch=args.model,
                          steps=args.steps, batch=args.batch, lr=args.lr, device=args.device)
    record = run_as_job(args, study, "condition_check", params)
    if record is not None and record["state"] == "succeeded" and not args.json:
        for task, t in record["result"]["tasks"].items():
            unit = "px" if task == "landmarks" else "agreement"
            ref = t["reference"].get("value")
            print(f"{task}: {_fmt(t['all'].get('value'))} {unit} over {t['all']['n']} images "
                  f"(checker on real validation images: {_fmt(ref)})", file=sys.stderr)
            for run, s in t["runs"].items():
                print(f"  {run}: {_fmt(s.get('value'))} (n={s['n']})", file=sys.stderr)
        for task, why in record["result"].get("skipped_tasks", {}).items():
            print(f"not checked: {task} ({why})", file=sys.stderr)
    return finish(study, record, record["result"] if record else None, as_json=args.json)
