"""Plausibility pre-screen: AUROC on planted implausible phantoms, decisions saved, caching, helpers."""

from __future__ import annotations

import numpy as np
import pytest

from core.screening import prescreen
from core.errors import CspineError
from core.screening.prescreen import auroc, hog_vector, prescreen_scores, review_savings, score_features
from core.study import Study
from tests.factories.audit import add_real, add_reviews, add_run

N_REAL, N_SYN, N_DECIDED, DEFECT_EVERY = 200, 300, 100, 7


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """200 plausible real phantoms; a run of 300 with every 7th a planted implausible variant (all 5 kinds);
    a simulated screener has decided the first 100 correctly. Shared by the tests of this module, so a test
    that adds decisions takes them back."""
    from core.demo import phantom

    study = Study.create(tmp_path_factory.mktemp("prescreen") / "study")
    real = [phantom.render_canonical(s, size=64) for s in range(N_REAL)]
    add_real(study, real, ["train"] * 170 + ["val"] * 30)
    defects = [phantom.DEFECTS[(i // DEFECT_EVERY) % len(phantom.DEFECTS)] if i % DEFECT_EVERY == 3 else None
               for i in range(N_SYN)]
    syn = [phantom.render_canonical(10_000 + i, size=64, defect=d) for i, d in enumerate(defects)]
    ids = add_run(study, "run-p", syn)
    truth = {i: int(d is not None) for i, d in zip(ids, defects)}
    add_reviews(study, {i: ("reject" if truth[i] else "accept") for i in ids[:N_DECIDED]}, reviewer="sim-screener")
    return study, ids, truth, defects


def test_prescreen_ranks_planted_defects_first(planted) -> None:
    study, ids, truth, defects = planted
    # The simulated screener decided the first 100 images; the pre-screen scores all of them.
    scores = prescreen_scores(study)
    assert set(scores) == set(ids) and all(0.0 <= s <= 1.0 for s in scores.values())
    rest = ids[N_DECIDED:]
    s = [scores[i] for i in rest]
    y = [truth[i] for i in rest]
    value = auroc(s, y)
    full = review_savings(s, y, recall=1.0)
    most = review_savings(s, y, recall=0.9)
    print(f"\npre-screen AUROC on {len(rest)} undecided images ({sum(y)} planted): {value:.3f}; "
          f"decisions to find all planted: {full['ordered']} vs {full['random_expected']} in random order; "
          f"90%: {most['ordered']} vs {most['random_expected']}")
    assert value >= 0.9
    assert most["ordered"] < most["random_expected"] / 2
    # Every defect kind is ranked above the median plausible image on average.
    median_ok = np.median([scores[i] for i in rest if not truth[i]])
    for kind in set(d for d in defects if d):
        kind_scores = [scores[i] for i, d in zip(ids, defects) if d == kind and i in rest]
        assert np.mean(kind_scores) > median_ok, kind
    stored = study.store.query_one("SELECT count(*) AS n, any_value(classifier) AS c FROM prescreen_scores")
    assert stored["n"] == N_SYN and stored["c"] is not None  # classifier mode: enough decisions of both kinds


def test_prescreen_without_decisions_uses_atypicality_alone(planted) -> None:
    study, ids, truth, _ = planted
    got_ids, x, _ = prescreen.compute_features(study)
    assert got_ids == ids and x.shape == (N_SYN, 2 * len(prescreen.HOG_SCALES))
    scores, mode, _ = score_features(x, None)
    assert mode == "unsupervised"
    assert auroc(scores, [truth[i] for i in ids]) >= 0.8
    few = np.full(len(ids), -1)
    few[:3] = 1
    assert score_features(x, few)[1] == "unsupervised"  # too few decisions for a classifier


def test_scores_are_reused_until_a_decision_changes(planted, monkeypatch) -> None:
    study, ids, truth, _ = planted
    first = prescreen_scores(study)
    calls = []
    real_compute = prescreen.compute_scores
    monkeypatch.setattr(prescreen, "compute_scores", lambda st, **kw: calls.append(1) or real_compute(st, **kw))
    assert prescreen_scores(study) == first and calls == []
    flipped = ids[-1]
    add_reviews(study, {flipped: "accept" if truth[flipped] else "reject"}, reviewer="second-screener")
    try:
        second = prescreen_scores(study)
        assert calls == [1] and set(second) == set(first)  # recomputed for the new decision
    finally:
        study.store.execute("DELETE FROM reviews WHERE reviewer = 'second-screener'")


def test_prescreen_needs_real_images(study) -> None:
    add_run(study, "r", [np.zeros((16, 16), np.uint8)])
    with pytest.raises(CspineError, match="no real images"):
        prescreen_scores(study)


def test_no_synthetic_images_gives_no_scores(study) -> None:
    assert prescreen_scores(study) == {}


def test_auroc_matches_sklearn_with_ties() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, 200).astype(float)
    y = rng.integers(0, 2, 200)
    assert auroc(s, y) == pytest.approx(roc_auc_score(y, s))
    assert auroc([1, 2], [1, 1]) is None


def test_review_savings_counts_decisions_in_score_order() -> None:
    y = [0, 1, 0, 0, 1, 0, 0, 0, 0, 0]
    s = [0.1, 0.9, 0.2, 0.3, 0.8, 0.0, 0.0, 0.0, 0.0, 0.0]
    out = review_savings(s, y, recall=1.0)
    assert out["ordered"] == 2 and out["random_expected"] == pytest.approx(2 * 11 / 3, abs=0.1)
    worst = review_savings([-v for v in s], y, recall=0.5)
    assert worst["ordered"] == 9  # reversed order: the first reject is the 9th image seen


def test_hog_vector_is_unit_norm_and_flat_images_have_none() -> None:
    img = (np.indices((64, 64)).sum(axis=0) * 2 % 256).astype(np.uint8)
    v = hog_vector(img, 32, 4)
    assert v.shape == (7 * 7 * 4 * prescreen.HOG_BINS,) and np.linalg.norm(v) == pytest.approx(1.0, abs=1e-4)
    assert not hog_vector(np.full((64, 64), 90, np.uint8)).any()


def test_cli_prescreen_json(planted, capsys) -> None:
    import json

    from cspine_tui.cli.main import main

    study, ids, _, _ = planted
    assert main(["prescreen", "--study", str(study.root), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)  # one document, the job's id in it
    assert doc["job"].startswith("prescreen-")
    assert doc["n_scored"] == N_SYN and doc["mode"] == "classifier"
    assert [r["score"] for r in doc["ranking"]] == sorted((r["score"] for r in doc["ranking"]), reverse=True)
    assert doc["cv_auroc"] is None or 0.0 <= doc["cv_auroc"] <= 1.0
