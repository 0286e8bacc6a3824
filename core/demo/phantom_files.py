"""Phantoms on disk: one film written in its format (PNG/JPEG/TIFF/DICOM, negative and bit depth applied),
a seeded batch with ``labels.csv`` and the label files a study imports (``keypoints.csv``, ``attributes.csv``),
and a contact sheet of a batch.

The pixels come from core/demo/phantom.py (:func:`core.demo.phantom.render`); writing is deterministic too, so the
same seed and parameters give byte-identical files (DICOM UIDs are name-based on the seed).

Public API: :func:`write_phantom`, :func:`generate`, :func:`write_label_files`, :func:`params_from_labels`,
:func:`contact_sheet`, :data:`LABEL_COLUMNS`.
"""
from __future__ import annotations

import csv
import math
import os
import uuid
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from PIL import Image, ImageDraw

from core.demo.phantom import LEVELS, landmarks, render
from core.demo.phantom_params import DEFECTS, FORMAT_ALIASES, FORMATS, STREAM_BATCH, PhantomError, PhantomParams

LABEL_COLUMNS = ("file", "seed", "facing", "negative", "bit_depth", "format", "width", "height", "defect",
                 "cobb_deg")
ATTRIBUTE_COLUMNS = ("file", "defect", "lordosis", "cobb_deg", "tilt_deg")
# The lordosis classes of attributes.csv: PhantomParams.random draws 0-8 degrees for a straight neck (20%)
# and 12-40 otherwise; the normal range is split at 26, its middle.
LORDOSIS_BINS = ((10.0, "straight"), (26.0, "moderate"), (math.inf, "marked"))


# --------------------------------------------------------------------------------------------- writing

def _quantise(v: np.ndarray, maxval: int) -> np.ndarray:
    q = np.round(np.clip(v, 0, 1) * maxval)
    return q.astype(np.uint16 if maxval > 255 else np.uint8)


def write_phantom(params: PhantomParams, path_without_suffix: str | os.PathLike) -> Path:
    """Render and write one phantom (negative, bit depth, format applied); returns the path with suffix."""
    p = params
    path = Path(str(path_without_suffix) + p.suffix)
    path.parent.mkdir(parents=True, exist_ok=True)
    v = render(p)
    if p.negative:
        v = 1.0 - v
    if p.format == "dicom":
        _write_dicom(p, v, path)
        return path
    q = _quantise(v, 65535 if p.bit_depth == 16 else 255)
    img = Image.fromarray(q)
    tmp = path.with_name(path.name + ".part")
    if p.format == "png":
        img.save(tmp, format="PNG", compress_level=1 if q.size > 1_000_000 else 6)
    elif p.format == "jpeg":
        img.save(tmp, format="JPEG", quality=p.jpeg_quality)
    else:
        img.save(tmp, format="TIFF")
    os.replace(tmp, path)
    return path


