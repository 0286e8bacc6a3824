"""Procedural lateral cervical-spine radiographs ("phantoms") for the demo and the tests.

Every image is deterministic from its seed: the same seed and the same parameters give bit-identical
pixels and files. The anatomy (reference/anatomy.md) is laid out in millimetres on a curve (the posterior
vertebral line) with a random lordosis, drawn at a working resolution as soft-edged shapes into three
density layers (soft tissue, textured bone, cortex), turned into a positive film (bone bright, air dark)
through an exposure curve, upsampled to the target size and finished there (collimation, side marker,
quantum noise). Default geometry: the patient faces LEFT (face and airway on the image's left).

Random streams are split by purpose (``SeedSequence([seed, k])``), so overriding one parameter (facing,
format, defect, ...) never changes the anatomy drawn for a seed; a defect variant is the clean film with
one thing wrong.

Public API: :class:`PhantomParams`, :func:`render`, :func:`render_canonical`, :func:`landmarks`,
:data:`DEFECTS`. Writing files (one phantom, a batch with labels.csv, a contact sheet) is core/phantom_files.py.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
from PIL import Image
from scipy import ndimage

from core.errors import CspineError

DEFECTS = ("airway_posterior", "elements_swapped", "missing_vertebra", "doubled_vertebra", "distortion")
FORMATS = ("png", "jpeg", "tiff", "dicom")
SUFFIXES = {"png": ".png", "jpeg": ".jpg", "tiff": ".tif", "dicom": ".dcm"}
_FORMAT_ALIASES = {"jpg": "jpeg", "tif": "tiff", "dcm": "dicom"}
LEVELS = ("C2", "C3", "C4", "C5", "C6", "C7", "T1")
WORK_HEIGHT = 512          # anatomy is drawn at most this tall, then upsampled



class PhantomError(CspineError, ValueError):
    """A bad phantom parameter (the message names it and the allowed values)."""


# purposes of the random streams (SeedSequence([seed, purpose])); _S_BATCH: core/phantom_files.generate
_S_PARAMS, _S_ANATOMY, _S_TEXTURE, _S_NOISE, _S_WARP, _S_BATCH = 101, 202, 303, 404, 505, 606


# ----------------------------------------------------------------------------------------------- params

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
        self.format = _FORMAT_ALIASES.get(str(self.format).lower(), str(self.format).lower())
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
        rng = np.random.default_rng([seed, _S_PARAMS])
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


# ------------------------------------------------------------------------------------- shape helpers

def _unit(x):
    """clip(x, 0, 1) without np.clip's Python overhead (this runs ~100 times per small image)."""
    return np.minimum(np.maximum(x, 0.0), 1.0)


def _smooth(e0: float, e1: float, x):
    t = _unit((x - e0) / (e1 - e0))
    return t * t * (3.0 - 2.0 * t)


def _sd_convex(X, Y, pts: np.ndarray):
    """Signed distance (exact inside, approximate outside) to a convex polygon given by its vertices."""
    c = pts.mean(axis=0)
    sd = None
    for i in range(len(pts)):
        a, b = pts[i], pts[(i + 1) % len(pts)]
        e = b - a
        n = np.array([e[1], -e[0]]) / (math.hypot(e[0], e[1]) + 1e-9)
        if (c - a) @ n > 0:
            n = -n
        d = (X - a[0]) * n[0] + (Y - a[1]) * n[1]
        sd = d if sd is None else np.maximum(sd, d)
    return sd


def _sd_capsule(X, Y, a, b, r0: float, r1: float):
    """Distance to a segment a-b whose radius tapers from r0 to r1."""
    ex, ey = b[0] - a[0], b[1] - a[1]
    L2 = ex * ex + ey * ey + 1e-9
    px, py = X - a[0], Y - a[1]
    t = _unit((px * ex + py * ey) / L2)
    return np.hypot(px - t * ex, py - t * ey) - (r0 + (r1 - r0) * t)


def _smax(a, b, k: float):
    """Smooth maximum (rounds the corner where two regions meet)."""
    h = np.maximum(k - np.abs(a - b), 0.0) / k
    return np.maximum(a, b) + h * h * k * 0.25


def _sd_ellipse(X, Y, c, a: float, b: float, ang: float):
    ca, sa = math.cos(ang), math.sin(ang)
    dx, dy = X - c[0], Y - c[1]
    u, v = dx * ca + dy * sa, -dx * sa + dy * ca
    k = np.sqrt((u / a) ** 2 + (v / b) ** 2) + 1e-6
    g = np.sqrt((u / (a * a)) ** 2 + (v / (b * b)) ** 2) + 1e-6
    return (k - 1.0) * k / g


