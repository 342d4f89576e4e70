"""Complete remission of CMV infection and its recurrence (SPEC section 2).

Day 1 is the date of the first infusion.  Results are placed by sample date
(their ``effective`` date), several results of one date by ledger position, so
a result recorded late with an earlier sample date can gain or lose remission
retroactively.

With the protocol parameters ``samples`` (k) and ``min_gap_days`` (g), a run of
``not_detected``/``below_lloq`` results completes remission at the result that
is the k-th or later negative since the last ``quantified``/``above_uloq``
result (counting only samples on or after day 1) and whose sample date is at
least g days after the first negative of that run.  For k = 2 this is exactly
the SPEC rule: two negatives at least g days apart with no positive between
them (negatives in between are fine).  The virological CR date is the sample
date of the earliest completing result.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from ledger.domain.events import CMVDiseaseAssessed, CMVLoadMeasured, ParticipantScreened
from ledger.domain.protocol import Protocol, Remission
from ledger.domain.rules.corrections import ParticipantHistory

NEGATIVE = frozenset({"not_detected", "below_lloq"})
POSITIVE = frozenset({"quantified", "above_uloq"})


class Sample(NamedTuple):
    """One CMV DNA result as remission sees it: sample date, ledger position, result."""

    date: dt.date
    position: int
    result: str


@dataclass(frozen=True, slots=True)
class RemissionOutcome:
    """Remission dates of one participant on a clinical date (SPEC section 2).

    ``virological_cr``: sample date completing the negative series;
    ``resolution``: first ``resolved`` disease assessment on or after day 1, for
    participants screened with ``refractory_cmv = disease`` (None otherwise);
    ``cr_date``: the later of the two when all that is needed is there;
    ``recurrence``: sample date of the first positive result after ``cr_date``.
    """

    virological_cr: dt.date | None
    resolution: dt.date | None
    cr_date: dt.date | None
    recurrence: dt.date | None


NO_REMISSION = RemissionOutcome(None, None, None, None)


def virological_cr_date(samples: Iterable[Sample], day1: dt.date, rules: Remission) -> dt.date | None:
    """Sample date of the earliest result completing a remission series, or None.

    ``rules.samples`` negatives on or after ``day1``, the first and the last at
    least ``rules.min_gap_days`` apart, with no positive result between them in
    (sample date, position) order.
    """
    count = rules.samples
    gap = dt.timedelta(days=rules.min_gap_days)
    run_start: dt.date | None = None
    run_length = 0
    for sample in sorted(samples, key=lambda s: (s.date, s.position)):
        if sample.date < day1:
            continue
        if sample.result in POSITIVE:
            run_start, run_length = None, 0
        elif sample.result in NEGATIVE:
            if run_start is None:
                run_start = sample.date
            run_length += 1
            if run_length >= count and sample.date - run_start >= gap:
                return sample.date
    return None


def recurrence_date(samples: Iterable[Sample], cr_date: dt.date) -> dt.date | None:
    """Sample date of the first positive result dated after ``cr_date``, or None."""
    later = [s.date for s in samples if s.result in POSITIVE and s.date > cr_date]
    return min(later, default=None)


def resolution_date(assessments: Iterable[tuple[dt.date, str]], day1: dt.date) -> dt.date | None:
    """Date of the first ``resolved`` CMV disease assessment on or after ``day1``, or None."""
    dates = [date for date, status in assessments if status == "resolved" and date >= day1]
    return min(dates, default=None)


def remission(
    samples: Iterable[Sample],
    day1: dt.date | None,
    rules: Remission,
    disease: bool,
    assessments: Iterable[tuple[dt.date, str]],
) -> RemissionOutcome:
    """Complete remission and recurrence from results and disease assessments (SPEC section 2).

    ``samples`` and ``assessments`` are those that count (effective on or before
    the as-of date); ``disease`` says whether the participant was screened with
    ``refractory_cmv = disease`` and so also needs a resolution.  No infusion
    (``day1`` None) means no remission.
    """
    if day1 is None:
        return NO_REMISSION
    samples = list(samples)
    virological = virological_cr_date(samples, day1, rules)
    resolution = resolution_date(assessments, day1) if disease else None
    if virological is None or (disease and resolution is None):
        return RemissionOutcome(virological, resolution, None, None)
    cr = max(virological, resolution) if resolution is not None else virological
    return RemissionOutcome(virological, resolution, cr, recurrence_date(samples, cr))


def participant_remission(
    history: ParticipantHistory, day1: dt.date | None, as_of: dt.date, protocol: Protocol
) -> RemissionOutcome:
    """:func:`remission` of one participant's current events effective on or before ``as_of``.

    The disease requirement follows the participant's latest screening record
    (by effective date, then position) on or before ``as_of``.
    """
    samples, assessments = _inputs(history, as_of)
    screenings = history.as_of(ParticipantScreened, as_of)
    disease = bool(screenings) and screenings[-1].record.refractory_cmv == "disease"  # type: ignore[attr-defined]
    return remission(samples, day1, protocol.remission, disease, assessments)


def remission_changes(history: ParticipantHistory, day1: dt.date | None, protocol: Protocol) -> set[dt.date]:
    """The clinical dates on which :func:`participant_remission` may change as the as-of date moves.

    Every input of :func:`remission` counts from its own clinical date on, and
    every date it returns is the date of the input that settles it: the result
    completing the earliest series, the first resolution, the later of the two,
    the first positive result after the CR date.  So with the inputs after an
    as-of date left out, the outcome is the whole history's with its dates after
    the as-of date left out, and (``day1`` and the screening record fixed) it
    changes only on the virological CR date, the resolution date, and the first
    positive result after each CR date the outcome can have (with and without a
    disease to resolve).  ``day1`` is the date of the first infusion, if any.
    What the read model tabulates per participant relies on this (issue 14).
    """
    if day1 is None:
        return set()
    samples, assessments = _inputs(history, dt.date.max)
    virological = virological_cr_date(samples, day1, protocol.remission)
    resolution = resolution_date(assessments, day1)
    found = {date for date in (virological, resolution) if date is not None}
    if virological is not None:
        for cr in {virological, max(virological, resolution or virological)}:
            recurrence = recurrence_date(samples, cr)
            if recurrence is not None:
                found.add(recurrence)
    return found


def _inputs(history: ParticipantHistory, as_of: dt.date) -> tuple[list[Sample], list[tuple[dt.date, str]]]:
    """The CMV results and disease assessments of ``history`` that count on ``as_of``."""
    samples = [
        Sample(event.effective, event.position, event.record.result)  # type: ignore[attr-defined]
        for event in history.as_of(CMVLoadMeasured, as_of)
    ]
    assessments = [
        (event.effective, event.record.status)  # type: ignore[attr-defined]
        for event in history.as_of(CMVDiseaseAssessed, as_of)
    ]
    return samples, assessments
