"""The label tables' storage API: an import is all or nothing, the newest import wins, reads filter by image."""

from __future__ import annotations

import pytest

from core.ddpm import synthetic
from core.realset import labels
from core.study import Study


def test_labels_round_trip_and_newest_import_wins(tmp_path):
    study = Study.create(tmp_path / "s")
    labels.replace_labels(study, "imp-1", "keypoints", file="k.csv", file_sha256="x", summary={"rows": 2},
                          keypoints=[("a", "C3_body", 10.5, 20.25), ("b", "C3_body", 1.0, 2.0)])
    labels.replace_labels(study, "imp-2", "keypoints", file="k2.csv", file_sha256="y", summary={"rows": 1},
                          keypoints=[("a", "C3_body", 11.0, 21.0)])
    labels.replace_labels(study, "imp-3", "attributes", file="a.csv", file_sha256="z", summary={},
                          attributes=[("a", "defect", "yes", None), ("b", "defect", "no", None),
                                      ("a", "lordosis_deg", "21.5", 21.5)])
    assert labels.keypoints_for(study) == {"a": {"C3_body": (11.0, 21.0)}, "b": {"C3_body": (1.0, 2.0)}}
    assert labels.keypoints_for(study, ["b"]) == {"b": {"C3_body": (1.0, 2.0)}}
    assert labels.keypoints_for(study, []) == {}
    assert labels.attributes_for(study, "defect", ["a"]) == {"a": "yes"}
    assert labels.attribute_counts(study) == {"defect": {"no": 1, "yes": 1}, "lordosis_deg": {"21.5": 1}}
    summary = labels.label_summary(study)
    assert summary["keypoint_images"] == 2 and summary["attributes"] == ["defect", "lordosis_deg"]
    assert [i["id"] for i in summary["imports"]][-1] == "imp-1"


def test_a_failing_import_stores_nothing(tmp_path):
    study = Study.create(tmp_path / "s")
    with pytest.raises(TypeError):
        labels.replace_labels(study, "imp-1", "keypoints", file=None, file_sha256=None, summary={},
                              keypoints=[("a", "C3_body", 1.0, 2.0), ("b", "C3_body", None, 2.0)])
    assert labels.label_summary(study)["imports"] == [] and labels.keypoints_for(study) == {}


def test_synthetic_images_keep_their_condition(tmp_path):
    study = Study.create(tmp_path / "s")
    synthetic.create_run(study, "r", "external")
    cond = {"attributes": {"defect": "yes"}, "keypoints": {"C3_body": [3.5, 4.5]}}
    synthetic.add_images(study, "r", [synthetic.SyntheticImage(0, "x.png", "h", condition=cond),
                                      synthetic.SyntheticImage(1, "y.png", "h2")])
    assert synthetic.conditions_for(study, ["r-0", "r-1"]) == {"r-0": cond}
