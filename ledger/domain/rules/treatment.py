"""Treatment, courses and the follow-up window (SPEC section 2).

Day 1 is the date of the first infusion; the day before it is day 0.  Courses
are counted in infusion-date order.  Every parameter comes from the protocol's
``treatment`` and ``follow_up`` parts.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from ledger.domain.protocol import Protocol


def study_day(day1: dt.date, date: dt.date) -> int:
    """The study day of ``date`` when ``day1`` is day 1 (the day before day 1 is day 0)."""
    return (date - day1).days + 1


def day_date(day1: dt.date, day: int) -> dt.date:
    """The calendar date of study day ``day``."""
    return day1 + dt.timedelta(days=day - 1)


def within_follow_up(day1: dt.date, date: dt.date, protocol: Protocol) -> bool:
    """Whether ``date`` lies on study days 1 to ``follow_up.window_days`` (both included)."""
    return 1 <= study_day(day1, date) <= protocol.follow_up.window_days


def follow_up_closed(day1: dt.date, as_of: dt.date, protocol: Protocol) -> bool:
    """Whether the follow-up window has closed on ``as_of`` (status ``completed`` from the day after)."""
    return study_day(day1, as_of) > protocol.follow_up.window_days


def day_count_changes(day1: dt.date | None, protocol: Protocol) -> set[dt.date]:
    """The dates on which a rule that counts study days from ``day1`` changes its answer.

    A second course is due from study day ``treatment.second_course_from_day``
    (:func:`second_course_due`) and the follow-up window closes on the day after
    day ``follow_up.window_days`` (:func:`follow_up_closed`); nothing counted
    from day 1 changes on another date.  No date without an infusion.
    """
    if day1 is None:
        return set()
    closed = protocol.follow_up.window_days + 1
    return {day_date(day1, protocol.treatment.second_course_from_day), day_date(day1, closed)}


def dose_deviation(cells_per_kg: float, protocol: Protocol) -> bool:
    """Whether a dose lies outside target +/- tolerance (``dose_deviation``; the bounds are in).

    Computed in decimal on the numbers as written, so a dose written exactly at
    ``target * (1 +/- tolerance)`` is within, whatever binary rounding says.
    """
    target = Decimal(repr(protocol.treatment.target_cells_per_kg))
    tolerance = Decimal(repr(protocol.treatment.dose_tolerance))
    dose = Decimal(repr(cells_per_kg))
    return abs(dose - target) > target * tolerance


def second_course_due(
    day1: dt.date | None,
    courses: int,
    cr_date: dt.date | None,
    as_of: dt.date,
    protocol: Protocol,
) -> bool:
    """Whether a second course is due on ``as_of`` (status ``second_course_due``).

    From day ``treatment.second_course_from_day``, when complete remission was
    not reached by the end of the day before, and only while exactly one course
    has been given: once a second course is given it is no longer due.
    """
    if day1 is None or courses != 1:
        return False
    due_from = protocol.treatment.second_course_from_day
    if study_day(day1, as_of) < due_from:
        return False
    return cr_date is None or study_day(day1, cr_date) >= due_from


def course_deviation(course_dates: tuple[dt.date, ...], cr_date: dt.date | None, protocol: Protocol) -> bool:
    """Whether the courses deviate from the protocol (``course_deviation``).

    Courses in infusion-date order: a later course before day
    ``treatment.second_course_from_day`` or on a date after the CR date, or any
    course beyond ``treatment.max_courses``.
    """
    if len(course_dates) > protocol.treatment.max_courses:
        return True
    return any(
        study_day(course_dates[0], date) < protocol.treatment.second_course_from_day
        or (cr_date is not None and date > cr_date)
        for date in course_dates[1:]
    )
