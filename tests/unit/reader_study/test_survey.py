"""Quartet packs: selection, blinding, the QSF / TXT structure, the answer key, the preview, the CLI."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.reader_study import pack as survey
from core.errors import CspineError
from core.reader_study import formats
from core.reader_study.formats import build_qsf
from core.reader_study.spec import IMAGE_URL_PLACEHOLDER, PackSpec
from tests.factories.survey import tiny_study
CKPTS = ["2000", "4000", "6000"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pack")
    study = tiny_study(tmp)
    spec = survey.build_pack(study, tmp / "pack", checkpoints=CKPTS, count=8, seed=7, size=48)
    return study, spec, tmp / "pack"


def _elements(qsf: dict, code: str) -> list[dict]:
    return [e for e in qsf["SurveyElements"] if e["Element"] == code]


# -- selection -------------------------------------------------------------------------------------

def test_pack_draws_distinct_accepted_images_and_records_them(built):
    study, spec, out = built
    assert len(spec.items) == 32 and spec.count == 8
    ids = [i.image_id for i in spec.items]
    assert len(set(ids)) == len(ids)  # none reused
    rejected = set(study.store.column("SELECT image_id FROM reviews WHERE decision = 'reject'"))
    assert not rejected & set(ids)
    for q in range(1, 9):
        members = spec.quartet(q)
        assert sorted(i.source for i in members) == sorted(["real", *CKPTS])
        assert [i.position for i in members] == [1, 2, 3, 4]
    rows = study.store.query("SELECT * FROM quartet_items WHERE pack_id = ? ORDER BY quartet, position",
                             [spec.pack_id])
    assert [(r["quartet"], r["position"], r["source"], r["image_file"]) for r in rows] == \
        [(i.quartet, i.position, i.source, i.image_file) for i in sorted(spec.items, key=lambda i: (i.quartet,
                                                                                                   i.position))]
    assert study.store.scalar("SELECT count(*) FROM survey_items WHERE pack_id = ?", [spec.pack_id]) == 8
    pack = study.store.query_one("SELECT * FROM quartet_packs WHERE id = ?", [spec.pack_id])
    assert pack["seed"] == 7 and json.loads(pack["checkpoints"]) == CKPTS


def test_same_seed_same_pack_positions_vary(tmp_path, built):
    study, spec, _ = built
    again = survey.build_pack(study, tmp_path / "again", checkpoints=CKPTS, count=8, seed=7, size=48)
    key = lambda s: [(i.quartet, i.position, i.image_id, i.image_file) for i in s.items]  # noqa: E731
    assert key(again) == key(spec) and again.pack_id != spec.pack_id
    other = survey.build_pack(study, tmp_path / "other", checkpoints=CKPTS, count=8, seed=8, size=48)
    assert key(other) != key(spec)
    real_positions = {i.position for i in spec.items if i.source == "real"}
    assert len(real_positions) > 1


# -- blinding --------------------------------------------------------------------------------------

def test_images_are_identically_encoded_without_metadata(built):
    _, spec, out = built
    images = sorted((out / "upload" / "images").iterdir())
    assert len(images) == 32
    mtimes = {p.stat().st_mtime for p in images}
    assert len(mtimes) == 1
    for p in images:
        assert re.fullmatch(r"[0-9a-f]{16}\.png", p.name)
        data = p.read_bytes()
        chunks = survey.png_chunks(data)
        assert chunks[0] == "IHDR" and chunks[-1] == "IEND" and set(chunks) == {"IHDR", "IDAT", "IEND"}
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        bit_depth, colour_type = data[24], data[25]
        assert (width, height, bit_depth, colour_type) == (48, 48, 8, 0)
        with Image.open(p) as im:
            assert im.mode == "L" and not im.info


def test_same_pixels_give_the_same_bytes_whatever_the_source_format(tmp_path):
    from PIL.PngImagePlugin import PngInfo

    arr = (np.arange(64 * 64).reshape(64, 64) % 251).astype(np.uint8)
    info = PngInfo()
    info.add_text("Software", "a scanner")
    Image.fromarray(arr, "L").save(tmp_path / "a.png", pnginfo=info, dpi=(300, 300))
    Image.fromarray(arr, "L").convert("RGB").save(tmp_path / "b.png")
    Image.fromarray(arr.astype(np.uint16) * 257).save(tmp_path / "c.png")
    Image.fromarray(arr, "L").save(tmp_path / "d.tif")
    out = {survey.blind_encode(tmp_path / n, 64) for n in ("a.png", "b.png", "c.png", "d.tif")}
    assert len(out) == 1


def test_upload_folder_leaks_nothing(built):
    study, spec, out = built
    upload = out / "upload"
    assert sorted(p.name for p in upload.iterdir()) == ["images", "survey.qsf", "survey.txt"]
    text = (upload / "survey.qsf").read_text() + (upload / "survey.txt").read_text()
    for item in spec.items:
        assert item.image_id not in text
    for word in ("synthetic", "checkpoint", "answer_key", spec.pack_id):
        assert word not in text.lower() if word.islower() else word not in text
    real_paths = study.store.column("SELECT path FROM real_images")
    assert not any(Path(p).name in text for p in real_paths)
    # Files appear in name order, which is random: the real image is not always first or last.
    names = sorted(i.image_file for i in spec.items)
    ranks = {i.quartet: sorted(names).index(i.image_file) for i in spec.items if i.source == "real"}
    assert len(set(ranks.values())) > 1


# -- QSF / TXT / key -------------------------------------------------------------------------------

def test_qsf_structure(built):
    _, spec, out = built
    qsf = json.loads((out / "upload" / "survey.qsf").read_text())
    assert set(qsf) == {"SurveyEntry", "SurveyElements"}
    assert qsf["SurveyEntry"]["SurveyID"].startswith("SV_")
    codes = {e["Element"] for e in qsf["SurveyElements"]}
    assert {"BL", "FL", "SO", "QC", "SQ", "RS"} <= codes
    questions = {e["PrimaryAttribute"]: e["Payload"] for e in _elements(qsf, "SQ")}
    # two questions per quartet, instructions, rater code and the questionnaire's two
    assert _elements(qsf, "QC")[0]["SecondaryAttribute"] == str(len(questions)) == str(4 + 2 * spec.count)
    assert questions["QID2"]["DataExportTag"] == "rater_code" and questions["QID2"]["QuestionType"] == "TE"
    blocks = _elements(qsf, "BL")[0]["Payload"]
    quartet_blocks = [b for b in blocks if b["Type"] == "Standard"]
    assert len(quartet_blocks) == spec.count
    with open(out / "answer_key.csv") as fh:
        key = list(csv.DictReader(fh))
    for q, block in enumerate(quartet_blocks, 1):
        mc_id, mx_id = [e["QuestionID"] for e in block["BlockElements"]]
        mc, mx = questions[mc_id], questions[mx_id]
        assert (mc["QuestionType"], mc["Selector"], mc["DataExportTag"]) == ("MC", "SAHR", f"Q{q:02d}_pick")
        assert mc["Validation"]["Settings"]["ForceResponse"] == "ON"
        assert mc["ChoiceOrder"] == ["1", "2", "3", "4"] and mc["RecodeValues"] == {str(p): str(p) for p in
                                                                                      range(1, 5)}
        assert (mx["QuestionType"], mx["Selector"], mx["SubSelector"]) == ("Matrix", "Likert", "SingleAnswer")
        assert mx["DataExportTag"] == f"Q{q:02d}_rate" and mx["ChoiceDataExportTags"] is False
        assert [mx["Answers"][a]["Display"][0] for a in mx["AnswerOrder"]] == ["1", "2", "3", "4"]
        assert mx["RecodeValues"] == {str(p): str(p) for p in range(1, 5)}
        assert mx["Validation"]["Settings"]["ForceResponse"] == "ON"
        for row in (k for k in key if int(k["quartet"]) == q):
            assert row["mc_export_tag"] == mc["DataExportTag"] and row["matrix_export_tag"] == mx["DataExportTag"]
            display = mc["Choices"][row["mc_choice_recode"]]["Display"]
            assert spec.url_for(row["image_file"]) in display and f"<b>{row['position']}</b>" in display
            assert mx["Choices"][row["matrix_row_recode"]]["Display"] == f"Image {row['position']}"
    flow = _elements(qsf, "FL")[0]["Payload"]["Flow"]
    assert [f["ID"] for f in flow if f["Type"] == "Standard"] == [b["ID"] for b in quartet_blocks]
    assert flow[0]["ID"] == blocks[0]["ID"] and flow[-1]["Type"] == "EndSurvey"


def test_qsf_shuffled_pages_use_a_block_randomizer(built):
    _, spec, _ = built
    spec2 = PackSpec(**{**spec.__dict__, "shuffle_pages": True})
    flow = _elements(build_qsf(spec2), "FL")[0]["Payload"]["Flow"]
    rand = [f for f in flow if f["Type"] == "BlockRandomizer"]
    assert len(rand) == 1 and rand[0]["SubSet"] == spec.count and len(rand[0]["Flow"]) == spec.count


def test_advanced_format_txt(built):
    _, spec, out = built
    txt = (out / "upload" / "survey.txt").read_text()
    assert txt.startswith("[[AdvancedFormat]]\n")
    assert txt.count("[[Block:Quartet ") == spec.count
    assert txt.count("[[Question:MC:SingleAnswer:Horizontal]]") == spec.count
    assert txt.count("[[Question:Matrix]]") == spec.count
    assert "[[ID:Q01_pick]]" in txt and "[[ID:Q08_rate]]" in txt and "[[ID:rater_code]]" in txt
    first = txt.split("[[Block:Quartet 01]]")[1].split("[[Block:Quartet 02]]")[0]
    assert first.count("<img ") == 4 and first.count("[[Choice:") == 8 and first.count("[[Answer:") == 4
    assert "<table" not in first  # the images are the choices, as in the QSF, not a table above bare letters
    lines = first.split("\n")
    for item in spec.quartet(1):
        choice = lines[lines.index(f"[[Choice:{item.position}]]") + 1]
        assert spec.url_for(item.image_file) in choice and choice.endswith(f"<b>{item.letter}</b>")


def test_txt_route_says_what_it_cannot_do(built):
    _, spec, out = built
    readme = (out / "README.md").read_text()
    assert "If you import `survey.txt` instead" in readme and "Force response" in readme
    assert "the same for every rater" in readme and "Randomizer" not in readme
    spec2 = PackSpec(**{**spec.__dict__, "shuffle_pages": True})
    limits = " ".join(formats.txt_limits(spec2))
    assert "Randomizer" in limits and f"Randomly present {spec.count} of the following elements" in limits
    assert "Quartet 01" in limits and "Evenly present elements" in limits
    assert "Randomizer" in formats.build_readme(spec2)


def test_answer_key_and_manifest(built):
    _, spec, out = built
    with open(out / "answer_key.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[:8] == ["quartet", "position", "image_file", "source", "mc_export_tag",
                                 "mc_choice_recode", "matrix_export_tag", "matrix_row_recode"]
    assert len(rows) == 32 and {r["pack_id"] for r in rows} == {spec.pack_id}
    assert sum(r["source"] == "real" for r in rows) == 8
    back = survey.read_pack_dir(out)
    assert back.pack_id == spec.pack_id and back.items == spec.items
    assert "Reader-study pack" in (out / "README.md").read_text()


# -- URLs ------------------------------------------------------------------------------------------

def test_image_urls_can_be_set_later(tmp_path, built):
    study, spec, out = built
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    assert IMAGE_URL_PLACEHOLDER in (copy / "upload" / "survey.qsf").read_text()
    survey.set_image_urls(None, copy, base_url="https://img.example.org/study1")
    qsf = (copy / "upload" / "survey.qsf").read_text()
    assert IMAGE_URL_PLACEHOLDER not in qsf
    assert f"https://img.example.org/study1/{spec.items[0].image_file}" in qsf
    mapping = tmp_path / "urls.csv"
    first = spec.items[0].image_file
    mapping.write_text(f"image_file,url\n{first},https://x.qualtrics.com/ControlPanel/Graphic.php?IM=IM_abc\n")
    survey.set_image_urls(None, copy, url_csv=mapping)
    assert "Graphic.php?IM=IM_abc" in (copy / "upload" / "survey.txt").read_text()
    mapping.write_text("image_file,url\nnot-in-pack.png,https://x/y.png\n")
    with pytest.raises(CspineError, match="not an image of this pack"):
        survey.set_image_urls(None, copy, url_csv=mapping)


# -- refusals --------------------------------------------------------------------------------------

def test_refusals(tmp_path, built):
    study, _, out = built
    with pytest.raises(CspineError, match="not empty"):
        survey.build_pack(study, out, checkpoints=CKPTS, count=2)
    with pytest.raises(CspineError, match=r"checkpoint 2000 has 8 accepted images"):
        survey.build_pack(study, tmp_path / "a", checkpoints=CKPTS, count=9)
    with pytest.raises(CspineError, match=r"no synthetic images from checkpoint '999'.*2000 \(8 accepted\)"):
        survey.build_pack(study, tmp_path / "b", checkpoints=["999", "4000", "6000"], count=2)
    with pytest.raises(CspineError, match="must differ"):
        survey.build_pack(study, tmp_path / "c", checkpoints=["2000", "ckpt-2000", "6000"], count=2)
    with pytest.raises(CspineError, match="3 groups"):
        survey.build_pack(study, tmp_path / "d", checkpoints=["2000", "4000"], count=2)
    with pytest.raises(CspineError, match="https://"):
        survey.build_pack(study, tmp_path / "e", checkpoints=CKPTS, count=2, image_base_url="ftp://x")
    assert not (tmp_path / "a").exists() and not list(tmp_path.glob(".a.tmp-*"))


def test_cli_quartets_json(tmp_path, built, capsys):
    from cspine_tui.cli.main import main

    study, _, _ = built
    rc = main(["quartets", "--study", str(study.root), "--count", "3", "--checkpoints", *CKPTS, "--seed", "1",
               "--size", "32", "--out", str(tmp_path / "p"), "--image-base-url", "https://h.example/x/", "--json"])
    out = capsys.readouterr()
    assert rc == 0
    data = json.loads(out.out)
    assert data["count"] == 3 and data["images"] == 12 and data["checkpoints"] == CKPTS
    assert "https://h.example/x/" in (tmp_path / "p" / "upload" / "survey.qsf").read_text()
    rc = main(["quartets", "--study", str(study.root), "--count", "3", "--checkpoints", "1", "2", "3",
               "--out", str(tmp_path / "q")])
    assert rc == 2 and "error: no synthetic images from checkpoint '1'" in capsys.readouterr().err


# -- the preview in a real browser ---------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")
def test_preview_renders_in_headless_chromium(tmp_path, built):
    _, spec, out = built
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}"]
    url = (out / "preview.html").resolve().as_uri() + "#q1"
    dom = subprocess.run(flags + ["--virtual-time-budget=5000", "--dump-dom", url], capture_output=True,
                         text=True, timeout=120).stdout
    total = re.search(r'data-images-total="(\d+)"', dom)
    loaded = re.search(r'data-images-loaded="(\d+)"', dom)
    assert total and loaded, dom[:500]
    assert int(total.group(1)) == int(loaded.group(1)) == 4 * spec.count
    shot = tmp_path / "preview.png"
    subprocess.run(flags + ["--window-size=1200,900", f"--screenshot={shot}", url], capture_output=True,
                   timeout=120)
    assert shot.exists()
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
    gray = (np.abs(pixels[..., 0] - pixels[..., 1]) < 3) & (np.abs(pixels[..., 1] - pixels[..., 2]) < 3)
    mid = gray & (pixels[..., 0] > 20) & (pixels[..., 0] < 200)
    # four 48x48 radiograph-like images are on screen (at least 4 x 48 x 48 mid-gray pixels)
    assert mid.sum() > 4 * 48 * 48 * 0.5
