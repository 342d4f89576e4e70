"""The write-side rules without a store (SPEC sections 2 and 6; issue 13 item 5, issue 11 item 6).

:func:`~ledger.domain.rules.ordering.check_clinical` is called on a
:class:`~ledger.domain.rules.ordering.Chart` built from records, as the
aggregate and the bulk import call it; boundaries are table-driven.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from ledger.domain.errors import Ineligible, InvalidInput
from ledger.domain.events import (
    ActionRefused,
    EnrollmentRefused,
    EventCorrected,
    EventVoided,
    InvalidRecord,
    MSCInfused,
    Record,
    RecordSigned,
)
from ledger.domain.protocol import Protocol, load_protocol
from ledger.domain.rules.corrections import amendable, corrected
from ledger.domain.rules.ordering import Chart, check_clinical, day_start
from ledger.domain.rules.sites import site_of
from tests.builders import D0, Ledger, day

PROTOCOL = load_protocol()
AT = dt.datetime(2016, 1, 1, 12, 0, tzinfo=dt.UTC)  # when the new record is written
SECOND = dt.timedelta(seconds=1)


def chart_of(ledger: Ledger) -> Chart:
    chart = Chart()
    for entry in ledger.entries:
        chart.records[entry.record.id or ""] = entry.record  # type: ignore[assignment]
    return chart


def treated() -> Ledger:
    ledger = Ledger()
    ledger.treated()
    return ledger


def check(ledger: Ledger, make: Callable[[Ledger], Any], protocol: Protocol = PROTOCOL) -> str | None:
    """Add one record with ``make`` (a builder call), check it against the chart before it."""
    before = chart_of(ledger)
    record = make(ledger).record
    try:
        check_clinical(before, record, protocol, AT)
    except InvalidInput as exc:
        return str(exc)
    return None


def withdrawn(on: dt.date) -> Ledger:
    ledger = treated()
    ledger.withdraw(on=on)
    return ledger


def died(on: dt.date) -> Ledger:
    ledger = treated()
    ledger.death(on=on)
    return ledger


CASES: list[tuple[str, Callable[[], Ledger], Callable[[Ledger], Any], str | None]] = [
    (
        "infusion on the withdrawal day",
        lambda: withdrawn(day(20)),
        lambda x: x.infuse(on=day(20), course=2),
        None,
    ),
    (
        "infusion the day after the withdrawal",
        lambda: withdrawn(day(20)),
        lambda x: x.infuse(on=day(21), course=2),
        f"NFH-001: effective: infusion on {day(21)} after the withdrawal on {day(20)}"
        " (rule no_infusion_after_exit)",
    ),
    ("infusion on the death day", lambda: died(day(20)), lambda x: x.infuse(on=day(20), course=2), None),
    (
        "infusion the day after the death",
        lambda: died(day(20)),
        lambda x: x.infuse(on=day(21), course=2),
        f"NFH-001: effective: infusion on {day(21)} after the death on {day(20)}"
        " (rule no_infusion_after_exit)",
    ),
    (
        "a second withdrawal",
        lambda: withdrawn(day(20)),
        lambda x: x.withdraw(on=day(20)),
        f"NFH-001: type: already withdrawn on {day(20)} (NFH-001#4) (rule single_withdrawal)",
    ),
    (
        "a withdrawal the day before an infusion",
        treated,
        lambda x: x.withdraw(on=D0 - dt.timedelta(days=1)),
        f"NFH-001: effective: infusion on {D0} after the withdrawal on {day(0)}"
        " (rule no_infusion_after_exit)",
    ),
    ("a withdrawal on the infusion day", treated, lambda x: x.withdraw(on=D0), None),
    ("a death on the day of the last event", treated, lambda x: x.death(on=D0), None),
    (
        "a death the day before the last event",
        treated,
        lambda x: x.death(on=day(0)),
        f"NFH-001: effective: death date before events dated {D0}",
    ),
    (
        "an event the day after the death",
        lambda: died(day(20)),
        lambda x: x.cmv(on=day(21)),
        f"NFH-001: effective: {day(21)} is after the death on {day(20)}",
    ),
    ("an event on the death day", lambda: died(day(20)), lambda x: x.cmv(on=day(20)), None),
    (
        "infusion the day before enrollment",
        lambda: _enrolled(D0),
        lambda x: x.infuse(on=day(0)),
        f"NFH-001: effective: infusion before enrollment ({D0})",
    ),
    ("infusion on the enrollment day", lambda: _enrolled(D0), lambda x: x.infuse(on=D0), None),
    (
        "a course number twice",
        treated,
        lambda x: x.infuse(on=day(20), course=1),
        "NFH-001: course: course 1 already recorded (NFH-001#3)",
    ),
    ("a clinical date of today", treated, lambda x: x.cmv(on=AT.date()), None),
    (
        "a clinical date of tomorrow",
        treated,
        lambda x: x.cmv(on=AT.date() + dt.timedelta(days=1)),
        f"NFH-001: effective: {AT.date() + dt.timedelta(days=1)} is in the future",
    ),
    (
        "an AE update the day before the onset",
        lambda: _with_ae(day(5)),
        lambda x: x.ae_update(on=day(4), grade=3),
        f"NFH-001: effective: update before the AE onset {day(5)}",
    ),
    (
        "an AE update on the onset day",
        lambda: _with_ae(day(5)),
        lambda x: x.ae_update(on=day(5), grade=3),
        None,
    ),
    (
        "an AE downgrade without criteria (criteria cleared)",
        lambda: _with_ae(day(5), serious=True),
        lambda x: x.ae_update(on=day(6), serious=False),
        None,
    ),
    (
        "an AE made serious without criteria",
        lambda: _with_ae(day(5)),
        lambda x: x.ae_update(on=day(6), serious=True),
        "NFH-001: AE AE1 after update: a serious adverse event needs at least one seriousness criterion"
        " - at `$.criteria`",
    ),
    (
        "an earlier-dated update that leaves a later one invalid",
        lambda: _with_ae(day(5), serious=True, updates=[{"on": day(8), "grade": 5, "criteria": ["death"]}]),
        lambda x: x.ae_update(on=day(6), serious=False),
        "NFH-001: AE AE1 after update: must be empty when the adverse event is not serious - at `$.criteria`",
    ),
]


def _enrolled(on: dt.date) -> Ledger:
    ledger = Ledger()
    ledger.screen()
    ledger.enroll(effective=on)
    return ledger


def _with_ae(onset: dt.date, serious: bool = False, updates: list[dict[str, Any]] | None = None) -> Ledger:
    ledger = treated()
    ledger.ae(on=onset, serious=serious, grade=3)
    for update in updates or []:
        ledger.ae_update(**update)
    return ledger


@pytest.mark.parametrize(("name", "setup", "make", "problem"), CASES, ids=[case[0] for case in CASES])
def test_order_rules(
    name: str, setup: Callable[[], Ledger], make: Callable[[Ledger], Any], problem: str | None
) -> None:
    assert check(setup(), make) == problem


# -- entered_at_bounds ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entered_at", "accepted"),
    [
        (day_start(day(3)) - SECOND, False),
        (day_start(day(3)), True),
        (dt.datetime.combine(day(3), dt.time(23, 59), tzinfo=dt.UTC), True),
        (AT, True),
        (AT + SECOND, False),
        (dt.datetime(1970, 1, 1, tzinfo=dt.UTC), False),
        (dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC), False),
    ],
)
def test_entered_at_lies_between_the_clinical_date_and_the_recording(
    entered_at: dt.datetime, accepted: bool
) -> None:
    problem = check(treated(), lambda x: x.cmv(on=day(3), entered_at=entered_at))
    if accepted:
        assert problem is None
    else:
        assert problem is not None and problem.startswith("NFH-001: entered_at: ")
        assert problem.endswith("(rule entered_at_bounds)")


def test_day_start_is_midnight_at_utc_plus_14() -> None:
    assert day_start(dt.date(2014, 1, 16)) == dt.datetime(2014, 1, 15, 10, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(("after_aware", "accepted"), [(-SECOND, False), (dt.timedelta(0), True)])
def test_an_ae_is_not_entered_before_the_site_became_aware(after_aware: dt.timedelta, accepted: bool) -> None:
    aware = dt.datetime.combine(day(3), dt.time(9), tzinfo=dt.UTC)
    problem = check(
        treated(), lambda x: x.ae(on=day(3), serious=True, aware_at=aware, entered_at=aware + after_aware)
    )
    assert (problem is None) is accepted


# -- eligibility at enrollment, under each protocol ------------------------------------


@pytest.mark.parametrize(("offset", "eligible"), [(0, True), (1, False)])
def test_enrollment_at_the_age_limit(protocol: Protocol, offset: int, eligible: bool) -> None:
    ledger = Ledger()
    ledger.screen(age_years=protocol.eligibility.age_max + offset)
    before = chart_of(ledger)
    enrollment = ledger.enroll().record
    if eligible:
        check_clinical(before, enrollment, protocol, AT)  # type: ignore[arg-type]
        return
    with pytest.raises(Ineligible) as refused:
        check_clinical(before, enrollment, protocol, AT)  # type: ignore[arg-type]
    assert [criterion.split(":")[0] for criterion in refused.value.criteria] == ["age"]


# -- corrections: what may be amended, and the one way a correction applies -------------


def test_only_clinical_import_records_are_amendable() -> None:
    ledger = treated()
    infusion = ledger.entries[-1].record
    refusal = ledger.add(EnrollmentRefused, "NFH-001", effective=D0, weight_kg=60.0, criteria=["age"]).record
    correction = ledger.add(
        EventCorrected, "NFH-001", target=infusion.id, changes={"course": 2}, reason="typo"
    ).record
    void = ledger.add(EventVoided, "NFH-001", target=infusion.id, reason="entered in error").record
    attempt = ActionRefused(action="append", reason="not permitted", user="x")
    kinds: dict[str, Record] = {
        "infusion": infusion,
        "refusal": refusal,
        "correction": correction,
        "void": void,
        "attempt": attempt,
    }
    assert {name: amendable(record) for name, record in kinds.items()} == {
        "infusion": True,
        "refusal": False,
        "correction": False,
        "void": False,
        "attempt": False,
    }
    assert not issubclass(RecordSigned, type(infusion))


def test_a_correction_keeps_the_id_and_is_revalidated() -> None:
    infusion: MSCInfused = treated().entries[-1].record  # type: ignore[assignment]
    changed = corrected(infusion, {"cells_per_kg": 2.0e6})
    assert (changed.id, changed.cells_per_kg) == (infusion.id, 2.0e6)  # type: ignore[attr-defined]
    with pytest.raises(InvalidRecord, match="cells_per_kg"):
        corrected(infusion, {"cells_per_kg": -1})


@pytest.mark.parametrize(("code", "site"), [("NFH-001", "NFH"), ("SYSU3-1234", "SYSU3"), ("A-000", "A")])
def test_site_of_a_participant_code(code: str, site: str) -> None:
    assert site_of(code) == site
