"""The phantoms' label files: keypoints that land on the phantom's anatomy in the canonical image (through the
ingest and the import), attributes that say what the phantom was drawn with, the distortion warp followed,
and the demo stage that imports both once."""

from __future__ import annotations

import contextlib
import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from core.demo import phantom as ph
from core.demo import phantom_files as phf
from core.demo import stages
from core.demo.phantom_draw import Anatomy, Canvas
from core.realset import ingest, labels
from core.study import Study

# 128: no phantom here (at most 420 px tall) is 4x that a side, so no JPEG is decoded at a reduced DCT scale
# and the canonical image is exactly the film resized (see label_import.decoded_grid).
SIZE = 128


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """Eight phantoms (PNG/JPEG/TIFF/DICOM, negatives, right-facing, two defects) ingested at 128 px (stretch),
    their label files imported by the demo stage."""
    study = Study.create(tmp_path_factory.mktemp("phl") / "s")
    study.set("ingest", "size", SIZE)
    rows = phf.generate(study.root / "source-phantoms", 8, 5, negative_fraction=0.25, right_fraction=0.5,
                        defect_fraction=0.25, size_range=(300, 420))
    ingest.ingest(study, [study.root / "source-phantoms"], workers=0)
    lines: list[str] = []
    stages.stage_labels(study, lines.append)
    return study, rows, lines


def _images(study: Study) -> dict[str, dict]:
    return {Path(r["source_path"]).name: r for r in study.store.query("SELECT * FROM real_images")}


def test_keypoints_are_where_the_phantom_drew_its_anatomy(labelled) -> None:
    """Independent of the import's transform: the phantom's own landmarks() drawn straight at the canonical size
    and facing left (stretch: the canonical image is the film resized to 128 x 128 and mirrored if it faced
    right). Tolerance: keypoints.csv keeps 3 decimals (+-0.0005 source px, less at 128 px) and float rounding."""
    study, rows, _ = labelled
    images = _images(study)
    stored = labels.keypoints_for(study)
    n = 0
    for r in rows:
        p = phf.params_from_labels(r)
        image = images[r["file"]]
        assert image["flipped"] == (r["facing"] == "right")
        lm = ph.landmarks(ph.PhantomParams.random(p.seed, facing="left", negative=p.negative, format=p.format,
                                                  bit_depth=p.bit_depth, defect=p.defect, height=p.height),
                          shape=(SIZE, SIZE), warped=True)
        points = stored[image["id"]]
        for name, (x, y) in points.items():
            level, part = name.split("_")
            ex, ey = lm["bodies" if part == "body" else "spinous_tips"][level]
            assert abs(x - ex) < 1e-3 and abs(y - ey) < 1e-3, (r["file"], name)
            n += 1
        if p.defect == "missing_vertebra":
            assert not any(k.startswith(lm["defect_level"] + "_") for k in points)
        assert {f"{lv}_body" for lv in ph.LEVELS if lv != lm["defect_level"]} <= set(points) or \
            p.defect == "distortion"
    assert n >= 8 * 12


def test_vertebral_bodies_are_brighter_than_the_soft_tissue_in_front(labelled) -> None:
    """On the canonical pixels (all facing left: anterior is smaller x), each body keypoint sits on bone: the
    mean of a 3 x 3 box there beats the same box one body depth in front of it (a sanity check of the
    phantom's landmarks; the exact placement is the test above)."""
    study, rows, _ = labelled
    images = _images(study)
    stored = labels.keypoints_for(study)
    wins = total = 0
    for r in rows:
        if r["defect"]:
            continue
        image = images[r["file"]]
        px = np.asarray(Image.open(study.abs(image["path"])), dtype=np.float64)
        p = phf.params_from_labels(r)
        depth = ph.landmarks(p, shape=(SIZE, SIZE))["body_size_px"]
        for level in ph.LEVELS[1:6]:   # C3..C7: C2 has the dens and T1 the shoulders around it
            x, y = stored[image["id"]][f"{level}_body"]
            front = x - depth[level][0]

            def box(cx: float, cy: float) -> float:
                i, j = int(cx), int(cy)
                return float(px[j - 1:j + 2, i - 1:i + 2].mean())

            wins += box(x, y) > box(front, y)
            total += 1
    assert total >= 20 and wins == total


def test_attributes_say_what_the_phantom_was_drawn_with(labelled) -> None:
    study, rows, lines = labelled
    images = _images(study)
    defect = labels.attributes_for(study, "defect")
    lordosis = labels.attributes_for(study, "lordosis")
    cobb = labels.attributes_for(study, "cobb_deg")
    for r in rows:
        i = images[r["file"]]["id"]
        assert defect[i] == (r["defect"] or "none")
        assert float(cobb[i]) == pytest.approx(r["cobb_deg"], abs=0.005)
        assert lordosis[i] == ("straight" if r["cobb_deg"] < 10 else "moderate" if r["cobb_deg"] < 26 else "marked")
    overview = labels.attribute_overview(study)
    assert overview["cobb_deg"]["type"] == "numeric" and overview["lordosis"]["type"] == "categorical"
    assert sum(overview["defect"]["counts"].values()) == 8 and overview["defect"]["counts"]["none"] == 6
    assert any("imported" in m and "keypoints" in m for m in lines)
    assert any("attributes" in m for m in lines)


