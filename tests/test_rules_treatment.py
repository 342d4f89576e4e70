"""Study days, the follow-up window, doses and courses on the treatment rules themselves (SPEC section 2).

Table-driven boundaries (issue 16), each row named after its rule; every value
comes from the protocol under test.
"""

from __future__ import annotations

import datetime as dt

import pytest

from ledger.domain.protocol import Protocol
from ledger.domain.rules.treatment import (
    course_deviation,
    day_date,
    dose_deviation,
    follow_up_closed,
    second_course_due,
    study_day,
    within_follow_up,
)
from tests.builders import D0, day


@pytest.mark.parametrize(
    ("number", "date"), [(1, D0), (0, D0 - dt.timedelta(days=1)), (15, D0 + dt.timedelta(days=14))]
)
def test_study_day_and_its_date(number: int, date: dt.date) -> None:
    assert study_day(D0, date) == number
    assert day_date(D0, number) == date


@pytest.mark.parametrize(
    ("offset", "within", "closed"),
    [(-1, False, False), (0, True, False), (None, True, False), (1, False, True)],
    ids=[
        "follow_up_window: day 0",
        "follow_up_window: day 1",
        "follow_up_window: the last day",
        "follow_up_window: the day after the last",
    ],
)
def test_follow_up_window_bounds(protocol: Protocol, offset: int | None, within: bool, closed: bool) -> None:
    last = protocol.follow_up.window_days
    number = last if offset is None else 1 + offset if offset <= 0 else last + offset
    assert within_follow_up(D0, day(number), protocol) is within
    assert follow_up_closed(D0, day(number), protocol) is closed


@pytest.mark.parametrize(
    ("factor", "deviates"),
    [(1, False), (-1, False), (1.0001, True), (-1.0001, True)],
    ids=[
        "dose_deviation: at target plus tolerance",
        "dose_deviation: at target minus tolerance",
        "dose_deviation: just above",
        "dose_deviation: just below",
    ],
)
def test_dose_deviation_bounds(protocol: Protocol, factor: float, deviates: bool) -> None:
    target, tolerance = protocol.treatment.target_cells_per_kg, protocol.treatment.dose_tolerance
    dose = (
        float(f"{target * (1 + factor * tolerance):.6g}")
        if abs(factor) == 1
        else target * (1 + factor * tolerance)
    )
    assert dose_deviation(dose, protocol) is deviates


@pytest.mark.parametrize(
    ("courses", "on", "cr_on", "due"),
    [
        (0, "due", None, False),
        (1, "before", None, False),
        (1, "due", None, True),
        (2, "due", None, False),
        (1, "due", "before", False),
        (1, "due", "due", True),
    ],
    ids=[
        "second_course_due: no course given",
        "second_course_due: the day before the second-course day",
        "second_course_due: on the second-course day",
        "second_course_due: a second course already given",
        "second_course_due: CR the day before the second-course day",
        "second_course_due: CR on the second-course day",
    ],
)
def test_second_course_due_bounds(
    protocol: Protocol, courses: int, on: str, cr_on: str | None, due: bool
) -> None:
    first = protocol.treatment.second_course_from_day
    days = {"before": day(first - 1), "due": day(first)}
    cr = None if cr_on is None else days[cr_on]
    assert second_course_due(D0 if courses else None, courses, cr, days[on], protocol) is due


def test_no_second_course_is_due_without_an_infusion(protocol: Protocol) -> None:
    assert second_course_due(None, 1, None, day(400), protocol) is False


@pytest.mark.parametrize(
    ("later", "cr_on", "deviates"),
    [
        ([0], None, False),
        ([-1], None, True),
        ([0], 0, False),
        ([1], 0, True),
        ("max", None, False),
        ("beyond", None, True),
    ],
    ids=[
        "course_deviation: second course on the second-course day",
        "course_deviation: second course the day before",
        "course_deviation: second course on the CR date",
        "course_deviation: second course the day after the CR date",
        "course_deviation: the maximum number of courses",
        "course_deviation: one course beyond the maximum",
    ],
)
def test_course_deviation_bounds(
    protocol: Protocol, later: list[int] | str, cr_on: int | None, deviates: bool
) -> None:
    first = protocol.treatment.second_course_from_day
    if isinstance(later, str):
        count = protocol.treatment.max_courses + (1 if later == "beyond" else 0)
        offsets = list(range(count - 1))
    else:
        offsets = later
    dates = (D0, *(day(first + offset) for offset in offsets))
    cr = None if cr_on is None else day(first + cr_on)
    assert course_deviation(dates, cr, protocol) is deviates
