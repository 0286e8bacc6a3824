"""Helpers every subcommand shares: the --study option, JSON output, and running long work as a job.

Output conventions (docs/guide/cli.md):
- `--json` prints exactly one JSON document on stdout and nothing else there. A job's document carries its id
  as `"job"` and its end state as `"state"`; every path in a document is absolute.
- Without `--json` a job's id is the last line of stdout.
- Exit codes: 0 done (or paused, resumable); 2 an error the user can fix (bad input, a missing file or weight,
  a path that cannot be read or written, a full disk), before a job or inside one; 1 an internal failure (a
  crash inside a job) or a cancelled job; 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

from core.errors import CspineError
from core.jobs import launch
from core.jobs.runner import read_json, run_dir
from core.study import DEFAULT_STUDY, Study


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


# Keys whose string values name files. The database keeps study files relative to the study (so a study
# folder can move); a JSON document gives them absolute.
PATH_KEYS = frozenset({"path", "paths", "output", "out", "file", "files", "csv", "sheet", "histogram", "html",
                       "markdown", "log", "sbatch", "folder", "dir", "sources"})


def _is_path_key(key: Any) -> bool:
    return isinstance(key, str) and (key in PATH_KEYS or key.endswith(("_path", "_dir", "_file")))


def absolute_paths(data: Any, root: Path) -> Any:
    """`data` with every relative path under a path key made absolute against the study folder `root`."""
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            if _is_path_key(key) and isinstance(value, str):
                out[key] = _absolute(value, root)
            elif _is_path_key(key) and isinstance(value, (list, tuple)):
                out[key] = [_absolute(v, root) if isinstance(v, str) else absolute_paths(v, root) for v in value]
            else:
                out[key] = absolute_paths(value, root)
        return out
    if isinstance(data, (list, tuple)):
        return [absolute_paths(v, root) for v in data]
    return data


def _absolute(value: str, root: Path) -> str:
    # Not a path: empty, a URL, or a labelled source such as "planted:airway_posterior".
    if not value or ":" in value or Path(value).is_absolute():
        return value
    return str(root / value)


def print_json(data: Any, study: Study | None = None) -> None:
    """Print one JSON document on stdout; with `study`, its study-relative paths become absolute."""
    if study is not None:
        data = absolute_paths(data, study.root.resolve())
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    sys.stdout.flush()


def note_survey_setup(out: Path | str, image_base_url: str | None, txt_limits: list[str]) -> None:
    """Tell on stderr what a freshly built survey pack (either design) still needs before raters can open it."""
    if not image_base_url:
        print(f"note: image URLs are placeholders; host upload/images/ and run `cspine-tui survey-urls --pack {out} "
              "--image-base-url https://...` (see the pack's README.md)", file=sys.stderr)
    print("note: upload/survey.qsf carries every setting; if you import upload/survey.txt instead, set by hand "
          "in Qualtrics (also in the pack's README.md):", file=sys.stderr)
    for line in txt_limits:
        print(f"  - {line}", file=sys.stderr)


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


def run_as_job(args: argparse.Namespace, study: Study, kind: str, params: dict[str, Any]) -> dict[str, Any] | None:
    """Start a job through core.jobs.launch: write its Slurm script (--sbatch), start it detached (--detach),
    or run it in the foreground with a progress bar (one process here, N through accelerate launch).

    Returns the final job record in the foreground, None when it did not run here (its id, or with --json its
    document, is then printed).
    """
    if getattr(args, "time_limit", None):
        params = {**params, "time_limit_s": args.time_limit}
    if getattr(args, "sbatch", False):
        launched = launch.launch(study, kind, params, detach=True, argv=sys.argv[1:], sbatch=launch.SbatchOptions(
            cpu=args.sbatch_cpu, time_limit=args.sbatch_time, signal_lead_s=args.signal_lead,
            partition=args.partition))
        print(f"wrote {launched.sbatch}; submit it with `sbatch {launched.sbatch}` (the job stays queued until it "
              f"starts)", file=sys.stderr)
        _print_started(args, study, launched.job_id, sbatch=str(Path(launched.sbatch).resolve()))
        return None
    if getattr(args, "detach", False):
        launched = launch.launch(study, kind, params, detach=True, argv=sys.argv[1:])
        print(f"started {kind} job in the background (pid {launched.pid}); follow it with "
              f"`cspine-tui logs {launched.job_id} --follow --study {study.root}`", file=sys.stderr)
        _print_started(args, study, launched.job_id, pid=launched.pid)
        return None
    with _progress_bar(kind) as on_progress:
        record = launch.launch(study, kind, params, detach=False, argv=sys.argv[1:], on_progress=on_progress).record
    return _report_end(study, record)


def resume_job(study: Study, job_id: str, *, detach: bool) -> int:
    """Resume a job (the `resume` command): detached, or in the foreground with a progress bar; the exit code."""
    if detach:
        launched = launch.start(study, job_id, detach=True)
        print(f"resumed {launched.job_id} in the background (pid {launched.pid})", file=sys.stderr)
        print(launched.job_id)
        return 0
    with _progress_bar(job_id.split("-")[0]) as on_progress:
        record = launch.start(study, job_id, detach=False, on_progress=on_progress).record
    return finish(study, _report_end(study, record))


@contextlib.contextmanager
def _progress_bar(label: str) -> Iterator[Callable[[float, int, str], None]]:
    """A rich progress bar on stderr; yields the callback a foreground job reports progress to."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[message]}"))
    with Progress(*columns, transient=False, console=_stderr_console()) as bar:
        task = bar.add_task(label, total=None, message="")

        def on_progress(done: float, total: int, message: str) -> None:
            bar.update(task, completed=done, total=total or None, message=message[:60])

        yield on_progress


