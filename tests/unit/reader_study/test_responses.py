"""Qualtrics response import: both header formats, numeric and choice-text values, exclusions, wrong files."""

from __future__ import annotations

import csv
import io
import json

import pytest

from core.reader_study import responses

from core.reader_study import pack as survey
from core.errors import CspineError
from core.demo.raters import SimulatedResponse, write_qualtrics_csv
from tests.factories.survey import tiny_study
CKPTS = ["2000", "4000", "6000"]


@pytest.fixture()
def env(tmp_path):
    study = tiny_study(tmp_path, n_real=6, per_ckpt=5, reject_every=10)
    spec = survey.build_pack(study, tmp_path / "pack", checkpoints=CKPTS, count=2, seed=3, size=32)
    return study, spec, tmp_path


def _count(study, table):
    return study.store.scalar(f"SELECT count(*) FROM {table}")


# Written by hand after ropensci/qualtRics tests/testthat/files/sample.csv (a German-language export):
# localised row 2, ImportIds with a time zone, display-order column, columns not in pack order.
CURRENT = """\
StartDate,EndDate,Status,IPAddress,Progress,Duration (in seconds),Finished,RecordedDate,ResponseId,RecipientLastName,RecipientFirstName,RecipientEmail,ExternalReference,LocationLatitude,LocationLongitude,DistributionChannel,UserLanguage,rater_code,Q02_pick,Q01_pick,Q01_rate_1,Q01_rate_2,Q01_rate_3,Q01_rate_4,Q02_rate_1,Q02_rate_2,Q02_rate_3,Q02_rate_4,Q01_pick_DO
Anfangsdatum,Enddatum,Antworttyp,IP-Adresse,Aktueller Stand,Dauer (in Sekunden),Beendet,Erfassungsdatum,Antwort-ID,Nachname des Empfängers,Vorname des Empfängers,E-Mail des Empfängers,Externe Datenreferenz,Breitengrad des Standorts,Längengrad des Standorts,Verteilungskanal,Benutzersprache,Ihr Rater-Code,Quartett 2: Welches Bild ist echt?,Quartett 1: Welches Bild ist echt?,Wie realistisch? - Bild A,Wie realistisch? - Bild B,Wie realistisch? - Bild C,Wie realistisch? - Bild D,Wie realistisch? - Bild A,Wie realistisch? - Bild B,Wie realistisch? - Bild C,Wie realistisch? - Bild D,Anzeigereihenfolge
"{""ImportId"":""startDate"",""timeZone"":""Europe/Berlin""}","{""ImportId"":""endDate"",""timeZone"":""Europe/Berlin""}","{""ImportId"":""status""}","{""ImportId"":""ipAddress""}","{""ImportId"":""progress""}","{""ImportId"":""duration""}","{""ImportId"":""finished""}","{""ImportId"":""recordedDate"",""timeZone"":""Europe/Berlin""}","{""ImportId"":""_recordId""}","{""ImportId"":""recipientLastName""}","{""ImportId"":""recipientFirstName""}","{""ImportId"":""recipientEmail""}","{""ImportId"":""externalDataReference""}","{""ImportId"":""locationLatitude""}","{""ImportId"":""locationLongitude""}","{""ImportId"":""distributionChannel""}","{""ImportId"":""userLanguage""}","{""ImportId"":""QID2_TEXT""}","{""ImportId"":""QID5""}","{""ImportId"":""QID3""}","{""ImportId"":""QID4_1""}","{""ImportId"":""QID4_2""}","{""ImportId"":""QID4_3""}","{""ImportId"":""QID4_4""}","{""ImportId"":""QID6_1""}","{""ImportId"":""QID6_2""}","{""ImportId"":""QID6_3""}","{""ImportId"":""QID6_4""}","{""ImportId"":""QID3_DO""}"
2025-02-03 10:00:00,2025-02-03 10:05:00,1,,100,300,1,2025-02-03 10:05:00,R_preview000001,,,,,,,preview,DE,team,1,1,3,3,3,3,3,3,3,3,1|2|3|4
2025-02-04 09:00:00,2025-02-04 09:31:00,0,130.92.34.66,100,1860,1,2025-02-04 09:31:00,R_aaaaaaaaaaaaaa1,,,,,47.1,7.2,anonymous,DE,R1,4,2,3,4,2,3,4,4,3,1,1|2|3|4
2025-02-04 11:00:00,2025-02-04 11:40:00,0,130.92.34.67,100,2400,1,2025-02-04 11:40:00,R_bbbbbbbbbbbbbb2,,,,,,,anonymous,DE,R2,1,3,2,2,4,3,3,3,3,3,1|2|3|4
2025-02-05 08:00:00,2025-02-05 08:10:00,0,130.92.34.68,40,600,0,2025-02-12 08:10:00,R_cccccccccccccc3,,,,,,,anonymous,DE,R3,,2,4,4,4,4,,,,,1|2|3|4
2025-02-06 08:00:00,2025-02-06 08:30:00,0,130.92.34.66,100,1800,1,2025-02-06 08:30:00,R_dddddddddddddd4,,,,,,,anonymous,DE,r1 ,3,1,1,1,1,1,1,1,1,1,1|2|3|4
"""

