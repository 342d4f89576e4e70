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
from ledger.domain.protocol import Protocol
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


def test_ineligible_enrollment_is_refused_naming_every_criterion_and_recorded(
    store_url: str, protocol: Protocol
) -> None:
    ledger = TrialLedger(store_url, protocol=protocol)
    rules = protocol.eligibility
    store(ledger, [L.screening(age_years=rules.age_max + 5, hr=rules.hr[1] + 10, refractory_cmv=None)])
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


def test_deviation_stores_a_historical_ineligible_enrollment(store_url: str, protocol: Protocol) -> None:
    ledger = TrialLedger(store_url, protocol=protocol)
    age = protocol.eligibility.age_max + 1
    store(ledger, [L.screening(age_years=age), L.enrollment(deviation="enrolled in 2014 under waiver W-3")])
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


def test_a_participant_loads_as_the_library_projects_it(ledger: TrialLedger) -> None:
    """The write path's lean load (issue 14) gives the library's aggregate: same version, chart, voids."""
    store(ledger, [*L.treated(), L.cmv(id="c1"), L.cmv(id="c2", effective="2014-01-20")])
    store(ledger, [L.correction("c1", {"value_iu_ml": 10}), L.void("c2")])
    lean, library = ledger._load("NFH-001"), ledger.repository.get("NFH-001")
    assert lean is not None
    assert (lean.version, lean.voided, list(lean.chart.records.items())) == (
        library.version,
        library.voided,
        list(library.chart.records.items()),
    )


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
    # No user given: the login (PostgreSQL) or the operating-system user (SQLite) acts (issue 12).
    assert ledger.record(L.as_lines([L.screening()]), user=None).stored
    with pytest.raises(InvalidInput, match="site: unknown site code 'MARS'"):
        ledger.record(L.as_lines([L.enrollment()]), user="x", site="MARS")
    with pytest.raises(InvalidInput, match="reserved"):
        store(ledger, [L.screening(id="NFH-001#1")])


# -- provenance and the end of participation (SPEC section 6; issue 11 item 6) ---------------


def test_the_ledgers_own_records_cannot_be_corrected_or_voided(ledger: TrialLedger) -> None:
    store(ledger, [L.screening(age_years=70)])
    with pytest.raises(Refused):
        ledger.record(L.as_lines([L.enrollment()]), user="nfh.chen", record_refusal=True)
    refusal = next(e.record for e in ledger.entries() if isinstance(e.record, EnrollmentRefused))
    before = snapshot(ledger)
    for amendment in (L.correction(refusal.id, {"weight_kg": 70}), L.void(refusal.id)):
        with pytest.raises(InvalidInput) as refused:
            store(ledger, [amendment])
        assert refused.value.exit_code == 2
        assert refused.value.problems == [
            f"line 1: NFH-001: target: {refusal.id} (EnrollmentRefused) is a record the ledger keeps itself:"
            " it cannot be corrected or voided (rule amendable_events)"
        ]
    assert snapshot(ledger) == before


@pytest.mark.parametrize(
    "amendment",
    [
        L.correction("fix1", {"reason": "again"}),
        L.void("fix1"),
        L.correction("gone", {"weight_kg": 62}),
        L.void("gone"),
        L.void("void1"),
        L.correction("void1", {"reason": "again"}),
    ],
)
def test_corrections_voids_and_voided_events_cannot_be_amended(
    ledger: TrialLedger, amendment: dict[str, Any]
) -> None:
    store(ledger, [*L.treated(), L.cmv(id="gone")])
    store(ledger, [L.correction("NFH-001-enr", {"weight_kg": 62}, id="fix1"), L.void("gone", id="void1")])
    before = snapshot(ledger)
    with pytest.raises(InvalidInput) as refused:
        store(ledger, [amendment])
    assert str(refused.value).endswith("(rule amendable_events)")
    assert snapshot(ledger) == before


@pytest.mark.parametrize(
    ("entered_at", "line"),
    [
        ("1970-01-01T00:00:00Z", L.cmv(id="c")),
        ("9999-12-31T23:59:59Z", L.cmv(id="c")),
        ("2014-01-15T09:59:59Z", L.cmv(id="c")),  # 2014-01-16 begins at 10:00 UTC at UTC+14
        ("2099-01-01T00:00:00Z", L.cmv(id="c")),  # after the time it is recorded
        ("2014-01-12T01:00:00+08:00", L.adverse_event(id="a")),  # before the site became aware
        ("1970-01-01T00:00:00Z", L.correction("NFH-001-enr", {"weight_kg": 62})),
        ("1970-01-01T00:00:00Z", L.void("NFH-001-inf1")),
    ],
)
def test_entered_at_lies_between_the_clinical_date_and_the_recording(
    ledger: TrialLedger, entered_at: str, line: dict[str, Any]
) -> None:
    store(ledger, L.treated())
    before = snapshot(ledger)
    with pytest.raises(InvalidInput) as refused:
        store(ledger, [{**line, "entered_at": entered_at}])
    assert refused.value.exit_code == 2
    [problem] = refused.value.problems
    assert problem.startswith("line 1: NFH-001: entered_at: ") and problem.endswith(
        "(rule entered_at_bounds)"
    )
    assert snapshot(ledger) == before


