"""The unified benchmark runner (benchmarks/runner.py, python -m benchmarks): schema, ratio direction, medians
over repeats, failure isolation, skips, the results file and the README rendering. Fake benchmark scripts
(tiny Python files) stand in for the slow real ones; audit_topk runs for real on a few hundred vectors."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import report, runner, suite  # noqa: E402
from benchmarks.runner import SCHEMA_KEYS, Bench, Result, ratio_of, run_all, run_bench  # noqa: E402


def script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text(body)
    return path


FAKE_OK = """
import json, os, sys
n = int(open(sys.argv[1]).read()) if os.path.exists(sys.argv[1]) else 0
open(sys.argv[1], "w").write(str(n + 1))
print("progress noise", file=sys.stderr)
print("not json")
print(json.dumps({"fast": [10.0, 30.0, 20.0][n], "slow": 40.0, "sec_ours": 2.0, "sec_peer": [8.0, 4.0, 6.0][n],
                  "threads": os.environ.get("OMP_NUM_THREADS")}))
"""


def parse_fake(d: dict, device: str) -> list[Result]:
    return [Result("rate", "images/s", d["fast"], "peer", "1.0", d["slow"], ratio_of(d["fast"], d["slow"]),
                   {"threads": d["threads"], "target_ratio": 1.0}, device),
            Result("latency", "s", d["sec_ours"], "peer", "1.0", d["sec_peer"],
                   ratio_of(d["sec_ours"], d["sec_peer"], higher_is_better=False), {}, device,
                   higher_is_better=False)]


def fake_bench(tmp_path: Path, body: str, repeats: int = 1, timeout: float = 60, name: str = "fake",
               **kw) -> Bench:
    counter = tmp_path / "counter"
    return Bench(name, script(tmp_path, name, body), {"rate": "images/s", "latency": "s"},
                 lambda quick: [str(counter)], parse_fake, repeats=(repeats, repeats), timeout_s=(timeout, timeout),
                 device=lambda: "cpu: test, 1 cores", threads=1, **kw)


def test_ratio_direction() -> None:
    assert ratio_of(10, 5) == 2.0                              # higher is better: ours / peer
    assert ratio_of(10, 5, higher_is_better=False) == 0.5      # times: peer / ours
    assert ratio_of(1, 4, higher_is_better=False) == 4.0
    assert ratio_of(None, 4) is None and ratio_of(3, 0) is None


def test_medians_over_repeats_schema_and_ratio(tmp_path: Path) -> None:
    out = run_bench(fake_bench(tmp_path, FAKE_OK, repeats=3), quick=True)
    assert [r.name for r in out] == ["rate", "latency"]
    rate, lat = out
    for r in out:
        assert tuple(r.to_json()) == SCHEMA_KEYS
        json.dumps(r.to_json())
        assert r.config["repeats"] == 3 and r.device == "cpu: test, 1 cores"
    assert rate.ours == 20.0 and rate.peer_value == 40.0 and rate.ratio == 0.5   # median of 10, 30, 20
    assert rate.config["ours_runs"] == [10.0, 30.0, 20.0]
    assert rate.config["threads"] == "1"                                           # thread setting reached the child
    assert lat.ours == 2.0 and lat.peer_value == 6.0 and lat.ratio == 3.0          # time: peer / ours > 1 = better


@pytest.mark.parametrize("body, needle", [
    ("import sys; print('boom', file=sys.stderr); sys.exit(3)", "exit code 3"),
    ("print('no json here')", "no JSON"),
    ("print('{\"broken\": ')", "unparseable"),
    ("import json; print(json.dumps({'fast': 1}))", "unexpected JSON"),
    ("import time\nwhile True: time.sleep(0.05)", "timed out"),
])
def test_a_failing_benchmark_gives_error_lines_and_the_runner_goes_on(tmp_path: Path, body: str,
                                                                        needle: str) -> None:
    bad = fake_bench(tmp_path, body, timeout=1.5, name="bad")
    good = fake_bench(tmp_path, FAKE_OK)
    seen: list[Result] = []
    out = run_all([bad, good], quick=True, emit=seen.append)
    assert out == seen and len(out) == 4
    for r in out[:2]:
        assert r.ours is None and r.ratio is None and r.failed
        assert needle in r.config["error"]
        assert tuple(r.to_json()) == SCHEMA_KEYS
    assert out[2].ours == 10.0 and not out[2].failed


def test_skip_is_not_an_error(tmp_path: Path) -> None:
    b = fake_bench(tmp_path, "raise SystemExit('must not run')", skip=lambda: "no CUDA device")
    out = run_bench(b, quick=True)
    assert [r.config for r in out] == [{"skipped": "no CUDA device"}] * 2
    assert all(r.ours is None and not r.failed for r in out)


def test_cli_skips_gpu_on_cpu_and_writes_the_results_file(tmp_path: Path) -> None:
    if runner.cuda_device():
        pytest.skip("a CUDA device is present: gpu_* would really run")
    out = tmp_path / "res.jsonl"
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--json", "--only", "gpu_train_256",
                           "gpu_sample_256", "--out", str(out)], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(x) for x in done.stdout.splitlines()]
    assert [x["name"] for x in lines] == ["gpu_train_256", "gpu_sample_256"]
    for x in lines:
        assert tuple(x) == SCHEMA_KEYS and x["ours"] is None and "no CUDA" in x["config"]["skipped"]
        assert x["device"].startswith("cpu: ")
    meta, results, end = report.load(out)
    assert meta["cores"] >= 1 and "load_avg" in meta and "date" in meta and results == lines
    assert end["failed"] == []
    text = report.render(out)
    assert "not measured (no GPU)" in text and "GPU hours: not measured (no GPU)" in text


def test_cli_rejects_unknown_names() -> None:
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--only", "nope"], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert done.returncode == 2 and "unknown benchmark nope" in done.stderr


@pytest.mark.slow  # ~25 s on the loaded 2-core machine (imagededup imports torch in its worker)
def test_real_audit_topk_maps_to_the_schema() -> None:
    """The cheapest real benchmark, shrunk: imagededup and our top-k on the same 300 vectors."""
    audit = next(b for b in suite.BENCHES if b.name == "audit_topk")
    tiny = dataclasses.replace(audit, args=lambda quick: ["--synthetic", "200", "--real", "100", "--top", "10"],
                               repeats=(1, 1))
    (r,) = run_bench(tiny, quick=True)
    assert not r.failed, r.config
    assert r.name == "audit_topk" and r.unit == "s (wall)" and r.peer_version
    assert r.ours > 0 and r.peer_value > 0
    assert r.ratio == pytest.approx(r.peer_value / r.ours, rel=1e-3)   # faster than imagededup -> ratio > 1
    assert r.config["top_k_found_by_imagededup"] == 1.0 and r.config["target_ratio"] == 5.0


def test_report_table_targets_and_cost(tmp_path: Path) -> None:
    def line(name, ours, peer, ratio, **config):
        return {"name": name, "unit": "u", "ours": ours, "peer": "p" if peer else None, "peer_version": "1",
                "peer_value": peer, "ratio": ratio, "config": config, "device": "cpu: x, 2 cores"}

    rows = [line("train_step", 5.0, 4.0, 1.25, target_ratio=1.0, image_size=32, batch=2,
                 gflop_per_step={"ours": 24.0, "peer": 22.0}),
            line("sample_step", 16.0, 15.0, 1.07, target_ratio=1.0, image_size=64,
                 gflops_per_forward={"ours": 16.0, "peer": 14.5}),
            line("audit_topk", 0.2, 0.6, 3.0, target_ratio=5.0),
            line("tui_keypress_median", 80.0, None, None, target_ms=50),
            line("ingest", None, None, None, error="exit code 1: boom"),
            line("gpu_train_256", None, None, None, skipped="no CUDA device")]
    f = tmp_path / "r.jsonl"
    f.write_text("\n".join(json.dumps(x) for x in [{"meta": {"date": "D", "device": "cpu"}}, *rows,
                                                  {"meta_end": {"seconds": 1}}]))
    text = report.render(f)
    table = {ln.split("|")[1].strip(" `"): ln for ln in text.splitlines() if ln.startswith("| `")}
    assert table["train_step"].rstrip().endswith("| yes |")
    assert table["audit_topk"].rstrip().endswith("| **no** |")           # 3.0 < 5
    assert table["tui_keypress_median"].rstrip().endswith("| **no** |")  # 80 ms > 50 ms
    assert "failed: exit code 1" in table["ingest"] and "not measured (no GPU)" in table["gpu_train_256"]
    assert "CPU-hours (EXTRAPOLATED" in text
    # training: 160k x 16 images x (24/2 GFLOP x 64) / 5 GFLOP/s / 3600
    assert f"training ~{160_000 * 16 * 12 * 64 / 5 / 3600:,.0f} h" in text


def test_gpu_lines_map_the_scripts_cuda_output() -> None:
    """No GPU here: the CUDA parts of bench_train.py / bench_sample.py's output, shaped as their code writes
    them, map onto gpu_train_256 / gpu_sample_256 with the bf16-peak fractions and the CUDA device."""
    side = {"model": "m", "params_m": 1.0, "step_s": 0.1, "images_per_s": 80.0, "gflop_per_step": 100.0,
            "achieved_gflops": 1000.0, "steps_timed": 30}
    train = {"cuda_256px": {"image_size": 256, "batch": 8, "precision": "bfloat16", "device": "cuda",
                            "ours": side, "lucidrains": dict(side, images_per_s=40.0), "throughput_ratio": 2.0,
                            "flop_ratio": 1.1, "throughput_per_flop_ratio": 2.2, "gpu": "NVIDIA H100 80GB HBM3",
                            "bf16_peak_tflops": 989.4, "ours_fraction_of_bf16_peak": 0.101,
                            "lucidrains_fraction_of_bf16_peak": 0.05}}
    gpu_train = next(b for b in suite.BENCHES if b.name == "gpu_train_256")
    (r,) = gpu_train.parse(train, "ignored")
    assert (r.ours, r.peer_value, r.ratio) == (80.0, 40.0, 2.0)
    assert r.device == "cuda: NVIDIA H100 80GB HBM3" and r.config["fraction_of_bf16_peak"]["ours"] == 0.101
    sample = {"device": "cuda", "device_name": "NVIDIA H200", "size": 256, "batch": 32, "rounds": 3,
              "ours": {"network_gflops_per_s": 50_000.0}, "fast_sampler": {"sampler": "unipc", "steps": 10,
                                                                             "images_per_s": 30.0},
              "reference_ancestral_1000_images_per_s": 0.5, "ours_ancestral_1000_images_per_s": 0.4,
              "bf16_peak_tflops": 989.4, "ours_fraction_of_bf16_peak": 0.0505}
    gpu_sample = next(b for b in suite.BENCHES if b.name == "gpu_sample_256")
    (s,) = gpu_sample.parse(sample, "ignored")
    assert (s.ours, s.ratio, s.device) == (30.0, 60.0, "cuda: NVIDIA H200")
    lines = [dict(r.to_json(), config=r.config), dict(s.to_json(), config=s.config)]
    cost = report.paper_scale_cost(lines)
    assert f"training {160_000 * 16 / 80 / 3600:,.1f} h" in cost                  # 2,560,000 images at 80 img/s
    assert f"sampling with unipc-10 {85_000 / 30 / 3600:,.1f} h" in cost          # 8 x 7,250 + 27,000 images
    assert "not measured" not in cost


def test_main_exits_1_when_a_benchmark_fails_and_records_it(tmp_path: Path, monkeypatch, capsys) -> None:
    import benchmarks.__main__ as cli

    bad = fake_bench(tmp_path, "import sys; sys.exit(7)", name="bad")
    good = fake_bench(tmp_path, FAKE_OK, name="good")
    monkeypatch.setattr(cli, "BENCHES", [bad, good])
    out = tmp_path / "r.jsonl"
    assert cli.main(["--json", "--out", str(out)]) == 1
    printed = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [p["name"] for p in printed] == ["rate", "latency", "rate", "latency"]
    assert printed[0]["ours"] is None and "exit code 7" in printed[0]["config"]["error"]
    assert printed[2]["ours"] == 10.0
    meta, results, end = report.load(out)
    assert results == printed and end["failed"] == ["rate", "latency"] and meta["quick"] is False
    assert cli.main(["--out", str(tmp_path / "ok.jsonl")]) == 1          # without --json: a table, same exit code
    assert "exit code 7" in capsys.readouterr().out
