"""Writing and hashing files, shared across the engine."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path


def sha256_file(path: Path | str) -> str:
    """Hex SHA-256 of a file's bytes, read in blocks (checkpoints and weights can be GBs)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def write_bytes_atomic(path: Path, data: bytes, *, tmp_prefix: str = ".") -> None:
    """Write to a hidden temporary name in the same folder, flush it to disk, then rename it into place, so a
    reader (or a kill, or a power cut) never sees half a file. A failed write (a full disk) removes its
    temporary file and raises the original error."""
    tmp = path.with_name(f"{tmp_prefix}{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
