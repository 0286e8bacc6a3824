"""Decoding source radiographs (PNG, JPEG, TIFF, BMP, DICOM) into float images at full bit depth.

A reader returns a :class:`Decoded`: a 2-D float32 array in [0, 1] where 1 is the brightest *displayed*
value, plus technical provenance only. Everything a user's file can get wrong becomes a :class:`SkipFile`
with a one-line reason (the ingest records it and goes on); nothing here raises anything else on bad input.

Privacy: from DICOM only modality, photometric interpretation, bits stored, size and transfer syntax are
read out; no other data element leaves this module.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image

# A lateral c-spine film is at most a few thousand pixels a side; 100 MP leaves room for 10k x 10k scans
# while refusing decompression bombs before they are decoded.
DEFAULT_MAX_PIXELS = 100_000_000
DEFAULT_MAX_FILE_BYTES = 1 << 30
PIL_FORMATS = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg", "TIFF": "tiff", "BMP": "bmp"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm", ".dicom", ".dic"}


class SkipFile(Exception):
    """A file that is not ingested; the message is the one-line reason shown to the user."""


@dataclass
class Decoded:
    pixels: np.ndarray          # float32, 2-D, [0, 1], 1 = brightest as displayed
    source_format: str          # png | jpeg | tiff | bmp | dicom
    photometric: str            # PIL mode, or the DICOM PhotometricInterpretation
    bit_depth: int              # bits per sample of the source
    width: int                  # original size, before any reduction
    height: int
    modality: str | None = None
    transfer_syntax: str | None = None
    inverted_by_tag: bool = False   # DICOM MONOCHROME1: low stored values display bright


def sniff(head: bytes) -> str | None:
    """The container a file's first bytes announce, or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head.startswith(b"BM"):
        return "bmp"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    return None


def decode_bytes(data: bytes, suffix: str, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                 reduce_to: int | None = None) -> Decoded:
    """Decode one file's bytes. `reduce_to` lets JPEG decode at a lower DCT scale (never below it)."""
    if not data:
        raise SkipFile("empty file (0 bytes)")
    kind = sniff(data[:132])
    suffix = suffix.lower()
    if kind == "dicom" or (kind is None and suffix in (".dcm", ".dicom", ".dic", "")):
        return _decode_dicom(data, max_pixels, sniffed=kind == "dicom")
    if kind is None:
        if suffix in IMAGE_SUFFIXES:
            raise SkipFile(f"not an image: content does not match its {suffix} name (unknown header)")
        raise SkipFile(f"not an image file ({suffix or 'no extension'}, unknown content)")
    return _decode_pil(data, max_pixels, reduce_to)


# ---------------------------------------------------------------------------------------------------
# PIL formats


def _decode_pil(data: bytes, max_pixels: int, reduce_to: int | None) -> Decoded:
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb check warns above MAX_IMAGE_PIXELS; make that an error too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            fmt = PIL_FORMATS.get(im.format or "")
            if fmt is None:
                raise SkipFile(f"unsupported image format {im.format} (use PNG, JPEG, TIFF, BMP or DICOM)")
            width, height = im.size
            if width * height > max_pixels:
                raise SkipFile(f"too large: {width}x{height} pixels exceeds the limit of {max_pixels:,} "
                               "(a decompression bomb?)")
            if getattr(im, "n_frames", 1) > 1:
                im.seek(0)  # multi-page TIFF: the first page is the radiograph
            if fmt == "jpeg" and reduce_to and im.mode in ("L", "RGB", "CMYK"):
                im.draft(im.mode, (reduce_to, reduce_to))  # DCT-domain downscale, never below reduce_to
            im.load()
            pixels, bits = _pil_to_float(im)
            mode = im.mode
    except SkipFile:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise SkipFile(f"too large: a decompression bomb ({exc})".split(". ")[0]) from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError,
            MemoryError, struct.error) as exc:
        raise SkipFile(_pil_reason(exc)) from None
    return Decoded(pixels=pixels, source_format=fmt, photometric=mode, bit_depth=bits, width=width,
                   height=height)


def _pil_reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    lowered = text.lower()
    if "truncated" in lowered or isinstance(exc, EOFError) or "broken data stream" in lowered:
        return f"corrupt or truncated image ({text})"
    if "cannot identify" in lowered:
        return "not a readable image (the decoder does not recognise its content)"
    return f"corrupt image ({type(exc).__name__}: {text[:120]})"


