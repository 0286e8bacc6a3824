"""The embedded demo: a complete small study built from phantom radiographs, headless, on CPU.

Each stage is idempotent, so re-running the demo on an existing demo study continues where it stopped.
Everything simulated (the reviewer, the raters) is labelled as such in the study.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from core.errors import CspineError
from core.study import Study

Log = Callable[[str], None]

DEMO_PHANTOMS = 240
DEMO_SEED = 2510


def stage_phantoms(study: Study, log: Log) -> None:
    from core.demo import phantom_files  # imported on use: loads scipy, numpy, PIL (start-up cost)

    out = study.root / "source-phantoms"
    if (out / "labels.csv").exists():
        return
    log(f"writing {DEMO_PHANTOMS} phantom radiographs (PNG/JPEG/TIFF/DICOM, negatives, right-facing)")
    phantom_files.generate(out, DEMO_PHANTOMS, DEMO_SEED, negative_fraction=0.2, right_fraction=0.3,
                           formats=("png", "jpeg", "tiff", "dicom"), bit_depths=(8, 16), size_range=(600, 900))


def stage_ingest(study: Study, log: Log) -> None:
    """The phantoms (negatives, right-facing films, DICOM among them) through the ingest job; draws the split."""
    from core.realset.ingest import demo_ingest  # imported on use: loads numpy, PIL (start-up cost)

    demo_ingest(study, log)


def stage_labels(study: Study, log: Log) -> None:
    """The phantoms' keypoints.csv and attributes.csv through the label import (each file once)."""
    import csv  # imported on use, like the stages' other imports
    import hashlib

    from core.demo import phantom_files  # imported on use: loads scipy, numpy, PIL (start-up cost)
    from core.realset import label_import, labels  # imported on use: loads numpy, PIL (start-up cost)

    src = study.root / "source-phantoms"
    if not (src / "labels.csv").exists():
        return  # no phantoms of the demo's in this study: nothing of its own to label
    if not (src / "keypoints.csv").exists():  # a demo study from before the phantoms wrote label files
        with open(src / "labels.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        phantom_files.write_label_files(src, [(r["file"], phantom_files.params_from_labels(r)) for r in rows])
    for name in ("keypoints.csv", "attributes.csv"):
        if labels.find_import(study, hashlib.sha256((src / name).read_bytes()).hexdigest()) is not None:
            continue
        # skip_unmatched: a phantom the ingest skipped has no image to label; the log says so.
        result = label_import.import_labels(study, src / name, skip_unmatched=True)
        what = (f"{len(result['points'])} points" if result["kind"] == "keypoints"
                else ", ".join(f"{k} ({v})" for k, v in result["attributes"].items()))
        left = f"; {len(result['unmatched'])} rows left out (no such image)" if result["unmatched"] else ""
        log(f"imported {result['labels']} {result['kind']} labels of {result['images']} phantoms: {what}{left}")


def stage_train(study: Study, log: Log) -> None:
    """The tiny preset on the ingested phantoms: 3 checkpoints and an FID evaluation (core/ddpm/trainer.py)."""
    from core.ddpm.trainer import demo_train  # imported on use: loads numpy (start-up cost)

    demo_train(study, log)


def stage_reader_study(study: Study, log: Log) -> None:
    """Blinded pack from 3 checkpoints, 8 SIMULATED raters as a Qualtrics CSV through the import, analysis."""
    from core.demo.raters import demo_reader_study  # imported on use: loads numpy, PIL (start-up cost)

    demo_reader_study(study, log)


def stage_sample(study: Study, log: Log) -> None:
    """70 images from each of 3 checkpoints with the default fast sampler (core/ddpm/sampling.py)."""
    from core.ddpm.sampling import demo_sample  # imported on use: loads numpy (start-up cost)

    demo_sample(study, log)


def stage_screen(study: Study, log: Log) -> None:
    """Planted implausible phantoms, a SIMULATED reviewer screens everything, the release (core/demo/reviewer.py)."""
    from core.demo.reviewer import demo_screen  # imported on use: loads numpy, PIL (start-up cost)

    demo_screen(study, log)


def stage_audit(study: Study, log: Log) -> None:
    """Memorization audit of the demo's runs with the pixel embedding, two SIMULATED reviewers' verdicts, and
    the pre-screen."""
    from core.audit.review import demo_audit  # imported on use: loads numpy, PIL (start-up cost)
    from core.demo.reviewer import demo_run_ids  # imported on use: loads numpy, PIL (start-up cost)

    demo_audit(study, log, runs=demo_run_ids(study))


# Stages run in this order; each later area appends its own.
STAGES: list[tuple[str, Callable[[Study, Log], None]]] = [
    ("phantoms", stage_phantoms),
    ("ingest", stage_ingest),  # after "phantoms": the real set and its split
    ("labels", stage_labels),  # after "ingest": the phantoms' keypoints and attributes on the real set
    ("train", stage_train),  # after "ingest": trains on its split; before "sample"
    ("sample", stage_sample),  # after "train": samples its checkpoints
    ("screen", stage_screen),  # after "sample": a simulated reviewer screens; writes exports/release
    ("reader-study", stage_reader_study),  # needs screened samples of 3 checkpoints: keep after them
    ("audit", stage_audit),  # after sampling and screening; no-op without synthetic images
]


def build_demo(path: Path | str, *, fresh: bool = False, log: Log = print) -> Study:
    """Build (or continue) the demo study at `path`. It only ever acts on what the demo made: a study the demo
    did not create is refused, and in its own study a user's checkpoints, runs, decisions and releases are
    left alone (each stage picks the demo's own by its marks: `demo` jobs, `demo-s<step>` runs)."""
    path = Path(path)
    made_by_demo = (path / "source-phantoms" / "labels.csv").exists()  # a demo study from before the mark
    if (path / "study.toml").exists() and not (Study.open(path).get("study", "demo") or made_by_demo):
        raise CspineError(f"{path} is a study the demo did not make; give the demo another --path")
    if fresh and path.exists():
        shutil.rmtree(path)
    study = Study.open_or_create(path)
    if not study.get("study", "demo"):
        study.set("study", "demo", True)
    for name, stage in STAGES:
        log(f"stage {name}")
        stage(study, log)
    log(f"demo study ready at {study.root}")
    return study
