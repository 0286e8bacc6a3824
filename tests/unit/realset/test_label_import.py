"""Importing label files: keypoints land on the same anatomy in the canonical image, all or nothing, matching by
name and by hash, numeric vs categorical attributes, every problem reported on its own line."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.errors import CspineError
from core.realset import catalog, ingest, labels
from core.realset.label_import import LabelImportError, decoded_grid, import_labels, to_canonical
from core.realset.readers import decode_bytes
from core.study import Study
from tests.factories.ingest import draw_film, save_pil


def _dots(h: int, w: int, points: list[tuple[float, float]], sigma: float, amp: float) -> np.ndarray:
    """Gaussian dots centred on continuous source coordinates (pixel i spans [i, i+1), centre i + 0.5)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    out = np.zeros((h, w))
    for px, py in points:
        out += amp * np.exp(-((x - px) ** 2 + (y - py) ** 2) / (2 * sigma ** 2))
    return out.astype(np.float32)


def _centroid(diff: np.ndarray, xc: float, yc: float, r: int = 4) -> tuple[float, float, float]:
    """Intensity-weighted centroid of `diff` in a 2r x 2r window at (xc, yc), and the standard deviation of
    that centroid due to 8-bit rounding: each canonical image is rounded once (uniform error, std
    1/(255 sqrt 12)), so their difference has std q = sqrt(2)/(255 sqrt 12) per pixel and the centroid
    sum(w x)/S moves by q sqrt(sum (x - c)^2) / S."""
    i0, j0 = int(round(xc)), int(round(yc))
    win = diff[j0 - r:j0 + r, i0 - r:i0 + r]
    ys, xs = np.mgrid[j0 - r:j0 + r, i0 - r:i0 + r] + 0.5
    s = float(win.sum())
    cx, cy = float((win * xs).sum() / s), float((win * ys).sum() / s)
    q = np.sqrt(2 / 12) / 255
    std = q * float(np.sqrt(max(((xs - cx) ** 2).sum(), ((ys - cy) ** 2).sum()))) / s
    return cx, cy, std


def _read(study: Study, row: dict) -> np.ndarray:
    return np.asarray(Image.open(study.abs(row["path"])), dtype=np.float64) / 255.0


@pytest.mark.parametrize("resize,fmt,size,height,width", [
    ("stretch", "png", 64, 203, 151),   # odd size, anisotropic scale
    ("pad", "png", 64, 203, 151),       # content box offset in x
    ("stretch", "jpg", 32, 517, 521),   # a JPEG decoded at 1/8 DCT scale: ceil(521/8) = 66 columns, not 65.1
])
def test_a_dot_lands_where_its_keypoint_says(tmp_path, resize, fmt, size, height, width) -> None:
    """Bright dots drawn at known source coordinates on a right-facing film (so it is mirrored) end up, after
    the ingest's resize, padding and flip, at the canonical coordinates the import stored.

    The dots are isolated by subtracting the canonical image of the same film without them. Tolerance: the
    centroid's 8-bit rounding noise (see _centroid) times 6, plus 0.02 px for the rest: the resize is a
    symmetric, normalised (Lanczos) kernel, which moves the centroid of a Gaussian dot 1.2 canonical px wide
    by far less than that, and the window (+-4 px, 3.3 sigma) cuts off < 0.1% of its mass. The JPEG case
    doubles the rounding term (the encoder rounds too, at quality 100 by about as much)."""
    study = Study.create(tmp_path / "s")
    study.set("ingest", "size", size)
    film = draw_film(height, width, facing="right", seed=3)
    points = [(0.3 * width + 0.37, 0.3 * height + 0.21), (0.7 * width, 0.62 * height + 0.5),
              (0.84 * width - 0.2, 0.86 * height)]
    dotted = film + _dots(height, width, points, sigma=1.2 * max(width, height) / size, amp=0.15)
    assert dotted.max() < 1.0  # nothing clipped: the difference is the resampled dots alone
    src = tmp_path / "src"
    src.mkdir()
    kw = {"quality": 100} if fmt == "jpg" else {}
    save_pil(film, src / f"plain.{fmt}", **kw)
    save_pil(dotted, src / f"dotted.{fmt}", **kw)
    ingest.ingest(study, [src], resize=resize, workers=0)
    rows = {Path(r["source_path"]).stem: r for r in study.store.query("SELECT * FROM real_images")}
    assert rows["dotted"]["flipped"] and rows["plain"]["flipped"] and not rows["dotted"]["inverted"]
    csv_file = tmp_path / "k.csv"
    csv_file.write_text("file,point,x,y\n" + "".join(f"dotted.{fmt},p{i},{x},{y}\n" for i, (x, y) in enumerate(points)))
    result = import_labels(study, csv_file)
    assert result["kind"] == "keypoints" and result["labels"] == 3 and result["images"] == 1
    factor = 2 if fmt == "jpg" else 1

    def check(kp: dict, diff: np.ndarray) -> None:
        for name, (xc, yc) in kp.items():
            cx, cy, std = _centroid(diff, xc, yc)
            tol = factor * 6 * std + 0.02
            assert abs(cx - xc) < tol and abs(cy - yc) < tol, (name, (xc, yc), (cx, cy), tol)
            if fmt == "jpg" and name != "p0":
                # The test can fail: mapping x * w / W without the DCT-scale grid misses by more than tol.
                x, _ = points[int(name[1:])]
                assert abs((size - x * size / width) - cx) > tol

    check(labels.keypoints_for(study)[rows["dotted"]["id"]], _read(study, rows["dotted"]) - _read(study, rows["plain"]))
    # An orientation override mirrors the canonical image; the keypoints move with it.
    for key in ("dotted", "plain"):
        rows[key] = catalog.override(study, rows[key]["id"], flipped=False)
    check(labels.keypoints_for(study)[rows["dotted"]["id"]], _read(study, rows["dotted"]) - _read(study, rows["plain"]))


