"""The benchmarks `python -m benchmarks` runs: which script, which arguments (quick / full) and how each
script's JSON maps onto the common schema (benchmarks/runner.py). Targets are in each line's config
("target_ratio", or "target_ms" for latencies)."""

from __future__ import annotations

import json

from .runner import BENCH, OUT, Bench, Result, cores, cpu_device, cuda_device, have_tmux, ratio_of, version

LUCIDRAINS = "lucidrains denoising-diffusion-pytorch"
QUALITY_FILE = OUT / "sampler-quality" / "result.json"


def _no_cuda() -> str | None:
    return None if cuda_device() else "no CUDA device on this machine"


def _gpu_device() -> str:
    name = cuda_device()
    return f"cuda: {name}" if name else cpu_device()  # a skipped GPU line names the machine it was skipped on


# -- train_step ---------------------------------------------------------------------------------------------
def _train_args(quick: bool) -> list[str]:
    # Quick keeps the paper's batch 8 at 64 px and times fewer steps: at 32 px batch 2 a step is dominated by
    # per-operation overhead, not by the network's arithmetic that "per FLOP" is about.
    size, batch, rounds, steps = (64, 8, 3, 1) if quick else (64, 8, 3, 2)
    return ["--no-cuda", "--size", str(size), "--batch", str(batch), "--rounds", str(rounds), "--steps",
            str(steps), "--threads", str(cores())]


def _train_parse(d: dict, device: str) -> list[Result]:
    c = d["cpu_64px"]
    o, t = c["ours"], c["lucidrains"]
    config = {"image_size": c["image_size"], "batch": c["batch"], "precision": c["precision"],
              "threads": d["cpu_threads"], "architecture": "paper preset vs " + t["model"],
              "gflop_per_step": {"ours": o["gflop_per_step"], "peer": t["gflop_per_step"]},
              "images_per_s": {"ours": o["images_per_s"], "peer": t["images_per_s"]},
              "raw_throughput_ratio": c["throughput_ratio"], "flops": "FlopCounterMode, forward + backward",
              "inner": f"median of {o['steps_timed']} interleaved steps per side", "target_ratio": 1.0}
    return [Result("train_step", "achieved GFLOP/s (images/s x FLOPs per image)", o["achieved_gflops"],
                   LUCIDRAINS, version("denoising-diffusion-pytorch"), t["achieved_gflops"],
                   ratio_of(o["achieved_gflops"], t["achieved_gflops"]), config, device)]


# -- sample_step and sample_default_vs_paper (one script run gives both) -------------------------------------
def _sample_args(quick: bool) -> list[str]:
    size, batch, k, rounds = (64, 2, 3, 3) if quick else (64, 2, 5, 5)
    # One thread, the script's default: on a shared 2-core machine it is the least disturbed by other load.
    return ["--size", str(size), "--batch", str(batch), "--measure-steps", str(k), "--rounds", str(rounds),
            "--threads", "1"]


def quality_evidence() -> dict:
    """The sampler-quality run's FID of the fast default next to ancestral-1000's (docs/benchmarks.md)."""
    evidence = {"source": "docs/benchmarks.md, section 'Sampling: quality against steps' "
                          "(benchmarks/bench_sampler_quality.py)"}
    try:
        q = json.loads(QUALITY_FILE.read_text())
    except (OSError, ValueError):
        evidence["note"] = f"{QUALITY_FILE.relative_to(BENCH.parent)} not on this machine; see docs/benchmarks.md"
        return evidence
    rows = {(r["sampler"], r["steps"]): r for r in q.get("rows", [])}
    d = q.get("default_fast_sampler") or {}
    fast, ref = rows.get((d.get("sampler"), d.get("steps"))), rows.get(("ddpm", 1000))
    evidence.update({"default_chosen": d, "rule": q.get("rule"), "n_images": q.get("n"),
                     "extractor": (q.get("extractor") or {}).get("extractor"),
                     "fid_fast": fast and fast["fid"], "fid_ancestral_1000": ref and ref["fid"],
                     "kid_fast": fast and fast["kid"], "kid_ancestral_1000": ref and ref["kid"]})
    return evidence


