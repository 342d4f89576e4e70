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
    ParticipantWithdrew,
    check_seriousness,
    utc_text,
)
from ledger.domain.protocol import Protocol
from ledger.domain.rules.eligibility import enrollment_failures
from ledger.domain.rules.safety import after_update
from ledger.domain.rules.sites import site_of

T = TypeVar("T", bound=ClinicalRecord)


class ChartRecords(dict[str, ClinicalRecord]):
    """A chart's records by event id that also keep, per record type, that type's records in chart order.

    A chart changes only by setting and deleting keys (the aggregate's ``take``,
    a replay); both keep the index in step, so a rule asking for the screening or
    the infusions reads them without a scan of the whole history (issue 14).
    """

    def __init__(self, records: dict[str, ClinicalRecord] | None = None) -> None:
        super().__init__()
        self.by_type: dict[type, dict[str, ClinicalRecord]] = {}
        self._kinds: dict[type, list[dict[str, ClinicalRecord]]] = {}
        for key, record in (records or {}).items():
            self[key] = record

    def __setitem__(self, key: str, record: ClinicalRecord) -> None:
        previous = self.get(key)
        super().__setitem__(key, record)
        if previous is not None and type(previous) is not type(record):
            # A correction never changes a record's type; should one, rebuild in chart order.
            self.by_type, self._kinds = {}, {}
            for k, r in self.items():
                self.by_type.setdefault(type(r), {})[k] = r
        elif type(record) in self.by_type:
            self.by_type[type(record)][key] = record
        else:
            group = self.by_type[type(record)] = {key: record}
            for kind, groups in self._kinds.items():
                if issubclass(type(record), kind):
                    groups.append(group)

    def __delitem__(self, key: str) -> None:
        record = self[key]
        super().__delitem__(key)
        del self.by_type[type(record)][key]

    def kind(self, kind: type) -> list[dict[str, ClinicalRecord]]:
        """The per-type groups of every record type that is ``kind`` or a subclass of it."""
        try:
            return self._kinds[kind]
        except KeyError:
            groups = self._kinds[kind] = [g for cls, g in self.by_type.items() if issubclass(cls, kind)]
            return groups


@dataclass
class Chart:
    """A participant's current clinical records (corrections applied, voids removed), indexed by type."""

    records: dict[str, ClinicalRecord] = field(default_factory=ChartRecords)

    def __post_init__(self) -> None:
        if not isinstance(self.records, ChartRecords):
            self.records = ChartRecords(self.records)

    def of_type(self, kind: type[T]) -> list[T]:
        """The records of type ``kind`` (or a subclass), in chart order."""
        groups = self.records.kind(kind)  # type: ignore[attr-defined]
        filled = [group for group in groups if group]
        if len(filled) > 1:  # several types: keep the chart's order across them
            return [r for r in self.records.values() if isinstance(r, kind)]
        return list(filled[0].values()) if filled else []  # type: ignore[arg-type]

    def first(self, kind: type[T]) -> T | None:
        groups = self.records.kind(kind)  # type: ignore[attr-defined]
        if len(groups) == 1:
            return next(iter(groups[0].values()), None)  # type: ignore[arg-type]
        if not groups:
            return None
        found = self.of_type(kind)
        return found[0] if found else None


def _invalid(participant: str, fld: str, problem: str) -> InvalidInput:
    return InvalidInput(f"{participant}: {fld}: {problem}")


# The earliest clock on Earth (UTC+14): a clinical date starts there first.  Stored
# instants are UTC and keep no offset of the site, so the start of a clinical
# date is taken where it comes first.
EARLIEST_ZONE = dt.timezone(dt.timedelta(hours=14))


def day_start(date: dt.date) -> dt.datetime:
    """The first instant of a clinical date anywhere (00:00 at UTC+14)."""
    return dt.datetime.combine(date, dt.time(), tzinfo=EARLIEST_ZONE)


