"""Labels on the real set, as stored: vertebral keypoints in canonical pixel coordinates and per-image attributes.

Keypoints are named points (``C3_body``, ``C3_spinous``, ...) with (x, y) in the canonical image's continuous
pixel coordinates: origin at the top-left corner, pixel column i spans [i, i+1), so its centre is x = i + 0.5.
Attributes are named per-image values kept as text, with their number when the column is numeric.

This module is the one place that reads and writes the label tables; importing a file (matching rows to
images, carrying coordinates through the canonical resampling) is core/realset/label_import.py.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping, Sequence

from core.realset.canonical import content_box
from core.study import Study

KINDS = ("keypoints", "attributes")


def replace_labels(study: Study, import_id: str, kind: str, *, file: str | None, file_sha256: str | None,
                   summary: Mapping[str, Any], keypoints: Sequence[tuple[str, str, float, float]] = (),
                   attributes: Sequence[tuple[str, str, str, float | None]] = ()) -> None:
    """Record one import and its labels in one transaction (all or nothing).

    keypoints: (image_id, point, x, y); attributes: (image_id, name, value, numeric). A label already stored
    for the same image and point (or attribute name) is replaced: the newest import wins.
    """
    # Converted here, before the transaction, so a bad value raises with nothing written. Keyed by the
    # primary key: a label given twice in one call keeps its last value, as row-by-row inserts did.
    points = {(str(i), str(p)): (float(x), float(y)) for i, p, x, y in keypoints}
    values = {(str(i), str(n)): (str(v), None if num is None else float(num)) for i, n, v, num in attributes}
    with study.store.connect() as tx:
        tx.execute("INSERT INTO label_imports (id, kind, file, file_sha256, summary) VALUES (?, ?, ?, ?, ?)",
                   [import_id, kind, file, file_sha256, json.dumps(dict(summary))])
        # Through a registered frame, not executemany: ~2 ms a row that way (10 s for 5,000 keypoints).
        if points:
            tx.register("cspine_keypoints", _frame(
                ["image_id", "point", "x", "y"], [[i, p, x, y] for (i, p), (x, y) in points.items()]))
            tx.execute("INSERT OR REPLACE INTO real_keypoints (image_id, point, x, y, import_id) "
                       "SELECT image_id, point, x, y, ? FROM cspine_keypoints", [import_id])
        if values:
            tx.register("cspine_attributes", _frame(
                ["image_id", "name", "value", "numeric"], [[i, n, v, num] for (i, n), (v, num) in values.items()]))
            tx.execute("INSERT OR REPLACE INTO real_attributes (image_id, name, value, numeric, import_id) "
                       "SELECT image_id, name, value, numeric, ? FROM cspine_attributes", [import_id])


def mirror_keypoints(tx: Any, image_id: str, x0: float, width: float) -> None:
    """Mirror one image's keypoints inside its content box [x0, x0 + width] (x -> 2 x0 + width - x), in the
    caller's transaction (core/realset/catalog.py: an orientation override mirrors the canonical image)."""
    tx.execute("UPDATE real_keypoints SET x = ? - x WHERE image_id = ?", [2.0 * x0 + width, image_id])


def keypoints_for(study: Study, image_ids: Iterable[str] | None = None) -> dict[str, dict[str, tuple[float, float]]]:
    """{image_id: {point: (x, y)}} for the given images (all labelled images when None)."""
    rows = _rows(study, "SELECT image_id, point, x, y FROM real_keypoints", image_ids)
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for r in rows:
        out.setdefault(r["image_id"], {})[r["point"]] = (float(r["x"]), float(r["y"]))
    return out


def canonical_spacing(study: Study, image_ids: Iterable[str] | None = None) -> dict[str, tuple[float, float]]:
    """{image_id: (mm per canonical pixel in x, in y)} for the images whose source gave a pixel spacing.

    The ingest resamples the source's W x H pixels onto the w x h content box (core/realset/canonical.py),
    so a canonical pixel is W / w source pixels wide and H / h tall; mirroring changes no distance."""
    size = int(study.get("ingest", "size", 256))
    rows = _rows(study, "SELECT * FROM (SELECT id AS image_id, orig_width, orig_height, resize_mode, spacing_x_mm, "
                        "spacing_y_mm FROM real_images) WHERE spacing_x_mm IS NOT NULL", image_ids)
    out: dict[str, tuple[float, float]] = {}
    for r in rows:
        _, _, w, h = content_box(int(r["orig_width"]), int(r["orig_height"]), size, r["resize_mode"])
        out[r["image_id"]] = (float(r["spacing_x_mm"]) * r["orig_width"] / w,
                              float(r["spacing_y_mm"]) * r["orig_height"] / h)
    return out