def _sample_parse(d: dict, device: str) -> list[Result]:
    o, t = d["ours"], d["reference"]
    peer_version = version("denoising-diffusion-pytorch")
    base = {"image_size": d["size"], "batch": d["batch"], "threads": d["threads"], "precision": "float32"
            if d["device"] == "cpu" else "bf16 autocast (ours), fp32 (reference)"}
    step_cfg = dict(base, gflops_per_forward={"ours": o["gflops_per_forward"], "peer": t["gflops_per_forward"]},
                    s_per_step={"ours": o["ancestral_s_per_step"], "peer": t["ancestral_s_per_step"]},
                    raw_per_step_ratio=d["per_step_ratio_raw"], target_ratio=1.0,
                    inner=f"median of {d['rounds']} interleaved rounds of {d['measure_steps']} ancestral steps")
    fast = d["fast_sampler"]
    fast_cfg = dict(base, sampler=f"{fast['sampler']}-{fast['steps']} (ours, default fast sampler)",
                    fast_steps=fast["steps"],
                    peer_sampler="ancestral 1000 steps (measured per-step time x 1000)",
                    ratio_equal_flops=d["fast_vs_reference_1000_ratio_equal_flops"],
                    quality_evidence=quality_evidence(), target_ratio=20.0,
                    inner=f"median of {d['rounds']} rounds")
    return [
        Result("sample_step", "network GFLOP/s per ancestral step", o["network_gflops_per_s"], LUCIDRAINS,
               peer_version, t["network_gflops_per_s"], ratio_of(o["network_gflops_per_s"],
                                                                 t["network_gflops_per_s"]), step_cfg, device),
        Result("sample_default_vs_paper", "images/s", fast["images_per_s"], LUCIDRAINS + " (ancestral-1000)",
               peer_version, d["reference_ancestral_1000_images_per_s"],
               ratio_of(fast["images_per_s"], d["reference_ancestral_1000_images_per_s"]), fast_cfg, device),
    ]


# -- audit_topk ---------------------------------------------------------------------------------------------
def _audit_args(quick: bool) -> list[str]:
    return ["--quick"] if quick else []


def _audit_parse(d: dict, device: str) -> list[Result]:
    o, t = d["ours"], d["imagededup"]
    config = {"vectors": f"{d['synthetic']:,} synthetic x {d['real']:,} real, {d['dim']}-d, top {d['top']}",
              "set": "quick: 2,000 x 1,000 (full: 27,000 x 5,000, the paper's scale)" if d["synthetic"] == 2000
              else "full", "cpu_seconds": {"ours": o["cpu_seconds"], "peer": t["cpu_seconds"]},
              "cpu_speedup": d["cpu_speedup"], "memory_ratio": d["memory_ratio"],
              "peak_rss_delta_mb": {"ours": o["peak_rss_delta_mb"], "peer": t["peak_rss_delta_mb"]},
              "top_k_found_by_imagededup": d["top_k_found_by_imagededup"], "load_avg_1m": d["load_avg_1m"],
              "call": "core.audit.nearest.search_block vs CNN.find_duplicates(encoding_map, scores=True)",
              "target_ratio": 5.0}
    return [Result("audit_topk", "s (wall)", o["seconds"], "imagededup find_duplicates", version("imagededup"),
                   t["seconds"], ratio_of(o["seconds"], t["seconds"], higher_is_better=False), config, device,
                   higher_is_better=False)]


# -- ingest -------------------------------------------------------------------------------------------------
def _ingest_args(quick: bool) -> list[str]:
    return ["--count", "40", "--cpu-sample", "10"] if quick else ["--count", "2000", "--cpu-sample", "100"]