def _pil_to_float(im: Image.Image) -> tuple[np.ndarray, int]:
    """Grayscale float32 in [0, 1] from any PIL mode, at full bit depth; alpha is dropped."""
    mode = im.mode
    if mode == "1":
        return np.asarray(im, dtype=np.float32), 1
    if mode in ("L", "LA", "La"):
        return np.asarray(im.getchannel(0), dtype=np.float32) / 255.0, 8
    if mode in ("P", "PA"):
        im = im.convert("RGBA" if "transparency" in im.info or mode == "PA" else "RGB")
        mode = im.mode
    if mode in ("RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"):
        rgb = np.asarray(im.convert("RGB"), dtype=np.float32)
        # ITU-R 601-2 luma, the weights PIL's convert("L") uses, kept in float (no 8-bit rounding).
        gray = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
        return gray / 255.0, 8
    if mode.startswith("I;16"):
        return _minmax(np.asarray(im).astype(np.float32)), 16
    if mode == "I":
        arr = np.asarray(im)
        bits = 16 if arr.size and arr.min() >= 0 and arr.max() <= 65535 else 32
        return _minmax(arr.astype(np.float64)).astype(np.float32), bits
    if mode == "F":
        arr = np.asarray(im, dtype=np.float32)
        if not np.isfinite(arr).all():
            raise SkipFile("corrupt image (floating-point pixels contain NaN or infinity)")
        return _minmax(arr), 32
    raise SkipFile(f"unsupported pixel mode {mode}")


def _minmax(arr: np.ndarray) -> np.ndarray:
    """High-bit-depth sources often use only part of their range (12 of 16 bits): scale to [0, 1]."""
    lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        return np.zeros(arr.shape, dtype=np.float32)
    return ((arr - lo) / (hi - lo)).astype(np.float32)


# ---------------------------------------------------------------------------------------------------
# DICOM


def _decode_dicom(data: bytes, max_pixels: int, *, sniffed: bool) -> Decoded:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=not sniffed)
    except InvalidDicomError:
        raise SkipFile("not an image (not a DICOM file and no known image header)") from None
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on malformed files
        raise SkipFile(f"corrupt DICOM ({type(exc).__name__})") from None
    if not sniffed and len(ds) == 0:
        raise SkipFile("not an image (no known image header)")
    # Technical fields only; nothing else is read out of the dataset.
    modality = _text(ds.get("Modality"))
    photometric = _text(ds.get("PhotometricInterpretation")) or ""
    meta = getattr(ds, "file_meta", None)
    tsyntax = meta.get("TransferSyntaxUID") if meta is not None else None
    tsyntax_s = str(tsyntax) if tsyntax else None
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise SkipFile("DICOM without pixel data (no PixelData element)")
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if rows <= 0 or cols <= 0:
        raise SkipFile("DICOM with no image size (Rows/Columns missing)")
    if rows * cols * frames > max_pixels:
        raise SkipFile(f"too large: DICOM {cols}x{rows}x{frames} exceeds the limit of {max_pixels:,} pixels")
    if frames > 1:
        raise SkipFile(f"multi-frame DICOM ({frames} frames); export the single lateral projection")
    if tsyntax is None:
        raise SkipFile("DICOM without a transfer syntax (no file meta); re-export it as a DICOM file")
    _check_decoder(tsyntax)
    try:
        from pydicom.pixels import apply_modality_lut, apply_voi_lut, pixel_array

        arr = pixel_array(ds)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        if samples == 3 or arr.ndim == 3:
            if photometric.startswith("YBR"):
                from pydicom.pixels import convert_color_space

                arr = convert_color_space(arr, photometric, "RGB")
            arr = arr[..., 0] * 0.299 + arr[..., 1] * 0.587 + arr[..., 2] * 0.114
            bits = int(ds.get("BitsStored", 8) or 8)
            return Decoded(_minmax(arr.astype(np.float64)).astype(np.float32), "dicom", photometric or "RGB",
                           bits, cols, rows, modality, tsyntax_s)
        values = apply_modality_lut(arr, ds).astype(np.float64)
        has_voi = "WindowCenter" in ds or "VOILUTSequence" in ds
        if has_voi:
            values = apply_voi_lut(values, ds, index=0).astype(np.float64)
    except SkipFile:
        raise
    except Exception as exc:  # noqa: BLE001 - decoder errors on damaged pixel data
        raise SkipFile(f"DICOM pixel data could not be decoded ({type(exc).__name__})") from None
    if not np.isfinite(values).all():
        raise SkipFile("DICOM pixel data contains NaN or infinity")
    bits = int(ds.get("BitsStored", 0) or ds.get("BitsAllocated", 16) or 16)
    pixels = _minmax(values)
    inverted = photometric == "MONOCHROME1"
    if inverted:
        pixels = 1.0 - pixels  # the tag says low values display bright; the canonical image is as displayed
    return Decoded(pixels=pixels.astype(np.float32), source_format="dicom", photometric=photometric,
                   bit_depth=bits, width=cols, height=rows, modality=modality, transfer_syntax=tsyntax_s,
                   inverted_by_tag=inverted)


def _check_decoder(tsyntax) -> None:
    from pydicom.pixels import get_decoder

    name = getattr(tsyntax, "name", str(tsyntax))
    try:
        decoder = get_decoder(tsyntax)
    except NotImplementedError:
        raise SkipFile(f"unsupported DICOM transfer syntax {name} ({tsyntax}); convert it to an "
                       "uncompressed or JPEG 2000 DICOM") from None
    if not decoder.is_available:
        raise SkipFile(f"DICOM transfer syntax {name} ({tsyntax}) has no installed decoder; install "
                       "pylibjpeg with its plugins or convert the file")


def _text(value) -> str | None:
    if value is None:
        return None
    value = getattr(value, "value", value)
    return str(value).strip() or None
