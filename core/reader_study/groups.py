"""Groups of synthetic images a reader study compares: a checkpoint, a sampling run, or an external set.

A group reference on the command line (``quartets --groups ckpt:68000 run:NAME external:NAME``):

- ``ckpt:STEP`` (or a bare step, as ``--checkpoints`` gives): every sampling run of that checkpoint;
  ``ckpt:RUN`` also names a checkpoint by one of its runs;
- ``run:NAME``: one sampling run (a conditional run, a sampler setting...), by name or id;
- ``external:NAME``: one set registered with ``cspine-tui add-synthetic`` (another team's GAN, a published set).

Every group draws from its images accepted under the study's final screening rule, so all groups pass the same
selection. The group's **source** (the answer key's ``source`` column, ``quartet_items.source``, the analysis'
group names) is the bare step for a checkpoint (as packs have always written it), ``run:NAME`` or
``external:NAME`` otherwise. Groups of one pack must not share images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.errors import CspineError
from core.screening.rules import accepted_image_ids

if TYPE_CHECKING:
    from core.study import Study

KINDS = ("ckpt", "run", "external")


@dataclass
class Group:
    source: str                # the answer key's source: "68000", "run:NAME" or "external:NAME"
    kind: str                  # ckpt | run | external
    pool: list[dict[str, Any]]  # accepted images: {"id", "path"} in a stable order


def label(source: str) -> str:
    """How reports and screens name a group: 'step 68000', 'run NAME', 'external NAME', 'real'."""
    if source.isdigit():
        return f"step {source}"
    kind, _, name = source.partition(":")
    return f"{kind} {name}" if kind in KINDS and name else source


def describe(source: str) -> str:
    """A group in a sentence: 'checkpoint 68000', 'run NAME', 'external set NAME'."""
    if source.isdigit():
        return f"checkpoint {source}"
    kind, _, name = source.partition(":")
    return {"run": f"run {name}", "external": f"external set {name}"}.get(kind, source)


def kind_of(source: str) -> str:
    if source == "real":
        return "real"
    return "ckpt" if source.isdigit() else source.partition(":")[0]


def _paths(study: Study, ids: list[str]) -> list[dict[str, Any]]:
    if not ids:
        return []
    rows = study.store.query("SELECT id, path FROM synthetic_images WHERE list_contains(?::VARCHAR[], id) "
                             "ORDER BY id", [ids])
    return [{"id": r["id"], "path": r["path"]} for r in rows]


def _checkpoint_step(study: Study, ref: str) -> int:
    if ref.isdigit() and study.store.scalar("SELECT count(*) FROM synthetic_runs WHERE checkpoint_step = ?",
                                            [int(ref)]):
        return int(ref)
    row = study.store.query_one("SELECT checkpoint_step FROM synthetic_runs WHERE (id = ? OR name = ?) "
                                "AND checkpoint_step IS NOT NULL", [ref, ref])
    if row:
        return int(row["checkpoint_step"])
    raise CspineError(f"no synthetic images from checkpoint {ref!r}; groups with images: {_listing(study)}")


def _run(study: Study, name: str, source: str) -> dict[str, Any]:
    row = study.store.query_one("SELECT id, name, source FROM synthetic_runs WHERE id = ? OR name = ? "
                                "ORDER BY id = ? DESC", [name, name, name])
    if row is None:
        raise CspineError(f"no synthetic run {name!r}; groups with images: {_listing(study)}")
    if row["source"] != source:
        other = "run" if row["source"] == "sampled" else "external"
        raise CspineError(f"{name!r} is a {'sampling run' if other == 'run' else 'set added with add-synthetic'}; "
                          f"name it as {other}:{name}")
    return row


def resolve(study: Study, ref: str) -> Group:
    """A group reference -> its source name and its accepted images (CspineError naming what exists)."""
    ref = str(ref).strip()
    kind, sep, name = ref.partition(":")
    if not sep:
        kind, name = "ckpt", ref
    if kind not in KINDS or not name:
        raise CspineError(f"group {ref!r} is not ckpt:STEP, run:NAME or external:NAME")
    if kind == "ckpt":
        step = _checkpoint_step(study, name)
        pool = _paths(study, accepted_image_ids(study, checkpoint_step=step))
        return Group(str(step), kind, pool)
    row = _run(study, name, "sampled" if kind == "run" else "external")
    return Group(f"{kind}:{row['name']}", kind, _paths(study, accepted_image_ids(study, run_id=row["id"])))


def resolve_all(study: Study, refs: list[str], count: int) -> list[Group]:
    """Resolve a pack's groups: distinct, disjoint, and each with at least `count` accepted images."""
    groups = [resolve(study, r) for r in refs]
    sources = [g.source for g in groups]
    if len(set(sources)) != len(sources):
        raise CspineError(f"the groups must differ (got {', '.join(sources)})")
    for i, a in enumerate(groups):
        for b in groups[i + 1:]:
            shared = {p["id"] for p in a.pool} & {p["id"] for p in b.pool}
            if shared:
                raise CspineError(f"{describe(a.source)} and {describe(b.source)} share {len(shared)} images (a run "
                                  "of that checkpoint?); choose groups that do not overlap")
    for g in groups:
        if len(g.pool) < count:
            raise CspineError(f"{describe(g.source)} has {len(g.pool)} accepted images; {count} quartets need {count} "
                              "(screen more images, sample more, or lower --count)")
    return groups


def available(study: Study) -> dict[str, int]:
    """Every group a pack could use -> its accepted images: checkpoints (bare step), run:NAME, external:NAME."""
    out: dict[str, int] = {}
    steps = study.store.column("SELECT DISTINCT checkpoint_step FROM synthetic_runs "
                               "WHERE checkpoint_step IS NOT NULL ORDER BY 1")
    for step in steps:
        out[str(step)] = len(accepted_image_ids(study, checkpoint_step=int(step)))
    for row in study.store.query("SELECT id, name, source FROM synthetic_runs ORDER BY source DESC, name"):
        kind = "run" if row["source"] == "sampled" else "external"
        out[f"{kind}:{row['name']}"] = len(accepted_image_ids(study, run_id=row["id"]))
    return out


def _listing(study: Study) -> str:
    have = available(study)
    return ", ".join(f"{k} ({v} accepted)" for k, v in have.items()) or "none (sample or add-synthetic first)"
