"""The reasons a screener can give for rejecting a synthetic image, by key digit and by stored code.

Shared by the decisions (core/screening/decisions.py), the adjudication (core/screening/rules.py) and the CSV
import (core/screening/csv_io.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import CspineError


@dataclass(frozen=True)
class Reason:
    key: str      # the digit pressed after "reject"
    code: str     # stored in reviews.reason
    label: str


# The paper's two named abnormalities first, then the ones docs/reference/anatomy.md lists; 9 asks for a note;
# 0 is for conditional images.
REASONS: tuple[Reason, ...] = (
    Reason("1", "airway_posterior", "airway/pharynx posterior to the spine"),
    Reason("2", "elements_inverted", "anterior/posterior elements inverted"),
    Reason("3", "missing_vertebra", "missing vertebra"),
    Reason("4", "extra_vertebra", "extra (doubled) vertebra"),
    Reason("5", "distortion", "distorted anatomy (bodies do not stack, melted outlines)"),
    Reason("6", "artifact", "artifact (checkerboard, grid, noise)"),
    Reason("7", "truncated", "abruptly truncated field"),
    Reason("8", "second_spine", "a second spine or doubled outlines"),
    Reason("9", "other", "other (with a note)"),
    # A conditional image (core/ddpm/conditioning.py) that does not show the attributes or the keypoint layout
    # it was generated for: the screening screen shows that condition beside the image.
    Reason("0", "condition_not_shown", "does not show its condition"),
)
REASON_BY_KEY = {r.key: r for r in REASONS}
REASON_BY_CODE = {r.code: r for r in REASONS}
NOTE_REQUIRED = {"other"}
# core/demo/phantom.py defect names -> the reason a screener would give (used by the demo's simulated reviewer).
DEFECT_REASON = {"airway_posterior": "airway_posterior", "elements_swapped": "elements_inverted",
                 "missing_vertebra": "missing_vertebra", "doubled_vertebra": "extra_vertebra",
                 "distortion": "distortion"}


def reason_code(value: str | None) -> str | None:
    """A reason given as its code or its key digit -> the code; None/'' -> None; anything else is an error."""
    if value is None or str(value).strip() == "":
        return None
    value = str(value).strip()
    if value in REASON_BY_CODE:
        return value
    if value in REASON_BY_KEY:
        return REASON_BY_KEY[value].code
    raise CspineError(f"unknown rejection reason {value!r}; use one of "
                      f"{', '.join(f'{r.key}={r.code}' for r in REASONS)}")
