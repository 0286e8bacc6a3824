"""Recognising a full disk (or quota, or file-size limit) behind a failed write, and saying so clearly.

A job that runs out of space must end with one line that names the file and what to do, not a traceback,
and must leave no partial file that anything references. Writers that know the path they were writing
raise :class:`DiskFull`; the job framework (core.jobs.runner.run_job) also recognises a bare ``OSError`` with
ENOSPC/EFBIG/EDQUOT anywhere in an exception's chain, and libraries that hide the errno in their message
(safetensors: "File too large (os error 27)").

Some writers lose the errno entirely (torch.save's C++ stream reports "unexpected pos ..."), so
:func:`write_failed_for_space` looks at the evidence instead: a file under the folder being written that
reached this process's file-size limit (``ulimit -f``), or a filesystem with almost no space left.
"""

from __future__ import annotations

import errno
import os
import resource
import shutil
from pathlib import Path

from core.errors import CspineError

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})
_MESSAGES = ("no space left on device", "file too large", "disk quota exceeded",
             "os error 28)", "os error 27)", "os error 122)")
LOW_SPACE_BYTES = 16 * 1024 * 1024  # below this much free space a failed write is taken for a full disk


class DiskFull(CspineError):
    """A write failed because the disk (or the quota, or the process's file-size limit) is full."""

    def __init__(self, path: str | Path, detail: str = "") -> None:
        self.path = str(path)
        super().__init__(f"disk full writing {self.path}" + (f" ({detail})" if detail else ""))


def _chain(exc: BaseException):
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def disk_full_path(exc: BaseException) -> str | None:
    """The path being written when `exc` says the disk is full ('' when unknown); None for other errors."""
    for link in _chain(exc):
        if isinstance(link, DiskFull):
            return link.path
        if isinstance(link, OSError) and link.errno in DISK_FULL_ERRNOS:
            return str(link.filename or "")
        if any(m in str(link).lower() for m in _MESSAGES):
            return ""
    return None


def write_failed_for_space(folder: Path) -> bool:
    """Whether a write into `folder` most likely failed for lack of space: a file there reached the process's
    file-size limit, or the filesystem has almost no free space left."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    if soft != resource.RLIM_INFINITY and Path(folder).exists():
        for root, _dirs, files in os.walk(folder):
            for name in files:
                try:
                    if os.path.getsize(os.path.join(root, name)) >= soft:
                        return True
                except OSError:
                    continue
    try:
        return shutil.disk_usage(folder if Path(folder).exists() else Path(folder).parent).free < LOW_SPACE_BYTES
    except OSError:
        return False


def resume_hint(job_id: str, path: str | None) -> str:
    """The one-line error a job ends with when the disk filled up."""
    where = f" writing {path}" if path else ""
    return f"disk full{where}: free space and run `cspine-tui resume {job_id}`"
