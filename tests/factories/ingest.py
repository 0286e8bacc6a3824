"""Fixtures for the ingest tests: a tiny drawn lateral c-spine film and files in every format.

`draw_film` is deliberately crude (core/demo/phantom.py makes the realistic ones): air, a neck silhouette, a
dark airway in front of a column of bright vertebral bodies, spinous processes behind it. It is enough to
exercise the readers, the pipeline and the detectors' plumbing at tiny sizes.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def draw_film(height: int = 160, width: int = 128, *, facing: str = "left", negative: bool = False,
              seed: int = 0) -> np.ndarray:
    """A float image in [0, 1] (bone bright unless negative), facing left unless facing='right'."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = x / width, y / height
    img = np.full((height, width), 0.06, dtype=np.float32)                 # air
    anterior_skin = 0.22 + 0.10 * np.clip((0.45 - v) / 0.45, 0, 1)          # chin above, throat below
    neck = (u > anterior_skin) & (u < 0.95)
    img[neck] = 0.35
    img[(v < 0.25) & (u < 0.45)] = 0.40                                    # face / mandible region
    img[(np.abs(u - 0.36) < 0.035) & (v > 0.2)] = 0.10                     # airway in front of the column
    for k in range(6):                                                     # vertebral bodies C2..C7
        top = 0.22 + k * 0.125
        body = (np.abs(u - 0.52) < 0.08) & (v > top) & (v < top + 0.09)
        img[body] = 0.80
        spinous = (np.abs(u - (0.72 + 0.02 * k)) < 0.05) & (np.abs(v - (top + 0.06)) < 0.025)
        img[spinous] = 0.70
        img[(np.abs(u - 0.62) < 0.03) & (v > top) & (v < top + 0.08)] = 0.60  # pedicles / pillars
    img[(v < 0.12) & (u > 0.55)] = 0.75                                    # occiput
    img += rng.normal(0, 0.015, img.shape).astype(np.float32)
    img = np.clip(img, 0, 1)
    if facing == "right":
        img = img[:, ::-1]
    if negative:
        img = 1.0 - img
    return np.ascontiguousarray(img)


def to_uint8(img: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(img, 0, 1) * 255).astype(np.uint8)


def to_uint16(img: np.ndarray, bits: int = 16) -> np.ndarray:
    return np.rint(np.clip(img, 0, 1) * (2 ** bits - 1)).astype(np.uint16)


def save_pil(img: np.ndarray, path: Path, *, mode: str = "L", fmt: str | None = None, **kwargs) -> Path:
    """Save a float film in a PIL mode: L, I;16, RGB, RGBA, LA, P, 1 (formats from the suffix)."""
    if mode == "I;16":
        im = Image.fromarray(to_uint16(img))
    else:
        im = Image.fromarray(to_uint8(img), mode="L")
        if mode != "L":
            im = im.convert(mode)
    im.save(path, format=fmt, **kwargs)
    return path


def save_dicom(img: np.ndarray, path: Path, *, monochrome1: bool = False, bits: int = 12,
               identifying: bool = True, transfer_syntax: str | None = None, pixel_data: bool = True,
               window: tuple[float, float] | None = None, rescale: tuple[float, float] | None = None) -> Path:
    """A DX DICOM file of `img` (as displayed) with identifying fields planted for the privacy test."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = transfer_syntax or ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    if identifying:
        ds.PatientName = "Doe^Jane^Secretname"
        ds.PatientID = "PID-ZX81-4471"
        ds.PatientBirthDate = "19610417"
        ds.StudyDate = "20230102"
        ds.InstitutionName = "Hospital Of Hidden Identities"
        ds.ReferringPhysicianName = "Who^Doctor"
        ds.AccessionNumber = "ACC99887766"
        ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.999111222333"
    stored = img if not monochrome1 else 1.0 - img
    arr = to_uint16(stored, bits)
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits, bits - 1, 0
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    if rescale:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    if pixel_data:
        ds.PixelData = arr.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def png_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(to_uint8(img)).save(buf, format="PNG")
    return buf.getvalue()