class _Canvas:
    """Density layers on a pixel grid measured in millimetres (sx, sy: mm per pixel)."""

    def __init__(self, h: int, w: int, sx: float, sy: float):
        self.h, self.w, self.sx, self.sy = h, w, sx, sy
        self.aa = 0.5 * (sx + sy)
        self.soft = np.zeros((h, w), np.float32)
        self.marrow = np.zeros((h, w), np.float32)
        self.bone = np.zeros((h, w), np.float32)
        self.xs = ((np.arange(w) + 0.5) * sx).astype(np.float32)
        self.ys = ((np.arange(h) + 0.5) * sy).astype(np.float32)

    def win(self, x0, x1, y0, y1):
        c0, c1 = max(0, int(math.floor(x0 / self.sx))), min(self.w, int(math.ceil(x1 / self.sx)) + 1)
        r0, r1 = max(0, int(math.floor(y0 / self.sy))), min(self.h, int(math.ceil(y1 / self.sy)) + 1)
        if c0 >= c1 or r0 >= r1:
            return None
        return (slice(r0, r1), slice(c0, c1)), self.xs[None, c0:c1], self.ys[r0:r1, None]

    def _put(self, sl, sd, fill, rim, rim_t, layer, edge=0.0):
        cov = _unit(0.5 - sd * (1.0 / max(self.aa, edge)))
        if fill:
            getattr(self, layer)[sl] += fill * cov
        if rim:
            cov -= _unit(0.5 - (sd + rim_t) * (1.0 / self.aa))
            self.bone[sl] += rim * cov

    def poly(self, pts, fill, rim=0.0, rim_t=1.0, layer="marrow", edge=0.0):
        pts = np.asarray(pts, float)
        m = 2 * max(self.aa, edge)
        w = self.win(pts[:, 0].min() - m, pts[:, 0].max() + m, pts[:, 1].min() - m, pts[:, 1].max() + m)
        if w:
            self._put(w[0], _sd_convex(w[1], w[2], pts), fill, rim, rim_t, layer, edge)

    def capsule(self, a, b, r0, r1, fill, rim=0.0, rim_t=1.0, layer="marrow", edge=0.0):
        m = max(r0, r1) + 2 * max(self.aa, edge)
        w = self.win(min(a[0], b[0]) - m, max(a[0], b[0]) + m, min(a[1], b[1]) - m, max(a[1], b[1]) + m)
        if w:
            self._put(w[0], _sd_capsule(w[1], w[2], a, b, r0, r1), fill, rim, rim_t, layer, edge)

    def ellipse(self, c, a, b, ang, fill, rim=0.0, rim_t=1.0, layer="marrow", edge=0.0):
        m = max(a, b) + 2 * max(self.aa, edge)
        w = self.win(c[0] - m, c[0] + m, c[1] - m, c[1] + m)
        if not w:
            return
        self._put(w[0], _sd_ellipse(w[1], w[2], c, a, b, ang), fill, rim, rim_t, layer, edge)

    def union(self, parts, fill, rim=0.0, rim_t=1.0, layer="marrow", edge=0.0):
        """One bone made of several parts (no double density where they overlap, one outline)."""
        pts, rad = [], []
        for kind, *q in parts:
            if kind == "c":
                pts += [q[0], q[1]]
                rad.append(max(q[2], q[3]))
            elif kind == "p":
                pts += list(q[0])
            else:
                pts.append(q[0])
                rad.append(max(q[1], q[2]))
        pts = np.asarray(pts, float)
        m = max(rad + [0.0]) + 2 * max(self.aa, edge)
        w = self.win(pts[:, 0].min() - m, pts[:, 0].max() + m, pts[:, 1].min() - m, pts[:, 1].max() + m)
        if not w:
            return
        sds = []
        for kind, *q in parts:
            if kind == "c":
                sds.append(_sd_capsule(w[1], w[2], *q))
            elif kind == "p":
                sds.append(_sd_convex(w[1], w[2], np.asarray(q[0], float)))
            else:
                sds.append(_sd_ellipse(w[1], w[2], *q))
        self._put(w[0], np.min(sds, axis=0), fill, rim, rim_t, layer, edge)

    def box(self, c, eu, hu, hv, r, fill, rim=0.0, rim_t=1.0, layer="marrow", edge=0.0, conc=0.0):
        """Rounded rectangle centred at c, half sizes hu (along eu) and hv (along the normal of eu)."""
        m = hu + hv + 2 * max(self.aa, edge)
        w = self.win(c[0] - m, c[0] + m, c[1] - m, c[1] + m)
        if not w:
            return
        dx, dy = w[1] - c[0], w[2] - c[1]
        u = dx * eu[0] + dy * eu[1]
        v = -dx * eu[1] + dy * eu[0]
        qx, qy = np.abs(u) - (hu - r), np.abs(v) - (hv - r)
        sd = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0) - r
        if conc:        # slightly concave faces (waisted bodies, cupped end plates)
            sd = sd + conc * (1 - np.clip(v / hv, -1, 1) ** 2) + 0.5 * conc * (1 - np.clip(u / hu, -1, 1) ** 2)
        self._put(w[0], sd, fill, rim, rim_t, layer, edge)


# ------------------------------------------------------------------------------------------- anatomy

