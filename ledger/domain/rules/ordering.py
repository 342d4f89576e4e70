"""Write-side rules that need the protocol or the participant's history (SPEC sections 1-2, 6).

Plain functions over a :class:`Chart`, the participant's current records, so
that the aggregate, the bulk import and the re-validation of a correction share
one piece of code.  Each rule raises :class:`~ledger.domain.errors.InvalidInput`
naming the field, or :class:`~ledger.domain.errors.Ineligible`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TypeVar

from ledger.domain.errors import Ineligible, InvalidInput
from ledger.domain.events import (
    AdverseEventReported,
    AdverseEventUpdated,
    ClinicalRecord,
    MSCInfused,
    ParticipantDied,
    ParticipantEnrolled,
    ParticipantScreened,
    check_seriousness,
)
from ledger.domain.protocol import Protocol
from ledger.domain.rules.eligibility import enrollment_failures

T = TypeVar("T", bound=ClinicalRecord)


@dataclass
class Chart:
    """A participant's current clinical records (corrections applied, voids removed)."""

    records: dict[str, ClinicalRecord] = field(default_factory=dict)

    def of_type(self, kind: type[T]) -> list[T]:
        return [r for r in self.records.values() if isinstance(r, kind)]

    def first(self, kind: type[T]) -> T | None:
        found = self.of_type(kind)
        return found[0] if found else None


def _invalid(participant: str, fld: str, problem: str) -> InvalidInput:
    return InvalidInput(f"{participant}: {fld}: {problem}")


def check_clinical(chart: Chart, record: ClinicalRecord, protocol: Protocol, today: dt.date) -> None:
    """Check one new clinical record against the participant's chart.

    Raises on the first broken rule; :class:`Ineligible` for a failed
    eligibility without ``deviation``.
    """
    who = record.participant
    site = who.split("-")[0]
    if site not in protocol.sites:
        raise _invalid(who, "participant", f"unknown site code '{site}' ({', '.join(protocol.sites)})")
    if record.site is not None and record.site not in protocol.sites:
        raise _invalid(who, "site", f"unknown site code '{record.site}'")
    if record.effective > today:
        raise _invalid(who, "effective", f"{record.effective} is in the future")
    screening = chart.first(ParticipantScreened)
    if isinstance(record, ParticipantScreened):
        if screening is not None:
            raise _invalid(who, "type", f"already screened on {screening.effective} ({screening.id})")
        if record.consent_date > today:
            raise _invalid(who, "consent_date", f"{record.consent_date} is in the future")
        return
    if screening is None:
        raise _invalid(who, "participant", "not screened: record ParticipantScreened first")
    death = chart.first(ParticipantDied)
    if death is not None and record.effective > death.effective:
        raise _invalid(who, "effective", f"{record.effective} is after the death on {death.effective}")
    enrollment = chart.first(ParticipantEnrolled)
    match record:
        case ParticipantEnrolled():
            if enrollment is not None:
                raise _invalid(who, "type", f"already enrolled on {enrollment.effective}")
            if record.effective < screening.effective:
                raise _invalid(who, "effective", f"enrollment before screening ({screening.effective})")
            failures = enrollment_failures(screening, record, protocol)
            if failures and record.deviation is None:
                raise Ineligible(who, failures)
        case MSCInfused():
            if enrollment is None:
                raise _invalid(who, "type", "no infusion before enrollment: not enrolled")
            if record.effective < enrollment.effective:
                raise _invalid(who, "effective", f"infusion before enrollment ({enrollment.effective})")
            for given in chart.of_type(MSCInfused):
                if given.course == record.course:
                    raise _invalid(who, "course", f"course {record.course} already recorded ({given.id})")
        case ParticipantDied():
            if death is not None:
                raise _invalid(who, "type", f"death already recorded on {death.effective}")
            later = max((r.effective for r in chart.records.values()), default=record.effective)
            if later > record.effective:
                raise _invalid(who, "effective", f"death date before events dated {later}")
        case AdverseEventReported():
            for known in chart.of_type(AdverseEventReported):
                if known.ae_id == record.ae_id:
                    raise _invalid(who, "ae_id", f"AE {record.ae_id} already reported ({known.id})")
        case AdverseEventUpdated():
            check_ae_update(chart, record)


def check_ae_update(chart: Chart, update: AdverseEventUpdated) -> None:
    """An update names a reported AE, follows its onset and leaves it valid (SPEC section 2)."""
    who = update.participant
    reports = [r for r in chart.of_type(AdverseEventReported) if r.ae_id == update.ae_id]
    if not reports:
        raise _invalid(who, "ae_id", f"no adverse event {update.ae_id} reported")
    report = reports[0]
    if update.effective < report.effective:
        raise _invalid(who, "effective", f"update before the AE onset {report.effective}")
    grade, serious, criteria = report.grade, report.serious, list(report.criteria)
    for earlier in chart.of_type(AdverseEventUpdated):
        if earlier.ae_id == update.ae_id:
            grade, serious, criteria = _merge(earlier, grade, serious, criteria)
    grade, serious, criteria = _merge(update, grade, serious, criteria)
    try:
        check_seriousness(grade, serious, criteria)
    except ValueError as exc:
        raise InvalidInput(f"{who}: AE {update.ae_id} after update: {exc}") from None
    if update.resolved_date is not None and update.resolved_date < report.effective:
        raise _invalid(who, "resolved_date", f"before the AE onset {report.effective}")


def _merge(
    update: AdverseEventUpdated, grade: int, serious: bool, criteria: list[str]
) -> tuple[int, bool, list[str]]:
    return (
        update.grade if update.grade is not None else grade,
        update.serious if update.serious is not None else serious,
        list(update.criteria) if update.criteria is not None else criteria,
    )


def replay(records: list[ClinicalRecord], protocol: Protocol, today: dt.date) -> Chart:
    """Re-check a participant's whole chart in recorded order (used after a correction)."""
    chart = Chart()
    for record in records:
        check_clinical(chart, record, protocol, today)
        chart.records[record.id or ""] = record
    return chart
