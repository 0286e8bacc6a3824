"""The project database: the ONLY module that imports duckdb.

DuckDB allows one read-write process or many readers, never both (docs/reference/tui.md section 4). So nobody
holds the database open: every operation takes a study-level inter-process lock (``flock`` on
``study.duckdb.lock``), opens a short-lived connection, runs one transaction and closes. The TUI, CLI
commands and jobs queue for milliseconds instead of failing, and no user ever sees a lock error.

Domain modules write their own SQL through :class:`Tx`; the schema and its migrations live here.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import duckdb

from core.errors import CspineError

LOCK_TIMEOUT_S = 120.0

# Migrations are applied in order and recorded by name in schema_migrations; append new ones at the end
# with a unique name, never edit one that has shipped. SCHEMA_VERSION is the number of migrations.
MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_base",
        """
        CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR);

        -- The real set: one row per distinct source file (id = SHA-256 of the source bytes).
        -- Only technical provenance is kept; no patient-identifying DICOM field is ever stored.
        CREATE TABLE real_images (
            id VARCHAR PRIMARY KEY,
            path VARCHAR NOT NULL,              -- canonical PNG, relative to the study root
            canonical_sha256 VARCHAR NOT NULL,
            source_path VARCHAR NOT NULL,
            source_format VARCHAR,              -- png, jpeg, tiff, bmp, dicom
            modality VARCHAR,                   -- DICOM modality (DX, CR, ...) when known
            photometric VARCHAR,                -- DICOM PhotometricInterpretation or PIL mode
            orig_width INTEGER, orig_height INTEGER, bit_depth INTEGER,
            resize_mode VARCHAR NOT NULL,       -- stretch (the paper) or pad
            inverted BOOLEAN NOT NULL,          -- intensity-inverted as a negative
            polarity_source VARCHAR,            -- dicom-tag, detector, override
            polarity_confidence DOUBLE,
            flipped BOOLEAN NOT NULL,           -- mirrored to face left
            orientation_source VARCHAR,         -- detector, override
            orientation_confidence DOUBLE,
            flagged BOOLEAN NOT NULL DEFAULT FALSE,  -- low-confidence decision, look at it
            ingest_job VARCHAR,
            ingested_at TIMESTAMP DEFAULT current_timestamp
        );
        -- Files an ingest met that are not in the real set, with the reason (duplicates included).
        CREATE TABLE ingest_events (
            job_id VARCHAR, source_path VARCHAR, outcome VARCHAR,  -- duplicate | skipped
            reason VARCHAR, duplicate_of VARCHAR, recorded_at TIMESTAMP DEFAULT current_timestamp
        );
        -- The train/validation split; changed only by an explicit command (a new split_id).
        CREATE TABLE splits (
            image_id VARCHAR PRIMARY KEY, split VARCHAR NOT NULL,  -- train | val
            seed BIGINT NOT NULL, assigned_at TIMESTAMP DEFAULT current_timestamp
        );

        -- Every long operation is a job with a folder runs/<id>/ (core/jobs/runner.py).
        CREATE TABLE jobs (
            id VARCHAR PRIMARY KEY, kind VARCHAR NOT NULL, state VARCHAR NOT NULL,
            params JSON, argv JSON, created_at TIMESTAMP DEFAULT current_timestamp,
            started_at TIMESTAMP, ended_at TIMESTAMP, pid INTEGER, host VARCHAR, device VARCHAR,
            output VARCHAR, error VARCHAR, result JSON
        );
        CREATE TABLE checkpoints (
            job_id VARCHAR NOT NULL, step BIGINT NOT NULL, path VARCHAR NOT NULL,
            kept BOOLEAN NOT NULL DEFAULT FALSE,      -- protected from the keep-last-N limit
            deleted BOOLEAN NOT NULL DEFAULT FALSE,
            created_at TIMESTAMP DEFAULT current_timestamp,
            PRIMARY KEY (job_id, step)
        );
        -- Scalars per job and step: train_loss (windowed mean), val_loss, fid, kid, ... with details.
        CREATE TABLE metrics (
            job_id VARCHAR NOT NULL, step BIGINT NOT NULL, name VARCHAR NOT NULL,
            value DOUBLE, details JSON, PRIMARY KEY (job_id, step, name)
        );

        -- Synthetic images: one run per sampling job or external set.
        CREATE TABLE synthetic_runs (
            id VARCHAR PRIMARY KEY, name VARCHAR NOT NULL, source VARCHAR NOT NULL,  -- sampled | external
            job_id VARCHAR, train_job VARCHAR, checkpoint_step BIGINT,
            sampler VARCHAR, steps INTEGER, seed BIGINT, weights VARCHAR,           -- ema | online
            folder VARCHAR, params JSON, created_at TIMESTAMP DEFAULT current_timestamp
        );
        CREATE TABLE synthetic_images (
            id VARCHAR PRIMARY KEY,             -- <run_id>-<index>
            run_id VARCHAR NOT NULL, idx BIGINT NOT NULL, seed BIGINT,
            path VARCHAR NOT NULL, sha256 VARCHAR NOT NULL, flipped BOOLEAN NOT NULL DEFAULT FALSE,
            orientation_confidence DOUBLE, source_path VARCHAR,
            created_at TIMESTAMP DEFAULT current_timestamp,
            UNIQUE (run_id, idx)
        );
        -- Screening: the current decision per image and reviewer, and every event (for undo and audit).
        CREATE TABLE reviews (
            image_id VARCHAR NOT NULL, reviewer VARCHAR NOT NULL,
            decision VARCHAR NOT NULL,          -- accept | reject
            reason VARCHAR, note VARCHAR, simulated BOOLEAN NOT NULL DEFAULT FALSE,
            decided_at TIMESTAMP DEFAULT current_timestamp,
            PRIMARY KEY (image_id, reviewer)
        );
        CREATE TABLE review_events (
            seq BIGINT, image_id VARCHAR NOT NULL, reviewer VARCHAR NOT NULL,
            action VARCHAR NOT NULL,            -- accept | reject | undo
            reason VARCHAR, note VARCHAR, recorded_at TIMESTAMP DEFAULT current_timestamp
        );

        -- Memorization audit.
        CREATE TABLE embeddings (
            image_id VARCHAR NOT NULL, model VARCHAR NOT NULL, vector FLOAT[] NOT NULL,
            PRIMARY KEY (image_id, model)
        );
        CREATE TABLE audits (
            id VARCHAR PRIMARY KEY, job_id VARCHAR, embedding VARCHAR NOT NULL, params JSON,
            result JSON, created_at TIMESTAMP DEFAULT current_timestamp
        );
        CREATE TABLE audit_pairs (
            audit_id VARCHAR NOT NULL, rank INTEGER NOT NULL,
            real_id VARCHAR NOT NULL, synthetic_id VARCHAR NOT NULL, similarity DOUBLE NOT NULL,
            PRIMARY KEY (audit_id, rank)
        );
        CREATE TABLE audit_verdicts (
            audit_id VARCHAR NOT NULL, rank INTEGER NOT NULL, reviewer VARCHAR NOT NULL,
            verdict VARCHAR NOT NULL,           -- memorized | not | unsure
            note VARCHAR, decided_at TIMESTAMP DEFAULT current_timestamp,
            PRIMARY KEY (audit_id, rank, reviewer)
        );

        -- Reader study: packs of blinded quartets, the survey's items, raters and their answers.
        CREATE TABLE quartet_packs (
            id VARCHAR PRIMARY KEY, seed BIGINT, checkpoints JSON, out_dir VARCHAR,
            image_base_url VARCHAR, params JSON, created_at TIMESTAMP DEFAULT current_timestamp
        );
        CREATE TABLE quartet_items (
            pack_id VARCHAR NOT NULL, quartet INTEGER NOT NULL, position INTEGER NOT NULL,  -- 1..4 = A..D
            image_kind VARCHAR NOT NULL,        -- real | synthetic
            image_id VARCHAR NOT NULL, source VARCHAR NOT NULL,  -- 'real' or the checkpoint step
            image_file VARCHAR NOT NULL,        -- opaque file name in the pack
            PRIMARY KEY (pack_id, quartet, position)
        );
        CREATE TABLE survey_items (
            pack_id VARCHAR NOT NULL, quartet INTEGER NOT NULL,
            mc_export_tag VARCHAR NOT NULL, matrix_export_tag VARCHAR NOT NULL,
            mc_qid VARCHAR, matrix_qid VARCHAR,
            PRIMARY KEY (pack_id, quartet)
        );
        CREATE TABLE rating_imports (
            id VARCHAR PRIMARY KEY, pack_id VARCHAR, file VARCHAR, file_sha256 VARCHAR, format VARCHAR,
            summary JSON, imported_at TIMESTAMP DEFAULT current_timestamp
        );
        CREATE TABLE raw_responses (
            import_id VARCHAR NOT NULL, row_index INTEGER NOT NULL, data JSON NOT NULL,
            PRIMARY KEY (import_id, row_index)
        );
        CREATE TABLE raters (
            id VARCHAR PRIMARY KEY, pack_id VARCHAR NOT NULL, response_id VARCHAR, label VARCHAR,
            import_id VARCHAR, simulated BOOLEAN NOT NULL DEFAULT FALSE, flags JSON
        );
        CREATE TABLE identifications (
            pack_id VARCHAR NOT NULL, rater_id VARCHAR NOT NULL, quartet INTEGER NOT NULL,
            chosen_position INTEGER NOT NULL,
            PRIMARY KEY (pack_id, rater_id, quartet)
        );
        CREATE TABLE ratings (
            pack_id VARCHAR NOT NULL, rater_id VARCHAR NOT NULL, quartet INTEGER NOT NULL,
            position INTEGER NOT NULL, rating INTEGER NOT NULL,
            PRIMARY KEY (pack_id, rater_id, quartet, position)
        );
        CREATE TABLE analyses (
            id VARCHAR PRIMARY KEY, pack_id VARCHAR, params JSON, result JSON, report_dir VARCHAR,
            created_at TIMESTAMP DEFAULT current_timestamp
        );
        """,
    ),
    (
        "0007_audit_nearest_prescreen",
        """
        -- Each synthetic image's nearest real image (any split) and nearest training image, per audit.
        CREATE TABLE audit_nearest (
            audit_id VARCHAR NOT NULL, synthetic_id VARCHAR NOT NULL,
            real_id VARCHAR NOT NULL, similarity DOUBLE NOT NULL,
            train_id VARCHAR, train_similarity DOUBLE,
            PRIMARY KEY (audit_id, synthetic_id)
        );
        -- The plausibility pre-screen's latest score per synthetic image (higher = more likely rejected).
        CREATE TABLE prescreen_scores (
            image_id VARCHAR PRIMARY KEY, score DOUBLE NOT NULL, distance DOUBLE, classifier DOUBLE,
            embedding VARCHAR NOT NULL, fingerprint VARCHAR NOT NULL,
            computed_at TIMESTAMP DEFAULT current_timestamp
        );
        """,
    ),
    (
        "0008_ingest_transfer_syntax",
        """
        -- DICOM transfer syntax UID of a real image's source (a technical field; NULL for other formats).
        ALTER TABLE real_images ADD COLUMN transfer_syntax VARCHAR;
        """,
    ),
    (
        "0009_screening_events_adjudication",
        """
        -- Screening events get a unique id (journal replay is idempotent by it), a batch (one grid page's
        -- accept-the-rest is one undo step), what an undo undid, and whether a simulated reviewer made it.
        ALTER TABLE review_events ADD COLUMN event_id VARCHAR;
        ALTER TABLE review_events ADD COLUMN batch VARCHAR;
        ALTER TABLE review_events ADD COLUMN undoes VARCHAR;
        ALTER TABLE review_events ADD COLUMN simulated BOOLEAN DEFAULT FALSE;
        -- An adjudicator's final word on an image the reviewers disagree on (rule "adjudicated").
        CREATE TABLE review_adjudications (
            image_id VARCHAR PRIMARY KEY, adjudicator VARCHAR NOT NULL,
            decision VARCHAR NOT NULL,          -- accept | reject
            reason VARCHAR, note VARCHAR, decided_at TIMESTAMP DEFAULT current_timestamp
        );
        """,
    ),
    (
        "0010_labels_and_conditions",
        """
        -- Labels on the real set (core/realset/labels.py): one row per import, the keypoints in canonical pixel
        -- coordinates (origin at the top-left corner; pixel i spans [i, i+1), so its centre is i + 0.5) and the
        -- per-image attributes (value as text; numeric is its number when the column is numeric).
        CREATE TABLE label_imports (
            id VARCHAR PRIMARY KEY, kind VARCHAR NOT NULL,    -- keypoints | attributes
            file VARCHAR, file_sha256 VARCHAR, summary JSON, imported_at TIMESTAMP DEFAULT current_timestamp
        );
        CREATE TABLE real_keypoints (
            image_id VARCHAR NOT NULL, point VARCHAR NOT NULL,  -- e.g. C3_body, C3_spinous
            x DOUBLE NOT NULL, y DOUBLE NOT NULL, import_id VARCHAR,
            PRIMARY KEY (image_id, point)
        );
        CREATE TABLE real_attributes (
            image_id VARCHAR NOT NULL, name VARCHAR NOT NULL,
            value VARCHAR NOT NULL, numeric DOUBLE, import_id VARCHAR,
            PRIMARY KEY (image_id, name)
        );
        -- The condition a synthetic image was generated for (attributes and/or keypoints, in the image's own
        -- canonical coordinates, after any mirroring); NULL for unconditional and external images.
        ALTER TABLE synthetic_images ADD COLUMN condition JSON;
        """,
    ),
    (
        "0011_real_pixel_spacing",
        """
        -- Millimetres per SOURCE pixel when the source says (DICOM PixelSpacing, else ImagerPixelSpacing; a
        -- technical field, not identifying): x along a row (column spacing), y down a column. NULL otherwise.
        -- The canonical spacing follows from the resize (core/realset/labels.py canonical_spacing).
        ALTER TABLE real_images ADD COLUMN spacing_x_mm DOUBLE;
        ALTER TABLE real_images ADD COLUMN spacing_y_mm DOUBLE;
        ALTER TABLE real_images ADD COLUMN spacing_source VARCHAR;  -- PixelSpacing | ImagerPixelSpacing
        """,
    ),
    (
        "0012_reader_raters_groups",
        """
        -- The rater questionnaire (core/reader_study/questionnaire.py): specialty (one of its choices, or NULL),
        -- the text given with "Other", years of experience. NULL when not asked or not answered.
        ALTER TABLE raters ADD COLUMN specialty VARCHAR;
        ALTER TABLE raters ADD COLUMN specialty_other VARCHAR;
        ALTER TABLE raters ADD COLUMN years_experience INTEGER;
        -- The optional per-trial free text ("what gave it away?"), verbatim, for any design.
        CREATE TABLE trial_comments (
            pack_id VARCHAR NOT NULL, rater_id VARCHAR NOT NULL, trial INTEGER NOT NULL, text VARCHAR NOT NULL,
            PRIMARY KEY (pack_id, rater_id, trial)
        );
        -- Questions a rater saw and left unanswered (Qualtrics' "-99" recode): counted, never a rating.
        -- question: pick | rate_<position> | rater_specialty | rater_years | a design's own names.
        CREATE TABLE seen_unanswered (
            pack_id VARCHAR NOT NULL, rater_id VARCHAR NOT NULL, trial INTEGER NOT NULL, question VARCHAR NOT NULL,
            PRIMARY KEY (pack_id, rater_id, trial, question)
        );
        """,
    ),
    (
        "0013_single_image_design",
        """
        -- Reader study, single-image design (core/reader_study/single_*.py): a pack of blinded trials of one
        -- image each. Raters (and their questionnaire), imports, raw rows, free text (trial_comments) and -99
        -- answers (seen_unanswered: question call | cond) share the quartet tables, keyed by the pack id; a
        -- single pack's analyses are kept apart from the quartets'.
        CREATE TABLE single_packs (
            id VARCHAR PRIMARY KEY, seed BIGINT, groups JSON, out_dir VARCHAR,
            image_base_url VARCHAR, params JSON, created_at TIMESTAMP DEFAULT current_timestamp
        );
        CREATE TABLE single_items (
            pack_id VARCHAR NOT NULL, trial INTEGER NOT NULL,
            image_kind VARCHAR NOT NULL,        -- real | synthetic
            image_id VARCHAR NOT NULL, source VARCHAR NOT NULL,  -- 'real' or the group (68000, run:x, ...)
            image_file VARCHAR NOT NULL,        -- opaque file name in the pack
            condition_value VARCHAR,            -- the value the condition question names (NULL: not asked)
            PRIMARY KEY (pack_id, trial)
        );
        CREATE TABLE single_answers (
            pack_id VARCHAR NOT NULL, rater_id VARCHAR NOT NULL, trial INTEGER NOT NULL,
            confidence INTEGER,                 -- 1 certainly real .. 6 certainly synthetic; NULL unanswered
            condition_answer VARCHAR,           -- yes | no; NULL unanswered or not asked
            PRIMARY KEY (pack_id, rater_id, trial)
        );
        CREATE TABLE single_analyses (
            id VARCHAR PRIMARY KEY, pack_id VARCHAR, params JSON, result JSON, report_dir VARCHAR,
            created_at TIMESTAMP DEFAULT current_timestamp
        );
        """,
    ),
    (
        "0014_utility",
        """
        -- The utility benchmark (core/utility): one row per metric of each trained model (an arm at a real
        -- fraction) with its 95% bootstrap interval, and the paired comparisons of two arms on the same test
        -- images (DeLong for a binary AUROC, paired bootstrap otherwise); difference = a - b.
        CREATE TABLE utility_results (
            job_id VARCHAR NOT NULL, unit VARCHAR NOT NULL, arm VARCHAR NOT NULL, real_fraction DOUBLE NOT NULL,
            metric VARCHAR NOT NULL, value DOUBLE, lo DOUBLE, hi DOUBLE,
            n_real INTEGER, n_synthetic INTEGER, n_test INTEGER,
            PRIMARY KEY (job_id, unit, metric)
        );
        CREATE TABLE utility_comparisons (
            job_id VARCHAR NOT NULL, real_fraction DOUBLE NOT NULL, metric VARCHAR NOT NULL,
            unit_a VARCHAR NOT NULL, unit_b VARCHAR NOT NULL, value_a DOUBLE, value_b DOUBLE,
            diff DOUBLE, lo DOUBLE, hi DOUBLE, p DOUBLE, method VARCHAR,
            PRIMARY KEY (job_id, metric, unit_a, unit_b)
        );
        -- The condition check: per synthetic image, what a model trained on real images sees in it against the
        -- condition it was generated for (task = landmarks or an attribute name).
        CREATE TABLE condition_checks (
            job_id VARCHAR NOT NULL, image_id VARCHAR NOT NULL, task VARCHAR NOT NULL, run_id VARCHAR,
            requested VARCHAR, predicted VARCHAR, agree BOOLEAN, error_px DOUBLE,
            PRIMARY KEY (job_id, image_id, task)
        );
        """,
    ),
]
SCHEMA_VERSION = len(MIGRATIONS)


def _row_dicts(cursor: Any) -> list[dict[str, Any]]:
    if cursor.description is None:
        return []
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


class Tx:
    """One open transaction on the study database (valid only inside :meth:`Store.connect`)."""

    def __init__(self, con: "duckdb.DuckDBPyConnection") -> None:
        self._con = con

    def execute(self, sql: str, params: Sequence[Any] | dict | None = None) -> None:
        self._con.execute(sql, params) if params is not None else self._con.execute(sql)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._con.executemany(sql, rows)

    def query(self, sql: str, params: Sequence[Any] | dict | None = None) -> list[dict[str, Any]]:
        cur = self._con.execute(sql, params) if params is not None else self._con.execute(sql)
        return _row_dicts(cur)

    def query_one(self, sql: str, params: Sequence[Any] | dict | None = None) -> dict[str, Any] | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def scalar(self, sql: str, params: Sequence[Any] | dict | None = None) -> Any:
        cur = self._con.execute(sql, params) if params is not None else self._con.execute(sql)
        row = cur.fetchone()
        return None if row is None else row[0]

    def column(self, sql: str, params: Sequence[Any] | dict | None = None) -> list[Any]:
        cur = self._con.execute(sql, params) if params is not None else self._con.execute(sql)
        return [r[0] for r in cur.fetchall()]

    def fetch_numpy(self, sql: str, params: Sequence[Any] | dict | None = None) -> dict[str, Any]:
        """Columns as numpy arrays: the fast path for bulk numeric data (a FLOAT[] column comes back as an
        object array of float32 arrays; np.stack it)."""
        cur = self._con.execute(sql, params) if params is not None else self._con.execute(sql)
        return cur.fetchnumpy()

    def register(self, name: str, frame: Any) -> None:
        """Expose a pandas DataFrame as a view named `name` for this transaction: the fast path for bulk
        inserts of vectors (~4x faster than binding nested Python lists)."""
        self._con.register(name, frame)


class Store:
    """Short-lived, lock-serialised access to ``study.duckdb`` (safe across processes and threads)."""

    def __init__(self, db_path: Path | str) -> None:
        self.db_path = Path(db_path)
        self.lock_path = self.db_path.with_name(self.db_path.name + ".lock")

    @contextmanager
    def _lock(self) -> Iterator[None]:
        # flock locks belong to an open file description, so this also serialises threads of one process.
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + LOCK_TIMEOUT_S
            delay = 0.001
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise CspineError(
                            f"the study database {self.db_path} stayed locked for {LOCK_TIMEOUT_S:.0f} s; "
                            f"a process may be hung holding {self.lock_path}"
                        ) from None
                    time.sleep(delay)
                    delay = min(delay * 2, 0.02)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    @contextmanager
    def connect(self) -> Iterator[Tx]:
        """One transaction under the study lock: committed on success, rolled back on any error."""
        with self._lock():
            try:
                con = duckdb.connect(str(self.db_path))
            except duckdb.IOException as exc:
                raise CspineError(f"cannot open the study database {self.db_path}: {exc}") from exc
            try:
                con.execute("BEGIN TRANSACTION")
                try:
                    yield Tx(con)
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
            except duckdb.IOException as exc:
                hint = " (is the disk full?)" if "space" in str(exc).lower() or _disk_full(exc) else ""
                raise CspineError(f"could not write the study database {self.db_path}{hint}: {exc}") from exc
            finally:
                con.close()

    # Convenience wrappers: one operation, one transaction.
    def query(self, sql: str, params: Sequence[Any] | dict | None = None) -> list[dict[str, Any]]:
        with self.connect() as tx:
            return tx.query(sql, params)

    def query_one(self, sql: str, params: Sequence[Any] | dict | None = None) -> dict[str, Any] | None:
        with self.connect() as tx:
            return tx.query_one(sql, params)

    def scalar(self, sql: str, params: Sequence[Any] | dict | None = None) -> Any:
        with self.connect() as tx:
            return tx.scalar(sql, params)

    def column(self, sql: str, params: Sequence[Any] | dict | None = None) -> list[Any]:
        with self.connect() as tx:
            return tx.column(sql, params)

    def fetch_numpy(self, sql: str, params: Sequence[Any] | dict | None = None) -> dict[str, Any]:
        with self.connect() as tx:
            return tx.fetch_numpy(sql, params)

    def execute(self, sql: str, params: Sequence[Any] | dict | None = None) -> None:
        with self.connect() as tx:
            tx.execute(sql, params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self.connect() as tx:
            tx.executemany(sql, rows)

    # Schema.
    def initialize(self) -> int:
        """Create the database if needed and apply pending migrations; returns the schema version."""
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        with self.connect() as tx:
            tx.execute("CREATE TABLE IF NOT EXISTS schema_migrations (name VARCHAR PRIMARY KEY, "
                       "applied_at TIMESTAMP DEFAULT current_timestamp)")
            done = set(tx.column("SELECT name FROM schema_migrations"))
            for name, sql in MIGRATIONS:
                if name not in done:
                    tx.execute(sql)
                    tx.execute("INSERT INTO schema_migrations (name) VALUES (?)", [name])
            return len(done | {name for name, _ in MIGRATIONS})

    def schema_version(self) -> int:
        return int(self.scalar("SELECT count(*) FROM schema_migrations"))


def _disk_full(exc: Exception) -> bool:
    return str(errno.ENOSPC) in str(exc) or "No space left" in str(exc)
