"""A small labelled study for the conditional-generation tests: phantom films with their true labels.

The phantoms know their anatomy (core/demo/phantom.py ``landmarks``), so the keypoints are where the bodies
are drawn, and the ``defect`` attribute is the defect each film was drawn with. Labels go in through
``labels.replace_labels`` (the store's API), as an import would leave them.
"""

from __future__ import annotations

import hashlib

import numpy as np

from tests.factories.train import REAL_COLUMNS, real_image_row

POINTS = ("C2", "C3", "C4", "C5", "C6", "C7")


def add_labelled_images(study, n: int = 24, size: int = 64, val_every: int = 4, *, unlabelled: int = 0,
                        seed: int = 0) -> list[str]:
    """n phantom films (half with a missing vertebra) with keypoints and a `defect` attribute; `unlabelled`
    more films without labels. Returns the ids of the labelled ones."""
    from core.demo.phantom import landmarks, render_canonical
    from core.demo.phantom_params import PhantomParams
    from core.realset import labels

    rows, splits, kps, attrs, labelled = [], [], [], [], []
    for i in range(n + unlabelled):
        defect = "missing_vertebra" if i % 2 else None
        pix = render_canonical(seed * 1000 + i, size=size, defect=defect)
        image_id = hashlib.sha256(f"phantom-{seed}-{i}".encode()).hexdigest()
        rows.append(real_image_row(study, pix, image_id, i))
        splits.append([image_id, "val" if i % val_every == 0 else "train", seed])
        if i >= n:
            continue
        labelled.append(image_id)
        p = PhantomParams.random(seed * 1000 + i, facing="left", defect=defect, height=max(16, size))
        bodies = landmarks(p, shape=(size, size))["bodies"]
        kps += [(image_id, f"{lv}_body", *bodies[lv]) for lv in POINTS]
        attrs.append((image_id, "defect", defect or "none", None))
    with study.store.connect() as tx:
        tx.executemany(f"INSERT INTO real_images ({REAL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        tx.executemany("INSERT INTO splits (image_id, split, seed) VALUES (?, ?, ?)", splits)
    labels.replace_labels(study, f"kp-{seed}", "keypoints", file=None, file_sha256=None, summary={}, keypoints=kps)
    labels.replace_labels(study, f"attr-{seed}", "attributes", file=None, file_sha256=None, summary={},
                          attributes=attrs)
    return labelled


def body_points(size: int = 64) -> np.ndarray:
    """The body centres of phantom 0 (the layout tests can compare with)."""
    from core.demo.phantom import landmarks
    from core.demo.phantom_params import PhantomParams

    p = PhantomParams.random(0, facing="left", defect=None, height=max(16, size))
    b = landmarks(p, shape=(size, size))["bodies"]
    return np.array([b[lv] for lv in POINTS])
