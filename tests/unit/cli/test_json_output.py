"""`--json` means exactly one JSON document on stdout: every command that has the option, on one small study.

The study is built once through the commands themselves (ingest, train, sample, screen, audit, pack,
ratings, analysis), each run with `--json` through main() with stdout captured, so a later command works on
what an earlier one made. Each parametrised case then checks one command's stdout: `json.loads` takes all of
it (no job id on a line of its own after the document), a job's document names the job (`"job"`), and no
path in it is relative.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from cspine_tui.cli.main import build_parser, main
from tests.factories.ingest import draw_film, save_pil
from tests.factories.screening import add_run

# command name -> the argv after it (with {placeholders} filled from the study as it is built), in the order
# they run. Job commands (the document names its job) are marked in JOB_COMMANDS.
STEPS: list[tuple[str, list[str]]] = [
    ("ingest", ["--workers", "0", "{src}"]),
    ("split", ["--seed", "3", "--val-fraction", "0.25"]),
    ("real", ["--list"]),
    ("override", ["{real_id}", "--flip"]),
    ("labels", ["--import", "{labels_csv}"]),
    ("train", ["--preset", "tiny", "--steps", "2", "--checkpoint-every", "2", "--fid-every", "0",
               "--batch-size", "2", "--seed", "1"]),
    ("checkpoints", []),
    ("import-checkpoint", ["{trainer_file}", "--step", "68000", "--image-size", "32"]),
    ("sample", ["--checkpoint", "2", "--count", "2", "--sampler", "unipc", "--steps", "2", "--seed", "1",
                "--run", "sampled", "--batch", "2"]),
    ("fid", ["--run", "sampled", "--real", "all", "--extractor", "proxy"]),
    ("add-synthetic", ["--run", "external", "{external}"]),
    ("runs", []),
    ("reviews", ["--export", "{reviews_csv}"]),
    ("screening-summary", []),
    ("release", ["--out", "{release}"]),
    ("audit", ["--embedding", "pixel", "--top", "3"]),
    ("audit-show", []),
    ("audit-verdicts", ["--export", "{verdicts_csv}"]),
    ("prescreen", []),
    ("quartets", ["--count", "2", "--checkpoints", "q1", "q2", "q3", "--size", "32", "--seed", "1",
                  "--out", "{pack}"]),
    ("import-ratings", ["{ratings_csv}"]),
    ("analyze", ["--report", "{report}"]),
    ("single-images", ["--groups", "run:q1", "ckpt:20", "--count", "4", "--size", "32", "--seed", "1",
                       "--out", "{single_pack}"]),
    ("utility", ["--task", "side", "--train", "real", "synthetic", "--run", "sampled", "--model", "resnet10",
                 "--size", "32", "--steps", "2", "--batch", "2", "--boot", "50"]),
    ("condition-check", ["--run", "sampled", "--task", "side", "--model", "resnet10", "--size", "32", "--steps", "2",
                         "--batch", "2"]),
    ("status", []),
    ("jobs", []),
    ("plan-study", ["--readers", "3", "--trials", "10", "--sims", "100", "--no-search"]),
]
JOB_COMMANDS = {"ingest", "train", "sample", "fid", "add-synthetic", "release", "audit", "prescreen", "utility",
                "condition-check"}


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def _accept_all(study, reviewer: str = "ann") -> None:
    from core.screening import decisions

    ids = study.store.column("SELECT id FROM synthetic_images ORDER BY id")
    decisions.apply_events(study, [decisions.ReviewEvent("accept", reviewer, i) for i in ids])


def _before(name: str, study, tmp: Path, values: dict[str, str]) -> None:
    """What the next command needs that no command makes: source files, accepted images, rater answers."""
    if name == "ingest":
        src = tmp / "src"
        (src / "nested").mkdir(parents=True)
        for i in range(4):
            save_pil(draw_film(160, 128, seed=i), src / f"f{i}.png")
        save_pil(draw_film(160, 128, seed=9), src / "nested" / "deep.png")
        values["src"] = str(src)
    elif name == "override":
        values["real_id"] = study.store.scalar("SELECT id FROM real_images ORDER BY id LIMIT 1")
    elif name == "labels":  # keypoints of every real image, matched by hash (films are 128 x 160)
        values["labels_csv"] = str(tmp / "keypoints.csv")
        ids = study.store.column("SELECT id FROM real_images ORDER BY id")
        Path(values["labels_csv"]).write_text("sha256,point,x,y\n" + "".join(f"{i},C3_body,64,80\n" for i in ids))
    elif name == "import-checkpoint":  # a file as lucidrains' Trainer.save writes it, of a tiny study network
        import torch
        from denoising_diffusion_pytorch import GaussianDiffusion, Unet

        state = GaussianDiffusion(Unet(dim=8, dim_mults=(1, 2), channels=1), image_size=32).state_dict()
        values["trainer_file"] = str(tmp / "model-1.pt")
        torch.save({"step": 10, "model": state, "opt": {}, "ema": {f"ema_model.{k}": v for k, v in state.items()},
                    "scaler": None, "version": "2.3.4"}, values["trainer_file"])
    elif name == "add-synthetic":
        ext = tmp / "external"
        ext.mkdir()
        for i in range(2):
            save_pil(draw_film(160, 128, seed=20 + i), ext / f"e{i}.png")
        values["external"] = str(ext)
    elif name == "reviews":
        for k, step in enumerate((10, 20, 30)):  # three "checkpoints" for the quartets
            add_run(study, f"q{k + 1}", step, 3, seed0=100 * k)
        _accept_all(study)
    elif name == "import-ratings":
        from core.demo.raters import simulate_raters, write_qualtrics_csv
        from core.reader_study.pack import load_pack

        spec = load_pack(study, None)
        write_qualtrics_csv(values["ratings_csv"], spec, simulate_raters(spec, 3, seed=1))
    elif name == "utility":  # labels on the real images and conditions on the sampled ones; 2 of 4 in val
        from core.realset import labels

        first = study.store.scalar("SELECT image_id FROM splits WHERE split = 'train' ORDER BY image_id LIMIT 1")
        study.store.execute("UPDATE splits SET split = 'val' WHERE image_id = ?", [first])
        attrs = []
        for split in ("train", "val"):
            ids = study.store.column("SELECT image_id FROM splits WHERE split = ? ORDER BY image_id", [split])
            attrs += [(i, "side", "ab"[k % 2], None) for k, i in enumerate(ids)]
        labels.replace_labels(study, "json-test", "attributes", file=None, file_sha256=None, summary={},
                              attributes=attrs)
        for k, i in enumerate(study.store.column("SELECT id FROM synthetic_images WHERE run_id = 'sampled'")):
            study.store.execute("UPDATE synthetic_images SET condition = ? WHERE id = ?",
                                [json.dumps({"attributes": {"side": "ab"[k % 2]}}), i])
    elif name == "audit-verdicts":
        assert main(["audit-verdict", "--study", str(study.root), "--rank", "1", "--verdict", "not",
                     "--reviewer", "ann"]) == 0


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict[str, Any]:
    from core.study import Study

    tmp = tmp_path_factory.mktemp("json")
    study = Study.create(tmp / "study", preset="tiny")
    values = {"reviews_csv": str(tmp / "reviews.csv"), "release": str(tmp / "release"),
              "verdicts_csv": str(tmp / "verdicts.csv"), "pack": str(tmp / "pack"),
              "ratings_csv": str(tmp / "ratings.csv"), "report": str(tmp / "report"),
              "single_pack": str(tmp / "single")}
    results = {}
    for name, args in STEPS:
        _before(name, study, tmp, values)
        argv = [name, "--study", str(study.root), "--json", *(a.format(**values) for a in args)]
        results[name] = _run(argv)
        assert results[name][0] == 0, f"{argv} failed: {results[name][2][-2000:]}"
    return {"study": study, "results": results}


def test_every_command_with_json_is_covered() -> None:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices
    with_json = {name for name, p in subparsers.items() if any("--json" in a.option_strings for a in p._actions)}
    assert with_json == {name for name, _ in STEPS}, "add the new --json command to STEPS"


def _relative_paths(doc: Any, root: Path, key: str = "") -> list[str]:
    """String values that are relative paths of files in the study, or sit under a path-like key."""
    if isinstance(doc, dict):
        return [p for k, v in doc.items() for p in _relative_paths(v, root, str(k))]
    if isinstance(doc, list):
        return [p for v in doc for p in _relative_paths(v, root, key)]
    if not isinstance(doc, str) or not doc or Path(doc).is_absolute() or ":" in doc:
        return []
    pathlike = key in ("path", "output", "out", "file") or key.endswith("_path")
    return [f"{key}={doc}"] if pathlike or (root / doc).exists() else []


@pytest.mark.parametrize("command", [name for name, _ in STEPS])
def test_json_is_one_document_with_absolute_paths(outputs, command) -> None:
    code, stdout, _ = outputs["results"][command]
    assert code == 0
    doc = json.loads(stdout)  # the whole of stdout: nothing before or after the document
    if command in JOB_COMMANDS:
        assert doc["job"].startswith(command.replace("-", "_") + "-") and doc["state"] == "succeeded"
    assert _relative_paths(doc, outputs["study"].root) == []


def test_job_document_keeps_the_result(outputs) -> None:
    study = outputs["study"]
    train = json.loads(outputs["results"]["train"][1])
    assert train["steps"] == 2 and Path(train["output"]).is_dir()  # was relative to the study
    assert Path(train["output"]).is_relative_to(study.root.resolve())
    checkpoints = json.loads(outputs["results"]["checkpoints"][1])
    assert [Path(c["path"]).is_dir() for c in checkpoints] == [True]
    ingest = json.loads(outputs["results"]["ingest"][1])
    assert ingest["ingested"] == 4
    audit = json.loads(outputs["results"]["audit"][1])
    assert audit["job"] == audit["audit_id"] and len(audit["pairs"]) == 3


def test_ingest_lists_a_sub_folder_it_did_not_read(outputs) -> None:
    _, stdout, stderr = outputs["results"]["ingest"]
    nested = str(Path(json.loads(stdout)["skipped"][0]["path"]))
    assert json.loads(stdout)["skipped"] == [{"path": nested, "reason": "a sub-folder: not read without --recursive"}]
    assert nested.endswith("nested")
    assert "1 sub-folder not read" in stderr and "--recursive" in stderr


def test_absolute_paths_leaves_what_is_not_a_relative_path(tmp_path) -> None:
    from cspine_tui.cli.common import absolute_paths

    doc = {"path": "images/real/a.png", "paths": ["x.png", "/abs/y.png"], "source_path": "planted:distortion",
           "rows": [{"output": "runs/j/checkpoints/step-2", "name": "images/real/a.png"}], "out": "", "n": 3}
    assert absolute_paths(doc, tmp_path) == {
        "path": str(tmp_path / "images/real/a.png"), "paths": [str(tmp_path / "x.png"), "/abs/y.png"],
        "source_path": "planted:distortion", "rows": [{"output": str(tmp_path / "runs/j/checkpoints/step-2"),
                                                      "name": "images/real/a.png"}], "out": "", "n": 3}
