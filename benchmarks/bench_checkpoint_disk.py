"""Disk cost of one `paper` checkpoint at 256 px: full (training state + both networks) and EMA-only.

Trains the `paper` preset for 2 steps on 8 synthetic 256 px images (CPU, batch 1, a checkpoint every step,
--keep-last 1, so step 1 is thinned to its EMA weights by --keep-ema, the preset's default) and prints one
JSON line with the bytes of each checkpoint folder and of its parts. Float32 weights: the sizes do not depend
on the device, the batch or the images. Not in the suite (a few minutes of CPU for a number that only
changes with the network): python benchmarks/bench_checkpoint_disk.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.ddpm.checkpoints import list_checkpoints
from core.ddpm.trainer import train_params
from core.jobs import runner
from core.study import Study
from tests.factories.train import add_real_images


def _bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        study = Study.create(Path(tmp) / "study")
        add_real_images(study, n=8, size=256)
        params = train_params(study, preset="paper", data="all", keep_last=1,
                              overrides={"max_steps": 2, "checkpoint_every": 1, "batch_size": 1, "grad_accum": 1,
                                         "fid_every": 0})
        record = runner.run_job(study, runner.create_job(study, "train", params))
        if record["state"] != "succeeded":
            print(f"error: training failed: {record['error']}", file=sys.stderr)
            return 1
        out = {"benchmark": "checkpoint_disk", "preset": "paper", "image_size": 256,
               "keep_ema": params["keep_ema"]}
        for row in list_checkpoints(study, record["id"]):
            folder = study.abs(row["path"])
            kind = "ema_only" if row["ema_only"] else "full"
            out[kind] = {"bytes": _bytes(folder), "parameters": row["parameters"],
                         **{sub.name: _bytes(sub) for sub in sorted(folder.iterdir()) if sub.is_dir()}}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
