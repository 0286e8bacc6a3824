"""Helpers every subcommand shares: the --study option, JSON output, and running long work as a job."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from core.errors import CspineError
from core.study import DEFAULT_STUDY, Study


def add_study(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--study", "-s", type=Path, default=DEFAULT_STUDY,
                        help=f"study folder (default {DEFAULT_STUDY})")


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")


def add_job_options(parser: argparse.ArgumentParser, *, time_limit: bool = True) -> None:
    parser.add_argument("--detach", action="store_true",
                        help="start the job in the background (survives logout) and print its id")
    if time_limit:
        parser.add_argument("--time-limit", type=parse_duration, default=None, metavar="T",
                            help="stop cleanly (resumable) after T, e.g. 23h30m, 90m, 3600")


def open_study(args: argparse.Namespace) -> Study:
    return Study.open(args.study)


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    sys.stdout.flush()


def parse_duration(text: str) -> float:
    """'23h30m' / '90m' / '45s' / '3600' -> seconds."""
    text = text.strip().lower()
    try:
        return float(text)
    except ValueError:
        pass
    total, number = 0.0, ""
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    for ch in text:
        if ch.isdigit() or ch == ".":
            number += ch
        elif ch in units and number:
            total += float(number) * units[ch]
            number = ""
        else:
            raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use e.g. 23h30m, 90m, 3600)")
    if number:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (a number needs a unit: d, h, m or s)")
    return total


def run_as_job(args: argparse.Namespace, study: Study, kind: str, params: dict[str, Any],
               *, command: list[str] | None = None) -> dict[str, Any] | None:
    """Create a job and run it: detached (prints its id) or in the foreground with a progress bar.

    Returns the final job record in the foreground, None when detached. The job id is always the
    last line printed on stdout, the convention scripts rely on.
    """
    from core import jobs

    if getattr(args, "time_limit", None):
        params = {**params, "time_limit_s": args.time_limit}
    job_id = jobs.create_job(study, kind, params, argv=sys.argv[1:])
    if getattr(args, "detach", False):
        pid = jobs.start_detached(study, job_id, command)
        print(f"started {kind} job in the background (pid {pid}); follow it with "
              f"`cspine-tui logs {job_id} --follow --study {study.root}`", file=sys.stderr)
        print(job_id)
        return None
    record = run_foreground(study, job_id)
    return record


def run_foreground(study: Study, job_id: str) -> dict[str, Any]:
    """Run a job in this process with a rich progress bar on stderr; exits non-zero if it failed."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    from core import jobs

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[message]}"))
    with Progress(*columns, transient=False, console=_stderr_console()) as bar:
        task = bar.add_task(job_id.split("-")[0], total=None, message="")

        def on_progress(done: int, total: int, message: str) -> None:
            bar.update(task, completed=done, total=total or None, message=message[:60])

        record = jobs.run_job(study, job_id, foreground=True, on_progress=on_progress)
    if record["state"] == "failed":
        print(f"error: {record['error']}", file=sys.stderr)
    elif record["state"] == "paused":
        print(f"paused: {record['error'] or 'stopped at a safe point'}; continue with "
              f"`cspine-tui resume {job_id} --study {study.root}`", file=sys.stderr)
    return record


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


def finish(record: dict[str, Any] | None, result: Any = None, *, as_json: bool = False) -> int:
    """Print a foreground job's result (JSON when asked) and its id as the last line; the exit code."""
    if record is None:  # detached: the id is already printed
        return 0
    if as_json and result is not None:
        print_json(result)
    print(record["id"])
    return 0 if record["state"] in ("succeeded", "paused") else 1


__all__ = ["CspineError", "add_study", "add_json", "add_job_options", "open_study", "print_json",
           "parse_duration", "run_as_job", "run_foreground", "finish"]
