"""File-level features of a pack's images and predictors that try to tell the real image of a quartet from them.

Nothing here looks at pixels as pixels: only what a rater (or a curious one with a file browser) could see
besides the image itself: the name, the position, the order of a folder listing, the file time, the size, the
PNG chunk structure and the zlib settings.
"""

from __future__ import annotations

import io
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def chunks(data: bytes) -> list[tuple[str, bytes]]:
    assert data[:8] == PNG_SIGNATURE
    pos, out = 8, []
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        out.append((data[pos + 4:pos + 8].decode("latin-1"), data[pos + 8:pos + 8 + length]))
        pos += 12 + length
    return out


def reencoded_size(path: Path) -> int:
    """The size of the same decoded pixels written by the pack's encoder (PIL PNG, zlib level 6).

    Why normalise: a PNG's size depends on its content (real films and tiny-model samples compress
    differently), so raw size would "detect" content, not the file handling. size / reencoded_size is 1.0
    exactly when the pack re-encoded every image the same way, whatever the image shows.
    """
    from core.reader_study.pack import PNG_COMPRESS_LEVEL

    with Image.open(path) as im:
        im.load()
        pixels = np.asarray(im)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", optimize=False, compress_level=PNG_COMPRESS_LEVEL)
    return len(buf.getvalue())


def zlib_level(idat: bytes) -> int:
    """The zlib level (0-9) that reproduces this IDAT stream exactly, or -1 (another encoder)."""
    raw = zlib.decompress(idat)
    for level in range(10):
        if zlib.compress(raw, level) == idat:
            return level
    return -1


@dataclass
class FileFeatures:
    quartet: int
    position: int           # 1..4 = A..D (what the survey shows)
    is_real: bool
    values: dict[str, float]


FEATURES = ("name_value", "name_rank", "position", "listing_rank", "mtime", "size_ratio", "chunk_signature",
            "idat_count", "idat_first_share", "zlib_header", "zlib_level", "ancillary_chunks")


def extract(pack: Path, items: list[dict]) -> list[FileFeatures]:
    """Features of every image of a pack; `items` are {quartet, position, image_file, source} (the key)."""
    images = pack / "upload" / "images"
    listing = os.listdir(images)  # directory order, as a file browser or `ls -f` shows it
    order = {name: i for i, name in enumerate(listing)}
    signatures: dict[str, int] = {}
    rows = []
    for item in items:
        path = images / item["image_file"]
        data = path.read_bytes()
        parts = chunks(data)
        kinds = [k for k, _ in parts]
        idats = [body for k, body in parts if k == "IDAT"]
        stream = b"".join(idats)
        sig = "-".join(kinds)
        rows.append(FileFeatures(item["quartet"], item["position"], item["source"] == "real", {
            "name_value": int(item["image_file"][:8], 16) / 2 ** 32 if _hex(item["image_file"][:8]) else
            float(sum(map(ord, item["image_file"]))),
            "position": float(item["position"]),
            "listing_rank": float(order[item["image_file"]]),
            "mtime": path.stat().st_mtime,
            "size_ratio": len(data) / reencoded_size(path),
            "chunk_signature": float(signatures.setdefault(sig, len(signatures))),
            "idat_count": float(len(idats)),
            "idat_first_share": len(idats[0]) / max(1, len(stream)),
            "zlib_header": float(int.from_bytes(stream[:2], "big")),
            "zlib_level": float(zlib_level(stream)),
            "ancillary_chunks": float(sum(1 for k in kinds if k not in ("IHDR", "IDAT", "IEND"))),
        }))
    # ranks inside the quartet: a name or listing order that puts the real image first would show here
    for q in {r.quartet for r in rows}:
        members = [r for r in rows if r.quartet == q]
        for key, src in (("name_rank", "name_value"), ("listing_rank", "listing_rank")):
            ranked = sorted(members, key=lambda r: r.values[src])
            for rank, r in enumerate(ranked):
                r.values[key] = float(rank)
    return rows


def _hex(text: str) -> bool:
    try:
        int(text, 16)
        return True
    except ValueError:
        return False


def by_quartet(rows: list[FileFeatures]) -> dict[int, list[FileFeatures]]:
    out: dict[int, list[FileFeatures]] = {}
    for r in rows:
        out.setdefault(r.quartet, []).append(r)
    return {q: sorted(m, key=lambda r: r.position) for q, m in sorted(out.items())}


def _pick(scores: list[float]) -> int:
    """Index of the highest score; ties go to the first (position A), which a fair pack makes chance."""
    best = max(scores)
    return next(i for i, s in enumerate(scores) if s == best)


def rule_accuracies(rows: list[FileFeatures]) -> dict[str, int]:
    """Correct quartets for each single-feature rule: the largest value, the smallest, the odd one out."""
    groups = by_quartet(rows)
    out: dict[str, int] = {}
    for feat in FEATURES:
        for rule in ("max", "min", "odd"):
            correct = 0
            for members in groups.values():
                vals = [m.values[feat] for m in members]
                if rule == "max":
                    scores = vals
                elif rule == "min":
                    scores = [-v for v in vals]
                else:  # the value the other three do not share
                    scores = [float(sum(1 for w in vals if w != v) == 3) for v in vals]
                correct += members[_pick(scores)].is_real
            out[f"{feat}:{rule}"] = correct
    return out


def _matrix(rows: list[FileFeatures]) -> np.ndarray:
    return np.array([[r.values[f] for f in FEATURES] for r in rows], dtype=np.float64)


def loo_accuracies(rows: list[FileFeatures]) -> dict[str, int]:
    """Leave-one-quartet-out nearest-centroid and logistic regression on all features together."""
    from sklearn.linear_model import LogisticRegression

    groups = by_quartet(rows)
    correct = {"nearest_centroid": 0, "logistic_regression": 0}
    for q, members in groups.items():
        train = [r for r in rows if r.quartet != q]
        x, y = _matrix(train), np.array([r.is_real for r in train])
        mu, sd = x.mean(0), x.std(0)
        sd[sd == 0] = 1.0
        z, zt = (x - mu) / sd, (_matrix(members) - mu) / sd
        c_real, c_syn = z[y].mean(0), z[~y].mean(0)
        nc = [float(np.linalg.norm(v - c_syn) - np.linalg.norm(v - c_real)) for v in zt]
        correct["nearest_centroid"] += members[_pick(nc)].is_real
        model = LogisticRegression(C=1.0, max_iter=500).fit(z, y)
        lr = [float(p) for p in model.decision_function(zt)]
        correct["logistic_regression"] += members[_pick(lr)].is_real
    return correct