class _Anatomy:
    """The layout of one phantom in millimetres, left-facing; x to the right (posterior), y down."""

    def __init__(self, p: PhantomParams):
        rng = np.random.default_rng([p.seed, _S_ANATOMY])
        U = rng.uniform
        self.H = H = p.fov_mm
        self.W = W = p.fov_mm * p.aspect
        sz = U(0.92, 1.08)
        # ---- the column: C2..T1 body heights, depths, discs, spinous processes
        self.hts = np.array([U(18, 21)] + [U(13, 15.5) for _ in range(5)] + [U(15, 17)]) * sz
        self.deps = np.array([15.5, 16, 16.5, 17, 17.5, 18, 19]) * sz * U(0.95, 1.05, 7)
        discs = np.array([4.0, 4.5, 5.0, 5.0, 4.5, 4.0]) * sz * U(0.7, 1.1, 6)
        if rng.random() < 0.35:                                  # one degenerate, narrowed disc
            discs[int(rng.integers(2, 5))] *= U(0.3, 0.55)
        self.discs = np.append(discs, 4.0)
        self.sp_len = np.array([26, 10, 11, 13, 19, 29, 31]) * sz * U(0.85, 1.15, 7)
        self.sp_ang = np.radians(np.array([16, 38, 36, 33, 28, 24, 26]) + U(-5, 5, 7))
        self.osteo = rng.random(7) < 0.18                         # anterior osteophytes
        self.conc = U(0.3, 1.0, 7)
        self.body_rot = np.radians(U(-3, 3, 7))
        self.pillar_off = (U(0.8, 2.2), U(-1.5, 1.5))
        self.dens_h = U(13, 16) * sz
        centres, s = [], self.dens_h
        for k in range(7):
            centres.append(s + self.hts[k] / 2)
            s += self.hts[k] + self.discs[k]
        self.s_c = np.array(centres)
        self.s_end = s
        # ---- lordosis: phi(s) = lean of the "up" direction toward anterior, linear in t**gamma
        gamma = U(0.7, 1.4)
        tilt, cobb = math.radians(p.tilt_deg), math.radians(p.cobb_deg)
        sg = np.arange(-90.0, s + 160.0, 0.5)
        t = np.clip((sg - self.s_c[0]) / (self.s_c[5] - self.s_c[0]), 0, 1) ** gamma
        phi = tilt + cobb * (t - 0.5)
        dx, dy = np.sin(phi), np.cos(phi)
        px = np.concatenate([[0], np.cumsum((dx[1:] + dx[:-1]) * 0.25)])
        py = np.concatenate([[0], np.cumsum((dy[1:] + dy[:-1]) * 0.25)])
        i0 = int(np.argmin(np.abs(sg)))
        px, py = px - px[i0], py - py[i0]
        c4 = np.interp(self.s_c[2], sg, px)
        c7b = np.interp(self.s_c[5] + self.hts[5] / 2, sg, py)
        x_post = U(0.50, 0.60) * W
        y_tip = float(np.clip(U(0.85, 0.97) * H - c7b, 0.10 * H, 0.30 * H))
        self.sg, self.phi = sg, phi
        self.px, self.py = px + (x_post - c4), py + y_tip
        # ---- per level flags
        self.defect = p.defect
        self.defect_k = int(rng.integers(1, 5))                  # C3..C6
        self.double_off = (-U(0.55, 0.8), U(0.3, 0.5))           # (x depth, x height)
        # ---- C1 and C2
        self.u_dens = -self.deps[0] / 2 + 1.0
        self.adi = U(2.0, 3.0)
        # ---- head frame at the dens tip
        self.tip = self.loc(0.0, self.u_dens, 0.0)
        self.phi_h = math.radians(0.3 * p.tilt_deg + U(-7, 9))      # the face looks roughly ahead
        self.vault = (U(-15, -5), U(-92, -76), U(88, 100) * sz, U(72, 84) * sz, math.radians(U(-10, 10)))
        self.occ_cut = U(18, 30)
        self.mastoid = (U(10, 18), U(-16, -9), U(7, 9), U(12, 15))
        self.petrous = (U(-2, 8), U(-44, -36))
        # ---- jaw, in the head frame: gonion near C2-C3, occlusal plane, palate above it
        gu, gv = -self.deps[0] / 2 - 1 - U(4, 14), U(30, 40)
        self.mpa = math.radians(U(18, 30))                       # mandibular plane below the head's horizontal
        self.occ_ang = self.mpa * U(0.3, 0.5)
        self.occ0 = (gu - U(26, 32), gv - U(14, 19))             # occlusal plane at the ramus' anterior border
        self.pns = (self.occ0[0] + U(-2, 6), self.occ0[1] - U(18, 23))
        self.palate_len = U(45, 55)
        self.tooth_jit = U(-1.5, 1.5, 16)
        # ---- mandible: gonion near C2-C3, plane sloping down anteriorly
        self.condyle = (-self.deps[0] / 2 - U(0, 8), U(-24, -16))
        self.gonion = self.head(gu, gv)
        self.mand_double = (U(2, 6), U(1, 4))
        self.chin_len = U(85, 100)
        # ---- soft tissue: prevertebral thickness and airway width at knots along s
        k = [-60, -25, 0] + list(self.s_c)
        self.pv_knots = (k, [16, U(10, 14), U(5, 9), U(3, 6), U(4, 7), U(6, 11), U(13, 17), U(14, 19),
                             U(14, 20), U(14, 20)])
        self.aw_knots = (k, [U(10, 14), U(13, 18), U(11, 15), U(9, 14), U(11, 16), U(12, 17), U(11, 15),
                             U(13, 17), U(14, 18), U(14, 18)])
        self.air_top = -U(28, 38)
        self.air_k = U(0.55, 0.72)
        self.ant_knots = (k, [U(15, 20), U(15, 20), U(14, 20), U(12, 18), U(12, 18), U(14, 22), U(12, 18),
                              U(14, 22), U(18, 28), U(22, 32)])
        self.sub_t = U(8, 14)
        self.nape = (U(68, 88), U(15, 35))
        self.hyoid = (self.s_c[1] + U(0, 6), U(6, 10))
        self.tissue = U(0.40, 0.50)
        self.shoulder = (U(0.10, 0.30), U(20, 50), U(-10, 25))
        self.post_air = U(30, 40)
        # ---- film
        self.g0 = U(1.0, 1.25)
        self.gdrop = U(0.12, 0.35)
        self.fog = U(0.02, 0.07)
        self.gamma = U(0.85, 1.2)
        self.tex_amp = U(0.07, 0.15)
        self.processing = (U(0.1, 0.5), U(0.0, 0.4), U(0.0, 0.35)) if rng.random() < 0.8 else (0.0, 0.0, 0.0)
        self.collim = []
        for side in ("left", "right", "top", "bottom"):
            if rng.random() < 0.3:
                self.collim.append((side, U(0.0, 0.06), math.radians(U(-2, 2))))
        self.collim_val = U(0.8, 0.95) if rng.random() < 0.7 else U(0.0, 0.04)
        self.marker_corner = int(rng.integers(4))
        self.marker_box = rng.random() < 0.5
        self.marker_size = U(0.03, 0.045)
        # extras: dental fillings, an earring below the ear lobe
        self.fillings = [int(i) for i in np.nonzero(rng.random(8) < 0.12)[0]]
        self.earring = (U(-4, 6), U(12, 22), U(3.0, 5.0)) if rng.random() < 0.15 else None

    # geometry along the curve
    def frame(self, s: float):
        ph = float(np.interp(s, self.sg, self.phi))
        o = np.array([np.interp(s, self.sg, self.px), np.interp(s, self.sg, self.py)])
        return o, np.array([math.cos(ph), -math.sin(ph)]), np.array([math.sin(ph), math.cos(ph)])

    def loc(self, s: float, u: float, v: float) -> np.ndarray:
        o, eu, ev = self.frame(s)
        return o + u * eu + v * ev

    def head(self, u: float, v: float) -> np.ndarray:
        c, s = math.cos(self.phi_h), math.sin(self.phi_h)
        return self.tip + u * np.array([c, -s]) + v * np.array([s, c])

    def depth_at(self, s):
        return np.interp(s, [0.0, self.dens_h * 0.8] + list(self.s_c), [self.deps[0] + 5] * 2 + list(self.deps))

    def airway_line(self, posterior: bool = False):
        """(x, y, width) of the airway's centre line sampled along s (left-facing mm)."""
        sg = self.sg
        pv = np.interp(sg, *self.pv_knots)
        aw = np.interp(sg, *self.aw_knots)
        c, s = np.cos(self.phi), np.sin(self.phi)           # eu = (c, -s)
        if posterior:                                       # behind the column, kept inside the film
            off = np.minimum(self.post_air + aw / 2, (self.W - 4 - aw / 2 - self.px) / np.maximum(c, 0.5))
        else:
            off = -(self.depth_at(sg) + pv + aw / 2)
        return self.px + off * c, self.py - off * s, aw

    def neck_front(self):
        x, y, aw = self.airway_line()
        ant = np.interp(self.sg, *self.ant_knots)
        c, s = np.cos(self.phi), np.sin(self.phi)
        off = aw / 2 + ant
        return x - off * c, y + off * s


