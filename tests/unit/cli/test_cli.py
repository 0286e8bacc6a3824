"""The command line: init, status, and the one-line error convention."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cspine_tui.cli.main import main

ROOT = Path(__file__).resolve().parents[3]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cspine_tui", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_init_then_status_json(tmp_path: Path) -> None:
    path = tmp_path / "s1"
    out = run_cli("init", str(path))
    assert out.returncode == 0, out.stderr
    assert (path / "study.toml").exists() and (path / "study.duckdb").exists()
    assert oct(path.stat().st_mode & 0o777) == "0o700"  # research data: owner only
    out = run_cli("status", "--study", str(path), "--json")
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    assert status["study"] == str(path.resolve())
    assert status["images"] == {"real": 0, "synthetic": 0}
    for key in ("checkpoints", "synthetic_by_checkpoint", "reviews", "jobs", "quartets", "ratings"):
        assert key in status
    assert status["reviews"] == {"by_reviewer": {}}


def test_errors_are_one_line_with_exit_code_2(tmp_path: Path, capsys) -> None:
    assert main(["status", "--study", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no study at") and "\n" not in err
    assert main(["init", str(tmp_path / "s")]) == 0
    assert main(["init", str(tmp_path / "s")]) == 2
    assert "already a study" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "sample"])
def test_zero_processes_is_refused_before_any_job_exists(study, capsys, command) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([command, "--study", str(study.root), "--num-processes", "0"])
    assert exit_.value.code == 2
    assert "--num-processes: must be at least 1" in capsys.readouterr().err
    assert study.store.scalar("SELECT count(*) FROM jobs") == 0


def test_status_counts_jobs_and_reviews(study, capsys) -> None:
    from core.jobs import runner

    job = runner.create_job(study, "selftest", {"n": 3})
    runner.run_job(study, job)
    study.store.execute("INSERT INTO synthetic_runs (id, name, source, checkpoint_step) "
                        "VALUES ('r1', 'r1', 'sampled', 34000)")
    study.store.executemany(
        "INSERT INTO synthetic_images (id, run_id, idx, path, sha256) VALUES (?, 'r1', ?, 'x.png', 'h')",
        [[f"r1-{i}", i] for i in range(3)])
    study.store.executemany("INSERT INTO reviews (image_id, reviewer, decision) VALUES (?, ?, ?)",
                            [["r1-0", "ann", "accept"], ["r1-1", "ann", "reject"], ["r1-0", "bob", "accept"],
                             ["r1-2", "ann", "accept"], ["r1-2", "bob", "reject"]])
    assert main(["status", "--study", str(study.root), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["jobs"] == {"succeeded": 1}
    assert status["synthetic_by_checkpoint"] == {"34000": {"generated": 3, "accepted": 1, "rejected": 2}}
    assert status["reviews"]["by_reviewer"] == {"ann": {"accepted": 2, "rejected": 1},
                                                "bob": {"accepted": 1, "rejected": 1}}
