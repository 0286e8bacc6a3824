"""Ingest: source radiographs -> canonical 8-bit grayscale 256x256 PNGs with provenance, as a resumable job.

Pipeline per file (in worker processes): read bytes, SHA-256 (the image id; same bytes = duplicate), decode
at full bit depth (core/realset/readers.py), resize with antialiasing in float (``stretch`` as the paper, or ``pad``
keeping the aspect ratio), decide polarity (DICOM: its tag; otherwise the detector) and invert negatives,
detect the facing direction and mirror right-facing films to face left (core/realset/detectors.py), quantise to 8
bits once, encode PNG. The parent writes each PNG atomically under ``images/real/<sha256 of the PNG>.png``
and records rows in short batched transactions. Every file ends ingested, a duplicate, or skipped with a
one-line reason (``ingest_events``). A re-run of the same job skips what it already recorded.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable


from core.errors import CspineError
from core.files import write_bytes_atomic
from core.realset.canonical import RESIZE_MODES, IngestOptions, canonicalize, encode_png
from core.realset.readers import DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_PIXELS, SkipFile, decode_bytes

if TYPE_CHECKING:  # workers import this module: keep them free of duckdb and the study machinery
    from core.study import Study

BATCH_ROWS = 64
BATCH_SECONDS = 1.0

REAL_COLUMNS = ("id", "path", "canonical_sha256", "source_path", "source_format", "modality", "photometric",
                "transfer_syntax", "orig_width", "orig_height", "bit_depth", "resize_mode", "inverted",
                "polarity_source", "polarity_confidence", "flipped", "orientation_source",
                "orientation_confidence", "flagged", "ingest_job", "spacing_x_mm", "spacing_y_mm", "spacing_source")


@dataclass
class FileResult:
    path: str
    outcome: str                        # ingested | duplicate | skipped
    reason: str | None = None
    id: str | None = None
    png: bytes | None = None
    row: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------
# One file (runs in a worker process)

_WORKER: dict[str, Any] = {}


def _init_worker(known_ids: frozenset[str], opts: IngestOptions) -> None:
    import signal

    _WORKER["known"] = known_ids
    _WORKER["opts"] = opts
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # A cancel or a scheduler's pre-timeout signal goes to the whole process group: the parent stops at a
    # safe point and shuts the pool down, so the workers must not die of it first.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)


def process_file(path: str, known_ids: frozenset[str] | set[str] | None = None,
                 opts: IngestOptions | None = None) -> FileResult:
    """Everything for one source file except writing: never raises for a bad file."""
    known = _WORKER.get("known", frozenset()) if known_ids is None else known_ids
    opts = opts or _WORKER.get("opts") or IngestOptions()
    try:
        return _process(path, known, opts)
    except SkipFile as exc:
        return FileResult(path, "skipped", reason=str(exc))
    except MemoryError:
        return FileResult(path, "skipped", reason="out of memory while decoding (image too large?)")
    except Exception as exc:  # noqa: BLE001 - one bad file must never stop the run
        return FileResult(path, "skipped", reason=f"could not be read ({type(exc).__name__}: {str(exc)[:120]})")


def _process(path: str, known: frozenset[str] | set[str], opts: IngestOptions) -> FileResult:
    data = read_source(Path(path), opts.max_file_bytes)
    image_id = hashlib.sha256(data).hexdigest()
    if image_id in known:
        return FileResult(path, "duplicate", id=image_id)
    dec = decode_bytes(data, Path(path).suffix, max_pixels=opts.max_pixels, reduce_to=2 * opts.size)
    if min(dec.width, dec.height) < opts.min_side:
        raise SkipFile(f"too small: {dec.width}x{dec.height} (needs at least {opts.min_side} px a side)")
    canon = canonicalize(dec, opts)
    png = encode_png(canon.pixels)
    row = {
        "id": image_id, "canonical_sha256": hashlib.sha256(png).hexdigest(), "source_path": path,
        "source_format": dec.source_format, "modality": dec.modality, "photometric": dec.photometric,
        "transfer_syntax": dec.transfer_syntax, "orig_width": dec.width, "orig_height": dec.height,
        "bit_depth": dec.bit_depth, "resize_mode": opts.resize, "inverted": canon.inverted,
        "polarity_source": canon.polarity_source, "polarity_confidence": canon.polarity_confidence,
        "flipped": canon.flipped, "orientation_source": canon.orientation_source,
        "orientation_confidence": canon.orientation_confidence, "flagged": canon.flagged,
        "spacing_x_mm": dec.pixel_spacing[0] if dec.pixel_spacing else None,
        "spacing_y_mm": dec.pixel_spacing[1] if dec.pixel_spacing else None,
        "spacing_source": dec.spacing_source,
    }
    return FileResult(path, "ingested", id=image_id, png=png, row=row)


def read_source(path: Path, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> bytes:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise SkipFile("broken symbolic link" if path.is_symlink() else "file vanished before it was read") \
            from None
    except PermissionError:
        raise SkipFile("permission denied (cannot access the file)") from None
    except OSError as exc:
        raise SkipFile(_os_reason(exc)) from None
    if not stat.S_ISREG(st.st_mode):
        raise SkipFile("not a regular file (a device, FIFO or socket)")
    if st.st_size == 0:
        raise SkipFile("empty file (0 bytes)")
    if st.st_size > max_bytes:
        raise SkipFile(f"file too large ({st.st_size:,} bytes > {max_bytes:,})")
    try:
        with open(path, "rb") as fh:
            return fh.read(max_bytes + 1)
    except PermissionError:
        raise SkipFile("permission denied (cannot read the file)") from None
    except OSError as exc:
        raise SkipFile(_os_reason(exc)) from None


def _os_reason(exc: OSError) -> str:
    import errno

    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    return f"cannot be read ({exc.strerror or exc})"


# ---------------------------------------------------------------------------------------------------
# Finding the files


SUBFOLDER_REASON = "a sub-folder: not read without --recursive"


def discover(paths: Iterable[str | Path], recursive: bool, *, subfolder_reason: str = SUBFOLDER_REASON
             ) -> tuple[list[str], list[tuple[str, str]]]:
    """Source files under `paths` (sorted, each once) and the paths skipped while looking, with reasons.

    Without `recursive`, the sub-folders of a given folder are skipped with `subfolder_reason`."""
    files: list[str] = []
    skipped: list[tuple[str, str]] = []
    seen_files: set[str] = set()
    seen_dirs: set[tuple[int, int]] = set()

    def add_file(p: str) -> None:
        if p not in seen_files:
            seen_files.add(p)
            files.append(p)

    def visit(p: Path, top: bool) -> None:
        try:
            st = p.stat()
        except FileNotFoundError:
            skipped.append((str(p), "broken symbolic link" if p.is_symlink() else "no such file or folder"))
            return
        except PermissionError:
            skipped.append((str(p), "permission denied"))
            return
        except OSError as exc:
            skipped.append((str(p), _os_reason(exc)))
            return
        if stat.S_ISDIR(st.st_mode):
            if not (top or recursive):  # listed, so a nested data set is never half-ingested unsaid
                skipped.append((str(p), subfolder_reason))
                return
            key = (st.st_dev, st.st_ino)
            if key in seen_dirs:
                skipped.append((str(p), "symbolic link loop (folder already visited)"))
                return
            seen_dirs.add(key)
            try:
                entries = sorted(os.listdir(p))
            except PermissionError:
                skipped.append((str(p), "permission denied (cannot list the folder)"))
                return
            except OSError as exc:
                skipped.append((str(p), _os_reason(exc)))
                return
            for name in entries:
                visit(p / name, False)
        elif stat.S_ISREG(st.st_mode):
            add_file(str(p))
        else:
            skipped.append((str(p), "not a regular file (a device, FIFO or socket)"))

    for raw in paths:
        visit(Path(raw).expanduser().absolute(), True)
    return files, skipped


# ---------------------------------------------------------------------------------------------------
# The job


def options_for(study: Study, params: dict[str, Any], used_modes: set[str] | None = None) -> IngestOptions:
    """The job's options from its params and study.toml; refuses to mix resize modes in one real set."""
    resize = params.get("resize") or study.get("ingest", "resize", "stretch")
    size = int(params.get("size") or study.get("ingest", "size", 256))
    if used_modes is None:
        used_modes = set(study.store.column("SELECT DISTINCT resize_mode FROM real_images"))
    if used_modes and used_modes != {resize}:
        raise CspineError(f"this study's real images were resized with {'/'.join(sorted(used_modes))}; mixing "
                          f"in {resize!r} would make the set inconsistent. Use --resize {sorted(used_modes)[0]} "
                          "or a new study")
    return IngestOptions(size=size, resize=resize,
                         min_side=int(params.get("min_side") or study.get("ingest", "min_side", 128)),
                         max_pixels=int(params.get("max_pixels") or study.get("ingest", "max_pixels",
                                                                                DEFAULT_MAX_PIXELS)))


