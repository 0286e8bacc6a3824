"""Decoding source radiographs (PNG, JPEG, TIFF, BMP, DICOM) into float images at full bit depth.

A reader returns a :class:`Decoded`: a 2-D float32 array in [0, 1] where 1 is the brightest *displayed*
value, plus technical provenance only. Everything a user's file can get wrong becomes a :class:`SkipFile`
with a one-line reason (the ingest records it and goes on); nothing here raises anything else on bad input.

Privacy: from DICOM only modality, photometric interpretation, bits stored, size, pixel spacing and transfer
syntax are read out; no other data element leaves this module.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
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
    """A decoded source image. The samples stay in a PIL float image at full bit depth, unscaled, so the
    resize runs in C on the full-resolution data and only the small result is scaled: resampling is linear,
    so scaling after it is the same as before it (and ~2 full-resolution passes cheaper)."""

    image: Image.Image          # mode "F": sample values as displayed (after DICOM LUTs), not yet scaled
    lo: float                   # the sample value shown black ...
    hi: float                   # ... and the one shown white (8-bit: 0 and 255; deeper: the image's range)
    source_format: str          # png | jpeg | tiff | bmp | dicom
    photometric: str            # PIL mode, or the DICOM PhotometricInterpretation
    bit_depth: int              # bits per sample of the source
    width: int                  # original size, before any reduction
    height: int
    modality: str | None = None
    transfer_syntax: str | None = None
    inverted_by_tag: bool = False   # DICOM MONOCHROME1: low stored values display bright
    pixel_spacing: tuple[float, float] | None = None   # DICOM: mm per pixel (x along a row, y down a column)
    spacing_source: str | None = None                  # PixelSpacing | ImagerPixelSpacing

    def scale(self, values: np.ndarray) -> np.ndarray:
        """Samples -> [0, 1] with 1 the brightest displayed value (MONOCHROME1 inverted by its tag)."""
        if self.hi <= self.lo:
            out = np.zeros(values.shape, dtype=np.float32)
        else:
            out = np.clip((values.astype(np.float32) - self.lo) / (self.hi - self.lo), 0.0, 1.0)
        return 1.0 - out if self.inverted_by_tag else out

    @property
    def pixels(self) -> np.ndarray:
        """The whole image as float32 in [0, 1] (for tools and tests; the ingest resizes `image` instead)."""
        return self.scale(np.asarray(self.image, dtype=np.float32)).astype(np.float32)


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
            mode = im.mode
            image, lo, hi, bits = _pil_to_float(im)
    except SkipFile:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise SkipFile(f"too large: a decompression bomb ({exc})".split(". ")[0]) from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError,
            MemoryError, struct.error) as exc:
        raise SkipFile(_pil_reason(exc)) from None
    return Decoded(image=image, lo=lo, hi=hi, source_format=fmt, photometric=mode, bit_depth=bits,
                   width=width, height=height)


def _pil_reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    lowered = text.lower()
    if "truncated" in lowered or isinstance(exc, EOFError) or "broken data stream" in lowered:
        return f"corrupt or truncated image ({text})"
    if "cannot identify" in lowered:
        return "not a readable image (the decoder does not recognise its content)"
    return f"corrupt image ({type(exc).__name__}: {text[:120]})"


def _pil_to_float(im: Image.Image) -> tuple[Image.Image, float, float, int]:
    """(float image, black level, white level, bits) from any PIL mode, in C; alpha is dropped.

    8-bit sources keep their absolute scale (0 black, 255 white). Deeper sources often use only part of
    their range (12 of 16 bits), so their own minimum and maximum become black and white.
    """
    mode = im.mode
    if mode == "1":
        return im.convert("L").convert("F"), 0.0, 255.0, 1
    if mode in ("L", "LA", "La"):
        return im.getchannel(0).convert("F"), 0.0, 255.0, 8
    if mode in ("P", "PA"):
        im = im.convert("RGBA" if "transparency" in im.info or mode == "PA" else "RGB")
        mode = im.mode
    if mode in ("RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"):
        # ITU-R 601-2 luma, the weights of PIL's convert("L"), computed in float (no 8-bit rounding).
        return im.convert("RGB").convert("F"), 0.0, 255.0, 8
    if mode.startswith("I;16") or mode in ("I", "F"):
        f = im.convert("F")
        lo, hi = (float(v) for v in f.getextrema())
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise SkipFile("corrupt image (pixels contain NaN or infinity)")
        bits = 16 if mode.startswith("I;16") else 32
        if mode == "I" and lo >= 0 and hi <= 65535:
            bits = 16
        return f, lo, hi, bits
    raise SkipFile(f"unsupported pixel mode {mode}")


# ---------------------------------------------------------------------------------------------------
# DICOM


def _decode_dicom(data: bytes, max_pixels: int, *, sniffed: bool) -> Decoded:
    import pydicom
    from pydicom.errors import InvalidDicomError

    if sniffed:
        _check_deflated_size(data, max_pixels)
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
    rows, cols = _int_tag(ds, "Rows", 0), _int_tag(ds, "Columns", 0)
    frames = _int_tag(ds, "NumberOfFrames", 1)
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
            values = arr[..., 0] * 0.299 + arr[..., 1] * 0.587 + arr[..., 2] * 0.114
        else:
            values = apply_modality_lut(arr, ds)
            if "WindowCenter" in ds or "VOILUTSequence" in ds:
                values = apply_voi_lut(values, ds, index=0)
        values = np.ascontiguousarray(values, dtype=np.float32)
    except SkipFile:
        raise
    except Exception as exc:  # noqa: BLE001 - decoder errors on damaged pixel data
        raise SkipFile(f"DICOM pixel data could not be decoded ({type(exc).__name__})") from None
    lo, hi = float(values.min()), float(values.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise SkipFile("DICOM pixel data contains NaN or infinity")
    bits = _int_tag(ds, "BitsStored", 0) or _int_tag(ds, "BitsAllocated", 16) or 16
    spacing, spacing_source = _pixel_spacing(ds)
    # MONOCHROME1: low values display bright; the canonical image is as displayed (see Decoded.scale).
    return Decoded(image=Image.fromarray(values), lo=lo, hi=hi, source_format="dicom",
                   photometric=photometric or "MONOCHROME2", bit_depth=bits, width=cols, height=rows,
                   modality=modality, transfer_syntax=tsyntax_s, inverted_by_tag=photometric == "MONOCHROME1",
                   pixel_spacing=spacing, spacing_source=spacing_source)


def _pixel_spacing(ds) -> tuple[tuple[float, float] | None, str | None]:
    """(x, y) mm per pixel from PixelSpacing (calibrated to the patient), else ImagerPixelSpacing (at the
    detector); both are [row spacing, column spacing]. A malformed value is no spacing, not a bad file."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        try:
            dy, dx = (float(v) for v in getattr(value, "value", value))
        except (TypeError, ValueError):
            continue
        if all(np.isfinite(v) and v > 0 for v in (dx, dy)):
            return (dx, dy), keyword
    return None, None


