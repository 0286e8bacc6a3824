"""A quartet pack's specification (pack.json): the quartets, the neutral export tags, the image URLs, and the
survey's wording and scale, shared by the builder (pack.py), the survey files (formats.py, preview.py), the
checks (pack_check.py), the import of responses and the analysis.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from core.errors import CspineError

LETTERS = "ABCD"
IMAGE_URL_PLACEHOLDER = "https://REPLACE-WITH-YOUR-IMAGE-HOST.invalid/images/"
RATER_CODE_TAG = "rater_code"
SCALE = {1: "1 - unrealistic", 2: "2 - somewhat unrealistic", 3: "3 - mostly realistic", 4: "4 - fully realistic"}


@dataclass
class QuartetItem:
    quartet: int          # 1-based
    position: int         # 1..4 = A..D
    image_kind: str       # real | synthetic
    image_id: str
    source: str           # 'real' or the checkpoint step
    image_file: str       # opaque name in upload/images/

    @property
    def letter(self) -> str:
        return LETTERS[self.position - 1]


@dataclass
class PackSpec:
    """Everything the survey files, the preview and the import need; stored as pack.json."""
    pack_id: str
    seed: int
    checkpoints: list[str]
    count: int
    size: int
    image_base_url: str | None
    shuffle_pages: bool
    created_at: str
    items: list[QuartetItem] = field(default_factory=list)
    image_urls: dict[str, str] = field(default_factory=dict)  # per-file URL overrides (Qualtrics library)
    study: str = ""
    questionnaire: bool = False  # the rater questionnaire (core/reader_study/questionnaire.py); packs since 0013
    free_text: bool = False      # an optional "what gave it away?" box on every quartet page

    # Neutral export tags and question ids; QID1 is the instructions text, QID2 the rater code.
    @staticmethod
    def mc_tag(q: int) -> str:
        return f"Q{q:02d}_pick"

    @staticmethod
    def matrix_tag(q: int) -> str:
        return f"Q{q:02d}_rate"

    @staticmethod
    def mc_qid(q: int) -> str:
        return f"QID{2 * q + 1}"

    @staticmethod
    def matrix_qid(q: int) -> str:
        return f"QID{2 * q + 2}"

    rater_code_qid = "QID2"

    @property
    def questionnaire_qid(self) -> int:
        """The number of the questionnaire's first QID (after every quartet's two questions)."""
        return 2 * self.count + 3

    def cue_qid(self, q: int) -> str:
        """The QID of quartet q's free-text box (after the questionnaire's two questions)."""
        return f"QID{self.questionnaire_qid + 1 + q}"

    def quartet(self, q: int) -> list[QuartetItem]:
        return sorted((i for i in self.items if i.quartet == q), key=lambda i: i.position)

    def url_for(self, image_file: str) -> str:
        return image_url(self, image_file)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["format"] = "cspine-tui quartet pack 1"
        data["tags"] = {str(q): {"mc_export_tag": self.mc_tag(q), "matrix_export_tag": self.matrix_tag(q),
                                 "mc_qid": self.mc_qid(q), "matrix_qid": self.matrix_qid(q)}
                        for q in range(1, self.count + 1)}
        data["rater_code_tag"] = RATER_CODE_TAG
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "PackSpec":
        return spec_from_json(cls, QuartetItem, data)


def image_url(spec: Any, image_file: str) -> str:
    """The survey's URL of a pack image (either design): its own URL from --url-csv, else base URL + name."""
    if image_file in spec.image_urls:
        return spec.image_urls[image_file]
    base = spec.image_base_url or IMAGE_URL_PLACEHOLDER
    return base + ("" if base.endswith("/") else "/") + image_file


def spec_from_json(cls: Any, item_cls: Any, data: dict[str, Any]) -> Any:
    """A pack spec (either design) from its pack.json, refusing image names that point outside the pack."""
    items = [item_cls(**i) for i in data["items"]]
    for item in items:  # a hand-edited manifest must not point outside the pack (../, /abs, ...)
        check_image_name(item.image_file, "pack.json")
    for name in data.get("image_urls") or {}:
        check_image_name(name, "pack.json image_urls")
    keys = {f for f in cls.__dataclass_fields__ if f != "items"}
    return cls(**{k: v for k, v in data.items() if k in keys}, items=items)


# An image name in a pack is a bare file name: no folder, no parent reference, no absolute path.
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")


def check_image_name(name: str, where: str) -> str:
    """Refuse an image file name that points anywhere but the pack's own images folder."""
    if not isinstance(name, str) or not SAFE_NAME.match(name) or ".." in name:
        raise CspineError(f"{where} names the image {str(name)[:80]!r}, which is not a plain file name inside "
                          "the pack's upload/images/ folder; restore the pack's files from a backup")
    return name


QUESTION = "Which image is the real radiograph?"
RATE = "How realistic is each image?"
INSTRUCTIONS = (
    "<p>Each of the following {n} pages shows four lateral cervical spine radiographs labelled <b>A</b> to "
    "<b>D</b>. Exactly one of them is a real patient radiograph; the other three were generated by a "
    "computer model.</p><ol><li>Choose the image you believe is the <b>real</b> radiograph.</li>"
    "<li>Rate how realistic <b>each</b> image looks, from <b>1 = unrealistic</b> to <b>4 = fully realistic</b>."
    "</li></ol><p>Every question needs an answer. Please judge the images at the size shown.</p>"
)
RATER_CODE_TEXT = "Your rater code (given to you by the study team):"
FREE_TEXT_NOTE = ("<p>Under each page's questions a box asks what gave an image away; it is optional, and anything "
                  "you write there helps us improve the images.</p>")


def instructions_html(spec: PackSpec) -> str:
    """The instructions page's text (the QSF, the TXT and the preview show the same)."""
    return INSTRUCTIONS.format(n=spec.count) + (FREE_TEXT_NOTE if spec.free_text else "")
