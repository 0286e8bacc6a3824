"""Hostile input (issue #9): pydicom's test corpus, damaged images, decompression bombs, fuzzed Qualtrics
exports, files naming paths outside a pack, packs edited by hand. Each gets a clear one-line error or is
handled; nothing already stored is damaged.

tests/unit/realset/test_ingest_hostile.py covers one hand-made file of each kind (empty, text, symlink loops,
a header-only PNG bomb...); tests/unit/reader_study/test_responses.py the well-formed and the plainly wrong
exports. Here the same code paths meet corpora and fuzzers.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from core.realset import ingest

from core.reader_study import responses

from core.reader_study import pack as survey
from core.errors import CspineError
from core.demo.raters import SimulatedResponse, write_qualtrics_csv
from tests.factories.ingest import draw_film, save_dicom, save_pil
from tests.factories.survey import tiny_study
from tests.reliability import hostile_helpers as hh

pytestmark = pytest.mark.slow

CKPTS = ["2000", "4000", "6000"]
PER_FILE_S = 30.0  # wall clock per file on a loaded 2-core machine; real files take < 0.5 s


# ---------------------------------------------------------------------------------------------------
# Images: a study that already holds data, and the check that every hostile file ends accounted for


@pytest.fixture
def stocked(tmp_path):
    """A study with two real images already ingested (what must survive the hostile run untouched)."""
    from core.study import Study

    study = Study.create(tmp_path / "study")
    src = tmp_path / "good"
    src.mkdir()
    save_pil(draw_film(200, 160, seed=91), src / "a.png")
    save_dicom(draw_film(200, 160, seed=92), src / "b.dcm")
    record = ingest.ingest(study, [src], workers=0)
    assert record["state"] == "succeeded" and ingest.job_summary(study, record["id"])["ingested"] == 2
    return study


def ingest_and_account(study, files: list[str]) -> dict[str, tuple[str, str | None]]:
    """Run the real ingest job on `files`; check each is ingested (a valid canonical image), a duplicate, or
    skipped with a one-line reason, and that nothing stored before changed. Returns path -> (outcome, reason)."""
    before = hh.snapshot(study)
    record = ingest.ingest(study, files, workers=2)
    assert record["state"] == "succeeded", record["error"]
    job = record["id"]
    rows = {r["source_path"]: r for r in study.store.query("SELECT * FROM real_images WHERE ingest_job = ?", [job])}
    events = {r["source_path"]: r for r in study.store.query("SELECT * FROM ingest_events WHERE job_id = ?", [job])}
    out: dict[str, tuple[str, str | None]] = {}
    for path in files:
        assert (path in rows) != (path in events), f"{path} accounted {int(path in rows) + int(path in events)} times"
        if path in rows:
            png = study.abs(rows[path]["path"])
            with Image.open(png) as im:
                im.load()
                assert im.mode == "L" and im.size == (256, 256), path
            out[path] = ("ingested", None)
        else:
            ev = events[path]
            if ev["outcome"] == "duplicate":
                assert study.store.scalar("SELECT count(*) FROM real_images WHERE id = ?", [ev["duplicate_of"]])
            else:
                assert ev["outcome"] == "skipped" and ev["reason"] and hh.one_line(ev["reason"]), ev
                assert len(ev["reason"]) < 300, ev["reason"]  # a line of the `real` listing
            out[path] = (ev["outcome"], ev["reason"])
    hh.assert_kept(before, hh.snapshot(study))
    return out


def timed_and_bounded(files: list[str], *, fresh_process: bool = False) -> list[hh.Timed]:
    results, hung = hh.run_each_timed(files, per_file_s=PER_FILE_S, fresh_process=fresh_process)
    assert not hung, f"no result within {PER_FILE_S} s for {hung[0]}"
    slow = [(r.path, round(r.seconds, 1)) for r in results if r.seconds > PER_FILE_S]
    assert not slow, slow
    return results


# ---------------------------------------------------------------------------------------------------
# 1. Every file of pydicom's test data


def pydicom_corpus() -> list[str]:
    """The test files installed with pydicom (no download: get_testdata_files lists local files only; the
    ~80 files pydicom fetches on demand from its data repository are not used)."""
    from pydicom.data import get_charset_files, get_testdata_files

    files = [f for f in get_testdata_files() + get_charset_files() if os.path.isfile(f)]
    return sorted(set(files))


def test_every_pydicom_test_file_is_ingested_or_skipped_with_a_reason(stocked, tmp_path, capsys):
    files = pydicom_corpus()
    assert len(files) > 150, "pydicom's bundled test data is missing"
    timed = timed_and_bounded(files)
    outcomes = ingest_and_account(stocked, files)
    # The job and the bare per-file function agree (the job adds nothing of its own to a file's fate).
    by_path = {t.path: t for t in timed}
    for path, (outcome, reason) in outcomes.items():
        if outcome != "duplicate":
            assert (outcome, reason) == (by_path[path].outcome, by_path[path].reason), path
    # The readers' contract: a bad file is a SkipFile with a reason, never another exception that the
    # ingest's safety net turns into "could not be read (SomeError: ...)".
    leaked = [(Path(p).name, r) for p, (o, r) in outcomes.items() if r and r.startswith("could not be read (")]
    assert not leaked, leaked
    counts: dict[str, int] = {}
    for outcome, _ in outcomes.values():
        counts[outcome] = counts.get(outcome, 0) + 1
    assert counts.get("ingested", 0) >= 10  # the plain MONOCHROME images of a usable size
    with capsys.disabled():
        reasons: dict[str, int] = {}
        for o, r in outcomes.values():
            key = (r or o).split("(")[0].split(":")[0].strip()
            reasons[key] = reasons.get(key, 0) + 1
        print(f"\npydicom corpus: {len(files)} local files: {counts}; reasons {reasons}; "
              f"slowest {max(t.seconds for t in timed):.2f} s")


# ---------------------------------------------------------------------------------------------------
# 2. Damaged images of every format


def base_images(folder: Path) -> dict[str, Path]:
    from pydicom.uid import RLELossless

    film = draw_film(200, 160, seed=7)
    out = {
        "png8": save_pil(film, folder / "base8.png"),
        "png16": save_pil(film, folder / "base16.png", mode="I;16"),
        "jpeg": save_pil(film, folder / "base.jpg", quality=90),
        "jpeg_prog": save_pil(film, folder / "base_prog.jpg", progressive=True),
        "tiff": save_pil(film, folder / "base.tif"),
        "tiff_lzw": save_pil(film, folder / "base_lzw.tif", compression="tiff_lzw"),
        "dicom": save_dicom(film, folder / "base.dcm"),
        "dicom_rle": save_dicom(film, folder / "base_rle.dcm", monochrome1=True),
    }
    import pydicom

    ds = pydicom.dcmread(out["dicom_rle"])
    ds.compress(RLELossless)
    ds.save_as(out["dicom_rle"])
    return out


def test_truncated_and_bit_flipped_images_of_every_format(stocked, tmp_path):
    src = tmp_path / "damaged"
    src.mkdir()
    (tmp_path / "bases").mkdir()
    bases = base_images(tmp_path / "bases")
    files: list[str] = []
    for kind, path in bases.items():
        data = path.read_bytes()
        variants = hh.truncations(data)
        for seed in range(4):
            variants[f"flip1_s{seed}"] = hh.bit_flips(data, seed, 1)
            variants[f"flip16_s{seed}"] = hh.bit_flips(data, 100 + seed, 16)
            variants[f"head4_s{seed}"] = hh.bit_flips(data, 200 + seed, 4, head_only=True)
        for name, blob in variants.items():
            target = src / f"{kind}_{name}{path.suffix}"
            target.write_bytes(blob)
            files.append(str(target))
    timed_and_bounded(files)
    outcomes = ingest_and_account(stocked, files)
    # A file cut in half is never silently ingested as if it were whole (PIL's LOAD_TRUNCATED_IMAGES is off;
    # DICOM pixel data of the wrong length is refused).
    for kind in bases:
        half = str(src / f"{kind}_trunc50{bases[kind].suffix}")
        assert outcomes[half][0] == "skipped", (half, outcomes[half])
    assert sum(o == "ingested" for o, _ in outcomes.values()) >= 8  # single flipped bytes often still decode


# ---------------------------------------------------------------------------------------------------
# 3. Decompression bombs


def test_decompression_bombs_are_refused_before_they_are_decoded(stocked, tmp_path):
    folder = tmp_path / "bombs"
    folder.mkdir()
    film = draw_film(200, 160, seed=8)
    good_png = (save_pil(film, tmp_path / "g.png")).read_bytes()
    good_jpg = (save_pil(film, tmp_path / "g.jpg")).read_bytes()
    bombs = {
        # 200 MP of real zero rows (a 200 KB file): over the 100 MP limit, refused from the header
        "png_200mp.png": hh.png_bomb(14_200, 14_200),
        # a text chunk inflating to 256 MB in front of a good image
        "png_ztxt.png": hh.png_text_bomb(good_png),
        "tiff_2500mp.tif": hh.tiff_bomb(50_000, 50_000),
        "jpeg_4gp.jpg": hh.jpeg_huge_header(good_jpg),
    }
    for name, blob in bombs.items():
        (folder / name).write_bytes(blob)
    save_dicom(film, folder / "dicom_4gp.dcm")
    hh.dicom_huge_header(folder / "dicom_4gp.dcm")
    hh.deflated_dicom_bomb(folder / "dicom_deflate_600mb.dcm", 600 << 20)  # limit: 4 B/px x 100 MP + 64 MiB
    files = sorted(str(p) for p in folder.iterdir())
    assert all(os.path.getsize(f) < 4_000_000 for f in files)  # small files, huge when decoded
    timed = timed_and_bounded(files)
    for t in timed:
        # A decoded bomb would need GBs; refused ones keep each worker near the interpreter's own size (the
        # peak is the worker's over all the files it took, so any bomb that got decoded shows up here).
        assert t.peak_rss_mb < 700, (Path(t.path).name, t.peak_rss_mb, t.reason)
    outcomes = ingest_and_account(stocked, files)
    for path, (outcome, reason) in outcomes.items():
        name = Path(path).name
        if name == "png_ztxt.png":
            # Pillow caps text chunks (ImageFile.SAFEBLOCK / MAX_TEXT_CHUNK): the image itself is fine.
            assert outcome == "ingested" or "large" in (reason or "").lower(), (name, reason)
        else:
            assert outcome == "skipped" and "too large" in reason, (name, reason)


# ---------------------------------------------------------------------------------------------------
# 4. Fuzzed Qualtrics exports


@pytest.fixture(scope="module")
def pack_env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    study = tiny_study(tmp, n_real=6, per_ckpt=5, reject_every=10)
    spec = survey.build_pack(study, tmp / "pack", checkpoints=CKPTS, count=2, seed=3, size=32)
    raters = [SimulatedResponse(f"R{k}", f"R_fuzzbase{k:07d}", picks={1: 1 + k % 4, 2: 1 + (k + 1) % 4},
                                ratings={(q, p): 1 + (q + p + k) % 4 for q in (1, 2) for p in range(1, 5)})
              for k in range(3)]
    current = write_qualtrics_csv(tmp / "current.csv", spec, raters).read_text(encoding="utf-8-sig")
    legacy = write_qualtrics_csv(tmp / "legacy.csv", spec, raters, legacy=True).read_text(encoding="utf-8-sig")
    return study, spec, tmp, {"current": list(csv.reader(io.StringIO(current))),
                              "legacy": list(csv.reader(io.StringIO(legacy)))}


COUNTED = ("rating_imports", "raw_responses", "raters", "identifications", "ratings")
JUNK = st.one_of(st.text(max_size=12), st.sampled_from(["", "5", "0", "-1", "E", "Image Z", "NaN", "1.5", "３",
                                                         "4 - fully", "\x00", '"', "\n", "é", "{\"ImportId\":1}"]))


@st.composite
def mutated_export(draw, bases: dict[str, list[list[str]]]) -> bytes:
    rows = [r[:] for r in bases[draw(st.sampled_from(sorted(bases)))]]
    n_header = 2 if rows[0][0] == "V1" else 3
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["drop_col", "dup_col", "rename", "swap_header", "drop_header_row",
                                   "short_row", "long_row", "junk_cell", "huge_cell", "dup_row", "swap_rows",
                                   "shuffle_cols", "empty_row", "drop_row"]))
        r = draw(st.integers(0, len(rows) - 1))
        width = max(1, len(rows[r]))
        c = draw(st.integers(0, width - 1))
        if op == "drop_col":
            rows = [row[:c] + row[c + 1:] for row in rows]
        elif op == "dup_col":
            rows = [row + [row[c]] if c < len(row) else row for row in rows]
        elif op == "rename":
            rows[0][min(c, len(rows[0]) - 1)] = draw(JUNK) if rows[0] else ""
        elif op == "swap_header" and n_header <= len(rows):
            h = draw(st.integers(0, n_header - 1))
            d = draw(st.integers(0, max(0, len(rows[h]) - 1)))
            if c < len(rows[h]) and d < len(rows[h]):
                rows[h][c], rows[h][d] = rows[h][d], rows[h][c]
        elif op == "drop_header_row" and len(rows) > 1:
            del rows[draw(st.integers(0, min(n_header, len(rows)) - 1))]
        elif op == "short_row":
            rows[r] = rows[r][:c]
        elif op == "long_row":
            rows[r] = rows[r] + [draw(JUNK) for _ in range(draw(st.integers(1, 5)))]
        elif op == "junk_cell" and c < len(rows[r]):
            rows[r][c] = draw(JUNK)
        elif op == "huge_cell" and c < len(rows[r]):
            rows[r][c] = "x" * draw(st.sampled_from([10_000, 200_000]))
        elif op == "dup_row":
            rows.insert(r, rows[r][:])
        elif op == "swap_rows":
            s = draw(st.integers(0, len(rows) - 1))
            rows[r], rows[s] = rows[s], rows[r]
        elif op == "shuffle_cols":
            order = draw(st.permutations(range(len(rows[0]))))
            rows = [[row[i] for i in order if i < len(row)] for row in rows]
        elif op == "empty_row":
            rows.insert(r, [])
        elif op == "drop_row" and len(rows) > 1:
            del rows[r]
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=draw(st.sampled_from([",", ",", ";", "\t"])),
                        quoting=draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC])),
                        lineterminator=draw(st.sampled_from(["\r\n", "\n", "\r"])))
    writer.writerows(rows)
    text = buf.getvalue()
    if draw(st.booleans()):  # a stray quote or a NUL somewhere in the text
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(['"', "\x00", "\ufeff", ",", "\n"])) + text[at:]
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252", "utf-32"]))
    data = text.encode(encoding, errors="replace")
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]  # cut anywhere, even inside a character
    return data


def _counts(study) -> dict[str, int]:
    with study.store.connect() as tx:
        return {t: int(tx.scalar(f"SELECT count(*) FROM {t}")) for t in COUNTED}


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(data=st.data())
def test_fuzzed_qualtrics_exports_import_whole_or_not_at_all(pack_env, data):
    study, spec, tmp, bases = pack_env
    blob = data.draw(mutated_export(bases))
    path = tmp / f"fuzz-{hashlib.sha256(blob).hexdigest()[:16]}.csv"
    path.write_bytes(blob)
    before = _counts(study)
    try:
        summary = responses.import_ratings(study, path, spec.pack_id)
    except CspineError as exc:
        assert hh.one_line(str(exc)), repr(str(exc))
        assert _counts(study) == before, "a refused import stored rows"
        return
    after = _counts(study)
    if "already_imported_as" in summary:
        assert after == before
        return
    # A successful import stores the whole file: its rows verbatim, one rater per used response.
    assert after["rating_imports"] == before["rating_imports"] + 1
    n_header = 2 if summary["format"].endswith("legacy-2-header") else 3
    assert after["raw_responses"] - before["raw_responses"] == summary["responses"] + n_header
    assert after["raters"] - before["raters"] == summary["used"]
    assert after["ratings"] - before["ratings"] <= 8 * summary["used"]
    again = responses.import_ratings(study, path, spec.pack_id)  # and consistently: the same file twice
    assert again["already_imported_as"] == summary["import_id"] and _counts(study) == after


def test_export_with_a_field_over_the_csv_limit_is_a_clear_error(pack_env):
    """Regression: csv.Error ("field larger than field limit") escaped as a non-CspineError."""
    study, spec, tmp, bases = pack_env
    rows = [r[:] for r in bases["current"]]
    rows[3][0] = "x" * 200_000
    path = tmp / "huge-field.csv"
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    before = _counts(study)
    with pytest.raises(CspineError, match="not a readable CSV"):
        responses.import_ratings(study, path, spec.pack_id)
    assert _counts(study) == before


def test_bad_value_under_a_header_shorter_than_its_import_ids_is_a_clear_error(pack_env):
    """Regression: row 1 shorter than row 3 made the error message itself raise IndexError."""
    study, spec, tmp, bases = pack_env
    rows = [r[:] for r in bases["current"]]
    col = rows[0].index("Q01_rate_2")
    rows[0] = rows[0][:col]
    rows[3][col] = "zz"
    path = tmp / "short-header.csv"
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    with pytest.raises(CspineError, match=r"column QID4_2: 'zz' is not a rating"):
        responses.import_ratings(study, path, spec.pack_id)


# ---------------------------------------------------------------------------------------------------
# 5. Packs edited by hand, and files naming paths outside the pack


def _rewrite_csv(path: Path, edit) -> None:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    rows = edit(rows)
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data, indent=1))


def _swap_real(data: dict) -> None:
    """Move the 'real' label of quartet 1 to another position (the key a cheater would want)."""
    q1 = [i for i in data["items"] if i["quartet"] == 1]
    real = next(i for i in q1 if i["source"] == "real")
    other = next(i for i in q1 if i["source"] != "real")
    for key in ("image_kind", "source", "image_id"):
        real[key], other[key] = other[key], real[key]


def _first_image(pack: Path) -> Path:
    return sorted((pack / "upload" / "images").iterdir())[0]


def _symlink_out(pack: Path) -> None:
    img = _first_image(pack)
    outside = pack.parent / f"outside-{pack.name}.png"
    outside.write_bytes(img.read_bytes())  # identical bytes: only the link itself gives it away
    img.unlink()
    img.symlink_to(outside)


TAMPERS = {
    "answer_key rows reordered": lambda p: _rewrite_csv(p / "answer_key.csv", lambda r: [r[0]] + r[1:][::-1]),
    "answer_key row deleted": lambda p: _rewrite_csv(p / "answer_key.csv", lambda r: r[:-1]),
    "answer_key source changed": lambda p: _rewrite_csv(
        p / "answer_key.csv", lambda r: [r[0]] + [[*row[:3], "real", *row[4:]] for row in r[1:]]),
    "pack.json key changed": lambda p: _edit_json(p / "pack.json", _swap_real),
    "image replaced": lambda p: _first_image(p).write_bytes(sorted((p / "upload" / "images").iterdir())[1]
                                                            .read_bytes()),
    "image removed": lambda p: _first_image(p).unlink(),
    "image added": lambda p: shutil.copy(_first_image(p), p / "upload" / "images" / "0000000000000000.png"),
    "image is a symlink out of the pack": _symlink_out,
    "survey.qsf edited": lambda p: _edit_json(p / "upload" / "survey.qsf",
                                              lambda d: d["SurveyElements"].reverse()),
    "survey.txt edited": lambda p: (p / "upload" / "survey.txt").write_text(
        (p / "upload" / "survey.txt").read_text() + "\n[[Question:DB]]\nOne more page\n"),
}
OUTSIDE = {  # a manifest naming images outside the pack
    "../ path": lambda d: d["items"][0].update(image_file="../../../outside.png"),
    "absolute path": lambda d: d["items"][0].update(image_file="/etc/passwd"),
    "sub-folder path": lambda d: d["items"][0].update(image_file="sub/x.png"),
    "image_urls key outside": lambda d: d.update(image_urls={"../x.png": "https://example.org/x.png"}),
}


@pytest.fixture
def exported(tmp_path):
    study = tiny_study(tmp_path, n_real=6, per_ckpt=5, reject_every=10)
    spec = survey.build_pack(study, tmp_path / "pack", checkpoints=CKPTS, count=2, seed=3, size=32)
    raters = [SimulatedResponse(f"R{k}", f"R_tamper{k:09d}", picks={1: 1 + k, 2: 2},
                                ratings={(q, p): 1 + (q * p + k) % 4 for q in (1, 2) for p in range(1, 5)})
              for k in range(3)]
    export = write_qualtrics_csv(tmp_path / "export.csv", spec, raters)
    return study, spec, tmp_path, export


def test_a_pack_edited_by_hand_is_refused_by_import_and_analysis(exported):
    from core.reader_study.analysis import analyze

    study, spec, tmp, export = exported
    pack = tmp / "pack"
    # Control: a survey-urls rewrite is a legitimate edit; the pack then imports and analyses.
    survey.set_image_urls(study, pack, base_url="https://images.example.org/pack/")
    pristine = tmp / "pristine"
    shutil.copytree(pack, pristine, symlinks=True)
    assert responses.import_ratings(study, export, pack)["used"] == 3
    analyze(study, pack, report_dir=tmp / "report-ok")
    second = write_qualtrics_csv(tmp / "second.csv", spec, [SimulatedResponse("R9", "R_tamper999999999",
                                                                              picks={1: 1, 2: 1})])
    refused = []
    for name, tamper in {**TAMPERS, **{f"pack.json {k}": (lambda e: lambda p: _edit_json(p / "pack.json", e))(e)
                                       for k, e in OUTSIDE.items()}}.items():
        shutil.rmtree(pack)
        shutil.copytree(pristine, pack, symlinks=True)
        tamper(pack)
        before = hh.snapshot(study)
        actions = {"import (pack folder)": lambda: responses.import_ratings(study, second, pack),
                   "analyze": lambda: analyze(study, spec.pack_id, report_dir=tmp / f"report-{len(refused)}"),
                   "survey-urls": lambda: survey.set_image_urls(study, pack, base_url="https://other.example.org/")}
        for what, action in actions.items():
            try:
                action()
            except CspineError as exc:
                message = str(exc)
            else:
                pytest.fail(f"{what} accepted a pack with {name}")
            assert hh.one_line(message), (name, message)
            assert "edited after export" in message or "not a plain file name" in message, (name, message)
            refused.append(name)
        hh.assert_kept(before, hh.snapshot(study))
        assert hh.snapshot(study) == before, name  # nothing added either
    assert len(refused) == 3 * (len(TAMPERS) + len(OUTSIDE))
    # By pack id (the folder recorded at export) as well as by folder.
    with pytest.raises(CspineError, match="edited after export|not a plain file name"):
        responses.import_ratings(study, second, spec.pack_id)


def test_an_image_url_csv_naming_files_outside_the_pack_is_refused(exported):
    study, spec, tmp, _ = exported
    pack = tmp / "pack"
    before = {p: p.read_bytes() for p in pack.rglob("*") if p.is_file()}
    for bad in ("../pack.json", "/etc/passwd", "upload/images/../../answer_key.csv",
                f"../{_first_image(pack).name}"):
        url_csv = tmp / "urls.csv"
        url_csv.write_text(f"image_file,url\n{bad},https://example.org/x.png\n")
        with pytest.raises(CspineError, match="is not an image of this pack"):
            survey.set_image_urls(study, pack, url_csv=url_csv)
    assert {p: p.read_bytes() for p in pack.rglob("*") if p.is_file()} == before


def test_other_csv_inputs_with_a_huge_field_or_another_encoding_are_clear_errors(exported):
    """Regression: `reviews --import` and `survey-urls --image-urls` let csv.Error / UnicodeDecodeError out."""
    from core.screening import csv_io

    study, spec, tmp, _ = exported
    before = hh.snapshot(study)
    reviews = tmp / "decisions.csv"
    reviews.write_text("image_id,reviewer,decision,note\nrun0-0,bob,accept," + "x" * 200_000 + "\n")
    with pytest.raises(CspineError, match="not a readable CSV") as info:
        csv_io.import_reviews(study, reviews)
    assert hh.one_line(str(info.value))
    urls = tmp / "urls.csv"
    for blob in (f"image_file,url\n{spec.items[0].image_file},https://x.org/{'y' * 200_000}\n".encode(),
                 f"image_file,url\n{spec.items[0].image_file},https://x.org/".encode() + b"\xe9\n"):
        urls.write_bytes(blob)
        with pytest.raises(CspineError, match="cannot read") as info:
            survey.set_image_urls(study, tmp / "pack", url_csv=urls)
        assert hh.one_line(str(info.value))
    assert hh.snapshot(study) == before
