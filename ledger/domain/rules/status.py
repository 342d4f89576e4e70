"""A participant's status and flags on a clinical date (SPEC sections 2 and 6, ``status``).

:func:`summarise` reads one folded :class:`~ledger.domain.rules.corrections.ParticipantHistory`
and counts only events whose effective date is on or before the as-of date:
a participant is screened, enrolled, infused, withdrawn or dead as of that date.
Where several statuses hold, the first of ``died``, ``withdrawn``, ``completed``,
``recurrence``, ``complete_remission``, ``second_course_due``, ``treated``,
``enrolled``, ``screen_failed``, ``screened`` wins (:data:`STATUS_PRECEDENCE`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec

from ledger.domain.events import (
    ClinicalRecord,
    CMVLoadMeasured,
    EnrollmentRefused,
    MSCInfused,
    ParticipantDied,
    ParticipantEnrolled,
    ParticipantScreened,
    ParticipantWithdrew,
)
from ledger.domain.protocol import Protocol
from ledger.domain.rules.corrections import ParticipantHistory
from ledger.domain.rules.eligibility import enrollment_failures, screen_failures
from ledger.domain.rules.remission import RemissionOutcome, participant_remission, remission_changes
from ledger.domain.rules.safety import late_sae_reports
from ledger.domain.rules.treatment import (
    course_deviation,
    day_count_changes,
    dose_deviation,
    follow_up_closed,
    second_course_due,
)

STATUS_PRECEDENCE: tuple[str, ...] = (
    "died",
    "withdrawn",
    "completed",
    "recurrence",
    "complete_remission",
    "second_course_due",
    "treated",
    "enrolled",
    "screen_failed",
    "screened",
)
FLAGS: tuple[str, ...] = (
    "dose_deviation",
    "course_deviation",
    "late_sae_report",
    "eligibility_deviation",
)


class StatusRow(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """The seven fields of one participant's SPEC section 6 ``status`` row (what the read model keeps)."""

    participant: str
    site: str
    status: str
    courses: int
    first_infusion: dt.date | None
    cr_date: dt.date | None
    flags: tuple[str, ...]

    @property
    def row(self) -> StatusRow:
        """The seven fields alone (of a :class:`ParticipantStatus`, the ``status`` row in it)."""
        return StatusRow(*(getattr(self, name) for name in StatusRow.__struct_fields__))

    def to_json(self) -> dict[str, Any]:
        """The row as ``status --json`` prints it: dates as ISO strings, flags as a list."""
        return {
            "participant": self.participant,
            "site": self.site,
            "status": self.status,
            "courses": self.courses,
            "first_infusion": _iso(self.first_infusion),
            "cr_date": _iso(self.cr_date),
            "flags": list(self.flags),
        }


class ParticipantStatus(StatusRow, frozen=True, kw_only=True):
    """One participant on a clinical date.

    The :class:`StatusRow` (the SPEC section 6 ``status`` row, see
    :meth:`~StatusRow.to_json`), then the dates endpoints and reports need.
    ``course_dates`` are the infusion dates in course order (infusion-date
    order, ties by ledger position); ``first_infusion`` is day 1;
    ``screen_failures`` the failed criteria behind ``screen_failed``.
    """

    screened: dt.date
    enrolled: dt.date | None
    died: dt.date | None
    withdrawn: dt.date | None
    course_dates: tuple[dt.date, ...]
    remission: RemissionOutcome
    screen_failures: tuple[str, ...]

    @property
    def recurrence(self) -> dt.date | None:
        """Sample date of the first positive result after the CR date."""
        return self.remission.recurrence


def _iso(date: dt.date | None) -> str | None:
    return None if date is None else date.isoformat()


