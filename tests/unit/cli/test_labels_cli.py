"""`cspine-tui labels`: an import, the summary, and a bad file as problems one per line and one error line."""

from __future__ import annotations

import contextlib
import io
import json

from cspine_tui.cli.main import main
from core.realset import ingest
from core.study import Study
from tests.factories.ingest import draw_film, save_pil


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def test_labels_import_summary_and_error_path(tmp_path) -> None:
    study = Study.create(tmp_path / "s")
    src = tmp_path / "src"
    src.mkdir()
    for k in range(2):
        save_pil(draw_film(160, 128, seed=k), src / f"f{k}.png")
    ingest.ingest(study, [src], workers=0)
    s = ["--study", str(study.root)]

    attrs = tmp_path / "attrs.csv"
    attrs.write_text("file,defect,cobb_deg\nf0.png,none,20\nf1.png,missing_vertebra,31.5\n")
    code, out, err = _run(["labels", *s, "--import", str(attrs)])
    assert code == 0 and "imported 4 attributes labels of 2 images" in out and "cobb_deg (numeric)" in out

    code, out, _ = _run(["labels", *s])
    assert code == 0 and "cobb_deg (numeric, 2 images): min 20, mean 25.75, max 31.5" in out
    assert "defect (2 images): missing_vertebra 1, none 1" in out
    code, out, _ = _run(["labels", *s, "--json"])
    doc = json.loads(out)
    assert doc["attribute_images"] == 2 and doc["attribute_values"]["defect"]["counts"] == {
        "missing_vertebra": 1, "none": 1}

    bad = tmp_path / "k.csv"
    bad.write_text("file,point,x,y\nf0.png,C3_body,1,x\nf9.png,C3_body,1,1\n")
    code, out, err = _run(["labels", *s, "--import", str(bad), "--kind", "keypoints"])
    lines = err.strip().splitlines()
    assert code == 2 and out == ""
    assert lines[0].strip().startswith("line 2: C3_body y 'x' is not a finite number")
    assert lines[1].strip().startswith("line 3: no real image named 'f9.png'")
    assert len(lines) == 3 and lines[2].startswith("error: ") and "2 problems, nothing imported" in lines[2]
    code, out, err = _run(["labels", *s, "--import", str(tmp_path / "none.csv")])
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: label file") and "not found" in err

    code, out, err = _run(["labels", *s, "--import", str(bad), "--skip-unmatched"])
    assert code == 2 and "line 2" in err and "line 3" not in err   # the bad value still stops it
