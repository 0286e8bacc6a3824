"""Procedural lateral cervical-spine radiographs ("phantoms") for the demo and the tests.

Every image is deterministic from its seed: the same seed and the same parameters give bit-identical
pixels and files. The anatomy (docs/reference/anatomy.md) is laid out in millimetres on a curve (the posterior
vertebral line) with a random lordosis, drawn at a working resolution as soft-edged shapes into three
density layers (soft tissue, textured bone, cortex), turned into a positive film (bone bright, air dark)
through an exposure curve, upsampled to the target size and finished there (collimation, side marker,
quantum noise). Default geometry: the patient faces LEFT (face and airway on the image's left).

Random streams are split by purpose (``SeedSequence([seed, k])``), so overriding one parameter (facing,
format, defect, ...) never changes the anatomy drawn for a seed; a defect variant is the clean film with
one thing wrong.

Public API: :class:`PhantomParams`, :func:`render`, :func:`render_canonical`, :func:`landmarks`,
:data:`DEFECTS` (the parameters, defects and formats are defined in core/demo/phantom_params.py and
re-exported here). Writing files (one phantom, a batch with labels.csv, a contact sheet) is
core/demo/phantom_files.py. The anatomy's layout and its drawing are core/demo/phantom_draw.py.
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image
from scipy import ndimage

from core.demo.phantom_draw import Anatomy, Canvas, draw_head, draw_soft, resize, sd_capsule, smooth, unit, vertebra
from core.demo.phantom_params import (DEFECTS, FORMATS, STREAM_NOISE, STREAM_TEXTURE, STREAM_WARP, SUFFIXES,
                                      PhantomError, PhantomParams)

LEVELS = ("C2", "C3", "C4", "C5", "C6", "C7", "T1")
WORK_HEIGHT = 512          # anatomy is drawn at most this tall, then upsampled


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
    low = resize(low, h, w)
    low /= float(low.std()) + 1e-6
    return tex, low


def _film(p: PhantomParams, h: int, w: int) -> tuple[np.ndarray, Anatomy]:
    """The positive, left-facing, noise-free film at h x w (anatomy aspect from p, pixels may be non-square)."""
    a = Anatomy(p)
    cv = Canvas(h, w, a.W / w, a.H / h)
    draw_soft(cv, a)
    draw_head(cv, a)
    mirror = a.defect == "elements_swapped"
    for k in range(7):
        if a.defect == "missing_vertebra" and k == a.defect_k:
            continue
        vertebra(cv, a, k, mirror=mirror)
        if a.defect == "doubled_vertebra" and k == a.defect_k:
            vertebra(cv, a, k, shift=a.double_off)
    tex, low = _texture(np.random.default_rng([p.seed, STREAM_TEXTURE]), h, w, cv.sx, cv.sy)
    mar = np.maximum(cv.marrow, 0)
    D = cv.soft * (1 + 0.06 * low) + mar + cv.bone + (a.tex_amp * tex) * np.minimum(mar, 0.3)
    D = np.maximum(D, 0)
    blur = 0.3 / cv.aa                                       # focal spot / detector unsharpness
    if blur > 0.3:
        D = ndimage.gaussian_filter(D, blur, truncate=3.0)
    g = a.g0 * (1 - a.gdrop * smooth(0.55, 1.0, (np.arange(h, dtype=np.float32) + 0.5) / h))[:, None]
    g = g * (1 + 0.06 * ((np.arange(w, dtype=np.float32) + 0.5) / w - 0.5))[None, :]
    v = 1 - np.exp(-g * D)
    v = a.fog + (1 - a.fog) * np.power(np.clip(v, 0, 1), a.gamma)
    v = _process(v, a, cv.aa)
    if a.defect == "distortion":
        v = _warp(v, np.random.default_rng([p.seed, STREAM_WARP]), a, cv)
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
    return resize(small, h, w, Image.BILINEAR)


def _process(v: np.ndarray, a: "Anatomy", mm: float) -> np.ndarray:
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


def _warp(img: np.ndarray, rng, a: Anatomy, cv: Canvas) -> np.ndarray:
    """Gross, smooth warp plus 'melting' around the column."""
    dy, dx = _warp_field(rng, a, cv, *img.shape)
    yy, xx = np.mgrid[0:img.shape[0], 0:img.shape[1]].astype(np.float32)
    return ndimage.map_coordinates(img, [yy + dy, xx + dx], order=1, mode="nearest").astype(np.float32)


def _warp_field(rng, a: Anatomy, cv: Canvas, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """The warp's displacement (dy, dx) at each pixel: output pixel (i, j) shows the input at (i + dy, j + dx)."""
    parts = []
    for sigma, amp in ((0.06, 0.08), (0.02, 0.03)):
        sh = (max(4, int(h / 8)), max(4, int(w / 8)))
        f = ndimage.gaussian_filter(rng.standard_normal((2,) + sh), (0, sigma * sh[0], sigma * sh[0]))
        f /= np.abs(f).max() + 1e-9
        parts.append(np.stack([resize(f[0], h, w), resize(f[1], h, w)]) * amp * h)
    disp = parts[0] + parts[1]
    xx = np.arange(w, dtype=np.float32)[None, :]
    xc = float(np.interp(a.H * 0.5, a.py, a.px)) / cv.sx
    env = np.exp(-(((xx - xc) / (0.25 * w)) ** 2))
    return (disp[0] * env).astype(np.float32), (disp[1] * env).astype(np.float32)


