"""ingest, split, real, override: the real set."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cspine_tui.cli.common import add_job_options, add_json, add_study, finish, open_study, print_json, run_as_job
from core.errors import CspineError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ingest", help="ingest real radiographs (PNG/JPEG/TIFF/BMP/DICOM) as canonical 256x256 PNGs",
        description="Decode, resize to 256x256 8-bit grayscale, invert negatives, mirror right-facing films "
                    "to face left, record provenance; every file ends ingested, a duplicate, or skipped "
                    "with a reason. Runs as a resumable job.")
    add_study(p)
    add_json(p)
    add_job_options(p)
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="files and/or folders")
    p.add_argument("--recursive", "-r", action="store_true", help="descend into sub-folders")
    p.add_argument("--resize", choices=("stretch", "pad"), default=None,
                   help="stretch to 256x256 like the paper (default), or pad keeping the aspect ratio; "
                        "recorded per study")
    p.add_argument("--split-seed", type=int, default=None,
                   help="seed of the 85/15 split drawn at the first ingest (default from study.toml)")
    p.add_argument("--workers", type=int, default=None,
                   help="decoding processes (default: one per CPU core; 0 = in this process)")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("split", help="re-draw the train/validation split of the real set (explicitly)")
    add_study(p)
    add_json(p)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--val-fraction", type=float, default=None, help="validation share (default 0.15)")
    p.set_defaults(func=cmd_split)

    p = sub.add_parser("real", help="the real set: counts, skipped files, and (with --list) its images")
    add_study(p)
    add_json(p)
    p.add_argument("--list", action="store_true", help="list the images")
    p.add_argument("--flagged", action="store_true", help="only images flagged for a look")
    p.add_argument("--limit", type=int, default=None)
    p.set_defaults(func=cmd_real)

    p = sub.add_parser("override", help="set one real image's polarity or orientation by hand")
    add_study(p)
    add_json(p)
    p.add_argument("image", help="real image id (a unique prefix is enough)")
    p.add_argument("--invert", action=argparse.BooleanOptionalAction, default=None,
                   help="the source was a negative (--invert) or not (--no-invert)")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                   help="the source faced right (--flip) or left (--no-flip)")
    p.set_defaults(func=cmd_override)


def cmd_ingest(args: argparse.Namespace) -> int:
    # imported on use: loads numpy, PIL (start-up cost)
    from core.realset.ingest import SUBFOLDER_REASON, ingest_params, job_summary

    study = open_study(args)
    params = ingest_params(args.paths, recursive=args.recursive, resize=args.resize,
                           split_seed=args.split_seed, workers=args.workers)
    record = run_as_job(args, study, "ingest", params)
    if record is None:
        return 0
    summary = job_summary(study, record["id"])
    if not args.json:
        _print_summary(summary, record)
    folders = [s for s in summary["skipped"] if s["reason"] == SUBFOLDER_REASON]
    if folders:  # said with --json too: a nested data set must not be half-ingested unsaid
        print(f"note: {len(folders)} sub-folder{'s' if len(folders) > 1 else ''} not read (e.g. "
              f"{folders[0]['path']}); ingest again with --recursive to read them", file=sys.stderr)
    return finish(study, record, summary, as_json=args.json)


def _print_summary(summary: dict, record: dict) -> None:
    out = sys.stderr
    print(f"ingested {summary['ingested']}, duplicates {summary['duplicates']}, "
          f"skipped {len(summary['skipped'])}", file=out)
    for item in summary["skipped"][:20]:
        print(f"  skipped {item['path']}: {item['reason']}", file=out)
    if len(summary["skipped"]) > 20:
        print(f"  ... and {len(summary['skipped']) - 20} more (see --json or the dataset screen)", file=out)
    result = record.get("result") or {}
    if result.get("split"):
        split = result["split"]
        print(f"split: train {split.get('train', 0)}, val {split.get('val', 0)} (seed {split.get('seed')})",
              file=out)


def cmd_split(args: argparse.Namespace) -> int:
    from core.realset.catalog import redraw_split  # imported on use: loads numpy, PIL (start-up cost)

    study = open_study(args)
    result = redraw_split(study, args.seed, args.val_fraction)
    if args.json:
        print_json(result, study)
    else:
        print(f"split re-drawn with seed {result['seed']}: train {result.get('train', 0)}, "
              f"val {result.get('val', 0)} ({result['changed']} images changed side)")
    return 0


def cmd_real(args: argparse.Namespace) -> int:
    from core.realset.catalog import dataset_summary, list_images  # imported on use: loads numpy, PIL (start-up cost)

    study = open_study(args)
    if args.list or args.flagged:
        rows = list_images(study, flagged_only=args.flagged, limit=args.limit)
        if args.json:
            print_json(rows, study)
            return 0
        for r in rows:
            print(f"{r['id'][:12]}  {r['split'] or '-':5}  {'inv' if r['inverted'] else '   '} "
                  f"{'flip' if r['flipped'] else '    '} {'FLAG' if r['flagged'] else '    '}  {r['source_path']}")
        return 0
    summary = dataset_summary(study)
    if args.json:
        print_json(summary, study)
        return 0
    print(f"real images {summary['total']}: splits {summary['splits'] or '-'}; inverted {summary.get('inverted', 0)}, "
          f"flipped {summary.get('flipped', 0)}, flagged {summary.get('flagged', 0)}, "
          f"duplicates met {summary['duplicates']}, skipped files {len(summary['skipped'])}")
    for item in summary["skipped"][:20]:
        print(f"  skipped {item['path']}: {item['reason']}")
    return 0


def cmd_override(args: argparse.Namespace) -> int:
    from core.realset.catalog import override  # imported on use: loads numpy, PIL (start-up cost)

    if args.invert is None and args.flip is None:
        raise CspineError("nothing to change: give --invert/--no-invert and/or --flip/--no-flip")
    study = open_study(args)
    row = override(study, args.image, inverted=args.invert, flipped=args.flip)
    if args.json:
        print_json({k: row[k] for k in ("id", "path", "inverted", "polarity_source", "flipped",
                                        "orientation_source", "flagged")}, study)
    else:
        print(f"{row['id'][:12]}: inverted={row['inverted']} flipped={row['flipped']} -> {row['path']}")
    return 0
