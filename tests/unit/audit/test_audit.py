"""Memorization audit: exact chunked search, planted copies, embeddings, weights errors, verdicts, CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.audit.nearest import audit_report, brute_force, calibrate, nearest_real, run_audit, search_block
from core.metrics.embeddings import (ImagededupEncoder, PixelEncoder, _downloads_forbidden, cached_vectors,
                                     make_encoder, pixel_vector)
from core.errors import CspineError
from tests.factories.audit import add_run, blob_image, planted_study
# The search itself


@pytest.mark.parametrize("chunk", [1, 3, 7, 16, 64, 1000])
@pytest.mark.parametrize("k", [1, 10, 57])
def test_chunked_topk_equals_brute_force_with_ties(chunk: int, k: int) -> None:
    # Entries in {-1, 0, 1}: dot products are small exact integers, so ties abound and no rounding can
    # reorder them; the result must equal the brute force one exactly, whatever the chunk size.
    rng = np.random.default_rng(chunk * 100 + k)
    q = rng.integers(-1, 2, size=(45, 6)).astype(np.float32)
    b = rng.integers(-1, 2, size=(31, 6)).astype(np.float32)
    got = search_block(q, b, k, chunk_rows=chunk, prefix=10)
    sims, qi, bi = brute_force(q, b, k)
    np.testing.assert_array_equal(got.pair_sim, sims)
    np.testing.assert_array_equal(got.pair_query, qi)
    np.testing.assert_array_equal(got.pair_base, bi)
    full = q @ b.T
    np.testing.assert_array_equal(got.nearest, full.argmax(axis=1))  # ties: the lower index wins
    np.testing.assert_array_equal(got.nearest_sim, full.max(axis=1))
    np.testing.assert_array_equal(got.prefix_nearest, full[:, :10].argmax(axis=1))


@pytest.mark.parametrize("chunk", [2, 13, 128, None])
def test_chunked_topk_equals_brute_force_random_unit_vectors(chunk: int | None) -> None:
    rng = np.random.default_rng(1)
    q = rng.standard_normal((300, 32)).astype(np.float32)
    b = rng.standard_normal((120, 32)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    got = search_block(q, b, 100, chunk_rows=chunk)
    full = q.astype(np.float64) @ b.T.astype(np.float64)
    order = np.argsort(-full.ravel(), kind="stable")[:100]
    np.testing.assert_allclose(got.pair_sim, full.ravel()[order], atol=1e-6)
    # With continuous random values no two of the top 100 are within rounding of each other here.
    assert np.min(-np.diff(full.ravel()[order])) > 1e-6
    np.testing.assert_array_equal(got.pair_query * 120 + got.pair_base, order)
    np.testing.assert_array_equal(got.nearest, full.argmax(axis=1))


def test_memory_bound_follows_the_budget() -> None:
    q = np.ones((5000, 8), np.float32)
    b = np.ones((2000, 8), np.float32)
    found = search_block(q, b, 5, memory_mb=1.0)
    assert found.block_bytes <= 2**20
    assert found.chunk_rows < 5000


def test_search_rejects_mismatched_sizes() -> None:
    with pytest.raises(CspineError, match="embedding sizes differ"):
        search_block(np.ones((3, 4)), np.ones((3, 5)), 2)


def test_calibration_counts_synthetic_above_the_validation_percentile() -> None:
    val = np.linspace(0.0, 0.5, 1001)
    syn = np.array([0.1, 0.49, 0.6, 0.9])
    out = calibrate(syn, val, percentile=99.9)
    assert out["threshold"] == pytest.approx(np.percentile(val, 99.9))
    assert out["memorization_rate"] == pytest.approx(0.5)
    assert calibrate(syn, np.zeros(0))["memorization_rate"] is None


def test_pixel_vector_is_zero_mean_unit_norm_and_flat_images_are_zero() -> None:
    v = pixel_vector(blob_image(np.random.default_rng(0), 64), 32)
    assert v.shape == (1024,) and abs(v.mean()) < 1e-6 and np.linalg.norm(v) == pytest.approx(1.0, abs=1e-5)
    assert not pixel_vector(np.full((40, 40), 7, np.uint8)).any()


# ---------------------------------------------------------------------------------------------------
# Audits of a study


def test_planted_training_image_is_the_top_pair(study) -> None:
    info = planted_study(study)
    summary = run_audit(study, "audit-1", encoder=make_encoder("pixel"), top=10)
    report = audit_report(study, "audit-1")
    top = report["pairs"][0]
    assert (top["real_id"], top["synthetic_id"]) == (info["planted_real"], info["planted_syn"])
    assert top["similarity"] == pytest.approx(1.0, abs=1e-5)
    sims = [p["similarity"] for p in report["pairs"]]
    assert sims == sorted(sims, reverse=True) and len(sims) == 10
    assert report["pairs"][1]["similarity"] < 0.99
    assert top["real_path"].startswith("images/real/") and top["synthetic_path"].startswith("images/synthetic/")
    near = nearest_real(study, "audit-1")
    assert len(near) == len(info["syn_ids"])
    assert near[info["planted_syn"]]["train_id"] == info["planted_real"]
    # The copy is closer to training than any validation image: counted by the calibrated rate.
    assert summary["calibration"]["n_above"] >= 1 and summary["memorization_rate"] > 0
    assert (study.root / summary["histogram"]).stat().st_size > 1000


def test_audit_reuses_cached_embeddings_and_resumes(study) -> None:
    from core.metrics.embeddings import EmbeddingStopped

    planted_study(study, n_syn=30)
    calls: list[int] = []

    class Counting(PixelEncoder):
        def encode(self, paths):
            calls.append(len(paths))
            return super().encode(paths)

    enc = Counting(name="pixel32", batch_size=8, size=32)
    asked = iter([False, False, True])  # stop at the third batch boundary
    with pytest.raises(EmbeddingStopped):
        run_audit(study, "a", encoder=enc, should_stop=lambda: next(asked, True))
    assert sum(calls) == 16 and len(cached_vectors(study, "pixel32")) == 16
    run_audit(study, "a", encoder=enc, top=5)
    assert sum(calls) == 82  # 52 real + 30 synthetic, each encoded once
    run_audit(study, "b", encoder=enc, top=5)
    assert sum(calls) == 82  # a second audit encodes nothing


def test_audit_job_runs_registered_and_writes_results(study) -> None:
    from core.jobs import runner

    info = planted_study(study)
    job_id = runner.create_job(study, "audit", {"embedding": "pixel", "top": 7})
    record = runner.run_job(study, job_id)
    assert record["state"] == "succeeded", record["error"]
    assert record["output"].endswith(job_id)
    pairs = study.store.query("SELECT * FROM audit_pairs WHERE audit_id = ? ORDER BY rank", [job_id])
    assert len(pairs) == 7 and pairs[0]["synthetic_id"] == info["planted_syn"]
    assert study.store.scalar("SELECT job_id FROM audits WHERE id = ?", [job_id]) == job_id


def test_audit_without_synthetic_images_says_what_to_do(study) -> None:
    planted_study(study)
    study.store.execute("DELETE FROM synthetic_images")
    with pytest.raises(CspineError, match="no synthetic images"):
        run_audit(study, "x", encoder=make_encoder("pixel"))
    with pytest.raises(CspineError, match="no synthetic run 'nope'"):
        run_audit(study, "x", encoder=make_encoder("pixel"), runs=["nope"])


def test_audit_of_chosen_runs_only(study) -> None:
    info = planted_study(study)
    rng = np.random.default_rng(5)
    add_run(study, "run-b", [blob_image(rng) for _ in range(6)])
    summary = run_audit(study, "x", encoder=make_encoder("pixel"), runs=["run-b-name"], top=3)
    assert summary["n_synthetic"] == 6 and summary["runs"] == ["run-b-name"]
    assert info["planted_syn"] not in {p["synthetic_id"] for p in audit_report(study, "x")["pairs"]}


def test_unreadable_image_names_the_file(study) -> None:
    planted_study(study)
    path = study.synthetic_dir / "run-a" / "00003.png"
    path.write_bytes(b"not a png")
    with pytest.raises(CspineError, match="00003.png"):
        run_audit(study, "x", encoder=make_encoder("pixel"))


# ---------------------------------------------------------------------------------------------------
# Embedding backends


def test_missing_vit_weights_is_one_clear_error(tmp_path: Path, monkeypatch, study, capsys) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    with pytest.raises(CspineError) as err:
        make_encoder("vit")
    message = str(err.value)
    assert "vit_b_16_swag-9ac1b537.pth" in message and "9ac1b537" in message
    assert str(tmp_path / "torch-home" / "hub" / "checkpoints") in message and "\n" not in message
    assert not (tmp_path / "torch-home" / "hub" / "checkpoints" / "vit_b_16_swag-9ac1b537.pth").exists()

    from cspine_tui.cli.main import main

    planted_study(study)
    assert main(["audit", "--study", str(study.root), "--embedding", "vit"]) == 2
    err_text = capsys.readouterr().err
    assert err_text.startswith("error: the ViT weights vit_b_16_swag-9ac1b537.pth")
    assert "Traceback" not in err_text and err_text.count("\n") == 1
    assert study.store.scalar("SELECT count(*) FROM jobs") == 0  # failed before any job was created


def test_wrong_vit_weights_file_is_rejected_by_hash(tmp_path: Path) -> None:
    fake = tmp_path / "vit.pth"
    fake.write_bytes(b"\0" * 1000)
    with pytest.raises(CspineError, match="not one beginning 9ac1b537"):
        make_encoder("vit", vit_weights=fake)
    with pytest.raises(CspineError, match="does not exist"):
        make_encoder("vit", vit_weights=tmp_path / "nope.pth")


def test_torch_hub_cannot_download_while_building_models(tmp_path: Path) -> None:
    import torch.hub

    with _downloads_forbidden(), pytest.raises(CspineError, match="never downloads"):
        torch.hub.load_state_dict_from_url("https://example.invalid/model-12345678.pth", model_dir=str(tmp_path))
    assert not list(tmp_path.iterdir())


def _tiny_custom_model():
    import torch
    from imagededup.utils.models import CustomModel
    from torchvision import transforms

    class Tiny(torch.nn.Module):
        """A fixed random conv net: (N, 3, 32, 32) -> (N, 64)."""

        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.conv = torch.nn.Conv2d(3, 16, 3, stride=2)
            self.pool = torch.nn.AdaptiveAvgPool2d(2)

        def forward(self, x):
            return self.pool(torch.relu(self.conv(x))).flatten(1)

    return CustomModel(name="tiny", model=Tiny(), transform=transforms.Compose(
        [transforms.Resize((32, 32)), transforms.ToTensor(), transforms.Normalize([0.5] * 3, [0.5] * 3)]))


def test_imagededup_cnn_code_path_with_a_tiny_local_network(study) -> None:
    # The same class the ViT goes through (imagededup's CNN with a CustomModel), with a network CI can build.
    info = planted_study(study)
    encoder = ImagededupEncoder(name="imagededup-tiny", batch_size=16, model_config=_tiny_custom_model())
    vecs = encoder.encode([study.abs(p) for p in study.store.column("SELECT path FROM real_images LIMIT 3")])
    assert vecs.shape == (3, 64) and vecs.dtype == np.float32
    # imagededup's own single-image path gives the same vector as our batched one.
    single = encoder._cnn.encode_image(image_file=study.abs(study.store.column(
        "SELECT path FROM real_images ORDER BY id LIMIT 1")[0]))
    first = encoder.encode([study.abs(study.store.column("SELECT path FROM real_images ORDER BY id LIMIT 1")[0])])
    np.testing.assert_allclose(first[0], single.ravel(), rtol=1e-4, atol=1e-5)
    run_audit(study, "tiny", encoder=encoder, top=3)
    top = audit_report(study, "tiny")["pairs"][0]
    assert top["synthetic_id"] == info["planted_syn"] and top["similarity"] == pytest.approx(1.0, abs=1e-5)


def test_torchscript_encoder_from_a_path(study, tmp_path: Path) -> None:
    import torch

    class Enc(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.avg_pool2d(x, 4).flatten(1)

    path = tmp_path / "enc.pt"
    torch.jit.script(Enc()).save(str(path))
    info = planted_study(study)
    enc = make_encoder(str(path), study, encoder_size=32)
    assert enc.name.startswith("torchscript-") and enc.name.endswith("c1s32")
    run_audit(study, "ts", encoder=enc, top=2)
    assert audit_report(study, "ts")["pairs"][0]["synthetic_id"] == info["planted_syn"]
    with pytest.raises(CspineError, match="not a loadable TorchScript"):
        bad = tmp_path / "bad.pt"
        bad.write_text("nope")
        make_encoder(str(bad))
    with pytest.raises(CspineError, match="not 'vit', 'pixel'"):
        make_encoder("does/not/exist.pt")


# ---------------------------------------------------------------------------------------------------
# Two reviewers, agreement, exports


def test_two_reviewers_kappa_adjudication_and_exports(study, tmp_path: Path) -> None:
    from sklearn.metrics import cohen_kappa_score

    from core.audit.review import agreement, export_sheet, export_verdicts_csv, record_verdict, verdicts_of

    planted_study(study)
    run_audit(study, "a", encoder=make_encoder("pixel"), top=8)
    r1 = ["memorized", "not", "not", "unsure", "not", "not", "memorized", "not"]
    r2 = ["memorized", "not", "memorized", "not", "not", "not", "memorized", "not"]
    for rank, (x, y) in enumerate(zip(r1, r2), start=1):
        record_verdict(study, "a", rank, "alice", x, note=f"a{rank}")
        if rank < 8:
            record_verdict(study, "a", rank, "bob", y)
    assert set(verdicts_of(study, "a", "bob")) == set(range(1, 8))  # only bob's own
    out = agreement(study, "a")
    assert out["reviewers"] == ["alice", "bob"] and out["n_both"] == 7
    assert out["kappa"] == pytest.approx(cohen_kappa_score(r1[:7], r2[:7]))
    assert [a["rank"] for a in out["adjudicate"]] == [3, 4]
    assert out["pending"] == {"alice": [], "bob": [8]} and out["memorized_by_both"] == [1, 7]

    rows = list(csv.DictReader(open(export_verdicts_csv(study, "a", tmp_path / "v.csv"))))
    assert len(rows) == 15 and {r["reviewer"] for r in rows} == {"alice", "bob"}
    assert rows[0]["rank"] == "1" and rows[0]["verdict"] == "memorized" and float(rows[0]["similarity"]) > 0.999
    sheet = Image.open(export_sheet(study, "a", tmp_path / "sheet.png", columns=2))
    assert sheet.size[0] > 2 * 2 * 160 and sheet.size[1] > 4 * 160

    with pytest.raises(CspineError, match="not one of"):
        record_verdict(study, "a", 1, "alice", "maybe")
    with pytest.raises(CspineError, match="no pair of rank 99"):
        record_verdict(study, "a", 99, "alice", "not")


def test_kappa_is_none_when_chance_agreement_is_total() -> None:
    from core.audit.review import cohen_kappa

    assert cohen_kappa(["not"] * 5, ["not"] * 5) is None
    assert cohen_kappa(["not", "memorized"], ["not", "memorized"]) == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------------
# CLI


def test_cli_audit_json_and_verdict_commands(study, capsys, tmp_path: Path) -> None:
    from cspine_tui.cli.main import main

    info = planted_study(study)
    assert main(["audit", "--study", str(study.root), "--embedding", "pixel", "--top", "5", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)  # one document, the job's id in it
    job_id = doc["job"]
    assert doc["audit_id"] == job_id and len(doc["pairs"]) == 5
    assert {"real_path", "synthetic_path", "real_id", "synthetic_id", "similarity"} <= set(doc["pairs"][0])
    assert doc["pairs"][0]["synthetic_id"] == info["planted_syn"]
    assert [p["similarity"] for p in doc["pairs"]] == sorted((p["similarity"] for p in doc["pairs"]), reverse=True)
    assert 0 < doc["memorization_rate"] <= 1

    for reviewer, verdict in (("r1", "memorized"), ("r2", "unsure")):
        assert main(["audit-verdict", "--study", str(study.root), "--rank", "1", "--verdict", verdict,
                     "--reviewer", reviewer]) == 0
    capsys.readouterr()
    assert main(["audit-verdicts", "--study", str(study.root), "--json", "--export", str(tmp_path / "v.csv"),
                 "--sheet", str(tmp_path / "s.png")]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["reviewers"] == ["r1", "r2"] and res["adjudicate"][0]["rank"] == 1
    assert (tmp_path / "v.csv").exists() and (tmp_path / "s.png").exists()
    assert main(["audit-show", "--study", str(study.root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["audit_id"] == job_id
    assert main(["audit-show", "--study", str(study.root), "--list", "--json"]) == 0
    assert [r["audit_id"] for r in json.loads(capsys.readouterr().out)] == [job_id]
    assert main(["audit-show", "nope", "--study", str(study.root)]) == 2
    assert "no single audit matches 'nope'" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------
# Demo stage


def test_demo_stage_audits_with_two_simulated_reviewers_and_is_idempotent(study) -> None:
    from core.audit.review import SIMULATED_REVIEWERS, agreement
    from core.demo.stages import STAGES, stage_audit

    names = [name for name, _ in STAGES]
    assert names.index("audit") > max(names.index("sample"), names.index("screen"))  # audits screened samples
    lines: list[str] = []
    stage_audit(study, lines.append)
    assert "nothing to audit yet" in lines[-1] and study.store.scalar("SELECT count(*) FROM audits") == 0

    info = planted_study(study)
    stage_audit(study, lines.append)  # a run the demo did not make is not its to audit
    assert "nothing to audit yet" in lines[-1] and study.store.scalar("SELECT count(*) FROM audits") == 0
    study.store.execute("UPDATE synthetic_runs SET name = 'demo-s1000'")  # the name the demo's sampling gives
    stage_audit(study, lines.append)
    audit_id = study.store.scalar("SELECT id FROM audits")
    assert audit_id.startswith("audit-")
    out = agreement(study, audit_id, SIMULATED_REVIEWERS)
    assert out["n_both"] == out["n_pairs"] == 100  # the default top 100 pairs, both judged
    top = study.store.query_one("SELECT synthetic_id FROM audit_pairs WHERE audit_id = ? AND rank = 1", [audit_id])
    assert top["synthetic_id"] == info["planted_syn"]
    verdicts = study.store.column("SELECT DISTINCT verdict FROM audit_verdicts WHERE rank = 1")
    assert verdicts and set(verdicts) <= {"memorized", "unsure"}
    assert study.store.scalar("SELECT count(*) FROM prescreen_scores") == 30
    assert (study.exports_dir / "audits" / audit_id / "pairs.png").exists()
    n_verdicts = study.store.scalar("SELECT count(*) FROM audit_verdicts")
    stage_audit(study, lines.append)  # again: no second audit, no duplicate verdicts
    assert study.store.scalar("SELECT count(*) FROM audits") == 1
    assert study.store.scalar("SELECT count(*) FROM audit_verdicts") == n_verdicts
    assert any("simulated reviewers' kappa" in line for line in lines)


def test_given_vit_weights_file_is_found_by_torch_hub_without_a_download(tmp_path: Path, monkeypatch) -> None:
    """The --vit-weights plumbing: imagededup's ViT() asks torch.hub for the torchvision URL and gets our file.

    The real 331 MB file is not available in CI, so a stand-in for imagededup's ViT class does exactly what
    its constructor does with the weights (load_state_dict_from_url of the enum's URL) on a tiny state dict.
    """
    import hashlib

    import torch
    import torch.hub
    from imagededup.utils import models as idd_models
    from torchvision.models import ViT_B_16_Weights

    from core.metrics import embeddings

    weights = tmp_path / "my-copy.pth"
    torch.save({"w": torch.arange(4.0)}, weights)
    monkeypatch.setattr(embeddings, "VIT_SHA256_PREFIX", hashlib.sha256(weights.read_bytes()).hexdigest()[:8])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    hub_before = torch.hub.get_dir()

    class StandInViT(torch.nn.Module):
        name = "vit_b_16"
        transform = staticmethod(lambda im: torch.zeros(3, 8, 8))

        def __init__(self) -> None:
            super().__init__()
            self.loaded = torch.hub.load_state_dict_from_url(ViT_B_16_Weights.IMAGENET1K_SWAG_E2E_V1.url)

        def forward(self, x):
            return x.flatten(1)

    monkeypatch.setattr(idd_models, "ViT", StandInViT)
    enc = embeddings.vit_encoder(weights, cache_root=tmp_path / "hub")
    assert torch.equal(enc.model_config.model.loaded["w"], torch.arange(4.0))
    assert enc.name == embeddings.VIT_MODEL_NAME
    assert torch.hub.get_dir() == hub_before  # the override is undone
    assert not (tmp_path / "empty-torch-home").exists() or not any((tmp_path / "empty-torch-home").rglob("*.pth"))
