"""Phantom studies with labels for the utility tests: real films whose anatomy is known, synthetic runs whose
condition is the truth (or a shuffled lie), a training job on record for each run.

Keypoints are the phantoms' vertebral body centres (core/demo/phantom.landmarks), the attribute ``curve`` is
"straight" below a 10 degree C2-C7 angle and "lordotic" above (a difference a small CNN can see at 32 px);
seeds are picked so that both classes are equally common.
"""

from __future__ import annotations

import hashlib
import io
import time
from typing import Any

import numpy as np
from PIL import Image

from core.ddpm import synthetic
from core.demo import phantom
from core.demo.phantom_params import PhantomParams
from core.jobs import runner
from core.realset import labels
from core.study import Study
from core.utility.benchmark import analyse
from core.utility.data import LabelledSet

LEVELS = ("C2", "C3", "C4", "C5", "C6", "C7")


def truth(seed: int, size: int, facing: str = "left") -> dict[str, Any]:
    """The condition a phantom shows: {"attributes": {"curve": ..., "facing": ...}, "keypoints": {"C3_body":
    [x, y], ...}}. A right-facing one is the exact mirror of the left-facing film (render_canonical)."""
    p = PhantomParams.random(seed, facing=facing, height=max(16, size))
    lm = phantom.landmarks(p, shape=(size, size))
    return {"attributes": {"curve": "straight" if p.cobb_deg < 10 else "lordotic", "facing": facing},
            "keypoints": {f"{lvl}_body": [float(lm["bodies"][lvl][0]), float(lm["bodies"][lvl][1])]
                          for lvl in LEVELS}}


def balanced_seeds(n: int, start: int, size: int) -> list[int]:
    """n phantom seeds from `start` on, half straight and half lordotic (alternating)."""
    want = {"straight": n // 2, "lordotic": n - n // 2}
    out, s = [], start
    while len(out) < n:
        c = truth(s, size)["attributes"]["curve"]
        if want[c] > 0:
            want[c] -= 1
            out.append(s)
        s += 1
    return out


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, "L").save(buf, format="PNG")
    return buf.getvalue()


def facing_of(k: int, mirror: bool) -> str:
    """With `mirror`, every second phantom faces right (an attribute any CNN learns in a few steps)."""
    return "right" if mirror and k % 2 else "left"


def shifted(image: np.ndarray, seed: int, shift: int) -> tuple[np.ndarray, tuple[int, int]]:
    """The film moved by a whole-pixel offset (dx, dy) in [-shift, shift] drawn from `seed` (edges repeated), and
    that offset: the phantoms' own layouts vary by about a pixel at 32 px, a positioning shift by several."""
    if not shift:
        return image, (0, 0)
    dx, dy = (int(v) for v in np.random.default_rng([seed, 7]).integers(-shift, shift + 1, 2))
    padded = np.pad(image, shift, mode="edge")
    h, w = image.shape
    return padded[shift - dy:shift - dy + h, shift - dx:shift - dx + w], (dx, dy)


