"""plan-study: the power of a reader study before it is run (core/reader_study/power.py).

It needs no study: planning comes before the images exist. `--save` records the plan's effect in a study's
study.toml ([plan]) so the report of the finished study states the power it had to detect that effect.
Runs in a few seconds (vectorised simulation), so it is not a job.
"""

from __future__ import annotations

import argparse
import sys

from core.errors import CspineError

from cspine_tui.cli.common import add_json, add_study, open_study, positive_int, print_json


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {value}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plan-study", help="power of a planned reader study, by simulation; readers and trials for 80%%",
        description="Simulate many studies of the stated size under a stated truth, run the analysis's tests on "
                    "each, and report each test's power, the expected width of the accuracy 95%% interval, and "
                    "the readers (at the stated trials) and trials (at the stated readers) that reach the target "
                    "power. Seeded: the same options print the same plan. See docs/guide/planning.md.")
    add_study(p)
    add_json(p)
    p.add_argument("--design", choices=["quartets", "single"], default="quartets",
                   help="quartets (one real + one image per group, pick the real one; default) or single "
                        "(one image per trial, real or synthetic with a confidence)")
    p.add_argument("--readers", type=positive_int, required=True, metavar="R", help="readers (raters)")
    p.add_argument("--trials", type=positive_int, required=True, metavar="T",
                   help="trials per reader: quartets, or images in the single design")
    p.add_argument("--effect", type=_fraction, default=None, metavar="X",
                   help="the effect to detect: quartets: the true mean identification rate (chance 0.25; default "
                        "0.35); single: the average reader's ROC AUC (0.5 = cannot tell; default 0.65)")
    p.add_argument("--rating-shift", type=float, nargs="+", default=None, metavar="S",
                   help="quartets: real minus synthetic mean realism (1-4 scale) per group, in order; groups not "
                        "given do not differ (default 0.25 for the first)")
    p.add_argument("--groups", type=positive_int, default=None, help="quartets: synthetic groups (default 3)")
    p.add_argument("--pairwise", action="store_true", default=None,
                   help="quartets: Holm over all pairs of groups, not real vs each group")
    p.add_argument("--reader-sd", type=float, default=None,
                   help="how much readers differ: SD of their log-odds of identification (quartets, default 0.3) "
                        "or of their d' (single, default 0.3)")
    p.add_argument("--item-sd", type=float, default=None,
                   help="how much trials differ for every reader: SD of quartets' log-odds (default 1.0) or of "
                        "images' latent realism (single, default 0.3); drives Fleiss' kappa")
    p.add_argument("--criterion-sd", type=float, default=None,
                   help="single: SD of readers' thresholds for calling an image real (default 0.25)")
    p.add_argument("--real-fraction", type=_fraction, default=None, help="single: share of real images (0.5)")
    p.add_argument("--confidence-levels", type=positive_int, default=None,
                   help="single: confidence levels per answer (default 3: a 6-point scale)")
    p.add_argument("--alpha", type=_fraction, default=0.05, help="significance level (default 0.05)")
    p.add_argument("--target", type=_fraction, default=0.8, help="power to size the study for (default 0.8)")
    p.add_argument("--sims", type=positive_int, default=2000, help="simulated studies (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--no-search", action="store_true", help="only the stated size, no readers/trials search")
    p.add_argument("--save", action="store_true",
                   help="record this plan in --study's study.toml; its report then states the power it had")
    p.set_defaults(func=cmd_plan)


# Options that belong to one design (dest -> option), refused with the other.
ONLY = {"quartets": {"rating_shift": "--rating-shift", "groups": "--groups", "pairwise": "--pairwise"},
        "single": {"criterion_sd": "--criterion-sd", "real_fraction": "--real-fraction",
                   "confidence_levels": "--confidence-levels"}}


def effect_from_args(args: argparse.Namespace):
    from core.reader_study import power  # imported on use: loads numpy and scipy (start-up cost)

    quartets = args.design == "quartets"
    other = "single" if quartets else "quartets"
    given = [opt for dest, opt in ONLY[other].items() if getattr(args, dest) is not None]
    if given:
        raise CspineError(f"{', '.join(given)} applies to --design {other} only; leave it out for {args.design}")
    values = {
        "identification" if quartets else "auc": args.effect,
        "rating_shift": args.rating_shift, "groups": args.groups, "pairwise": args.pairwise,
        "reader_sd": args.reader_sd, ("quartet_sd" if quartets else "image_sd"): args.item_sd,
        "criterion_sd": args.criterion_sd, "real_fraction": args.real_fraction,
        "confidence_levels": args.confidence_levels,
    }
    return power.effect_for(args.design, **values)


def cmd_plan(args: argparse.Namespace) -> int:
    from core.reader_study import power  # imported on use: loads numpy and scipy (start-up cost)

    effect = effect_from_args(args)
    doc = power.plan(args.design, args.readers, args.trials, effect, alpha=args.alpha, sims=args.sims,
                     seed=args.seed, target=args.target, run_search=not args.no_search)
    study = None
    if args.save:
        study = open_study(args)
        study.settings["plan"] = power.saved_plan(doc)
        study.save_settings()
        doc["saved_to"] = str(study.settings_path.resolve())
    if args.json:
        print_json(doc, study)
        return 0
    for line in power.plan_text(doc):
        print(line)
    if args.save:
        print(f"saved to {doc['saved_to']} ([plan]); `analyze` reports the power the study had", file=sys.stderr)
    return 0
