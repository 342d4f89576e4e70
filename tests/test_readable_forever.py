"""What was accepted stays readable forever (issue 11), and each record type declares itself once (issue 13).

A store written by an older, looser version may hold values today's edge
refuses: a user name with a space, control characters in free text, a value
out of today's range.  They are stored here through the real write path (the
records are built as such a version built them, without today's checks), and
every read command, the exports and a later write to the same participant
must still work, with the values shown escaped where a terminal or XML would
choke on them.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from click.testing import CliRunner
from eventsourcing.utils import get_topic
from lxml import etree

from cli import WRITE_COMMANDS as CLI_COMMANDS
from cli import main
from ledger.application.trial_ledger import TrialLedger
from ledger.domain.events import (
    IMPORT_TYPES,
    RECORD_TYPES,
    SAME_DAY_ORDER,
    STORED_TYPES,
    WRITE_COMMANDS,
    AdverseEventReported,
    ClinicalRecord,
    CMVLoadMeasured,
    EventCorrected,
    ParticipantDied,
    lenient,
)
from ledger.domain.participant import EVENT_CLASS, Participant
from ledger.storage.transcoder import decode_state
from tests import lines as L

USER = "nfh.chen"
DISEASE = ["disease", "--participant", "NFH-001", "--effective", "2014-01-20", "--status", "resolved"]
RECORDED = dt.datetime(2014, 6, 1, tzinfo=dt.UTC)


def _cli(url: str, *args: str) -> Any:
    result = CliRunner().invoke(main, [*args, "--store", url, "--user", USER], catch_exceptions=False)
    assert result.exit_code == 0, (args, result.output)
    return result


@pytest.fixture
def old_store(store_url: str) -> str:
    """A participant whose events hold values that the edge of today refuses."""
    assert (
        CliRunner()
        .invoke(main, ["import", "-", "--store", store_url, "--user", USER], input=L.jsonl(L.treated()))
        .exit_code
        == 0
    )
    ledger = TrialLedger(store_url, clock=lambda: RECORDED)
    with lenient():
        loose = [
            # A user name with a space, filled in by a version that did not check it.
            CMVLoadMeasured(
                participant="NFH-001",
                effective=dt.date(2014, 1, 16),
                specimen="plasma",
                assay="COBAS\x00TaqMan\x1b[2J",
                lloq_iu_ml=137.0,
                result="quantified",
                value_iu_ml=5400.0,
                id="NFH-001-cmv",
                user="Dr Who",
                site="NFH",
            ),
            # Control characters, a formula, a grade out of today's range, serious with no criterion.
            AdverseEventReported(
                participant="NFH-001",
                effective=dt.date(2014, 1, 12),
                ae_id="AE-1",
                term='=HYPERLINK("x")\x1b]0;owned\x07',
                category="infusion_reaction",
                grade=9,
                serious=True,
                criteria=[],
                causality="possible",
                aware_at=dt.datetime(2014, 1, 12, 1, 30, tzinfo=dt.UTC),
                id="NFH-001-ae",
                user=USER,
                site="NFH",
            ),
        ]
    for record in loose:  # each as entered by its own user, which today's fill leaves as it is
        ledger.record([record], user=record.user)
    ledger.close()
    return store_url


def test_stored_values_that_break_todays_schema_are_read_back_as_the_same_record_classes(
    old_store: str,
) -> None:
    ledger = TrialLedger(old_store)
    records = {e.record.id: e.record for e in ledger.entries()}  # type: ignore[attr-defined]
    ledger.close()
    cmv, ae = records["NFH-001-cmv"], records["NFH-001-ae"]
    assert type(cmv) is CMVLoadMeasured
    assert (cmv.user, cmv.assay) == ("Dr Who", "COBAS\x00TaqMan\x1b[2J")
    assert type(ae) is AdverseEventReported
    assert (ae.grade, ae.serious, ae.criteria) == (9, True, [])


def test_every_read_command_works_on_values_accepted_once(old_store: str, tmp_path: Path) -> None:
    as_of = ["--as-of", "2014-12-31"]
    for command in (["status", *as_of], ["endpoints", *as_of], ["audit"], ["signatures"], ["digest"]):
        _cli(old_store, *command)
        _cli(old_store, *command, "--json")
    verdict = _cli(old_store, "verify", "--json")
    assert json.loads(verdict.stdout)["ok"] is True
    audit = json.loads(_cli(old_store, "audit", "--json").stdout)
    users = {row["event_id"]: row["user"] for row in audit["entries"]}
    assert users["NFH-001-cmv"] == "Dr Who"
    shown = (
        CliRunner()
        .invoke(
            main, ["audit", "NFH-001", "--store", old_store], env={"COLUMNS": "400"}, catch_exceptions=False
        )
        .stdout
    )
    assert "\x1b" not in shown and "\x00" not in shown and "\x07" not in shown
    assert "COBAS\\x00TaqMan\\x1b[2J" in shown


def test_exports_hold_values_accepted_once_escaped(old_store: str, tmp_path: Path) -> None:
    _cli(old_store, "export", "odm", str(tmp_path / "odm.xml"))
    document = etree.parse(str(tmp_path / "odm.xml"))
    values = [item.get("Value") for item in document.iter("{*}ItemData")]
    assert "COBAS\\x00TaqMan\\x1b[2J" in values
    _cli(old_store, "export", "sdtm", str(tmp_path / "sdtm"), "--format", "csv", "--as-of", "2014-12-31")
    with (tmp_path / "sdtm" / "ae.csv").open(newline="") as file:
        (row,) = list(csv.DictReader(file))
    assert row["AETERM"] == '\'=HYPERLINK("x")\\x1b]0;owned\\x07'


def test_later_writes_to_the_participant_work(old_store: str) -> None:
    result = CliRunner().invoke(
        main,
        [*DISEASE, "--store", old_store, "--user", USER],
    )
    assert result.exit_code == 0, result.output
    correction = [
        "correct",
        "--target",
        "NFH-001-cmv",
        "--changes",
        '{"value_iu_ml": 540}',
        "--reason",
        "typo",
    ]
    result = CliRunner().invoke(main, [*correction, "--store", old_store, "--user", USER])
    # A new correction must leave a record valid today: this one keeps the stored user.
    assert result.exit_code == 2, result.output
    assert result.stderr.split(": ")[1:3] == ["NFH-001", "target.user"]
    result = CliRunner().invoke(
        main,
        ["void", "--target", "NFH-001-cmv", "--reason", "re-entered", "--store", old_store, "--user", USER],
    )
    assert result.exit_code == 0, result.output


def test_the_fast_path_decodes_valid_states_strictly() -> None:
    """Only a state that today's schema refuses takes the lenient path; a broken one still fails."""
    record = msgspec.convert(L.death(id="NFH-001-d", user=USER, site="NFH"), ParticipantDied)
    state = msgspec.msgpack.encode({"timestamp": RECORDED, "record": record})
    assert decode_state(state).record == record
    with pytest.raises(msgspec.ValidationError):
        decode_state(msgspec.msgpack.encode({"timestamp": RECORDED, "record": {"type": "ParticipantDied"}}))