def _ingest_parse(d: dict, device: str) -> list[Result]:
    config = {"images": d["images"], "source": d["source"], "workers": d["workers"], "cores": d["cpu_cores"],
              "ours_is": "the whole ingest job (hash, decode, resize, detectors, PNG writes, rows)",
              "peer_is": "one-process PIL loop: open, float, Lanczos 256x256, 8-bit, save",
              "cpu_seconds_per_image": d["cpu_seconds_per_image"],
              "idle_estimate_images_per_s": d["idle_estimate_images_per_s"],
              "load_average_1m": d["load_average_1m"], "target_ratio": None}
    return [Result("ingest", "images/s", d["ours_images_per_s"], "plain PIL loop", version("pillow"),
                   d["baseline_single_process_pil_images_per_s"],
                   ratio_of(d["ours_images_per_s"], d["baseline_single_process_pil_images_per_s"]), config, device)]


# -- tui_keypress -------------------------------------------------------------------------------------------
def _tui_args(quick: bool) -> list[str]:
    if quick:
        return ["--images", "60", "--keys", "30", "--capture-keys", "10", "--no-reference"]
    return ["--images", "300", "--keys", "100"]


def _tui_parse(d: dict, device: str) -> list[Result]:
    app = d["app"]
    nxt = app["next_ms"]
    config = {"keys": nxt["n"], "key": "Right (next image), screening screen", "terminal": d["terminal"],
              "protocol": d["protocol"], "gap_s": d["gap_s"], "start_s": app["start_s"],
              "accept_ms": app["accept_ms"], "next_capture_pane_ms": app["next_capture_pane_ms"],
              "cpu_ms_per_next": app["cpu_ms_per_next"], "tmux_client_ms": d["tmux_client_ms"],
              "load_avg_before": d["load_avg_before"], "measured": "tmux send-keys to the app's paint trace"}
    ref = d.get("reference_textual_image_halfcell")
    if ref:
        config["reference_textual_image_halfcell_next_ms"] = ref["next_ms"]
    return [Result("tui_keypress_median", "ms", nxt["median"], config=dict(config, target_ms=50), device=device,
                   higher_is_better=False),
            Result("tui_keypress_p95", "ms", nxt["p95"], config=config, device=device, higher_is_better=False)]


# -- tui_screens --------------------------------------------------------------------------------------------
DEMO_STUDY = BENCH.parent / "sessions" / "demo"


def _no_demo() -> str | None:
    """A reason to skip: no tmux, or no demo study to open every screen on."""
    return have_tmux() or (None if (DEMO_STUDY / "study.toml").exists()
                           else "no demo study (run `cspine-tui demo --no-tui`)")


def _screens_parse(d: dict, device: str) -> list[Result]:
    config = {"terminal": d["terminal"], "launches": d["launches"], "target_s": d["target_s"],
              "screens": d["screens"], "load_avg_before": d["load_avg_before"], "tmux_client_ms": d["tmux_client_ms"],
              "measured": "dashboard key to the new screen's footer on the tmux pane (first paint), median"}
    return [Result("tui_screen_switch_worst", "s", d["worst_paint_median_s"], config=config, device=device,
                   higher_is_better=False)]


# -- GPU (256 px, paper preset, bf16) -----------------------------------------------------------------------
def _gpu_train_parse(d: dict, device: str) -> list[Result]:
    c = d["cuda_256px"]
    o, t = c["ours"], c["lucidrains"]
    config = {"image_size": c["image_size"], "batch": c["batch"], "precision": c["precision"],
              "bf16_peak_tflops": c["bf16_peak_tflops"],
              "fraction_of_bf16_peak": {"ours": c["ours_fraction_of_bf16_peak"],
                                        "peer": c["lucidrains_fraction_of_bf16_peak"]},
              "gflop_per_step": {"ours": o["gflop_per_step"], "peer": t["gflop_per_step"]},
              "per_flop_ratio": c["throughput_per_flop_ratio"],
              "inner": f"median of {o['steps_timed']} interleaved steps per side"}
    return [Result("gpu_train_256", "images/s", o["images_per_s"], LUCIDRAINS, version("denoising-diffusion-pytorch"),
                   t["images_per_s"], ratio_of(o["images_per_s"], t["images_per_s"]), config, f"cuda: {c['gpu']}")]