# Legacy (2 header rows) after qualtRics sample_legacy.csv: V1..V10, trailing empty column.
LEGACY = """\
V1,V2,V3,V4,V5,V6,V7,V8,V9,V10,rater_code,Q01_pick,Q01_rate_1,Q01_rate_2,Q01_rate_3,Q01_rate_4,Q02_pick,Q02_rate_1,Q02_rate_2,Q02_rate_3,Q02_rate_4,LocationLatitude,LocationLongitude,LocationAccuracy,
ResponseID,ResponseSet,Name,ExternalDataReference,EmailAddress,IPAddress,Status,StartDate,EndDate,Finished,Rater code,Quartet 1,Quartet 1 - Image A,Quartet 1 - Image B,Quartet 1 - Image C,Quartet 1 - Image D,Quartet 2,Quartet 2 - Image A,Quartet 2 - Image B,Quartet 2 - Image C,Quartet 2 - Image D,LocationLatitude,LocationLongitude,LocationAccuracy,
R_legacy0000001,Standard-Antwortsatz,Anonym,,,130.92.34.66,0,2017-07-18 08:28:09,2017-07-18 08:28:48,1,L1,2,3,4,2,3,4,4,3,1,1,47.115097045898,7.2315979003906,-1,
R_legacy0000002,Standard-Antwortsatz,Anonym,,,130.92.34.66,1,2017-07-18 09:28:09,2017-07-18 09:28:48,1,team,1,1,1,1,1,1,1,1,1,1,,,-1,
R_legacy0000003,Standard-Antwortsatz,Anonym,,,130.92.34.66,0,2017-07-19 08:28:09,2017-07-19 08:28:48,0,L3,2,,,,,,,,,,,,-1,
"""


def _stored(study, spec):
    picks = study.store.query("SELECT r.label, i.quartet, i.chosen_position FROM identifications i "
                              "JOIN raters r ON r.id = i.rater_id WHERE i.pack_id = ? ORDER BY 1, 2", [spec.pack_id])
    rates = study.store.query("SELECT r.label, g.quartet, g.position, g.rating FROM ratings g "
                              "JOIN raters r ON r.id = g.rater_id WHERE g.pack_id = ? ORDER BY 1, 2, 3", [spec.pack_id])
    return [tuple(p.values()) for p in picks], [tuple(r.values()) for r in rates]


def test_current_format_with_localised_labels(env):
    study, spec, tmp = env
    path = tmp / "export.csv"
    path.write_text(CURRENT, encoding="utf-8-sig")
    s = responses.import_ratings(study, path, tmp / "pack")
    assert (s["responses"], s["used"]) == (5, 2)
    assert s["excluded"]["preview"] == 1 and s["excluded"]["incomplete"] == 1
    assert s["excluded"]["duplicate_rater"] == 1  # 'r1 ' answered again after R1
    assert s["format"] == "qualtrics-3-header" and s["values"] == "numeric"
    assert s["raters"] == ["R1", "R2"] and any("R_dddddddddddddd4" in f for f in s["flags"])
    picks, rates = _stored(study, spec)
    assert picks == [("R1", 1, 2), ("R1", 2, 4), ("R2", 1, 3), ("R2", 2, 1)]
    assert [r[3] for r in rates if r[0] == "R1"] == [3, 4, 2, 3, 4, 4, 3, 1]
    flags = json.loads(study.store.scalar("SELECT flags FROM raters WHERE label = 'R1'"))
    assert flags == {"duplicate_responses": ["R_dddddddddddddd4"]}


