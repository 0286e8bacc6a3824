"""Readers: every supported format and pixel mode decodes to the same picture at full bit depth."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from core.realset.canonical import IngestOptions, canonicalize, content_box, resize_float
from core.realset.readers import SkipFile, decode_bytes, sniff
from tests.factories.ingest import draw_film, save_dicom, save_pil, to_uint16
FILM = draw_film(200, 160, seed=3)


def decode(path):
    return decode_bytes(path.read_bytes(), path.suffix)


@pytest.mark.parametrize("name,mode,kwargs,bits", [
    ("l.png", "L", {}, 8),
    ("i16.png", "I;16", {}, 16),
    ("rgb.png", "RGB", {}, 8),
    ("rgba.png", "RGBA", {}, 8),
    ("la.png", "LA", {}, 8),
    ("p.png", "P", {}, 8),
    ("l.jpg", "L", {"quality": 95}, 8),
    ("rgb.jpg", "RGB", {"quality": 95}, 8),
    ("l.tif", "L", {}, 8),
    ("i16.tif", "I;16", {}, 16),
    ("rgb.tif", "RGB", {"compression": "tiff_lzw"}, 8),
    ("l.bmp", "L", {}, 8),
    ("rgb.bmp", "RGB", {}, 8),
])
def test_pil_formats_decode_to_the_same_picture(tmp_path, name, mode, kwargs, bits):
    path = save_pil(FILM, tmp_path / name, mode=mode, **kwargs)
    dec = decode(path)
    assert dec.pixels.dtype == np.float32 and dec.pixels.shape == (200, 160)
    assert (dec.width, dec.height, dec.bit_depth) == (160, 200, bits)
    assert dec.source_format == {"png": "png", "jpg": "jpeg", "tif": "tiff", "bmp": "bmp"}[name.split(".")[1]]
    tol = 0.03 if name.endswith(".jpg") else 0.006 if mode == "P" else 0.003
    if bits == 16:  # min-max scaled: compare after the same scaling
        ref = (FILM - FILM.min()) / (FILM.max() - FILM.min())
    else:
        ref = np.rint(FILM * 255) / 255
    assert np.abs(dec.pixels - ref).mean() < tol


def test_sixteen_bit_keeps_precision_below_eight_bits(tmp_path):
    """A gradient spanning 1/200 of the range survives in 16-bit (no 8-bit truncation before resizing)."""
    ramp = np.tile(np.linspace(0.5, 0.505, 160, dtype=np.float32), (200, 1))
    ramp[0, 0], ramp[-1, -1] = 0.0, 1.0  # full range, so min-max scaling is the identity
    Image.fromarray(to_uint16(ramp)).save(tmp_path / "ramp.png")
    dec = decode(tmp_path / "ramp.png")
    assert len(np.unique(np.round(dec.pixels[100, 10:150] * 65535))) > 100  # 8 bits would give 2 levels
    small = resize_float(dec.pixels, 64, 64)
    assert small.dtype == np.float32 and np.ptp(small[32, 5:60]) > 0


def test_twelve_bit_in_sixteen_is_scaled_to_full_range(tmp_path):
    Image.fromarray(to_uint16(FILM, bits=12)).save(tmp_path / "twelve.png")
    dec = decode(tmp_path / "twelve.png")
    assert dec.pixels.min() == 0.0 and dec.pixels.max() == 1.0


def test_dicom_monochrome2_and_monochrome1(tmp_path):
    d2 = decode(save_dicom(FILM, tmp_path / "m2.dcm"))
    d1 = decode(save_dicom(FILM, tmp_path / "m1.dcm", monochrome1=True))
    assert d2.source_format == d1.source_format == "dicom"
    assert (d2.modality, d2.photometric, d1.photometric) == ("DX", "MONOCHROME2", "MONOCHROME1")
    assert d1.inverted_by_tag and not d2.inverted_by_tag
    assert d2.bit_depth == 12 and d2.transfer_syntax == "1.2.840.10008.1.2.1"
    # MONOCHROME1 is inverted by its tag: both display the same picture.
    assert np.abs(d1.pixels - d2.pixels).max() < 1e-3
    assert np.corrcoef(d2.pixels.ravel(), FILM.ravel())[0, 1] > 0.999


def test_dicom_rescale_and_window_are_applied(tmp_path):
    plain = decode(save_dicom(FILM, tmp_path / "a.dcm"))
    rescaled = decode(save_dicom(FILM, tmp_path / "b.dcm", rescale=(2.0, -1024.0)))
    assert np.abs(plain.pixels - rescaled.pixels).max() < 1e-4   # a linear LUT changes nothing after scaling
    windowed = decode(save_dicom(FILM, tmp_path / "c.dcm", window=(2048.0, 1024.0)))
    # A narrow window around mid-grey clips the dark air and the bright bone.
    assert (windowed.pixels <= 1e-6).mean() > 0.2 and (windowed.pixels >= 1 - 1e-6).mean() > 0.01


def test_dicom_without_preamble_extension_is_sniffed(tmp_path):
    path = save_dicom(FILM, tmp_path / "IM0001.dcm")
    bare = tmp_path / "IM0001"
    bare.write_bytes(path.read_bytes())
    assert sniff(bare.read_bytes()[:132]) == "dicom"
    assert decode(bare).source_format == "dicom"


def test_canonical_is_256_uint8_and_pad_keeps_aspect(tmp_path):
    dec = decode(save_pil(FILM, tmp_path / "f.png"))
    canon = canonicalize(dec, IngestOptions(size=256, resize="stretch"))
    assert canon.pixels.shape == (256, 256) and canon.pixels.dtype == np.uint8
    padded = canonicalize(dec, IngestOptions(size=256, resize="pad"))
    x0, y0, w, h = content_box(160, 200, 256, "pad")
    assert (y0, h) == (0, 256) and w == 205 and x0 == 25
    assert padded.pixels[:, :x0].max() == 0 and padded.pixels[:, x0 + w:].max() == 0
    assert padded.pixels[:, x0:x0 + w].mean() > 10


def test_forced_decisions_are_applied(tmp_path):
    dec = decode(save_pil(FILM, tmp_path / "f.png"))
    base = canonicalize(dec, IngestOptions(), force_inverted=False, force_flipped=False)
    both = canonicalize(dec, IngestOptions(), force_inverted=True, force_flipped=True)
    assert both.polarity_source == both.orientation_source == "override"
    assert np.abs(both.pixels.astype(int) - (255 - base.pixels[:, ::-1].astype(int))).max() <= 1


def test_unknown_bytes_are_skipped_with_a_reason():
    with pytest.raises(SkipFile, match="not an image"):
        decode_bytes(b"hello world, not a picture", ".png")
    with pytest.raises(SkipFile, match="empty"):
        decode_bytes(b"", ".png")
    with pytest.raises(SkipFile, match="not an image file"):
        decode_bytes(b"a,b,c\n1,2,3\n", ".csv")