def test_decoded_grid_is_the_grid_the_reader_decodes(tmp_path) -> None:
    for width, height, size in ((521, 517, 32), (301, 203, 32), (150, 140, 64), (1030, 900, 64)):
        path = save_pil(draw_film(height, width, seed=1), tmp_path / f"f{width}.jpg", quality=90)
        dec = decode_bytes(path.read_bytes(), ".jpg", reduce_to=2 * size)
        wd, hd, _ = decoded_grid("jpeg", "L", width, height, size)
        assert dec.image.size == (wd, hd)
    assert decoded_grid("png", "L", 521, 517, 32) == (521, 517, 1)


def test_to_canonical_arithmetic() -> None:
    image = {"orig_width": 200, "orig_height": 100, "resize_mode": "pad", "flipped": False, "source_format": "png"}
    assert to_canonical(image, 0, 0, 64) == (0.0, 16.0)          # content box (0, 16, 64, 32)
    assert to_canonical(image, 200, 100, 64) == (64.0, 48.0)
    assert to_canonical({**image, "flipped": True}, 50, 50, 64) == (48.0, 32.0)
    assert to_canonical({**image, "resize_mode": "stretch"}, 100, 25, 64) == (32.0, 16.0)


# --------------------------------------------------------------------------------------------- files


def _study(tmp_path, names=("a.png", "b.png", "c.png"), *, sub: dict[str, str] | None = None) -> Study:
    """A study with left-facing films of 128 x 160 (W x H) at canonical size 64, stretch."""
    study = Study.create(tmp_path / "s")
    study.set("ingest", "size", 64)
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    for k, name in enumerate(names):
        folder = src / (sub or {}).get(name, "")
        folder.mkdir(parents=True, exist_ok=True)
        save_pil(draw_film(160, 128, seed=k), folder / name)
    ingest.ingest(study, [src], recursive=True, workers=0)
    return study


def _ids(study: Study) -> dict[str, str]:
    return {Path(r["source_path"]).name: r["id"] for r in study.store.query("SELECT id, source_path FROM real_images")}


def test_one_bad_row_imports_nothing_and_every_problem_has_its_line(tmp_path) -> None:
    study = _study(tmp_path)
    f = tmp_path / "k.csv"
    f.write_text("file,point,x,y\n"
                 "a.png,C3_body,10,20\n"
                 "b.png,C3_body,ten,20\n"         # line 3: not a number
                 "c.png,C3_body,10,161\n"         # line 4: outside 128 x 160
                 "nope.png,C3_body,1,1\n"         # line 5: unmatched
                 "a.png,C3_body,11,21\n"          # line 6: given twice
                 "a.png,,1,1\n")                  # line 7: no point name
    with pytest.raises(LabelImportError) as err:
        import_labels(study, f)
    problems = err.value.problems
    assert [p.split(":")[0] for p in problems] == ["line 3", "line 4", "line 5", "line 6", "line 7"]
    assert "'ten' is not a finite number" in problems[0] and "outside the source image (128x160" in problems[1]
    assert "no real image named 'nope.png'" in problems[2] and "--skip-unmatched" in problems[2]
    assert "also given on line 2" in problems[3]
    assert "\n" not in str(err.value) and "5 problems, nothing imported" in str(err.value)
    assert labels.label_summary(study)["imports"] == [] and labels.keypoints_for(study) == {}