def test_columns_matched_by_import_id_when_tags_were_renamed(env):
    study, spec, tmp = env
    lines = CURRENT.splitlines(keepends=True)
    renamed = (lines[0].replace("Q02_pick", "Q5").replace("Q01_pick,", "Q3,").replace("Q01_rate_", "Q4_")
               .replace("Q02_rate_", "Q6_").replace("Q01_pick_DO", "Q3_DO"))
    assert "Q01" not in renamed
    path = tmp / "renamed.csv"
    path.write_text(renamed + "".join(lines[1:]))
    s = responses.import_ratings(study, path, spec.pack_id)
    assert s["used"] == 2
    assert _stored(study, spec)[0] == [("R1", 1, 2), ("R1", 2, 4), ("R2", 1, 3), ("R2", 2, 1)]


def test_legacy_format(env):
    study, spec, tmp = env
    path = tmp / "legacy.csv"
    path.write_text(LEGACY)
    s = responses.import_ratings(study, path)  # newest pack by default
    assert s["format"] == "qualtrics-legacy-2-header"
    assert (s["responses"], s["used"], s["excluded"]["preview"], s["excluded"]["incomplete"]) == (3, 1, 1, 1)
    picks, rates = _stored(study, spec)
    assert picks == [("L1", 1, 2), ("L1", 2, 4)] and len(rates) == 8


@pytest.mark.parametrize("legacy", [False, True])
def test_choice_text_equals_numeric(env, legacy):
    study, spec, tmp = env
    resp = SimulatedResponse("R9", "R_zzzzzzzzzzzzzz9", picks={1: 4, 2: 1},
                             ratings={(q, p): 1 + (q + p) % 4 for q in (1, 2) for p in range(1, 5)})
    text_file = write_qualtrics_csv(tmp / "text.csv", spec, [resp], legacy=legacy, choice_text=True)
    content = text_file.read_text(encoding="utf-8-sig")
    assert "4 - fully realistic" in content and ",D," in content
    s = responses.import_ratings(study, text_file)
    assert s["values"] == "choice text" and s["used"] == 1
    stored_text = _stored(study, spec)
    study2 = tiny_study(tmp / "b", n_real=6, per_ckpt=5, reject_every=10)
    responses.import_ratings(study2, write_qualtrics_csv(tmp / "num.csv", spec, [resp], legacy=legacy),
                             tmp / "pack")  # the pack is registered into study2 from its folder
    assert _stored(study2, spec) == stored_text
    assert stored_text[0] == [("R9", 1, 4), ("R9", 2, 1)]


def test_raw_rows_are_kept_verbatim(env):
    study, spec, tmp = env
    path = tmp / "export.csv"
    path.write_text(CURRENT)
    s = responses.import_ratings(study, path)
    raw = study.store.query("SELECT row_index, data FROM raw_responses WHERE import_id = ? ORDER BY row_index",
                            [s["import_id"]])
    original = list(csv.reader(io.StringIO(CURRENT)))
    assert [json.loads(r["data"])["cells"] for r in raw] == original
    statuses = [json.loads(r["data"]).get("status") for r in raw if r["row_index"] >= 0]
    assert statuses == ["preview", "used", "used", "incomplete", "duplicate_rater"]


def test_reimport_is_idempotent_and_new_responses_add(env):
    study, spec, tmp = env
    path = tmp / "export.csv"
    path.write_text(CURRENT)
    first = responses.import_ratings(study, path)
    again = responses.import_ratings(study, path)
    assert again["already_imported_as"] == first["import_id"]
    assert _count(study, "raters") == 2 and _count(study, "rating_imports") == 1
    later = CURRENT + ("2025-02-07 08:00:00,2025-02-07 08:30:00,0,,100,1800,1,2025-02-07 08:30:00,"
                       "R_eeeeeeeeeeeeee5,,,,,,,anonymous,DE,R4,2,2,3,3,3,3,3,3,3,3,1|2|3|4\n")
    path2 = tmp / "export2.csv"
    path2.write_text(later)
    s = responses.import_ratings(study, path2)
    assert s["used"] == 1 and s["raters"] == ["R4"]
    assert s["excluded"]["already_imported"] == 2 and s["excluded"]["duplicate_rater"] == 1
    assert _count(study, "raters") == 3