def ingest(study: Study, paths: list[str | Path], *, recursive: bool = False, resize: str | None = None,
           split_seed: int | None = None, workers: int | None = None,
           on_progress: Callable[[int, int, str], None] | None = None) -> dict[str, Any]:
    """Create and run an ingest job in this process (scripts, the demo); returns its job record."""
    from core.jobs import runner  # imported on use: loads duckdb (start-up cost)
    job_id = runner.create_job(study, "ingest", ingest_params(paths, recursive=recursive, resize=resize,
                                                            split_seed=split_seed, workers=workers))
    return runner.run_job(study, job_id, foreground=True, on_progress=on_progress)


def ingest_params(paths: Iterable[str | Path], *, recursive: bool = False, resize: str | None = None,
                  split_seed: int | None = None, workers: int | None = None) -> dict[str, Any]:
    paths = [str(Path(p).expanduser().absolute()) for p in paths]
    if not paths:
        raise CspineError("nothing to ingest: give one or more files or folders")
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise CspineError(f"not found: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}; "
                          "give existing image files or folders")
    if resize is not None and resize not in RESIZE_MODES:
        raise CspineError(f"unknown resize mode {resize!r}; use stretch or pad")
    return {"paths": paths, "recursive": recursive, "resize": resize, "split_seed": split_seed,
            "workers": workers}