def test_the_demo_stage_imports_each_file_once_and_rewrites_missing_files(labelled) -> None:
    study, _, _ = labelled
    before = len(labels.label_summary(study)["imports"])
    stages.stage_labels(study, lambda m: None)
    assert len(labels.label_summary(study)["imports"]) == before == 2
    src = study.root / "source-phantoms"
    kept = (src / "keypoints.csv").read_bytes()
    (src / "keypoints.csv").unlink()          # a demo study from before the phantoms wrote label files
    stages.stage_labels(study, lambda m: None)
    assert (src / "keypoints.csv").read_bytes() == kept
    assert len(labels.label_summary(study)["imports"]) == 2


def test_dicom_phantoms_keep_their_pixel_spacing(labelled) -> None:
    study, rows, _ = labelled
    images = _images(study)
    spacing = labels.canonical_spacing(study)
    dicom = [r for r in rows if r["format"] == "dicom"]
    assert dicom and set(spacing) == {images[r["file"]]["id"] for r in dicom}
    for r in dicom:
        p = phf.params_from_labels(r)
        mm = float(f"{p.fov_mm / p.height:.6f}")          # as written into PixelSpacing
        sx, sy = spacing[images[r["file"]]["id"]]
        assert sx == pytest.approx(mm * p.width / SIZE, rel=1e-12)
        assert sy == pytest.approx(mm * p.height / SIZE, rel=1e-12)
        assert images[r["file"]]["spacing_source"] == "PixelSpacing"


@pytest.mark.parametrize("seed", [3, 8, 21])
def test_warped_landmarks_follow_the_distortion_warp(seed) -> None:
    """A dot drawn at a point of the unwarped working image and put through the phantom's own warp ends where
    landmarks(warped=True) says, or (where the warp folds and shows the point twice) one copy of it does.

    Tolerance 0.25 working px: the field moves the dot's centroid like its centre up to its curvature times
    sigma^2 / 2 (its finer part: ~15 px amplitude over ~10 px, so 0.15/px x 0.49 / 2 < 0.05 px), and the
    warp's bilinear resampling of a dot only 0.7 px wide moves its centroid by up to ~0.2 px with its phase."""
    p = ph.PhantomParams.random(seed, defect="distortion", height=500, facing="left")
    a = Anatomy(p)
    wh, ww = ph._work_size(p)
    cv = Canvas(wh, ww, a.W / ww, a.H / wh)
    follow = ph._unwarp(p, a, p.height, p.width)
    lm = ph.landmarks(p)
    checked = 0
    for level in ("C3", "C5", "C6"):
        x, y = lm["bodies"][level]
        shown = follow(x, y)
        if shown is None:
            continue
        qx, qy = x * ww / p.width, y * wh / p.height
        yy, xx = np.mgrid[0:wh, 0:ww] + 0.5
        dot = np.exp(-((xx - qx) ** 2 + (yy - qy) ** 2) / (2 * 0.7 ** 2)).astype(np.float32)
        out = ph._warp(dot, np.random.default_rng([p.seed, ph.STREAM_WARP]), a, cv)
        ex, ey = shown[0] * ww / p.width, shown[1] * wh / p.height
        i, j = int(ex), int(ey)
        window = out[j - 5:j + 6, i - 5:i + 6]   # the copy of the dot near the point (a fold shows others)
        cy, cx = (c + o + 0.5 for c, o in zip(ndimage.center_of_mass(window), (j - 5, i - 5)))
        assert abs(cx - ex) < 0.25 and abs(cy - ey) < 0.25, (level, (cx, cy), (ex, ey))
        assert abs(cx - qx) + abs(cy - qy) > 1.0  # the warp did move it: the check can fail
        checked += 1
    assert checked >= 2


def test_keypoints_csv_is_in_the_written_files_pixels(tmp_path) -> None:
    rows = phf.generate(tmp_path, 3, 2, size_range=(200, 260), right_fraction=0.34)
    with open(tmp_path / "keypoints.csv", newline="") as fh:
        kp = list(csv.DictReader(fh))
    for r in rows:
        with Image.open(tmp_path / r["file"]) if r["format"] != "dicom" else contextlib.nullcontext() as im:
            if im is not None:
                assert im.size == (r["width"], r["height"])
        mine = [k for k in kp if k["file"] == r["file"]]
        assert mine and all(0 <= float(k["x"]) <= r["width"] and 0 <= float(k["y"]) <= r["height"] for k in mine)
        body, tip = (next(k for k in mine if k["point"] == f"C4_{s}") for s in ("body", "spinous"))
        # Spinous tips are behind the bodies: right of them on a left-facing film, left on a right-facing one.
        assert (float(tip["x"]) > float(body["x"])) == (r["facing"] == "left")
