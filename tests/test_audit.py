"""The audit trail (SPEC section 5, ``audit``): every event and correction, in recorded order.

A small trial with a known history is recorded through :meth:`TrialLedger.record`
with a fixed clock (one hour between writes), by several users, with two
successive corrections of one infusion, a correction of a date, a void, a
refused enrollment and a withdrawal.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import msgspec
import pytest
from click.testing import CliRunner

from cli import main
from ledger.application.audit import Filters, ledger_trail, trail
from ledger.application.trial_ledger import TrialLedger
from ledger.domain.errors import Refused
from ledger.domain.events import Record, decode_line

T0 = dt.datetime(2015, 3, 1, 8, 0, tzinfo=dt.UTC)


def at(hours: int) -> dt.datetime:
    """The time of the ``hours``-th write (the clock ticks one hour a write)."""
    return T0 + dt.timedelta(hours=hours)


def _line(**fields: Any) -> Record:
    return decode_line(json.dumps(fields))


def screening(code: str, **fields: Any) -> Record:
    values = {
        "type": "ParticipantScreened", "participant": code, "site": code.split("-")[0],
        "effective": "2015-02-01", "age_years": 40, "sex": "F", "refractory_cmv": "infection",
        "consent_date": "2015-02-01", "consent_by": "participant", "hr": 80, "rr": 16, "sbp": 120, "dbp": 75,
    }  # fmt: skip
    return _line(**{**values, **fields})


def build(store: str) -> TrialLedger:
    """The history; writes are numbered by the hour they happen at (see :func:`at`)."""
    ticks = iter(range(1, 100))
    ledger = TrialLedger(store, clock=lambda: at(next(ticks)))
    ledger.record(  # 1: positions 1-3
        [
            screening("NFH-001"),
            _line(type="ParticipantEnrolled", participant="NFH-001", effective="2015-02-03", weight_kg=60.0),
            _line(type="MSCInfused", id="inf-1", participant="NFH-001", effective="2015-02-04", course=1,
                  cells_per_kg=1000000),
        ],
        user="nfh.chen",
    )  # fmt: skip
    ledger.record(  # 2: position 4
        [_line(type="CMVLoadMeasured", id="cmv-1", participant="NFH-001", effective="2015-02-10",
               specimen="plasma", assay="COBAS", lloq_iu_ml=137, result="quantified", value_iu_ml=5000)],
        user="nfh.wu",
    )  # fmt: skip
    ledger.record(  # 3: position 5
        [_line(type="EventCorrected", target="inf-1", changes={"cells_per_kg": 1100000},
               reason="SDV: pharmacy log")],
        user="monitor.zhao",
    )  # fmt: skip
    ledger.record(  # 4: position 6
        [_line(type="EventCorrected", target="inf-1", changes={"cells_per_kg": 1050000, "lot": "L-7"},
               reason="SDV: second look")],
        user="monitor.zhao",
    )  # fmt: skip
    ledger.record(  # 5: position 7
        [_line(type="EventVoided", target="cmv-1", reason="entered in error")], user="nfh.wu"
    )
    ledger.record([screening("AMMS-002", age_years=80)], user="amms.li")  # 6: position 8
    with pytest.raises(Refused):  # 7: position 9, the refusal is recorded
        ledger.record(
            [_line(type="ParticipantEnrolled", participant="AMMS-002", effective="2015-02-03", weight_kg=70)],
            user="amms.li",
            record_refusal=True,
        )
    ledger.record(  # 8: position 10
        [_line(type="ParticipantWithdrew", participant="NFH-001", effective="2015-02-20",
               reason="consent withdrawn")],
        user="nfh.chen",
    )  # fmt: skip
    ledger.record(  # 9: position 11
        [_line(type="EventCorrected", target="NFH-001#2", changes={"effective": "2015-02-02"},
               reason="date on the CRF")],
        user="monitor.zhao",
    )  # fmt: skip
    return ledger


@pytest.fixture
def ledger(store_url: str) -> TrialLedger:
    return build(store_url)


def audit(store: str, *args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(main, ["--store", store, "audit", *args, "--json"])
    return result.exit_code, json.loads(result.stdout) if result.stdout else {}


def by_position(data: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {row["position"]: row for row in data["entries"]}


def test_every_event_in_recorded_order_with_who_where_when(ledger: TrialLedger) -> None:
    code, data = audit(ledger.store)
    assert code == 0
    rows = data["entries"]
    assert [row["position"] for row in rows] == list(range(1, 12))
    assert data["count"] == 11
    first = rows[0]
    assert first["type"] == "ParticipantScreened" and first["kind"] == "event"
    assert (first["participant"], first["site"], first["user"]) == ("NFH-001", "NFH", "nfh.chen")
    assert first["recorded_at"] == "2015-03-01T09:00:00Z"
    assert first["effective"] == "2015-02-01"
    assert first["values"]["age_years"] == 40
    assert [row["recorded_at"] for row in rows] == sorted(row["recorded_at"] for row in rows)
    assert {row["user"] for row in rows} == {"nfh.chen", "nfh.wu", "monitor.zhao", "amms.li"}


def test_corrections_show_old_and_new_values_after_earlier_corrections(ledger: TrialLedger) -> None:
    rows = by_position(audit(ledger.store, "NFH-001")[1])
    first, second = rows[5], rows[6]
    assert first["kind"] == "correction" and first["target"] == "inf-1"
    assert first["target_type"] == "MSCInfused"
    assert first["changes"] == [{"field": "cells_per_kg", "old": 1000000.0, "new": 1100000.0}]
    assert first["reason"] == "SDV: pharmacy log" and first["user"] == "monitor.zhao"
    assert first["effective"] == "2015-02-04"
    assert second["changes"] == [
        {"field": "cells_per_kg", "old": 1100000.0, "new": 1050000.0},
        {"field": "lot", "old": None, "new": "L-7"},
    ]
    infusion = rows[3]
    assert infusion["status"] == "corrected"
    assert infusion["corrected_by"] == ["NFH-001#5", "NFH-001#6"]
    assert infusion["values"]["cells_per_kg"] == 1000000.0  # the original stays readable


def test_a_corrected_date_shows_old_and_new_and_the_new_effective_date(ledger: TrialLedger) -> None:
    row = by_position(audit(ledger.store)[1])[11]
    assert row["changes"] == [{"field": "effective", "old": "2015-02-03", "new": "2015-02-02"}]
    assert row["effective"] == "2015-02-02"
    assert row["reason"] == "date on the CRF"


def test_voided_events_are_shown_as_voided_never_hidden(ledger: TrialLedger) -> None:
    rows = by_position(audit(ledger.store)[1])
    voided = rows[4]
    assert voided["event_id"] == "cmv-1" and voided["status"] == "voided"
    assert voided["values"]["value_iu_ml"] == 5000.0
    assert voided["voided_by"] == {
        "event_id": "NFH-001#7",
        "position": 7,
        "recorded_at": "2015-03-01T13:00:00Z",
        "user": "nfh.wu",
        "reason": "entered in error",
    }
    void = rows[7]
    assert (void["kind"], void["target"], void["target_type"]) == ("void", "cmv-1", "CMVLoadMeasured")
    assert void["reason"] == "entered in error" and void["effective"] == "2015-02-10"


def test_refused_enrollments_show_the_failed_criteria(ledger: TrialLedger) -> None:
    row = by_position(audit(ledger.store, "AMMS-002")[1])[9]
    assert row["type"] == "EnrollmentRefused"
    assert row["values"]["criteria"] and "age" in row["values"]["criteria"][0]
    assert row["reason"].startswith("not eligible: ")
    withdrawal = by_position(audit(ledger.store)[1])[10]
    assert withdrawal["reason"] == "consent withdrawn"


def test_known_at_shows_the_trail_as_it_was(ledger: TrialLedger) -> None:
    code, data = audit(ledger.store, "NFH-001", "--known-at", "2015-03-01T12:30:00Z")
    assert code == 0
    rows = by_position(data)
    assert sorted(rows) == [1, 2, 3, 4, 5, 6]
    assert rows[4]["status"] == "current" and rows[4]["voided_by"] is None
    assert rows[3]["corrected_by"] == ["NFH-001#5", "NFH-001#6"]
    assert data["known_at"] == "2015-03-01T12:30:00Z"
    earlier = by_position(audit(ledger.store, "--known-at", "2015-03-01T11:00:00+00:00")[1])
    assert sorted(earlier) == [1, 2, 3, 4, 5]
    assert earlier[3]["corrected_by"] == ["NFH-001#5"]


def test_filters_by_site_user_and_recorded_time(ledger: TrialLedger) -> None:
    amms = audit(ledger.store, "--site", "AMMS")[1]["entries"]
    assert [row["position"] for row in amms] == [8, 9]
    zhao = audit(ledger.store, "--entered-by", "monitor.zhao")[1]["entries"]
    assert [row["position"] for row in zhao] == [5, 6, 11]
    window = audit(ledger.store, "--since", "2015-03-01T11:00:00Z", "--until", "2015-03-01T14:00:00Z")[1]
    assert [row["position"] for row in window["entries"]] == [5, 6, 7, 8]
    # old values stay right when the rows before the window are not shown
    assert by_position(window)[6]["changes"][0]["old"] == 1100000.0
    assert window["filters"]["since"] == "2015-03-01T11:00:00Z"
    day = audit(ledger.store, "--since", "2015-03-01", "--until", "2015-03-01")[1]
    assert day["count"] == 11


def test_the_user_filter_does_not_come_from_the_environment(
    ledger: TrialLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIAL_LEDGER_USER", "monitor.zhao")
    assert audit(ledger.store)[1]["count"] == 11


def test_a_participant_trail_is_the_trial_trail_of_that_participant(ledger: TrialLedger) -> None:
    whole = [row for row in audit(ledger.store)[1]["entries"] if row["participant"] == "NFH-001"]
    assert audit(ledger.store, "NFH-001")[1]["entries"] == whole
    assert [r.to_json() for r in ledger_trail(ledger, Filters(participant="NFH-001"))] == whole


def test_unknown_participant_is_invalid_input(ledger: TrialLedger) -> None:
    result = CliRunner().invoke(main, ["--store", ledger.store, "audit", "NFH-404"])
    assert result.exit_code == 2
    assert "NFH-404" in result.stderr


def test_human_table_marks_voided_and_corrected_events(ledger: TrialLedger) -> None:
    result = CliRunner().invoke(main, ["--store", ledger.store, "audit", "NFH-001"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    out = result.stdout
    assert "Audit trail of NFH-001" in out
    assert "VOIDED" in out and "entered in error" in out
    assert "cells_per_kg: 1100000.0 -> 1050000.0" in out
    assert "corrected by NFH-001#5, NFH-001#6" in out


def test_trail_over_entries_without_a_store() -> None:
    """The projection itself, on entries built by hand."""
    from ledger.domain.entry import Entry

    screen = msgspec.structs.replace(screening("ZSH-001"), id="s1", user="u")
    correction = _line(type="EventCorrected", id="c1", target="s1", changes={"hr": 90}, reason="typo")
    rows = trail([Entry(1, at(1), "ZSH-001", screen), Entry(2, at(2), "ZSH-001", correction)])
    assert rows[0].status == "corrected" and rows[1].changes[0].old == 80 and rows[1].changes[0].new == 90
    assert rows[1].site == "ZSH"


def test_the_ledgers_own_streams_show_in_the_trail() -> None:
    """Lock, unlock, refused attempts (stream ``TRIAL``) and users (``USERS``) are audited too."""
    from ledger.domain.entry import Entry
    from ledger.domain.events import ActionRefused, DatabaseLocked, UserRegistered, convert

    screen = msgspec.structs.replace(screening("NFH-001"), id="NFH-001#1", user="nfh.chen")
    user = convert(
        {"id": "USERS#1", "user": "dm.sun", "name": "nfh.chen", "full_name": "Chen Li", "role": "site_staff",
         "user_site": "NFH", "public_key": "ab" * 32},
        UserRegistered,
    )  # fmt: skip
    lock = convert({"id": "TRIAL#1", "user": "dm.sun", "reason": "interim analysis"}, DatabaseLocked)
    refused = convert(
        {"id": "TRIAL#2", "user": "amms.li", "action": "append CMVLoadMeasured", "reason": "locked",
         "participant": "NFH-001"},
        ActionRefused,
    )  # fmt: skip
    entries = [
        Entry(1, at(1), "USERS", user),
        Entry(2, at(2), "NFH-001", screen),
        Entry(3, at(3), "TRIAL", lock),
        Entry(4, at(4), "TRIAL", refused),
    ]
    rows = trail(entries)
    assert [(r.stream, r.participant, r.site) for r in rows] == [
        ("USERS", None, None),
        ("NFH-001", "NFH-001", "NFH"),
        ("TRIAL", None, None),
        ("TRIAL", "NFH-001", "NFH"),
    ]
    assert rows[1].values["age_years"] == 40
    assert rows[2].reason == "interim analysis"
    assert rows[3].reason == "refused append CMVLoadMeasured: locked"
    assert [r.position for r in trail(entries, Filters(participant="NFH-001"))] == [2, 4]
    assert [r.position for r in trail(entries, Filters(user="dm.sun"))] == [1, 3]
    assert rows[0].values["public_key"] == "ab" * 32
