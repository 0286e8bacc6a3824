"""The dataset release: the accepted synthetic images (final screening rule) with their provenance.

    OUT/
      images/<checkpoint>/<run>/<index>.png   accepted images (or data/train/... with --hf)
      manifest.csv     file, checkpoint, run, sampler, steps, seed, weights, flip, decisions, sha256, condition
      table_s1.csv     per run and checkpoint: generated, final count (the paper's Table S1)
      README.md        dataset card: method, counts, licence (YAML front matter for the Hugging Face Hub)
      release.json     what `release --json` prints
      SHA256SUMS       `sha256sum -c SHA256SUMS` checks every file above

The release is built in a sibling folder and swapped in at the end, so an interrupted release never leaves
a half-written OUT, and writing it again (a re-run) replaces the previous release made by this tool. Every
image's bytes are checked against the SHA-256 the study recorded, so a file changed on disk is caught.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from core.errors import CspineError
from core.files import sha256_file
from core.screening.rules import final_cte, final_rule, table_s1
from core.study import Study
from core.jobs.runner import JobPaused

MANIFEST_COLUMNS = ("file", "image_id", "checkpoint", "run", "run_source", "sampler", "steps", "seed", "weights",
                    "flip", "decisions", "final_rule", "sha256", "condition")
DEFAULT_LICENCE = "unspecified"
Progress = Callable[[int, int, str], None]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-") or "run"


def _ckpt_folder(step: int | None, run: str) -> str:
    return f"checkpoint-{step}" if step is not None else f"external-{_slug(run)}"


def accepted_rows(study: Study, rule: str | None = None) -> list[dict[str, Any]]:
    """The accepted images with everything the manifest needs (one query)."""
    with study.store.connect() as tx:
        cte, params = final_cte(tx, study, rule)
        return tx.query(
            f"""WITH {cte},
            dec AS (SELECT image_id, string_agg(reviewer || ':' || decision || coalesce(':' || reason, ''), ';'
                                                ORDER BY reviewer) AS decisions FROM reviews GROUP BY image_id)
            SELECT s.id AS image_id, s.path, s.sha256, s.flipped, s.idx, s.seed, s.condition, r.id AS run_id,
                   r.name AS run,
                   r.source AS run_source, r.checkpoint_step AS checkpoint, r.sampler, r.steps, r.weights,
                   d.decisions
            FROM synthetic_images s JOIN synthetic_runs r ON r.id = s.run_id JOIN final f ON f.image_id = s.id
            LEFT JOIN dec d ON d.image_id = s.id
            WHERE f.final = 'accept'
            ORDER BY r.checkpoint_step NULLS LAST, r.created_at, r.name, s.idx""", params)


def _condition_cell(raw: str | None) -> str:
    """A conditional image's condition as compact JSON ({"attributes": ..., "keypoints": {point: [x, y]}} in the
    released image's pixels, mirrored with it); empty for unconditional and external images."""
    return json.dumps(json.loads(raw), separators=(",", ":"), sort_keys=True) if raw else ""


def _copy_checked(src: Path, dst: Path, expected: str) -> str:
    h = hashlib.sha256()
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(src, "rb") as fi, open(dst, "wb") as fo:
            for chunk in iter(lambda: fi.read(1 << 20), b""):
                h.update(chunk)
                fo.write(chunk)
    except FileNotFoundError:
        raise CspineError(f"accepted image {src} is missing; restore it or re-register its run") from None
    digest = h.hexdigest()
    if digest != expected:
        raise CspineError(f"{src} changed since it was registered (sha256 {digest[:12]}... not {expected[:12]}...); "
                          "restore the file or re-register its run")
    return digest


def _prepare_out(out: Path) -> Path:
    """Check OUT may be written; returns the staging folder next to it."""
    if out.exists():
        if not out.is_dir():
            raise CspineError(f"{out} is a file; give a folder for the release")
        if any(out.iterdir()) and not (out / "release.json").exists():
            raise CspineError(f"{out} is not empty and holds no earlier release; choose a new or empty folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.partial")
    if staging.exists():
        shutil.rmtree(staging)  # left by an interrupted release
    staging.mkdir()
    return staging


