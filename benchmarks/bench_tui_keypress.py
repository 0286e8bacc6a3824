"""Keypress-to-next-image latency and start time of the REAL app in tmux (truecolor, 120x40, half-cell).

    .venv/bin/python benchmarks/bench_tui_keypress.py [--images 300] [--keys 100] [--study PATH]

Builds (or reuses) a study with a few hundred 256x256 phantom radiographs registered as a synthetic run,
starts `cspine-tui --image-protocol halfcell` in a detached tmux session (COLORTERM=truecolor, 120x40) with
CSPINE_TRACE_PAINT set, opens the screening screen (key 5) and presses keys with `tmux send-keys`:

- next (right arrow) and accept (a: decision + advance): from just before `tmux send-keys` is spawned to the
  app's paint trace line for the new image (written after Textual's refresh that drew it);
- next, detected from outside: polling `tmux capture-pane -e` until the pane holds the new image (half-cell
  blocks present and the pane changed) - this includes tmux parsing the frame;
- start: launch to the dashboard's first frame in the pane, and to its figures being loaded.

The same key loop then drives a REFERENCE app in the same run: a minimal Textual app with textual-image's
HalfcellImage widget of the same size, whose `image` is set to the next path on each key (docs/reference/tui.md
measured 48-120 ms per image that way). Every latency includes spawning the `tmux send-keys` client,
reported separately as `tmux_client_ms`. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
COLS, ROWS = 120, 40
TARGETS = {"median_ms": 50, "start_s": 2.0}


# -- the study ---------------------------------------------------------------------------------------------
def build_study(path: Path, n: int) -> Path:
    from core.ddpm import synthetic
    from core.demo.phantom import DEFECTS, render_canonical
    from core.study import Study

    study = Study.open_or_create(path)
    have = study.store.scalar("SELECT count(*) FROM synthetic_images")
    if have >= n:
        return path
    run = synthetic.create_run(study, "bench-256", "external", checkpoint_step=34, sampler="ddim", steps=50,
                               seed=0, weights="ema", exist_ok=True)
    done = synthetic.done_indices(study, run)
    rows = []
    for i in range(n):
        if i in done:
            continue
        defect = DEFECTS[i % len(DEFECTS)] if i % 10 == 9 else None
        rows.append(synthetic.save_image(study, run, i, render_canonical(i, 256, defect=defect), seed=i, orient=False))
        if len(rows) >= 50:
            synthetic.add_images(study, run, rows)
            rows = []
    synthetic.add_images(study, run, rows)
    return path


def app_command() -> str:
    """The app from the interpreter running this benchmark, on this checkout (not a .venv that may not exist)."""
    path = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    return f"env PYTHONPATH={shlex.quote(path)} {shlex.quote(sys.executable)} -m cspine_tui"


# -- tmux --------------------------------------------------------------------------------------------------
class Tmux:
    """A private tmux server (its own socket) holding one session "b"."""
    count = 0

    def __init__(self) -> None:
        Tmux.count += 1
        self.sock = f"cspine-bench-{os.getpid()}-{Tmux.count}"

    def run(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(["tmux", "-L", self.sock, *args], capture_output=True, text=True)
        if check and done.returncode != 0:
            raise RuntimeError(f"tmux {' '.join(args[:3])} failed: {done.stderr.strip()}")
        return done.stdout

    def start(self, command: str, env: dict[str, str]) -> None:
        exports = " ".join(f"{k}={v}" for k, v in env.items())
        self.run("-f", "/dev/null", "new-session", "-d", "-s", "b", "-x", str(COLS), "-y", str(ROWS),
                 f"env {exports} {command}")
        self.run("set-option", "-g", "remain-on-exit", "off")

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", "b", *keys)

    def capture(self, escapes: bool = False) -> str:
        return self.run("capture-pane", "-p", *(["-e"] if escapes else []), "-t", "b", check=False)

    def alive(self) -> bool:
        return subprocess.run(["tmux", "-L", self.sock, "has-session", "-t", "b"], capture_output=True).returncode == 0

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.sock, "kill-server"], capture_output=True)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its threads (load-independent cost of what it did)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def key_loop_cpu(tmux: Tmux, trace: "Trace", key: str, n: int, gap: float) -> tuple[list[float], float]:
    """The latencies, and the app's CPU milliseconds per key over the loop (threads included)."""
    pid = int(tmux.run("display-message", "-p", "-t", "b", "#{pane_pid}").strip())
    before = cpu_seconds(pid)
    latencies = key_loop(tmux, trace, key, n, gap)
    return latencies, round((cpu_seconds(pid) - before) * 1000 / n, 1)


