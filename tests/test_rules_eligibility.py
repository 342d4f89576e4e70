"""Eligibility at enrollment and screen failure, on the rule functions themselves (SPEC section 2; issue 16).

Every criterion is asserted with its whole message, so a message naming the wrong
field, value or bound fails; the values come from the protocol under test.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from ledger.domain.events import ParticipantEnrolled, ParticipantScreened
from ledger.domain.protocol import Protocol
from ledger.domain.rules.eligibility import enrollment_failures, failed_criteria, screen_failures
from tests.builders import D0, Ledger

UNITS = {"hr": "/min", "rr": "/min", "sbp": "mmHg", "dbp": "mmHg"}


def screening(protocol: Protocol, **fields: Any) -> ParticipantScreened:
    """A screening record inside every range of ``protocol``, with ``fields`` over it."""
    rules = protocol.eligibility
    values: dict[str, Any] = {
        "age_years": rules.age_min,
        **{vital: getattr(rules, vital)[0] for vital in UNITS},
        **fields,
    }
    ledger = Ledger()
    return ledger.screen(**values).record  # type: ignore[return-value]


def test_refractory_cmv_disease_or_infection_is_eligible(protocol: Protocol) -> None:
    for documented in ("infection", "disease"):
        assert failed_criteria(screening(protocol, refractory_cmv=documented), D0, protocol) == []


def test_undocumented_refractory_cmv_is_named(protocol: Protocol) -> None:
    assert failed_criteria(screening(protocol, refractory_cmv=None), D0, protocol) == [
        "refractory_cmv: refractory CMV infection or disease not documented"
    ]


def test_every_failed_criterion_is_named_with_its_value_and_bounds(protocol: Protocol) -> None:
    rules = protocol.eligibility
    values = {vital: getattr(rules, vital)[1] + 1 for vital in UNITS}
    record = screening(
        protocol,
        age_years=rules.age_max + 1,
        refractory_cmv=None,
        consent_date=D0 + dt.timedelta(days=1),
        investigator_excluded=True,
        **values,
    )
    bounds = {vital: getattr(rules, vital) for vital in UNITS}
    assert failed_criteria(record, D0, protocol) == [
        f"age: {rules.age_max + 1} years on the consent date, outside {rules.age_min}-{rules.age_max}",
        "refractory_cmv: refractory CMV infection or disease not documented",
        f"consent_date: consent signed {D0 + dt.timedelta(days=1)} after the enrollment date {D0}",
        *(
            f"{vital}: {values[vital]} {UNITS[vital]} at screening, outside {low}-{high}"
            for vital, (low, high) in bounds.items()
        ),
        "investigator_excluded: excluded by investigator decision",
    ]


@pytest.mark.parametrize("vital", list(UNITS))
def test_a_vital_below_its_range_is_named(protocol: Protocol, vital: str) -> None:
    low, high = getattr(protocol.eligibility, vital)
    record = screening(protocol, **{vital: low - 1})
    assert failed_criteria(record, D0, protocol) == [
        f"{vital}: {low - 1} {UNITS[vital]} at screening, outside {low}-{high}"
    ]


def test_age_below_the_range_is_named(protocol: Protocol) -> None:
    rules = protocol.eligibility
    record = screening(protocol, age_years=rules.age_min - 1)
    assert failed_criteria(record, D0, protocol) == [
        f"age: {rules.age_min - 1} years on the consent date, outside {rules.age_min}-{rules.age_max}"
    ]


def test_screen_failure_judges_consent_against_the_screening_date(protocol: Protocol) -> None:
    signed_later = screening(protocol, effective=D0, consent_date=D0 + dt.timedelta(days=2))
    assert screen_failures(signed_later, protocol) == []
    enrolled_on = D0 + dt.timedelta(days=1)
    enrollment = ParticipantEnrolled(participant="NFH-001", effective=enrolled_on, weight_kg=60.0)
    assert enrollment_failures(signed_later, enrollment, protocol) == [
        f"consent_date: consent signed {D0 + dt.timedelta(days=2)} after the enrollment date"
        f" {D0 + dt.timedelta(days=1)}"
    ]
    excluded = screening(protocol, investigator_excluded=True)
    assert screen_failures(excluded, protocol) == ["investigator_excluded: excluded by investigator decision"]