def test_unmatched_rows_can_be_left_out_and_are_listed(tmp_path) -> None:
    study = _study(tmp_path)
    f = tmp_path / "k.csv"
    f.write_text("file,point,x,y\na.png,C3_body,64,80\nnope.png,C3_body,1,1\n")
    result = import_labels(study, f, skip_unmatched=True)
    assert result["labels"] == 1 and len(result["unmatched"]) == 1 and result["unmatched"][0].startswith("line 3:")
    # 64/128 and 80/160 of the way across a 64 px canonical image facing left: its centre.
    assert labels.keypoints_for(study)[_ids(study)["a.png"]] == {"C3_body": (32.0, 32.0)}


def test_matching_by_hash_ambiguous_names_and_files_met_at_ingest(tmp_path) -> None:
    study = _study(tmp_path, names=("a.png", "x.png", "y.png"), sub={"x.png": "one", "y.png": "two"})
    # A second x.png elsewhere (different pixels), a duplicate of a.png and an unreadable file.
    (tmp_path / "src" / "two" / "x.png").write_bytes(
        save_pil(draw_film(160, 128, seed=7), tmp_path / "tmp.png").read_bytes())
    (tmp_path / "src" / "dup.png").write_bytes((tmp_path / "src" / "a.png").read_bytes())
    (tmp_path / "src" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    ingest.ingest(study, [tmp_path / "src"], recursive=True, workers=0)
    ids = {r["source_path"]: r["id"] for r in study.store.query("SELECT id, source_path FROM real_images")}
    a_sha = hashlib.sha256((tmp_path / "src" / "a.png").read_bytes()).hexdigest()
    assert a_sha in ids.values()  # the id is the SHA-256 of the source bytes
    f = tmp_path / "a.csv"
    f.write_text(f"sha256,file,grade\n{a_sha.upper()},,1\n,x.png,2\n,one/x.png,3\n,dup.png,4\n,bad.png,5\n")
    with pytest.raises(LabelImportError) as err:
        import_labels(study, f)
    problems = err.value.problems
    assert len(problems) == 3
    assert problems[0].startswith("line 3: file name 'x.png' matches 2 real images")
    assert problems[1].startswith("line 5: 'dup.png' was a duplicate of a.png")
    assert problems[2].startswith("line 6: 'bad.png' was skipped at ingest (not a readable image")
    f.write_text(f"sha256,file,grade\n{a_sha.upper()},,1\n,one/x.png,3\n")
    assert import_labels(study, f)["images"] == 2
    one_x = next(i for p, i in ids.items() if p.endswith("one/x.png"))
    assert labels.attributes_for(study, "grade") == {a_sha: "1", one_x: "3"}


def test_attribute_columns_numeric_or_categorical_and_missing_cells(tmp_path) -> None:
    study = _study(tmp_path)
    f = tmp_path / "attrs.csv"
    f.write_text("file,defect,cobb_deg,grade,note\n"
                 "a.png,none,21.50,1,NA\n"
                 "b.png,missing_vertebra,3,2,\n"
                 "c.png,none,1e1,x,\n")
    result = import_labels(study, f)
    assert result["kind"] == "attributes"
    assert result["attributes"] == {"defect": "categorical", "cobb_deg": "numeric", "grade": "categorical"}
    ids = _ids(study)
    assert labels.attributes_for(study, "cobb_deg") == {ids["a.png"]: "21.5", ids["b.png"]: "3", ids["c.png"]: "10"}
    assert labels.attribute_counts(study)["defect"] == {"missing_vertebra": 1, "none": 2}
    assert labels.attribute_counts(study)["grade"] == {"1": 1, "2": 1, "x": 1}
    numeric = study.store.column("SELECT numeric FROM real_attributes WHERE name = 'cobb_deg' ORDER BY numeric")
    assert numeric == [3.0, 10.0, 21.5]
    assert study.store.scalar("SELECT count(*) FROM real_attributes WHERE name = 'grade' AND numeric IS NOT NULL") == 0


def test_wide_csv_json_and_the_centre_convention_store_the_same_points(tmp_path) -> None:
    study = _study(tmp_path)
    ids = _ids(study)
    wide = tmp_path / "wide.csv"
    wide.write_text("file,C3_body_x,C3_body_y,C4_body_x,C4_body_y\na.png,64,80,,\nb.png,32,40,96,120\n")
    json_file = tmp_path / "k.json"
    json_file.write_text(json.dumps({"images": [{"file": "a.png", "points": {"C3_body": [64, 80]}},
                                                {"file": "b.png", "points": {"C3_body": [32, 40],
                                                                             "C4_body": [96, 120]}}]}))
    centre = tmp_path / "centre.csv"
    centre.write_text("file,point,x,y\na.png,C3_body,63.5,79.5\nb.png,C3_body,31.5,39.5\nb.png,C4_body,95.5,119.5\n")
    expected = {ids["a.png"]: {"C3_body": (32.0, 32.0)},
                ids["b.png"]: {"C3_body": (16.0, 16.0), "C4_body": (48.0, 48.0)}}
    for file, kw in ((wide, {}), (json_file, {}), (centre, {"convention": "center"})):
        study.store.execute("DELETE FROM real_keypoints")
        result = import_labels(study, file, **kw)
        assert result["layout"] == {"wide.csv": "wide", "k.json": "json", "centre.csv": "long"}[file.name]
        assert labels.keypoints_for(study) == expected, file.name
    half = tmp_path / "half.csv"
    half.write_text("file,C3_body_x,C3_body_y\na.png,64,\n")
    with pytest.raises(LabelImportError, match=r"line 2 \(C3_body_x/C3_body_y\): C3_body y \(empty\)"):
        import_labels(study, half)


def test_files_that_are_not_label_files_are_one_line_errors(tmp_path) -> None:
    study = _study(tmp_path, names=("a.png",))
    cases = {
        "nokey.csv": ("name,point,x,y\na.png,C3,1,1\n", "no 'file' or 'sha256' column"),
        "empty.csv": ("", "is empty"),
        "header.csv": ("file,point,x,y\n", "no rows"),
        "nokp.csv": ("file,grade\na.png,1\n", "no keypoint columns"),
        "bad.json": ("{\"images\": [", "not valid JSON"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(CspineError, match=message) as err:
            import_labels(study, tmp_path / name, "keypoints" if name == "nokp.csv" else None)
        assert "\n" not in str(err.value)
    with pytest.raises(CspineError, match="not found"):
        import_labels(study, tmp_path / "missing.csv")
    with pytest.raises(CspineError, match="no real images yet"):
        import_labels(Study.create(tmp_path / "empty"), tmp_path / "nokp.csv")


@pytest.mark.parametrize("tags,expected", [
    ({"PixelSpacing": ["0.2", "0.15"], "ImagerPixelSpacing": ["0.25", "0.25"]}, ((0.15, 0.2), "PixelSpacing")),
    ({"ImagerPixelSpacing": ["0.3", "0.1"]}, ((0.1, 0.3), "ImagerPixelSpacing")),
    ({"PixelSpacing": ["0", "0.1"], "ImagerPixelSpacing": ["0.3", "0.1"]}, ((0.1, 0.3), "ImagerPixelSpacing")),
    ({"PixelSpacing": ["0.2"]}, (None, None)),       # one value: malformed, no spacing (the file still reads)
    ({}, (None, None)),
])
def test_dicom_pixel_spacing_is_read_as_x_then_y(tmp_path, tags, expected) -> None:
    """DICOM spacing is [row spacing, column spacing] = [y, x]; PixelSpacing first, a bad one is skipped."""
    import pydicom

    from tests.factories.ingest import save_dicom

    path = save_dicom(draw_film(160, 128), tmp_path / "f.dcm", identifying=False)
    ds = pydicom.dcmread(path)
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    ds.save_as(path, enforce_file_format=True)
    dec = decode_bytes(path.read_bytes(), ".dcm")
    assert (dec.pixel_spacing, dec.spacing_source) == expected


def test_canonical_spacing_follows_the_resize(tmp_path) -> None:
    import pydicom

    from tests.factories.ingest import save_dicom

    study = Study.create(tmp_path / "s")
    study.set("ingest", "size", 64)
    src = tmp_path / "src"
    src.mkdir()
    path = save_dicom(draw_film(160, 128), src / "f.dcm", identifying=False)
    ds = pydicom.dcmread(path)
    ds.PixelSpacing = ["0.2", "0.15"]
    ds.save_as(path, enforce_file_format=True)
    save_pil(draw_film(160, 128, seed=2), src / "g.png")
    ingest.ingest(study, [src], resize="pad", workers=0)
    ids = _ids(study)
    # pad: a 128 x 160 film fills a 51 x 64 box of the 64 px square (round(128 x 64 / 160) = 51).
    assert labels.canonical_spacing(study) == {ids["f.dcm"]: (0.15 * 128 / 51, 0.2 * 160 / 64)}
    assert labels.canonical_spacing(study, [ids["g.png"]]) == {}
