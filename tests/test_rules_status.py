"""Participant status, precedence and flags (SPEC sections 2 and 6, ``status``)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from ledger.domain.events import EnrollmentRefused
from ledger.domain.protocol import Protocol, load_protocol
from ledger.domain.rules.corrections import fold
from ledger.domain.rules.safety import adverse_events
from ledger.domain.rules.status import FLAGS, ParticipantStatus, summarise
from tests.builders import D0, Ledger, day, remission_days

PROTOCOL = load_protocol()


def status_of(
    ledger: Ledger, as_of: dt.date, participant: str = "NFH-001", protocol: Protocol = PROTOCOL
) -> ParticipantStatus:
    result = summarise(fold(ledger.entries)[participant], as_of, protocol)
    assert result is not None
    return result


def negatives(ledger: Ledger, last: int, protocol: Protocol) -> None:
    """The shortest negative series of ``protocol`` completing remission on study day ``last``."""
    for number in remission_days(last, protocol.remission):
        ledger.cmv(on=day(number))


def treated(protocol: Protocol = PROTOCOL, **screening: Any) -> Ledger:
    ledger = Ledger(dose=protocol.treatment.target_cells_per_kg)
    ledger.treated(**screening)
    return ledger


# -- the ladder of statuses ---------------------------------------------------------


def test_screened_enrolled_treated_as_of_dates() -> None:
    ledger = Ledger()
    ledger.screen(effective=day(-10))
    ledger.enroll(effective=day(-3))
    ledger.infuse(on=D0)
    history = fold(ledger.entries)["NFH-001"]
    assert summarise(history, day(-11), PROTOCOL) is None
    assert status_of(ledger, day(-10)).status == "screened"
    assert status_of(ledger, day(-3)).status == "enrolled"
    row = status_of(ledger, D0)
    assert (row.status, row.courses, row.first_infusion) == ("treated", 1, D0)
    assert row.to_json() == {
        "participant": "NFH-001",
        "site": "NFH",
        "status": "treated",
        "courses": 1,
        "first_infusion": D0.isoformat(),
        "cr_date": None,
        "flags": [],
    }


def test_second_course_due_from_day_15(protocol: Protocol) -> None:
    due = protocol.treatment.second_course_from_day
    ledger = treated(protocol)
    assert status_of(ledger, day(due - 1), protocol=protocol).status == "treated"
    assert status_of(ledger, day(due), protocol=protocol).status == "second_course_due"
    ledger.infuse(on=day(due + 1), course=2)
    assert status_of(ledger, day(due), protocol=protocol).status == "second_course_due"
    row = status_of(ledger, day(due + 1), protocol=protocol)
    assert (row.status, row.courses, row.flags) == ("treated", 2, ())


def test_cr_by_day_14_means_no_second_course(protocol: Protocol) -> None:
    due = protocol.treatment.second_course_from_day
    ledger = treated(protocol)
    negatives(ledger, due - 1, protocol)
    assert status_of(ledger, day(due), protocol=protocol).status == "complete_remission"
    assert status_of(ledger, day(due), protocol=protocol).cr_date == day(due - 1)


def test_cr_after_day_14_ends_second_course_due(protocol: Protocol) -> None:
    due = protocol.treatment.second_course_from_day
    ledger = treated(protocol)
    negatives(ledger, due, protocol)
    assert status_of(ledger, day(due - 1), protocol=protocol).status == "treated"
    assert status_of(ledger, day(due), protocol=protocol).status == "complete_remission"
    ledger2 = treated(protocol)
    negatives(ledger2, due + 1, protocol)
    assert status_of(ledger2, day(due), protocol=protocol).status == "second_course_due"
    assert status_of(ledger2, day(due + 1), protocol=protocol).status == "complete_remission"


def test_recurrence_and_completed_window(protocol: Protocol) -> None:
    window = protocol.follow_up.window_days
    ledger = treated(protocol)
    negatives(ledger, 10, protocol)
    ledger.cmv(on=day(100), result="quantified")
    assert status_of(ledger, day(99), protocol=protocol).status == "complete_remission"
    assert status_of(ledger, day(100), protocol=protocol).status == "recurrence"
    assert status_of(ledger, day(100), protocol=protocol).cr_date == day(10)  # CR still achieved
    assert status_of(ledger, day(100), protocol=protocol).recurrence == day(100)
    assert status_of(ledger, day(window), protocol=protocol).status == "recurrence"
    assert status_of(ledger, day(window + 1), protocol=protocol).status == "completed"


def test_completed_from_day_366_without_cr(protocol: Protocol) -> None:
    window = protocol.follow_up.window_days
    ledger = treated(protocol)
    ledger.infuse(on=day(protocol.treatment.second_course_from_day), course=2)
    assert status_of(ledger, day(window), protocol=protocol).status == "treated"
    assert status_of(ledger, day(window + 1), protocol=protocol).status == "completed"


@pytest.mark.parametrize("event", ["death", "withdraw"])
def test_death_and_withdrawal_outrank_everything(event: str) -> None:
    ledger = treated()
    ledger.cmv(on=day(3))
    ledger.cmv(on=day(8))
    getattr(ledger, event)(on=day(30))
    expected = "died" if event == "death" else "withdrawn"
    assert status_of(ledger, day(29)).status == "complete_remission"
    assert status_of(ledger, day(30)).status == expected
    assert status_of(ledger, day(400)).status == expected  # also beyond the window


def test_died_outranks_withdrawn() -> None:
    ledger = treated()
    ledger.withdraw(on=day(20))
    ledger.death(on=day(40))
    row = status_of(ledger, day(40))
    assert (row.status, row.withdrawn, row.died) == ("died", day(20), day(40))
    assert status_of(ledger, day(39)).status == "withdrawn"


def test_withdrawal_before_infusion() -> None:
    ledger = Ledger()
    ledger.screen()
    ledger.enroll()
    ledger.withdraw(on=day(-1))
    assert status_of(ledger, day(10)).status == "withdrawn"


def test_voided_death_counts_nowhere() -> None:
    ledger = treated()
    death = ledger.death(on=day(20))
    ledger.void(death)
    assert status_of(ledger, day(30)).status == "second_course_due"
    assert status_of(ledger, day(30)).died is None


# -- screen failures -----------------------------------------------------------------


def _bounds(protocol: Protocol) -> dict[str, tuple[int, int]]:
    rules = protocol.eligibility
    return {
        "age_years": (rules.age_min, rules.age_max),
        "hr": rules.hr,
        "rr": rules.rr,
        "sbp": rules.sbp,
        "dbp": rules.dbp,
    }


@pytest.mark.parametrize(
    ("field", "side"),
    [(f, side) for f in ("age_years", "hr", "rr", "sbp", "dbp") for side in ("below", "above")]
    + [("refractory_cmv", None), ("investigator_excluded", None)],
)
def test_each_failed_criterion_gives_screen_failed(protocol: Protocol, field: str, side: str | None) -> None:
    if side is None:
        value: Any = None if field == "refractory_cmv" else True
    else:
        low, high = _bounds(protocol)[field]
        value = low - 1 if side == "below" else high + 1
    ledger = Ledger()
    ledger.screen(**{field: value})
    row = status_of(ledger, D0, protocol=protocol)
    assert row.status == "screen_failed"
    assert len(row.screen_failures) == 1
    assert row.screen_failures[0].split(":")[0] == field.replace("_years", "")


@pytest.mark.parametrize(
    ("field", "side"), [(f, side) for f in ("age_years", "hr", "rr", "sbp", "dbp") for side in (0, 1)]
)
def test_boundaries_are_eligible(protocol: Protocol, field: str, side: int) -> None:
    bounds = _bounds(protocol)
    middle = {name: (low + high) // 2 for name, (low, high) in bounds.items()}
    ledger = Ledger()
    ledger.screen(**{**middle, field: bounds[field][side]})
    assert status_of(ledger, D0, protocol=protocol).status == "screened"


def test_recorded_enrollment_refusal_is_a_screen_failure() -> None:
    ledger = Ledger()
    ledger.screen(consent_date=day(5))
    ledger.add(
        EnrollmentRefused,
        "NFH-001",
        effective=day(1),
        weight_kg=60.0,
        criteria=["consent_date: consent signed after the enrollment date"],
    )
    assert status_of(ledger, day(0)).status == "screened"
    row = status_of(ledger, day(1))
    assert row.status == "screen_failed"
    assert row.screen_failures == ("consent_date: consent signed after the enrollment date",)


def test_correction_of_screening_makes_a_screen_failure() -> None:
    ledger = Ledger()
    screening = ledger.screen()
    assert status_of(ledger, D0).status == "screened"
    ledger.correct(screening, age_years=70)
    assert status_of(ledger, D0).status == "screen_failed"


# -- flags ---------------------------------------------------------------------------


def _dose(protocol: Protocol, relative: str) -> float:
    """``target * (1 + relative)``, computed in decimal as the rule reads doses."""
    target = Decimal(repr(protocol.treatment.target_cells_per_kg))
    return float(target * (1 + Decimal(relative)))


def _dose_table() -> list[tuple[str, bool]]:
    # Relative offsets from the target, as multiples of the tolerance t: "-t" is
    # the lower bound (in), "-t-0.01" just outside it.
    return [("-t-0.01", True), ("-t", False), ("0", False), ("t", False), ("t+0.01", True)]


@pytest.mark.parametrize(("offset", "flagged"), _dose_table())
def test_dose_deviation(protocol: Protocol, offset: str, flagged: bool) -> None:
    tolerance = Decimal(repr(protocol.treatment.dose_tolerance))
    relative = {
        "-t-0.01": -tolerance - Decimal("0.01"),
        "-t": -tolerance,
        "0": Decimal(0),
        "t": tolerance,
        "t+0.01": tolerance + Decimal("0.01"),
    }[offset]
    ledger = Ledger()
    ledger.screen()
    ledger.enroll()
    ledger.infuse(cells_per_kg=_dose(protocol, str(relative)))
    assert ("dose_deviation" in status_of(ledger, D0, protocol=protocol).flags) is flagged


def test_dose_deviation_on_a_later_course_and_corrected_away(protocol: Protocol) -> None:
    due = protocol.treatment.second_course_from_day
    ledger = treated(protocol)
    tolerance = Decimal(repr(protocol.treatment.dose_tolerance))
    second = ledger.infuse(on=day(due), course=2, cells_per_kg=_dose(protocol, str(tolerance * 2)))
    assert status_of(ledger, day(due - 1), protocol=protocol).flags == ()
    assert status_of(ledger, day(due), protocol=protocol).flags == ("dose_deviation",)
    ledger.correct(second, cells_per_kg=_dose(protocol, str(tolerance / 2)))
    assert status_of(ledger, day(due), protocol=protocol).flags == ()


@pytest.mark.parametrize(("offset", "flagged"), [(-1, True), (0, False), (5, False)])
def test_second_course_before_day_15(protocol: Protocol, offset: int, flagged: bool) -> None:
    due = protocol.treatment.second_course_from_day
    ledger = treated(protocol)
    ledger.infuse(on=day(due + offset), course=2)
    assert ("course_deviation" in status_of(ledger, day(due + 15), protocol=protocol).flags) is flagged


def test_second_course_after_cr_date(protocol: Protocol) -> None:
    cr_day = protocol.treatment.second_course_from_day + 2
    ledger = treated(protocol)
    negatives(ledger, cr_day, protocol)
    ledger.infuse(on=day(cr_day), course=2)  # on the CR date: allowed
    assert status_of(ledger, day(cr_day + 13), protocol=protocol).flags == ()
    other = treated(protocol)
    negatives(other, cr_day, protocol)
    other.infuse(on=day(cr_day + 1), course=2)
    assert status_of(other, day(cr_day + 13), protocol=protocol).flags == ("course_deviation",)
    # As of the CR date, before the second course, nothing to flag.
    assert status_of(other, day(cr_day), protocol=protocol).flags == ()


def test_third_course_is_a_deviation(protocol: Protocol) -> None:
    due = protocol.treatment.second_course_from_day
    most = protocol.treatment.max_courses
    ledger = treated(protocol)
    for course in range(2, most + 1):
        ledger.infuse(on=day(due + course), course=course)
    extra = due + most + 15
    ledger.infuse(on=day(extra), course=most + 1)
    assert status_of(ledger, day(extra - 1), protocol=protocol).flags == ()
    row = status_of(ledger, day(extra), protocol=protocol)
    assert (row.courses, row.flags) == (most + 1, ("course_deviation",))


def test_courses_counted_in_infusion_date_order() -> None:
    # Course 1 entered late: the infusion on day 1 is day 1 whatever its recording order.
    ledger = Ledger()
    ledger.screen()
    ledger.enroll()
    ledger.infuse(on=day(15), course=2)
    ledger.infuse(on=D0, course=1)
    row = status_of(ledger, day(20))
    assert (row.first_infusion, row.course_dates, row.flags) == (D0, (D0, day(15)), ())


@pytest.mark.parametrize(
    ("extra", "flagged"),
    [(dt.timedelta(0), False), (dt.timedelta(seconds=1), True), (dt.timedelta(hours=1), True)],
)
def test_late_sae_report(protocol: Protocol, extra: dt.timedelta, flagged: bool) -> None:
    ledger = treated(protocol)
    aware = ledger.clock
    ledger.ae(
        on=day(2),
        serious=True,
        aware_at=aware,
        recorded_at=aware + dt.timedelta(hours=protocol.safety.sae_report_hours) + extra,
    )
    assert ("late_sae_report" in status_of(ledger, day(2), protocol=protocol).flags) is flagged


def test_non_serious_ae_is_never_late() -> None:
    ledger = treated()
    aware = ledger.clock
    ledger.ae(on=day(2), aware_at=aware, recorded_at=aware + dt.timedelta(days=30))
    assert status_of(ledger, day(40)).flags == ()


@pytest.mark.parametrize(("hours", "flagged"), [(-1, False), (1, True)])
def test_late_sae_uses_entered_at(protocol: Protocol, hours: int, flagged: bool) -> None:
    # Migrated data: stored by the ledger months later, first entered at the source in time.
    ledger = treated(protocol)
    aware = dt.datetime(2015, 3, 3, 9, 0, tzinfo=dt.UTC)
    ledger.ae(
        on=day(2),
        serious=True,
        aware_at=aware,
        entered_at=aware + dt.timedelta(hours=protocol.safety.sae_report_hours + hours),
        recorded_at=aware + dt.timedelta(days=90),
    )
    assert ("late_sae_report" in status_of(ledger, day(2), protocol=protocol).flags) is flagged


def test_late_sae_when_a_correction_makes_it_serious() -> None:
    ledger = treated()
    aware = ledger.clock
    report = ledger.ae(on=day(2), aware_at=aware, recorded_at=aware + dt.timedelta(hours=1))
    ledger.correct(
        report,
        serious=True,
        criteria=["hospitalisation"],
        recorded_at=aware + dt.timedelta(hours=30),
    )
    assert "late_sae_report" in status_of(ledger, day(2)).flags


def test_timely_correction_of_another_field_keeps_the_original_time() -> None:
    ledger = treated()
    aware = ledger.clock
    report = ledger.ae(on=day(2), serious=True, aware_at=aware, recorded_at=aware + dt.timedelta(hours=2))
    ledger.correct(report, grade=3, recorded_at=aware + dt.timedelta(days=10))
    assert status_of(ledger, day(2)).flags == ()


def test_late_sae_when_an_update_makes_it_serious() -> None:
    ledger = treated()
    aware = dt.datetime(2015, 3, 3, 9, 0, tzinfo=dt.UTC)
    ledger.ae(on=day(2), aware_at=aware, recorded_at=aware + dt.timedelta(hours=1))
    # Became serious on day 10; the deadline runs from the end of day 10 (UTC).
    end_of_day_10 = dt.datetime.combine(day(11), dt.time(), tzinfo=dt.UTC)
    ledger.ae_update(
        on=day(10),
        serious=True,
        criteria=["hospitalisation"],
        grade=3,
        recorded_at=end_of_day_10 + dt.timedelta(hours=23),
    )
    assert status_of(ledger, day(10)).flags == ()
    ledger.ae_update(
        ae_id="AE1", on=day(20), serious=False, recorded_at=end_of_day_10 + dt.timedelta(days=11)
    )
    ledger.ae_update(
        on=day(30),
        serious=True,
        criteria=["life_threatening"],
        recorded_at=dt.datetime.combine(day(31), dt.time(), tzinfo=dt.UTC) + dt.timedelta(hours=25),
    )
    assert status_of(ledger, day(29)).flags == ()
    assert status_of(ledger, day(30)).flags == ("late_sae_report",)
    ae = adverse_events(fold(ledger.entries)["NFH-001"], day(30))[0]
    assert (ae.serious, ae.criteria, ae.grade) == (True, ("life_threatening",), 3)


def test_eligibility_deviation() -> None:
    ledger = Ledger()
    ledger.screen(age_years=70)
    ledger.enroll(deviation="enrolled in 2014 before the age limit was checked")
    ledger.infuse()
    row = status_of(ledger, D0)
    assert (row.status, row.flags) == ("treated", ("eligibility_deviation",))
    # Enrolled on day -2 (D0 - 3 days): enrolled outranks screen_failed.
    assert status_of(ledger, day(-2)).status == "enrolled"
    assert status_of(ledger, day(-3)).status == "screen_failed"


def test_enrollment_with_deviation_but_eligible_is_not_flagged() -> None:
    ledger = Ledger()
    ledger.screen()
    ledger.enroll(deviation="late data entry")
    assert status_of(ledger, D0).flags == ()


def test_consent_after_enrollment_is_an_eligibility_deviation() -> None:
    ledger = Ledger()
    ledger.screen(consent_date=day(-1))
    ledger.enroll(effective=day(-3), deviation="consent form found later")
    row = status_of(ledger, D0)
    assert row.flags == ("eligibility_deviation",)
    assert row.status == "enrolled"


def test_flags_are_listed_in_a_fixed_order() -> None:
    ledger = Ledger()
    ledger.screen(hr=120)
    ledger.enroll(deviation="historical")
    ledger.infuse(cells_per_kg=2.0e6)
    ledger.infuse(on=day(3), course=2)
    aware = ledger.clock
    ledger.ae(on=day(4), serious=True, aware_at=aware, recorded_at=aware + dt.timedelta(days=3))
    flags = status_of(ledger, day(5)).flags
    assert flags == ("dose_deviation", "course_deviation", "late_sae_report", "eligibility_deviation")
    assert flags == FLAGS  # the order the report lists them in