def _report_end(study: Study, record: dict[str, Any]) -> dict[str, Any]:
    """Say on stderr how a foreground job ended when it did not succeed; the record."""
    if record["state"] == "failed":
        print(f"error: {record['error']}", file=sys.stderr)
    elif record["state"] == "paused":
        print(f"paused: {record['error'] or 'stopped at a safe point'}; continue with "
              f"`cspine-tui resume {record['id']} --study {study.root}`", file=sys.stderr)
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


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


# Wide enough for any row: a table is only as wide as its content (rich's Table does not expand by default).
PIPED_WIDTH = 100_000


def table_console(*, stderr: bool = False):
    """A rich Console for tables: the terminal's width, or whole rows when the output is a file or a pipe
    (rich would otherwise assume 80 columns and cut cells: "train-20...")."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else PIPED_WIDTH)


def _print_started(args: argparse.Namespace, study: Study, job_id: str, **extra: Any) -> None:
    """A job that runs elsewhere (detached, or a Slurm script): its id, or with --json its document."""
    if getattr(args, "json", False):
        print_json({"job": job_id, "state": "queued", **extra,
                    "log": str(run_dir(study, job_id).resolve() / "log.txt")}, study)
    else:
        print(job_id)


def job_exit_code(study: Study, record: dict[str, Any]) -> int:
    """0 succeeded or paused (resumable); 2 failed for a reason the user can fix; 1 crashed or cancelled."""
    if record["state"] in ("succeeded", "paused"):
        return 0
    if record["state"] == "failed":
        # The runner records in status.json whether the failure was the user's to fix (core.errors.CspineError,
        # an OSError, a full disk) or a crash; a launcher that died before its job ran leaves no mark: a crash.
        status = read_json(run_dir(study, record["id"]) / "status.json") or {}
        return 2 if status.get("failure") == "user" else 1
    return 1


def finish(study: Study, record: dict[str, Any] | None, result: Any = None, *, as_json: bool = False) -> int:
    """Print a foreground job's result and return the exit code (see job_exit_code).

    With --json: one document, the job's id (`job`), end state (`state`, and `error` if it did not succeed)
    and the result's keys. Without: the job's id as the last line of stdout.
    """
    if record is None:  # it runs elsewhere: _print_started printed what there is to print
        return 0
    if as_json:
        doc: dict[str, Any] = {"job": record["id"], "state": record["state"]}
        if record["state"] != "succeeded":
            doc["error"] = record.get("error")
        if isinstance(result, dict):
            doc.update({k: v for k, v in result.items() if k not in doc})
        elif result is not None:
            doc["result"] = result
        print_json(doc, study)
    else:
        print(record["id"])
    return job_exit_code(study, record)


__all__ = ["CspineError", "add_study", "add_json", "add_job_options", "open_study", "print_json", "absolute_paths",
           "table_console", "parse_duration", "run_as_job", "resume_job", "finish", "job_exit_code",
           "add_launch_options"]