def _gpu_sample_parse(d: dict, device: str) -> list[Result]:
    o, fast = d["ours"], d["fast_sampler"]
    config = {"image_size": d["size"], "batch": d["batch"], "sampler": f"{fast['sampler']}-{fast['steps']}",
              "precision": "bf16 autocast (ours), fp32 (reference, as its sample script runs)",
              "peer_sampler": "ancestral 1000 steps (measured per-step time x 1000)",
              "ours_ancestral_1000_images_per_s": d["ours_ancestral_1000_images_per_s"],
              "ours_network_gflops_per_s": o["network_gflops_per_s"],
              "bf16_peak_tflops": d.get("bf16_peak_tflops"),
              "fraction_of_bf16_peak": d.get("ours_fraction_of_bf16_peak"),
              "inner": f"median of {d['rounds']} rounds"}
    return [Result("gpu_sample_256", "images/s", fast["images_per_s"], LUCIDRAINS + " (ancestral-1000)",
                   version("denoising-diffusion-pytorch"), d["reference_ancestral_1000_images_per_s"],
                   ratio_of(fast["images_per_s"], d["reference_ancestral_1000_images_per_s"]), config,
                   f"cuda: {d['device_name']}")]


BENCHES: list[Bench] = [
    Bench("train_step", BENCH / "bench_train.py", {"train_step": "achieved GFLOP/s (images/s x FLOPs per image)"},
          _train_args, _train_parse, repeats=(1, 1), timeout_s=(600, 3600)),
    Bench("sample_step", BENCH / "bench_sample.py",
          {"sample_step": "network GFLOP/s per ancestral step", "sample_default_vs_paper": "images/s"},
          _sample_args, _sample_parse, repeats=(1, 1), timeout_s=(300, 3600), threads=1),
    Bench("audit_topk", BENCH / "bench_audit_topk.py", {"audit_topk": "s (wall)"}, _audit_args, _audit_parse,
          repeats=(3, 1), timeout_s=(180, 4 * 3600)),
    Bench("ingest", BENCH / "bench_ingest.py", {"ingest": "images/s"}, _ingest_args, _ingest_parse,
          repeats=(1, 1), timeout_s=(480, 3 * 3600)),  # the first run also writes the cached phantom files
    Bench("tui_keypress", BENCH / "bench_tui_keypress.py", {"tui_keypress_median": "ms", "tui_keypress_p95": "ms"},
          _tui_args, _tui_parse, repeats=(1, 1), timeout_s=(300, 1800), skip=have_tmux),
    Bench("tui_screens", BENCH / "bench_tui_screens.py", {"tui_screen_switch_worst": "s"},
          lambda quick: ["--study", str(DEMO_STUDY), "--launches", "1" if quick else "3"], _screens_parse,
          repeats=(1, 1), timeout_s=(600, 1800), skip=_no_demo),
    Bench("gpu_train_256", BENCH / "bench_train.py", {"gpu_train_256": "images/s"},
          lambda quick: ["--no-cpu", "--gpu-batch", "8", "--rounds", "3", "--steps", "10"], _gpu_train_parse,
          timeout_s=(600, 1800), skip=_no_cuda, device=_gpu_device),
    Bench("gpu_sample_256", BENCH / "bench_sample.py", {"gpu_sample_256": "images/s"},
          lambda quick: ["--device", "cuda", "--size", "256", "--rounds", "3"], _gpu_sample_parse,
          timeout_s=(600, 1800), skip=_no_cuda, device=_gpu_device),
]


def names() -> list[str]:
    return [b.name for b in BENCHES] + [n for b in BENCHES for n in b.outputs if n != b.name]


__all__ = ["BENCHES", "names", "quality_evidence"]
