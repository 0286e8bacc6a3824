"""Screen-switch latency of the REAL app in tmux: from the key on the dashboard to the new screen's first
paint (its footer's keys on the pane), and to its content (a screen-specific text), cold (the screen's first
opening in this app) and warm (opened again); plus ctrl+p to the command palette.

    python benchmarks/bench_tui_screens.py [--study sessions/demo] [--launches 3] [--app-root PATH]

Needs a study with something on every screen (`cspine-tui demo --no-tui` writes sessions/demo). The app runs
in a detached tmux pane (120x40, COLORTERM=truecolor, half-cell previews), started with the interpreter
running this script; --app-root picks the checkout it imports (to measure another version the same way).
Every time includes spawning the `tmux send-keys` client and polling `capture-pane` (reported as
`tmux_client_ms`). Prints one JSON line per screen and one summary line.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_tui_keypress import COLS, ROWS, Tmux, tmux_client_ms  # noqa: E402

TARGET_S = 0.5
# screen -> (dashboard key, text of its first paint (a footer key label), text of its loaded content)
SCREENS = {
    "dataset": ("1", "flagged only", "formats"),
    "training": ("2", "New run", "heartbeat"),
    "sampling": ("3", "Mark checkpoint", "images "),
    "screening": ("4", "Undo", "image      1/"),
    "audit": ("5", "memorized", "similarity"),
    "survey": ("6", "Build pack", "Quartet 1 of"),
    "analysis": ("7", "Kappa coding", "identification accuracy"),
    "jobs": ("8", "Training view", "succeeded"),
}
DASHBOARD = "Refresh"  # the dashboard's footer


def wait_text(tmux: Tmux, text: str, t0: float, timeout: float = 60.0) -> float:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if text in tmux.capture():
            return time.monotonic() - t0
        time.sleep(0.005)
    raise TimeoutError(f"timed out waiting for {text!r}; the pane shows:\n{tmux.capture()}")


def footer(tmux: Tmux) -> str:
    lines = tmux.capture().rstrip("\n").splitlines()
    return lines[-1] if lines else ""


def wait_footer(tmux: Tmux, text: str, t0: float, timeout: float = 60.0) -> float:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if text in footer(tmux):
            return time.monotonic() - t0
        time.sleep(0.005)
    raise TimeoutError(f"timed out waiting for {text!r} in the footer; the pane shows:\n{tmux.capture()}")


def back_to_dashboard(tmux: Tmux) -> None:
    tmux.keys("Escape")
    wait_footer(tmux, DASHBOARD, time.monotonic())
    time.sleep(0.3)  # let the dashboard's refresh settle before the next key


def one_launch(study: Path, app_root: Path, reviewer: str) -> dict[str, dict[str, list[float]]]:
    tmux = Tmux()
    path = os.pathsep.join([str(app_root), *filter(None, [os.environ.get("PYTHONPATH")])])
    cli = (f"env -u COLUMNS -u LINES PYTHONPATH={shlex.quote(path)} {shlex.quote(sys.executable)} -m cspine_tui "
           f"--study {shlex.quote(str(study))} --reviewer {reviewer} --image-protocol halfcell")
    out: dict[str, dict[str, list[float]]] = {}
    try:
        tmux.start(cli, {"COLORTERM": "truecolor", "TERM": "tmux-256color"})
        wait_text(tmux, "Real images", time.monotonic())
        time.sleep(1.0)
        for round_ in ("cold", "warm"):
            for name, (key, painted, content) in SCREENS.items():
                t0 = time.monotonic()
                tmux.keys(key)
                first = wait_footer(tmux, painted, t0)
                loaded = wait_text(tmux, content, t0)
                rec = out.setdefault(name, {})
                rec.setdefault(f"{round_}_paint_s", []).append(first)
                rec.setdefault(f"{round_}_loaded_s", []).append(loaded)
                back_to_dashboard(tmux)
        for where, key in (("palette_dashboard", None), ("palette_screening", "4")):
            if key:
                tmux.keys(key)
                wait_footer(tmux, SCREENS["screening"][1], time.monotonic())
                time.sleep(0.5)
            t0 = time.monotonic()
            tmux.keys("C-p")
            first = wait_text(tmux, "Search for commands", t0)
            out.setdefault(where, {}).setdefault("paint_s", []).append(first)
            tmux.keys("Escape")
            time.sleep(0.3)
            if key:
                back_to_dashboard(tmux)
        tmux.keys("q")
    finally:
        tmux.kill()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", type=Path, default=ROOT / "sessions" / "demo")
    ap.add_argument("--launches", type=int, default=3, help="app starts (each: every screen cold, then warm)")
    ap.add_argument("--app-root", type=Path, default=ROOT, help="the checkout the app is imported from")
    args = ap.parse_args()
    if not (args.study / "study.toml").exists():
        print(json.dumps({"benchmark": "tui_screens", "error": f"no study at {args.study}; run "
                                                                 "`cspine-tui demo --no-tui` first"}))
        return 1
    load_before = [round(x, 2) for x in os.getloadavg()]
    merged: dict[str, dict[str, list[float]]] = {}
    for i in range(args.launches):
        for name, rec in one_launch(args.study.resolve(), args.app_root.resolve(), f"bench-{os.getpid()}").items():
            for k, v in rec.items():
                merged.setdefault(name, {}).setdefault(k, []).extend(v)
    worst = 0.0
    screens = {}
    for name, rec in merged.items():
        line = {"benchmark": "tui_screens", "screen": name, "n": len(next(iter(rec.values())))}
        for k, v in rec.items():
            line[f"{k}_median"] = round(statistics.median(v), 3)
            line[f"{k}_max"] = round(max(v), 3)
            if k.endswith("paint_s"):
                worst = max(worst, statistics.median(v))
        print(json.dumps(line))
        screens[name] = {k: v for k, v in line.items() if k.endswith("_median")}
    print(json.dumps({"benchmark": "tui_screens", "summary": True, "screens": screens,
                      "worst_paint_median_s": round(worst, 3),
                      "target_s": TARGET_S, "meets_target": worst <= TARGET_S, "terminal": f"tmux {COLS}x{ROWS}",
                      "launches": args.launches, "app_root": str(args.app_root), "study": str(args.study),
                      "cpus": os.cpu_count(), "load_avg_before": load_before,
                      "load_avg_after": [round(x, 2) for x in os.getloadavg()], "tmux_client_ms": tmux_client_ms()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
