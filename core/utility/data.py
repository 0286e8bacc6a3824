"""What the utility benchmark and the condition check learn from and test on: images with their labels.

Real images carry the labels of core/realset/labels.py (keypoints in canonical pixel coordinates, attributes);
synthetic images carry the condition they were generated for (core/ddpm/synthetic.py ``conditions_for``),
which is their label. Keypoints are kept as fractions of the image's own width and height, so images of any
size (a 64 px tiny-preset run beside 256 px real films) share one target space; an image is resized to the
model's input size with PIL's antialiased bilinear filter, as training data is (core/ddpm/data.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from core.ddpm import synthetic
from core.errors import CspineError
from core.realset import labels
from core.screening import rules
from core.study import Study

LANDMARKS = "landmarks"
MAX_CLASSES = 12  # a classification task needs a categorical attribute, not a measurement


@dataclass
class LabelledSet:
    """Images with their targets: keypoints (N, P, 2) as fractions of width/height with a mask (N, P), or
    class indices (N,)."""

    ids: list[str]
    paths: list[str]                                    # relative to the study root
    kind: str                                           # real | synthetic
    points: np.ndarray | None = None                    # (N, P, 2)
    mask: np.ndarray | None = None                      # (N, P) bool
    classes: np.ndarray | None = None                   # (N,) int
    native: list[int] = field(default_factory=list)     # each image's own width (keypoint scale)

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, rows: list[int] | np.ndarray) -> "LabelledSet":
        rows = [int(r) for r in rows]

        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[rows]

        return LabelledSet([self.ids[r] for r in rows], [self.paths[r] for r in rows], self.kind, pick(self.points),
                           pick(self.mask), pick(self.classes), [self.native[r] for r in rows])


def real_rows(study: Study, split: str) -> list[dict[str, Any]]:
    with study.store.connect() as tx:
        return tx.query("SELECT r.id, r.path FROM real_images r JOIN splits s ON s.image_id = r.id "
                        "WHERE s.split = ? ORDER BY r.id", [split])


def synthetic_rows(study: Study, ids: list[str]) -> list[dict[str, Any]]:
    if not ids:
        return []
    rows = study.store.query("SELECT id, path FROM synthetic_images WHERE id IN (SELECT unnest(?))", [ids])
    by_id = {r["id"]: r for r in rows}
    return [by_id[i] for i in ids if i in by_id]


def image_width(study: Study, rel: str) -> int:
    try:
        with Image.open(study.abs(rel)) as im:
            return int(im.size[0])
    except FileNotFoundError:
        raise CspineError(f"image {study.abs(rel)} is missing; restore the study's images folder") from None


def task_space(study: Study, task: str) -> dict[str, Any]:
    """The targets of a task on this study's real set: keypoint names, or the attribute's class values."""
    if task == LANDMARKS:
        points = labels.point_names(study)
        if not points:
            raise CspineError(f"study {study.root} has no keypoints on its real images; import them with "
                              f"`cspine-tui labels --import FILE --kind keypoints`")
        return {"task": task, "points": points}
    names = labels.attribute_names(study)
    if task not in names:
        raise CspineError(f"no attribute {task!r} on the real images of {study.root}; known: "
                          f"{', '.join(names) or 'none (import them with `cspine-tui labels`)'}; or use --task "
                          f"landmarks")
    values = sorted(set(labels.attributes_for(study, task).values()))
    if len(values) < 2 or len(values) > MAX_CLASSES:
        raise CspineError(f"attribute {task!r} has {len(values)} distinct values; a classification task needs "
                          f"2 to {MAX_CLASSES} categories")
    return {"task": task, "classes": values}


def real_set(study: Study, split: str, space: dict[str, Any]) -> LabelledSet:
    """The real images of a split that carry the task's label."""
    rows = real_rows(study, split)
    ids = [r["id"] for r in rows]
    if space["task"] == LANDMARKS:
        kp = labels.keypoints_for(study, ids)
        rows = [r for r in rows if kp.get(r["id"])]
        return _with_points(study, rows, "real", space["points"], {r["id"]: kp[r["id"]] for r in rows})
    values = labels.attributes_for(study, space["task"], ids)
    rows = [r for r in rows if values.get(r["id"]) in space["classes"]]
    return _with_classes(study, rows, "real", space["classes"], {r["id"]: values[r["id"]] for r in rows})


def synthetic_set(study: Study, image_ids: list[str], space: dict[str, Any]) -> LabelledSet:
    """Synthetic images labelled by the condition they were generated for (images without one are left out)."""
    rows = synthetic_rows(study, image_ids)
    conds = synthetic.conditions_for(study, [r["id"] for r in rows])
    if space["task"] == LANDMARKS:
        kp = {i: c.get("keypoints") or {} for i, c in conds.items()}
        rows = [r for r in rows if kp.get(r["id"])]
        return _with_points(study, rows, "synthetic", space["points"],
                            {r["id"]: {p: tuple(v) for p, v in kp[r["id"]].items()} for r in rows})
    values = {i: (c.get("attributes") or {}).get(space["task"]) for i, c in conds.items()}
    rows = [r for r in rows if values.get(r["id"]) is not None and str(values[r["id"]]) in space["classes"]]
    return _with_classes(study, rows, "synthetic", space["classes"], {r["id"]: str(values[r["id"]]) for r in rows})


def _with_points(study: Study, rows: list[dict[str, Any]], kind: str, points: list[str],
                 kp: dict[str, dict[str, tuple[float, float]]]) -> LabelledSet:
    widths = [image_width(study, r["path"]) for r in rows]
    arr = np.zeros((len(rows), len(points), 2), np.float32)
    mask = np.zeros((len(rows), len(points)), bool)
    for i, (r, w) in enumerate(zip(rows, widths)):
        for j, p in enumerate(points):
            if p in kp[r["id"]]:
                x, y = kp[r["id"]][p]
                arr[i, j] = (x / w, y / w)  # canonical images are square
                mask[i, j] = True
    return LabelledSet([r["id"] for r in rows], [r["path"] for r in rows], kind, points=arr, mask=mask,
                       native=widths)


def _with_classes(study: Study, rows: list[dict[str, Any]], kind: str, classes: list[str],
                  values: dict[str, str]) -> LabelledSet:
    index = {v: k for k, v in enumerate(classes)}
    return LabelledSet([r["id"] for r in rows], [r["path"] for r in rows], kind,
                       classes=np.array([index[values[r["id"]]] for r in rows], np.int64),
                       native=[0] * len(rows))


def accepted_ids(study: Study, runs: list[str]) -> list[str]:
    """The accepted images (the study's final screening rule) of the given runs, in a stable order."""
    out: list[str] = []
    for run in runs:
        out += rules.accepted_image_ids(study, run_id=run)
    return out


def load_pixels(study: Study, paths: list[str], size: int) -> np.ndarray:
    """uint8 (N, 1, size, size) of the given images, resized with PIL's antialiased bilinear filter."""
    out = np.zeros((len(paths), 1, size, size), np.uint8)
    for i, rel in enumerate(paths):
        try:
            with Image.open(study.abs(rel)) as im:
                im = im.convert("L")
                if im.size != (size, size):
                    im = im.resize((size, size), Image.BILINEAR)
                out[i, 0] = np.asarray(im, np.uint8)
        except FileNotFoundError:
            raise CspineError(f"image {study.abs(rel)} is missing; restore the study's images folder") from None
    return out
