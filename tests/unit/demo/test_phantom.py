"""The procedural phantom radiographs: determinism, variety, file formats, DICOM semantics, defects."""

from __future__ import annotations

import csv
import hashlib
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from core.demo import phantom as ph
from core.demo import phantom_files as phf
from core.errors import CspineError

SMALL = 220  # px tall: fast, still enough to see the anatomy


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _box_mean(img: np.ndarray, xy, r: int = 2) -> float:
    x, y = int(round(xy[0])), int(round(xy[1]))
    return float(img[max(0, y - r): y + r + 1, max(0, x - r): x + r + 1].mean())


def _spine_x(lm: dict) -> float:
    return float(np.mean([lm["bodies"][k][0] for k in ("C3", "C4", "C5", "C6")]))


# ----------------------------------------------------------------------------------------- params

def test_params_random_is_deterministic_and_overridable():
    a, b = ph.PhantomParams.random(11), ph.PhantomParams.random(11)
    assert a == b
    assert ph.PhantomParams.random(12) != a
    o = ph.PhantomParams.random(11, facing="right", height=300, negative=True)
    assert (o.facing, o.height, o.negative) == ("right", 300, True)
    assert (o.cobb_deg, o.fov_mm, o.aspect) == (a.cobb_deg, a.fov_mm, a.aspect)  # other draws unchanged
    assert ph.PhantomParams.random(11, format="jpeg").bit_depth == 8
    assert ph.PhantomParams.random(11, format="jpg").format == "jpeg"
    with pytest.raises(ValueError):
        ph.PhantomParams.random(11, format="jpeg", bit_depth=16)
    with pytest.raises(ValueError):
        ph.PhantomParams.random(11, defect="two_heads")
    with pytest.raises(ValueError):
        ph.PhantomParams.random(-1)
    with pytest.raises(CspineError, match="facing"):                 # the project's user-error type
        ph.render_canonical(1, 64, facing="up")
    with pytest.raises(TypeError):
        ph.PhantomParams.random(11, colour="blue")
    draws = [ph.PhantomParams.random(s) for s in range(60)]
    assert {d.facing for d in draws} == {"left", "right"}
    assert {d.format for d in draws} == set(ph.FORMATS)
    assert all(0.68 <= d.aspect <= 0.84 and 900 <= d.height <= 2500 for d in draws)
    assert min(d.cobb_deg for d in draws) < 8 and max(d.cobb_deg for d in draws) > 30


# ----------------------------------------------------------------------------------------- render

def test_render_is_deterministic_float_in_unit_range():
    p = ph.PhantomParams.random(3, height=SMALL)
    a, b = ph.render(p), ph.render(p)
    assert a.dtype == np.float32 and a.shape == (p.height, p.width)
    assert 0.0 <= a.min() and a.max() <= 1.0
    assert np.array_equal(a, b)
    assert not np.array_equal(a, ph.render(ph.PhantomParams.random(4, height=SMALL, aspect=p.aspect)))