def _vertebra(cv: _Canvas, a: _Anatomy, k: int, shift=(0.0, 0.0), mirror: bool = False) -> None:
    """Draw level k (0 = C2 with dens and C1, ... 6 = T1); shift in (depth, height) fractions."""
    h, d = a.hts[k], a.deps[k]
    o, eu, ev = a.frame(a.s_c[k])
    o = o + shift[0] * d * eu + shift[1] * h * ev

    def P(u, v):
        if mirror:
            u = -d - u
        return o + u * eu + v * ev

    # body: cortex, brighter end plates, trabecular marrow
    cr, sr = math.cos(a.body_rot[k]), math.sin(a.body_rot[k])
    eb = np.array([eu[0] * cr - eu[1] * sr, eu[0] * sr + eu[1] * cr])     # bodies sit a little askew
    cv.box(P(-d / 2, 0), eb, d / 2, h / 2, 2.0, 0.30, rim=0.2, rim_t=1.1, edge=0.7, conc=a.conc[k])
    for sgn in (-1, 1):
        cv.capsule(P(-d + 1.8, sgn * (h / 2 - 0.8)), P(-1.8, sgn * (h / 2 - 0.8)), 0.7, 0.7, 0.08, layer="bone")
    if a.osteo[k]:
        cv.ellipse(P(-d + 0.3, h / 2 - 0.8), 2.4, 1.3, math.atan2(eu[1], eu[0]) + 0.7, 0.2, rim=0.1, rim_t=0.8)
    sa, L = a.sp_ang[k], a.sp_len[k]
    ax = math.atan2(eu[1], eu[0])
    if k == 0:                                                # C2: dens, big posterior elements
        ud = a.u_dens
        cv.capsule(P(ud, -h / 2 + 2), P(ud, -h / 2 - a.dens_h + 4.5), 4.8, 4.3, 0.30, rim=0.2, rim_t=1.1,
                   edge=0.7)
        cv.ellipse(P(-d + 1.0, h / 2 - 1.5), 2.5, 3.0, 0.0, 0.12, edge=0.7)
        tip = P(16 + L * math.cos(sa), 2 + L * math.sin(sa))
        cv.union([("c", P(-2, -h * 0.25), P(8, -h * 0.5 - 3), 4.2, 4.0),
                  ("p", [P(3, h * 0.3 - 10), P(14, h * 0.3 - 3), P(14, h * 0.3 + 10), P(3, h * 0.3 + 3)]),
                  ("c", P(9, 1), P(17, 3), 4.0, 4.5),
                  ("c", P(16, 2), tip, 6.0, 4.5),
                  ("e", P(16 + L * math.cos(sa), 2 + L * math.sin(sa) - 3), 4.5, 3.2, ax + sa),
                  ("e", P(16 + L * math.cos(sa), 2 + L * math.sin(sa) + 3), 4.5, 3.2, ax + sa)],
                 0.24, rim=0.2, rim_t=1.3, edge=0.8)
        # C1: anterior arch, lateral masses, posterior arch with tubercle
        v1 = -h / 2 - a.dens_h * 0.55
        cv.ellipse(P(ud - 4.8 - a.adi - 3.2, v1), 3.2, 5.5, ax, 0.26, rim=0.2, rim_t=1.0, edge=0.7)
        cv.box(P(ud + 4, v1 + 1), eu, 8.0, 6.5, 3.0, 0.16, rim=0.05, edge=1.5)
        cv.union([("c", P(ud + 10, v1 + 1), P(ud + 34, v1 - 2), 2.8, 3.4),
                  ("e", P(ud + 35, v1 - 2), 3.4, 4.4, ax)], 0.2, rim=0.15, rim_t=1.0, edge=0.7)
        return
    disc = a.discs[k] if k < 6 else 4.0
    uc, vc, hw = 8.5, 0.5, 5.5
    hh, off = (h + disc) / 2 - 0.75, 3.6
    cv.capsule(P(-1, -h * 0.18), P(uc - 3, -h * 0.15), h * 0.17, h * 0.15, 0.08, edge=1.0)
    pairs = ((0.0, 0.0, 1.0), a.pillar_off + (0.5,)) if cv.aa < 1.5 else ((0.0, 0.0, 1.0),)
    for du, dv, amp in pairs:                         # left and right pillars, not quite superimposed
        cv.poly([P(du + uc - hw, dv + vc - hh - off), P(du + uc + hw, dv + vc - hh + off),
                 P(du + uc + hw, dv + vc + hh + off), P(du + uc - hw, dv + vc + hh - off)], 0.24 * amp,
                rim=0.10 * amp, rim_t=1.0, edge=0.8)
    tip = P(uc + 8 + L * math.cos(sa), vc + 3.5 + L * math.sin(sa))
    r0, r1 = (4.2, 1.8) if k < 4 else ((4.6, 2.2) if k == 4 else (5.2, 2.6))
    cv.union([("c", P(uc + 5, vc + 2), P(uc + 8, vc + 3.5), 2.6, 3.2),
              ("c", P(uc + 8, vc + 3.5), tip, r0, r1),
              ("e", tip, r1 + 1.2, r1 + 0.4 if k >= 4 else r1, ax + sa)], 0.2, rim=0.16, rim_t=1.2, edge=0.8)


