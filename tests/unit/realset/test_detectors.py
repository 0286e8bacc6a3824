"""Polarity and orientation detectors: symmetry, the API the sampling area uses, and a fast accuracy check.

The full measurement (1,000 phantoms not used for tuning) is benchmarks/bench_detectors.py; this is its
small version: a few dozen phantoms through the ingest's own per-file path, plus canonical 64/256 px ones.
"""

from __future__ import annotations

import numpy as np
import pytest

from core.realset import detectors

from core.demo import phantom

from core.demo import phantom_files
from core.realset.ingest import IngestOptions, process_file

SEED0 = 1_000_000 + 700_000   # the evaluation range of the benchmark, away from the tuning seeds (2,000,000+)


def test_scores_flip_sign_under_the_transformation_they_detect():
    img = phantom.render_canonical(SEED0, 256, "left").astype(np.float32) / 255
    o = detectors.orientation_score(img)
    assert o > 0 and detectors.orientation_score(img[:, ::-1]) == pytest.approx(-o, rel=1e-4, abs=1e-6)
    p = detectors.polarity_score(img)
    assert p > 0 and detectors.polarity_score(1.0 - img) == pytest.approx(-p, rel=1e-3, abs=1e-5)


def test_api_for_synthetic_images():
    for size in (64, 256):
        img = phantom.render_canonical(SEED0 + 1, size, "right")
        assert img.dtype == np.uint8 and img.shape == (size, size)
        facing, conf = detectors.detect_orientation(img)
        assert facing in ("left", "right") and 0.5 <= conf <= 1.0
        negative, pconf = detectors.detect_polarity(img)
        assert isinstance(negative, bool) and 0.5 <= pconf <= 1.0
    with pytest.raises(ValueError, match="2-D grayscale"):
        detectors.detect_orientation(np.zeros((4, 4), np.uint8))
    flat = np.full((64, 64), 128, np.uint8)                  # no anatomy: undecided, low confidence
    assert detectors.detect_orientation(flat)[1] == pytest.approx(0.5)


@pytest.mark.parametrize("size", [64, 256])
def test_orientation_on_canonical_phantoms(size):
    n = 10
    hits = sum(detectors.detect_orientation(phantom.render_canonical(SEED0 + 100 + i, size, f))[0] == f
               for i in range(n) for f in ("left", "right"))
    assert hits >= 2 * n - 1


def test_detectors_through_the_ingest_path(tmp_path):
    """Phantoms of both polarities and facings, 8/16-bit PNG/TIFF/JPEG, 300-600 px, decoded like ingest."""
    rng = np.random.default_rng(5)
    cases = []
    for i in range(16):
        fmt = ("png", "tiff", "jpeg")[i % 3]
        p = phantom.PhantomParams.random(SEED0 + 200 + i, negative=bool(i % 2),
                                         facing="right" if (i // 2) % 2 else "left", format=fmt,
                                         bit_depth=8 if fmt == "jpeg" else (8, 16)[(i // 3) % 2],
                                         height=int(rng.integers(300, 601)))
        cases.append((p, phantom_files.write_phantom(p, tmp_path / f"p{i}")))
    pol = ori = 0
    for p, path in cases:
        res = process_file(str(path), frozenset(), IngestOptions())
        assert res.outcome == "ingested", res.reason
        pol += res.row["inverted"] == p.negative
        ori += res.row["flipped"] == (p.facing == "right")
    assert pol == len(cases)
    assert ori >= len(cases) - 1
