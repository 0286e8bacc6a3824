"""audit, audit-show, audit-verdict, audit-verdicts, prescreen."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cspine_tui.cli.common import (add_job_options, add_json, add_study, finish, open_study, print_json, run_as_job,
                                   table_console)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="memorization audit: nearest real image of every synthetic image, top pairs",
                       description="Embed all real and synthetic images, rank real-synthetic pairs by exact cosine "
                                   "similarity, and compare synthetic-to-training with validation-to-training "
                                   "similarities (the calibrated memorization rate). Runs as a resumable job.")
    add_study(p)
    add_json(p)
    add_job_options(p)
    p.add_argument("--embedding", default=None,
                   help="vit (imagededup ViT, needs local weights), pixel / pixel64 (weights-free), or the path "
                        "of a TorchScript encoder (default: [audit] embedding in study.toml, else vit)")
    p.add_argument("--vit-weights", type=Path, default=None, metavar="FILE",
                   help="vit_b_16_swag-9ac1b537.pth if it is not in $TORCH_HOME/hub/checkpoints/")
    p.add_argument("--encoder-channels", type=int, default=None, help="TorchScript encoder input channels (1|3)")
    p.add_argument("--encoder-size", type=int, default=None, help="TorchScript encoder input size (pixels)")
    p.add_argument("--runs", nargs="+", default=None, metavar="RUN", help="synthetic runs (id or name; default all)")
    p.add_argument("--top", type=int, default=None, help="how many top pairs to keep for review (default 100)")
    p.add_argument("--memory-mb", type=float, default=64.0,
                   help="memory for one similarity block (default 64 MB); bounds the search's footprint")
    p.add_argument("--clear-cache", action="store_true", help="forget this embedding's cached vectors first")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("audit-show", help="print an audit's top pairs and memorization rate (default: latest)")
    add_study(p)
    add_json(p)
    p.add_argument("audit", nargs="?", default=None)
    p.add_argument("--limit", type=int, default=20, help="pairs to list in the table (JSON lists all)")
    p.add_argument("--list", action="store_true", help="list the study's audits instead")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("audit-verdict", help="record one reviewer's verdict on an audit pair")
    add_study(p)
    p.add_argument("--audit", default=None, help="audit id (default: latest)")
    p.add_argument("--rank", type=int, required=True)
    p.add_argument("--verdict", choices=["memorized", "not", "unsure"], required=True)
    p.add_argument("--note", default=None)
    p.add_argument("--reviewer", dest="sub_reviewer", default=None, help="who judges (default: your login)")
    p.set_defaults(func=cmd_verdict)

    p = sub.add_parser("audit-verdicts", help="two-reviewer agreement (Cohen's kappa), adjudication list, exports")
    add_study(p)
    add_json(p)
    p.add_argument("--audit", default=None, help="audit id (default: latest)")
    p.add_argument("--reviewers", nargs=2, default=None, metavar="NAME", help="the two reviewers to compare")
    p.add_argument("--export", type=Path, default=None, metavar="CSV", help="write all verdicts as CSV")
    p.add_argument("--sheet", type=Path, default=None, metavar="PNG", help="write the pairs side by side as PNG")
    p.add_argument("--sheet-top", type=int, default=None, help="pairs on the sheet (default all)")
    p.set_defaults(func=cmd_verdicts)

    p = sub.add_parser("prescreen", help="plausibility pre-screen: score synthetic images by how likely a "
                                         "screener rejects them")
    add_study(p)
    add_json(p)
    add_job_options(p)
    p.add_argument("--limit", type=int, default=20, help="rows in the table (most likely implausible first)")
    p.set_defaults(func=cmd_prescreen)


def cmd_audit(args: argparse.Namespace) -> int:
    from core.audit.nearest import audit_params, audit_report  # imported on use: loads numpy, PIL (start-up cost)
    from core.metrics.embeddings import clear_cache, make_encoder  # imported on use: loads numpy, PIL (start-up cost)

    study = open_study(args)
    params = audit_params(study, embedding=args.embedding, top=args.top, runs=args.runs, memory_mb=args.memory_mb,
                          vit_weights=args.vit_weights, encoder_channels=args.encoder_channels,
                          encoder_size=args.encoder_size)  # a missing weight fails here, in one line
    if args.clear_cache:
        name = make_encoder(params["embedding"], study, vit_weights=args.vit_weights,
                            encoder_channels=args.encoder_channels, encoder_size=args.encoder_size).name
        print(f"cleared {clear_cache(study, name)} cached {name} vectors", file=sys.stderr)
    record = run_as_job(args, study, "audit", params)
    report = audit_report(study, record["id"]) if record and record["state"] == "succeeded" else None
    if report and not args.json:
        _print_summary(report, limit=10)
    return finish(study, record, report, as_json=args.json)


def _print_summary(report: dict, limit: int) -> None:
    from rich.table import Table

    console = table_console(stderr=True)
    rate = report.get("memorization_rate")
    calib = report.get("calibration") or {}
    console.print(f"audit {report['audit_id']} ({report.get('embedding')}): {report.get('n_synthetic')} synthetic x "
                  f"{report.get('n_real')} real ({report.get('n_train')} train, {report.get('n_val')} val)")
    if rate is None:
        console.print(f"memorization rate: n/a ({calib.get('note', '')})")
    else:
        console.print(f"memorization rate: {100 * rate:.2f}% of synthetic images are closer to a training image "
                      f"than {calib.get('percentile')}% of validation images (threshold {calib.get('threshold'):.4f})")
    table = Table("rank", "similarity", "real", "synthetic")
    for p in report["pairs"][:limit]:
        table.add_row(str(p["rank"]), f"{p['similarity']:.4f}", str(p["real_path"]), str(p["synthetic_path"]))
    console.print(table)
    if report.get("histogram"):
        console.print(f"histogram: {report['histogram']}")


def cmd_show(args: argparse.Namespace) -> int:
    from core.audit.nearest import audit_report, list_audits  # imported on use: loads numpy, PIL (start-up cost)

    if args.list:
        study = open_study(args)
        rows = list_audits(study)
        if args.json:
            print_json(rows, study)
        for r in rows if not args.json else []:
            rate = "n/a" if r["memorization_rate"] is None else f"{100 * r['memorization_rate']:.2f}%"
            print(f"{r['audit_id']}  {r['created_at'][:19]}  {r['embedding']}  {r['n_synthetic']} synthetic  "
                  f"rate {rate}")
        return 0
    study = open_study(args)
    report = audit_report(study, args.audit)
    if args.json:
        print_json(report, study)
    else:
        _print_summary(report, limit=args.limit)
        print(report["audit_id"])
    return 0


def cmd_verdict(args: argparse.Namespace) -> int:
    from core.audit.nearest import resolve_audit  # imported on use: loads numpy, PIL (start-up cost)
    from core.audit.review import record_verdict  # imported on use: loads numpy, PIL (start-up cost)

    study = open_study(args)
    audit_id = resolve_audit(study, args.audit)
    reviewer = args.sub_reviewer or args.reviewer
    record_verdict(study, audit_id, args.rank, reviewer, args.verdict, args.note)
    print(f"{reviewer}: pair {args.rank} of {audit_id} = {args.verdict}", file=sys.stderr)
    return 0


def cmd_verdicts(args: argparse.Namespace) -> int:
    from core.audit.nearest import resolve_audit  # imported on use: loads numpy, PIL (start-up cost)
    # imported on use: loads numpy, PIL (start-up cost)
    from core.audit.review import agreement, export_sheet, export_verdicts_csv

    study = open_study(args)
    audit_id = resolve_audit(study, args.audit)
    result = agreement(study, audit_id, args.reviewers)
    if args.export:
        result["csv"] = str(export_verdicts_csv(study, audit_id, args.export).resolve())
    if args.sheet:
        result["sheet"] = str(export_sheet(study, audit_id, args.sheet, top=args.sheet_top).resolve())
    if args.json:
        print_json(result, study)
        return 0
    kappa = "n/a" if result["kappa"] is None else f"{result['kappa']:.3f}"
    observed = "n/a" if result["observed_agreement"] is None else f"{result['observed_agreement']:.3f}"
    print(f"audit {audit_id}: reviewers {', '.join(result['reviewers']) or '-'}; {result['n_both']} of "
          f"{result['n_pairs']} pairs judged by both; Cohen's kappa {kappa}; observed agreement {observed}")
    if result.get("note"):
        print(result["note"])
    for item in result["adjudicate"]:
        print(f"  adjudicate pair {item['rank']}: " + ", ".join(f"{r}={item[r]}" for r in result["reviewers"]))
    for reviewer, ranks in result["pending"].items():
        if ranks:
            print(f"  {reviewer} has {len(ranks)} pairs left")
    for key in ("csv", "sheet"):
        if key in result:
            print(f"{key}: {result[key]}")
    return 0


def cmd_prescreen(args: argparse.Namespace) -> int:
    from core.screening.prescreen import stored_report  # imported on use: loads numpy, PIL (start-up cost)

    study = open_study(args)
    record = run_as_job(args, study, "prescreen", {})
    if record is None or record["state"] != "succeeded":
        return finish(study, record, as_json=args.json)
    summary = record["result"] or {}
    report = {**summary, **stored_report(study, None if args.json else args.limit)}
    if not args.json:
        cv = summary.get("cv_auroc")
        print(f"pre-screen ({report['mode']}): {summary.get('n_scored')} synthetic images scored; "
              f"{summary.get('n_labelled')} screening decisions ({summary.get('n_rejected')} rejects) used"
              + (f"; cross-validated AUROC {cv:.3f}" if cv is not None else ""), file=sys.stderr)
        for row in report["ranking"]:
            print(f"  {row['score']:.3f}  {row['image_id']}  {row.get('path') or ''}"
                  + (f"  [{row['decision']}]" if row.get("decision") else ""), file=sys.stderr)
    return finish(study, record, report, as_json=args.json)
