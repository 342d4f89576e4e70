"""Eligibility at enrollment (SPEC section 2), as a plain function of the records."""

from __future__ import annotations

import datetime as dt

from ledger.domain.events import ParticipantEnrolled, ParticipantScreened
from ledger.domain.protocol import Protocol


def failed_criteria(
    screening: ParticipantScreened,
    enrollment_date: dt.date,
    protocol: Protocol,
) -> list[str]:
    """Every eligibility criterion the screening record fails, as readable names.

    An empty list means eligible.  The names are stable identifiers followed by
    the values that failed them, e.g. ``age 12 outside 14-65``.
    """
    rules = protocol.eligibility
    failures: list[str] = []
    # The ledger holds no birth date (SPEC section 1): the age recorded at
    # screening stands for the age on the consent date.
    age = screening.age_years
    if not rules.age_min <= age <= rules.age_max:
        failures.append(f"age: {age} years on the consent date, outside {rules.age_min}-{rules.age_max}")
    if screening.refractory_cmv not in ("infection", "disease"):
        failures.append("refractory_cmv: refractory CMV infection or disease not documented")
    if screening.consent_date > enrollment_date:
        failures.append(
            f"consent_date: consent signed {screening.consent_date} after the enrollment date"
            f" {enrollment_date}"
        )
    for vital, unit in (("hr", "/min"), ("rr", "/min"), ("sbp", "mmHg"), ("dbp", "mmHg")):
        low, high = getattr(rules, vital)
        value = getattr(screening, vital)
        if not low <= value <= high:
            failures.append(f"{vital}: {value} {unit} at screening, outside {low}-{high}")
    if screening.investigator_excluded:
        failures.append("investigator_excluded: excluded by investigator decision")
    return failures


def screen_failures(screening: ParticipantScreened, protocol: Protocol) -> list[str]:
    """Criteria that already fail on the screening record alone (status ``screen_failed``).

    The consent criterion is judged against the screening date: a consent
    signed after screening cannot yet be said to fail.
    """
    return failed_criteria(screening, max(screening.effective, screening.consent_date), protocol)


def enrollment_failures(
    screening: ParticipantScreened, enrollment: ParticipantEnrolled, protocol: Protocol
) -> list[str]:
    """Criteria failed by an enrollment against its participant's screening record."""
    return failed_criteria(screening, enrollment.effective, protocol)