def image_labels(study: Study, image_id: str) -> dict[str, Any]:
    """One image's labels: {"keypoints": {point: (x, y)}, "attributes": {name: value}} (the dataset screen)."""
    with study.store.connect() as tx:
        points = tx.query("SELECT point, x, y FROM real_keypoints WHERE image_id = ? ORDER BY point", [image_id])
        values = tx.query("SELECT name, value FROM real_attributes WHERE image_id = ? ORDER BY name", [image_id])
    return {"keypoints": {r["point"]: (float(r["x"]), float(r["y"])) for r in points},
            "attributes": {r["name"]: r["value"] for r in values}}


def point_names(study: Study) -> list[str]:
    """Every keypoint name stored, in a stable order (by level, then name)."""
    return sorted(study.store.column("SELECT DISTINCT point FROM real_keypoints"))


def attributes_for(study: Study, name: str, image_ids: Iterable[str] | None = None) -> dict[str, str]:
    """{image_id: value} of one attribute for the given images (all labelled images when None)."""
    rows = _rows(study, "SELECT image_id, value FROM real_attributes WHERE name = ?", image_ids, [name])
    return {r["image_id"]: r["value"] for r in rows}


def attribute_names(study: Study) -> list[str]:
    return sorted(study.store.column("SELECT DISTINCT name FROM real_attributes"))


def attribute_counts(study: Study) -> dict[str, dict[str, int]]:
    """{attribute: {value: number of real images}} (the dataset screen's table)."""
    out: dict[str, dict[str, int]] = {}
    for r in study.store.query("SELECT name, value, count(*) AS n FROM real_attributes "
                               "GROUP BY name, value ORDER BY name, value"):
        out.setdefault(r["name"], {})[r["value"]] = int(r["n"])
    return out


def attribute_overview(study: Study) -> dict[str, dict[str, Any]]:
    """Per attribute: numeric ones as {"type": "numeric", "n", "min", "mean", "max"}, the others as
    {"type": "categorical", "n", "counts": {value: images}} (a numeric column's counts would be one row per
    value). Numeric: every stored value of the attribute has its number."""
    with study.store.connect() as tx:
        numeric = tx.query("SELECT name, count(*) AS n, min(numeric) AS lo, avg(numeric) AS mean, "
                           "max(numeric) AS hi FROM real_attributes GROUP BY name "
                           "HAVING count(numeric) = count(*) ORDER BY name")
        counts = tx.query("SELECT name, value, count(*) AS n FROM real_attributes GROUP BY name, value "
                          "ORDER BY name, n DESC, value")
    out: dict[str, dict[str, Any]] = {
        r["name"]: {"type": "numeric", "n": int(r["n"]), "min": float(r["lo"]), "mean": float(r["mean"]),
                    "max": float(r["hi"])} for r in numeric}
    for r in counts:
        if r["name"] not in out or out[r["name"]]["type"] == "categorical":
            entry = out.setdefault(r["name"], {"type": "categorical", "n": 0, "counts": {}})
            entry["counts"][r["value"]] = int(r["n"])
            entry["n"] += int(r["n"])
    return dict(sorted(out.items()))


def find_import(study: Study, file_sha256: str) -> dict[str, Any] | None:
    """The newest import of a file with these bytes, if any (lets the demo import its files once)."""
    return study.store.query_one("SELECT id, kind, file, summary, imported_at FROM label_imports "
                                 "WHERE file_sha256 = ? ORDER BY imported_at DESC LIMIT 1", [file_sha256])


def label_summary(study: Study) -> dict[str, Any]:
    """How many real images carry keypoints and attributes, and the imports so far (newest first)."""
    with study.store.connect() as tx:
        return {
            "keypoint_images": int(tx.scalar("SELECT count(DISTINCT image_id) FROM real_keypoints")),
            "points": sorted(tx.column("SELECT DISTINCT point FROM real_keypoints")),
            "attribute_images": int(tx.scalar("SELECT count(DISTINCT image_id) FROM real_attributes")),
            "attributes": sorted(tx.column("SELECT DISTINCT name FROM real_attributes")),
            "imports": tx.query("SELECT id, kind, file, summary, imported_at FROM label_imports "
                                "ORDER BY imported_at DESC"),
        }


def _frame(columns: list[str], rows: list[list[Any]]) -> Any:
    import pandas as pd  # imported on use: pandas costs start-up time for every caller of this module

    frame = pd.DataFrame(rows, columns=columns)
    if "numeric" in frame:  # all None would otherwise be an object column, which duckdb types as NULL
        frame["numeric"] = frame["numeric"].astype("float64")
    return frame


def _rows(study: Study, sql: str, image_ids: Iterable[str] | None, params: list[Any] | None = None
          ) -> list[dict[str, Any]]:
    params = list(params or [])
    if image_ids is None:
        return study.store.query(sql, params)
    ids = list(image_ids)
    if not ids:
        return []
    joiner = " AND " if " WHERE " in sql else " WHERE "
    return study.store.query(f"{sql}{joiner}image_id IN (SELECT unnest(?))", params + [ids])
