"""Importing a label file: per-image keypoints or attributes, matched to the real images, all or nothing.

Layouts (docs/guide/labels.md has examples):

- keypoints, long CSV: ``file,point,x,y`` (one row per point);
- keypoints, wide CSV: ``file,<point>_x,<point>_y,...`` (one row per image; a pair left empty is a point not
  labelled on that image);
- keypoints, JSON: ``{"images": [{"file": "a.png", "points": {"C3_body": [x, y], ...}}, ...]}`` (or the list);
- attributes, CSV: ``file,<attribute>,...`` (one row per image; a column is numeric when every value given is
  a number, else categorical; an empty cell, NA, N/A, NaN or null is "not given").

Instead of ``file`` (the source file's name, matched to the base name of ``real_images.source_path``; a name
with folders also matches the end of the path) a row may give ``sha256``: the SHA-256 of the source file's
bytes, which is the real image's id. Keypoints are in SOURCE pixel coordinates of the file as stored, origin
at the top-left corner with pixel i spanning [i, i+1) (``convention="center"``: integer coordinates are pixel
centres, COCO/OpenCV style; 0.5 is added). They are carried through what the ingest did to the image
(:func:`to_canonical`) and stored in canonical coordinates (core/realset/labels.py).

Everything is checked before anything is written: every problem (an unmatched or ambiguous row, a value
that is not a number, a point outside the source image, a label given twice) is one line naming the row,
what is wrong and what to do, and then the import stores nothing. Unmatched rows may be left out on request
(``skip_unmatched``); they are then listed in the result. The labels go in with one
:func:`core.realset.labels.replace_labels` call (one transaction).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePath
from typing import Any, Callable

from core.errors import CspineError
from core.realset import labels
from core.realset.canonical import content_box
from core.study import Study

KINDS = labels.KINDS
CONVENTIONS = ("corner", "center")
MISSING = frozenset({"", "na", "n/a", "nan", "null"})
KEY_COLUMNS = ("file", "sha256")
# A JPEG is decoded at a reduced DCT scale when it is at least twice this many times the canonical size a
# side (core/realset/readers.py passes reduce_to = 2 x size to PIL's draft): see decoded_grid.
_DRAFT_MODES = ("L", "RGB", "CMYK")


class LabelImportError(CspineError):
    """Problems with rows of a label file; nothing was imported. ``problems`` holds one line per problem."""

    def __init__(self, file: str, problems: list[str]) -> None:
        self.problems = problems
        n = len(problems)
        super().__init__(f"{file}: {n} problem{'s' if n != 1 else ''}, nothing imported (first: {problems[0]})")


# ---------------------------------------------------------------------------------------------------
# The transform


def decoded_grid(source_format: str | None, photometric: str | None, width: int, height: int,
                 size: int) -> tuple[int, int, int]:
    """(width, height, s) of the pixel grid the ingest resampled: the source itself, or for a large JPEG
    its DCT-scaled decode (PIL's JpegImageFile.draft: s = the largest of 8, 4, 2, 1 not above
    min(W // 2size, H // 2size), ceil(W / s) x ceil(H / s) pixels, source x landing at x / s)."""
    if source_format == "jpeg" and photometric in _DRAFT_MODES:
        scale = min(width // (2 * size), height // (2 * size))
        s = next((f for f in (8, 4, 2) if scale >= f), 1)
        return -(-width // s), -(-height // s), s
    return width, height, 1


def to_canonical(image: dict[str, Any], x: float, y: float, size: int) -> tuple[float, float]:
    """A point of the source file (continuous pixel coordinates, origin top-left corner) in the canonical
    image: scaled into the content box with the resize, mirrored inside it when the film was flipped.

    The ingest resizes the whole decoded grid onto the box (PIL's resize keeps the continuous mapping
    x -> x * w / W through its box reduction), then mirrors the box (x -> x0 + w - (x - x0)).
    """
    wd, hd, s = decoded_grid(image.get("source_format"), image.get("photometric"), int(image["orig_width"]),
                             int(image["orig_height"]), size)
    x0, y0, w, h = content_box(int(image["orig_width"]), int(image["orig_height"]), size, image["resize_mode"])
    u = x / s * w / wd
    v = y / s * h / hd
    return (x0 + w - u if image["flipped"] else x0 + u), y0 + v


# ---------------------------------------------------------------------------------------------------
# Reading the file into rows


@dataclass
class _Row:
    where: str                          # "line 12" / "entry 3": how a problem names the row
    key: str                            # file | sha256
    value: str
    points: list[tuple[str, str, Any, Any]] = field(default_factory=list)   # (point, what, x, y)
    attributes: dict[str, str] = field(default_factory=dict)
    problem: str | None = None          # the row cannot be read at all


def _read_text(path: Path) -> tuple[bytes, str]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CspineError(f"label file {path} not found; give an existing CSV or JSON file") from None
    except IsADirectoryError:
        raise CspineError(f"{path} is a folder; give a CSV or JSON label file") from None
    except OSError as exc:
        raise CspineError(f"label file {path} cannot be read ({exc.strerror or exc})") from None
    try:
        return data, data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CspineError(f"label file {path} is not UTF-8 text; save it as UTF-8 CSV or JSON") from None


def _parse(path: Path, text: str, kind: str | None) -> tuple[str, str, list[_Row], list[str]]:
    """(kind, layout, rows, attribute columns) of a label file."""
    if path.suffix.lower() == ".json" or text.lstrip()[:1] in ("{", "["):
        if kind == "attributes":
            raise CspineError(f"{path}: attributes are imported from CSV (file,<attribute>,...), not JSON")
        return "keypoints", "json", _parse_json(path, text), []
    delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise CspineError(f"label file {path} is empty; it needs a header row (file,...)") from None
    except csv.Error as exc:
        raise CspineError(f"{path} line 1: not a readable CSV header ({exc})") from None
    lower = [h.lower() for h in header]
    blank = [i + 1 for i, h in enumerate(header) if not h]
    if blank:
        raise CspineError(f"{path}: header column {blank[0]} has no name; name every column")
    dups = sorted({h for h in lower if lower.count(h) > 1})
    if dups:
        raise CspineError(f"{path}: column {dups[0]!r} appears twice in the header; name each column once")
    keys = [k for k in KEY_COLUMNS if k in lower]
    if not keys:
        raise CspineError(f"{path}: no 'file' or 'sha256' column; the first row must name the columns, one of "
                          "them file (source file name) or sha256 (of the source file's bytes)")
    rest = [h for h, lo in zip(header, lower) if lo not in KEY_COLUMNS]
    long = {"point", "x", "y"} <= set(lower)
    pairs = _wide_pairs(rest)
    if kind is None:
        kind = "keypoints" if long or pairs is not None else "attributes"
    if kind == "keypoints" and not long and pairs is None:
        raise CspineError(f"{path}: no keypoint columns; give point,x,y columns (one row per point) or "
                          "<point>_x,<point>_y pairs (one row per image)")
    layout = "long" if kind == "keypoints" and long else ("wide" if kind == "keypoints" else "csv")
    if kind == "attributes" and not rest:
        raise CspineError(f"{path}: no attribute columns besides {'/'.join(keys)}; add one column per attribute")
    index = {lo: i for i, lo in enumerate(lower)}
    rows: list[_Row] = []
    try:
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            where = f"line {reader.line_num}"
            if len(cells) != len(header):
                rows.append(_Row(where, "", "", problem=f"{len(cells)} cells for {len(header)} columns; give "
                                 "one cell per header column (quote cells that contain commas)"))
                continue
            get = {lo: cells[i].strip() for lo, i in index.items()}
            key = next((k for k in ("sha256", "file") if get.get(k)), "")
            row = _Row(where, key, get.get(key, "") if key else "")
            if layout == "long":
                row.points.append((get["point"], "", get["x"], get["y"]))
            elif layout == "wide":
                for point, (cx, cy) in (pairs or {}).items():
                    row.points.append((point, f" ({cx}/{cy})", cells[header.index(cx)].strip(),
                                       cells[header.index(cy)].strip()))
            else:
                row.attributes = {h: cells[header.index(h)].strip() for h in rest}
            rows.append(row)
    except csv.Error as exc:
        raise CspineError(f"{path} line {reader.line_num}: not readable as CSV ({exc}); fix the quoting") from None
    return kind, layout, rows, rest


def _wide_pairs(columns: list[str]) -> dict[str, tuple[str, str]] | None:
    """{point: (x column, y column)} when every column is half of a <point>_x/<point>_y pair, else None."""
    pairs: dict[str, dict[str, str]] = {}
    for c in columns:
        stem, sep, axis = c.rpartition("_")
        if not sep or not stem or axis.lower() not in ("x", "y"):
            return None
        pairs.setdefault(stem, {})[axis.lower()] = c
    if not pairs or any(set(p) != {"x", "y"} for p in pairs.values()):
        return None
    return {stem: (p["x"], p["y"]) for stem, p in pairs.items()}


def _parse_json(path: Path, text: str) -> list[_Row]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CspineError(f"{path} line {exc.lineno}: not valid JSON ({exc.msg})") from None
    entries = doc.get("images") if isinstance(doc, dict) else doc
    if not isinstance(entries, list):
        raise CspineError(f"{path}: expected {{\"images\": [...]}} or a list of "
                          "{\"file\" or \"sha256\": ..., \"points\": {NAME: [x, y]}}")
    rows: list[_Row] = []
    for n, entry in enumerate(entries, 1):
        where = f"entry {n}"
        if not isinstance(entry, dict):
            rows.append(_Row(where, "", "", problem="not an object; give {\"file\": ..., \"points\": {...}}"))
            continue
        key = next((k for k in ("sha256", "file") if isinstance(entry.get(k), str) and entry[k].strip()), "")
        row = _Row(where, key, entry[key].strip() if key else "")
        points = entry.get("points")
        if not isinstance(points, dict):
            row.problem = "no \"points\" object; give \"points\": {NAME: [x, y], ...}"
        else:
            for name, xy in points.items():
                pair = xy if isinstance(xy, (list, tuple)) and len(xy) == 2 else (xy, None)
                row.points.append((str(name).strip(), "", pair[0], pair[1]))
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------------
# Matching rows to real images


class _Matcher:
    def __init__(self, study: Study) -> None:
        with study.store.connect() as tx:
            self.images = {r["id"]: r for r in tx.query(
                "SELECT id, source_path, source_format, photometric, orig_width, orig_height, resize_mode, flipped "
                "FROM real_images")}
            events = tx.query("SELECT source_path, outcome, reason, duplicate_of FROM ingest_events "
                              "WHERE source_path NOT IN (SELECT source_path FROM real_images) "
                              "ORDER BY recorded_at")
        self.by_name: dict[str, list[dict[str, Any]]] = {}
        for r in self.images.values():
            self.by_name.setdefault(PurePath(r["source_path"]).name, []).append(r)
        self.events = {PurePath(e["source_path"]).name: e for e in events}

    def match(self, row: _Row) -> tuple[dict[str, Any] | None, str | None, bool]:
        """(image, problem, unmatched): the real image a row names, or why not."""
        if row.problem:
            return None, row.problem, False
        if not row.key:
            return None, "no file or sha256 given; give the source file name or its sha256", False
        if row.key == "sha256":
            image = self.images.get(row.value.lower())
            if image is None:
                return None, (f"no real image with sha256 {row.value[:16]}…; check the hash (SHA-256 of the "
                              "source file's bytes) or that the file was ingested"), True
            return image, None, False
        name = PurePath(row.value).name
        found = self.by_name.get(name, [])
        if len(found) > 1 and name != row.value:  # a name with folders: the paths that end with it
            tail = "/" + row.value.replace("\\", "/").lstrip("/")
            found = [r for r in found if r["source_path"].replace("\\", "/").endswith(tail)] or found
        if len(found) == 1:
            return found[0], None, False
        if found:
            paths = ", ".join(r["source_path"] for r in found[:3]) + (", ..." if len(found) > 3 else "")
            return None, (f"file name {row.value!r} matches {len(found)} real images ({paths}); give a longer "
                          "path or the sha256 column"), False
        event = self.events.get(name)
        if event is not None and event["outcome"] == "duplicate":
            original = self.images.get(event["duplicate_of"] or "")
            what = f" of {PurePath(original['source_path']).name}" if original else ""
            return None, (f"{row.value!r} was a duplicate{what} at ingest (same bytes); label the original "
                          "instead"), True
        if event is not None:
            return None, (f"{row.value!r} was skipped at ingest ({event['reason']}); drop the row or ingest "
                          "the file"), True
        return None, f"no real image named {row.value!r} in the study; check the name or use the sha256 column", True


# ---------------------------------------------------------------------------------------------------
# Checking values


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _number_text(f: float) -> str:
    return str(int(f)) if f.is_integer() and abs(f) < 1e15 else repr(f)


def _keypoints(rows: list[tuple[_Row, dict[str, Any]]], size: int, convention: str, problems: list[str]
               ) -> list[tuple[str, str, float, float]]:
    shift = 0.5 if convention == "center" else 0.0
    seen: dict[tuple[str, str], str] = {}
    out: list[tuple[str, str, float, float]] = []
    for row, image in rows:
        W, H = int(image["orig_width"]), int(image["orig_height"])
        for point, col, xs, ys in row.points:
            if _missing(xs) and _missing(ys) and col:
                continue  # wide layout: this point is not labelled on this image
            where = f"{row.where}{col}"
            if not point:
                problems.append(f"{where}: empty point name; name every point (e.g. C3_body)")
                continue
            x, y = _number(xs), _number(ys)
            if x is None or y is None:
                bad = ", ".join(f"{a} {_show(v)}" for a, v, f in (("x", xs, x), ("y", ys, y)) if f is None)
                problems.append(f"{where}: {point} {bad} is not a finite number; give both coordinates in source "
                                "pixels")
                continue
            x, y = x + shift, y + shift
            if not (0.0 <= x <= W and 0.0 <= y <= H):
                problems.append(f"{where}: {point} ({x - shift:g}, {y - shift:g}) is outside the source image "
                                f"({W}x{H} pixels, x in [0, {W}], y in [0, {H}]{', centre convention' if shift else ''}"
                                "); check the coordinates' file and units")
                continue
            key = (image["id"], point)
            if key in seen:
                problems.append(f"{where}: {point} of {_name(image)} is also given on {seen[key]}; keep one")
                continue
            seen[key] = row.where
            out.append((image["id"], point, *to_canonical(image, x, y, size)))
    return out


def _attributes(rows: list[tuple[_Row, dict[str, Any]]], columns: list[str], problems: list[str]
                ) -> tuple[list[tuple[str, str, str, float | None]], dict[str, str]]:
    seen: dict[str, str] = {}
    given: list[tuple[_Row, dict[str, Any]]] = []
    for row, image in rows:
        if image["id"] in seen:
            problems.append(f"{row.where}: {_name(image)} already has a row ({seen[image['id']]}); keep one row per "
                            "image")
            continue
        seen[image["id"]] = row.where
        given.append((row, image))
    types: dict[str, str] = {}
    out: list[tuple[str, str, str, float | None]] = []
    for col in columns:
        values = [(image["id"], row.attributes[col]) for row, image in given if not _missing(row.attributes[col])]
        if not values:
            continue
        numbers = [_number(v) for _, v in values]
        if all(n is not None for n in numbers):
            types[col] = "numeric"
            out += [(i, col, _number_text(n), n) for (i, _), n in zip(values, numbers)]
        else:
            types[col] = "categorical"
            out += [(i, col, v, None) for i, v in values]
    return out, types


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in MISSING)


def _show(value: Any) -> str:
    return "(empty)" if value is None or value == "" else repr(value)


def _name(image: dict[str, Any]) -> str:
    return PurePath(image["source_path"]).name


# ---------------------------------------------------------------------------------------------------
# The import


def import_labels(study: Study, path: str | Path, kind: str | None = None, *, convention: str = "corner",
                  skip_unmatched: bool = False, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Import one label file (kind guessed from its layout unless given); all or nothing.

    Raises LabelImportError (one line per problem in ``problems``) when any row is wrong, CspineError for a
    file that cannot be read as a label file at all. Returns what was imported.
    """
    if kind is not None and kind not in KINDS:
        raise CspineError(f"unknown label kind {kind!r}; use {' or '.join(KINDS)}")
    if convention not in CONVENTIONS:
        raise CspineError(f"unknown coordinate convention {convention!r}; use {' or '.join(CONVENTIONS)}")
    path = Path(path).expanduser().absolute()
    data, text = _read_text(path)
    kind, layout, rows, columns = _parse(path, text, kind)
    if not rows:
        raise CspineError(f"{path} has a header but no rows; nothing to import")
    matcher = _Matcher(study)
    if not matcher.images:
        raise CspineError(f"study {study.root} has no real images yet; ingest them before importing labels")
    size = int(study.get("ingest", "size", 256))
    problems: list[str] = []
    unmatched: list[str] = []
    matched: list[tuple[_Row, dict[str, Any]]] = []
    for row in rows:
        image, problem, is_unmatched = matcher.match(row)
        if image is not None:
            matched.append((row, image))
        elif is_unmatched and skip_unmatched:
            unmatched.append(f"{row.where}: {problem}")
        else:
            hint = " (or --skip-unmatched to leave such rows out)" if is_unmatched else ""
            problems.append(f"{row.where}: {problem}{hint}")
    keypoints: list[tuple[str, str, float, float]] = []
    attributes: list[tuple[str, str, str, float | None]] = []
    types: dict[str, str] = {}
    if kind == "keypoints":
        keypoints = _keypoints(matched, size, convention, problems)
    else:
        attributes, types = _attributes(matched, columns, problems)
    if problems:  # in file order ("line 12: ..." / "entry 3: ..."), whichever check found them
        raise LabelImportError(str(path), sorted(problems, key=lambda p: int(p.split(":")[0].split()[1])))
    if not keypoints and not attributes:
        raise CspineError(f"{path}: no labels to import (every row was unmatched or empty)")
    images = {k[0] for k in keypoints} | {a[0] for a in attributes}
    result: dict[str, Any] = {
        "kind": kind, "layout": layout, "file": str(path), "rows": len(rows), "images": len(images),
        "labels": len(keypoints) + len(attributes), "unmatched": unmatched,
    }
    if kind == "keypoints":
        result.update(points=sorted({k[1] for k in keypoints}), convention=convention, canonical_size=size)
    else:
        result["attributes"] = types
    import_id = f"{kind}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
    summary = {k: v for k, v in result.items() if k not in ("file", "unmatched")}
    summary["unmatched"] = len(unmatched)
    labels.replace_labels(study, import_id, kind, file=str(path), file_sha256=hashlib.sha256(data).hexdigest(),
                          summary=summary, keypoints=keypoints, attributes=attributes)
    if log is not None:
        log(f"imported {result['labels']} {kind} labels of {len(images)} images from {path.name}")
    return {"import": import_id, **result}


__all__ = ["CONVENTIONS", "KINDS", "LabelImportError", "decoded_grid", "import_labels", "to_canonical"]