def _draw_head(cv: _Canvas, a: _Anatomy) -> None:
    hd = a.head
    eu_h = np.array([math.cos(a.phi_h), -math.sin(a.phi_h)])
    rot = -a.phi_h
    # skull vault: brain and both parietal bones (smooth), occipital bone as a ring posterior of occ_cut
    cu, cvv, va, vb, vang = a.vault
    c = hd(cu, cvv)
    ang = vang - a.phi_h
    cv.ellipse(c, va, vb, ang, 0.22, layer="soft", edge=8.0)
    w = cv.win(c[0] - va - 10, c[0] + va + 10, c[1] - va - 10, c[1] + va + 10)
    if w:
        sl, X, Y = w
        ca, sa = math.cos(ang), math.sin(ang)
        dx, dy = X - c[0], Y - c[1]
        u, v = dx * ca + dy * sa, -dx * sa + dy * ca
        sd = (np.sqrt((u / va) ** 2 + (v / vb) ** 2) - 1.0) * min(va, vb)
        t = max(1.2, cv.aa)
        ring = np.exp(-((sd + 1.2) / t) ** 2) + 0.5 * np.exp(-((sd + 4.0) / (1.5 * t)) ** 2) \
            + 0.8 * np.exp(-((sd + 7.0) / t) ** 2)
        hu = (X - a.tip[0]) * math.cos(a.phi_h) - (Y - a.tip[1]) * math.sin(a.phi_h)
        cv.bone[sl] += (0.35 * ring * _smooth(a.occ_cut, a.occ_cut + 15, hu)).astype(np.float32)
    # skull base: a dense mass, the clivus, the petrous ridge, mastoid (air cells), occipital condyles
    cv.ellipse(hd(-18, -30), 32, 18, rot - 0.5, 0.16, edge=8.0)
    cv.capsule(hd(-3, -7), hd(-18, -42), 4.0, 8.0, 0.20, rim=0.06, rim_t=1.5, edge=3.0)
    pu, pv = a.petrous
    cv.ellipse(hd(pu, pv), 26, 8, rot - math.radians(25), 0.2, edge=7.0)
    mu, mv, ma, mb = a.mastoid
    cv.union([("e", hd(mu, mv - 4), ma, mb * 0.7, rot + 0.25), ("c", hd(mu - 2, mv), hd(mu - 4, mv + mb), 5.0, 2.0)],
             0.15, rim=0.04, rim_t=1.2, edge=3.0)
    cv.ellipse(hd(6, -4), 8, 5, rot, 0.14, edge=2.5)
    # face: maxilla with its sinus, hard palate, teeth (left and right slightly offset)
    pu, pv = a.pns
    pl = a.palate_len
    cv.ellipse(hd(pu - 30, pv - 22), 36, 24, rot, 0.15, edge=8.0)
    cv.ellipse(hd(pu - 26, pv - 19), 17, 10, rot - 0.15, -0.07, rim=0.04, rim_t=1.0, edge=5.0)
    cv.capsule(hd(pu + 3, pv - 4), hd(pu + 7, pv - 32), 2.0, 3.0, 0.10, edge=2.0)
    cv.capsule(hd(pu, pv), hd(pu - pl, pv - 4), 2.2, 3.2, 0.26, rim=0.12, edge=1.0)
    # teeth along the occlusal plane (molars, premolars), left and right slightly offset
    ou, ov = a.occ0
    ca, sa = math.cos(a.occ_ang), math.sin(a.occ_ang)
    oa = np.array([-ca, sa])                                   # along the plane, anterior (head frame)
    on = np.array([sa, ca])                                    # its normal, pointing down

    def T(t, n):
        return hd(ou + t * oa[0] + n * on[0], ov + t * oa[1] + n * on[1])

    ang_o = math.atan2(-on[0], on[1])
    e_o = np.array([math.cos(rot + ang_o), math.sin(rot + ang_o)])
    detail = cv.aa < 0.8                                       # skip fine parts on small canvases
    for side, amp in ((0.0, 1.0), (3.0, 0.55)) if cv.aa < 1.5 else ((0.0, 1.0),):
        for i in range(4):
            t = 5 + 9.5 * i + a.tooth_jit[i] + side
            for sgn in (-1, 1):
                jj = a.tooth_jit[8 + i] if sgn > 0 else a.tooth_jit[4 + i]
                cw = 4.6 if i < 2 else 3.8
                e_t = np.array([math.cos(rot + ang_o + 0.06 * jj), math.sin(rot + ang_o + 0.06 * jj)])
                cv.box(T(t, sgn * (3.8 + 0.2 * jj)), e_t, cw + 0.2 * jj, 3.6, 2.2, 0.14 * amp,
                       rim=0.12 * amp, rim_t=1.4, layer="bone", edge=1.4)
                if side == 0.0 and (i + 4 * (sgn > 0)) in a.fillings:      # amalgam: very dense
                    cv.ellipse(T(t, sgn * 2.6), 2.6, 1.6, rot + ang_o, 1.2, layer="bone", edge=0.6)
                for dr in ((-1.6, 1.6) if i < 2 else (0.0,)) if detail else ():
                    cv.capsule(T(t + dr, sgn * 6), T(t + dr * 1.3 + 0.6 * jj, sgn * 17),
                               2.2 if i < 2 else 2.6, 0.9, 0.07 * amp, layer="bone", edge=1.0)
    # mandible: rounded ramus and body bands, drawn twice (the two halves project slightly offset)
    G = a.gonion
    Cd = hd(*a.condyle)
    bdir = np.array([-math.cos(a.mpa + a.phi_h), math.sin(a.mpa + a.phi_h)])   # anterior and down
    up = np.array([bdir[1], -bdir[0]])
    if up[1] > 0:
        up = -up
    hd_ant = -eu_h
    rdir = (G - Cd) / (np.linalg.norm(G - Cd) + 1e-9)
    bdir2 = bdir + 0.12 * up
    for (du, dv), amp in (((0.0, 0.0), 1.0), (a.mand_double, 0.45)):
        off = np.array([du, dv])
        g, cd = G + off, Cd + off
        mid = g + 40 * bdir + 12.5 * up
        parts = [(g + 12 * bdir + 12 * up, mid, 12.0, 12.5),                                # body
                 (mid, mid + (a.chin_len - 40) * bdir2 + 2 * up, 12.5, 15.0),
                 (cd + 9 * rdir + 5 * hd_ant, g + 9 * up + 5 * bdir, 6.5, 10.5),            # ramus
                 (cd + 14 * rdir + 14 * hd_ant, cd + 2 * rdir + 26 * hd_ant, 6.0, 2.0)]      # coronoid
        pts = np.array([q for a0, b0, r0, r1 in parts for q in (a0, b0)])
        m = 16 + 3 * cv.aa
        w = cv.win(pts[:, 0].min() - m, pts[:, 0].max() + m, pts[:, 1].min() - m, pts[:, 1].max() + m)
        if w:
            sd = np.min([_sd_capsule(w[1], w[2], a0, b0, r0, r1) for a0, b0, r0, r1 in parts], axis=0)
            cv._put(w[0], sd, 0.08 * amp, 0.2 * amp, 2.0, "marrow", edge=1.2)
        cv.ellipse(cd, 4.5, 6.0, 0.3 - a.phi_h, 0.14 * amp, rim=0.12 * amp, edge=1.0)
    if a.earring is not None:                                  # a metal ring hanging below the ear lobe
        eu_, ev_, er = a.earring
        cv.ellipse(hd(eu_, ev_), er, er * 1.3, rot, 0.0, rim=1.0, rim_t=0.9, layer="bone", edge=0.5)
    # hyoid with its greater horn
    hs, hgap = a.hyoid
    xs, ys, aw = a.airway_line()
    i = int(np.argmin(np.abs(a.sg - hs)))
    _, eu, ev = a.frame(hs)
    hy = np.array([xs[i], ys[i]]) - eu * (aw[i] / 2 + hgap)
    cv.ellipse(hy, 5.5, 3.5, 0.5, 0.2, rim=0.15, rim_t=1.0)
    cv.capsule(hy + 3 * eu, hy + 24 * eu - 9 * ev, 1.3, 0.9, 0.06, rim=0.05, edge=0.8)


