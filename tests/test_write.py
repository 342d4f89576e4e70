"""The write side on both stores: rules, eligibility, corrections, idempotent all-or-nothing imports.

SPEC sections 2, 5 and 6.  Every test here runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest

from ledger.application.trial_ledger import TrialLedger
from ledger.domain.errors import InvalidInput, Refused
from ledger.domain.events import EnrollmentRefused, ParticipantEnrolled
from tests import lines as L


def snapshot(ledger: TrialLedger) -> list[tuple[int, str, bytes]]:
    """Every stored event: position, participant and the exact stored bytes."""
    return [(n.id, str(n.originator_id), n.state) for n in ledger.recorder.select_notifications(1, 10**9)]


def store(ledger: TrialLedger, dicts: list[dict[str, Any]], user: str = "nfh.chen") -> list[str]:
    return ledger.record(L.as_lines(dicts), user=user).stored


@pytest.fixture
def ledger(store_url: str) -> TrialLedger:
    return TrialLedger(store_url)


def test_a_treated_participant_is_stored_with_user_site_and_recorded_at(ledger: TrialLedger) -> None:
    ids = store(ledger, L.treated())
    assert ids == ["NFH-001-scr", "NFH-001-enr", "NFH-001-inf1"]
    entries = list(ledger.entries())
    assert [e.record.type for e in entries] == ["ParticipantScreened", "ParticipantEnrolled", "MSCInfused"]
    assert {e.record.user for e in entries} == {"nfh.chen"}
    assert {e.record.site for e in entries} == {"NFH"}
    assert all(
        e.recorded_at.utcoffset() is not None and e.recorded_at.utcoffset().total_seconds() == 0
        for e in entries
    )
    assert [e.position for e in entries] == [1, 2, 3]


def test_events_without_client_id_get_ledger_ids(ledger: TrialLedger) -> None:
    ids = store(ledger, [L.screening(), L.enrollment()])
    assert ids == ["NFH-001#1", "NFH-001#2"]


@pytest.mark.parametrize(
    ("later", "words"),
    [
        (L.infusion(effective="2014-01-07"), "infusion before enrollment"),
        (L.infusion(course=1, id="again"), "course 1 already recorded"),
        (L.enrollment(id="twice"), "already enrolled"),
        (L.screening(id="rescreen"), "already screened"),
        (L.ae_update(ae_id="AE-9"), "no adverse event AE-9"),
        (L.cmv(participant="NFH-002"), "not screened"),
        (L.screening("XYZ-001"), "unknown site code 'XYZ'"),
        (L.cmv(effective="2999-01-01"), "in the future"),
        (L.correction("nowhere", {"weight_kg": 60}), "no event nowhere"),
        (L.correction("NFH-001-enr", {"weight_kg": -2}), "weight_kg"),
        (L.correction("NFH-001-enr", {"effective": "2014-01-01"}), "enrollment before screening"),
    ],
)
def test_rule_breaking_events_are_refused_with_exit_2_and_nothing_stored(
    ledger: TrialLedger, later: dict[str, Any], words: str
) -> None:
    store(ledger, L.treated())
    before = snapshot(ledger)
    with pytest.raises(InvalidInput) as refused:
        store(ledger, [L.cmv(id="good-cmv"), later])
    assert refused.value.exit_code == 2
    assert words in str(refused.value.problems)
    assert snapshot(ledger) == before


def test_nothing_after_death(ledger: TrialLedger) -> None:
    store(ledger, [*L.treated(), L.death(effective="2014-02-01")])
    with pytest.raises(InvalidInput, match="after the death"):
        store(ledger, [L.cmv(effective="2014-02-02")])
    store(ledger, [L.cmv(effective="2014-01-30", id="late-entered-before-death")])


def test_ineligible_enrollment_is_refused_naming_every_criterion_and_recorded(ledger: TrialLedger) -> None:
    store(ledger, [L.screening(age_years=70, hr=110, refractory_cmv=None)])
    before = snapshot(ledger)
    with pytest.raises(Refused) as refused:
        ledger.record(L.as_lines([L.enrollment()]), user="nfh.chen", record_refusal=True)
    assert refused.value.exit_code == 3
    text = str(refused.value)
    for criterion in ("age", "hr", "refractory_cmv"):
        assert f"{criterion}:" in text
    after = list(ledger.entries())
    assert len(after) == len(before) + 1
    refusal = after[-1].record
    assert isinstance(refusal, EnrollmentRefused)
    assert len(refusal.criteria) == 3


def test_an_ineligible_line_refuses_a_whole_import_with_nothing_stored(ledger: TrialLedger) -> None:
    with pytest.raises(Refused) as refused:
        store(ledger, [*L.treated("NFH-001"), L.screening("NFH-002", dbp=95), L.enrollment("NFH-002")])
    assert "line 5" in str(refused.value.problems)
    assert "dbp" in str(refused.value.problems)
    assert snapshot(ledger) == []


def test_deviation_stores_a_historical_ineligible_enrollment(ledger: TrialLedger) -> None:
    store(ledger, [L.screening(age_years=66), L.enrollment(deviation="enrolled in 2014 under waiver W-3")])
    enrolled = [e.record for e in ledger.entries() if isinstance(e.record, ParticipantEnrolled)]
    assert enrolled[0].deviation == "enrolled in 2014 under waiver W-3"


def test_corrections_and_voids_keep_the_original(ledger: TrialLedger) -> None:
    store(ledger, [*L.treated(), L.cmv(id="c1"), L.cmv(id="c2", effective="2014-01-20")])
    store(ledger, [L.correction("NFH-001-enr", {"weight_kg": 62.0}), L.void("c2")])
    records = [e.record for e in ledger.entries()]
    assert records[1].weight_kg == 61.5  # the original stays readable forever
    with pytest.raises(InvalidInput, match="voided"):
        store(ledger, [L.correction("c2", {"value_iu_ml": 10})])
    with pytest.raises(InvalidInput, match="not a correctable event"):
        store(ledger, [L.void("NFH-001#6")])


def test_reimport_is_idempotent_and_conflicting_ids_are_named(ledger: TrialLedger) -> None:
    trial = [*L.treated(), L.cmv(id="c1"), L.correction("c1", {"value_iu_ml": 5500}, id="fix1")]
    assert len(store(ledger, trial)) == 5
    before = snapshot(ledger)
    receipt = ledger.record(L.as_lines(trial), user="nfh.chen")
    assert receipt.stored == [] and len(receipt.skipped) == 5
    assert snapshot(ledger) == before
    with pytest.raises(InvalidInput, match="line 2: id: c1 is already stored with different content"):
        store(ledger, [L.cmv(id="c2"), L.cmv(id="c1", value_iu_ml=1)])
    assert snapshot(ledger) == before


def test_a_shuffled_file_imports_to_the_same_trial(store_url: str, tmp_path: Any) -> None:
    from projections.readmodel.queries import Monitor

    trial = [
        *L.treated("NFH-001"),
        L.cmv("NFH-001", id="a-c1", effective="2014-01-20", result="not_detected"),
        L.cmv("NFH-001", id="a-c2", effective="2014-01-27", result="below_lloq"),
        L.adverse_event("NFH-001", id="a-ae1"),
        L.ae_update("NFH-001", id="a-ae1u"),
        *L.treated("AMMS-001"),
        L.correction("AMMS-001-enr", {"weight_kg": 70}, id="a-fix"),
        L.death("AMMS-001", id="a-death"),
    ]
    shuffled = trial[:]
    random.Random(7).shuffle(shuffled)
    ordered = TrialLedger(store_url)
    store(ordered, trial)
    other = TrialLedger(str(tmp_path / "shuffled.db"))
    store(other, shuffled)
    assert store(other, trial) == []
    as_of = dt.date(2014, 12, 31)
    first = Monitor(ordered).status(as_of, None)["participants"]
    second = Monitor(other).status(as_of, None)["participants"]
    assert first == second
    assert {row["participant"]: row["status"] for row in first} == {
        "NFH-001": "complete_remission",
        "AMMS-001": "died",
    }


def test_user_is_required_and_site_must_be_known(ledger: TrialLedger) -> None:
    with pytest.raises(InvalidInput, match="user: required"):
        ledger.record(L.as_lines([L.screening()]), user=None)
    with pytest.raises(InvalidInput, match="site: unknown site code 'MARS'"):
        ledger.record(L.as_lines([L.enrollment()]), user="x", site="MARS")
    with pytest.raises(InvalidInput, match="reserved"):
        store(ledger, [L.screening(id="NFH-001#1")])
