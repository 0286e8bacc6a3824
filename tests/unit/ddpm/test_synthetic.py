"""Synthetic runs: registration, idempotent rows, atomic files, external sets (`add-synthetic`)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from core.ddpm import synthetic
from core.errors import CspineError
from core.demo.phantom import render_canonical


def test_create_run_and_add_images_are_idempotent(study):
    run = synthetic.create_run(study, "ext", "external", params={"note": "x"})
    assert run == "ext" and (study.synthetic_dir / "ext").is_dir()
    assert synthetic.create_run(study, "ext", "external", exist_ok=True) == "ext"
    arr = np.arange(32 * 32, dtype=np.uint8).reshape(32, 32)
    row = synthetic.save_image(study, run, 0, arr, seed=5, orient=False)
    assert row.path == "images/synthetic/ext/000000.png"
    assert row.sha256 == hashlib.sha256(study.abs(row.path).read_bytes()).hexdigest()
    assert synthetic.add_images(study, run, [row]) == 1
    assert synthetic.add_images(study, run, [row]) == 0  # a re-run never duplicates a row
    stored = study.store.query_one("SELECT * FROM synthetic_images")
    assert stored["id"] == "ext-0" and stored["seed"] == 5 and not stored["flipped"]
    assert np.array_equal(synthetic.read_image(study, "ext-0"), arr)


def test_run_name_conflicts_and_bad_names_are_refused(study):
    synthetic.create_run(study, "a", "sampled", sampler="ddim", steps=10, seed=1, checkpoint_step=2)
    with pytest.raises(CspineError, match="already exists.*seed"):
        synthetic.create_run(study, "a", "sampled", sampler="ddim", steps=10, seed=2, checkpoint_step=2,
                             exist_ok=True)
    with pytest.raises(CspineError, match="already exists"):
        synthetic.create_run(study, "a", "sampled", sampler="ddim", steps=10, seed=1, checkpoint_step=2)
    for bad in ("", "../up", "a b", "x/y", ".hidden"):
        with pytest.raises(CspineError, match="not usable as a folder name"):
            synthetic.create_run(study, bad, "external")
    with pytest.raises(CspineError, match="source"):
        synthetic.create_run(study, "b", "dreamed")


def test_orientation_is_standardised_to_face_left():
    left = render_canonical(3, size=64, facing="left")
    right = np.ascontiguousarray(left[:, ::-1])
    out, flipped, conf = synthetic.standardise_orientation(right)
    assert flipped and conf > 0.5 and np.array_equal(out, left)
    out, flipped, _ = synthetic.standardise_orientation(left)
    assert not flipped and np.array_equal(out, left)


def test_partial_files_are_cleaned_and_never_look_like_images(study, tmp_path):
    folder = study.synthetic_dir / "r"
    folder.mkdir(parents=True)
    (folder / f"{synthetic.TMP_MARK}000001.png.123").write_bytes(b"half")
    (folder / "000000.png").write_bytes(b"kept")
    assert not list(folder.glob("[0-9]*.png.*"))
    assert synthetic.clean_partial_files(folder) == 1
    assert [p.name for p in folder.iterdir()] == ["000000.png"]


def _write_externals(folder):
    folder.mkdir()
    left = render_canonical(1, size=64, facing="left")
    Image.fromarray(left).save(folder / "a_left.png")
    Image.fromarray(np.ascontiguousarray(render_canonical(2, size=64, facing="left")[:, ::-1])).save(
        folder / "b_right.png")
    sixteen = (render_canonical(4, size=48, facing="left").astype(np.uint16) * 257)
    Image.fromarray(sixteen).save(folder / "c_16bit.tif")
    (folder / "notes.txt").write_text("not an image")
    (folder / "d_broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    return left


def test_add_external_canonicalises_orients_and_continues(study, tmp_path):
    study.set("ingest", "size", 32)
    left = _write_externals(tmp_path / "ext")
    result = synthetic.add_external(study, "released", [tmp_path / "ext"])
    assert result["added"] == 3 and result["images"] == 3
    assert any("d_broken.png" in s["path"] for s in result["skipped"])
    rows = study.store.query("SELECT * FROM synthetic_images WHERE run_id = 'released' ORDER BY idx")
    by_source = {r["source_path"].rsplit("/", 1)[-1]: r for r in rows}
    assert set(by_source) == {"a_left.png", "b_right.png", "c_16bit.tif"}
    assert by_source["b_right.png"]["flipped"] and not by_source["a_left.png"]["flipped"]
    for r in rows:
        im = Image.open(study.abs(r["path"]))
        assert im.mode == "L" and im.size == (32, 32)
        assert r["seed"] is None and r["orientation_confidence"] is not None
    run = synthetic.get_run(study, "released")
    assert run["source"] == "external" and run["checkpoint_step"] is None and run["params"]["size"] == 32
    # A second pass with one more file adds only that file.
    Image.fromarray(left).save(tmp_path / "ext" / "e_new.png")
    again = synthetic.add_external(study, "released", [tmp_path / "ext"])
    assert again["added"] == 1 and again["already_present"] == 3 and again["images"] == 4


def test_add_external_errors(study, tmp_path):
    with pytest.raises(CspineError, match="not found"):
        synthetic.add_external(study, "x", [tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(CspineError, match="no image files"):
        synthetic.add_external(study, "x", [tmp_path / "empty"])
    synthetic.create_run(study, "sampled-run", "sampled", sampler="ddim", steps=5, seed=1)
    _write_externals(tmp_path / "ext")
    with pytest.raises(CspineError, match="already exists"):
        synthetic.add_external(study, "sampled-run", [tmp_path / "ext"])


def test_add_synthetic_cli_is_a_job(study, tmp_path, capsys):
    from core.jobs import runner
    from cspine_tui.cli.main import main

    study.set("ingest", "size", 32)
    _write_externals(tmp_path / "ext")
    rc = main(["add-synthetic", "--study", str(study.root), "--run", "paper-release", str(tmp_path / "ext")])
    out = capsys.readouterr()
    assert rc == 0, out.err
    job_id = out.out.strip().splitlines()[-1]
    record = runner.job_record(study, job_id)
    assert record["kind"] == "add_synthetic" and record["state"] == "succeeded"
    assert record["output"] == str((study.synthetic_dir / "paper-release").resolve())
    assert "3 added" in out.err and "d_broken.png" in out.err
    rc = main(["add-synthetic", "--study", str(study.root), "--run", "bad name", str(tmp_path / "ext")])
    assert rc == 2 and "not usable as a folder name" in capsys.readouterr().err
