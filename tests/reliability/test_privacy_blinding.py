"""Privacy and blinding (issue #9).

(a) DICOM identifying fields planted in phantom files never reach the study or its exports: every file, read
    as bytes (UTF-8 and UTF-16), and every value of every table of the database (DuckDB compresses strings on
    disk, so a byte grep of study.duckdb alone could miss one).
(b) A pack's images carry no metadata, and nothing at the file level (name, position, listing order, time,
    normalised size, PNG chunks, zlib settings) tells the real image of a quartet: predictors stay at chance,
    while the same predictors find the real image in deliberately leaky packs (so the test can fail).
(c) Study folders and everything the CLI writes (exports included) are readable by their owner only.
    Decision: exports are owner-only too (a pack holds answer_key.csv; a release or report is shared by an
    explicit copy or chmod, never by default on a multi-user server).
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest
from PIL import Image
from scipy.stats import binom

from core.demo import phantom_files

from core.screening import decisions

from core.reader_study import pack as survey
from core.demo.raters import simulate_raters, write_qualtrics_csv
from tests.factories.screening import add_run
from tests.factories.survey import tiny_study
from tests.reliability import blinding_helpers as bh

pytestmark = pytest.mark.slow

IDENTIFYING = ("PatientName", "PatientID", "PatientBirthDate", "OtherPatientIDs", "AccessionNumber",
               "InstitutionName", "InstitutionAddress", "ReferringPhysicianName", "OperatorsName", "StationName",
               "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID", "StudyID")


def cli(*args: str | Path) -> None:
    """`cspine-tui ARGS` in this process, started as from a login shell with the usual umask 022."""
    from cspine_tui.cli.main import main

    os.umask(0o022)
    code = main([str(a) for a in args])
    assert code == 0, args


def planted_values(folder: Path) -> set[str]:
    """The identifying values the phantom DICOM files carry (and their name parts, as a report might print)."""
    import pydicom

    values: set[str] = set()
    for path in folder.glob("*.dcm"):
        ds = pydicom.dcmread(path)
        for keyword in IDENTIFYING:
            if keyword in ds:
                text = str(ds.data_element(keyword).value).strip()
                values.add(text)
                values.update(part for part in text.replace("^", " ").split() if len(part) >= 6)
    # Generic words, not identifiers: StudyID "PHANTOM" (the tool's own texts say "phantom" anyway), and the
    # "General" of "Phantom General Hospital", which the rater questionnaire's "General radiology" contains.
    values -= {"PHANTOM", "General"}
    assert len(values) >= 20
    return values


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """A study run through the CLI from phantom DICOMs to every export; returns paths and planted values."""
    tmp = tmp_path_factory.mktemp("privacy")
    old_umask = os.umask(0o022)
    try:
        source = tmp / "pacs-export"
        phantom_files.generate(source, 6, 4242, formats=("dicom",), bit_depths=(16,), size_range=(300, 360))
        secrets = planted_values(source)
        study_dir, shared = tmp / "study", tmp / "shared"
        cli("init", study_dir)
        cli("ingest", "--study", study_dir, "--workers", "0", source)
        from core.study import Study

        study = Study.open(study_dir)
        os.umask(0o077)  # sampling runs as a job process, which writes under umask 077 (core/jobs/runner.py main)
        ids = [i for step in (1000, 2000, 3000) for i in add_run(study, f"ck{step}", step, 5, size=64, seed0=step)]
        decisions.decide_many(study, [(i, "accept", None, None) for i in ids], "alice")
        cli("reviews", "--study", study_dir, "--export", shared / "reviews.csv")
        cli("quartets", "--study", study_dir, "--checkpoints", "1000", "2000", "3000", "--count", "4", "--seed", "1",
            "--size", "64", "--out", shared / "pack")
        spec = survey.read_pack_dir(shared / "pack")
        write_qualtrics_csv(tmp / "responses.csv", spec, simulate_raters(spec, 3, seed=1))
        cli("import-ratings", "--study", study_dir, "--pack", shared / "pack", tmp / "responses.csv")
        cli("analyze", "--study", study_dir, "--pack", shared / "pack", "--report", shared / "report")
        cli("release", "--study", study_dir, "--out", shared / "release")
        cli("quartets", "--study", study_dir, "--checkpoints", "1000", "2000", "3000", "--count", "3", "--seed", "2",
            "--size", "64")  # default --out: inside the study's exports/
    finally:
        os.umask(old_umask)
    return {"study": study_dir, "shared": shared, "secrets": secrets, "source": source}


def _encodings(value: str) -> list[bytes]:
    return [value.encode(), value.encode("utf-16-le"), value.encode("utf-16-be")]


def test_no_identifying_dicom_field_anywhere_in_the_study_or_its_exports(pipeline):
    secrets = pipeline["secrets"]
    # The planted values really are in the sources (the check below could not pass by reading wrong files).
    source_bytes = b"".join(p.read_bytes() for p in pipeline["source"].glob("*.dcm"))
    assert all(any(e in source_bytes for e in _encodings(s)) for s in secrets)
    files = [p for root in (pipeline["study"], pipeline["shared"]) for p in root.rglob("*") if p.is_file()]
    assert any(p.name == "study.duckdb" for p in files) and any(p.suffix == ".png" for p in files)
    assert {"answer_key.csv", "manifest.csv", "reviews.csv", "log.txt", "survey.qsf"} <= {p.name for p in files}
    needles = [(s, e) for s in sorted(secrets) for e in _encodings(s)]
    leaks = []
    for p in files:
        data = p.read_bytes()
        leaks += [f"{p}: {s!r}" for s, e in needles if e in data]
    assert not leaks, leaks[:5]
    # Every value of every table, as text.
    from core.study import Study

    study = Study.open(pipeline["study"])
    with study.store.connect() as tx:
        tables = tx.column("SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'")
        db_leaks = []
        for table in tables:
            cols = tx.column("SELECT column_name FROM information_schema.columns WHERE table_name = ?", [table])
            casts = ", ".join(f'CAST("{c}" AS VARCHAR)' for c in cols)
            for row in tx.query(f"SELECT {casts} FROM {table}"):
                text = " ".join(str(v) for v in row.values() if v is not None)
                db_leaks += [f"{table}: {s!r}" for s in secrets if s in text]
    assert len(tables) > 10 and not db_leaks, db_leaks[:5]


def test_study_and_cli_exports_are_owner_only(pipeline):
    """umask 022 in the calling shell, yet no file or folder the study or the CLI wrote is open to others."""
    roots = [pipeline["study"], pipeline["shared"]]
    assert stat.S_IMODE(pipeline["study"].stat().st_mode) == 0o700
    opened = []
    for root in roots:
        for p in [root, *root.rglob("*")]:
            if p == pipeline["shared"]:
                continue  # made by the test itself (the parent the user chose), not by the tool
            mode = stat.S_IMODE(p.lstat().st_mode)
            if mode & 0o077:
                opened.append(f"{p.relative_to(root.parent)} {oct(mode)}")
    assert not opened, opened[:10]
    assert (pipeline["shared"] / "pack" / "answer_key.csv").exists()


def test_study_create_is_owner_only_under_any_umask(tmp_path):
    from core.study import Study

    old = os.umask(0o000)
    try:
        study = Study.create(tmp_path / "s")
    finally:
        os.umask(old)
    for p in [study.root, *study.root.rglob("*")]:
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode & 0o077 == 0, (p, oct(mode))


# ---------------------------------------------------------------------------------------------------
# (b) blinding


@pytest.fixture(scope="module")
def pack50(tmp_path_factory):
    """50 quartets from a study whose real and synthetic sources differ in every file-level way: real PNGs
    carry a text chunk and are RGB or 8-bit, synthetic ones 8- or 16-bit (tests/factories/survey.py)."""
    tmp = tmp_path_factory.mktemp("blind")
    study = tiny_study(tmp, n_real=50, per_ckpt=50, reject_every=1000)
    spec = survey.build_pack(study, tmp / "pack", checkpoints=["2000", "4000", "6000"], count=50, seed=11,
                             size=64)
    items = [{"quartet": i.quartet, "position": i.position, "image_file": i.image_file, "source": i.source}
             for i in spec.items]
    return tmp / "pack", items


def chance_bound(n_quartets: int, n_predictors: int, alpha: float = 1e-3) -> int:
    """The most correct quartets a chance predictor reaches with probability >= 1 - alpha, Bonferroni over all
    predictors tried (so the test is not flaky: a fair pack fails it with probability < alpha)."""
    return int(binom.isf(alpha / n_predictors, n_quartets, 0.25))


def all_accuracies(pack: Path, items: list[dict]) -> dict[str, int]:
    rows = bh.extract(pack, items)
    return {**bh.rule_accuracies(rows), **bh.loo_accuracies(rows)}


def test_pack_images_carry_no_metadata(pack50):
    pack, items = pack50
    images = sorted((pack / "upload" / "images").iterdir())
    assert len(images) == 200
    assert len({p.stat().st_mtime for p in images}) == 1
    for p in images:
        data = p.read_bytes()
        kinds = [k for k, _ in bh.chunks(data)]
        assert kinds[0] == "IHDR" and kinds[-1] == "IEND" and set(kinds) == {"IHDR", "IDAT", "IEND"}, kinds
        with Image.open(p) as im:
            assert (im.mode, im.size, im.info) == ("L", (64, 64), {}), p.name
        assert data[24:26] == bytes([8, 0])  # bit depth 8, grayscale
        assert len(data) == bh.reencoded_size(p)  # re-encoded identically: the size ratio is exactly 1


def test_no_file_level_feature_predicts_the_real_image(pack50, capsys):
    pack, items = pack50
    acc = all_accuracies(pack, items)
    bound = chance_bound(50, len(acc))
    best = max(acc, key=acc.get)
    with capsys.disabled():
        print(f"\nblinding: {len(acc)} predictors, best {best} {acc[best]}/50 (chance 12.5, bound {bound}); "
              f"logistic regression {acc['logistic_regression']}/50, nearest centroid {acc['nearest_centroid']}/50")
    assert all(v <= bound for v in acc.values()), {k: v for k, v in acc.items() if v > bound}


def _leaky_copy(pack: Path, items: list[dict], dest: Path, leak: str) -> list[dict]:
    shutil.copytree(pack, dest)
    images = dest / "upload" / "images"
    items = [dict(i) for i in items]
    stamp = (images / items[0]["image_file"]).stat().st_mtime
    for item in items:
        if item["source"] != "real":
            continue
        path = images / item["image_file"]
        if leak == "compression":   # real images re-saved at another zlib level
            with Image.open(path) as im:
                im.load()
                im.save(path, format="PNG", compress_level=9)
            os.utime(path, (stamp, stamp))
        elif leak == "name":        # real images named in a pattern of their own
            new = "0" + item["image_file"][1:]
            path.rename(images / new)
            item["image_file"] = new
        elif leak == "metadata":    # a text chunk left on the real images
            from PIL.PngImagePlugin import PngInfo

            info = PngInfo()
            info.add_text("Software", "scanner")
            with Image.open(path) as im:
                im.load()
                im.save(path, format="PNG", compress_level=survey.PNG_COMPRESS_LEVEL, pnginfo=info)
            os.utime(path, (stamp, stamp))
        elif leak == "mtime":       # written a second later than the synthetic ones
            os.utime(path, (stamp + 1, stamp + 1))
    return items


@pytest.mark.parametrize("leak", ["compression", "name", "metadata", "mtime"])
def test_the_predictors_find_the_real_image_in_a_leaky_pack(pack50, tmp_path, leak):
    """The control: the same features and predictors catch each kind of leak, so the chance test can fail."""
    pack, items = pack50
    leaky = _leaky_copy(pack, items, tmp_path / "leaky", leak)
    acc = all_accuracies(tmp_path / "leaky", leaky)
    assert max(acc.values()) > chance_bound(50, len(acc)), acc
    assert max(acc.values()) >= 45, (leak, max(acc, key=acc.get), max(acc.values()))
    assert acc["logistic_regression"] >= 40, acc["logistic_regression"]
