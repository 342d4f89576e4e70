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
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ledger.domain.events import (
    AdverseEventReported,
    AdverseEventUpdated,
    EnrollmentRefused,
    MSCInfused,
    ParticipantDied,
    ParticipantEnrolled,
    ParticipantScreened,
    ParticipantWithdrew,
)
from ledger.domain.protocol import Protocol
from ledger.domain.rules.corrections import (
    AdverseEvent,
    CurrentEvent,
    ParticipantHistory,
    adverse_events,
    apply_update,
)
from ledger.domain.rules.eligibility import enrollment_failures, screen_failures
from ledger.domain.rules.remission import RemissionOutcome, participant_remission

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


@dataclass(frozen=True, slots=True)
class ParticipantStatus:
    """One participant on a clinical date.

    The first seven fields are the SPEC section 6 ``status`` row (see
    :meth:`to_json`); the others are the dates endpoints and reports need.
    ``course_dates`` are the infusion dates in course order (infusion-date
    order, ties by ledger position); ``first_infusion`` is day 1;
    ``screen_failures`` the failed criteria behind ``screen_failed``.
    """

    participant: str
    site: str
    status: str
    courses: int
    first_infusion: dt.date | None
    cr_date: dt.date | None
    flags: tuple[str, ...]
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

    def to_json(self) -> dict[str, Any]:
        """The SPEC section 6 ``status`` row: dates as ISO strings, flags as a list."""
        return {
            "participant": self.participant,
            "site": self.site,
            "status": self.status,
            "courses": self.courses,
            "first_infusion": _iso(self.first_infusion),
            "cr_date": _iso(self.cr_date),
            "flags": list(self.flags),
        }


def _iso(date: dt.date | None) -> str | None:
    return None if date is None else date.isoformat()


def study_day(day1: dt.date, date: dt.date) -> int:
    """The study day of ``date`` when ``day1`` is day 1 (the day before day 1 is day 0)."""
    return (date - day1).days + 1


def day_date(day1: dt.date, day: int) -> dt.date:
    """The calendar date of study day ``day``."""
    return day1 + dt.timedelta(days=day - 1)


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
    outcome = participant_remission(history, day1, as_of, protocol.remission)
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
    if died:
        return "died"
    if withdrawn:
        return "withdrawn"
    if day1 is not None and study_day(day1, as_of) > protocol.follow_up.window_days:
        return "completed"
    if outcome.recurrence is not None:
        return "recurrence"
    if outcome.cr_date is not None:
        return "complete_remission"
    if second_course_due(day1, courses, outcome.cr_date, as_of, protocol):
        return "second_course_due"
    if courses:
        return "treated"
    if enrolled:
        return "enrolled"
    if screen_failed:
        return "screen_failed"
    return "screened"


def second_course_due(
    day1: dt.date | None,
    courses: int,
    cr_date: dt.date | None,
    as_of: dt.date,
    protocol: Protocol,
) -> bool:
    """Whether a second course is due on ``as_of`` (SPEC section 2).

    From day ``second_course_from_day`` (15), when complete remission was not
    reached by the end of the day before (day 14), and only while exactly one
    course has been given: once a second course is given it is no longer due.
    """
    if day1 is None or courses != 1:
        return False
    due_from = protocol.treatment.second_course_from_day
    if study_day(day1, as_of) < due_from:
        return False
    return cr_date is None or study_day(day1, cr_date) >= due_from


def dose_deviation(cells_per_kg: float, protocol: Protocol) -> bool:
    """Whether a dose lies outside target +/- tolerance (SPEC section 2; the bounds are in).

    Computed in decimal on the numbers as written, so 0.9e6 and 1.1e6 are within
    a 10% tolerance of 1.0e6 and 0.89e6 and 1.11e6 are not.
    """
    target = Decimal(repr(protocol.treatment.target_cells_per_kg))
    tolerance = Decimal(repr(protocol.treatment.dose_tolerance))
    dose = Decimal(repr(cells_per_kg))
    return abs(dose - target) > target * tolerance


def course_deviation(course_dates: tuple[dt.date, ...], cr_date: dt.date | None, protocol: Protocol) -> bool:
    """Whether the courses deviate from the protocol (SPEC section 2).

    Courses in infusion-date order: a second course before day 15 or on a date
    after the CR date, or any third or later course.
    """
    if len(course_dates) < 2:
        return False
    if len(course_dates) > 2:
        return True
    day1, second = course_dates
    if study_day(day1, second) < protocol.treatment.second_course_from_day:
        return True
    return cr_date is not None and second > cr_date


def late_sae_reports(history: ParticipantHistory, as_of: dt.date, protocol: Protocol) -> list[str]:
    """The ``ae_id`` of each serious AE reported late (SPEC section 2, ``late_sae_report``).

    An AE with onset on or before ``as_of`` is reported late when the ledger
    first held it as serious more than ``sae_report_hours`` (24) after the site
    became aware:

    - serious in its report (current values after corrections): the report's
      time is its ``entered_at`` when present (migrated data), else the
      ledger's ``recorded_at`` of the original; if it only became serious by a
      correction, that correction's ``entered_at`` or ``recorded_at``; the
      deadline runs from ``aware_at``;
    - made serious by an update effective on or before ``as_of`` (the report or
      earlier updates non-serious): the update's time (its ``entered_at`` or
      ``recorded_at``, or that of the correction that made it serious); the
      site cannot have known before the update's effective date, so the
      deadline runs from the later of ``aware_at`` and the end (24:00 UTC) of
      that date.
    """
    limit = dt.timedelta(hours=protocol.safety.sae_report_hours)
    late: list[str] = []
    for ae in adverse_events(history, as_of):
        report: AdverseEventReported = ae.report.record  # type: ignore[assignment]
        aware = report.aware_at
        if _is_late(ae, report, aware, limit):
            late.append(ae.ae_id)
    return late


def _is_late(ae: AdverseEvent, report: AdverseEventReported, aware: dt.datetime, limit: dt.timedelta) -> bool:
    serious = report.serious
    if serious and _serious_since(ae.report, report.entered_at) - aware > limit:
        return True
    grade, criteria = report.grade, tuple(report.criteria)
    for event in ae.updates:
        update: AdverseEventUpdated = event.record  # type: ignore[assignment]
        was_serious = serious
        grade, serious, criteria = apply_update(grade, serious, criteria, update)
        if serious and not was_serious:
            end_of_day = dt.datetime.combine(
                update.effective + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC
            )
            start = max(aware, end_of_day)
            if _serious_since(event, update.entered_at) - start > limit:
                return True
    return False


def _serious_since(event: CurrentEvent, entered_at: dt.datetime | None) -> dt.datetime:
    """When the ledger (or the source system) first held ``event`` with ``serious`` true.

    The original's time is its current ``entered_at`` (a correction may fix a
    migrated provenance time) or the ledger's ``recorded_at``; a correction's
    is its own ``entered_at`` or ``recorded_at``.
    """
    for index, version in enumerate(event.versions):
        if getattr(version.record, "serious", None):
            if index == 0:
                return entered_at if entered_at is not None else version.recorded_at
            return version.entered_at if version.entered_at is not None else version.recorded_at
    # Not serious in any version: only reachable for a non-serious event; never late.
    return dt.datetime.min.replace(tzinfo=dt.UTC)
