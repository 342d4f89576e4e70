"""Adverse events: seriousness after updates and the late-SAE rule (SPEC section 2).

:func:`after_update` is the one rule for what an ``AdverseEventUpdated`` does to
an AE's grade, seriousness and criteria; the write side checks the result
(:func:`ledger.domain.rules.ordering.check_ae_update`) and the read side folds
with it (:func:`ledger.domain.rules.corrections.adverse_events`).
:func:`late_sae_reports` is the ``late_sae_report`` flag, with the reporting
limit ``safety.sae_report_hours``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from ledger.domain.events import AdverseEventReported, AdverseEventUpdated
from ledger.domain.protocol import Protocol
from ledger.domain.rules.corrections import CurrentEvent, ParticipantHistory


def after_update(
    grade: int, serious: bool, criteria: tuple[str, ...], update: AdverseEventUpdated
) -> tuple[int, bool, tuple[str, ...]]:
    """Grade, seriousness and criteria after one ``AdverseEventUpdated`` (the fields it sets win).

    SPEC section 2 ties the criteria to seriousness (serious needs at least one,
    a non-serious AE has none): an update that makes the AE non-serious without
    naming criteria clears them.  An update that names criteria sets them as
    given; the result must still pass
    :func:`~ledger.domain.events.check_seriousness` (the write side refuses it
    otherwise).
    """
    if update.grade is not None:
        grade = update.grade
    if update.serious is not None:
        serious = update.serious
        if not serious and update.criteria is None:
            criteria = ()
    if update.criteria is not None:
        criteria = tuple(update.criteria)
    return grade, serious, criteria


@dataclass(frozen=True, slots=True)
class AdverseEvent:
    """An adverse event as it stands on a clinical date (SPEC section 3).

    The values of the report after its corrections, then the updates of the
    same ``ae_id`` effective on or before that date, applied in effective-date
    order (ties by ledger position).  ``onset`` is the report's effective date.
    """

    ae_id: str
    report: CurrentEvent
    updates: tuple[CurrentEvent, ...]
    onset: dt.date
    category: str
    grade: int
    serious: bool
    criteria: tuple[str, ...]
    outcome: str | None
    resolved_date: dt.date | None


def adverse_events(history: ParticipantHistory, as_of: dt.date) -> list[AdverseEvent]:
    """The participant's adverse events with onset on or before ``as_of``, in onset order.

    Each reflects the updates effective on or before ``as_of`` (SPEC section 3);
    updates of a voided or unknown ``ae_id`` count nowhere.  If two reports
    share an ``ae_id`` (the ledger should refuse that), the first stored wins and
    the other stands alone under its own updates-free values.
    """
    reports = history.as_of(AdverseEventReported, as_of)
    updates = history.as_of(AdverseEventUpdated, as_of)
    owner: dict[str, int] = {}
    for report in sorted(reports, key=lambda event: event.position):
        owner.setdefault(report.record.ae_id, report.position)  # type: ignore[attr-defined]
    result: list[AdverseEvent] = []
    for report in reports:
        ae: AdverseEventReported = report.record  # type: ignore[assignment]
        mine = (
            tuple(update for update in updates if update.record.ae_id == ae.ae_id)  # type: ignore[attr-defined]
            if owner[ae.ae_id] == report.position
            else ()
        )
        grade, serious, criteria = ae.grade, ae.serious, tuple(ae.criteria)
        outcome: str | None = None
        resolved: dt.date | None = None
        for event in mine:
            update: AdverseEventUpdated = event.record  # type: ignore[assignment]
            grade, serious, criteria = after_update(grade, serious, criteria, update)
            if update.outcome is not None:
                outcome = update.outcome
            if update.resolved_date is not None:
                resolved = update.resolved_date
        result.append(
            AdverseEvent(
                ae_id=ae.ae_id,
                report=report,
                updates=mine,
                onset=ae.effective,
                category=ae.category,
                grade=grade,
                serious=serious,
                criteria=criteria,
                outcome=outcome,
                resolved_date=resolved,
            )
        )
    return result


def reporting_deadline(aware_at: dt.datetime, protocol: Protocol) -> dt.datetime:
    """The latest time a serious AE may be first recorded: ``aware_at`` plus ``safety.sae_report_hours``."""
    return aware_at + dt.timedelta(hours=protocol.safety.sae_report_hours)


def late_sae_reports(history: ParticipantHistory, as_of: dt.date, protocol: Protocol) -> list[str]:
    """The ``ae_id`` of each serious AE reported late (SPEC section 2, ``late_sae_report``).

    An AE with onset on or before ``as_of`` is reported late when the ledger
    first held it as serious after :func:`reporting_deadline`:

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
    return [ae.ae_id for ae in adverse_events(history, as_of) if _is_late(ae, protocol)]


def _is_late(ae: AdverseEvent, protocol: Protocol) -> bool:
    report: AdverseEventReported = ae.report.record  # type: ignore[assignment]
    serious = report.serious
    if serious and _serious_since(ae.report, report.entered_at) > reporting_deadline(
        report.aware_at, protocol
    ):
        return True
    grade, criteria = report.grade, tuple(report.criteria)
    for event in ae.updates:
        update: AdverseEventUpdated = event.record  # type: ignore[assignment]
        was_serious = serious
        grade, serious, criteria = after_update(grade, serious, criteria, update)
        if serious and not was_serious:
            end_of_day = dt.datetime.combine(
                update.effective + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC
            )
            start = max(report.aware_at, end_of_day)
            if _serious_since(event, update.entered_at) > reporting_deadline(start, protocol):
                return True
    return False


def _serious_since(event: CurrentEvent, entered_at: dt.datetime | None) -> dt.datetime:
    """When the ledger (or the source system) first held ``event`` with ``serious`` true.

    The original's time is its current ``entered_at`` (a correction may fix a
    migrated provenance time) or the ledger's ``recorded_at``; a correction's
    is its own ``entered_at`` or ``recorded_at``.  Called only for an event whose
    current values (its last version) are serious, so one version is.
    """
    index, version = next(
        (index, version)
        for index, version in enumerate(event.versions)
        if getattr(version.record, "serious", None)
    )
    if index == 0:
        return entered_at if entered_at is not None else version.recorded_at
    return version.entered_at if version.entered_at is not None else version.recorded_at
