"""labels: import keypoints or attributes of the real images, or show what is labelled."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cspine_tui.cli.common import add_json, add_study, open_study, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "labels", help="import keypoints or attributes of the real images, or show what is labelled",
        description="Without --import: the labels stored (images with keypoints and attributes, the values "
                    "of each attribute, the imports so far). With --import FILE: keypoints (CSV file,point,x,y "
                    "or file,<point>_x,<point>_y; JSON) in source pixel coordinates, or attributes (CSV "
                    "file,<attribute>,...), matched to the real images by source file name or sha256; every "
                    "problem is listed one per line and then nothing is imported (docs/guide/labels.md).")
    add_study(p)
    add_json(p)
    p.add_argument("--import", dest="file", type=Path, default=None, metavar="FILE",
                   help="the label file (.csv, .tsv or .json)")
    p.add_argument("--kind", choices=("keypoints", "attributes"), default=None,
                   help="what the file holds (default: from its columns)")
    p.add_argument("--convention", choices=("corner", "center"), default="corner",
                   help="corner (default): pixel i spans [i, i+1); center: integer coordinates are pixel "
                        "centres (COCO/OpenCV), 0.5 is added")
    p.add_argument("--skip-unmatched", action="store_true",
                   help="import the other rows when some name no real image (they are listed)")
    p.set_defaults(func=cmd_labels)


def cmd_labels(args: argparse.Namespace) -> int:
    from core.realset import labels  # imported on use: loads pandas when writing (start-up cost)

    study = open_study(args)
    if args.file is None:
        summary = {**labels.label_summary(study), "attribute_values": labels.attribute_overview(study)}
        if args.json:
            print_json(summary, study)
        else:
            _print_summary(summary)
        return 0
    from core.realset.label_import import LabelImportError, import_labels  # imported on use, like labels

    try:
        result = import_labels(study, args.file, args.kind, convention=args.convention,
                               skip_unmatched=args.skip_unmatched)
    except LabelImportError as exc:
        for line in exc.problems:  # every problem on its own line, then the one-line error from main()
            print(f"  {line}", file=sys.stderr)
        raise
    for line in result["unmatched"]:
        print(f"  left out {line}", file=sys.stderr)
    if args.json:
        print_json(result, study)
        return 0
    what = (f"{len(result['points'])} points" if result["kind"] == "keypoints"
            else ", ".join(f"{k} ({v})" for k, v in result["attributes"].items()))
    print(f"imported {result['labels']} {result['kind']} labels of {result['images']} images from "
          f"{Path(result['file']).name}: {what}; import {result['import']}"
          + (f"; {len(result['unmatched'])} unmatched rows left out" if result["unmatched"] else ""))
    return 0


def _print_summary(s: dict) -> None:
    print(f"keypoints: {s['keypoint_images']} images, points {', '.join(s['points']) or '-'}")
    print(f"attributes: {s['attribute_images']} images")
    for name, a in s["attribute_values"].items():
        if a["type"] == "numeric":
            print(f"  {name} (numeric, {a['n']} images): min {a['min']:g}, mean {a['mean']:.4g}, max {a['max']:g}")
            continue
        shown = list(a["counts"].items())
        more = f", ... ({len(shown) - 8} more values)" if len(shown) > 8 else ""
        print(f"  {name} ({a['n']} images): " + ", ".join(f"{v} {n}" for v, n in shown[:8]) + more)
    for imp in s["imports"][:10]:
        print(f"import {imp['id']} ({imp['kind']}) {imp['file']} at {imp['imported_at']:%Y-%m-%d %H:%M}")
