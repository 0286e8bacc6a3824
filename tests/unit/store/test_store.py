"""The project database: schema, migrations and multi-process access without lock errors."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from pathlib import Path

import pytest

from core.errors import CspineError
from core.store.database import MIGRATIONS, SCHEMA_VERSION, Store
from core.study import Study

EXPECTED_TABLES = {
    "real_images", "ingest_events", "splits", "jobs", "checkpoints", "metrics", "synthetic_runs",
    "synthetic_images", "reviews", "review_events", "embeddings", "audits", "audit_pairs", "audit_verdicts",
    "quartet_packs", "quartet_items", "survey_items", "rating_imports", "raw_responses", "raters",
    "identifications", "ratings", "analyses", "schema_migrations",
}


def test_schema_has_every_table_and_version(study: Study) -> None:
    tables = set(study.store.column("SELECT table_name FROM information_schema.tables"))
    assert EXPECTED_TABLES <= tables
    assert study.store.schema_version() == SCHEMA_VERSION == len(MIGRATIONS)


def test_migrations_apply_once_and_pending_ones_on_open(study: Study, monkeypatch) -> None:
    study.store.execute("INSERT INTO meta VALUES ('k', 'v')")
    extra = ("9999_test_extra", "CREATE TABLE test_extra (x INTEGER)")
    monkeypatch.setattr("core.store.database.MIGRATIONS", [*MIGRATIONS, extra])
    assert Study.open(study.root).store.schema_version() == len(MIGRATIONS) + 1
    Study.open(study.root)  # applying again is a no-op
    assert study.store.scalar("SELECT value FROM meta WHERE key = 'k'") == "v"  # data kept
    assert "test_extra" in study.store.column("SELECT table_name FROM information_schema.tables")


def test_transaction_rolls_back_on_error(study: Study) -> None:
    with pytest.raises(RuntimeError):
        with study.store.connect() as tx:
            tx.execute("INSERT INTO meta VALUES ('a', '1')")
            raise RuntimeError("boom")
    assert study.store.scalar("SELECT count(*) FROM meta WHERE key = 'a'") == 0


def test_lock_timeout_is_a_clear_error(study: Study, monkeypatch) -> None:
    import fcntl

    monkeypatch.setattr("core.store.database.LOCK_TIMEOUT_S", 0.2)
    fd = os.open(study.store.lock_path, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(CspineError, match="stayed locked"):
            study.store.scalar("SELECT 1")
    finally:
        os.close(fd)


def _worker(root: str, worker: int, seconds: float, out: "mp.Queue") -> None:
    store = Store(Path(root) / "study.duckdb")
    written, errors, reads = 0, [], 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with store.connect() as tx:
                tx.execute("INSERT INTO meta VALUES (?, ?)", [f"w{worker}-{written}", str(worker)])
            written += 1
            reads += 1 if store.scalar("SELECT count(*) FROM meta") >= written else 0
        except Exception as exc:  # noqa: BLE001 - every error counts against the store
            errors.append(repr(exc))
    out.put((worker, written, reads, errors))


def test_four_processes_read_and_write_one_study_without_errors(study: Study) -> None:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(str(study.root), i, 3.0, queue)) for i in range(4)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    errors = [e for r in results for e in r[3]]
    assert errors == []
    assert all(r[1] > 0 for r in results), "every process got turns"
    assert all(r[1] == r[2] for r in results), "every read saw the process's own writes"
    keys = set(study.store.column("SELECT key FROM meta"))
    assert keys == {f"w{w}-{i}" for w, n, _, _ in results for i in range(n)}
