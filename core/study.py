"""A study workspace: a folder holding study.toml, the DuckDB project database and the study's files.

Layout (see DESIGN.md)::

    study.toml            settings, with the preset they came from
    study.duckdb          the project database (core/store/database.py)
    images/real/          canonical 256x256 8-bit PNGs of the real set
    images/synthetic/     generated PNGs, one folder per sampling run
    runs/<job-id>/        one folder per job
    exports/              survey packs, audit sheets, releases, reports
"""

from __future__ import annotations

import copy
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from core.errors import CspineError
from core.store.database import Store

DEFAULT_STUDY = Path("sessions/default")

# Settings a new study starts with. Each area reads its own section; flags override per command.
DEFAULT_SETTINGS: dict[str, Any] = {
    "study": {"name": "", "preset": "paper", "created_with": "cspine-tui"},
    "ingest": {"size": 256, "resize": "stretch", "split_seed": 0, "val_fraction": 0.15},
    "train": {"preset": "paper"},
    "sample": {},
    "screening": {"final_rule": "any_reject"},
    "audit": {"embedding": "vit", "top": 100},
    "survey": {},
}


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


@dataclass
class Study:
    root: Path
    settings: dict[str, Any] = field(default_factory=dict)

    # -- paths ---------------------------------------------------------------------------------
    @property
    def settings_path(self) -> Path:
        return self.root / "study.toml"

    @property
    def db_path(self) -> Path:
        return self.root / "study.duckdb"

    @property
    def real_dir(self) -> Path:
        return self.root / "images" / "real"

    @property
    def synthetic_dir(self) -> Path:
        return self.root / "images" / "synthetic"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def exports_dir(self) -> Path:
        return self.root / "exports"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    @property
    def store(self) -> Store:
        return Store(self.db_path)

    def rel(self, path: Path) -> str:
        """A path inside the study, as stored in the database (relative, so a study folder can move)."""
        return Path(path).resolve().relative_to(self.root.resolve()).as_posix()

    def abs(self, rel_path: str) -> Path:
        return self.root / rel_path

    # -- settings ------------------------------------------------------------------------------
    def get(self, section: str, key: str, default: Any = None) -> Any:
        return self.settings.get(section, {}).get(key, default)

    def set(self, section: str, key: str, value: Any) -> None:
        self.settings.setdefault(section, {})[key] = value
        self.save_settings()

    def save_settings(self) -> None:
        tmp = self.settings_path.with_suffix(".toml.tmp")
        tmp.write_bytes(tomli_w.dumps(self.settings).encode())
        os.replace(tmp, self.settings_path)
        self._settings_stamp = self._stamp()

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = self.settings_path.stat()
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size

    def reload_settings(self) -> bool:
        """Re-read study.toml if it changed on disk since it was read (a long-running TUI sees a user's edit);
        True when it was re-read. An invalid edit raises CspineError and keeps the settings in use."""
        stamp = self._stamp()
        if stamp is None or stamp == getattr(self, "_settings_stamp", None):
            return False
        try:
            settings = tomllib.loads(self.settings_path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise CspineError(f"{self.settings_path} is not valid TOML ({exc}); fix the file") from exc
        self.settings = _merge(DEFAULT_SETTINGS, settings)
        self._settings_stamp = stamp
        return True

    # -- create / open -------------------------------------------------------------------------
    @classmethod
    def create(cls, root: Path | str, *, preset: str = "paper", exist_ok: bool = False) -> "Study":
        root = Path(root).expanduser()
        if (root / "study.toml").exists():
            if exist_ok:
                return cls.open(root)
            raise CspineError(f"{root} is already a study (it has study.toml); open it with --study {root}")
        if root.exists() and not root.is_dir():
            raise CspineError(f"{root} is a file, not a folder; choose a new folder for the study")
        if root.exists() and any(root.iterdir()):
            raise CspineError(f"{root} exists and is not empty; choose a new folder for the study")
        old_umask = os.umask(0o077)  # study folders hold research data: readable by their owner only
        try:
            for sub in ("images/real", "images/synthetic", "runs", "exports", "cache"):
                try:
                    (root / sub).mkdir(parents=True, exist_ok=True)
                except OSError as exc:  # a parent that is a file, a read-only or virtual file system
                    raise CspineError(f"cannot create the study folder {root}: {exc.strerror} "
                                      f"({exc.filename}); choose another place") from exc
            root.chmod(0o700)
            settings = _merge(DEFAULT_SETTINGS, {"study": {"name": root.resolve().name, "preset": preset}})
            study = cls(root=root, settings=settings)
            study.save_settings()
            study.store.initialize()
        finally:
            os.umask(old_umask)
        return study

    @classmethod
    def open(cls, root: Path | str) -> "Study":
        root = Path(root).expanduser()
        path = root / "study.toml"
        if not path.exists():
            raise CspineError(
                f"no study at {root} (no study.toml); create one with `cspine-tui init {root}` "
                f"or build the demo study with `cspine-tui demo`"
            )
        try:
            settings = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise CspineError(f"{path} is not valid TOML ({exc}); fix or restore the file") from exc
        study = cls(root=root, settings=_merge(DEFAULT_SETTINGS, settings))
        study._settings_stamp = study._stamp()
        study.store.initialize()  # applies pending migrations
        return study

    @classmethod
    def open_or_create(cls, root: Path | str) -> "Study":
        """For the default study and the demo only: a path the user typed must be opened (a typo must not
        become a new, empty study)."""
        root = Path(root).expanduser()
        return cls.open(root) if (root / "study.toml").exists() else cls.create(root)
