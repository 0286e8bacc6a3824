"""Every screen at 80x24 (a plain SSH window) and 120x40 (Pilot, half-cell previews): the headers of the key
tables are shown whole, and no widget that carries content has collapsed (issue 17: Table S1 without a row,
"chec…" headers, a training axis reading "20406081012140", a gallery of slivers, "canonicaloriginal").

One study holds something for every screen: real images with a split, three screened checkpoints, a training
run's files, a sampling job, an audit, a pack with imported (simulated) ratings and its analysis."""

from __future__ import annotations

import json
import re
import time

import pytest

from core.audit.nearest import run_audit
from core.demo import raters
from core.jobs import runner
from core.metrics.embeddings import make_encoder
from core.reader_study import pack, responses
from core.reader_study.analysis import analyze
from cspine_tui.app import SCREENS, CspineApp
from tests.factories.screens import screen_text
from tests.factories.survey import tiny_study
from tests.factories.waiting import open_by_key, settle

SIZES = [(80, 24), (120, 40)]

# Per screen: words that must be on screen whole (headers of its key tables, labels), and widgets (CSS
# selectors) that must keep at least (width, height) cells.
EXPECT: dict[str, tuple[list[str], dict[str, tuple[int, int]]]] = {
    "dashboard": (["Real images", "Table S1", "ckpt", "generated", "accepted", "rejected", "2000"],
                  {"#summary": (30, 5), "#by-checkpoint": (30, 6), "#menu": (20, 8)}),
    "dataset": (["split", "inv", "flip", "flag", "canonical", "original"],
                {"#images-table": (30, 3), "#canonical": (12, 5), "#original": (12, 5),
                 "#canonical-caption": (17, 1), "#original-caption": (20, 1)}),
    "training": (["run", "state", "step", "loss", "val loss"],
                 {"#runs": (25, 2), "#curve": (30, 8), "#evals": (30, 3)}),
    "sampling": (["step", "generated", "FID", "images", "img/s", "state", "run"],
                 {"#checkpoints": (30, 3), "#runs": (30, 3), "#run-info": (20, 4), "#g0": (10, 4), "#g3": (10, 4)}),
    "screening": (["Table S1", "run", "ckpt", "gen", "final", "queue"],
                  {"#single": (20, 10), "#facts": (30, 10), "#counts": (30, 4), "#caption": (12, 1)}),
    "audit": (["similarity", "real", "synthetic"],
              {"#real": (10, 6), "#synthetic": (10, 6), "#facts": (28, 6), "#real-label": (4, 1),
               "#synthetic-label": (9, 1)}),
    "survey": (["pack", "quartets", "groups", "Quartet 1 of"],
               {"#img-A": (8, 4), "#img-D": (8, 4)}),
    "analysis": (["measure", "this study", "paper", "identification accuracy", "rater", "correct", "accuracy"],
                 {"#summary": (40, 8), "#raters": (40, 4)}),
    "jobs": (["job", "kind", "state", "progress"], {}),
}


@pytest.fixture(scope="module")
def full_study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("layout")
    study = tiny_study(tmp, n_real=12, per_ckpt=6, reject_every=1000)
    with study.store.connect() as tx:  # a split, so the audit has training images
        tx.executemany("INSERT INTO splits (image_id, split, seed) VALUES (?, ?, 0)",
                       [[f"real{i:03d}", "train" if i < 9 else "val"] for i in range(12)])
    run_audit(study, "audit-layout", encoder=make_encoder("pixel"), top=4)
    spec = pack.build_pack(study, tmp / "pack", checkpoints=["2000", "4000", "6000"], count=6, seed=2, size=32)
    csv = raters.write_qualtrics_csv(tmp / "sim.csv", spec, raters.simulate_raters(spec, 4, seed=1))
    responses.import_ratings(study, csv, spec.pack_id)
    analyze(study, spec.pack_id)
    job = runner.create_job(study, "train", {"config": {"name": "tiny", "max_steps": 140}, "data": "train"})
    lines = [{"step": s, "time": 0, "train_loss": {"value": 1.0 / (1 + 0.05 * s), "window": 1}}
             for s in range(1, 141)]
    for line in lines[49::50]:
        line["val_loss"] = {"value": 0.5}
    (runner.run_dir(study, job) / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    runner.write_json_atomic(runner.run_dir(study, job) / "status.json", {
        "state": "succeeded", "step": 140, "total": 140, "heartbeat": time.time()})
    name = "ckpt-2000-dpmpp-x20-ema-a-long-run-name"
    sjob = runner.create_job(study, "sample", {"train_job": job, "run": name, "checkpoint_step": 2000,
                                              "count": 20, "sampler": "dpmpp", "steps": 20, "weights": "ema"})
    runner.write_json_atomic(runner.run_dir(study, sjob) / "status.json", {
        "state": "succeeded", "done": 20, "total": 20, "images_per_s": 1.5, "run": name, "heartbeat": time.time()})
    return study


def _cut_words(text: str) -> list[str]:
    """Words shown cut with an ellipsis ("chec…")."""
    return re.findall(r"\w+…", text)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", [e.name for e in SCREENS])
async def test_screen_layout(full_study, name, size) -> None:
    words, widgets = EXPECT[name]
    app = CspineApp(full_study, reviewer="layout", image_protocol="halfcell")
    async with app.run_test(size=size) as pilot:
        entry = next(e for e in SCREENS if e.name == name)
        if name != "dashboard":
            await open_by_key(app, pilot, entry.key, type(app.get_screen(name)).__name__)
        await settle(app, pilot)
        await pilot.pause(0.3)  # polled screens: their first poll's rows
        await settle(app, pilot)
        screen = app.screen
        text = screen_text(app)
        body = "\n".join(text.splitlines()[1:-1])  # without the header and the footer's key labels
        missing = [w for w in words if not re.search(rf"(?<![\w-]){re.escape(w)}(?![\w…])", body)]
        assert not missing, f"{name} at {size}: not shown whole: {missing}\n{text}"
        cut = [w for w in _cut_words(body) if any(x.startswith(w[:-1]) for x in words)]
        assert not cut, f"{name} at {size}: headers cut: {cut}\n{text}"
        for selector, (min_w, min_h) in widgets.items():
            region = screen.query_one(selector).region
            assert region.width >= min_w and region.height >= min_h, \
                f"{name} at {size}: {selector} collapsed to {region.width}x{region.height}\n{text}"
        if name == "training":
            # Axis labels with a gap between them: no run of digits longer than the longest step label.
            axis = [line for line in text.splitlines() if re.search(r"\d{4,}", line) and "step" not in line]
            assert not any(re.search(r"\d{5,}", line) for line in axis[-2:]), f"axis labels run together\n{text}"
