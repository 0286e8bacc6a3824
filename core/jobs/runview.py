"""Live views of jobs read from their run folders only (job.json, status.json, metrics.jsonl, log.txt).

The TUI polls these every second while jobs write them; nothing here opens the database, so watching never
competes with a job for the study lock. A job whose status says running but whose process is gone (pid reuse
included) is shown as ``died`` until someone acts on it (the engine's reconcile then records it failed); a
running job asked to pause or cancel is shown as ``pausing`` or ``cancelling`` until it reaches its safe point.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.jobs import runner
from core.study import Study

SPARK = "▁▂▃▄▅▆▇█"
STOPPING = {"pause": "pausing", "cancel": "cancelling"}


def scan_jobs(study: Study, kind: str | None = None) -> list[dict[str, Any]]:
    """All jobs found under runs/, newest first, from their files."""
    out = []
    root = study.runs_dir
    if not root.exists():
        return out
    for folder in root.iterdir():
        meta = runner.read_json(folder / "job.json")
        if not meta or (kind and meta.get("kind") != kind):
            continue
        status = runner.read_json(folder / "status.json") or {}
        state = status.get("state", "queued")
        if state == "running" and not runner.process_alive(meta.get("pid"), meta.get("start_ticks")):
            state = "died"
        elif state == "running" and runner.requested_stop(folder):
            # Asked to stop: say so at once, not when the job reaches its safe point (a sampling block can
            # take minutes).
            state = STOPPING[runner.requested_stop(folder)]
        out.append({"id": meta.get("id", folder.name), "kind": meta.get("kind"), "state": state,
                    "created_at": meta.get("created_at", ""), "params": meta.get("params", {}),
                    "status": status, "dir": folder})
    out.sort(key=lambda r: (r["created_at"], r["id"]), reverse=True)
    return out


@dataclass
class MetricsTail:
    """Incremental reader of one job's metrics.jsonl: only new complete lines are parsed on each poll."""

    path: Path
    offset: int = 0
    series: dict[str, dict[int, float]] = field(default_factory=dict)
    details: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)

    def poll(self) -> bool:
        """Read new lines; True when anything changed. A file rewritten shorter (a resume) is re-read whole."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return False
        if size < self.offset:
            self.offset, self.series, self.details = 0, {}, {}
        if size == self.offset:
            return False
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            chunk = fh.read(size - self.offset)
        end = chunk.rfind(b"\n") + 1
        for raw in chunk[:end].splitlines():
            try:
                line = json.loads(raw)
            except json.JSONDecodeError:
                continue
            step = int(line.get("step", 0))
            for name, value in line.items():
                if name in ("step", "time"):
                    continue
                if isinstance(value, dict):
                    self.details.setdefault(name, {})[step] = value
                    value = value.get("value")
                if isinstance(value, (int, float)):
                    self.series.setdefault(name, {})[step] = float(value)
        self.offset += end
        return end > 0

    def points(self, name: str) -> tuple[list[int], list[float]]:
        data = self.series.get(name, {})
        steps = sorted(data)
        return steps, [data[s] for s in steps]


def downsample(xs: list[float], ys: list[float], max_points: int) -> tuple[list[float], list[float]]:
    """Bucket means, so a 160,000-step curve draws as a few hundred points without losing its shape."""
    n = len(xs)
    if n <= max_points or max_points < 1:
        return list(xs), list(ys)
    out_x, out_y = [], []
    for b in range(max_points):
        lo, hi = b * n // max_points, (b + 1) * n // max_points
        if hi > lo:
            out_x.append(sum(xs[lo:hi]) / (hi - lo))
            out_y.append(sum(ys[lo:hi]) / (hi - lo))
    return out_x, out_y


def sparkline(values: list[float], width: int = 16, log: bool = False) -> str:
    """A unicode sparkline of the last values (downsampled to `width`)."""
    vals = [v for v in values if v is not None and math.isfinite(v) and (v > 0 or not log)]
    if not vals:
        return ""
    if log:
        vals = [math.log10(v) for v in vals]
    _, vals = downsample(list(range(len(vals))), vals, width)
    lo, hi = min(vals), max(vals)
    span = hi - lo or 1.0
    return "".join(SPARK[min(len(SPARK) - 1, int((v - lo) / span * (len(SPARK) - 1) + 0.5))] for v in vals)


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "–"
    seconds = int(seconds)
    d, rem = divmod(seconds, 86400)
    h, rem = divmod(rem, 3600)
    m, s = divmod(rem, 60)
    return f"{d}d {h:02d}h" if d else f"{h}h {m:02d}m" if h else f"{m}m {s:02d}s"


def heartbeat_age(status: dict[str, Any]) -> float | None:
    hb = status.get("heartbeat")
    return None if hb is None else max(0.0, time.time() - float(hb))
