"""Fixtures of the Slurm tests: one real single-node cluster per session, and a study with tiny training settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.cluster.slurm import Slurm, missing_programs
from tests.factories.train import TINY, add_real_images
@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    missing = missing_programs()
    if missing:
        pytest.skip(f"Slurm is not installed (missing {', '.join(missing)}); install it with `apt-get install -y "
                    f"--no-install-recommends slurmctld slurmd slurm-client munge` (.ci/run does)")
    if os.geteuid() != 0:
        pytest.skip("the test cluster runs its daemons as root (SlurmUser=root); run the tests as root")
    cluster = Slurm(tmp_path_factory.mktemp("slurm"), cpus=min(os.cpu_count() or 2, 2))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def slurm_study(tmp_path_factory):
    """A study with a few small real images; study.toml [train] holds the test network (TINY), so the CLI's
    `train --preset tiny` trains it in a few seconds on one core."""
    from core.study import Study

    study = Study.create(Path(tmp_path_factory.mktemp("cluster")) / "study")
    add_real_images(study)
    for key, value in TINY.items():
        study.set("train", key, value)
    study.save_settings()
    return Study.open(study.root)
