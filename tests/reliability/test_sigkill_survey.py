"""SIGKILL during the reader-study commands that are not jobs: `quartets` (pack building) and `import-ratings`.

Both run in seconds as plain CLI commands, so the whole command's process group is killed at a seeded
moment (a uniform 10-90 % of the duration of an uninterrupted run of the same command, measured in the same
test module, or right after the pack folder appears, which is the end of the build). Afterwards the result is
all there or not at all, the study opens, and running the same command again gives what the uninterrupted
run gave.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from pathlib import Path

import pytest

from core.study import Study
from core.reader_study.pack import read_pack_dir
from tests.reliability.killing import (check_study, cli, decodes, group_alive, kill_group, spawn, stray_temporaries,
                                       wait_until)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SEEDS = (11, 23, 37)
CKPTS = ("2000", "4000", "6000")


def _run_timed(args: list) -> tuple[float, str]:
    t0 = time.monotonic()
    out = cli(*args)
    assert out.returncode == 0, out.stderr[-2000:]
    return time.monotonic() - t0, out.stdout


def _kill_after(args: list, delay_s: float, log: Path, anchor: Path | None = None) -> bool:
    """Start `cspine-tui ARGS`, wait for `anchor` to exist (if given) plus `delay_s`, kill the group.

    Returns whether the command was still running when killed.
    """
    proc = spawn(args, log)
    if anchor is not None:
        wait_until(lambda: anchor.exists() or proc.poll() is not None, 120, f"{anchor} appearing", poll=0.001)
    time.sleep(delay_s)  # the fault injection itself: the seeded moment
    hit = proc.poll() is None and group_alive(proc.pid)
    kill_group(proc.pid)
    proc.wait(timeout=30)
    return hit


# ---------------------------------------------------------------------------------------------------
# quartets


def _quartets_args(root: Path, out: Path) -> list:
    return ["quartets", "--study", root, "--checkpoints", *CKPTS, "--count", 6, "--seed", 7, "--size", 48,
            "--out", out, "--json"]


def _pack(study: Study, out: Path) -> dict | None:
    """The pack built into `out` as the study knows it (None when the study has none there)."""
    row = study.store.query_one("SELECT id FROM quartet_packs WHERE out_dir = ?", [str(out.resolve())])
    if row is None:
        return None
    items = study.store.query("SELECT quartet, position, image_kind, image_id, source, image_file FROM quartet_items "
                              "WHERE pack_id = ? ORDER BY quartet, position", [row["id"]])
    images = out / "upload" / "images"
    return {"items": items, "files": sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()),
            "images": {p.name: p.read_bytes() for p in sorted(images.iterdir())}}


@pytest.fixture(scope="module")
def pack_study(tmp_path_factory) -> tuple[Path, dict, float]:
    from tests.factories.survey import tiny_study
    study = tiny_study(tmp_path_factory.mktemp("quartets"), n_real=12, per_ckpt=10)
    out = study.exports_dir / "pack-reference"
    seconds, _ = _run_timed(_quartets_args(study.root, out))
    reference = _pack(study, out)
    assert reference is not None and len(reference["items"]) == 24
    return study.root, reference, seconds


@pytest.mark.parametrize("seed", [*SEEDS, "at-rename"])
def test_sigkill_during_quartets_leaves_all_or_nothing_and_a_rerun_builds_the_same_pack(seed, pack_study, tmp_path):
    root, reference, seconds = pack_study
    out = Study.open(root).exports_dir / f"pack-killed-{seed}"
    args = _quartets_args(root, out)
    if seed == "at-rename":  # the end of the build: the folder is in place, the database rows follow
        hit = _kill_after(args, random.Random(5).uniform(0, 0.01), tmp_path / "log.txt", anchor=out)
    else:
        hit = _kill_after(args, random.Random(seed).uniform(0.1, 0.9) * seconds, tmp_path / "log.txt")
    print(f"quartets seed {seed}: killed while running: {hit}")
    check_study(root)
    study = Study.open(root)
    built = _pack(study, out)
    # All or nothing: no folder, no rows; a folder in place is a complete pack. It lacks its rows only when the
    # kill fell inside the commit itself, and then running the same request again registers it.
    if built is None and out.exists():
        spec = read_pack_dir(out)
        for item in spec.items:
            decodes(out / "upload" / "images" / item.image_file)
    if built is not None:
        assert out.exists(), "the study references a pack folder the kill left absent"
    else:
        _, stdout = _run_timed(args)
        assert json.loads(stdout)["out"] == str(out.resolve())
        built = _pack(study, out)
    assert built == reference
    assert not [p for p in stray_temporaries(out.parent) if p.is_dir() and p.name.startswith(f".{out.name}")], \
        "a killed build's temporary pack folder was left behind"
    check_study(root)


# ---------------------------------------------------------------------------------------------------
# import-ratings


N_RATERS = 30
ANALYSIS_KEYS = ("n_raters", "n_trials", "n_correct", "accuracy", "accuracy_ci95", "binomial_p_vs_chance",
                 "fleiss_kappa_by_coding", "mean_realism_exact", "n_ratings", "wilcoxon", "per_rater_means_exact",
                 "chosen_as_real", "per_quartet")


@pytest.fixture(scope="module")
def ratings_template(tmp_path_factory) -> tuple[Path, Path]:
    from core.reader_study import pack
    from core.demo.raters import simulate_raters, write_qualtrics_csv
    from tests.factories.survey import tiny_study
    tmp = tmp_path_factory.mktemp("ratings")
    study = tiny_study(tmp, n_real=12, per_ckpt=10)
    spec = pack.build_pack(study, study.exports_dir / "pack", checkpoints=list(CKPTS), count=6, seed=3, size=32)
    csv_path = write_qualtrics_csv(tmp / "responses.csv", spec, simulate_raters(spec, n_raters=N_RATERS, seed=1))
    return study.root, csv_path


def _analysis(root: Path) -> dict:
    """The analysis' figures (what `analyze` reports, without drawing the plots)."""
    from core.reader_study.analysis import _load, compute
    from core.reader_study.pack import load_pack

    study = Study.open(root)
    spec = load_pack(study)
    raters, picks, ratings, unanswered, comments = _load(study, spec, True)
    result = compute(spec, raters, picks, ratings, unanswered=unanswered, comments=comments)
    return {k: result[k] for k in ANALYSIS_KEYS}


