"""A folder of hostile files: every file ends ingested, a duplicate, or skipped with a one-line reason."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from core.realset import ingest
from core.jobs.runner import job_record
from tests.factories.ingest import draw_film, png_bytes, save_dicom, save_pil


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height pixels but carries almost no data (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        chunk(b"IEND", b"")


@pytest.fixture
def hostile(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """Files with the reason fragment each must be skipped with (None: must be ingested)."""
    d = tmp_path / "hostile"
    (d / "sub").mkdir(parents=True)
    expect: dict[str, str | None] = {}

    def put(name: str, data: bytes, reason: str | None) -> Path:
        (d / name).write_bytes(data)
        expect[str(d / name)] = reason
        return d / name

    good = png_bytes(draw_film(160, 128, seed=1))
    put("good.png", good, None)
    put("zero.png", b"", "empty file")
    put("truncated.png", good[: len(good) // 2], "truncated")
    put("text.png", b"this is plain text pretending to be a PNG\n" * 5, "not an image")
    put("bomb.png", png_header_only(30_000, 30_000), "too large")
    put("notes.csv", b"a,b\n1,2\n", "not an image file")
    save_pil(draw_film(40, 40, seed=2), d / "tiny.png")
    expect[str(d / "tiny.png")] = "too small"
    save_dicom(draw_film(160, 128, seed=3), d / "nopixels.dcm", pixel_data=False)
    expect[str(d / "nopixels.dcm")] = "without pixel data"
    save_dicom(draw_film(160, 128, seed=4), d / "privsyntax.dcm", transfer_syntax="1.2.3.4.5.6.7")
    expect[str(d / "privsyntax.dcm")] = "unsupported DICOM transfer syntax"
    put("garbage.dcm", b"\0" * 128 + b"DICM" + os.urandom(300), "DICOM")
    # symbolic links: a file loop, a broken link, a folder loop (only visited with --recursive)
    os.symlink(d / "loop_b", d / "loop_a")
    os.symlink(d / "loop_a", d / "loop_b")
    expect[str(d / "loop_a")] = expect[str(d / "loop_b")] = "symbolic link loop"
    os.symlink(d / "missing.png", d / "dangling.png")
    expect[str(d / "dangling.png")] = "broken symbolic link"
    os.symlink(d, d / "sub" / "back_to_top")
    expect[str(d / "sub" / "back_to_top")] = "symbolic link loop"
    os.mkfifo(d / "pipe.png")
    expect[str(d / "pipe.png")] = "not a regular file"
    # the same image twice under another name: one duplicate
    put("sub/good_copy.png", good, "duplicate")
    return d, expect


def test_hostile_folder(study, hostile):
    folder, expect = hostile
    record = ingest.ingest(study, [folder], recursive=True, workers=2)
    assert record["state"] == "succeeded", record["error"]
    summary = ingest.job_summary(study, record["id"])
    skipped = {s["path"]: s["reason"] for s in summary["skipped"]}
    ingested = set(study.store.column("SELECT source_path FROM real_images"))
    dups = set(study.store.column("SELECT source_path FROM ingest_events WHERE outcome = 'duplicate'"))
    assert summary["ingested"] == 1 and summary["duplicates"] == 1
    for path, reason in expect.items():
        if reason is None:
            assert path in ingested
        elif reason == "duplicate":
            assert path in dups
        else:
            assert path in skipped, f"{path} not reported"
            assert reason.lower() in skipped[path].lower(), (path, skipped[path])
            assert "\n" not in skipped[path] and len(skipped[path]) < 200
    # every file is accounted for exactly once
    assert len(skipped) + len(ingested) + len(dups) == len(expect)
    assert job_record(study, record["id"])["result"]["skipped"] == len(skipped)


def test_parallel_results_come_in_listing_order(tmp_path):
    """Workers finish in any order; the results are handed over in the listing's, so the first listed of two
    identical files is the original however fast each worker is. The first file here is a 2400x2400 noise
    PNG that takes its worker far longer than the six small films after it take the other."""
    rng = np.random.default_rng(3)
    paths = [str(save_pil(rng.integers(0, 256, (2400, 2400), dtype=np.uint8), tmp_path / "big.png"))]
    paths += [str(save_pil(draw_film(160, 128, seed=i), tmp_path / f"small{i}.png")) for i in range(6)]
    results = list(ingest._results(paths, set(), ingest.IngestOptions(), 2, lambda: False))
    assert [r.path for r in results] == paths
    assert all(r.outcome == "ingested" for r in results)


def test_unreadable_file_is_skipped(study, tmp_path):
    path = tmp_path / "locked.png"
    path.write_bytes(png_bytes(draw_film(160, 128, seed=5)))
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running as root: chmod 000 does not stop root from reading (covered by the next test)")
        record = ingest.ingest(study, [path], workers=0)
        (item,) = ingest.job_summary(study, record["id"])["skipped"]
        assert "permission denied" in item["reason"]
    finally:
        path.chmod(0o600)


def test_permission_error_while_reading_is_a_skip(study, tmp_path, monkeypatch):
    """The same code path as chmod 000 for a non-root user: open() raising PermissionError."""
    path = tmp_path / "locked.png"
    path.write_bytes(png_bytes(draw_film(160, 128, seed=5)))
    real_open = open

    def guarded_open(file, *args, **kwargs):
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", guarded_open)
    res = ingest.process_file(str(path), frozenset(), ingest.IngestOptions())
    assert res.outcome == "skipped" and "permission denied" in res.reason


def test_unlistable_folder_is_reported(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    real_listdir = os.listdir

    def guarded(p):
        if Path(p) == locked:
            raise PermissionError(13, "Permission denied", str(p))
        return real_listdir(p)

    monkeypatch.setattr(os, "listdir", guarded)
    files, skipped = ingest.discover([tmp_path], recursive=True)
    assert files == [] and skipped == [(str(locked), "permission denied (cannot list the folder)")]


def test_missing_path_is_reported(tmp_path):
    files, skipped = ingest.discover([tmp_path / "nope"], recursive=False)
    assert files == [] and skipped[0][1] == "no such file or folder"