def add_real_phantoms(study: Study, seeds: list[int], split: str, size: int, *, mirror: bool = False,
                      shift: int = 0) -> list[str]:
    """Labelled phantom films of one split; with `shift`, each moved by its own offset (see `shifted`)."""
    rows, splits, kps, attrs = [], [], [], []
    for k, s in enumerate(seeds):
        facing = facing_of(k, mirror)
        image, (dx, dy) = shifted(phantom.render_canonical(s, size, facing=facing), s, shift)
        data = _png(image)
        digest = hashlib.sha256(data).hexdigest()
        path = study.real_dir / f"{digest}.png"
        path.write_bytes(data)
        image_id = hashlib.sha256(f"phantom-{s}".encode()).hexdigest()
        rows.append([image_id, study.rel(path), digest, f"/src/{s}.png", "png", False, False, "stretch"])
        splits.append([image_id, split, 0])
        t = truth(s, size, facing)
        kps += [(image_id, p, x + dx, y + dy) for p, (x, y) in t["keypoints"].items()]
        attrs += [(image_id, n, v, None) for n, v in t["attributes"].items()]
    with study.store.connect() as tx:
        tx.executemany("INSERT INTO real_images (id, path, canonical_sha256, source_path, source_format, inverted, "
                       "flipped, resize_mode) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        tx.executemany("INSERT INTO splits (image_id, split, seed) VALUES (?, ?, ?)", splits)
    labels.replace_labels(study, f"kp-{split}-{seeds[0]}", "keypoints", file=None, file_sha256=None,
                          summary={"rows": len(kps)}, keypoints=kps)
    labels.replace_labels(study, f"at-{split}-{seeds[0]}", "attributes", file=None, file_sha256=None,
                          summary={"rows": len(attrs)}, attributes=attrs)
    return [r[0] for r in rows]


def train_job(study: Study, data: str = "train") -> str:
    """A training job on record (its params say which images it saw); nothing runs."""
    return runner.create_job(study, "train", {"data": data, "config": {"name": "tiny"}})


def add_phantom_run(study: Study, name: str, seeds: list[int], size: int, *, job: str, step: int = 100,
                    shuffle: int | None = None, displace: float = 0.0, swap_facing: bool = False,
                    accept: bool = True, mirror: bool = False) -> list[str]:
    """A sampled run of phantoms conditioned on their own truth, or on a lie: with `shuffle`, a permutation of
    the run's conditions drawn with that seed; with `displace`, keypoints moved down by that many pixels; with
    `swap_facing`, the other facing. Every image is accepted by one reviewer unless told."""
    synthetic.create_run(study, name, "sampled", train_job=job, checkpoint_step=step, sampler="ddim", steps=10,
                         seed=0, weights="ema")
    conds = [truth(s, size, facing_of(k, mirror)) for k, s in enumerate(seeds)]
    if shuffle is not None:
        order = np.random.default_rng(shuffle).permutation(len(conds))
        conds = [conds[i] for i in order]
    for c in conds:
        c["keypoints"] = {p: [x, y + displace] for p, (x, y) in c["keypoints"].items()}
        if swap_facing:
            c["attributes"]["facing"] = {"left": "right", "right": "left"}[c["attributes"]["facing"]]
    rows = []
    for i, (s, c) in enumerate(zip(seeds, conds)):
        image = phantom.render_canonical(s, size, facing=facing_of(i, mirror))
        row = synthetic.save_image(study, name, i, image, seed=s, orient=False)
        row.condition = c
        rows.append(row)
    synthetic.add_images(study, name, rows)
    ids = [synthetic.image_id(name, i) for i in range(len(seeds))]
    if accept:
        study.store.executemany("INSERT OR REPLACE INTO reviews (image_id, reviewer, decision) VALUES (?, ?, ?)",
                                [[i, "screener", "accept"] for i in ids])
    return ids


def phantom_study(study: Study, *, n_train: int = 24, n_val: int = 16, n_syn: int = 24, size: int = 32,
                  data: str = "train", mirror: bool = False) -> dict[str, Any]:
    """Real train/val phantoms with labels and one accepted conditional run ("syn") from a train job."""
    train = balanced_seeds(n_train, 0, size)
    val = balanced_seeds(n_val, train[-1] + 1, size)
    syn = balanced_seeds(n_syn, val[-1] + 1, size)
    add_real_phantoms(study, train, "train", size, mirror=mirror)
    add_real_phantoms(study, val, "val", size, mirror=mirror)
    job = train_job(study, data)
    add_phantom_run(study, "syn", syn, size, job=job, mirror=mirror)
    seeds = train + val + syn
    study.set("ingest", "size", size)
    return {"job": job, "seeds": seeds}


def fake_benchmark(study) -> str:
    """A finished utility job's folder: params and the result the real analysis makes of fixed predictions."""
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(10, int), np.ones(10, int)]
    test = LabelledSet([f"v{i}" for i in range(20)], [""] * 20, "real", classes=y, native=[0] * 20)
    params = {"task": "curve", "arms": ["real", "synthetic", "mixed"], "runs": ["syn"], "fractions": [0.5, 1.0],
              "seed": 0, "size": 32, "arch": "resnet10", "steps": 10, "boot": 200, "space": {"task": "curve"}}
    preds = {}
    for key, arm, frac, signal in [("synthetic", "synthetic", 0.0, 0.5), ("real@0.5", "real", 0.5, 0.8),
                                   ("mixed@0.5", "mixed", 0.5, 1.2), ("real@1", "real", 1.0, 1.5),
                                   ("mixed@1", "mixed", 1.0, 1.8)]:
        logits = rng.normal(size=(20, 2))
        logits[np.arange(20), y] += signal
        preds[key] = {"arm": arm, "fraction": frac, "n_real": int(16 * frac), "n_synthetic": 0 if arm == "real" else 12,
                      "pred": logits.tolist()}
    result = analyse(params, test, preds)
    job = runner.create_job(study, "utility", params)
    runner.write_json_atomic(runner.run_dir(study, job) / "status.json", {
        "state": "succeeded", "done": 50, "total": 50, "progress": 1.0, "message": "done", "result": result,
        "heartbeat": time.time()})
    return job


def fake_check(study) -> str:
    job = runner.create_job(study, "condition_check", {"tasks": ["facing"], "runs": ["syn"]})
    result = {"tasks": {"facing": {"reference": {"value": 0.9, "n": 8}, "all": {"value": 0.75, "n": 12},
                                   "runs": {"syn": {"value": 0.75, "n": 12}}}},
              "checkpoints": [{"train_job": "train-x", "step": 100, "cond_accuracy": 0.75}], "runs": ["syn"]}
    runner.write_json_atomic(runner.run_dir(study, job) / "status.json", {
        "state": "succeeded", "progress": 1.0, "result": result, "heartbeat": time.time()})
    return job
