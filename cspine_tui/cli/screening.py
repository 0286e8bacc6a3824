"""reviews (CSV export/import), adjudicate, screening-summary, release."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from cspine_tui.cli.common import (add_job_options, add_json, add_study, default_reviewer, finish, open_study,
                                   print_json, run_as_job, table_console)
from core.screening.csv_io import export_reviews, import_reviews
from core.screening.rules import (RULES, adjudicate, agreement, disagreements, remove_adjudication, reviewer_summary,
                                  table_s1)

RULE_HELP = "final decision rule (default: study.toml [screening] final_rule, else any_reject)"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reviews", help="export or import screening decisions as CSV")
    add_study(p)
    add_json(p)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--export", type=Path, metavar="FILE.csv", help="write every reviewer's current decisions")
    g.add_argument("--import", dest="import_", type=Path, metavar="FILE.csv",
                   help="record decisions made elsewhere (validated first; importing twice changes nothing)")
    p.add_argument("--only-reviewer", default=None, metavar="NAME", help="export one reviewer's decisions")
    p.add_argument("--simulated", action="store_true", help="mark imported decisions as made by a simulated reviewer")
    p.set_defaults(func=cmd_reviews)

    p = sub.add_parser("adjudicate", help="settle a disagreement between reviewers (rule 'adjudicated')")
    add_study(p)
    p.add_argument("image_id")
    p.add_argument("decision", choices=("accept", "reject", "clear"))
    p.add_argument("--reason", default=None, help="rejection reason: a code or its key 1-9")
    p.add_argument("--note", default=None)
    p.add_argument("--adjudicator", default=None, help="who decides (default: --reviewer / your login name)")
    p.set_defaults(func=cmd_adjudicate)

    p = sub.add_parser("screening-summary", help="Table S1 counts, reviewer agreement (Cohen's kappa), disagreements")
    add_study(p)
    add_json(p)
    p.add_argument("--rule", choices=RULES, default=None, help=RULE_HELP)
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("release", help="write the accepted synthetic images with manifest, Table S1, card, checksums")
    add_study(p)
    add_json(p)
    add_job_options(p, time_limit=False)
    p.add_argument("--out", type=Path, required=True, help="release folder (new, empty, or an earlier release)")
    p.add_argument("--rule", choices=RULES, default=None, help=RULE_HELP)
    p.add_argument("--hf", action="store_true", help="Hugging Face imagefolder layout (data/train + metadata.csv)")
    p.add_argument("--licence", "--license", dest="licence", default=None,
                   help="licence for the dataset card (default: study.toml [release] licence)")
    p.set_defaults(func=cmd_release)


def cmd_reviews(args: argparse.Namespace) -> int:
    study = open_study(args)
    if args.export:
        n = export_reviews(study, args.export, reviewer=args.only_reviewer)
        result: dict[str, Any] = {"exported": n, "file": str(args.export.expanduser().resolve())}
        message = f"wrote {n} decisions to {args.export}"
    else:
        result = import_reviews(study, args.import_, simulated=True if args.simulated else None)
        message = (f"imported {args.import_}: {result['rows']} rows, {result['recorded']} recorded, "
                   f"{result['unchanged']} already there")
    if args.json:
        print_json(result, study)
    else:
        print(message)
    return 0


def cmd_adjudicate(args: argparse.Namespace) -> int:

    study = open_study(args)
    who = args.adjudicator or getattr(args, "reviewer", None) or default_reviewer()
    if args.decision == "clear":
        removed = remove_adjudication(study, args.image_id)
        print(f"{'removed the' if removed else 'no'} adjudication of {args.image_id}")
    else:
        adjudicate(study, args.image_id, who, args.decision, reason=args.reason, note=args.note)
        print(f"{args.image_id}: {args.decision} (adjudicated by {who})")
    return 0


def summary(study: Any, rule: str | None = None) -> dict[str, Any]:
    dis = disagreements(study)
    return {"table_s1": table_s1(study, rule), "reviewers": reviewer_summary(study), "agreement": agreement(study),
            "disagreements": len(dis), "adjudicated": sum(1 for d in dis if d["adjudication"])}


def cmd_summary(args: argparse.Namespace) -> int:
    study = open_study(args)
    data = summary(study, args.rule)
    if args.json:
        print_json(data, study)
        return 0
    from rich.table import Table

    console = table_console()
    s1 = data["table_s1"]
    table = Table("run", "checkpoint", "generated", "final count", "rejected", "pending", "unreviewed",
                  title=f"Table S1 (rule {s1['rule']})")
    for r in s1["rows"] + [{"run": "Total", "checkpoint": "", **s1["total"]}]:
        table.add_row(str(r["run"]), "" if r["checkpoint"] is None else str(r["checkpoint"]), str(r["generated"]),
                      str(r["accepted"]), str(r["rejected"]), str(r["pending"]), str(r["unreviewed"]))
    console.print(table)
    for r in data["reviewers"]:
        console.print(f"{r['reviewer']}{' (simulated)' if r['simulated'] else ''}: {r['reviewed']} reviewed, "
                      f"{r['accepted']} accepted, {r['rejected']} rejected", soft_wrap=True)
    a = data["agreement"]
    if a["n"]:
        kappa = "undefined" if a["kappa"] is None else f"{a['kappa']:.3f}"
        console.print(f"agreement {a['reviewers'][0]} vs {a['reviewers'][1]} on {a['n']} images: "
                      f"both accept {a['both_accept']}, both reject {a['both_reject']}, "
                      f"only {a['reviewers'][0]} rejects {a['a_reject_b_accept']}, "
                      f"only {a['reviewers'][1]} rejects {a['a_accept_b_reject']}; Cohen's kappa {kappa}",
                      soft_wrap=True)
    console.print(f"disagreements {data['disagreements']} ({data['adjudicated']} adjudicated)")
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    study = open_study(args)
    params = {"out": str(args.out.expanduser().resolve()), "rule": args.rule, "hf": args.hf, "licence": args.licence}
    record = run_as_job(args, study, "release", params)
    result = (record or {}).get("result")
    if record is not None and not args.json and isinstance(result, dict):
        print(f"released {result['images']} images to {result['out']}", file=sys.stderr)
        if result.get("licence") == "unspecified":
            print("note: no licence set; pass --licence or set [release] licence in study.toml", file=sys.stderr)
    return finish(study, record, result, as_json=args.json)
