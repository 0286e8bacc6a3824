"""The kinds of job the engine runs: each kind's runner and how many processes it runs as.

A runner is named by import path ("module:function"), so creating, listing or launching jobs never imports
torch; the module is imported only in the process that runs the job. A kind marked ``multiprocess`` (train,
sample) runs as ``params["num_processes"]`` processes through ``accelerate launch`` when that is more than one;
every other kind runs as one process. ``core.jobs.launch`` chooses the launcher from this, for every screen and
command.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from core.errors import CspineError


@dataclass(frozen=True)
class JobKind:
    runner: str  # "module:function(ctx: JobContext) -> dict | None"
    multiprocess: bool = False  # may run as N processes (DDP, sharded sampling) under accelerate launch


# Each area registers its kind here.
KINDS: dict[str, JobKind] = {
    "selftest": JobKind("core.jobs.runner:selftest_runner"),
    "ingest": JobKind("core.realset.ingest:run"),
    "audit": JobKind("core.audit.nearest:run_audit_job"),
    "prescreen": JobKind("core.screening.prescreen:run_prescreen_job"),
    "train": JobKind("core.ddpm.trainer:run", multiprocess=True),
    "release": JobKind("core.screening.release:run_release_job"),
    "sample": JobKind("core.ddpm.sampling:run", multiprocess=True),
    "add_synthetic": JobKind("core.ddpm.synthetic:run_add_synthetic"),
    "fid": JobKind("core.ddpm.run_fid:run"),
    "utility": JobKind("core.utility.benchmark:run"),
    "condition_check": JobKind("core.utility.check:run"),
}


def job_kind(kind: str) -> JobKind:
    try:
        return KINDS[kind]
    except KeyError:
        raise CspineError(f"unknown job kind {kind!r}; known: {', '.join(sorted(KINDS))}") from None


def resolve_runner(kind: str) -> Callable[[Any], dict | None]:
    module_name, func_name = job_kind(kind).runner.split(":")
    return getattr(importlib.import_module(module_name), func_name)


def num_processes(kind: str, params: dict[str, Any]) -> int:
    """How many processes a job of this kind with these params runs as (1 unless the kind is multiprocess)."""
    if not job_kind(kind).multiprocess:
        return 1
    return max(1, int(params.get("num_processes") or 1))
