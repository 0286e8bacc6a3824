"""Helpers every subcommand shares: the --study option, JSON output, and running long work as a job."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path
from typing import Any

from core.errors import CspineError
from core.study import DEFAULT_STUDY, Study
from core.jobs import launch, runner


def default_reviewer() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        return "reviewer"


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


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


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
    if getattr(args, "time_limit", None):
        params = {**params, "time_limit_s": args.time_limit}
    job_id = runner.create_job(study, kind, params, argv=sys.argv[1:])
    if getattr(args, "detach", False):
        pid = runner.start_detached(study, job_id, command)
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

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[message]}"))
    with Progress(*columns, transient=False, console=_stderr_console()) as bar:
        task = bar.add_task(job_id.split("-")[0], total=None, message="")

        def on_progress(done: int, total: int, message: str) -> None:
            bar.update(task, completed=done, total=total or None, message=message[:60])

        record = runner.run_job(study, job_id, foreground=True, on_progress=on_progress)
    if record["state"] == "failed":
        print(f"error: {record['error']}", file=sys.stderr)
    elif record["state"] == "paused":
        print(f"paused: {record['error'] or 'stopped at a safe point'}; continue with "
              f"`cspine-tui resume {job_id} --study {study.root}`", file=sys.stderr)
    return record


def add_launch_options(parser: argparse.ArgumentParser, *, processes_help: str) -> None:
    """The options of a job that can run as N processes (accelerate launch) or through a Slurm script."""
    parser.add_argument("--num-processes", type=positive_int, default=1, help=processes_help)
    parser.add_argument("--sbatch", action="store_true",
                        help="write a Slurm script for this job instead of running it (see README: Slurm)")
    parser.add_argument("--sbatch-time", default="24:00:00", help="Slurm --time of each allocation")
    parser.add_argument("--sbatch-cpu", action="store_true",
                        help="the script asks for CPU cores, not GPUs (CPU-only nodes; gloo between processes)")
    parser.add_argument("--signal-lead", type=int, default=300,
                        help="seconds before the Slurm time limit to checkpoint and requeue")
    parser.add_argument("--partition", default=None, help="Slurm partition")


def run_launched_job(args: argparse.Namespace, study: Study, kind: str, params: dict[str, Any]
                     ) -> dict[str, Any] | None:
    """A job that runs through a launcher: write its Slurm script (--sbatch), start it detached, or run it
    in the foreground with a progress bar. Returns the final record, or None when it did not run here (its id
    is then printed as the last stdout line)."""
    if getattr(args, "time_limit", None):
        params = {**params, "time_limit_s": args.time_limit}
    job_id = runner.create_job(study, kind, params, argv=sys.argv[1:])
    if args.sbatch:
        script = launch.write_sbatch(study, job_id, gpus=args.num_processes, cpu=args.sbatch_cpu,
                                           time_limit=args.sbatch_time, signal_lead_s=args.signal_lead,
                                           partition=args.partition)
        print(f"wrote {script}; submit it with `sbatch {script}` (the job stays queued until it starts)",
              file=sys.stderr)
        if args.json:
            print_json({"job": job_id, "sbatch": str(script)})
        print(job_id)
        return None
    if args.detach:
        launch.start(study, job_id, detach=True)
        print(f"started {kind} job with {args.num_processes} processes in the background; follow it with "
              f"`cspine-tui logs {job_id} --follow --study {study.root}`", file=sys.stderr)
        print(job_id)
        return None
    return run_launched_foreground(study, job_id, launch.launch_command(study, job_id))


def run_launched_foreground(study: Study, job_id: str, command: list[str]) -> dict[str, Any]:
    """Run a job through a launcher subprocess (multi-process), with a progress bar from its status.json."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[message]}"))
    with Progress(*columns, console=_stderr_console()) as bar:
        task = bar.add_task(job_id.split("-")[0], total=None, message="starting processes")

        def on_status(status: dict) -> None:
            if status.get("total"):
                bar.update(task, completed=status.get("done") or 0, total=status["total"],
                           message=str(status.get("message") or "")[:60])

        record = launch.run_launcher(study, job_id, command, on_status=on_status)
    if record["state"] == "failed":
        print(f"error: {record['error']}", file=sys.stderr)
    elif record["state"] == "paused":
        print(f"paused: {record['error']}; continue with `cspine-tui resume {job_id} --study {study.root}`",
              file=sys.stderr)
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
           "parse_duration", "run_as_job", "run_foreground", "finish", "add_launch_options", "run_launched_job",
           "run_launched_foreground"]
