"""The unified benchmark runner: every bench_*.py in its own subprocess, mapped to one common JSON schema.

Each result is one JSON object with exactly the keys of SCHEMA_KEYS:

    name         what is measured (train_step, sample_step, ...)
    unit         the unit of `ours` and `peer_value`
    ours         our figure (null when the benchmark failed or was skipped)
    peer         what we compare with (null when there is no peer)
    peer_version its version (importlib.metadata), or null
    peer_value   the peer's figure in `unit`, measured in the same run on the same machine
    ratio        > 1 means we are better: ours / peer for higher-is-better units, peer / ours for times
    config       how it was measured (sizes, threads, repeats, target); "error" or "skipped" when not measured
    device       "cpu: <model name>, N cores" or the CUDA device's name

A benchmark runs `repeats` times (each a fresh process); ours and peer_value are the medians over those runs
and the ratio is recomputed from the medians. Inside one run each script already takes medians over
interleaved rounds (config "inner" says how many). A benchmark that fails yields lines with ours = null and
config["error"]; the runner goes on and exits non-zero at the end. Skipped benchmarks (no CUDA, no tmux) yield
lines with config["skipped"] and do not fail the run.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
OUT = BENCH / "out"
SCHEMA_KEYS = ("name", "unit", "ours", "peer", "peer_version", "peer_value", "ratio", "config", "device")


@dataclass
class Result:
    name: str
    unit: str
    ours: float | None
    peer: str | None = None
    peer_version: str | None = None
    peer_value: float | None = None
    ratio: float | None = None
    config: dict = field(default_factory=dict)
    device: str = ""
    higher_is_better: bool = True  # not serialised: how the ratio is formed

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in SCHEMA_KEYS}

    @property
    def failed(self) -> bool:
        return "error" in self.config


def ratio_of(ours: float | None, peer: float | None, higher_is_better: bool = True) -> float | None:
    """> 1 means ours is better; None when either side is missing or zero."""
    if ours is None or peer is None or ours <= 0 or peer <= 0:
        return None
    return round(ours / peer if higher_is_better else peer / ours, 4)


def cpu_device() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"cpu: {model}, {cores()} cores"


@functools.lru_cache(maxsize=1)
def cuda_device() -> str | None:
    """The CUDA device's name, or None. Without a GPU driver's device node (NVIDIA, ROCm, WSL) there is no
    CUDA device, and the runner skips importing torch (seconds on a loaded machine)."""
    if not any(next(Path("/dev").glob(pattern), None) for pattern in ("nvidia*", "kfd", "dxg")):
        return None
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def cores() -> int:
    return len(os.sched_getaffinity(0))


@dataclass
class Bench:
    """One benchmark script and how its JSON maps onto Results.

    `outputs` maps each result name to its unit (used for the error and skip lines too); `args(quick)` gives
    the script's arguments; `parse(data, device)` turns one run's JSON into Results; `skip()` returns a reason
    not to run (no CUDA, no tmux) or None."""

    name: str
    script: Path
    outputs: dict[str, str]
    args: Callable[[bool], list[str]]
    parse: Callable[[dict, str], list[Result]]
    repeats: tuple[int, int] = (1, 1)  # (quick, full)
    timeout_s: tuple[float, float] = (600, 7200)  # (quick, full), per run
    skip: Callable[[], str | None] | None = None
    device: Callable[[], str] = cpu_device
    threads: int | None = None  # OMP/MKL threads of the child (None: the machine's cores)

    def selected_by(self, names: list[str]) -> bool:
        return self.name in names or any(n in self.outputs for n in names)


class BenchError(Exception):
    pass


def _last_json(stdout: str) -> dict:
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BenchError(f"unparseable JSON line: {exc}") from None
            if isinstance(data, dict):
                return data
    raise BenchError("the script printed no JSON line")


def run_once(bench: Bench, quick: bool, log: Callable[[str], None]) -> dict:
    """One fresh process of the script; its last JSON line."""
    threads = bench.threads or cores()
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    cmd = [sys.executable, str(bench.script), *bench.args(quick)]
    timeout = bench.timeout_s[0 if quick else 1]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise BenchError(f"timed out after {timeout:.0f} s: {' '.join(cmd[1:])}") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip()[-800:]
        raise BenchError(f"exit code {done.returncode}: {' '.join(cmd[1:])}: {tail}")
    return _last_json(done.stdout)


def _combine(runs: list[list[Result]]) -> list[Result]:
    """Medians over repeated runs, per result name; the ratio from the medians."""
    out = []
    for first in runs[0]:
        same = [r for run in runs for r in run if r.name == first.name]
        ours = [r.ours for r in same if r.ours is not None]
        peers = [r.peer_value for r in same if r.peer_value is not None]
        med_ours = statistics.median(ours) if ours else None
        med_peer = statistics.median(peers) if peers else None
        config = dict(first.config, repeats=len(runs))
        if len(runs) > 1:
            config["ours_runs"], config["peer_runs"] = ours, peers
        out.append(Result(first.name, first.unit, med_ours, first.peer, first.peer_version, med_peer,
                          ratio_of(med_ours, med_peer, first.higher_is_better) if first.peer else None,
                          config, first.device, first.higher_is_better))
    return out


def placeholder_lines(bench: Bench, device: str, **config) -> list[Result]:
    """Lines for a benchmark that did not produce figures (config says why)."""
    return [Result(name, unit, None, config=dict(config), device=device) for name, unit in bench.outputs.items()]


def run_bench(bench: Bench, quick: bool, log: Callable[[str], None] = lambda _m: None) -> list[Result]:
    """Every output line of one benchmark; never raises for a failing benchmark."""
    try:
        device = bench.device() or cpu_device()
    except Exception as exc:  # noqa: BLE001 - a broken device probe is this benchmark's error, not the runner's
        return placeholder_lines(bench, cpu_device(), error=f"device probe failed: {exc!r}")
    reason = bench.skip() if bench.skip else None
    if reason:
        log(f"{bench.name}: skipped ({reason})")
        return placeholder_lines(bench, device, skipped=reason)
    repeats = bench.repeats[0 if quick else 1]
    runs: list[list[Result]] = []
    started = time.monotonic()
    try:
        for i in range(repeats):
            log(f"{bench.name}: run {i + 1}/{repeats} ...")
            data = run_once(bench, quick, log)
            try:
                results = bench.parse(data, device)
            except (KeyError, TypeError, ValueError, IndexError) as exc:
                raise BenchError(f"unexpected JSON from {bench.script.name}: {exc!r}") from None
            missing = set(bench.outputs) - {r.name for r in results}
            if missing:
                raise BenchError(f"{bench.script.name} gave no {sorted(missing)}")
            runs.append(results)
    except BenchError as exc:
        log(f"{bench.name}: FAILED: {exc}")
        return placeholder_lines(bench, device, error=str(exc), quick=quick)
    results = _combine(runs)
    for r in results:
        r.config.setdefault("quick", quick)
        r.config["seconds"] = round(time.monotonic() - started, 1)
    log(f"{bench.name}: done in {time.monotonic() - started:.0f} s")
    return results


def run_all(benches: list[Bench], quick: bool, emit: Callable[[Result], None],
            log: Callable[[str], None] = lambda _m: None) -> list[Result]:
    out = []
    for bench in benches:
        for r in run_bench(bench, quick, log):
            emit(r)
            out.append(r)
    return out


def machine_meta() -> dict:
    return {"device": cpu_device(), "cores": cores(), "load_avg": [round(x, 2) for x in os.getloadavg()],
            "python": sys.version.split()[0], "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "torch": version("torch"), "host_cpus": os.cpu_count()}


def have_tmux() -> str | None:
    return None if shutil.which("tmux") else "tmux not found (apt-get install tmux)"


def default_out_path() -> Path:
    return OUT / f"results-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"


__all__ = ["Bench", "BenchError", "Result", "SCHEMA_KEYS", "cpu_device", "cuda_device", "machine_meta",
           "placeholder_lines", "ratio_of", "run_all", "run_bench", "version"]
