"""Does a keypoint-conditioned tiny model put bone where its layout says? A sanity measurement, not a test.

    .venv/bin/python benchmarks/condition_steer.py [--steps 200] [--images 32]

A labelled phantom study (64 films at 64 px with their true vertebral-body centres, tests/factories/conditioned.py)
trains two tiny models (32 px, same seed and steps): one conditioned on the keypoints (condition dropout 0.1), one
unconditional. Each samples --images images with DDIM-50 (no mirroring); the conditional one gets layouts from the
train split (core/ddpm/conditioning.py), the unconditional one is scored against the same layouts. The score of
an image is the mean intensity under its layout's heatmaps (sigma 1 px, weights summing to 1) minus the image's
mean: vertebral bodies are bright, so an image that follows its layout scores high. The conditional images are also
scored against a shuffled pairing (each image against the next image's layout), a chance level from the same
pixels. Prints one JSON line per score with its mean and standard error.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.ddpm import synthetic
from core.ddpm.condition_net import heatmaps
from core.ddpm.conditioning import sampling_plan, spec_of
from core.ddpm.networks import load_config
from core.ddpm.sampling import sample_params
from core.ddpm.trainer import train_params
from core.jobs import runner
from core.study import Study
from tests.factories.conditioned import add_labelled_images
from tests.factories.train import TINY


def layout_score(image: np.ndarray, condition: dict, points: tuple[str, ...]) -> float:
    pts = np.array([condition["keypoints"][p] for p in points])[None]
    hm = heatmaps(torch.from_numpy(pts), image.shape[0], 1.0)[0].sum(0).numpy()
    return float((image.astype(float) * hm / hm.sum()).sum() - image.mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    t0 = time.monotonic()
    study = Study.create(Path(tempfile.mkdtemp()) / "steer")
    add_labelled_images(study, n=64, size=64, val_every=8)
    jobs = {}
    for name, on in (("conditional", "keypoints"), ("unconditional", None)):
        params = train_params(study, preset="tiny", overrides={**TINY, "max_steps": args.steps,
                                                               "checkpoint_every": args.steps, "batch_size": 16},
                              seed=args.seed, val_repeats=1, condition_on=on)
        record = runner.run_job(study, runner.create_job(study, "train", params))
        if record["state"] != "succeeded":
            raise SystemExit(f"training {name} ended {record['state']}: {record['error']}")
        jobs[name] = record["id"]
    folder = study.abs(study.store.query_one("SELECT path FROM checkpoints WHERE job_id = ?",
                                             [jobs["conditional"]])["path"])
    spec = spec_of(load_config(folder))
    plan = sampling_plan(study, spec, 32, seed=7, fixed={}, per_condition=None)
    layouts = [plan.condition(i) for i in range(args.images)]
    scores = {}
    for name, job in jobs.items():
        params = sample_params(study, checkpoint=args.steps, job=job, count=args.images, sampler="ddim", steps=50,
                               seed=7, device="cpu", batch=args.images, orient=False)
        run = runner.run_job(study, runner.create_job(study, "sample", params))["result"]["run"]
        rows = study.store.query("SELECT id, condition FROM synthetic_images WHERE run_id = ? ORDER BY idx", [run])
        images = [synthetic.read_image(study, r["id"]) for r in rows]
        if name == "conditional":
            assert [json.loads(r["condition"]) for r in rows] == layouts  # the plan is the run's
            scores["conditional, shuffled layouts"] = [layout_score(im, c, spec.points) for im, c in
                                                       zip(images, layouts[1:] + layouts[:1])]
        scores[f"{name}, its layouts" if name == "conditional" else f"{name}, the same layouts"] = \
            [layout_score(im, c, spec.points) for im, c in zip(images, layouts)]
    for name, values in scores.items():
        v = np.asarray(values)
        print(json.dumps({"bench": "condition_steer", "model": name, "train_steps": args.steps, "images": len(v),
                          "bone_contrast_at_keypoints": round(float(v.mean()), 2),
                          "sem": round(float(v.std(ddof=1) / np.sqrt(len(v))), 2),
                          "seconds": round(time.monotonic() - t0)}), flush=True)


if __name__ == "__main__":
    main()
