"""`cspine-tui`: with no subcommand it opens the TUI; subcommands call core and print results.

Conventions every subcommand follows: `--study PATH` (default sessions/default); long commands run as a
job in the foreground with a progress bar on stderr and print the job id as the last line of stdout;
`--detach` starts the job in the background and prints its id; `--json` prints one JSON document on
stdout instead (a job's id is its key "job"; paths are absolute).
Errors a user can cause are printed on one line (`error: ...`) with exit code 2; see cli/common.py for
the output and exit-code conventions.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from core.errors import CspineError
from core.study import DEFAULT_STUDY, Study

from cspine_tui.cli.common import default_reviewer

IMAGE_PROTOCOLS = ("auto", "kitty", "sixel", "halfcell", "unicode", "off")

# One module per command group, in the order their commands appear in --help; each exposes register(subparsers).
COMMAND_MODULES = [
    "cspine_tui.cli.study",
    "cspine_tui.cli.jobs",
    "cspine_tui.cli.train",
    "cspine_tui.cli.sample",
    "cspine_tui.cli.fid",
    "cspine_tui.cli.ingest",
    "cspine_tui.cli.labels",
    "cspine_tui.cli.audit",
    "cspine_tui.cli.survey",
    "cspine_tui.cli.single",
    "cspine_tui.cli.screening",
    "cspine_tui.cli.plan",
    "cspine_tui.cli.utility",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cspine-tui",
        description="Terminal study manager for synthetic lateral c-spine radiographs. "
                    "Without a subcommand it opens the TUI on --study.",
    )
    parser.add_argument("--study", "-s", type=Path, default=DEFAULT_STUDY,
                        help=f"study folder for the TUI (default {DEFAULT_STUDY})")
    parser.add_argument("--reviewer", default=default_reviewer(),
                        help="who is making screening and audit decisions (default: your login name)")
    parser.add_argument("--image-protocol", choices=IMAGE_PROTOCOLS, default="auto",
                        help="terminal image protocol for previews (default auto-detect)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    os.umask(0o077)  # everything a study writes (images, runs, exports) is readable by its owner only
    try:
        if args.command is None:
            from cspine_tui.app import run_app  # imported on use: Textual costs start-up time for every command

            _check_study_to_open(args.study)
            return run_app(study_path=args.study, reviewer=args.reviewer, image_protocol=args.image_protocol)
        return int(args.func(args) or 0)
    except CspineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    # After BrokenPipeError (one of its kind): a path the user gave that cannot be read or written, say;
    # one line naming it rather than a traceback.
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2


def _check_study_to_open(path: Path) -> None:
    """The TUI opens a study; only the default one is created when missing (a typo must not make a study)."""
    if (path / "study.toml").exists():
        return
    if path == DEFAULT_STUDY:
        Study.create(path)
        print(f"created the default study {path}", file=sys.stderr)
        return
    Study.open(path)  # raises the one-line "no study at ..., create one with ..." error


if __name__ == "__main__":
    sys.exit(main())