def test_missing_answers_are_kept_and_flagged(env):
    study, spec, tmp = env
    resp = SimulatedResponse("R7", "R_mmmmmmmmmmmmmm7", picks={1: 2}, ratings={(1, p): 3 for p in range(1, 5)})
    s = responses.import_ratings(study, write_qualtrics_csv(tmp / "m.csv", spec, [resp]))
    assert s["used"] == 1 and any("left 5 answers empty" in f for f in s["flags"])
    assert json.loads(study.store.scalar("SELECT flags FROM raters"))["missing_answers"] == 5


def test_no_rater_code_column_uses_response_ids(env):
    study, spec, tmp = env
    rows = list(csv.reader(io.StringIO(CURRENT)))
    col = rows[0].index("rater_code")
    trimmed = [r[:col] + r[col + 1:] for r in rows]
    path = tmp / "nocode.csv"
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(trimmed)
    s = responses.import_ratings(study, path)
    assert s["used"] == 3 and s["excluded"]["duplicate_rater"] == 0
    assert any("no rater_code column" in f for f in s["flags"])


# -- wrong files -----------------------------------------------------------------------------------

def _refused(study, path, pack=None, match=""):
    with pytest.raises(CspineError, match=match):
        responses.import_ratings(study, path, pack)
    assert _count(study, "rating_imports") == 0 and _count(study, "raters") == 0
    assert _count(study, "raw_responses") == 0


def test_wrong_files_are_refused_with_a_reason(env):
    study, spec, tmp = env
    _refused(study, tmp / "pack" / "answer_key.csv", match="answer_key.csv, not a Qualtrics")
    other = tmp / "other.csv"
    other.write_text("name,score\nalice,3\n")
    _refused(study, other, match="not a Qualtrics response export")
    empty = tmp / "empty.csv"
    empty.write_text("\n")
    _refused(study, empty, match="is empty")
    utf16 = tmp / "u16.csv"
    utf16.write_bytes(CURRENT.encode("utf-16"))
    _refused(study, utf16, match="UTF-16")
    _refused(study, tmp / "missing.csv", match="cannot read")


def test_a_different_survey_is_refused(env):
    study, spec, tmp = env
    foreign = ('StartDate,Finished,ResponseId,Q1,Q2\nStart,Finished,Response ID,How old?,Why?\n'
               '"{""ImportId"":""startDate""}","{""ImportId"":""finished""}","{""ImportId"":""_recordId""}",'
               '"{""ImportId"":""QID1""}","{""ImportId"":""QID2_TEXT""}"\n2025-01-01,1,R_x,3,because\n')
    path = tmp / "foreign.csv"
    path.write_text(foreign)
    _refused(study, path, match=r"does not fit pack .*columns are missing \(Q01_pick, Q01_rate_1")


def test_a_file_from_a_bigger_pack_is_refused(env):
    study, spec, tmp = env
    big = survey.build_pack(study, tmp / "big", checkpoints=CKPTS, count=3, seed=4, size=32)
    path = write_qualtrics_csv(tmp / "big.csv", big, [SimulatedResponse("R1", "R_q", picks={1: 1, 2: 1, 3: 1})])
    _refused(study, path, spec.pack_id, match=r"quartet\(s\) \[3\] but pack .* has 2 quartets")


def test_a_value_outside_the_scale_is_refused(env):
    study, spec, tmp = env
    bad = CURRENT.replace("R1,4,2,3,4,2,3", "R1,4,2,3,7,2,3")
    path = tmp / "bad.csv"
    path.write_text(bad)
    _refused(study, path, match=r"line 5, column Q01_rate_2: '7' is not a rating 1-4")
    bad = CURRENT.replace("R2,1,3,", "R2,1,E,")
    path.write_text(bad)
    _refused(study, path, match=r"column Q01_pick: 'E' is not a choice A-D")


def test_cli_import_json(env, capsys):
    from cspine_tui.cli.main import main

    study, spec, tmp = env
    path = tmp / "export.csv"
    path.write_text(CURRENT)
    assert main(["import-ratings", "--study", str(study.root), "--pack", str(tmp / "pack"), str(path),
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"responses", "used", "excluded"} <= set(data)
    assert data["responses"] == 5 and data["used"] == 2
    assert data["excluded"]["preview"] == 1 and data["excluded"]["incomplete"] == 1
    assert main(["import-ratings", "--study", str(study.root), str(tmp / "pack" / "answer_key.csv")]) == 2
    assert "error:" in capsys.readouterr().err