def _write_dicom(p: PhantomParams, v: np.ndarray, path: Path) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import (ComputedRadiographyImageStorage, DigitalXRayImageStorageForPresentation,
                             ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID)

    bits = p.bits_stored if p.bit_depth == 16 else 8
    maxval = (1 << bits) - 1
    q = _quantise(v, maxval)
    sop_class = DigitalXRayImageStorageForPresentation if p.modality == "DX" else ComputedRadiographyImageStorage

    def uid(kind: str) -> str:        # deterministic 2.25.<UUID> (name-based UUID of seed and kind)
        return "2.25." + str(uuid.uuid5(uuid.NAMESPACE_URL, f"cspine-tui-phantom/{p.seed}/{kind}").int)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = uid("sop")
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = uid("study")
    ds.SeriesInstanceUID = uid("series")
    ds.FrameOfReferenceUID = uid("frame")
    # obviously fake identifying fields (privacy tests check that none are copied downstream)
    ds.PatientName = "PHANTOM^TEST"
    ds.PatientID = f"PHANTOM-{p.seed:08d}"
    ds.PatientBirthDate = "19000101"
    ds.PatientSex = "O"
    ds.OtherPatientIDs = f"FAKE-MRN-{p.seed % 1000000:06d}"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20000101"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.AccessionNumber = f"ACC{p.seed % 10000000:07d}"
    ds.StudyID = "PHANTOM"
    ds.InstitutionName = "Phantom General Hospital (fake)"
    ds.InstitutionAddress = "1 Nowhere Street, Fakeville"
    ds.ReferringPhysicianName = "DOCTOR^FAKE"
    ds.OperatorsName = "TECH^FAKE"
    ds.StationName = "PHANTOM-XR1"
    ds.Manufacturer = "cspine-tui phantom generator"
    ds.Modality = p.modality
    ds.StudyDescription = "XR CERVICAL SPINE LATERAL (PHANTOM)"
    ds.SeriesDescription = "C-SPINE LAT"
    ds.BodyPartExamined = "CSPINE"
    ds.ViewPosition = "LL" if p.facing == "left" else "RL"
    ds.PatientOrientation = ["P", "F"] if p.facing == "left" else ["A", "F"]
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    spacing = f"{p.fov_mm / p.height:.6f}"
    ds.ImagerPixelSpacing = [spacing, spacing]
    ds.PixelSpacing = [spacing, spacing]
    region = Dataset()
    region.CodeValue, region.CodingSchemeDesignator, region.CodeMeaning = "122494005", "SCT", "Cervical spine"
    ds.AnatomicRegionSequence = [region]
    if p.modality == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.PixelIntensityRelationship = "LOG"
        # +1: lower values = less beam intensity (bone stored low: the negatives)
        ds.PixelIntensityRelationshipSign = 1 if p.negative else -1
        ds.PresentationLUTShape = "INVERSE" if p.negative else "IDENTITY"
        ds.ImageLaterality = "U"
        ds.DetectorType = "SCINTILLATOR"
        ds.AcquisitionContextSequence = []
        ds.BurnedInAnnotation = "NO"
        ds.LossyImageCompression = "00"
    slope, intercept = 1.0, 0.0
    if p.modality == "DX" or (p.rescale and p.bit_depth == 16):
        if p.modality == "CR":
            slope, intercept = (0.5, -100.0) if p.seed % 2 else (2.0, -1024.0)
        ds.RescaleSlope = f"{slope:g}"
        ds.RescaleIntercept = f"{intercept:g}"
        ds.RescaleType = "US"
    lo, hi = (float(x) for x in np.percentile(q[:: max(1, q.shape[0] // 256), :: max(1, q.shape[1] // 256)],
                                             (0.5, 99.5)))
    ds.WindowCenter = f"{slope * (lo + hi) / 2 + intercept:.1f}"
    ds.WindowWidth = f"{max(1.0, slope * (hi - lo)):.1f}"
    ds.SamplesPerPixel = 1
    # negatives are stored bone-dark and labelled MONOCHROME1 (low values shown bright)
    ds.PhotometricInterpretation = "MONOCHROME1" if p.negative else "MONOCHROME2"
    ds.Rows, ds.Columns = q.shape
    ds.BitsAllocated = 16 if p.bit_depth == 16 else 8
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    data = q.astype("<u2" if p.bit_depth == 16 else "u1").tobytes()
    if len(data) % 2:
        data += b"\x00"
    ds.add_new(0x7FE00010, "OW" if p.bit_depth == 16 else "OB", data)
    tmp = path.with_name(path.name + ".part")
    ds.save_as(tmp, enforce_file_format=True)
    os.replace(tmp, path)


def _batch_seed(seed: int, i: int) -> int:
    return int(np.random.SeedSequence([seed, STREAM_BATCH, i]).generate_state(1)[0]) >> 1


def generate(out_dir: str | os.PathLike, count: int, seed: int, *, negative_fraction: float = 0.25,
             right_fraction: float = 0.3, formats: Sequence[str] = FORMATS, bit_depths: Sequence[int] = (8, 16),
             defect_fraction: float = 0.0, size_range: tuple[int, int] = (900, 2500),
             progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """Write ``count`` phantoms ``phantom_00000.<ext>`` ... and ``labels.csv`` into ``out_dir``.

    Deterministic from ``seed``. Fractions are exact shares (rounded) placed at random; formats cycle so
    every listed format appears once count >= len(formats), and each non-JPEG format alternates through
    ``bit_depths`` (JPEG is always 8-bit). Returns one dict per image with the labels.csv columns
    (typed: negative is a bool, numbers are numbers; defect is '' when none) plus 'path'.
    """
    formats = tuple(FORMAT_ALIASES.get(f.lower(), f.lower()) for f in formats)
    bad = [f for f in formats if f not in FORMATS]
    if not formats or bad:
        raise PhantomError(f"formats must be a non-empty subset of {FORMATS}, got {tuple(formats)}")
    bit_depths = tuple(int(b) for b in bit_depths)
    if not bit_depths or any(b not in (8, 16) for b in bit_depths):
        raise PhantomError(f"bit_depths must be a non-empty subset of (8, 16), got {bit_depths}")
    lo, hi = int(size_range[0]), int(size_range[1])
    if not 16 <= lo <= hi:
        raise PhantomError(f"size_range must be (min, max) heights with 16 <= min <= max, got {size_range}")
    count = int(count)
    if count < 0:
        raise PhantomError(f"phantom count must be >= 0, got {count}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([int(seed), STREAM_BATCH])

    def share(frac: float) -> np.ndarray:
        m = np.zeros(count, bool)
        m[rng.permutation(count)[: int(round(min(max(frac, 0.0), 1.0) * count))]] = True
        return m

    neg, right, bad_mask = share(negative_fraction), share(right_fraction), share(defect_fraction)
    fmt_order = rng.permutation(count) % len(formats)
    heights = rng.integers(lo, hi + 1, size=count)
    d_start = int(rng.integers(len(DEFECTS)))
    depth_off = {f: int(rng.integers(len(bit_depths))) for f in formats}
    seen: dict[str, int] = {}
    n_defects = 0
    rows: list[dict] = []
    for i in range(count):
        fmt = formats[int(fmt_order[i])]
        if fmt == "jpeg":
            depth = 8
        else:
            depth = bit_depths[(seen.get(fmt, 0) + depth_off[fmt]) % len(bit_depths)]
            seen[fmt] = seen.get(fmt, 0) + 1
        defect = None
        if bad_mask[i]:
            defect = DEFECTS[(d_start + n_defects) % len(DEFECTS)]
            n_defects += 1
        s_i = _batch_seed(int(seed), i)
        p = PhantomParams.random(s_i, facing="right" if right[i] else "left", negative=bool(neg[i]),
                                 format=fmt, bit_depth=depth, defect=defect, height=int(heights[i]))
        path = write_phantom(p, out / f"phantom_{i:05d}")
        rows.append({"file": path.name, "seed": s_i, "facing": p.facing, "negative": p.negative,
                     "bit_depth": p.bit_depth, "format": p.format, "width": p.width, "height": p.height,
                     "defect": p.defect or "", "cobb_deg": round(p.cobb_deg, 2), "path": str(path)})
        if progress is not None:
            progress(i + 1, count)
    tmp = out / "labels.csv.part"
    with open(tmp, "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(LABEL_COLUMNS)
        for r in rows:
            wr.writerow([r["file"], r["seed"], r["facing"], int(r["negative"]), r["bit_depth"], r["format"],
                         r["width"], r["height"], r["defect"], f"{r['cobb_deg']:.2f}"])
    os.replace(tmp, out / "labels.csv")
    write_label_files(out, [(r["file"], params_from_labels(r)) for r in rows])
    return rows


def params_from_labels(row: dict) -> PhantomParams:
    """The parameters a batch drew for one labels.csv row (generate's own call, from the row's columns)."""
    negative = row["negative"]
    if isinstance(negative, str):
        negative = negative.strip().lower() in ("1", "true", "yes")
    return PhantomParams.random(int(row["seed"]), facing=row["facing"], negative=bool(negative),
                                format=row["format"], bit_depth=int(row["bit_depth"]),
                                defect=row["defect"] or None, height=int(row["height"]))


def lordosis_class(cobb_deg: float) -> str:
    return next(name for upper, name in LORDOSIS_BINS if cobb_deg < upper)


def write_label_files(out_dir: str | os.PathLike, items: Sequence[tuple[str, PhantomParams]]) -> None:
    """``keypoints.csv`` (file,point,x,y: <LEVEL>_body and <LEVEL>_spinous in the SOURCE pixel coordinates of
    each written file, origin top-left corner, facing as written) and ``attributes.csv`` (defect, lordosis
    class, cobb_deg, tilt_deg) for the files of a batch, in the layouts `cspine-tui labels --import` reads.

    A point is left out where the film does not show it: a missing vertebra's level, a point outside the
    film (T1's spinous tip often is), a point the distortion warp pushes out of view. Distorted films get
    their points through the warp (core/demo/phantom.py landmarks(warped=True))."""
    out = Path(out_dir)
    kp_lines, attr_lines = [], []
    for name, p in items:
        lm = landmarks(p, warped=True)
        for level in LEVELS:
            if p.defect == "missing_vertebra" and lm["defect_level"] == level:
                continue
            for suffix, xy in (("body", lm["bodies"][level]), ("spinous", lm["spinous_tips"][level])):
                if xy is not None and 0.0 <= xy[0] <= p.width and 0.0 <= xy[1] <= p.height:
                    kp_lines.append([name, f"{level}_{suffix}", f"{xy[0]:.3f}", f"{xy[1]:.3f}"])
        attr_lines.append([name, p.defect or "none", lordosis_class(p.cobb_deg), f"{p.cobb_deg:.2f}",
                           f"{p.tilt_deg:.2f}"])
    for file, header, lines in (("keypoints.csv", ("file", "point", "x", "y"), kp_lines),
                                ("attributes.csv", ATTRIBUTE_COLUMNS, attr_lines)):
        tmp = out / f"{file}.part"
        with open(tmp, "w", newline="") as fh:
            wr = csv.writer(fh)
            wr.writerow(header)
            wr.writerows(lines)
        os.replace(tmp, out / file)


# --------------------------------------------------------------------------------------- contact sheet

def _load_stored(path: Path) -> np.ndarray:
    """Stored pixel values as float (no MONOCHROME1 inversion, no flip)."""
    if path.suffix.lower() in (".dcm", ".dicom"):
        import pydicom

        return pydicom.dcmread(path).pixel_array.astype(np.float32)
    with Image.open(path) as im:
        return np.asarray(im).astype(np.float32)


def _display(arr: np.ndarray) -> np.ndarray:
    a = np.asarray(arr, dtype=np.float32)
    if a.ndim == 3:
        a = a[..., :3].mean(axis=2)
    sub = a[:: max(1, a.shape[0] // 256), :: max(1, a.shape[1] // 256)]
    lo, hi = (float(x) for x in np.percentile(sub, (0.5, 99.5)))
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((a - lo) / (hi - lo), 0, 1)


def contact_sheet(paths_or_arrays: Iterable, out_png: str | os.PathLike, cols: int = 6, tile: int = 256,
                  labels: Sequence[str] | None = None) -> Path:
    """A PNG grid of images (files or arrays), each display-normalised (0.5-99.5 percentiles) and shown as
    stored: negatives stay negative, right-facing stay right-facing. Optional one-line labels per tile."""
    items = list(paths_or_arrays)
    n = len(items)
    cols = max(1, min(int(cols), max(1, n)))
    rows = max(1, math.ceil(n / cols))
    gap = 4
    sheet = Image.new("L", (cols * tile + (cols + 1) * gap, rows * tile + (rows + 1) * gap), 32)
    draw = ImageDraw.Draw(sheet)
    for i, it in enumerate(items):
        arr = _load_stored(Path(it)) if isinstance(it, (str, os.PathLike)) else np.asarray(it)
        disp = (_display(arr) * 255 + 0.5).astype(np.uint8)
        im = Image.fromarray(disp)
        scale = tile / max(im.size)
        im = im.resize((max(1, round(im.size[0] * scale)), max(1, round(im.size[1] * scale))), Image.LANCZOS)
        r, c = divmod(i, cols)
        x0 = gap + c * (tile + gap) + (tile - im.size[0]) // 2
        y0 = gap + r * (tile + gap) + (tile - im.size[1]) // 2
        sheet.paste(im, (x0, y0))
        if labels is not None and i < len(labels) and labels[i]:
            tx, ty = gap + c * (tile + gap) + 3, gap + r * (tile + gap) + 3
            box = draw.textbbox((tx, ty), str(labels[i]))
            draw.rectangle((box[0] - 2, box[1] - 2, box[2] + 2, box[3] + 2), fill=0)
            draw.text((tx, ty), str(labels[i]), fill=255)
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, format="PNG", optimize=True)
    return out
