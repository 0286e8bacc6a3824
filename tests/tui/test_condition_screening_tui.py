"""The screening screen on a conditional image: the condition beside it, keypoint markers (k), reject with 0."""

from __future__ import annotations

import numpy as np

from core.ddpm import synthetic
from cspine_tui.app import CspineApp
from cspine_tui.widgets.screening_parts import decoded_preview
from tests.factories.screening import tiny_image
from tests.factories.screens import screen_text
from tests.factories.waiting import open_by_key, settle

CONDITION = {"attributes": {"defect": "missing_vertebra"}, "keypoints": {"C3_body": [10.5, 12.5]}}


async def test_condition_markers_and_reason_0(study) -> None:
    run = synthetic.create_run(study, "cond", "sampled", checkpoint_step=10, sampler="ddim", steps=5, seed=0,
                               weights="ema")
    synthetic.add_images(study, run, [synthetic.save_image(study, run, 0, tiny_image(0), seed=0, orient=False,
                                                           condition=CONDITION)])
    app = CspineApp(study, reviewer="ann", image_protocol="halfcell")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_by_key(app, pilot, "4", "ScreeningScreen")
        await settle(app, pilot)
        facts = str(screen.query_one("#facts").content)
        assert "defect=missing_vertebra" in facts and "1 keypoints" in facts and "1/1" in screen_text(app)
        plain = np.asarray(decoded_preview(study.abs(screen.current.path), CONDITION, 0, False))
        await pilot.press("k")
        await settle(app, pilot)
        assert screen.markers and screen._marked(screen.current)
        marked = np.asarray(decoded_preview(study.abs(screen.current.path), CONDITION, 0, True))
        # The cross sits on pixel (10, 12): white there, black outline beside, the rest of the image untouched.
        assert marked[12, 10] == 255 and marked[11, 9] == 0 and not np.array_equal(marked, plain)
        assert np.array_equal(marked[20:], plain[20:])
        await pilot.press("r", "0")
        await settle(app, pilot)
        review = study.store.query_one("SELECT decision, reason FROM reviews WHERE image_id = ?", ["cond-0"])
        assert review == {"decision": "reject", "reason": "condition_not_shown"}
