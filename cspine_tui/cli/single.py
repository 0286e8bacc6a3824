"""single-images: the single-image reader-study design (build a pack); its import and analysis run through
`import-ratings` and `analyze`, which dispatch on the pack's design (cli/survey.py calls
analyze_single_cmd here for the analysis' printout).

Like `quartets`, these run in seconds, directly rather than as jobs; with --json stdout is one JSON document.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from cspine_tui.cli.common import add_json, add_study, note_survey_setup, open_study, print_json
from core.errors import CspineError
from core.study import Study


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("single-images", help="build a blinded single-image pack (real or synthetic?) for Qualtrics",
                       description="Draw COUNT images, half real and the rest split between the groups (accepted "
                                   "images only, none reused), blind them and write a pack like `quartets` does: "
                                   "one image per page, 'real or synthetic?' on a six-point confidence scale, "
                                   "optionally 'does this image show <condition>?' and a free-text 'why'.")
    add_study(p)
    add_json(p)
    p.add_argument("--groups", nargs="+", required=True, metavar="GROUP",
                   help="image groups: ckpt:STEP (or a bare step), run:NAME (a sampling run), external:NAME "
                        "(a set added with add-synthetic)")
    p.add_argument("--count", type=int, default=100, help="images (trials) in the pack (default 100)")
    p.add_argument("--condition-question", nargs="?", const="", default=None, metavar="ATTRIBUTE",
                   help="also ask 'does this image show ATTRIBUTE: <value>?' (the real label or the condition the "
                        "image was generated for); only images carrying ATTRIBUTE are drawn. Without a name: the "
                        "study's only labelled attribute")
    p.add_argument("--free-text", action="store_true", help="add an optional 'what made you decide?' per image")
    p.add_argument("--seed", type=int, default=None, help="seed for drawing and order (default random, recorded)")
    p.add_argument("--image-base-url", default=None, metavar="URL",
                   help="where the images will be hosted (can be set later with `survey-urls`)")
    p.add_argument("--size", type=int, default=256, help="image size in the pack, pixels (default 256)")
    p.add_argument("--shuffle-pages", action="store_true",
                   help="let Qualtrics show the pages in a random order per rater (block randomizer)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="pack folder (new or empty; default <study>/exports/single-<time>)")
    p.set_defaults(func=cmd_single_images)


def _err(message: str) -> None:
    print(message, file=sys.stderr)


def _condition_attribute(study: Study, given: str | None) -> str | None:
    from core.realset.labels import attribute_names  # imported on use, like every core module of this file

    if given is None or given:
        return given or None
    names = attribute_names(study)
    if len(names) != 1:
        raise CspineError("--condition-question needs the attribute to ask about; the study's labelled attributes: "
                          + (", ".join(names) or "none (import labels first)"))
    return names[0]


def cmd_single_images(args: argparse.Namespace) -> int:
    from datetime import datetime

    from core.reader_study.single_formats import txt_limits  # imported on use: numpy, PIL (start-up cost)
    from core.reader_study.single_pack import build_single_pack, plan_trials  # the same

    study = open_study(args)
    out = args.out or study.exports_dir / f"single-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    spec = build_single_pack(study, out, groups=args.groups, count=args.count, seed=args.seed,
                             image_base_url=args.image_base_url, size=args.size, shuffle_pages=args.shuffle_pages,
                             condition_attribute=_condition_attribute(study, args.condition_question),
                             free_text=args.free_text, log=_err)
    limits = txt_limits(spec)
    note_survey_setup(out, args.image_base_url, limits)
    n_real, per_group = plan_trials(spec.count, len(spec.groups))
    result = {"pack_id": spec.pack_id, "design": "single", "out": str(Path(out).resolve()), "count": spec.count,
              "seed": spec.seed, "real": n_real, "groups": dict(zip(spec.groups, per_group)),
              "condition_attribute": spec.condition_attribute,
              "condition_questions": sum(spec.asks_condition(i) for i in spec.items), "free_text": spec.free_text,
              "questionnaire": spec.questionnaire, "txt_limits": limits}
    if args.json:
        print_json(result, study)
    else:
        print(result["out"])
    return 0


def _pct(p: dict[str, Any], key: str = "wilson95") -> str:
    from core.reader_study.statistics import fmt  # loads scipy (start-up cost)

    lo, hi = p[key]
    return (f"{fmt(100 * p['estimate'], 1)}% ({p['k']}/{p['n']}; 95% CI {fmt(100 * lo, 1)}-{fmt(100 * hi, 1)}%)"
            if p["estimate"] is not None else "n/a")


def analyze_single_cmd(args: argparse.Namespace, study: Study) -> int:
    """`analyze` for a single-image pack."""
    from core.reader_study.single_analysis import analyze_single  # imported on use: loads scipy (start-up cost)
    from core.reader_study.statistics import fmt, fmt_p  # loads scipy (start-up cost)

    res = analyze_single(study, args.pack, report_dir=args.report, include_simulated=not args.exclude_simulated,
                         log=_err)
    if args.json:
        print_json(res, study)
        return 0
    sim = f" ({res['simulated_raters']} SIMULATED)" if res["simulated_raters"] else ""
    p = res["pooled"]
    print(f"{res['n_raters']} readers{sim} x {res['n_images']} images = {res['n_answers']} answers "
          f"({res['seen_unanswered']} seen but not answered)")
    print(f"sensitivity {_pct(p['sensitivity'])}, specificity {_pct(p['specificity'])}, "
          f"accuracy {_pct(p['accuracy'])}, binomial p vs 50% = {fmt_p(p['accuracy']['binomial_p_vs_half'])}")
    lo, hi = p["auc"]["bootstrap95"]
    print(f"ROC AUC (mean of readers) {fmt(p['auc']['estimate'])} (bootstrap 95% CI {fmt(lo)}-{fmt(hi)})")
    for c in res["group_comparisons"]:
        print(f"{c['a']} vs {c['b']}: detection {fmt(c['mean_a'])} vs {fmt(c['mean_b'])}, p = {fmt_p(c['p'])}, "
              f"Holm p = {fmt_p(c['p_holm'])}")
    if res["fleiss_kappa"]:
        print(f"Fleiss' kappa (real/synthetic calls) = {fmt(res['fleiss_kappa']['kappa'])}")
    if res["cohen_kappa"]:
        print(f"Cohen's kappa ({' vs '.join(res['cohen_kappa']['raters'])}) = {fmt(res['cohen_kappa']['kappa'])}")
    print(f"model: {res['model']['method']} ({res['model'].get('why', '')})")
    print(res["report"]["html"])
    return 0


def survey_urls_single(args: argparse.Namespace, study: Study) -> int:
    """`survey-urls` for a single-image pack."""
    from core.reader_study.single_pack import set_single_image_urls  # loads numpy, PIL (start-up cost)

    spec = set_single_image_urls(study, args.pack, base_url=args.image_base_url, url_csv=args.image_urls)
    _err(f"rewrote the survey files of {spec.pack_id}; first image: {spec.url_for(spec.items[0].image_file)}")
    return 0
