"""Helpers for the hostile-input tests: mutated files, decompression bombs, a timed decoder pool, DB snapshots.

Worker functions live here (not in the test module) so that spawned processes can import them.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# ---------------------------------------------------------------------------------------------------
# Damaged copies of a valid file


def truncations(data: bytes,
                fractions: tuple[float, ...] = (0.02, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)) -> dict[str, bytes]:
    """The file cut at several points, plus cut just after the header and one byte short."""
    out = {f"trunc{int(f * 100):02d}": data[: max(1, int(len(data) * f))] for f in fractions}
    out["trunc_header"] = data[:140]
    out["trunc_minus1"] = data[:-1]
    return out


def bit_flips(data: bytes, seed: int, count: int, *, head_only: bool = False) -> bytes:
    """`count` random bytes XOR-ed with random non-zero masks (seeded); head_only keeps them in the first 512."""
    rng = np.random.default_rng(seed)
    buf = bytearray(data)
    span = min(len(buf), 512) if head_only else len(buf)
    for pos in rng.integers(0, span, size=count):
        buf[int(pos)] ^= int(rng.integers(1, 256))
    return bytes(buf)


# ---------------------------------------------------------------------------------------------------
# Decompression bombs


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def zeros_deflated(n: int, *, raw: bool = False) -> bytes:
    """zlib (or raw deflate) of n zero bytes, compressed in 1 MiB pieces (never n bytes in memory)."""
    comp = zlib.compressobj(1, zlib.DEFLATED, -15 if raw else 15)  # level 1: ~1000:1 on zeros too, faster
    block = b"\0" * (1 << 20)
    parts = []
    left = n
    while left > 0:
        take = min(left, len(block))
        parts.append(comp.compress(block[:take]))
        left -= take
    parts.append(comp.flush())
    return b"".join(parts)


def png_bomb(width: int, height: int) -> bytes:
    """A PNG of width x height zero pixels whose IDAT really holds all the rows (a true bomb, ~1000:1)."""
    rows = height * (width + 1)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zeros_deflated(rows)) + \
        _png_chunk(b"IEND", b"")


def png_text_bomb(valid_png: bytes, inflated: int = 256 << 20) -> bytes:
    """A valid PNG with a zTXt chunk that inflates to `inflated` bytes inserted after IHDR."""
    ztxt = b"Comment\0\0" + zeros_deflated(inflated)
    return valid_png[:33] + _png_chunk(b"zTXt", ztxt) + valid_png[33:]


def tiff_bomb(width: int, height: int) -> bytes:
    """A little-endian TIFF declaring width x height 8-bit pixels in one deflate strip of ~1 KB."""
    strip = zlib.compress(b"\0" * 4096)
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 8), (262, 3, 1, 1),
               (273, 4, 1, 0), (277, 3, 1, 1), (278, 4, 1, height), (279, 4, 1, len(strip))]
    ifd_offset = 8
    data_offset = ifd_offset + 2 + 12 * len(entries) + 4
    out = bytearray(b"II*\0" + struct.pack("<I", ifd_offset) + struct.pack("<H", len(entries)))
    for tag, typ, count, value in entries:
        value = data_offset if tag == 273 else value
        packed = struct.pack("<H", value) + b"\0\0" if typ == 3 else struct.pack("<I", value)
        out += struct.pack("<HHI", tag, typ, count) + packed
    out += struct.pack("<I", 0) + strip
    return bytes(out)


def jpeg_huge_header(valid_jpeg: bytes, width: int = 65500, height: int = 65500) -> bytes:
    """A valid JPEG whose SOF0/SOF2 frame header is patched to declare width x height."""
    buf = bytearray(valid_jpeg)
    pos = 2
    while pos < len(buf) - 9:
        if buf[pos] != 0xFF:
            raise ValueError("not a JPEG marker")
        marker, length = buf[pos + 1], struct.unpack(">H", buf[pos + 2:pos + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            buf[pos + 5:pos + 9] = struct.pack(">HH", height, width)
            return bytes(buf)
        pos += 2 + length
    raise ValueError("no SOF marker")


def dicom_huge_header(path: Path, rows: int = 65535, cols: int = 65535) -> None:
    """Rewrite a DICOM file to declare rows x cols pixels while keeping its small PixelData."""
    import pydicom

    ds = pydicom.dcmread(path)
    ds.Rows, ds.Columns = rows, cols
    ds.save_as(path)


def deflated_dicom_bomb(path: Path, inflated: int) -> None:
    """A Deflated Explicit VR Little Endian DICOM whose dataset inflates to about `inflated` bytes."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import DeflatedExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns, ds.SamplesPerPixel = 256, 256, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = b"\0" * (256 * 256)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    small = buf.getvalue()
    # Put a huge private OB element of zeros in front of the pixel data inside the deflated stream: rebuild
    # the stream by hand so the zeros are never held in memory here.
    meta_end = _meta_end(small)
    body = zlib.decompress(small[meta_end:], -15)
    pixel_tag = struct.pack("<HH", 0x7FE0, 0x0010)
    at = body.index(pixel_tag)
    # (0009,0010) private creator + (0009,1000) OB of zeros: explicit VR OB has a 4-byte length.
    creator = struct.pack("<HH", 0x0009, 0x0010) + b"LO" + struct.pack("<H", 8) + b"CSPINE  "
    blob_len = inflated - (inflated % 2)
    blob_head = struct.pack("<HH", 0x0009, 0x1000) + b"OB\0\0" + struct.pack("<I", blob_len)
    comp = zlib.compressobj(1, zlib.DEFLATED, -15)
    parts = [comp.compress(body[:at] + creator + blob_head)]
    block = b"\0" * (1 << 20)
    left = blob_len
    while left > 0:
        take = min(left, len(block))
        parts.append(comp.compress(block[:take]))
        left -= take
    parts.append(comp.compress(body[at:]))
    parts.append(comp.flush())
    path.write_bytes(small[:meta_end] + b"".join(parts))