def test_entered_at_at_the_bounds_is_accepted(ledger: TrialLedger) -> None:
    store(ledger, L.treated())
    stored = store(
        ledger,
        [
            L.cmv(id="first-instant", entered_at="2014-01-16T00:00:00+14:00"),
            L.adverse_event(id="aware", entered_at="2014-01-12T09:30:00+08:00"),
        ],
    )
    assert sorted(stored) == ["aware", "first-instant"]


def test_an_early_entered_at_cannot_remove_a_late_sae_flag(ledger: TrialLedger) -> None:
    from projections.readmodel.queries import Monitor

    store(ledger, L.treated())
    late = L.adverse_event(
        id="sae", serious=True, criteria=["hospitalisation"], entered_at="2014-01-20T09:30:00+08:00"
    )
    with pytest.raises(InvalidInput, match="rule entered_at_bounds"):
        store(ledger, [{**late, "entered_at": "2014-01-12T09:00:00+08:00"}])
    store(ledger, [late])
    [row] = Monitor(ledger).status(dt.date(2014, 2, 1), None)["participants"]
    assert row["flags"] == ["late_sae_report"]
    with pytest.raises(InvalidInput, match="rule entered_at_bounds"):
        store(ledger, [L.correction("sae", {"aware_at": "2014-01-20T10:00:00+08:00"})])


@pytest.mark.parametrize(
    ("ending", "infused_on", "rule"),
    [
        (L.withdrawal(effective="2014-02-01"), "2014-02-02", "after the withdrawal on 2014-02-01"),
        (L.death(effective="2014-02-01"), "2014-02-02", "after the death on 2014-02-01"),
    ],
)
def test_no_infusion_after_withdrawal_or_death(
    ledger: TrialLedger, ending: dict[str, Any], infused_on: str, rule: str
) -> None:
    store(ledger, [*L.treated(), ending])
    before = snapshot(ledger)
    with pytest.raises(InvalidInput) as refused:
        store(ledger, [L.infusion(course=2, effective=infused_on)])
    assert refused.value.exit_code == 2
    assert refused.value.problems == [
        f"line 1: NFH-001: effective: infusion on {infused_on} {rule} (rule no_infusion_after_exit)"
    ]
    assert snapshot(ledger) == before
    # On the day itself the infusion may still have been given.
    store(ledger, [L.infusion(course=2, effective=ending["effective"])])


def test_a_withdrawal_dated_before_a_recorded_infusion_is_refused(ledger: TrialLedger) -> None:
    store(ledger, [*L.treated(), L.infusion(course=2, effective="2014-02-01")])
    with pytest.raises(InvalidInput) as refused:
        store(ledger, [L.withdrawal(effective="2014-01-31")])
    assert refused.value.problems == [
        "line 1: NFH-001: effective: infusion on 2014-02-01 after the withdrawal on 2014-01-31"
        " (rule no_infusion_after_exit)"
    ]


def test_a_second_withdrawal_is_refused(ledger: TrialLedger) -> None:
    store(ledger, [*L.treated(), L.withdrawal(id="w1")])
    before = snapshot(ledger)
    with pytest.raises(InvalidInput) as refused:
        store(ledger, [L.withdrawal(effective="2014-03-05")])
    assert refused.value.exit_code == 2
    assert refused.value.problems == [
        "line 1: NFH-001: type: already withdrawn on 2014-03-01 (w1) (rule single_withdrawal)"
    ]
    assert snapshot(ledger) == before


def test_a_downgrade_without_criteria_is_one_rule_on_write_and_read(ledger: TrialLedger) -> None:
    from projections.readmodel.queries import Monitor

    store(ledger, [*L.treated(), L.adverse_event(serious=True, criteria=["hospitalisation"], grade=3)])
    store(ledger, [L.ae_update(serious=False)])
    with pytest.raises(InvalidInput, match="must be empty when the adverse event is not serious"):
        store(ledger, [L.ae_update(effective="2014-01-16", serious=False, criteria=["death"])])
    secondary = Monitor(ledger).endpoints(dt.date(2014, 1, 20), None)["secondary"]
    assert (secondary["participants_with_serious_ae"], secondary["participants_with_nonserious_ae"]) == (0, 1)