def _int_tag(ds, keyword: str, default: int) -> int:
    """An integer element (Rows, Columns, ...); a malformed value ('1A', a list) is a corrupt file, not a crash."""
    try:
        return int(ds.get(keyword, default) or default)
    except (TypeError, ValueError, OverflowError):
        raise SkipFile(f"corrupt DICOM ({keyword} is not a number)") from None


DEFLATED_TS = b"1.2.840.10008.1.2.1.99"


def _check_deflated_size(data: bytes, max_pixels: int) -> None:
    """A Deflated Explicit VR DICOM inflates its whole data set in memory (pydicom): a 1 MB file can expand to
    1 GB. Count the inflated size in 16 MiB steps first and refuse one larger than the biggest image allowed
    (4 bytes a pixel) plus 64 MiB of other elements."""
    meta_end = _file_meta_end(data)
    if DEFLATED_TS not in data[132:meta_end]:
        return
    limit = 4 * max_pixels + (64 << 20)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    pending, total = data[meta_end:], 0
    try:
        while pending:
            total += len(inflater.decompress(pending, 16 << 20))
            if total > limit:
                raise SkipFile(f"too large: the deflated DICOM data set expands beyond {limit >> 20} MiB "
                               "(a decompression bomb?)")
            pending = inflater.unconsumed_tail
    except zlib.error:
        return  # damaged stream: pydicom reports it below


def _file_meta_end(data: bytes) -> int:
    """Offset just after the file meta group (0002,xxxx), always explicit VR little endian."""
    pos = 132
    while pos + 8 <= len(data) and data[pos:pos + 2] == b"\x02\x00":
        if data[pos + 4:pos + 6] in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"):
            pos += 12 + struct.unpack("<I", data[pos + 8:pos + 12])[0]
        else:
            pos += 8 + struct.unpack("<H", data[pos + 6:pos + 8])[0]
    return min(pos, len(data))


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
