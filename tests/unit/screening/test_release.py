"""core/screening/release.py and the release / reviews / screening-summary / adjudicate commands."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest

from core.screening import decisions
from core.errors import CspineError
from core.screening.release import write_release
from cspine_tui.cli.main import main
from tests.factories.screening import add_run
@pytest.fixture
def screened(study):
    c34 = add_run(study, "initial-34", 34, 5)
    c80 = add_run(study, "initial-80", 80, 4, seed0=50, sampler="ddpm", steps=1000)
    decisions.decide_many(study, [(i, "accept", None, None) for i in c34[:3]], "ann")
    decisions.decide(study, c34[3], "ann", "reject", reason="1")
    decisions.decide_many(study, [(i, "accept", None, None) for i in c80], "ann")
    decisions.decide(study, c80[0], "bob", "reject", reason="9", note="two skulls")
    decisions.flip(study, c80[1], "ann")
    return {"c34": c34, "c80": c80}


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_release_writes_accepted_images_manifest_counts_card_and_sums(study, screened, tmp_path) -> None:
    out = tmp_path / "rel"
    summary = write_release(study, out, licence="CC-BY-4.0")
    # any_reject: c34 0-2 accepted, c34[3] rejected, c34[4] unreviewed; c80[0] rejected by bob, 1-3 accepted.
    assert summary["images"] == 6 and summary["by_checkpoint"] == {"34": 3, "80": 3}
    assert (summary["rejected"], summary["unreviewed"]) == (2, 1)
    manifest = _csv(out / "manifest.csv")
    assert [m["image_id"] for m in manifest] == screened["c34"][:3] + screened["c80"][1:]
    first = manifest[0]
    assert first["file"] == "images/checkpoint-34/initial-34/000000.png"
    assert (first["checkpoint"], first["run"], first["sampler"], first["steps"], first["seed"], first["weights"],
            first["flip"], first["decisions"]) == ("34", "initial-34", "ddim", "50", "0", "ema", "False", "ann:accept")
    flipped = next(m for m in manifest if m["image_id"] == screened["c80"][1])
    assert flipped["flip"] == "True" and flipped["sampler"] == "ddpm"
    for m in manifest:
        assert hashlib.sha256((out / m["file"]).read_bytes()).hexdigest() == m["sha256"]
    s1 = _csv(out / "table_s1.csv")
    assert [(r["run"], r["generated"], r["final_count"]) for r in s1] == \
        [("initial-34", "5", "3"), ("initial-80", "4", "3"), ("Total", "9", "6")]
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlicense: CC-BY-4.0") and "| initial-80 | 80 | 4 | 3 |" in card
    assert "any_reject" in card and "bob: 1 decisions" in card
    sums = (out / "SHA256SUMS").read_text().splitlines()
    files = {line.split("  ", 1)[1] for line in sums}
    assert {"manifest.csv", "README.md", "table_s1.csv", "release.json"} <= files and len(files) == 10
    for line in sums:
        digest, name = line.split("  ", 1)
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    assert json.loads((out / "release.json").read_text())["images"] == 6


def test_release_is_rewritable_and_refuses_foreign_folders(study, screened, tmp_path) -> None:
    out = tmp_path / "rel"
    write_release(study, out)
    decisions.undo(study, "ann")  # un-flip c80[1]: it is still accepted
    decisions.decide(study, screened["c34"][4], "ann", "accept")
    assert write_release(study, out)["images"] == 7
    assert not (tmp_path / ".rel.partial").exists() and not (tmp_path / ".rel.old").exists()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "thesis.docx").write_text("x")
    with pytest.raises(CspineError, match="not empty"):
        write_release(study, busy)
    assert (busy / "thesis.docx").exists()


def test_release_catches_an_image_changed_on_disk(study, screened, tmp_path) -> None:
    path = study.abs(study.store.scalar("SELECT path FROM synthetic_images WHERE id = ?", [screened["c34"][0]]))
    path.write_bytes(path.read_bytes() + b"tampered")
    with pytest.raises(CspineError, match="changed since it was registered"):
        write_release(study, tmp_path / "rel")
    assert not (tmp_path / "rel").exists()


def test_release_hf_layout_and_other_rules(study, screened, tmp_path) -> None:
    out = tmp_path / "hf"
    summary = write_release(study, out, hf=True, rule="first_reviewer")
    assert summary["images"] == 7  # ann decided c80[0] first (accept)
    meta = _csv(out / "data/train/metadata.csv")
    assert len(meta) == 7 and all((out / "data/train" / m["file_name"]).exists() for m in meta)
    assert meta[0]["file_name"].startswith("checkpoint-34/") and "image_id" in meta[0]
    assert "imagefolder" in (out / "README.md").read_text()


def test_cli_release_json_and_job(study, screened, tmp_path, capsys) -> None:
    out = tmp_path / "cli-rel"
    assert main(["release", "--study", str(study.root), "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)  # one document, the job's id in it
    assert result["job"].startswith("release-")
    assert result["images"] == 6 and result["out"] == str(out.resolve())
    assert (out / "manifest.csv").exists()


def test_cli_reviews_export_import_roundtrip(study, screened, tmp_path, capsys) -> None:
    from core.study import Study

    file = tmp_path / "decisions.csv"
    assert main(["reviews", "--study", str(study.root), "--export", str(file)]) == 0
    rows = _csv(file)
    assert len(rows) == 9 and {"image_id", "reviewer", "decision", "reason", "note", "sha256"} <= set(rows[0])
    # Another copy of the study (same images, no decisions) imports them; importing twice changes nothing.
    other = Study.create(tmp_path / "other")
    add_run(other, "initial-34", 34, 5)
    add_run(other, "initial-80", 80, 4, seed0=50, sampler="ddpm", steps=1000)
    other.store.execute("UPDATE synthetic_images SET path = ?, sha256 = ? WHERE id = ?",
                        [*study.store.query_one("SELECT path, sha256 FROM synthetic_images WHERE id = ?",
                                                [screened["c80"][1]]).values(), screened["c80"][1]])
    capsys.readouterr()
    assert main(["reviews", "--study", str(other.root), "--import", str(file), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"rows": 9, "recorded": 9, "unchanged": 0}
    assert main(["reviews", "--study", str(other.root), "--import", str(file), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"rows": 9, "recorded": 0, "unchanged": 9}
    assert decisions.final_decisions(other) == decisions.final_decisions(study)


def test_cli_reviews_import_rejects_bad_files_whole(study, screened, tmp_path, capsys) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("image_id,reviewer,decision,reason\n"
                   f"{screened['c34'][4]},cat,accept,\n"
                   f"{screened['c34'][4]},cat,maybe,\n"
                   "ghost-1,cat,reject,1\n")
    assert main(["reviews", "--study", str(study.root), "--import", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.csv line 3: decision must be accept or reject" in err and "1 more problem" in err
    assert "nothing was imported" in err
    assert study.store.scalar("SELECT count(*) FROM reviews WHERE reviewer = 'cat'") == 0
    (tmp_path / "nocol.csv").write_text("image,who\nx,y\n")
    assert main(["reviews", "--study", str(study.root), "--import", str(tmp_path / "nocol.csv")]) == 2
    assert "lacks the column(s) image_id, reviewer, decision" in capsys.readouterr().err


def test_cli_summary_and_adjudicate(study, screened, capsys) -> None:
    image = screened["c80"][0]
    assert main(["screening-summary", "--study", str(study.root), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["disagreements"] == 1 and data["agreement"]["n"] == 1
    assert data["table_s1"]["total"]["accepted"] == 6
    assert main(["adjudicate", "--study", str(study.root), image, "accept", "--adjudicator", "cat"]) == 0
    assert main(["screening-summary", "--study", str(study.root), "--rule", "adjudicated", "--json"]) == 0
    data = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert data["adjudicated"] == 1 and data["table_s1"]["total"]["accepted"] == 7
    assert main(["adjudicate", "--study", str(study.root), image, "reject"]) == 0  # reason optional
    assert main(["adjudicate", "--study", str(study.root), image, "reject", "--reason", "9"]) == 2
    assert "needs a note" in capsys.readouterr().err
    assert main(["screening-summary", "--study", str(study.root)]) == 0
    out = capsys.readouterr().out
    assert "Cohen's kappa 0.000" in out and "disagreements 1 (1 adjudicated)" in out