def _draw_soft(cv: _Canvas, a: _Anatomy) -> None:
    """Soft tissue (smooth, so computed at half resolution when the canvas is large)."""
    if cv.h >= 128:
        h2, w2 = (cv.h + 1) // 2, (cv.w + 1) // 2
        xs = ((np.arange(w2) + 0.5) * (a.W / w2)).astype(np.float32)
        ys = ((np.arange(h2) + 0.5) * (a.H / h2)).astype(np.float32)
        cv.soft += _resize(_soft_field(xs, ys, a), cv.h, cv.w, Image.BILINEAR)
    else:
        cv.soft += _soft_field(cv.xs, cv.ys, a)


def _soft_field(xs: np.ndarray, ys: np.ndarray, a: _Anatomy) -> np.ndarray:
    X, Y = xs[None, :], ys[:, None]
    # anterior neck line, face (above the submental line), chin
    fx, fy = a.neck_front()
    nf = np.interp(ys, fy, fx)[:, None]
    G = a.gonion
    slope = math.tan(a.mpa + a.phi_h)
    ymb = G[1] + np.maximum(G[0] - X, 0) * slope - np.maximum(X - G[0], 0) * 1.5
    front = _smax(X - nf, ymb + a.sub_t - Y, 14.0)
    chin_x = G[0] - a.chin_len * math.cos(a.mpa + a.phi_h)
    chin_y = G[1] + a.chin_len * math.sin(a.mpa + a.phi_h)
    front = np.minimum(front, np.maximum(X - (chin_x - 10), (chin_y - 40) - Y))
    front = np.maximum(front, X - nf)
    # posterior: nape line behind the spinous processes, widening into the back; head above
    t_nape, bulge = a.nape
    y_end = float(np.interp(a.s_end, a.sg, a.py))
    post_line = np.interp(ys, a.py, a.px) + t_nape + bulge * _smooth(y_end - 20, y_end + 40, ys)
    back = post_line[:, None] - X
    cu, cvv, va, vb, vang = a.vault
    c = a.head(cu, cvv)
    ang = vang - a.phi_h
    dx, dy = X - c[0], Y - c[1]
    u, v = dx * math.cos(ang) + dy * math.sin(ang), -dx * math.sin(ang) + dy * math.cos(ang)
    head = (1.0 - np.sqrt((u / (va + 8)) ** 2 + (v / (vb + 8)) ** 2)) * min(va, vb)
    inside = np.minimum(front, np.maximum(back, head))
    soft = a.tissue * np.sqrt(np.clip(inside / 30.0, 0, 1))
    # shoulders (a broad mass whose upper edge crosses C6-T1)
    amt, dy0, dx0 = a.shoulder
    y_c7 = float(np.interp(a.s_c[5], a.sg, a.py))
    sx0 = float(np.interp(y_c7, a.py, a.px)) + dx0
    d = 1.0 - np.sqrt(((X - sx0) / 120.0) ** 2 + ((Y - (y_c7 + dy0 + 60)) / 60.0) ** 2)
    soft = soft + amt * np.sqrt(np.clip(d * 4, 0, 1))
    # airway: a tube of air (normal: in front of the spine; defect: behind it)
    post = a.defect == "airway_posterior"
    axs, ays, aw = a.airway_line(posterior=post)
    ax = np.interp(ys, ays, axs)[:, None]
    hw = np.interp(ys, ays, aw)[:, None] / 2
    top_y = float(np.interp(a.air_top, a.sg, ays))
    tube = np.sqrt(np.clip(1 - ((X - ax) / hw) ** 2, 0, 1)) * _smooth(top_y, top_y + 10, Y)
    return (soft * (1 - a.air_k * tube)).astype(np.float32)


def _texture(rng, h: int, w: int, sx: float, sy: float):
    """Trabecular (band-pass) and low-frequency soft-tissue textures, unit std."""
    n = rng.standard_normal((h, w), dtype=np.float32)
    px = 0.5 * (sx + sy)
    f1 = ndimage.gaussian_filter(n, max(0.5, 0.7 / px), mode="wrap")
    f2 = ndimage.gaussian_filter(n, max(1.0, 3.0 / px), mode="wrap")
    tex = f1 - f2
    tex /= float(tex.std()) + 1e-6
    small = ndimage.zoom(n, 0.125, order=1) if min(h, w) >= 64 else n
    low = ndimage.gaussian_filter(small, max(1.0, 12.0 / (px * (h / small.shape[0]))), mode="wrap")
    low = _resize(low, h, w)
    low /= float(low.std()) + 1e-6
    return tex, low