def _ratings(root: Path) -> dict:
    study = Study.open(root)
    with study.store.connect() as tx:
        return {"imports": tx.scalar("SELECT count(*) FROM rating_imports"),
                "raw": tx.scalar("SELECT count(*) FROM raw_responses"),
                "raters": tx.scalar("SELECT count(*) FROM raters"),
                "identifications": tx.scalar("SELECT count(*) FROM identifications"),
                "ratings": tx.query("SELECT r.response_id, g.quartet, g.position, g.rating FROM ratings g "
                                    "JOIN raters r ON r.id = g.rater_id ORDER BY ALL")}


@pytest.fixture(scope="module")
def ratings_reference(ratings_template, tmp_path_factory) -> tuple[dict, dict, float]:
    template, csv_path = ratings_template
    root = tmp_path_factory.mktemp("ratings-ref") / "study"
    shutil.copytree(template, root)
    seconds, _ = _run_timed(["import-ratings", csv_path, "--study", root, "--json"])
    stored = _ratings(root)
    assert stored["raters"] == N_RATERS and len(stored["ratings"]) == N_RATERS * 6 * 4
    return stored, _analysis(root), seconds


@pytest.mark.parametrize("seed", SEEDS)
def test_sigkill_during_import_ratings_is_all_or_nothing_and_a_rerun_gives_the_same_analysis(
        seed, ratings_template, ratings_reference, tmp_path):
    template, csv_path = ratings_template
    reference, reference_analysis, seconds = ratings_reference
    root = tmp_path / "study"
    shutil.copytree(template, root)
    args = ["import-ratings", csv_path, "--study", root, "--json"]
    hit = _kill_after(args, random.Random(seed).uniform(0.1, 0.9) * seconds, tmp_path / "log.txt")
    print(f"import-ratings seed {seed}: killed while running: {hit}")
    check_study(root)
    after_kill = _ratings(root)
    assert after_kill in (reference, {"imports": 0, "raw": 0, "raters": 0, "identifications": 0, "ratings": []}), \
        "a killed import left part of its rows"
    _run_timed(args)  # again: imports what is missing, or says the file is already imported
    assert _ratings(root) == reference
    assert _analysis(root) == reference_analysis
    check_study(root)


def test_a_pack_whose_build_died_in_the_commit_is_adopted_by_the_same_request_only(tmp_path, monkeypatch):
    """The one moment a kill can still split folder and rows: after the rename, inside the commit."""
    from core.reader_study import pack
    from core.errors import CspineError
    from tests.factories.survey import tiny_study
    study = tiny_study(tmp_path, n_real=8, per_ckpt=6)
    out = study.exports_dir / "pack"
    original = pack._record_pack

    def die_in_commit(study_, spec, out_, move_from=None):
        if move_from is None:
            return original(study_, spec, out_)
        os.replace(move_from, out_)  # the folder is in place; the process dies before its rows commit
        raise SystemExit("killed")

    monkeypatch.setattr(pack, "_record_pack", die_in_commit)
    with pytest.raises(SystemExit):
        pack.build_pack(study, out, checkpoints=list(CKPTS), count=3, seed=4, size=32)
    monkeypatch.setattr(pack, "_record_pack", original)
    assert (out / "pack.json").is_file() and not pack.list_packs(study)
    with pytest.raises(CspineError, match="exists and is not empty"):  # another request never takes it
        pack.build_pack(study, out, checkpoints=list(CKPTS), count=3, seed=5, size=32)
    left = pack.read_pack_dir(out)
    spec = pack.build_pack(study, out, checkpoints=list(CKPTS), count=3, seed=4, size=32)
    assert spec.pack_id == left.pack_id and [p["id"] for p in pack.list_packs(study)] == [left.pack_id]
    fresh = pack.build_pack(study, tmp_path / "again", checkpoints=list(CKPTS), count=3, seed=4, size=32)
    assert [(i.quartet, i.position, i.image_id, i.image_file) for i in fresh.items] == \
        [(i.quartet, i.position, i.image_id, i.image_file) for i in spec.items]
    check_study(study.root)