# ------------------------------------------------------------------------------------ film finishing

def _collimate(img: np.ndarray, a: Anatomy) -> None:
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


def _marker(img: np.ndarray, a: Anatomy, letter: str) -> None:
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
    sd = np.min([sd_capsule(X, Y, s0, s1, 0.07 * size, 0.07 * size) for s0, s1 in segs], axis=0)
    cov = unit(0.5 - sd)
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
    v = resize(v, H, W)
    _collimate(v, a)
    if p.facing == "right":
        v = np.ascontiguousarray(v[:, ::-1])
    _marker(v, a, p.marker)
    return _add_noise(v, np.random.default_rng([p.seed, STREAM_NOISE]), p.noise)


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
    v = _add_noise(v, np.random.default_rng([p.seed, STREAM_NOISE]), p.noise)
    out = np.round(v * 255).astype(np.uint8)
    if facing == "right":
        out = np.ascontiguousarray(out[:, ::-1])
    return out


def landmarks(params: PhantomParams, shape: tuple[int, int] | None = None, *, warped: bool = False) -> dict:
    """Where the anatomy is, in continuous pixel (x, y) of an image of ``shape`` (default params' height x
    width; origin at the top-left corner) with facing applied: body centres, body (depth, height) and spinous
    tips per level (C2..T1), the C1 anterior arch, the airway centre line as drawn (N x 2), the defect and its
    level. The distortion warp moves the anatomy by up to ~11% of the height; ``warped=True`` follows it
    (:func:`_unwarp`; a point the warp pushes out of view is then None), otherwise it is ignored."""
    p = params
    h, w = shape if shape is not None else (p.height, p.width)
    a = Anatomy(p)
    sx, sy = a.W / w, a.H / h
    follow = _unwarp(p, a, h, w) if warped and p.defect == "distortion" else None

    def px(pt):
        x, y = float(pt[0]) / sx, float(pt[1]) / sy
        if follow is not None:
            shown = follow(x, y)
            if shown is None:
                return None
            x, y = shown
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
    air = np.array([q for q in (px((x, y)) for x, y in zip(xs[keep][::8], ys[keep][::8])) if q is not None])
    return {"bodies": bodies, "body_size_px": sizes, "spinous_tips": tips, "c1_anterior_arch": px(arch), "airway": air,
            "airway_width_px": float(np.median(aw[keep])) / sx, "defect": p.defect,
            "defect_level": LEVELS[a.defect_k] if p.defect in ("missing_vertebra", "doubled_vertebra") else None,
            "anterior_is_left": p.facing == "left"}


def _unwarp(p: PhantomParams, a: Anatomy, h: int, w: int):
    """(x, y) -> where the distortion warp shows that point of the unwarped film, in an h x w image.

    The warp (at the working size) shows at output pixel centre c the input at F(c) = c + d(c)
    (_warp_field, bilinear like map_coordinates), so the point q of the anatomy appears at the c solving
    F(c) = q. Found by taking the pixel whose F is nearest q (the field can fold, so a local iteration from
    q alone may not settle), then Newton steps on the bilinear field. Where the fold shows q more than once,
    the best solution found is taken; where no c shows q within 0.1 working pixel (the warp pushed it
    out of the film), None."""
    wh, ww = _work_size(p)
    cv = Canvas(wh, ww, a.W / ww, a.H / wh)
    dy, dx = _warp_field(np.random.default_rng([p.seed, STREAM_WARP]), a, cv, wh, ww)
    centres_y, centres_x = np.mgrid[0:wh, 0:ww].astype(np.float64) + 0.5
    shown_x, shown_y = centres_x + dx, centres_y + dy
    fx, fy = ww / w, wh / h

    def F(cx: float, cy: float) -> np.ndarray:  # continuous coordinates: pixel i spans [i, i+1)
        at = [[cy - 0.5], [cx - 0.5]]
        return np.array([cx + ndimage.map_coordinates(dx, at, order=1, mode="nearest")[0],
                         cy + ndimage.map_coordinates(dy, at, order=1, mode="nearest")[0]])

    def follow(x: float, y: float) -> tuple[float, float] | None:
        q = np.array([x * fx, y * fy])
        k = int(np.argmin((shown_x - q[0]) ** 2 + (shown_y - q[1]) ** 2))
        c = np.array([centres_x.flat[k], centres_y.flat[k]])
        best = (float(np.hypot(*(F(*c) - q))), c)
        for _ in range(8):
            e = 0.25
            f0 = F(*c)
            jac = np.column_stack([(F(c[0] + e, c[1]) - f0) / e, (F(c[0], c[1] + e) - f0) / e])
            try:
                c = c - np.linalg.solve(jac, f0 - q)
            except np.linalg.LinAlgError:
                break
            r = float(np.hypot(*(F(*c) - q)))
            if r < best[0]:
                best = (r, c)
            if r < 1e-4:
                break
        if best[0] > 0.1:
            return None
        return float(best[1][0]) / fx, float(best[1][1]) / fy

    return follow


__all__ = ["DEFECTS", "FORMATS", "LEVELS", "SUFFIXES", "PhantomError", "PhantomParams", "landmarks", "render",
           "render_canonical"]