def _resize(img: np.ndarray, h: int, w: int, resample=Image.BICUBIC) -> np.ndarray:
    if img.shape == (h, w):
        return img.astype(np.float32, copy=False)
    return np.array(Image.fromarray(img.astype(np.float32)).resize((w, h), resample), dtype=np.float32)


def _film(p: PhantomParams, h: int, w: int) -> tuple[np.ndarray, _Anatomy]:
    """The positive, left-facing, noise-free film at h x w (anatomy aspect from p, pixels may be non-square)."""
    a = _Anatomy(p)
    cv = _Canvas(h, w, a.W / w, a.H / h)
    _draw_soft(cv, a)
    _draw_head(cv, a)
    mirror = a.defect == "elements_swapped"
    for k in range(7):
        if a.defect == "missing_vertebra" and k == a.defect_k:
            continue
        _vertebra(cv, a, k, mirror=mirror)
        if a.defect == "doubled_vertebra" and k == a.defect_k:
            _vertebra(cv, a, k, shift=a.double_off)
    tex, low = _texture(np.random.default_rng([p.seed, _S_TEXTURE]), h, w, cv.sx, cv.sy)
    mar = np.maximum(cv.marrow, 0)
    D = cv.soft * (1 + 0.06 * low) + mar + cv.bone + (a.tex_amp * tex) * np.minimum(mar, 0.3)
    D = np.maximum(D, 0)
    blur = 0.3 / cv.aa                                       # focal spot / detector unsharpness
    if blur > 0.3:
        D = ndimage.gaussian_filter(D, blur, truncate=3.0)
    g = a.g0 * (1 - a.gdrop * _smooth(0.55, 1.0, (np.arange(h, dtype=np.float32) + 0.5) / h))[:, None]
    g = g * (1 + 0.06 * ((np.arange(w, dtype=np.float32) + 0.5) / w - 0.5))[None, :]
    v = 1 - np.exp(-g * D)
    v = a.fog + (1 - a.fog) * np.power(np.clip(v, 0, 1), a.gamma)
    v = _process(v, a, cv.aa)
    if a.defect == "distortion":
        v = _warp(v, np.random.default_rng([p.seed, _S_WARP]), a, cv)
    return v.astype(np.float32), a


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur; large sigmas on a block-averaged copy (the result is smooth anyway)."""
    f = int(sigma // 3)
    if f < 2 or min(img.shape) < 4 * f:
        return ndimage.gaussian_filter(img, sigma, mode="nearest", truncate=3.0)
    h, w = img.shape
    hh, ww = h // f, w // f
    small = img[: hh * f, : ww * f].reshape(hh, f, ww, f).mean(axis=(1, 3))
    small = ndimage.gaussian_filter(small, sigma / f, mode="nearest", truncate=3.0)
    return _resize(small, h, w, Image.BILINEAR)


def _process(v: np.ndarray, a: "_Anatomy", mm: float) -> np.ndarray:
    """What a digital radiography workstation does: detail (unsharp) enhancement and dynamic range
    compression (large structures pulled toward mid grey), with a per-film strength."""
    k_detail, k_mid, k_eq = a.processing
    if k_detail:
        v = v + k_detail * (v - _blur(v, max(0.6, 1.2 / mm)))
    if k_mid or k_eq:
        big = _blur(v, max(1.0, 20.0 / mm))
        if k_mid:
            v = v + k_mid * (v - _blur(v, max(0.8, 5.0 / mm)))
        if k_eq:
            v = v - k_eq * (big - float(big.mean()))
    return np.clip(v, 0.0, 1.0)


def _warp(img: np.ndarray, rng, a: _Anatomy, cv: _Canvas) -> np.ndarray:
    """Gross, smooth warp plus 'melting' around the column."""
    h, w = img.shape
    parts = []
    for sigma, amp in ((0.06, 0.08), (0.02, 0.03)):
        sh = (max(4, int(h / 8)), max(4, int(w / 8)))
        f = ndimage.gaussian_filter(rng.standard_normal((2,) + sh), (0, sigma * sh[0], sigma * sh[0]))
        f /= np.abs(f).max() + 1e-9
        parts.append(np.stack([_resize(f[0], h, w), _resize(f[1], h, w)]) * amp * h)
    disp = parts[0] + parts[1]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    xc = float(np.interp(a.H * 0.5, a.py, a.px)) / cv.sx
    env = np.exp(-(((xx - xc) / (0.25 * w)) ** 2))
    coords = [yy + disp[0] * env, xx + disp[1] * env]
    return ndimage.map_coordinates(img, coords, order=1, mode="nearest").astype(np.float32)


# ------------------------------------------------------------------------------------ film finishing

def _collimate(img: np.ndarray, a: _Anatomy) -> None:
    """Straight collimator edges (in place), slightly rotated; outside is bright (unexposed) or shuttered."""
    for side, inset, ang in a.collim:
        view = {"left": img, "right": img[:, ::-1], "top": img.T, "bottom": img.T[:, ::-1]}[side]
        h, w = view.shape
        yb = np.arange(h, dtype=np.float32)[:, None]
        xb = inset * w + math.tan(ang) * (yb - h / 2)
        c1 = int(min(w, max(0, math.ceil(float(xb.max()) + 2))))
        if c1 <= 0:
            continue
        x = np.arange(c1, dtype=np.float32)[None, :] + 0.5
        m = np.clip(xb - x + 0.5, 0, 1)
        view[:, :c1] = view[:, :c1] * (1 - m) + a.collim_val * m


_STROKES = {
    "L": [((0.0, 0.0), (0.0, 1.0)), ((0.0, 1.0), (0.62, 1.0))],
    "R": [((0.0, 0.0), (0.0, 1.0)), ((0.0, 0.0), (0.4, 0.0)), ((0.4, 0.0), (0.6, 0.07)), ((0.6, 0.07), (0.68, 0.24)),
          ((0.68, 0.24), (0.6, 0.41)), ((0.6, 0.41), (0.4, 0.48)), ((0.4, 0.48), (0.0, 0.48)),
          ((0.3, 0.48), (0.7, 1.0))],
}


def _marker(img: np.ndarray, a: _Anatomy, letter: str) -> None:
    """A lead side-marker letter (bright) in a corner, drawn with a stroke font (in place)."""
    if not letter:
        return
    h, w = img.shape
    size = max(5.0, a.marker_size * h)
    margin = 0.07 * min(h, w) + 0.5 * size
    top = a.marker_corner < 2
    left = a.marker_corner % 2 == 0
    x0 = margin if left else w - margin - 0.75 * size
    y0 = margin if top else h - margin - size
    segs = [((x0 + ax * size, y0 + ay * size), (x0 + bx * size, y0 + by * size)) for (ax, ay), (bx, by)
            in _STROKES[letter]]
    pad = 0.25 * size
    if a.marker_box:
        bx0, by0, bx1, by1 = x0 - pad, y0 - pad, x0 + 0.75 * size + pad, y0 + size + pad
        segs += [((bx0, by0), (bx1, by0)), ((bx1, by0), (bx1, by1)), ((bx1, by1), (bx0, by1)), ((bx0, by1), (bx0, by0))]
    r0, r1 = max(0, int(y0 - 2 * pad)), min(h, int(y0 + size + 2 * pad) + 1)
    c0, c1 = max(0, int(x0 - 2 * pad)), min(w, int(x0 + size + 2 * pad) + 1)
    Y = np.arange(r0, r1, dtype=np.float32)[:, None] + 0.5
    X = np.arange(c0, c1, dtype=np.float32)[None, :] + 0.5
    sd = np.min([_sd_capsule(X, Y, s0, s1, 0.07 * size, 0.07 * size) for s0, s1 in segs], axis=0)
    cov = _unit(0.5 - sd)
    img[r0:r1, c0:c1] = np.maximum(img[r0:r1, c0:c1], 0.95 * cov)


def _add_noise(img: np.ndarray, rng, level: float) -> np.ndarray:
    """Quantum noise, stronger where fewer photons reached the film (bright = attenuated), in place.
    Triangular noise from two random bytes: looks like Gaussian grain, costs a third of standard_normal."""
    b = np.frombuffer(rng.bytes(2 * img.size), dtype=np.uint8).reshape((2,) + img.shape)
    n = b[0].astype(np.float32)
    n += b[1]
    n -= 255.0
    k = np.float32(level / 104.5)                      # std of the sum of two uniform bytes
    s = img * (0.8 * k)
    s += 0.6 * k
    s *= n
    img += s
    np.clip(img, 0, 1, out=img)
    return img


def _work_size(p: PhantomParams) -> tuple[int, int]:
    wh = min(p.height, WORK_HEIGHT)
    return wh, max(8, int(round(wh * p.width / p.height)))


def render(params: PhantomParams) -> np.ndarray:
    """The finished film as float32 HxW in [0, 1]: positive (bone bright), facing as params.facing,
    before negative inversion and quantisation."""
    p = params
    H, W = p.height, p.width
    v, a = _film(p, *_work_size(p))
    v = _resize(v, H, W)
    _collimate(v, a)
    if p.facing == "right":
        v = np.ascontiguousarray(v[:, ::-1])
    _marker(v, a, p.marker)
    return _add_noise(v, np.random.default_rng([p.seed, _S_NOISE]), p.noise)


def render_canonical(seed: int, size: int = 64, facing: str = "left", defect: str | None = None) -> np.ndarray:
    """A small square positive film (uint8 size x size) rendered directly at that size, like the canonical
    256x256 images of a study; left-facing unless told. 'right' is the exact mirror of 'left' (the side
    marker mirrored too, as in a digitally flipped film)."""
    if facing not in ("left", "right"):
        raise PhantomError(f"facing must be 'left' or 'right', got {facing!r}")
    p = PhantomParams.random(seed, facing="left", defect=defect, height=max(16, int(size)))
    v, a = _film(p, size, size)
    _collimate(v, a)
    if size >= 96:
        _marker(v, a, p.marker)
    v = _add_noise(v, np.random.default_rng([p.seed, _S_NOISE]), p.noise)
    out = np.round(v * 255).astype(np.uint8)
    if facing == "right":
        out = np.ascontiguousarray(out[:, ::-1])
    return out


def landmarks(params: PhantomParams, shape: tuple[int, int] | None = None) -> dict:
    """Where the anatomy is, in pixel (x, y) of an image of ``shape`` (default params' height x width),
    with facing applied: body centres, body (depth, height) and spinous tips per level (C2..T1), the
    C1 anterior arch, the
    airway centre line as drawn (N x 2), the defect and its level. Ignores the distortion warp."""
    p = params
    h, w = shape if shape is not None else (p.height, p.width)
    a = _Anatomy(p)
    sx, sy = a.W / w, a.H / h

    def px(pt):
        x, y = float(pt[0]) / sx, float(pt[1]) / sy
        return (w - x if p.facing == "right" else x, y)

    bodies, tips, sizes = {}, {}, {}
    for k, name in enumerate(LEVELS):
        o, eu, ev = a.frame(a.s_c[k])
        d, hgt = a.deps[k], a.hts[k]
        bodies[name] = px(o - d / 2 * eu)
        sizes[name] = (d / sx, hgt / sy)
        L, sa = a.sp_len[k], a.sp_ang[k]
        u0, v0 = (16.0, 2.0) if k == 0 else (16.5, 4.0)
        u, v = u0 + L * math.cos(sa), v0 + L * math.sin(sa)
        if p.defect == "elements_swapped":
            u = -d - u
        tips[name] = px(o + u * eu + v * ev)
    o, eu, ev = a.frame(a.s_c[0])
    arch = o + (a.u_dens - 8 - a.adi) * eu + (-a.hts[0] / 2 - a.dens_h * 0.55) * ev
    xs, ys, aw = a.airway_line(posterior=p.defect == "airway_posterior")
    keep = (a.sg >= a.air_top) & (ys >= 0) & (ys <= a.H)
    air = np.array([px((x, y)) for x, y in zip(xs[keep][::8], ys[keep][::8])])
    return {"bodies": bodies, "body_size_px": sizes, "spinous_tips": tips, "c1_anterior_arch": px(arch), "airway": air,
            "airway_width_px": float(np.median(aw[keep])) / sx, "defect": p.defect,
            "defect_level": LEVELS[a.defect_k] if p.defect in ("missing_vertebra", "doubled_vertebra") else None,
            "anterior_is_left": p.facing == "left"}