def run(ctx) -> dict[str, Any]:
    """The ingest job runner (registered as kind "ingest" in core/jobs/runner.py)."""
    from core.jobs.runner import JobPaused  # imported on use: loads duckdb (start-up cost)
    from core.realset.catalog import assign_missing, check_split_seed  # imported on use: loads duckdb (start-up cost)

    study: Study = ctx.study
    params = ctx.params
    listing_path = ctx.dir / "files.json"
    listing = json.loads(listing_path.read_text()) if listing_path.exists() else None
    if listing is None:  # the list is fixed on the first run, so a resume processes the same files
        files, found_skips = discover(params["paths"], bool(params.get("recursive")))
        listing = {"files": files, "skipped": found_skips}
        tmp = listing_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(listing))
        os.replace(tmp, listing_path)
    files: list[str] = listing["files"]
    with study.store.connect() as tx:  # one short transaction: what is known, what this job already did
        opts = options_for(study, params, set(tx.column("SELECT DISTINCT resize_mode FROM real_images")))
        check_split_seed(study, set(tx.column("SELECT DISTINCT seed FROM splits")), params.get("split_seed"))
        done_paths = set(tx.column("SELECT source_path FROM real_images WHERE ingest_job = ?", [ctx.job_id]))
        done_paths |= set(tx.column("SELECT source_path FROM ingest_events WHERE job_id = ?", [ctx.job_id]))
        known = set(tx.column("SELECT id FROM real_images"))
        tx.executemany("INSERT INTO ingest_events (job_id, source_path, outcome, reason) VALUES (?, ?, 'skipped', ?)",
                       [[ctx.job_id, p, r] for p, r in listing["skipped"] if p not in done_paths])
    if study.get("ingest", "resize") != opts.resize or study.get("ingest", "size") != opts.size:
        study.settings.setdefault("ingest", {}).update(resize=opts.resize, size=opts.size)
        study.save_settings()
    pending = [p for p in files if p not in done_paths]
    total, done = len(files), len(files) - len(pending)
    ctx.log(f"ingest: {total} files ({len(pending)} to do), {len(listing['skipped'])} skipped while listing; "
            f"resize={opts.resize} size={opts.size}")
    study.real_dir.mkdir(parents=True, exist_ok=True)
    writer = _Writer(study, ctx.job_id, known)
    ctx.progress(done, total, message="starting", force=True)
    stopped = False
    try:
        for result in _results(pending, known, opts, params.get("workers"), ctx.should_stop):
            writer.add(result)
            done += 1
            ctx.progress(done, total, message=Path(result.path).name)
            if ctx.should_stop():
                stopped = True
                break
    finally:
        writer.flush()
    if stopped:
        ctx.log(f"ingest paused after {done}/{total} files: {ctx.stop_reason}")
        raise JobPaused(ctx.stop_reason)
    split = assign_missing(study, params.get("split_seed"))
    summary = job_summary(study, ctx.job_id)
    ctx.progress(total, total, message="done", force=True)
    ctx.log(f"ingest done: {summary['ingested']} ingested, {summary['duplicates']} duplicates, "
            f"{len(summary['skipped'])} skipped; split {split}")
    return {"ingested": summary["ingested"], "duplicates": summary["duplicates"],
            "skipped": len(summary["skipped"]), "files": total, "split": split,
            "output": str(study.real_dir)}


