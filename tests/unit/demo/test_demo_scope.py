"""A second demo run acts only on what the demo made: a user's checkpoint, run, decisions and release stay as
they are, and nothing new is made for them (no sampling of their checkpoint, no simulated screening of their
images, no new audit, no rewritten release)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from core.demo import raters, stages
from core.study import Study
from tests.factories.sample import make_checkpoint
from tests.factories.screening import add_run
from tests.factories.train import add_real_images

USER = "ann"


def _fast_stages(monkeypatch) -> None:
    """The demo's stages from sampling on, smaller; phantoms, ingest and training are prepared by the test."""
    from core.ddpm.sampling import demo_sample

    monkeypatch.setattr(raters, "DEMO_QUARTETS", 2)
    monkeypatch.setattr(raters, "DEMO_SIZE", 32)
    skip = {"phantoms", "ingest", "train"}
    monkeypatch.setattr(stages, "STAGES", [
        (name, (lambda s, log: demo_sample(s, log, count=3)) if name == "sample" else stage)
        for name, stage in stages.STAGES if name not in skip])


def _snapshot(study: Study) -> dict:
    """Every row the stages write, and the bytes of every exported file."""
    tables = {
        "jobs": "SELECT id, kind, state FROM jobs",
        "runs": "SELECT id, name, source, checkpoint_step FROM synthetic_runs",
        "images": "SELECT id, run_id, path, sha256 FROM synthetic_images",
        "reviews": "SELECT image_id, reviewer, decision, reason FROM reviews",
        "events": "SELECT count(*) AS n FROM review_events",
        "audits": "SELECT id FROM audits",
        "packs": "SELECT id FROM quartet_packs",
        "analyses": "SELECT count(*) AS n FROM analyses",
    }
    snap = {name: sorted(map(str, study.store.query(sql))) for name, sql in tables.items()}
    snap["files"] = {p.relative_to(study.root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                     for p in sorted(study.exports_dir.rglob("*")) if p.is_file()}
    return snap


@pytest.fixture
def demo_study(tmp_path: Path) -> Study:
    """A demo study up to its training: real images with a split, and the demo training job's 3 checkpoints."""
    study = Study.create(tmp_path / "demo", preset="tiny")
    study.set("study", "demo", True)
    add_real_images(study, n=12, size=32)
    for step in (100, 200, 300):
        make_checkpoint(study, "train-demo", step, torch_seed=step)
    study.store.execute("UPDATE jobs SET params = '{\"demo\": true}' WHERE id = 'train-demo'")
    return study


@pytest.mark.slow  # ~25 s at load: three checkpoints sampled, an audit, a reader study, twice
def test_a_second_demo_run_leaves_the_users_work_alone(demo_study, tmp_path, monkeypatch) -> None:
    from core.screening import decisions
    from core.screening.release import write_release

    _fast_stages(monkeypatch)
    stages.build_demo(demo_study.root, log=lambda _m: None)
    assert {r["name"] for r in demo_study.store.query("SELECT name FROM synthetic_runs WHERE source = 'sampled'")} \
        == {"demo-s100", "demo-s200", "demo-s300"}
    demo_release = (demo_study.exports_dir / "release" / "manifest.csv").read_text()

    # The user's own work in the demo study: a newer training job, a run of their own screened by them, one
    # of their decisions on a demo image, and a release of their own.
    make_checkpoint(demo_study, "train-user", 400, torch_seed=4)
    mine = add_run(demo_study, "my-run", 400, 3, seed0=900)
    demo_image = demo_study.store.scalar("SELECT min(id) FROM synthetic_images WHERE run_id = 'demo-s100'")
    decisions.apply_events(demo_study, [decisions.ReviewEvent("accept", USER, i) for i in mine[:2]]
                           + [decisions.ReviewEvent("reject", USER, demo_image, "other", "mine")])
    write_release(demo_study, demo_study.exports_dir / "my-release")
    before = _snapshot(demo_study)

    stages.build_demo(demo_study.root, log=lambda _m: None)

    after = _snapshot(demo_study)
    for key in before:
        assert after[key] == before[key], key
    assert (demo_study.exports_dir / "release" / "manifest.csv").read_text() == demo_release
    assert "my-run" not in demo_release
    assert mine[2] not in {r["image_id"] for r in demo_study.store.query("SELECT image_id FROM reviews")}


def test_the_demo_refuses_a_study_it_did_not_make(study, monkeypatch) -> None:
    from core.errors import CspineError

    _fast_stages(monkeypatch)
    marker = study.root / "exports" / "mine.txt"
    marker.write_text("the user's")
    for fresh in (False, True):  # --fresh would have deleted the user's study
        with pytest.raises(CspineError, match="a study the demo did not make"):
            stages.build_demo(study.root, fresh=fresh, log=lambda _m: None)
    assert marker.read_text() == "the user's" and not study.get("study", "demo")
