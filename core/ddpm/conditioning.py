"""Conditional generation: what a network is conditioned on (the condition spec), read from the real set's labels.

A conditional network is trained on the labelled real images (core/realset/labels.py) and told, for every
image, its condition:

* attributes (``--condition-on defect`` or ``sex,defect``): the combination of the named attributes' values is one
  class, index ``1 + mixed-radix(value indices)``; class 0 is "no condition". The network adds a learned
  embedding of the class to its timestep embedding (diffusers' ``num_class_embeds``; for the study's Unet the
  same, core/ddpm/lucidrains.py), so every residual block sees it.
* a keypoint layout (``--condition-on keypoints``): one Gaussian heatmap channel per named point (peak 1,
  ``sigma`` pixels at the network's resolution, zero where the image has no such point) concatenated to the
  noisy image at the network's input.

Classifier-free guidance (Ho & Salimans 2022): with probability ``drop`` a training image's whole condition is
replaced by the null one (class 0, all-zero heatmaps), from a generator seeded by (seed, step, micro-step) so
a resumed run drops the same images (core/ddpm/data.py). The spec is stored in the model config, so every
checkpoint (``cspine.json``) carries the vocabularies, point names, sigma and dropout it was trained with.

Coordinates: the labels are in each real image's canonical pixel coordinates (origin at the top-left corner,
pixel i spans [i, i+1)); the network works at ``image_size``, so a point scales by ``image_size / canonical``.
A synthetic image's stored condition is in its own pixel coordinates, mirrored with it (x -> size - x) when
sampling mirrors the image to face left.

This module imports no torch at load time (the CLI parses and lists without torch's start-up cost; reading the
data selection loads core/ddpm/data.py when a spec or a plan is built); the tensors are in
core/ddpm/condition_net.py.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from core.errors import CspineError
from core.realset import labels
from core.study import Study

KEYPOINTS = "keypoints"
NULL_CLASS = 0
# An attribute with more values than this is numeric in spirit: conditioning wants categories.
MAX_VALUES = 32
# Class embeddings are one row per value combination; beyond this the table is mostly never trained.
MAX_COMBINATIONS = 1024


@dataclass
class ConditionSpec:
    attributes: tuple[str, ...] = ()
    vocabularies: dict[str, list[str]] = field(default_factory=dict)
    points: tuple[str, ...] = ()
    sigma: float = 1.0
    drop: float = 0.1
    # Combinations of attribute values seen in training, with their image counts (the --per-condition quota).
    combinations: list[dict[str, Any]] = field(default_factory=list)
    labels_sha256: str = ""
    labelled_images: int = 0
    selection_images: int = 0

    # -- what the network needs ------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        """Class-embedding rows: 1 (null) + every value combination; 0 when attributes are not conditioned."""
        if not self.attributes:
            return 0
        return 1 + math.prod(len(self.vocabularies[a]) for a in self.attributes)

    @property
    def extra_channels(self) -> int:
        return len(self.points)

    def class_index(self, values: Mapping[str, str]) -> int:
        """The class of a complete attribute assignment (mixed radix over the vocabularies, plus 1 for null)."""
        index = 0
        for name in self.attributes:
            vocab = self.vocabularies[name]
            value = values.get(name)
            if value is None:
                raise CspineError(f"the condition needs a value for attribute {name!r} "
                                  f"(one of {', '.join(vocab)})")
            if str(value) not in vocab:
                raise CspineError(f"attribute {name} has no value {value!r} in this model's vocabulary; "
                                  f"use one of {', '.join(vocab)}")
            index = index * len(vocab) + vocab.index(str(value))
        return index + 1

    def describe(self) -> str:
        parts = [f"{a} ({len(self.vocabularies[a])} values)" for a in self.attributes]
        if self.points:
            parts.append(f"keypoints ({len(self.points)} points, sigma {self.sigma:g} px)")
        return ", ".join(parts) + f"; condition dropout {self.drop:g}"

    # -- storage ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"attributes": list(self.attributes), "vocabularies": {k: list(v) for k, v in self.vocabularies.items()},
                "points": list(self.points), "sigma": self.sigma, "drop": self.drop,
                "combinations": self.combinations, "labels_sha256": self.labels_sha256,
                "labelled_images": self.labelled_images, "selection_images": self.selection_images,
                "num_classes": self.num_classes}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ConditionSpec":
        return cls(attributes=tuple(data.get("attributes") or ()),
                   vocabularies={k: list(v) for k, v in (data.get("vocabularies") or {}).items()},
                   points=tuple(data.get("points") or ()), sigma=float(data.get("sigma", 1.0)),
                   drop=float(data.get("drop", 0.0)), combinations=list(data.get("combinations") or []),
                   labels_sha256=str(data.get("labels_sha256", "")),
                   labelled_images=int(data.get("labelled_images", 0)),
                   selection_images=int(data.get("selection_images", 0)))


def spec_of(cfg: Any) -> ConditionSpec | None:
    """The condition spec of a ModelConfig (None: an unconditional network)."""
    return ConditionSpec.from_dict(cfg.condition) if getattr(cfg, "condition", None) else None


# -------------------------------------------------------------------------------------------------
# Building a spec from the study's labels (train time)


def parse_condition_on(text: str) -> tuple[tuple[str, ...], bool]:
    """``ATTR[,ATTR] | keypoints | ATTR,keypoints`` -> (attribute names, keypoints wanted)."""
    names = [n.strip() for n in str(text).split(",") if n.strip()]
    if not names:
        raise CspineError("--condition-on needs attribute names and/or 'keypoints' (e.g. defect,keypoints)")
    if len(set(names)) != len(names):
        raise CspineError(f"--condition-on names {text!r} repeat a name")
    attrs = tuple(n for n in names if n != KEYPOINTS)
    return attrs, KEYPOINTS in names


def default_sigma(image_size: int) -> float:
    """Heatmap width: 4 px at 256 (about a quarter of a vertebral body's height there), at least 1 px."""
    return max(1.0, image_size / 64)


def _sort_values(values: Iterable[str]) -> list[str]:
    def key(v: str) -> tuple[int, float, str]:
        try:
            return (0, float(v), v)
        except ValueError:
            return (1, 0.0, v)
    return sorted(set(values), key=key)


def build_spec(study: Study, condition_on: str, *, drop: float, sigma: float | None, image_size: int,
               selection: str) -> ConditionSpec:
    """The spec of a conditional training run on `selection` ('train' or 'all'), or a one-line refusal."""
    from core.ddpm.data import image_rows  # imported on use: data.py loads torch (start-up cost)

    attrs, want_points = parse_condition_on(condition_on)
    if not 0.0 <= drop < 1.0:
        raise CspineError(f"--cond-drop must be in [0, 1), not {drop} (0.1 is usual: one image in ten trains "
                          f"the unconditional model that guidance needs)")
    known = labels.attribute_names(study)
    missing = [a for a in attrs if a not in known]
    if missing:
        raise CspineError(f"no attribute {', '.join(missing)} among the study's labels ("
                          + (", ".join(known) if known else "none imported") + "); import it with "
                          "`cspine-tui labels --import FILE --kind attributes`")
    points: tuple[str, ...] = ()
    if want_points:
        points = tuple(labels.point_names(study))
        if not points:
            raise CspineError("--condition-on keypoints: the study has no keypoints; import them with "
                              "`cspine-tui labels --import FILE --kind keypoints`")
    ids = [r["id"] for r in image_rows(study, selection)]
    table = label_table(study, attrs, points, ids)
    vocab = {a: _sort_values(v[a] for v in table.values.values()) for a in attrs}
    for a, values in vocab.items():
        if len(values) > MAX_VALUES:
            raise CspineError(f"attribute {a} has {len(values)} distinct values; conditioning takes categories "
                              f"(at most {MAX_VALUES}): bin it and import the binned column")
    if not table.ids:
        raise CspineError(f"none of the {len(ids)} {selection} images carries labels for "
                          f"{condition_on}; import them with `cspine-tui labels --import FILE`")
    spec = ConditionSpec(attributes=attrs, vocabularies=vocab, points=points,
                         sigma=float(sigma if sigma is not None else default_sigma(image_size)), drop=float(drop),
                         labels_sha256=table.digest, labelled_images=len(table.ids), selection_images=len(ids))
    if spec.num_classes > MAX_COMBINATIONS + 1:
        raise CspineError(f"{' x '.join(str(len(vocab[a])) for a in attrs)} = {spec.num_classes - 1} value "
                          f"combinations; condition on fewer attributes (at most {MAX_COMBINATIONS} combinations)")
    if spec.sigma <= 0:
        raise CspineError(f"--heatmap-sigma must be positive, not {spec.sigma}")
    counts: dict[str, int] = {}
    for i in table.ids:
        key = json.dumps({a: table.values[i][a] for a in attrs}, sort_keys=True)
        counts[key] = counts.get(key, 0) + 1
    spec.combinations = [{"attributes": json.loads(k), "images": n} for k, n in sorted(counts.items())] \
        if attrs else []
    return spec


# -------------------------------------------------------------------------------------------------
# Per-image labels


@dataclass
class LabelTable:
    """The labels of the images that carry every conditioned attribute and (for keypoints) at least one point.

    ``keypoints[id]`` is a (len(points), 2) float array in that image's canonical pixels, NaN where absent.
    """

    ids: list[str]
    values: dict[str, dict[str, str]]
    keypoints: dict[str, np.ndarray]
    digest: str


def label_table(study: Study, attrs: Sequence[str], points: Sequence[str], ids: Sequence[str]) -> LabelTable:
    values: dict[str, dict[str, str]] = {i: {} for i in ids}
    for a in attrs:
        for image_id, v in labels.attributes_for(study, a, ids).items():
            values[image_id][a] = v
    kps: dict[str, np.ndarray] = {}
    if points:
        for image_id, pts in labels.keypoints_for(study, ids).items():
            arr = np.full((len(points), 2), np.nan)
            for k, name in enumerate(points):
                if name in pts:
                    arr[k] = pts[name]
            if np.isfinite(arr).any():
                kps[image_id] = arr
    keep = [i for i in ids if all(a in values[i] for a in attrs) and (not points or i in kps)]
    h = hashlib.sha256(json.dumps({"attributes": list(attrs), "points": list(points)}).encode())
    for i in keep:
        h.update(json.dumps([i, [values[i][a] for a in attrs],
                             np.round(kps[i], 6).tolist() if points else None]).encode())
    return LabelTable(ids=keep, values={i: values[i] for i in keep}, keypoints={i: kps[i] for i in keep if points},
                      digest=h.hexdigest())


def canonical_sizes(study: Study, ids: Sequence[str]) -> dict[str, int]:
    """The side of each real image's canonical PNG (read from the file header: labels live in those pixels)."""
    from PIL import Image  # imported on use: PIL's start-up cost stays off the CLI's parse path

    rows = study.store.query("SELECT id, path FROM real_images WHERE id IN (SELECT unnest(?))", [list(ids)])
    out = {}
    for r in rows:
        with Image.open(study.abs(r["path"])) as im:
            out[r["id"]] = int(im.size[0])
    return out


def check_labels_unchanged(spec: ConditionSpec, table: LabelTable) -> None:
    if spec.labels_sha256 and table.digest != spec.labels_sha256:
        raise CspineError("the study's labels changed since this conditional run was set up (labels digest "
                          f"{table.digest[:12]} != {spec.labels_sha256[:12]}); a resume would not repeat the run: "
                          "start a new training run")


# -------------------------------------------------------------------------------------------------
# Conditions of synthetic images


def mirror_condition(condition: dict[str, Any] | None, size: int) -> dict[str, Any] | None:
    """The condition of the mirrored image: every keypoint x -> size - x (continuous pixel coordinates)."""
    if not condition or not condition.get("keypoints"):
        return condition
    kps = {p: [round(float(size) - float(xy[0]), 4), float(xy[1])] for p, xy in condition["keypoints"].items()}
    return {**condition, "keypoints": kps}


def condition_record(spec: ConditionSpec, attributes: Mapping[str, str] | None,
                     keypoints: np.ndarray | None) -> dict[str, Any]:
    """The stored form: {"attributes": {name: value}, "keypoints": {point: [x, y]}} (points present only)."""
    out: dict[str, Any] = {}
    if spec.attributes:
        out["attributes"] = {a: str((attributes or {})[a]) for a in spec.attributes}
    if spec.points and keypoints is not None:
        out["keypoints"] = {p: [round(float(x), 4), round(float(y), 4)]
                            for p, (x, y) in zip(spec.points, keypoints) if np.isfinite(x) and np.isfinite(y)}
    return out


def keypoint_array(spec: ConditionSpec, condition: Mapping[str, Any]) -> np.ndarray:
    """(len(points), 2) in the network's pixels from a stored condition, NaN for points it lacks."""
    arr = np.full((len(spec.points), 2), np.nan)
    kps = condition.get("keypoints") or {}
    for k, p in enumerate(spec.points):
        if p in kps:
            arr[k] = kps[p]
    return arr


def parse_fixed(spec: ConditionSpec, pairs: Sequence[str]) -> dict[str, str]:
    """``--condition ATTR=VALUE`` pairs, checked against the model's vocabularies."""
    fixed: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = str(pair).partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name:
            raise CspineError(f"--condition takes ATTR=VALUE (e.g. defect=none), not {pair!r}")
        if name not in spec.attributes:
            raise CspineError(f"this model is not conditioned on {name!r}; its attributes: "
                              + (", ".join(spec.attributes) or "none (keypoints only)"))
        if value not in spec.vocabularies[name]:
            raise CspineError(f"attribute {name} has no value {value!r} in this model's vocabulary; use one of "
                              f"{', '.join(spec.vocabularies[name])}")
        fixed[name] = value
    return fixed


def quota_combinations(spec: ConditionSpec, fixed: Mapping[str, str]) -> list[dict[str, str]]:
    """The value combinations a --per-condition run covers: those seen in training that agree with `fixed`."""
    combos = [c["attributes"] for c in spec.combinations
              if all(c["attributes"].get(k) == v for k, v in fixed.items())]
    if not combos:
        raise CspineError("no training image has the combination "
                          + ", ".join(f"{k}={v}" for k, v in fixed.items())
                          + "; the model never learned it (see the checkpoint's condition combinations)")
    return combos


@dataclass
class SamplingPlan:
    """Which condition image i of a conditional sampling run gets: a pure function of (seed, i).

    Image i takes the attribute combination of its quota block (``--per-condition N``: block i // N) or the
    fixed one, and a template real train image drawn by a seeded hash of (seed, i) among the train images that
    match those attributes; unfixed attributes and the keypoint layout come from the template.
    """

    spec: ConditionSpec
    seed: int
    fixed: dict[str, str]
    per_condition: int | None
    combos: list[dict[str, str]]
    template_ids: list[str]
    template_values: dict[str, dict[str, str]]
    template_points: dict[str, np.ndarray]   # in the network's pixels

    def count(self) -> int | None:
        return self.per_condition * len(self.combos) if self.per_condition else None

    def wanted(self, i: int) -> dict[str, str]:
        if self.per_condition:
            return dict(self.combos[min(i // self.per_condition, len(self.combos) - 1)])
        return dict(self.fixed)

    def check(self) -> None:
        """Refuse now, not at image 5,000, a wanted combination no train image has."""
        for wanted in (self.combos or [self.fixed]):
            if not any(all(self.template_values[t].get(k) == v for k, v in wanted.items())
                       for t in self.template_ids):
                raise CspineError("no train image has the attributes "
                                  + ", ".join(f"{k}={v}" for k, v in wanted.items())
                                  + "; the model never learned that combination")

    def condition(self, i: int) -> dict[str, Any]:
        from core.ddpm.data import mix_seed  # imported on use: data.py loads torch (start-up cost)

        wanted = self.wanted(i)
        pool = [t for t in self.template_ids if all(self.template_values[t].get(k) == v for k, v in wanted.items())]
        if not pool:
            raise CspineError("no train image has the attributes " + ", ".join(f"{k}={v}" for k, v in wanted.items())
                              + " to draw the rest of the condition from")
        template = pool[mix_seed(self.seed, "condition", i) % len(pool)]
        values = {**self.template_values[template], **wanted}
        return condition_record(self.spec, values, self.template_points.get(template))


def sampling_plan(study: Study, spec: ConditionSpec, image_size: int, *, seed: int, fixed: Mapping[str, str],
                  per_condition: int | None) -> SamplingPlan:
    """The plan of a sampling run; templates are the train split's labelled images (never validation ones)."""
    from core.ddpm.data import image_rows  # imported on use: data.py loads torch (start-up cost)

    ids = [r["id"] for r in image_rows(study, "train")]
    table = label_table(study, spec.attributes, spec.points, ids)
    if not table.ids:
        raise CspineError("no train image carries the labels this model is conditioned on; import them with "
                          "`cspine-tui labels --import FILE`")
    points: dict[str, np.ndarray] = {}
    if spec.points:
        sizes = canonical_sizes(study, table.ids)
        points = {i: table.keypoints[i] * (image_size / sizes[i]) for i in table.ids}
    combos = quota_combinations(spec, fixed) if per_condition else []
    return SamplingPlan(spec=spec, seed=int(seed), fixed=dict(fixed), per_condition=per_condition,
                        combos=combos, template_ids=table.ids, template_values=table.values,
                        template_points=points)


def plan_digest(plan: SamplingPlan) -> str:
    """Identifies what a run's conditions are drawn from; a run extended later must draw from the same."""
    h = hashlib.sha256(json.dumps({"fixed": plan.fixed, "per_condition": plan.per_condition,
                                   "combos": plan.combos}, sort_keys=True).encode())
    for t in plan.template_ids:
        pts = plan.template_points.get(t)
        h.update(json.dumps([t, plan.template_values[t], None if pts is None else np.round(pts, 6).tolist()],
                            sort_keys=True).encode())
    return h.hexdigest()