def _results(pending: list[str], known: set[str], opts: IngestOptions, workers: int | None,
             should_stop: Callable[[], bool]) -> Iterable[FileResult]:
    """FileResults in listing order (few files, or workers=0, run in this process).

    In listing order, not as workers finish: of two files with the same bytes the first listed is the
    original and the other the duplicate, whichever worker is faster, and a paused job has done a prefix of
    the list. A result that finishes early waits (at most 4 per worker are submitted and not yet yielded).
    """
    n_workers = default_workers() if workers is None else int(workers)
    if n_workers <= 0 or len(pending) <= 2:
        frozen = frozenset(known)
        for path in pending:
            yield process_file(path, frozen, opts)
        return
    n_workers = min(n_workers, len(pending))
    # spawn: the job's heartbeat thread makes plain fork unsafe, and forkserver workers are watched through
    # the server, which a signal to the process group (cancel, a scheduler) kills, breaking the pool.
    ctx = get_context("spawn")
    with ProcessPoolExecutor(n_workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(frozenset(known), opts)) as pool:
        inflight: dict[Future, int] = {}
        ready: dict[int, FileResult] = {}
        submitted = yielded = 0
        try:
            while yielded < len(pending):
                while submitted - yielded < 4 * n_workers and submitted < len(pending) and not should_stop():
                    inflight[pool.submit(process_file, pending[submitted])] = submitted
                    submitted += 1
                if yielded == submitted:
                    return  # asked to stop: nothing left to hand over in order
                finished, _ = wait(inflight, return_when=FIRST_COMPLETED)
                for fut in finished:
                    index = inflight.pop(fut)
                    try:
                        ready[index] = fut.result()
                    except BrokenProcessPool:
                        # A decoder crashed its process (or it was killed): name the suspects; a resume
                        # continues after the files already recorded.
                        suspects = sorted([pending[index], *(pending[i] for i in inflight.values())])
                        raise CspineError(
                            f"a decoding process died while reading one of {len(suspects)} files "
                            f"({', '.join(Path(p).name for p in suspects[:4])}{', ...' if len(suspects) > 4 else ''}); "
                            "move the bad file away and resume the job") from None
                while yielded in ready:
                    yield ready.pop(yielded)
                    yielded += 1
        finally:
            for fut in inflight:
                fut.cancel()


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