def wait_for(predicate, timeout: float, poll: float = 0.002):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise TimeoutError("timed out waiting for the app")


class Trace:
    def __init__(self, path: Path) -> None:
        self.path, self.offset = path, 0

    def new_paints(self) -> list[tuple[float, str]]:
        try:
            with open(self.path) as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return []
        complete = data[: data.rfind("\n") + 1]
        self.offset += len(complete)
        out = []
        for line in complete.splitlines():
            ts, _, image = line.split(" ", 2)
            out.append((float(ts), image))
        return out


def press_and_wait(tmux: Tmux, trace: Trace, key: str, timeout: float = 10.0) -> float:
    trace.new_paints()
    t0 = time.time()
    tmux.keys(key)
    paints = wait_for(trace.new_paints, timeout, poll=0.001)
    return (paints[-1][0] - t0) * 1000


def stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {"median": round(statistics.median(ordered), 1), "p95": round(p95, 1), "min": round(ordered[0], 1),
            "max": round(ordered[-1], 1), "n": len(ordered)}


def key_loop(tmux: Tmux, trace: Trace, key: str, n: int, gap: float) -> list[float]:
    out = []
    for _ in range(n):
        out.append(press_and_wait(tmux, trace, key))
        time.sleep(gap)  # a quick reviewer's pace; lets the prefetch run as it would between real keys
    return out


def capture_loop(tmux: Tmux, n: int, gap: float) -> list[float]:
    """Right-arrow presses detected from outside the app: the pane changed and holds half-cell blocks."""
    out = []
    for _ in range(n):
        before = tmux.capture(escapes=True)
        t0 = time.time()
        tmux.keys("Right")
        wait_for(lambda: (lambda now: now != before and now.count("▀") > 1000)(tmux.capture(escapes=True)), 10,
                 poll=0.0)
        out.append((time.time() - t0) * 1000)
        time.sleep(gap)
    return out