def summarise(history: ParticipantHistory, as_of: dt.date, protocol: Protocol) -> ParticipantStatus | None:
    """Status, course count, day 1, CR date and flags of one participant on ``as_of``.

    Returns None when the participant has no screening record effective on or
    before ``as_of`` (SPEC section 6 lists only participants screened by then).
    ``screen_failed`` holds when the screening record fails a criterion on its
    own (:func:`~ledger.domain.rules.eligibility.screen_failures`) or an ``EnrollmentRefused``
    (the recorded screen failure, SPEC section 2) is effective by ``as_of``;
    a later successful enrollment outranks it.
    The latest screening record (effective date, then position) is the one
    that counts; the first enrollment, death and withdrawal count.
    """
    screenings = history.as_of(ParticipantScreened, as_of)
    if not screenings:
        return None
    screening: ParticipantScreened = screenings[-1].record  # type: ignore[assignment]
    enrollments = history.as_of(ParticipantEnrolled, as_of)
    infusions = history.as_of(MSCInfused, as_of)
    deaths = history.as_of(ParticipantDied, as_of)
    withdrawals = history.as_of(ParticipantWithdrew, as_of)

    course_dates = tuple(event.effective for event in infusions)
    day1 = course_dates[0] if course_dates else None
    outcome = participant_remission(history, day1, as_of, protocol)
    failures = list(screen_failures(screening, protocol))
    for refusal in history.as_of(EnrollmentRefused, as_of):
        for criterion in refusal.record.criteria:  # type: ignore[attr-defined]
            if criterion not in failures:
                failures.append(criterion)

    flags: list[str] = []
    if any(dose_deviation(event.record.cells_per_kg, protocol) for event in infusions):  # type: ignore[attr-defined]
        flags.append("dose_deviation")
    if course_deviation(course_dates, outcome.cr_date, protocol):
        flags.append("course_deviation")
    if late_sae_reports(history, as_of, protocol):
        flags.append("late_sae_report")
    if enrollments and enrollment_failures(screening, enrollments[0].record, protocol):  # type: ignore[arg-type]
        flags.append("eligibility_deviation")

    status = _status(
        as_of=as_of,
        day1=day1,
        courses=len(course_dates),
        outcome=outcome,
        died=bool(deaths),
        withdrawn=bool(withdrawals),
        enrolled=bool(enrollments),
        screen_failed=bool(failures),
        protocol=protocol,
    )
    return ParticipantStatus(
        participant=history.participant,
        site=screening.site,
        status=status,
        courses=len(course_dates),
        first_infusion=day1,
        cr_date=outcome.cr_date,
        flags=tuple(flags),
        screened=screening.effective,
        enrolled=enrollments[0].effective if enrollments else None,
        died=deaths[0].effective if deaths else None,
        withdrawn=withdrawals[0].effective if withdrawals else None,
        course_dates=course_dates,
        remission=outcome,
        screen_failures=tuple(failures),
    )


def status_changes(history: ParticipantHistory, protocol: Protocol) -> set[dt.date]:
    """The clinical dates on which :func:`summarise` may change its answer as the as-of date moves.

    :func:`summarise` reads only the events effective on or before the as-of
    date, and the as-of date itself only to count study days; so its answer
    (and every endpoint computed from it and the same events) stays the same
    from one of these dates to the day before the next: the date of every
    clinical event but a CMV result, the dates on which remission may change
    (:func:`~ledger.domain.rules.remission.remission_changes`; CMV results count
    only through it), and the dates on which the study-day counts change
    (:func:`~ledger.domain.rules.treatment.day_count_changes`).  The read model
    evaluates a participant on these dates only (issue 14).
    """
    changes = {
        event.effective
        for event in history.events
        if isinstance(event.record, ClinicalRecord) and not isinstance(event.record, CMVLoadMeasured)
    }
    infusions = history.as_of(MSCInfused, dt.date.max)
    day1 = infusions[0].effective if infusions else None
    return changes | remission_changes(history, day1, protocol) | day_count_changes(day1, protocol)


def _status(
    *,
    as_of: dt.date,
    day1: dt.date | None,
    courses: int,
    outcome: RemissionOutcome,
    died: bool,
    withdrawn: bool,
    enrolled: bool,
    screen_failed: bool,
    protocol: Protocol,
) -> str:
    """The first status of :data:`STATUS_PRECEDENCE` that holds."""
    holds = {
        "died": died,
        "withdrawn": withdrawn,
        "completed": day1 is not None and follow_up_closed(day1, as_of, protocol),
        "recurrence": outcome.recurrence is not None,
        "complete_remission": outcome.cr_date is not None,
        "second_course_due": second_course_due(day1, courses, outcome.cr_date, as_of, protocol),
        "treated": courses > 0,
        "enrolled": enrolled,
        "screen_failed": screen_failed,
        "screened": True,
    }
    return next(status for status in STATUS_PRECEDENCE if holds[status])
