"""Ingest as a job: canonical files, provenance, duplicates and idempotence, resume, split, overrides, privacy."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.realset import ingest

from core.jobs import control

from core.jobs import runner

from core.realset import catalog
from core.errors import CspineError
from tests.factories.ingest import draw_film, save_dicom, save_pil
from tests.factories.waiting import HANG_S
def phantom_folder(folder: Path, n: int = 8, height: int = 320) -> list[dict]:
    """Small phantoms: polarity and facing crossed, 8/16-bit, PNG/TIFF/JPEG."""
    from core.demo import phantom
    from core.demo import phantom_files

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    fmts = ("png", "tiff", "jpeg", "png")
    for i in range(n):
        fmt = fmts[i % 4]
        p = phantom.PhantomParams.random(3_000_000 + i, height=height, negative=bool(i % 2),
                                         facing="right" if (i // 2) % 2 else "left", format=fmt,
                                         bit_depth=8 if fmt == "jpeg" else (16 if i % 3 else 8))
        path = phantom_files.write_phantom(p, folder / f"ph{i}")
        rows.append({"path": str(path), "negative": p.negative, "facing": p.facing})
    return rows


def test_ingest_job_writes_canonical_pngs_with_provenance(study, tmp_path):
    truth = phantom_folder(tmp_path / "src")
    record = ingest.ingest(study, [tmp_path / "src"], workers=2)
    assert record["state"] == "succeeded" and record["kind"] == "ingest"
    rows = {r["source_path"]: r for r in study.store.query("SELECT * FROM real_images")}
    assert len(rows) == len(truth)
    for t in truth:
        row = rows[t["path"]]
        assert row["id"] == hashlib.sha256(Path(t["path"]).read_bytes()).hexdigest()
        png = study.abs(row["path"])
        assert png.parent == study.real_dir and not Path(row["path"]).is_absolute()
        assert png.name == f"{row['canonical_sha256']}.png"
        assert hashlib.sha256(png.read_bytes()).hexdigest() == row["canonical_sha256"]
        with Image.open(png) as im:
            assert im.mode == "L" and im.size == (256, 256)
        assert row["inverted"] == t["negative"], t
        assert row["flipped"] == (t["facing"] == "right"), t
        assert row["polarity_source"] == "detector" and row["orientation_source"] == "detector"
        assert 0.5 <= row["polarity_confidence"] <= 1 and 0.5 <= row["orientation_confidence"] <= 1
        assert row["resize_mode"] == "stretch" and row["ingest_job"] == record["id"]
        assert row["orig_height"] == 320 and row["bit_depth"] in (8, 16)
    assert not list(study.real_dir.glob(".*.tmp"))
    assert study.get("ingest", "resize") == "stretch"


def test_duplicates_and_rerun_add_nothing(study, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        save_pil(draw_film(160, 128, seed=i), src / f"f{i}.png")
    (src / "copy.png").write_bytes((src / "f0.png").read_bytes())
    first = ingest.job_summary(study, ingest.ingest(study, [src], workers=0)["id"])
    assert (first["ingested"], first["duplicates"], first["skipped"]) == (3, 1, [])
    files_before = sorted(p.name for p in study.real_dir.iterdir())
    second = ingest.job_summary(study, ingest.ingest(study, [src], workers=0)["id"])
    assert (second["ingested"], second["duplicates"]) == (0, 4)
    assert study.store.scalar("SELECT count(*) FROM real_images") == 3
    assert sorted(p.name for p in study.real_dir.iterdir()) == files_before
    assert study.store.scalar("SELECT count(*) FROM splits") == 3


def test_paused_job_resumes_where_it_stopped(study, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(5):
        save_pil(draw_film(160, 128, seed=10 + i), src / f"f{i}.png")
    (src / "bad.png").write_bytes(b"junk")
    params = {**ingest.ingest_params([src], workers=0), "time_limit_s": 1e-9}
    job_id = runner.create_job(study, "ingest", params)
    record = runner.run_job(study, job_id)
    assert record["state"] == "paused"
    done = study.store.scalar("SELECT count(*) FROM real_images") + \
        study.store.scalar("SELECT count(*) FROM ingest_events")
    assert 1 <= done < 6
    study.store.execute("UPDATE jobs SET params = ? WHERE id = ?",
                        [json.dumps({**params, "time_limit_s": None}), job_id])
    record = runner.run_job(study, job_id)
    assert record["state"] == "succeeded"
    summary = ingest.job_summary(study, job_id)
    assert summary["ingested"] == 5 and summary["duplicates"] == 0 and len(summary["skipped"]) == 1
    assert record["result"]["files"] == 6


def test_resize_mode_is_recorded_and_not_mixed(study, tmp_path):
    save_pil(draw_film(200, 140, seed=1), tmp_path / "a.png")
    save_pil(draw_film(200, 140, seed=2), tmp_path / "b.png")
    ingest.ingest(study, [tmp_path / "a.png"], resize="pad", workers=0)
    assert study.get("ingest", "resize") == "pad"
    row = study.store.query_one("SELECT * FROM real_images")
    with Image.open(study.abs(row["path"])) as im:
        arr = np.asarray(im)
    assert arr[:, :30].max() == 0 and arr[:, -30:].max() == 0   # 140x200 padded into 256x256
    record = ingest.ingest(study, [tmp_path / "b.png"], resize="stretch", workers=0)
    assert record["state"] == "failed" and "resized with pad" in record["error"]


# ---------------------------------------------------------------------------------------------------
# Split


def test_split_is_85_15_seeded_and_explicit(study):
    ids = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(4963)]
    a = catalog.draw_split(ids, 7, 0.15)
    assert sum(v == "val" for v in a.values()) == 744 and len(a) == 4963
    assert a == catalog.draw_split(list(reversed(ids)), 7, 0.15)   # independent of order
    assert a != catalog.draw_split(ids, 8, 0.15)


def test_split_extends_for_new_images_and_redraw_is_explicit(study, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(20):
        save_pil(draw_film(130, 128, seed=100 + i), src / f"f{i:02d}.png")
    ingest.ingest(study, sorted(src.iterdir())[:14], split_seed=5, workers=0)
    first = {r["image_id"]: r["split"] for r in study.store.query("SELECT * FROM splits")}
    assert len(first) == 14 and sum(s == "val" for s in first.values()) == 2 and study.get("ingest", "split_seed") == 5
    ingest.ingest(study, sorted(src.iterdir())[14:], workers=0)
    after = {r["image_id"]: r["split"] for r in study.store.query("SELECT * FROM splits")}
    assert len(after) == 20 and all(after[i] == s for i, s in first.items())   # never moved by a side effect
    assert sum(s == "val" for s in after.values()) == 3                         # round(20 * 0.15)
    bad = ingest.ingest(study, [src / "f00.png"], split_seed=6, workers=0)
    assert bad["state"] == "failed" and "cspine-tui split" in bad["error"]
    redrawn = catalog.redraw_split(study, 6)
    assert redrawn["val"] == 3 and redrawn["train"] == 17 and study.get("ingest", "split_seed") == 6
    assert set(study.store.column("SELECT DISTINCT seed FROM splits")) == {6}


# ---------------------------------------------------------------------------------------------------
# Overrides


def test_override_rewrites_canonical_and_records_it(study, tmp_path):
    save_pil(draw_film(160, 128, seed=1), tmp_path / "a.png")
    ingest.ingest(study, [tmp_path / "a.png"], workers=0)
    row = study.store.query_one("SELECT * FROM real_images")
    with Image.open(study.abs(row["path"])) as im:
        before = np.asarray(im).astype(int)
    new = catalog.override(study, row["id"][:10], inverted=not row["inverted"], flipped=not row["flipped"])
    assert new["polarity_source"] == new["orientation_source"] == "override"
    assert new["path"] != row["path"] and not study.abs(row["path"]).exists()
    stored = study.store.query_one("SELECT * FROM real_images")
    assert stored["inverted"] != row["inverted"] and stored["flipped"] != row["flipped"] and not stored["flagged"]
    with Image.open(study.abs(stored["path"])) as im:
        after = np.asarray(im).astype(int)
    assert np.array_equal(after, 255 - before[:, ::-1])
    with pytest.raises(CspineError, match="no real image"):
        catalog.override(study, "ffffnotthere", inverted=True)


# ---------------------------------------------------------------------------------------------------
# Privacy

SECRETS = ["Secretname", "PID-ZX81-4471", "19610417", "Hospital Of Hidden", "ACC99887766",
           "999111222333", "Who^Doctor", "20230102"]


def test_dicom_identifying_fields_leave_no_trace(study, tmp_path):
    src = tmp_path / "dicom"
    src.mkdir()
    save_dicom(draw_film(160, 128, seed=1), src / "scan1.dcm", monochrome1=True)
    save_dicom(draw_film(170, 128, seed=2), src / "scan2.dcm")
    raw = (src / "scan1.dcm").read_bytes()
    assert all(s.encode() in raw for s in SECRETS if s != "20230102")   # the fixture really carries them
    record = ingest.ingest(study, [src], workers=2)
    assert record["state"] == "succeeded"
    rows = study.store.query("SELECT * FROM real_images ORDER BY source_path")
    assert [r["photometric"] for r in rows] == ["MONOCHROME1", "MONOCHROME2"]
    assert rows[0]["inverted"] and rows[0]["polarity_source"] == "dicom-tag" and rows[0]["modality"] == "DX"
    assert rows[0]["transfer_syntax"] == "1.2.840.10008.1.2.1"
    leaks = []
    for path in study.root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            leaks += [f"{path}: {s}" for s in SECRETS if s.encode() in data or s.encode("utf-16-le") in data]
    assert not leaks


# ---------------------------------------------------------------------------------------------------
# CLI


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run `cspine-tui ARGS` in this process; returns (exit code, stdout, stderr)."""
    from cspine_tui.cli.main import main

    capsys.readouterr()
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_ingest_json_split_and_real(study, tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        save_pil(draw_film(160, 128, seed=i), src / f"f{i}.png")
    (src / "empty.png").write_bytes(b"")
    code, out, err = cli(capsys, "ingest", "--study", str(study.root), "--json", "--workers", "0", str(src))
    assert code == 0, err
    data = json.loads(out)  # one document, the job's id in it
    assert data["job"].startswith("ingest-")
    assert set(data) == {"job", "state", "ingested", "duplicates", "skipped"}
    assert data["ingested"] == 4 and data["duplicates"] == 0
    assert data["skipped"] == [{"path": str(src / "empty.png"), "reason": "empty file (0 bytes)"}]
    code, out, _ = cli(capsys, "split", "--study", str(study.root), "--seed", "3", "--val-fraction", "0.25",
                       "--json")
    assert code == 0 and json.loads(out)["val"] == 1
    code, out, _ = cli(capsys, "real", "--study", str(study.root), "--json")
    summary = json.loads(out)
    assert summary["total"] == 4 and summary["splits"] == {"train": 3, "val": 1}
    assert summary["skipped"][0]["reason"] == "empty file (0 bytes)"
    code, _, err = cli(capsys, "override", "--study", str(study.root), "nothere", "--flip")
    assert code == 2 and err.startswith("error: no real image")


def test_demo_stage_ingests_the_phantoms_once(study):
    from core.demo import phantom_files

    labels = phantom_files.generate(study.root / "source-phantoms", 6, 11, negative_fraction=0.5,
                                    right_fraction=0.5, formats=("png", "dicom", "jpeg"), bit_depths=(8, 16),
                                    size_range=(300, 400))
    messages: list[str] = []
    ingest.demo_ingest(study, messages.append)
    ingest.demo_ingest(study, messages.append)                   # idempotent: nothing new, no second job
    assert len(control.list_jobs(study, kind="ingest")) == 1
    rows = {Path(r["source_path"]).name: r for r in study.store.query("SELECT * FROM real_images")}
    assert len(rows) == 6 and study.store.scalar("SELECT count(*) FROM splits") == 6
    for label in labels:
        row = rows[label["file"]]
        assert row["inverted"] == label["negative"], label
        assert row["flipped"] == (label["facing"] == "right"), label
        if label["format"] == "dicom":
            assert row["polarity_source"] == "dicom-tag" and row["source_format"] == "dicom"
    assert any("ingested 6 phantoms" in m for m in messages)


@pytest.mark.slow
def test_sigterm_to_the_process_group_pauses_a_detached_ingest_and_resume_finishes(study, tmp_path):
    """A cancel or a scheduler's signal reaches the workers too: they ignore it, the job pauses cleanly."""
    import os
    import signal
    import time

    src = tmp_path / "src"
    src.mkdir()
    for i in range(120):
        save_pil(draw_film(900, 700, seed=i), src / f"f{i:03d}.png", mode="I;16")
    job_id = runner.create_job(study, "ingest", ingest.ingest_params([src], workers=2))
    pid = runner.start_detached(study, job_id)
    deadline = time.monotonic() + HANG_S
    while (control.job_status(study, job_id).get("done") or 0) < 5:
        assert time.monotonic() < deadline, "the job made no progress"
        time.sleep(0.02)
    os.killpg(pid, signal.SIGTERM)
    record = control.wait_for(study, job_id, timeout=120)
    assert record["state"] == "paused", record["error"]
    done = study.store.scalar("SELECT count(*) FROM real_images")
    assert 5 <= done < 120
    record = runner.run_job(study, job_id)
    assert record["state"] == "succeeded"
    assert ingest.job_summary(study, job_id)["ingested"] == 120
    assert study.store.scalar("SELECT count(*) FROM ingest_events") == 0
