"""Adverse events after updates and the late-SAE rule, on the safety rules themselves (SPEC section 2).

Issue 16: what an update does to seriousness and criteria, an AE's outcome and
resolved date, and which updates can make an AE's report late.
"""

from __future__ import annotations

import datetime as dt

import pytest

from ledger.domain.events import AdverseEventUpdated, lenient
from ledger.domain.protocol import Protocol
from ledger.domain.rules.corrections import fold
from ledger.domain.rules.safety import adverse_events, after_update, late_sae_reports, reporting_deadline
from tests.builders import Ledger, day

AWARE = dt.datetime.combine(day(2), dt.time(9), tzinfo=dt.UTC)


def update(**fields: object) -> AdverseEventUpdated:
    return AdverseEventUpdated(participant="NFH-001", effective=day(3), ae_id="AE1", **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "after"),
    [
        ({}, (3, True, ("hospitalisation",))),
        ({"grade": 4}, (4, True, ("hospitalisation",))),
        ({"serious": True}, (3, True, ("hospitalisation",))),
        ({"serious": False}, (3, False, ())),
        ({"serious": False, "criteria": ["death"]}, (3, False, ("death",))),
        ({"criteria": ["disability", "death"]}, (3, True, ("disability", "death"))),
    ],
    ids=[
        "after_update: an update setting nothing",
        "after_update: a new grade",
        "after_update: serious again without criteria keeps them",
        "after_update: a downgrade without criteria clears them",
        "after_update: a downgrade naming criteria sets them",
        "after_update: new criteria",
    ],
)
def test_after_update(fields: dict[str, object], after: tuple[int, bool, tuple[str, ...]]) -> None:
    assert after_update(3, True, ("hospitalisation",), update(**fields)) == after


def _reported(serious: bool = False) -> Ledger:
    ledger = Ledger()
    ledger.treated()
    ledger.ae(on=day(2), serious=serious, aware_at=AWARE, recorded_at=AWARE + dt.timedelta(hours=1))
    return ledger


def test_an_ae_without_updates_has_no_outcome_and_no_resolved_date() -> None:
    [ae] = adverse_events(fold(_reported().entries)["NFH-001"], day(2))
    assert (ae.outcome, ae.resolved_date, ae.updates, ae.onset) == (None, None, (), day(2))


def test_a_late_update_of_an_ae_already_serious_does_not_make_it_late(protocol: Protocol) -> None:
    ledger = _reported(serious=True)
    ledger.ae_update(on=day(3), grade=4, recorded_at=AWARE + dt.timedelta(days=60))
    ledger.ae_update(
        on=day(4), serious=True, criteria=["disability"], recorded_at=AWARE + dt.timedelta(days=61)
    )
    assert late_sae_reports(fold(ledger.entries)["NFH-001"], day(10), protocol) == []


def test_a_late_update_that_leaves_an_ae_non_serious_does_not_make_it_late(protocol: Protocol) -> None:
    ledger = _reported()
    ledger.ae_update(on=day(3), grade=3, recorded_at=AWARE + dt.timedelta(days=60))
    ledger.ae_update(on=day(4), serious=False, recorded_at=AWARE + dt.timedelta(days=61))
    assert late_sae_reports(fold(ledger.entries)["NFH-001"], day(10), protocol) == []


def test_a_corrected_entered_at_of_the_report_is_the_time_that_counts(protocol: Protocol) -> None:
    """A migrated SAE first entered at the source late, its provenance time then corrected to timely."""
    limit = reporting_deadline(AWARE, protocol)
    assert limit == AWARE + dt.timedelta(hours=protocol.safety.sae_report_hours)
    ledger = Ledger()
    ledger.treated()
    report = ledger.ae(
        on=day(2),
        serious=True,
        aware_at=AWARE,
        entered_at=limit + dt.timedelta(hours=1),
        recorded_at=limit + dt.timedelta(days=30),
    )
    history = fold(ledger.entries)["NFH-001"]
    assert late_sae_reports(history, day(2), protocol) == ["AE1"]
    with lenient():  # a correction of provenance is refused today; one stored before is still read
        ledger.correct(report, entered_at=limit, recorded_at=limit + dt.timedelta(days=31))
    assert late_sae_reports(fold(ledger.entries)["NFH-001"], day(2), protocol) == []


def test_a_correction_making_an_ae_serious_counts_from_the_correction(protocol: Protocol) -> None:
    limit = reporting_deadline(AWARE, protocol)
    ledger = Ledger()
    ledger.treated()
    report = ledger.ae(on=day(2), aware_at=AWARE, entered_at=AWARE, recorded_at=AWARE + dt.timedelta(hours=1))
    ledger.correct(
        report, serious=True, criteria=["hospitalisation"], recorded_at=limit + dt.timedelta(seconds=1)
    )
    assert late_sae_reports(fold(ledger.entries)["NFH-001"], day(2), protocol) == ["AE1"]
