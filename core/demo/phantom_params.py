"""A phantom's parameters (:class:`PhantomParams`, drawn from a seed by ``PhantomParams.random``), the defects
and file formats a phantom can have, and the purposes of its random streams.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from core.errors import CspineError

# Purposes of the random streams (SeedSequence([seed, purpose])), kept together so they stay distinct:
# the parameters here, the anatomy in core/demo/phantom_draw.py, texture, noise and warp in core/demo/phantom.py,
# the batch in core/demo/phantom_files.py.
STREAM_PARAMS, STREAM_ANATOMY, STREAM_TEXTURE, STREAM_NOISE, STREAM_WARP, STREAM_BATCH = 101, 202, 303, 404, 505, 606

DEFECTS = ("airway_posterior", "elements_swapped", "missing_vertebra", "doubled_vertebra", "distortion")
FORMATS = ("png", "jpeg", "tiff", "dicom")
SUFFIXES = {"png": ".png", "jpeg": ".jpg", "tiff": ".tif", "dicom": ".dcm"}
FORMAT_ALIASES = {"jpg": "jpeg", "tif": "tiff", "dcm": "dicom"}


class PhantomError(CspineError, ValueError):
    """A bad phantom parameter (the message names it and the allowed values)."""


@dataclass
class PhantomParams:
    """Everything that varies between phantoms. ``PhantomParams.random(seed, **overrides)`` draws them."""

    seed: int = 0
    height: int = 1500                 # pixels
    aspect: float = 0.76               # width / height (portrait ~0.70-0.82)
    facing: str = "left"               # 'left' (face on the image's left) | 'right' (mirror)
    negative: bool = False             # stored with bone dark
    bit_depth: int = 8                 # 8 | 16 (jpeg: 8 only)
    format: str = "png"                # png | jpeg | tiff | dicom
    defect: str | None = None          # None | one of DEFECTS
    cobb_deg: float = 25.0             # C2-C7 lordosis (angle between the C2 and C7 bodies)
    tilt_deg: float = 0.0              # whole-neck lean (positive: forward)
    fov_mm: float = 230.0              # vertical field of view
    marker: str = "L"                  # side marker letter: 'L' | 'R' | '' (none)
    modality: str = "DX"               # DICOM only: DX | CR
    bits_stored: int = 16              # DICOM 16-bit only: 12 | 14 | 16
    rescale: bool = False              # DICOM CR only: write a non-identity RescaleSlope/Intercept
    noise: float = 0.015               # quantum noise level
    jpeg_quality: int = 92

    def __post_init__(self) -> None:
        self.seed = int(self.seed)
        if self.seed < 0:
            raise PhantomError(f"phantom seed must be >= 0, got {self.seed}")
        self.format = FORMAT_ALIASES.get(str(self.format).lower(), str(self.format).lower())
        if self.format not in FORMATS:
            raise PhantomError(f"phantom format must be one of {FORMATS}, got {self.format!r}")
        if self.facing not in ("left", "right"):
            raise PhantomError(f"phantom facing must be 'left' or 'right', got {self.facing!r}")
        self.bit_depth = int(self.bit_depth)
        if self.bit_depth not in (8, 16):
            raise PhantomError(f"phantom bit_depth must be 8 or 16, got {self.bit_depth}")
        if self.format == "jpeg" and self.bit_depth != 8:
            raise PhantomError("JPEG phantoms are 8-bit; use png, tiff or dicom for 16-bit")
        if self.defect == "":
            self.defect = None
        if self.defect is not None and self.defect not in DEFECTS:
            raise PhantomError(f"phantom defect must be None or one of {DEFECTS}, got {self.defect!r}")
        if self.marker not in ("L", "R", ""):
            raise PhantomError(f"phantom marker must be 'L', 'R' or '', got {self.marker!r}")
        if self.modality not in ("DX", "CR"):
            raise PhantomError(f"phantom modality must be 'DX' or 'CR', got {self.modality!r}")
        if self.bits_stored not in (12, 14, 16):
            raise PhantomError(f"phantom bits_stored must be 12, 14 or 16, got {self.bits_stored}")
        self.height = int(self.height)
        if self.height < 16 or not 0.3 <= self.aspect <= 3.0:
            raise PhantomError(f"phantom size out of range: height={self.height}, aspect={self.aspect}")

    @property
    def width(self) -> int:
        return max(16, int(round(self.height * self.aspect)))

    @property
    def suffix(self) -> str:
        return SUFFIXES[self.format]

    @classmethod
    def random(cls, seed: int, **overrides) -> "PhantomParams":
        """Draw every parameter from ``seed``; keyword overrides replace single draws (the others stay)."""
        names = {f.name for f in fields(cls)}
        unknown = set(overrides) - names
        if unknown:
            raise TypeError(f"unknown PhantomParams field(s): {sorted(unknown)}")
        seed = int(seed)
        if seed < 0:
            raise PhantomError(f"phantom seed must be >= 0, got {seed}")
        rng = np.random.default_rng([seed, STREAM_PARAMS])
        d: dict = {"seed": seed}
        d["height"] = int(rng.integers(900, 2501))
        d["aspect"] = float(rng.uniform(0.70, 0.82))
        d["facing"] = "right" if rng.random() < 0.3 else "left"
        d["negative"] = bool(rng.random() < 0.25)
        d["format"] = FORMATS[int(rng.integers(len(FORMATS)))]
        d["bit_depth"] = 16 if rng.random() < 0.5 else 8
        straight = rng.random() < 0.2
        d["cobb_deg"] = float(rng.uniform(0, 8) if straight else rng.uniform(12, 40))
        d["tilt_deg"] = float(rng.uniform(-8, 8))
        d["fov_mm"] = float(rng.uniform(190, 235))
        d["marker"] = "L" if rng.random() < 0.6 else "R"
        d["modality"] = "DX" if rng.random() < 0.6 else "CR"
        d["bits_stored"] = (12, 14, 16)[int(rng.integers(3))]
        d["rescale"] = bool(rng.random() < 0.5)
        d["noise"] = float(rng.uniform(0.008, 0.022))
        d["jpeg_quality"] = int(rng.integers(85, 97))
        d["defect"] = None
        d.update(overrides)
        if d["format"] in ("jpeg", "jpg") and "bit_depth" not in overrides:
            d["bit_depth"] = 8
        if int(d["bit_depth"]) == 16 and d["format"] in ("jpeg", "jpg") and "format" not in overrides:
            d["format"] = "png"
        return cls(**d)
