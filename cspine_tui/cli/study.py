"""init, status, phantoms, demo."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.errors import CspineError

from cspine_tui.cli.common import (_stderr_console, add_json, add_study, default_reviewer, open_study, print_json,
                                   table_console)
from core.demo.stages import build_demo
from core.status import study_status
from core.study import Study


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help="create a new study folder")
    p.add_argument("path", type=Path)
    p.add_argument("--preset", default="paper", help="model preset recorded in study.toml (default paper)")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("status", help="the study at a glance")
    add_study(p)
    add_json(p)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("phantoms", help="write procedural lateral c-spine radiographs (demo and test data)")
    p.add_argument("--count", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--negative-fraction", type=float, default=0.2, help="share of negatives (bone dark)")
    p.add_argument("--right-fraction", type=float, default=0.3, help="share of right-facing films")
    p.add_argument("--defect-fraction", type=float, default=0.0,
                   help="share of labelled implausible variants (airway posterior, swapped elements, ...)")
    p.add_argument("--formats", default="png,jpeg,tiff,dicom", help="comma-separated: png,jpeg,tiff,dicom")
    p.add_argument("--bit-depths", default="8,16", help="comma-separated: 8,16")
    p.add_argument("--min-height", type=int, default=900)
    p.add_argument("--max-height", type=int, default=2500)
    p.add_argument("--contact-sheet", type=Path, default=None, help="also write a PNG contact sheet here")
    p.set_defaults(func=cmd_phantoms)

    p = sub.add_parser("demo", help="build the demo study from phantom radiographs and open it")
    p.add_argument("--path", type=Path, default=Path("sessions/demo"), help="demo study folder")
    p.add_argument("--no-tui", action="store_true", help="build it headless and print its status")
    p.add_argument("--fresh", action="store_true", help="delete an existing demo study at --path first")
    p.set_defaults(func=cmd_demo)


def cmd_init(args: argparse.Namespace) -> int:
    study = Study.create(args.path, preset=args.preset)
    print(f"created study {study.root} (schema v{study.store.schema_version()})", file=sys.stderr)
    print(study.root)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    study = open_study(args)
    status = study_status(study)
    if args.json:
        print_json(status, study)
    else:
        _print_status(status)
    return 0


def _print_status(status: dict) -> None:
    from rich.table import Table

    console = table_console()
    console.print(f"[bold]{status['name']}[/]  {status['study']}")
    console.print(f"real images {status['images']['real']}  (splits {status['splits'] or '-'})   "
                  f"synthetic {status['images']['synthetic']}   checkpoints {status['checkpoints']}   "
                  f"quartets {status['quartets']}   ratings {status['ratings']}")
    if status["synthetic_by_checkpoint"]:
        table = Table("checkpoint", "generated", "accepted", "rejected", title="synthetic images")
        for ckpt, c in status["synthetic_by_checkpoint"].items():
            table.add_row(ckpt, str(c["generated"]), str(c["accepted"]), str(c["rejected"]))
        console.print(table)
    if status["jobs"]:
        console.print("jobs: " + ", ".join(f"{k} {v}" for k, v in sorted(status["jobs"].items())))


def cmd_phantoms(args: argparse.Namespace) -> int:
    from core.demo import phantom_files  # imported on use: loads scipy, numpy, PIL (start-up cost)

    from rich.progress import Progress

    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        raise CspineError(f"--out {out} is a file; give a folder (new or existing) for the phantoms")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CspineError(f"cannot create the --out folder {out}: {exc.strerror}; choose another place") from exc
    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    depths = tuple(int(b) for b in args.bit_depths.split(",") if b.strip())
    with Progress(console=_stderr_console()) as bar:
        task = bar.add_task("phantoms", total=args.count)
        rows = phantom_files.generate(
            out, args.count, args.seed, negative_fraction=args.negative_fraction,
            right_fraction=args.right_fraction, formats=formats, bit_depths=depths,
            defect_fraction=args.defect_fraction, size_range=(args.min_height, args.max_height),
            progress=lambda done, total: bar.update(task, completed=done),
        )
    if args.contact_sheet:
        phantom_files.contact_sheet([out / r["file"] for r in rows], args.contact_sheet)
    print(f"wrote {len(rows)} phantoms, labels.csv, keypoints.csv and attributes.csv to {out} (import the last "
          f"two with `cspine-tui labels --import FILE`)", file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:

    console = _stderr_console()
    study = build_demo(args.path, fresh=args.fresh, log=lambda msg: console.print(f"[cyan]demo[/] {msg}"))
    if args.no_tui:

        print_json(study_status(study), study)
        return 0
    from cspine_tui.app import run_app  # imported on use: loads textual (start-up cost)

    return run_app(study_path=study.root, reviewer=getattr(args, "reviewer", None) or default_reviewer(),
                   image_protocol=getattr(args, "image_protocol", "auto"))