def _meta_end(data: bytes) -> int:
    """Offset just after the DICOM file meta group (group 0002), explicit VR little endian."""
    pos = 132
    while pos < len(data):
        group = struct.unpack("<H", data[pos:pos + 2])[0]
        if group != 0x0002:
            return pos
        vr = data[pos + 4:pos + 6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"):
            length = struct.unpack("<I", data[pos + 8:pos + 12])[0]
            pos += 12 + length
        else:
            length = struct.unpack("<H", data[pos + 6:pos + 8])[0]
            pos += 8 + length
    return pos


# ---------------------------------------------------------------------------------------------------
# A timed, memory-measured run of the ingest's per-file function in separate processes


@dataclass
class Timed:
    path: str
    outcome: str
    reason: str | None
    seconds: float
    peak_rss_mb: float


def _peak_rss_mb() -> float:
    """This process's own peak RSS. Not getrusage's ru_maxrss: Linux carries that over exec from the forking
    parent, so a spawned worker of a big pytest process would report the parent's size."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("no VmHWM in /proc/self/status")


def _timed_process(path: str) -> Timed:
    from core.realset import ingest

    start = time.perf_counter()
    res = ingest.process_file(path, frozenset(), ingest.IngestOptions())
    seconds = time.perf_counter() - start
    return Timed(path, res.outcome, res.reason, seconds, _peak_rss_mb())


def run_each_timed(paths: list[str], *, per_file_s: float, workers: int = 2,
                   fresh_process: bool = False) -> tuple[list[Timed], list[str]]:
    """process_file on every path in spawned workers; returns (results, paths that did not finish in time).

    `fresh_process`: one process per file, so its peak RSS is that file's alone (for the bombs).
    A file is given `per_file_s` of wall clock from the moment the previous result was collected: a hang
    shows as a timeout instead of blocking the test until the global pytest timeout.
    """
    ctx = multiprocessing.get_context("spawn")
    pool = ctx.Pool(workers, maxtasksperchild=1 if fresh_process else None)
    results: list[Timed] = []
    hung: list[str] = []
    try:
        pending = [(p, pool.apply_async(_timed_process, (p,))) for p in paths]
        # Each result may wait behind the files queued before it; bound each wait by per_file_s (+ start-up).
        for path, fut in pending:
            try:
                results.append(fut.get(timeout=per_file_s + (20 if fresh_process else 0)))
            except multiprocessing.TimeoutError:
                hung.append(path)
                break
    finally:
        pool.terminate()
        pool.join()
    return results, hung


# ---------------------------------------------------------------------------------------------------
# What is stored before and after


def snapshot(study) -> dict[str, Any]:
    """Every row of the tables a hostile input could touch, and the hash of every file under images/."""
    tables = {}
    with study.store.connect() as tx:
        for table in ("real_images", "ingest_events", "splits", "rating_imports", "raw_responses", "raters",
                      "identifications", "ratings", "quartet_packs", "quartet_items", "analyses"):
            rows = tx.query(f"SELECT * FROM {table}")
            tables[table] = sorted(repr(sorted(r.items())) for r in rows)
    files = {p.relative_to(study.root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted((study.root / "images").rglob("*")) if p.is_file()}
    return {"tables": tables, "files": files}


def assert_kept(before: dict[str, Any], after: dict[str, Any]) -> None:
    """Everything stored before is still there, unchanged (new rows and files may have been added)."""
    for table, rows in before["tables"].items():
        missing = set(rows) - set(after["tables"][table])
        assert not missing, f"{table}: {len(missing)} rows changed or lost, e.g. {sorted(missing)[0][:300]}"
    for rel, sha in before["files"].items():
        assert after["files"].get(rel) == sha, f"{rel} changed or vanished"


def one_line(message: str) -> bool:
    return "\n" not in message and "\r" not in message and 0 < len(message) < 1000