# -- provenance (SPEC section 6) -------------------------------------------------------------------


@pytest.mark.parametrize("field", ["type", "id", "participant", "site", "user", "entered_at"])
def test_a_correction_cannot_name_provenance(field: str) -> None:
    line = L.correction("NFH-001-cmv", {field: "NFH" if field == "site" else "x"})
    with pytest.raises(msgspec.ValidationError) as refused:
        msgspec.convert(line, EventCorrected)
    assert str(refused.value) == f"cannot be corrected - at `$.changes.{field}`"


# -- one declaration per record type (issue 13) ----------------------------------------------------


def test_every_import_type_has_a_command_an_order_and_an_event_class() -> None:
    for record_type in IMPORT_TYPES:
        tag = record_type.__struct_config__.tag
        assert WRITE_COMMANDS[record_type.command] == tag  # type: ignore[index]
        assert CLI_COMMANDS is WRITE_COMMANDS
        assert main.commands[record_type.command].type_name == tag  # type: ignore[index, attr-defined]
        assert issubclass(EVENT_CLASS[record_type], Participant.Event)
        if issubclass(record_type, ClinicalRecord):
            assert isinstance(SAME_DAY_ORDER[tag], int)
    assert set(RECORD_TYPES.values()) == set(IMPORT_TYPES)
    assert {t for t in STORED_TYPES if t.event} == set(EVENT_CLASS)


def test_event_topics_are_the_ones_stored_and_sealed() -> None:
    """Topics are in stored events and covered by the seal: they never change."""
    names = {
        "ParticipantScreened": "Screened",
        "ParticipantEnrolled": "Enrolled",
        "MSCInfused": "Infused",
        "CMVLoadMeasured": "CMVLoadMeasured",
        "CMVDiseaseAssessed": "CMVDiseaseAssessed",
        "AdverseEventReported": "AdverseEventReported",
        "AdverseEventUpdated": "AdverseEventUpdated",
        "EnrollmentRefused": "EnrollmentRefused",
        "ParticipantWithdrew": "Withdrew",
        "ParticipantDied": "Died",
        "EventCorrected": "Corrected",
        "EventVoided": "Voided",
        "RecordSigned": "Signed",
        "AdverseEventCoded": "AdverseEventCoded",
    }
    topics = {t.__struct_config__.tag: get_topic(c) for t, c in EVENT_CLASS.items()}
    assert topics == {tag: f"ledger.domain.participant:Participant.{name}" for tag, name in names.items()}
