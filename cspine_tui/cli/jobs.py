"""jobs, cancel, resume, logs."""

from __future__ import annotations

import argparse
import sys
import time

from cspine_tui.cli.common import add_json, add_study, open_study, print_json, resume_job, table_console
from core.jobs import control, runner
from core.jobs.control import cancel_job, list_jobs, request_pause


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("jobs", help="list the study's jobs")
    add_study(p)
    add_json(p)
    p.add_argument("--kind", default=None, help="only jobs of this kind (train, sample, ingest, ...)")
    p.set_defaults(func=cmd_jobs)

    p = sub.add_parser("cancel", help="cancel a job (a running one stops at its next safe point)")
    add_study(p)
    p.add_argument("job")
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser("pause", help="ask a running job to checkpoint and pause (resume it later)")
    add_study(p)
    p.add_argument("job")
    p.set_defaults(func=cmd_pause)

    p = sub.add_parser("resume", help="resume a paused or died job where it stopped")
    add_study(p)
    p.add_argument("job")
    p.add_argument("--detach", action="store_true", help="resume in the background")
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("logs", help="print a job's log")
    add_study(p)
    p.add_argument("job")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")
    p.add_argument("--lines", "-n", type=int, default=50)
    p.set_defaults(func=cmd_logs)


def cmd_jobs(args: argparse.Namespace) -> int:
    study = open_study(args)
    rows = list_jobs(study, kind=args.kind)
    if args.json:
        print_json(rows, study)
        return 0
    from rich.table import Table

    table = Table("id", "kind", "state", "progress", "step", "message")
    width = 60 if sys.stdout.isatty() else None  # a terminal gets the start of each message, a file all of it
    for r in rows:
        prog = f"{100 * r['progress']:.0f}%" if r["progress"] is not None else ""
        table.add_row(r["id"], r["kind"], r["state"], prog, str(r["step"] or ""),
                      (r["error"] or r["message"] or "")[:width])
    table_console().print(table)
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    record = cancel_job(open_study(args), args.job)
    print(f"cancel requested for {record['id']} (now {record['state']})", file=sys.stderr)
    print(record["id"])
    return 0


def cmd_pause(args: argparse.Namespace) -> int:
    record = request_pause(open_study(args), args.job)
    print(f"pause requested for {record['id']}: it saves its state at its next safe point", file=sys.stderr)
    print(record["id"])
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    return resume_job(open_study(args), args.job, detach=args.detach)


def cmd_logs(args: argparse.Namespace) -> int:
    study = open_study(args)
    job_id = runner.job_record(study, args.job)["id"]
    path = runner.run_dir(study, job_id) / "log.txt"
    for line in control.tail_log(study, job_id, args.lines):
        print(line)
    if not args.follow:
        return 0
    pos = path.stat().st_size if path.exists() else 0
    while True:
        if path.exists() and path.stat().st_size > pos:
            with open(path, "rb") as fh:
                fh.seek(pos)
                chunk = fh.read()
            end = chunk.rfind(b"\n") + 1  # print whole lines only
            sys.stdout.write(chunk[:end].decode(errors="replace"))
            sys.stdout.flush()
            pos += end
        state = control.reconcile(study, runner.job_record(study, job_id))["state"]
        if state not in runner.ACTIVE_STATES:
            return 0
        time.sleep(0.5)
