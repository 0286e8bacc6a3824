"""The dataset screen's labels under Pilot: the attribute table, keypoints drawn on the canonical preview, and the
key that hides them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.realset import ingest
from core.realset.label_import import import_labels
from cspine_tui.app import CspineApp
from cspine_tui.widgets.preview import MARKER_COLOURS, ImagePreview
from tests.factories.ingest import draw_film, save_pil
from tests.factories.screens import screen_text
from tests.factories.waiting import open_by_key, settle


def _labelled_study(study, tmp_path):
    study.set("ingest", "size", 64)
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        save_pil(draw_film(160, 128, seed=i), src / f"film{i}.png")
    ingest.ingest(study, [src], workers=0)
    (tmp_path / "k.csv").write_text("file,point,x,y\n" + "".join(
        f"film{i}.png,C3_body,40,60\nfilm{i}.png,C3_spinous,90,70\n" for i in range(3)))
    (tmp_path / "a.csv").write_text("file,defect,cobb_deg\nfilm0.png,none,20\nfilm1.png,none,30\n"
                                    "film2.png,missing_vertebra,25\n")
    import_labels(study, tmp_path / "k.csv")
    import_labels(study, tmp_path / "a.csv")


def _canonical_pixels(screen) -> np.ndarray:
    image = screen.query_one("#canonical", ImagePreview).image
    assert image is not None
    return np.asarray(image.convert("RGB"))


async def test_dataset_screen_shows_labels_and_toggles_keypoints(study, tmp_path) -> None:
    _labelled_study(study, tmp_path)
    app = CspineApp(study, reviewer="alice", image_protocol="halfcell")
    async with app.run_test(size=(150, 44)) as pilot:
        screen = await open_by_key(app, pilot, "1", "DatasetScreen")
        await settle(app, pilot)
        text = screen_text(app)
        assert "keypoints" in text and "2 points" in text
        assert "defect" in text and "none 2" in text and "missing_vertebra 1" in text
        assert "cobb_deg" in text and "20 – 30, mean 25" in text
        assert "· 2 keypoints" in text and "this image" in text and "cobb_deg=" in text
        row = screen.current
        flipped = bool(row["flipped"])
        px = _canonical_pixels(screen)
        # C3_body at source (40, 60) of a 128 x 160 film: canonical (20, 24) at 64 px (mirrored if flipped); the
        # preview is the 64 px image as is, so the marker's colour is at that pixel.
        x = 64 - 20 if flipped else 20
        assert tuple(px[24, x]) == MARKER_COLOURS["body"]
        assert tuple(px[int(70 * 64 / 160), 64 - 45 if flipped else 45]) == MARKER_COLOURS["spinous"]

        await pilot.press("k")
        await settle(app, pilot)
        px = _canonical_pixels(screen)
        assert px[24, x, 0] == px[24, x, 1] == px[24, x, 2]          # grey again: no marker
        assert "2 keypoints off" in screen_text(app)
        await pilot.press("k")
        await settle(app, pilot)
        assert tuple(_canonical_pixels(screen)[24, x]) == MARKER_COLOURS["body"]


async def test_dataset_screen_without_labels_says_how_to_import(study, tmp_path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    save_pil(draw_film(160, 128, seed=1), src / "film.png")
    ingest.ingest(study, [src], workers=0)
    app = CspineApp(study, reviewer="alice", image_protocol="halfcell")
    async with app.run_test(size=(150, 44)) as pilot:
        await open_by_key(app, pilot, "1", "DatasetScreen")
        await settle(app, pilot)
        assert "cspine-tui labels --import" in screen_text(app)
        assert Path(study.root).exists()