def check_entered_at(
    who: str, entered_at: dt.datetime | None, about: ClinicalRecord, at: dt.datetime
) -> None:
    """Rule ``entered_at_bounds`` (SPEC section 6): when a source system first recorded an entry.

    ``about`` is the clinical event the entry records (for a correction, the
    event as corrected; for a void, its target).  ``entered_at`` lies between
    the start of its clinical date and ``at``, the time the ledger records the
    entry, and for an adverse event not before the site became aware of it.
    """
    if entered_at is None:
        return
    start = day_start(about.effective)
    if entered_at < start:
        raise _invalid(
            who,
            "entered_at",
            f"{utc_text(entered_at)} is before the clinical date {about.effective} began ({utc_text(start)})"
            " (rule entered_at_bounds)",
        )
    if isinstance(about, AdverseEventReported) and entered_at < about.aware_at:
        raise _invalid(
            who,
            "entered_at",
            f"{utc_text(entered_at)} is before the site became aware of AE {about.ae_id}"
            f" ({utc_text(about.aware_at)}) (rule entered_at_bounds)",
        )
    if entered_at > at:
        raise _invalid(
            who,
            "entered_at",
            f"{utc_text(entered_at)} is after the time it is recorded, {utc_text(at)}"
            " (rule entered_at_bounds)",
        )


def check_clinical(chart: Chart, record: ClinicalRecord, protocol: Protocol, at: dt.datetime) -> None:
    """Check one new clinical record, recorded at ``at``, against the participant's chart.

    Raises on the first broken rule; :class:`Ineligible` for a failed
    eligibility without ``deviation``.
    """
    who = record.participant
    today = at.date()
    site = site_of(who)
    if site not in protocol.sites:
        raise _invalid(who, "participant", f"unknown site code '{site}' ({', '.join(protocol.sites)})")
    if record.site is not None and record.site not in protocol.sites:
        raise _invalid(who, "site", f"unknown site code '{record.site}'")
    if record.effective > today:
        raise _invalid(who, "effective", f"{record.effective} is in the future")
    check_entered_at(who, record.entered_at, record, at)
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
    withdrawal = chart.first(ParticipantWithdrew)
    if isinstance(record, MSCInfused):
        check_no_infusion_after_exit(who, record.effective, withdrawal, death)
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
        case ParticipantWithdrew():
            if withdrawal is not None:
                raise _invalid(
                    who,
                    "type",
                    f"already withdrawn on {withdrawal.effective} ({withdrawal.id}) (rule single_withdrawal)",
                )
            for given in chart.of_type(MSCInfused):
                check_no_infusion_after_exit(who, given.effective, record, None)
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


def check_no_infusion_after_exit(
    who: str, infused: dt.date, withdrawal: ParticipantWithdrew | None, death: ParticipantDied | None
) -> None:
    """Rule ``no_infusion_after_exit`` (SPEC section 6): no infusion dated after the participant's
    withdrawal or death (on the day itself it may still have been given)."""
    for exit_record, what in ((withdrawal, "withdrawal"), (death, "death")):
        if exit_record is not None and infused > exit_record.effective:
            raise _invalid(
                who,
                "effective",
                f"infusion on {infused} after the {what} on {exit_record.effective}"
                " (rule no_infusion_after_exit)",
            )


def check_ae_update(chart: Chart, update: AdverseEventUpdated) -> None:
    """An update names a reported AE, follows its onset and leaves it valid (SPEC section 2).

    The AE's updates, this one among them, are applied in effective-date order
    (ties in recorded order) with :func:`~ledger.domain.rules.safety.after_update`,
    as the read side applies them; the AE must be valid after each.
    """
    who = update.participant
    reports = [r for r in chart.of_type(AdverseEventReported) if r.ae_id == update.ae_id]
    if not reports:
        raise _invalid(who, "ae_id", f"no adverse event {update.ae_id} reported")
    report = reports[0]
    if update.effective < report.effective:
        raise _invalid(who, "effective", f"update before the AE onset {report.effective}")
    updates = [u for u in chart.of_type(AdverseEventUpdated) if u.ae_id == update.ae_id] + [update]
    grade, serious, criteria = report.grade, report.serious, tuple(report.criteria)
    for step in sorted(updates, key=lambda u: u.effective):
        grade, serious, criteria = after_update(grade, serious, criteria, step)
        try:
            check_seriousness(grade, serious, list(criteria))
        except ValueError as exc:
            raise InvalidInput(f"{who}: AE {update.ae_id} after update: {exc}") from None
    if update.resolved_date is not None and update.resolved_date < report.effective:
        raise _invalid(who, "resolved_date", f"before the AE onset {report.effective}")


def replay(records: list[ClinicalRecord], protocol: Protocol, at: dt.datetime) -> Chart:
    """Re-check a participant's whole chart in recorded order (used after a correction)."""
    chart = Chart()
    for record in records:
        check_clinical(chart, record, protocol, at)
        chart.records[record.id or ""] = record
    return chart