def write_release(study: Study, out: Path | str, *, rule: str | None = None, hf: bool = False,
                  licence: str | None = None, progress: Progress | None = None,
                  should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Write the release to OUT; returns the summary that `release --json` prints."""
    out = Path(out).expanduser().resolve()
    rule = final_rule(study, rule)
    licence = licence or study.get("release", "licence", None) or DEFAULT_LICENCE
    rows = accepted_rows(study, rule)
    counts = table_s1(study, rule)
    staging = _prepare_out(out)
    image_root = Path("data/train") if hf else Path("images")
    manifest: list[dict[str, Any]] = []
    total = len(rows)
    for i, row in enumerate(rows):
        if should_stop is not None and i % 200 == 0 and should_stop():
            shutil.rmtree(staging, ignore_errors=True)
            raise JobPaused("stopped before the release was complete; run it again to rebuild it")
        ext = Path(row["path"]).suffix or ".png"
        rel = image_root / _ckpt_folder(row["checkpoint"], row["run"]) / _slug(row["run"]) / f"{row['idx']:06d}{ext}"
        digest = _copy_checked(study.abs(row["path"]), staging / rel, row["sha256"])
        manifest.append({"file": rel.as_posix(), "image_id": row["image_id"], "checkpoint": row["checkpoint"],
                         "run": row["run"], "run_source": row["run_source"], "sampler": row["sampler"],
                         "steps": row["steps"], "seed": row["seed"], "weights": row["weights"],
                         "flip": bool(row["flipped"]), "decisions": row["decisions"] or "", "final_rule": rule,
                         "sha256": digest, "condition": _condition_cell(row["condition"])})
        if progress is not None and (i % 50 == 0 or i == total - 1):
            progress(i + 1, total, f"copied {i + 1}/{total} images")
    _write_csv(staging / "manifest.csv", MANIFEST_COLUMNS, manifest)
    if hf:
        _write_csv(staging / image_root / "metadata.csv", ("file_name",) + MANIFEST_COLUMNS[1:],
                   [{"file_name": Path(m["file"]).relative_to(image_root).as_posix(),
                     **{k: m[k] for k in MANIFEST_COLUMNS[1:]}} for m in manifest])
    s1_rows = [{"run": r["run"], "source": r["source"], "checkpoint": r["checkpoint"], "sampler": r["sampler"],
                "steps": r["steps"], "generated": r["generated"], "final_count": r["accepted"],
                "rejected": r["rejected"], "pending": r["pending"], "unreviewed": r["unreviewed"]}
               for r in counts["rows"]]
    t = counts["total"]
    s1_rows.append({"run": "Total", "source": "", "checkpoint": "", "sampler": "", "steps": "",
                    "generated": t["generated"], "final_count": t["accepted"], "rejected": t["rejected"],
                    "pending": t["pending"], "unreviewed": t["unreviewed"]})
    _write_csv(staging / "table_s1.csv", tuple(s1_rows[0]), s1_rows)
    per_ckpt: dict[str, int] = {}
    for m in manifest:
        key = str(m["checkpoint"]) if m["checkpoint"] is not None else f"external:{m['run']}"
        per_ckpt[key] = per_ckpt.get(key, 0) + 1
    summary = {"images": len(manifest), "out": str(out), "rule": rule, "by_checkpoint": per_ckpt,
               "generated": t["generated"], "rejected": t["rejected"], "pending": t["pending"],
               "unreviewed": t["unreviewed"], "licence": licence, "hf": hf,
               "study": study.get("study", "name"),
               "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    (staging / "README.md").write_text(dataset_card(study, summary, s1_rows, _reviewers(study)), encoding="utf-8")
    (staging / "release.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    _write_sums(staging)
    _swap_in(staging, out)
    if progress is not None:
        progress(total, total, f"release of {len(manifest)} images written to {out}")
    return summary


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})


def _write_sums(root: Path) -> None:
    lines = [f"{sha256_file(p)}  {p.relative_to(root).as_posix()}"
             for p in sorted(root.rglob("*")) if p.is_file() and p.name != "SHA256SUMS"]
    (root / "SHA256SUMS").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _swap_in(staging: Path, out: Path) -> None:
    old = out.with_name(f".{out.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if out.exists():
        os.replace(out, old)
    os.replace(staging, out)
    if old.exists():
        shutil.rmtree(old)


def _reviewers(study: Study) -> list[dict[str, Any]]:
    return study.store.query("SELECT reviewer, bool_or(simulated) AS simulated, count(*) AS n FROM reviews "
                             "GROUP BY reviewer ORDER BY reviewer")


RULE_TEXT = {
    "any_reject": "an image is excluded if any reviewer rejected it and kept if it was reviewed and nobody rejected it",
    "all_reviewers_accept": "an image is kept only if every required reviewer accepted it",
    "first_reviewer": "the decision of the reviewer who screened the image first is final",
    "adjudicated": "agreeing reviewers decide; disagreements were settled by an adjudicator",
}


def dataset_card(study: Study, summary: dict[str, Any], s1_rows: list[dict[str, Any]],
                 reviewers: list[dict[str, Any]]) -> str:
    n = summary["images"]
    size = "n<1K" if n < 1000 else "1K<n<10K" if n < 10_000 else "10K<n<100K" if n < 100_000 else "n>100K"
    licence = summary["licence"]
    lines = ["---", f"license: {licence if licence != DEFAULT_LICENCE else 'other'}",
             f"pretty_name: Synthetic lateral cervical spine radiographs ({summary['study']})",
             "task_categories:", "- unconditional-image-generation", "tags:", "- synthetic", "- radiology",
             "- x-ray", "- cervical-spine", "- ddpm", "size_categories:", f"- {size}", "---", "",
             f"# Synthetic lateral cervical spine radiographs: {summary['study']}", "",
             f"{n} synthetic 8-bit grayscale lateral cervical spine radiographs generated by a denoising diffusion "
             "probabilistic model (DDPM), screened by hand for gross anatomical abnormalities, released with "
             "their provenance. Released on " + summary["created_at"] + " by cspine-tui.", "",
             "## Licence", "", f"Licence: **{licence}**" + (
                 " (not set: set `[release] licence` in study.toml or pass `--licence` before publishing)"
                 if licence == DEFAULT_LICENCE else ""), "",
             "## Method", "",
             "Images were sampled from saved checkpoints of a DDPM trained on real lateral cervical spine "
             "radiographs (256x256, left-facing). Each image is identified by its checkpoint, sampler, number of "
             "sampling steps, weights (EMA or online) and its own seed (manifest.csv), so it can be regenerated. "
             "Images were standardised to left-facing orientation (`flip` = mirrored).", "",
             "Every image was screened by keyboard for implausible anatomy (for example pharynx and trachea "
             "posterior to the spinal column, anterior and posterior elements inverted, missing or extra "
             f"vertebrae, distortion, artifacts). Final decision rule `{summary['rule']}`: "
             f"{RULE_TEXT[summary['rule']]}.", "", "Reviewers:", ""]
    for r in reviewers:
        lines.append(f"- {r['reviewer']}: {r['n']} decisions" +
                     (" (SIMULATED reviewer of the demo, not a person)" if r["simulated"] else ""))
    if not reviewers:
        lines.append("- none")
    lines += ["", "## Counts (Table S1)", "", "| Generation | Checkpoint | Generated | Final count |",
              "|---|---|---|---|"]
    for r in s1_rows:
        lines.append(f"| {r['run']} | {r['checkpoint']} | {r['generated']} | {r['final_count']} |")
    if summary["pending"] or summary["unreviewed"]:
        lines += ["", f"Not in the release: {summary['pending']} images pending a decision and "
                      f"{summary['unreviewed']} not yet reviewed."]
    lines += ["", "## Files", "",
              "- `manifest.csv`: one row per image: file, image_id, checkpoint, run, sampler, steps, seed, weights, "
              "flip, decisions (reviewer:decision[:reason];...), final_rule, sha256, condition (for images of a "
              "conditional model: the attributes and keypoints, in the image's pixels, it was generated for).",
              "- `table_s1.csv`: generated and final counts per run and checkpoint.",
              "- `SHA256SUMS`: check with `sha256sum -c SHA256SUMS`.", ""]
    if summary["hf"]:
        lines += ["Hugging Face `imagefolder` layout: `data/train/` with `metadata.csv` (`file_name` column); "
                  "load with `datasets.load_dataset(\"imagefolder\", data_dir=\"data\")`.", ""]
    return "\n".join(lines)


def run_release_job(ctx: Any) -> dict[str, Any]:
    """Job runner "release": params out, rule, hf, licence."""
    p = ctx.params
    if not p.get("out"):
        raise CspineError("release needs --out DIR")
    summary = write_release(ctx.study, p["out"], rule=p.get("rule"), hf=bool(p.get("hf")), licence=p.get("licence"),
                            progress=lambda d, t, m: ctx.progress(d, t, message=m), should_stop=ctx.should_stop)
    ctx.log(f"release of {summary['images']} images written to {summary['out']}")
    return {**summary, "output": summary["out"]}
