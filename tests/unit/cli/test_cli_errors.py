"""Errors a user can cause end in one line on stderr and exit code 2, inside a job or not; crashes exit 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cspine_tui.cli.main import main
from tests.factories.screening import add_run

ROOT = Path(__file__).resolve().parents[3]


def _main(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def _one_line_error(err: str) -> str:
    """The last stderr line, checked to be the `error: ...` line and no traceback before it."""
    assert "Traceback" not in err, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: "), err
    return line


def test_a_job_failing_for_a_reason_the_user_can_fix_exits_2(study, tmp_path, capsys) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "mine.txt").write_text("the user's own file")
    code, stdout, err = _main(capsys, "release", "--study", study.root, "--out", out)
    assert code == 2
    assert "is not empty and holds no earlier release" in _one_line_error(err)
    job = stdout.strip().splitlines()[-1]
    assert job.startswith("release-") and study.store.scalar("SELECT state FROM jobs WHERE id = ?", [job]) == "failed"
    # With --json the failure is one document too, with the job's id, its state and the message.
    code, stdout, err = _main(capsys, "release", "--study", study.root, "--out", out, "--json")
    doc = json.loads(stdout)
    assert code == 2 and doc["state"] == "failed" and "not empty" in doc["error"] and doc["job"].startswith("release-")
    assert (out / "mine.txt").read_text() == "the user's own file"
    # A path the job cannot write is the user's to fix too (an OSError inside the job).
    code, _, err = _main(capsys, "release", "--study", study.root, "--out", "/proc/release")
    assert code == 2 and "No such file or directory" in _one_line_error(err)


def test_a_job_that_crashes_exits_1(study, tmp_path, capsys, monkeypatch) -> None:
    from core.screening import release

    def broken(*_args, **_kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(release, "write_release", broken)
    code, _, err = _main(capsys, "release", "--study", study.root, "--out", tmp_path / "rel")
    assert code == 1
    assert err.strip().splitlines()[-1] == "error: ZeroDivisionError: a bug"


def test_phantoms_out_that_cannot_be_a_folder_is_one_line(tmp_path, capsys) -> None:
    file = tmp_path / "a-file"
    file.write_text("x")
    code, _, err = _main(capsys, "phantoms", "--count", 1, "--out", file)
    assert code == 2 and "is a file" in _one_line_error(err)
    assert file.read_text() == "x"
    code, _, err = _main(capsys, "phantoms", "--count", 1, "--out", "/proc/nope")
    assert code == 2 and "cannot create the --out folder /proc/nope" in _one_line_error(err)


def test_init_on_a_file_or_under_one_is_one_line(tmp_path, capsys) -> None:
    file = tmp_path / "a-file"
    file.write_text("x")
    code, _, err = _main(capsys, "init", file)
    assert code == 2 and "is a file, not a folder" in _one_line_error(err)
    code, _, err = _main(capsys, "init", file / "study")
    assert code == 2 and "cannot create the study folder" in _one_line_error(err)
    assert file.read_text() == "x"


def test_other_commands_writing_where_they_cannot_are_one_line(study, tmp_path, capsys) -> None:
    file = tmp_path / "a-file"
    file.write_text("x")
    # Paths under a file: each command's own check or the CLI's last net for file-system errors.
    for args in (["reviews", "--export", file / "out.csv"],
                 ["quartets", "--checkpoints", "1", "2", "3", "--out", file / "pack"],
                 ["phantoms", "--count", "1", "--out", tmp_path / "ok", "--contact-sheet", file / "s.png"]):
        code, _, err = _main(capsys, args[0], *(["--study", study.root] if args[0] != "phantoms" else []), *args[1:])
        assert code == 2, (args, err)
        _one_line_error(err)


def test_ingest_of_a_missing_path_is_refused_before_any_job(study, tmp_path, capsys) -> None:
    code, stdout, err = _main(capsys, "ingest", "--study", study.root, tmp_path / "nope")
    assert code == 2 and stdout == ""
    assert f"not found: {tmp_path / 'nope'}" in _one_line_error(err)
    assert study.store.scalar("SELECT count(*) FROM jobs") == 0


def test_tui_on_a_path_that_is_not_a_study_says_so_and_creates_nothing(tmp_path) -> None:
    typo = tmp_path / "sessions" / "typo"
    out = subprocess.run([sys.executable, "-m", "cspine_tui", "--study", str(typo)], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, stdin=subprocess.DEVNULL, check=False)
    assert out.returncode == 2
    assert out.stderr.strip() == (f"error: no study at {typo} (no study.toml); create one with `cspine-tui init "
                                  f"{typo}` or build the demo study with `cspine-tui demo`")
    assert not typo.exists()


@pytest.mark.parametrize("command", ["jobs", "runs", "checkpoints"])
def test_tables_written_to_a_file_are_not_cut(sample_study, tmp_path, command) -> None:
    from core.jobs import runner

    long_run = "a-run-name-long-enough-to-be-cut-at-eighty-columns-" + "x" * 40
    add_run(sample_study, long_run, 200, 1)
    long_message = "a message longer than the sixty characters a terminal shows of it, " + "y" * 40
    job = runner.create_job(sample_study, "selftest", {"n": 1})
    sample_study.store.execute("UPDATE jobs SET error = ? WHERE id = ?", [long_message, job])
    with open(tmp_path / "table.txt", "w") as fh:  # stdout is a file, not a terminal
        subprocess.run([sys.executable, "-m", "cspine_tui", command, "--study", str(sample_study.root)], cwd=ROOT,
                       stdout=fh, stderr=subprocess.PIPE, text=True, timeout=120, check=True,
                       env={**os.environ, "COLUMNS": "80"})
    text = (tmp_path / "table.txt").read_text()
    assert "…" not in text and "..." not in text
    wanted = {"jobs": long_message, "runs": long_run,
              "checkpoints": str(sample_study.runs_dir.relative_to(sample_study.root))}[command]
    assert wanted in text
