"""quartets, survey-urls, import-ratings, analyze: the reader study.

These run in seconds (a pack re-encodes 4 x count small PNGs), so they run directly rather than as jobs;
with --json, stdout is exactly one JSON document.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cspine_tui.cli import single
from cspine_tui.cli.common import add_json, add_study, note_survey_setup, open_study, print_json
from core.errors import CspineError
from core.reader_study.formats import txt_limits
from core.reader_study.groups import label
from core.reader_study.designs import import_any


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quartets", help="build a blinded quartet pack and its Qualtrics survey",
                       description="Draw COUNT quartets (one real image + one accepted synthetic image from each "
                                   "of three groups - checkpoints, sampling runs or external sets - none reused), "
                                   "blind them and write a pack: upload/ (survey.qsf, survey.txt, images/), "
                                   "answer_key.csv, pack.json, preview.html, README.md.")
    add_study(p)
    add_json(p)
    p.add_argument("--count", type=int, default=50, help="quartets (default 50, as in the paper)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--groups", nargs=3, metavar="GROUP",
                       help="three groups to draw synthetic images from: ckpt:STEP (a checkpoint), run:NAME (a "
                            "sampling run), external:NAME (a set added with add-synthetic)")
    which.add_argument("--checkpoints", nargs=3, metavar="STEP",
                       help="three checkpoint steps (or run names of checkpoints); the same as --groups ckpt:STEP")
    p.add_argument("--seed", type=int, default=None, help="seed for drawing and positions (default random, recorded)")
    p.add_argument("--image-base-url", default=None, metavar="URL",
                   help="where the images will be hosted; image URL = URL + file name (can be set later with "
                        "`survey-urls`)")
    p.add_argument("--size", type=int, default=256, help="image size in the pack, pixels (default 256)")
    p.add_argument("--shuffle-pages", action="store_true",
                   help="let Qualtrics show the quartet pages in a random order per rater (block randomizer)")
    p.add_argument("--free-text", action="store_true",
                   help="add an optional 'what gave it away?' text box to every quartet page (reported verbatim)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="pack folder (new or empty; default <study>/exports/pack-<time>)")
    p.set_defaults(func=cmd_quartets)

    p = sub.add_parser("survey-urls", help="set where a pack's images are hosted and rewrite its survey files")
    add_study(p)
    p.add_argument("--pack", type=Path, required=True, metavar="DIR", help="the pack folder")
    p.add_argument("--image-base-url", default=None, metavar="URL", help="image URL = URL + file name")
    p.add_argument("--image-urls", type=Path, default=None, metavar="CSV",
                   help="image_file,url rows (e.g. Qualtrics Graphics Library URLs)")
    p.set_defaults(func=cmd_survey_urls)

    p = sub.add_parser("import-ratings", help="import a Qualtrics response export (CSV) of a pack's survey "
                                              "(quartet or single-image pack)")
    add_study(p)
    add_json(p)
    p.add_argument("file", type=Path, metavar="FILE.csv")
    p.add_argument("--pack", default=None, metavar="DIR|ID", help="the pack (folder or id; default the newest)")
    p.add_argument("--simulated", action="store_true",
                   help="mark every rater of this file as simulated (codes simulated-rater-N always are)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("analyze", help="reader-study statistics, plots and report (quartet or single-image pack)",
                       description="Identification accuracy (Wilson CI, binomial test vs 25%), Fleiss' kappa, "
                                   "per-rater mean realism, paired Wilcoxon real vs each group (R < 4.6) and "
                                   "every pair of groups, Holm; per specialty and experience; free text; writes "
                                   "a Markdown + HTML report. For a single-image pack: sensitivity, specificity, "
                                   "accuracy, ROC AUC per reader and pooled, group comparisons, condition "
                                   "consistency, kappa, a mixed-effects logistic model.")
    add_study(p)
    add_json(p)
    p.add_argument("--pack", default=None, metavar="DIR|ID", help="the pack (default the newest)")
    p.add_argument("--kappa-coding", choices=["source", "position", "correct"], default="source",
                   help="code identification answers by chosen source (default), screen position, or correctness")
    p.add_argument("--exclude-simulated", action="store_true", help="leave simulated raters out")
    p.add_argument("--report", type=Path, default=None, metavar="DIR",
                   help="report folder (default <study>/exports/report-<analysis id>)")
    p.set_defaults(func=cmd_analyze)


def _err(message: str) -> None:
    print(message, file=sys.stderr)


def cmd_quartets(args: argparse.Namespace) -> int:
    from datetime import datetime

    from core.reader_study.pack import build_pack  # imported on use: loads numpy, PIL (start-up cost)

    study = open_study(args)
    out = args.out or study.exports_dir / f"pack-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    spec = build_pack(study, out, checkpoints=args.checkpoints, groups=args.groups, count=args.count,
                      seed=args.seed, image_base_url=args.image_base_url, size=args.size,
                      shuffle_pages=args.shuffle_pages, free_text=args.free_text, log=_err)
    limits = txt_limits(spec)
    note_survey_setup(out, args.image_base_url, limits)
    result = {"pack_id": spec.pack_id, "out": str(Path(out).resolve()), "count": spec.count, "seed": spec.seed,
              "checkpoints": spec.checkpoints, "groups": spec.checkpoints, "images": len(spec.items),
              "free_text": spec.free_text, "txt_limits": limits}
    if args.json:
        print_json(result, study)
    else:
        print(result["out"])
    return 0


def cmd_survey_urls(args: argparse.Namespace) -> int:
    from core.reader_study.pack import set_image_urls  # imported on use: loads numpy, PIL (start-up cost)

    if not args.image_base_url and not args.image_urls:
        raise CspineError("give --image-base-url URL or --image-urls CSV")
    study = open_study(args)
    if _design(study, args.pack) == "single":
        return single.survey_urls_single(args, study)
    spec = set_image_urls(study, args.pack, base_url=args.image_base_url, url_csv=args.image_urls)
    _err(f"rewrote the survey files of {spec.pack_id}; first image: {spec.url_for(spec.items[0].image_file)}")
    return 0


def _design(study, pack: str | Path | None) -> str:
    """'single' or 'quartets': the design of the pack --pack names (the newest of either when none)."""
    from core.reader_study.single_pack import design_of  # imported on use: loads numpy, PIL (start-up cost)

    return design_of(study, pack)


def cmd_import(args: argparse.Namespace) -> int:
    study = open_study(args)
    summary = import_any(study, args.file, args.pack, simulated=args.simulated)  # either design
    if args.json:
        print_json(summary, study)
        return 0
    excluded = ", ".join(f"{k} {v}" for k, v in summary["excluded"].items() if v) or "none"
    again = f" (already imported as {summary['already_imported_as']})" if summary.get("already_imported_as") else ""
    print(f"{summary['responses']} responses in {args.file} ({summary['format']}, {summary['values']} values)"
          f"{again}: {summary['used']} used; excluded: {excluded}")
    if summary.get("seen_unanswered"):
        print(f"  {summary['seen_unanswered']} answers seen but not given (exported as -99): counted, not scored")
    for flag in summary["flags"]:
        print(f"  flag: {flag}")
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from core.reader_study import statistics  # imported on use: loads scipy (start-up cost)
    from core.reader_study.analysis import analyze  # imported on use: loads scipy (start-up cost)

    study = open_study(args)
    if _design(study, args.pack) == "single":
        return single.analyze_single_cmd(args, study)
    res = analyze(study, args.pack, kappa_coding=args.kappa_coding, report_dir=args.report,
                  include_simulated=not args.exclude_simulated, log=_err)
    if args.json:
        print_json(res, study)
        return 0
    sim = f" ({res['simulated_raters']} SIMULATED)" if res["simulated_raters"] else ""
    lo, hi = res["accuracy_ci95"]
    print(f"{res['n_raters']} raters{sim} x {res['n_quartets']} quartets = {res['n_trials']} trials")
    print(f"identification accuracy {statistics.fmt(100 * res['accuracy'], 1)}% (95% CI {statistics.fmt(100 * lo, 1)}-"
          f"{statistics.fmt(100 * hi, 1)}%), binomial p vs 25% = {statistics.fmt_p(res['binomial_p_vs_chance'])}")
    print(f"Fleiss' kappa ({res['kappa_coding']} coding) = {statistics.fmt(res['fleiss_kappa'])}")
    print("mean realism: " + ", ".join(f"{label(g)} {statistics.fmt(v)}" for g, v in res["mean_realism"].items()))
    for t in res["wilcoxon"]:
        print(f"real vs {label(t['group'])}: V = {statistics.fmt(t['statistic_V'], 1)}, "
              f"p = {statistics.fmt_p(t['p'])}, Holm p = {statistics.fmt_p(t['p_holm'])} ({t['method']})")
    print(f"all pairs (Holm over {len(res['pairwise'])}): " + "; ".join(
        f"{label(t['a'])} vs {label(t['b'])} {statistics.fmt(t['mean_difference'])}, Holm p "
        f"{statistics.fmt_p(t['p_holm'])}" for t in res["pairwise"]))
    if res["seen_unanswered"]["total"]:
        print(f"{res['seen_unanswered']['total']} answers seen but not given (-99): counted, not scored")
    if res["comments"]:
        print(f"{len(res['comments'])} free-text comments (verbatim in the report)")
    print(res["report"]["html"])
    return 0