def test_render_anatomy_sits_where_it_should():
    for seed in (1, 2):
        for facing in ("left", "right"):
            p = ph.PhantomParams.random(seed, height=400, facing=facing, marker="")
            img = ph.render(p)
            lm = ph.landmarks(p)
            bodies = [_box_mean(img, lm["bodies"][k]) for k in ("C3", "C4", "C5")]
            airway = [_box_mean(img, xy, 1) for xy in lm["airway"][len(lm["airway"]) // 2:][:4]]
            assert min(bodies) > max(airway) + 0.1, (seed, facing, bodies, airway)   # bone bright, air dark
            air_x = float(np.mean(lm["airway"][:, 0]))
            tip_x = float(np.mean([xy[0] for xy in lm["spinous_tips"].values()]))
            if facing == "left":
                assert air_x < _spine_x(lm) < tip_x
            else:
                assert air_x > _spine_x(lm) > tip_x
            assert img[:, : img.shape[1] // 8].mean() != img[:, -img.shape[1] // 8:].mean()


def test_render_full_size_upsamples_and_is_fast_enough():
    p = ph.PhantomParams.random(5, height=1200, aspect=0.75)
    ph.render(ph.PhantomParams.random(0, height=200))            # warm up imports / caches
    t = time.process_time()
    img = ph.render(p)
    cpu = time.process_time() - t
    assert img.shape == (1200, 900)
    assert cpu < 1.5                                               # ~0.1 s on one idle core
    # quantum noise at full resolution: neighbouring pixels are not just interpolated copies
    assert np.abs(np.diff(img[600, 100:800])).mean() > 0.003


def test_render_canonical_mirror_size_and_speed():
    left = ph.render_canonical(8, 64)
    assert left.dtype == np.uint8 and left.shape == (64, 64)
    assert np.array_equal(left, ph.render_canonical(8, 64))
    assert not np.array_equal(left, ph.render_canonical(9, 64))
    for size in (64, 160):
        assert np.array_equal(ph.render_canonical(8, size, facing="right"),
                              ph.render_canonical(8, size, facing="left")[:, ::-1])
    for defect in ph.DEFECTS:
        d = ph.render_canonical(8, 64, defect=defect)
        assert d.shape == (64, 64) and not np.array_equal(d, left)
    for size, limit in ((64, 0.06), (256, 0.5)):                   # targets: 20 ms and 200 ms
        times = []
        for s in range(5):
            t = time.process_time()
            ph.render_canonical(s, size)
            times.append(time.process_time() - t)
        assert float(np.median(times)) < limit, (size, times)


# ------------------------------------------------------------------------------------------ defects

def _pair(defect: str, seed: int = 21, facing: str = "left"):
    clean = ph.PhantomParams.random(seed, height=320, facing=facing, marker="")
    bad = ph.PhantomParams.random(seed, height=320, facing=facing, marker="", defect=defect)
    return ph.render(clean), ph.render(bad), ph.landmarks(clean), ph.landmarks(bad)


def _centroid_x(weights: np.ndarray) -> float:
    w = np.maximum(weights, 0)
    w = np.where(w > 0.05, w, 0)
    return float((w.sum(axis=0) * np.arange(w.shape[1])).sum() / w.sum())


@pytest.mark.parametrize("facing", ["left", "right"])
def test_defect_airway_posterior_puts_the_dark_band_behind_the_spine(facing):
    clean, bad, lm, lmb = _pair("airway_posterior", facing=facing)
    darker = clean - bad
    cx, sx = _centroid_x(darker), _spine_x(lm)
    assert (cx > sx) if facing == "left" else (cx < sx)
    # the normal airway is gone: where it was, the defect image is brighter
    assert np.mean([_box_mean(bad, xy, 1) - _box_mean(clean, xy, 1) for xy in lm["airway"][3:-3]]) > 0.05
    assert np.mean([xy[0] for xy in lmb["airway"]]) > sx if facing == "left" else True


def test_defect_elements_swapped_are_in_front_of_the_bodies():
    clean, bad, lm, _ = _pair("elements_swapped")
    brighter = bad - clean
    assert _centroid_x(brighter) < _spine_x(lm)        # new bone anterior (left) of the bodies
    assert _centroid_x(clean - bad) > _spine_x(lm)     # bone gone from behind them


def test_defect_missing_vertebra_leaves_a_gap():
    clean, bad, lm, lmb = _pair("missing_vertebra")
    level = lmb["defect_level"]
    assert level in ("C3", "C4", "C5", "C6")
    xy = lm["bodies"][level]
    assert _box_mean(clean, xy, 3) - _box_mean(bad, xy, 3) > 0.1
    other = lm["bodies"]["C2" if level != "C2" else "C7"]
    assert abs(_box_mean(clean, other, 3) - _box_mean(bad, other, 3)) < 0.02


def test_defect_doubled_vertebra_adds_bone_in_front_at_its_level():
    clean, bad, lm, lmb = _pair("doubled_vertebra")
    level = lmb["defect_level"]
    brighter = np.maximum(bad - clean, 0)
    ys = np.nonzero(brighter > 0.05)[0]
    assert len(ys) > 20
    x0 = lm["bodies"][level][0] - 0.5 * lm["body_size_px"][level][0]       # the anterior body line
    assert brighter[:, : int(x0)].sum() > 0.25 * brighter.sum()          # a second body sticks out in front
    assert abs(float(np.median(ys)) - lm["bodies"][level][1]) < 0.08 * clean.shape[0]


def test_defect_distortion_warps_around_the_spine():
    clean, bad, lm, _ = _pair("distortion")
    diff = np.abs(bad - clean)
    assert diff.mean() > 0.02
    sx = int(_spine_x(lm))
    w = clean.shape[1]
    near = diff[:, max(0, sx - w // 8): sx + w // 8].mean()
    far = diff[:, : w // 10].mean()
    assert near > 2 * far


def test_defects_otherwise_look_like_normal_phantoms():
    clean = ph.render(ph.PhantomParams.random(30, height=SMALL))
    for defect in ph.DEFECTS:
        bad = ph.render(ph.PhantomParams.random(30, height=SMALL, defect=defect))
        assert abs(float(bad.mean()) - float(clean.mean())) < 0.05
        assert np.corrcoef(bad.ravel(), clean.ravel())[0, 1] > 0.6


# ------------------------------------------------------------------------------------------ writing

def test_write_phantom_formats_bit_depths_and_bytes(tmp_path: Path):
    seen = {}
    for fmt, depth in (("png", 8), ("png", 16), ("jpeg", 8), ("tiff", 8), ("tiff", 16), ("dicom", 8),
                       ("dicom", 16)):
        p = ph.PhantomParams.random(2, height=SMALL, format=fmt, bit_depth=depth, negative=False)
        path = phf.write_phantom(p, tmp_path / f"a_{fmt}{depth}")
        again = phf.write_phantom(p, tmp_path / f"b_{fmt}{depth}")
        assert path.suffix == ph.SUFFIXES[fmt] and path.exists()
        assert _sha(path) == _sha(again), fmt                  # bit-identical files
        if fmt == "dicom":
            ds = pydicom.dcmread(path)
            arr = ds.pixel_array
            assert ds.BitsAllocated == depth
            if depth == 16:
                assert ds.BitsStored in (12, 14, 16) and arr.max() > 255
        else:
            with Image.open(path) as im:
                arr = np.asarray(im)
                assert (im.format, arr.shape) == ({"png": "PNG", "jpeg": "JPEG", "tiff": "TIFF"}[fmt],
                                                  (p.height, p.width))
        if depth == 16:
            assert arr.dtype == np.uint16
            if fmt != "dicom":
                assert arr.max() > 40000 and len(np.unique(arr)) > 1000   # really uses the 16-bit range
        else:
            assert arr.dtype == np.uint8
        seen[(fmt, depth)] = arr
    # a negative is the inverted positive
    p = ph.PhantomParams.random(2, height=SMALL, format="png", bit_depth=8, negative=True)
    neg = np.asarray(Image.open(phf.write_phantom(p, tmp_path / "neg")))
    assert np.abs(neg.astype(int) - (255 - seen[("png", 8)].astype(int))).max() <= 1   # rounding only


@pytest.mark.parametrize("modality", ["DX", "CR"])
def test_dicom_semantics(tmp_path: Path, modality: str):
    p_pos = ph.PhantomParams.random(6, height=SMALL, format="dicom", bit_depth=16, modality=modality,
                                    negative=False, rescale=True)
    p_neg = ph.PhantomParams.random(6, height=SMALL, format="dicom", bit_depth=16, modality=modality,
                                    negative=True, rescale=True)
    truth = ph.render(p_pos)
    lm = ph.landmarks(p_pos)
    for p in (p_pos, p_neg):
        ds = pydicom.dcmread(phf.write_phantom(p, tmp_path / f"x{int(p.negative)}"))
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        sop = {"DX": pydicom.uid.DigitalXRayImageStorageForPresentation,
               "CR": pydicom.uid.ComputedRadiographyImageStorage}[modality]
        assert ds.SOPClassUID == sop == ds.file_meta.MediaStorageSOPClassUID
        assert ds.Modality == modality
        assert ds.PhotometricInterpretation == ("MONOCHROME1" if p.negative else "MONOCHROME2")
        assert ds.HighBit == ds.BitsStored - 1 and ds.PixelRepresentation == 0 and ds.SamplesPerPixel == 1
        assert (ds.Rows, ds.Columns) == (p.height, p.width)
        # obviously fake identifying fields, present so downstream privacy checks have something to catch
        assert str(ds.PatientName) == "PHANTOM^TEST"
        assert ds.PatientID.startswith("PHANTOM") and ds.PatientBirthDate and ds.StudyDate
        assert "fake" in ds.InstitutionName.lower()
        assert ds.StudyInstanceUID and ds.SeriesInstanceUID and ds.SOPInstanceUID
        assert float(ds.WindowWidth) > 0
        if modality == "DX":
            assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (1.0, 0.0)
        stored = ds.pixel_array.astype(np.float64)
        assert stored.max() < 2 ** ds.BitsStored
        value = stored * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))
        if ds.PhotometricInterpretation == "MONOCHROME1":   # what a viewer shows: low values bright
            value = value.max() + value.min() - value
        shown = (value - value.min()) / np.ptp(value)
        assert np.corrcoef(shown.ravel(), truth.ravel())[0, 1] > 0.99   # bone bright on screen
        bone = _box_mean(shown, lm["bodies"]["C4"])
        air = np.mean([_box_mean(shown, xy, 1) for xy in lm["airway"][len(lm["airway"]) // 2:][:4]])
        assert bone > air + 0.1
    assert pydicom.dcmread(tmp_path / "x0.dcm").StudyInstanceUID != \
        pydicom.dcmread(phf.write_phantom(ph.PhantomParams.random(7, height=64, format="dicom"),
                                          tmp_path / "other")).StudyInstanceUID


# ----------------------------------------------------------------------------------------- generate

def _read_labels(folder: Path) -> list[dict]:
    with open(folder / "labels.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_generate_variety_labels_and_determinism(tmp_path: Path):
    calls = []
    kw = dict(negative_fraction=0.25, right_fraction=0.5, defect_fraction=0.25, size_range=(96, 180))
    rows = phf.generate(tmp_path / "a", 16, 99, progress=lambda d, t: calls.append((d, t)), **kw)
    assert calls[-1] == (16, 16) and len(calls) == 16
    labels = _read_labels(tmp_path / "a")
    assert list(labels[0].keys()) == list(phf.LABEL_COLUMNS)
    assert len(labels) == len(rows) == 16
    assert {r["format"] for r in labels} == set(ph.FORMATS)
    assert {r["facing"] for r in labels} == {"left", "right"}
    assert sum(r["negative"] == "1" for r in labels) == 4 and sum(r["facing"] == "right" for r in labels) == 8
    assert {r["bit_depth"] for r in labels} == {"8", "16"}
    assert all(r["bit_depth"] == "8" for r in labels if r["format"] == "jpeg")
    assert len({r["height"] for r in labels}) > 8
    defects = [r["defect"] for r in labels if r["defect"]]
    assert len(defects) == 4 and set(defects) <= set(ph.DEFECTS)
    for r, row in zip(labels, rows):
        path = tmp_path / "a" / r["file"]
        assert path.exists() and path.suffix == ph.SUFFIXES[r["format"]]
        assert row["file"] == r["file"] and row["negative"] == (r["negative"] == "1")
        if r["format"] == "dicom":
            ds = pydicom.dcmread(path)
            shape = (ds.Rows, ds.Columns)
            assert ds.PhotometricInterpretation == ("MONOCHROME1" if r["negative"] == "1" else "MONOCHROME2")
            assert (ds.BitsAllocated == 16) == (r["bit_depth"] == "16")
        else:
            with Image.open(path) as im:
                shape = (im.height, im.width)
                assert (im.mode in ("I;16", "I")) == (r["bit_depth"] == "16")
        assert shape == (int(r["height"]), int(r["width"]))
        assert 96 <= int(r["height"]) <= 180 and float(r["cobb_deg"]) >= 0
        # a row's seed plus its labels re-creates its pixels
        p = ph.PhantomParams.random(int(r["seed"]), facing=r["facing"], negative=r["negative"] == "1",
                                    format=r["format"], bit_depth=int(r["bit_depth"]), height=int(r["height"]),
                                    defect=r["defect"] or None)
        assert p.width == int(r["width"]) and f"{p.cobb_deg:.2f}" == r["cobb_deg"]
    # same seed, same files (bit for bit); another seed, other files
    phf.generate(tmp_path / "b", 16, 99, **kw)
    for r in labels:
        assert _sha(tmp_path / "a" / r["file"]) == _sha(tmp_path / "b" / r["file"])
    assert (tmp_path / "a" / "labels.csv").read_bytes() == (tmp_path / "b" / "labels.csv").read_bytes()
    other = phf.generate(tmp_path / "c", 4, 100, **kw)
    assert [r["seed"] for r in other] != [r["seed"] for r in rows[:4]]


def test_generate_respects_restricted_choices(tmp_path: Path):
    rows = phf.generate(tmp_path, 5, 1, formats=("png",), bit_depths=(16,), negative_fraction=0,
                        right_fraction=1.0, size_range=(80, 80))
    assert {(r["format"], r["bit_depth"], r["facing"], r["negative"], r["height"]) for r in rows} == \
        {("png", 16, "right", False, 80)}
    with pytest.raises(ValueError):
        phf.generate(tmp_path, 1, 1, formats=("gif",))
    assert phf.generate(tmp_path / "empty", 0, 1) == []
    assert _read_labels(tmp_path / "empty") == []


# ------------------------------------------------------------------------------------ contact sheet

def test_contact_sheet(tmp_path: Path):
    p = ph.PhantomParams.random(4, height=120, format="dicom", bit_depth=16, negative=True)
    path = phf.write_phantom(p, tmp_path / "one")
    out = phf.contact_sheet([path, ph.render_canonical(1, 64), ph.render(ph.PhantomParams.random(2, height=90))],
                            tmp_path / "sheet.png", cols=2, tile=64, labels=["dcm", "canon", "float"])
    with Image.open(out) as im:
        assert im.format == "PNG" and im.mode == "L"
        assert im.size == (2 * 64 + 3 * 4, 2 * 64 + 3 * 4)


def test_engine_module_imports_no_ui_or_database():
    code = ("import sys, core.demo.phantom, core.demo.phantom_files; "
            "bad = {'textual', 'duckdb', 'rich'} & set(sys.modules); print(sorted(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[3])
    assert out.stdout.strip() == "[]"
