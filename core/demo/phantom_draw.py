"""Drawing the phantom's anatomy for core/demo/phantom.py: the layout in millimetres (:class:`Anatomy`),
soft-edged shapes on density layers (:class:`Canvas`) and the parts drawn with them (vertebrae, head,
soft tissue). The same seed gives the same layout and the same pixels.
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image

from core.demo.phantom_params import STREAM_ANATOMY, PhantomParams


# ------------------------------------------------------------------------------------- shape helpers

def unit(x):
    """clip(x, 0, 1) without np.clip's Python overhead (this runs ~100 times per small image)."""
    return np.minimum(np.maximum(x, 0.0), 1.0)


def smooth(e0: float, e1: float, x):
    t = unit((x - e0) / (e1 - e0))
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


def sd_capsule(X, Y, a, b, r0: float, r1: float):
    """Distance to a segment a-b whose radius tapers from r0 to r1."""
    ex, ey = b[0] - a[0], b[1] - a[1]
    L2 = ex * ex + ey * ey + 1e-9
    px, py = X - a[0], Y - a[1]
    t = unit((px * ex + py * ey) / L2)
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


class Canvas:
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
        cov = unit(0.5 - sd * (1.0 / max(self.aa, edge)))
        if fill:
            getattr(self, layer)[sl] += fill * cov
        if rim:
            cov -= unit(0.5 - (sd + rim_t) * (1.0 / self.aa))
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
            self._put(w[0], sd_capsule(w[1], w[2], a, b, r0, r1), fill, rim, rim_t, layer, edge)

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
                sds.append(sd_capsule(w[1], w[2], *q))
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

class Anatomy:
    """The layout of one phantom in millimetres, left-facing; x to the right (posterior), y down."""

    def __init__(self, p: PhantomParams):
        rng = np.random.default_rng([p.seed, STREAM_ANATOMY])
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


def vertebra(cv: Canvas, a: Anatomy, k: int, shift=(0.0, 0.0), mirror: bool = False) -> None:
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


def draw_head(cv: Canvas, a: Anatomy) -> None:
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
        cv.bone[sl] += (0.35 * ring * smooth(a.occ_cut, a.occ_cut + 15, hu)).astype(np.float32)
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
            sd = np.min([sd_capsule(w[1], w[2], a0, b0, r0, r1) for a0, b0, r0, r1 in parts], axis=0)
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


def draw_soft(cv: Canvas, a: Anatomy) -> None:
    """Soft tissue (smooth, so computed at half resolution when the canvas is large)."""
    if cv.h >= 128:
        h2, w2 = (cv.h + 1) // 2, (cv.w + 1) // 2
        xs = ((np.arange(w2) + 0.5) * (a.W / w2)).astype(np.float32)
        ys = ((np.arange(h2) + 0.5) * (a.H / h2)).astype(np.float32)
        cv.soft += resize(_soft_field(xs, ys, a), cv.h, cv.w, Image.BILINEAR)
    else:
        cv.soft += _soft_field(cv.xs, cv.ys, a)


def _soft_field(xs: np.ndarray, ys: np.ndarray, a: Anatomy) -> np.ndarray:
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
    post_line = np.interp(ys, a.py, a.px) + t_nape + bulge * smooth(y_end - 20, y_end + 40, ys)
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
    tube = np.sqrt(np.clip(1 - ((X - ax) / hw) ** 2, 0, 1)) * smooth(top_y, top_y + 10, Y)
    return (soft * (1 - a.air_k * tube)).astype(np.float32)


def resize(img: np.ndarray, h: int, w: int, resample=Image.BICUBIC) -> np.ndarray:
    if img.shape == (h, w):
        return img.astype(np.float32, copy=False)
    return np.array(Image.fromarray(img.astype(np.float32)).resize((w, h), resample), dtype=np.float32)