def measure_app(study: Path, args: argparse.Namespace, work: Path) -> dict:
    trace_path = work / "paint-app.log"
    tmux = Tmux()
    env = {"COLORTERM": "truecolor", "TERM": "tmux-256color", "CSPINE_TRACE_PAINT": str(trace_path)}
    cli = f"{app_command()} --study {study} --reviewer bench-{os.getpid()} --image-protocol halfcell"
    try:
        t0 = time.time()
        tmux.start(cli, env)
        wait_for(lambda: "Screening" in tmux.capture(), 60, poll=0.005)
        start_s = time.time() - t0
        start_cpu_s = cpu_seconds(int(tmux.run("display-message", "-p", "-t", "b", "#{pane_pid}").strip()))
        wait_for(lambda: "Real images" in tmux.capture(), 60, poll=0.005)
        loaded_s = time.time() - t0
        trace = Trace(trace_path)
        t1 = time.time()
        tmux.keys("4")
        wait_for(trace.new_paints, 30, poll=0.001)
        open_s = time.time() - t1
        key_loop(tmux, trace, "Right", 5, args.gap)  # warm-up
        nxt, cpu_next = key_loop_cpu(tmux, trace, "Right", args.keys, args.gap)
        acc, cpu_acc = key_loop_cpu(tmux, trace, "a", args.keys // 2, args.gap)
        back = key_loop(tmux, trace, "Left", 10, args.gap)
        outside = capture_loop(tmux, args.capture_keys, args.gap)
        tmux.keys("q")
        wait_for(lambda: not tmux.alive(), 30, poll=0.05)
    finally:
        tmux.kill()
    return {"start_s": round(start_s, 3), "start_cpu_s": round(start_cpu_s, 2), "start_loaded_s": round(loaded_s, 3),
            "open_screening_s": round(open_s, 3),
            "next_ms": stats(nxt), "accept_ms": stats(acc), "cpu_ms_per_next": cpu_next, "cpu_ms_per_accept": cpu_acc,
            "prev_ms": stats(back), "next_capture_pane_ms": stats(outside)}


def measure_reference(study: Path, args: argparse.Namespace, work: Path) -> dict:
    trace_path = work / "paint-ref.log"
    tmux = Tmux()
    env = {"COLORTERM": "truecolor", "TERM": "tmux-256color"}
    cli = f"{shlex.quote(sys.executable)} {Path(__file__).resolve()} --reference-app {study} --trace {trace_path}"
    try:
        tmux.start(cli, env)
        trace = Trace(trace_path)
        wait_for(trace.new_paints, 60, poll=0.005)
        key_loop(tmux, trace, "Right", 5, args.gap)
        nxt, cpu_next = key_loop_cpu(tmux, trace, "Right", args.keys, args.gap)
        tmux.keys("q")
    finally:
        tmux.kill()
    return {"next_ms": stats(nxt), "cpu_ms_per_next": cpu_next}


def reference_app(study: Path, trace: Path) -> None:
    """textual-image's HalfcellImage in the same layout: the preview 1fr wide, a 44-column side panel."""
    from textual.app import App, ComposeResult
    from textual.containers import Horizontal
    from textual.widgets import Footer, Header, Static
    from textual_image.widget import HalfcellImage

    from core.study import Study

    paths = [Study.open(study).abs(p) for p in Study.open(study).store.column(
        "SELECT path FROM synthetic_images ORDER BY idx")]

    class Reference(App):
        CSS = "#img { width: 1fr; height: 1fr; } #side { width: 44; }"
        BINDINGS = [("right", "next", "Next"), ("q", "quit", "Quit")]

        def compose(self) -> ComposeResult:
            yield Header()
            with Horizontal():
                yield HalfcellImage(paths[0], id="img")
                yield Static("reference", id="side")
            yield Footer()

        def on_mount(self) -> None:
            self.i = 0
            self.call_after_refresh(self._trace)

        def action_next(self) -> None:
            self.i = (self.i + 1) % len(paths)
            self.query_one("#img", HalfcellImage).image = paths[self.i]
            self.query_one("#side", Static).update(f"image {self.i}")
            self.call_after_refresh(self._trace)

        def _trace(self) -> None:
            with open(trace, "a") as fh:
                fh.write(f"{time.time():.6f} paint {self.i}\n")

    os.environ.setdefault("TEXTUAL_COLOR_SYSTEM", "truecolor")
    Reference().run()


def tmux_client_ms() -> float:
    tmux = Tmux()
    tmux.start("sleep 30", {})
    try:
        times = []
        for _ in range(20):
            t0 = time.time()
            tmux.run("display-message", "-p", "x")
            times.append((time.time() - t0) * 1000)
        return round(statistics.median(times), 1)
    finally:
        tmux.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--capture-keys", type=int, default=30)
    parser.add_argument("--gap", type=float, default=0.15, help="seconds between keys (default 0.15)")
    parser.add_argument("--study", type=Path, default=Path(tempfile.gettempdir()) / "cspine-bench-keypress")
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--reference-app", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--trace", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reference_app:
        reference_app(args.reference_app, args.trace)
        return 0
    if not shutil.which("tmux"):
        print(json.dumps({"error": "tmux not found"}))
        return 1
    t = time.time()
    study = build_study(args.study, args.images)
    build_s = time.time() - t
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        result = {"benchmark": "tui_keypress", "terminal": f"tmux {COLS}x{ROWS} COLORTERM=truecolor",
                  "protocol": "halfcell", "images": args.images, "image_size": 256, "gap_s": args.gap,
                  "cpus": os.cpu_count(), "load_avg_before": [round(x, 2) for x in os.getloadavg()],
                  "study_build_s": round(build_s, 1), "tmux_client_ms": tmux_client_ms()}
        result["app"] = measure_app(study, args, work)
        if not args.no_reference:
            result["reference_textual_image_halfcell"] = measure_reference(study, args, work)
        result["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
        result["targets"] = TARGETS
        app = result["app"]
        result["meets_targets"] = app["next_ms"]["median"] <= TARGETS["median_ms"] and \
            app["start_s"] <= TARGETS["start_s"]
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