class _Writer:
    """Writes canonical PNGs at once and database rows in short batched transactions."""

    def __init__(self, study: Study, job_id: str, known: set[str]) -> None:
        self.study, self.job_id, self.known = study, job_id, known
        self.rows: list[list[Any]] = []
        self.events: list[list[Any]] = []
        self.last_flush: float | None = None  # the clock starts with the first result, not the pool start

    def add(self, res: FileResult) -> None:
        if self.last_flush is None:
            self.last_flush = time.monotonic()
        if res.outcome == "ingested" and res.id in self.known:
            res = FileResult(res.path, "duplicate", id=res.id)  # an identical file met earlier in this run
        if res.outcome == "ingested":
            name = f"{res.row['canonical_sha256']}.png"
            write_bytes_atomic(self.study.real_dir / name, res.png or b"")
            row = {**res.row, "path": self.study.rel(self.study.real_dir / name), "ingest_job": self.job_id}
            self.rows.append([row[c] for c in REAL_COLUMNS])
            self.known.add(res.id or "")
        elif res.outcome == "duplicate":
            self.events.append([self.job_id, res.path, "duplicate", "same content as an image already ingested",
                                res.id])
        else:
            self.events.append([self.job_id, res.path, "skipped", res.reason, None])
        if len(self.rows) + len(self.events) >= BATCH_ROWS or time.monotonic() - self.last_flush > BATCH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self.rows or self.events:
            with self.study.store.connect() as tx:
                tx.executemany(f"INSERT INTO real_images ({', '.join(REAL_COLUMNS)}) VALUES "
                               f"({', '.join('?' for _ in REAL_COLUMNS)})", self.rows)
                tx.executemany("INSERT INTO ingest_events (job_id, source_path, outcome, reason, duplicate_of) "
                               "VALUES (?, ?, ?, ?, ?)", self.events)
            self.rows, self.events = [], []
        self.last_flush = time.monotonic()


def demo_ingest(study: Study, log: Callable[[str], None]) -> None:
    """The demo's ingest stage: the phantoms in source-phantoms/ through the ingest job; idempotent."""
    from core.jobs import control  # imported on use: loads duckdb (start-up cost)
    from core.jobs import runner  # imported on use: loads duckdb (start-up cost)
    folder = str((study.root / "source-phantoms").absolute())
    mine = [j for j in control.list_jobs(study, kind="ingest") if j["params"].get("paths") == [folder]]
    if any(j["state"] == "succeeded" for j in mine):
        return
    resumable = [j for j in mine if j["state"] in ("paused", "failed", "queued")]
    job_id = resumable[0]["id"] if resumable else runner.create_job(study, "ingest", ingest_params([folder]))
    log(f"ingesting {folder} (job {job_id})")
    record = runner.run_job(study, job_id, foreground=True, on_progress=lambda *_: None)
    if record["state"] != "succeeded":
        raise CspineError(f"demo ingest job {job_id} {record['state']}: {record['error']}")
    summary = job_summary(study, job_id)
    split = (record["result"] or {}).get("split", {})
    log(f"ingested {summary['ingested']} phantoms ({summary['duplicates']} duplicates, "
        f"{len(summary['skipped'])} skipped); split train {split.get('train', 0)} / val {split.get('val', 0)}")


def job_summary(study: Study, job_id: str) -> dict[str, Any]:
    """The result of one ingest job in the CLI's JSON shape: ingested, duplicates, skipped[{path, reason}]."""
    with study.store.connect() as tx:
        ingested = tx.scalar("SELECT count(*) FROM real_images WHERE ingest_job = ?", [job_id])
        duplicates = tx.scalar("SELECT count(*) FROM ingest_events WHERE job_id = ? AND outcome = 'duplicate'",
                               [job_id])
        skipped = tx.query("SELECT source_path AS path, reason FROM ingest_events WHERE job_id = ? "
                           "AND outcome = 'skipped' ORDER BY source_path", [job_id])
    return {"ingested": int(ingested), "duplicates": int(duplicates), "skipped": skipped}


__all__ = ["FileResult", "discover", "ingest", "job_summary", "process_file", "run"]
