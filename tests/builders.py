"""Tiny builder of ledger entries for the rule tests.

Each call appends one :class:`~ledger.domain.entry.Entry` with the next position and a
``recorded_at`` one hour after the previous one (or the one given), and the
ledger id ``<PARTICIPANT>#<position>`` unless an id is given.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ledger.domain.entry import Entry
from ledger.domain.events import (
    AdverseEventReported,
    AdverseEventUpdated,
    CMVDiseaseAssessed,
    CMVLoadMeasured,
    EventCorrected,
    EventVoided,
    MSCInfused,
    ParticipantDied,
    ParticipantEnrolled,
    ParticipantScreened,
    ParticipantWithdrew,
    Record,
)
from ledger.domain.protocol import Remission
from ledger.domain.rules.sites import site_of

D0 = dt.date(2015, 3, 2)
T0 = dt.datetime(2015, 3, 1, 8, 0, tzinfo=dt.UTC)


def day(n: int, day1: dt.date = D0) -> dt.date:
    """The date of study day ``n`` when ``day1`` is day 1."""
    return day1 + dt.timedelta(days=n - 1)


class Clock:
    """A ledger clock the test moves by hand (``TrialLedger(..., clock=Clock(...))``)."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


class Ledger:
    """Appends entries in ledger order."""

    def __init__(self, start: dt.datetime = T0, dose: float = 1.0e6) -> None:
        self.entries: list[Entry] = []
        self.clock = start
        self.dose = dose  # an infusion's default cells_per_kg: the protocol's target

    def add(
        self,
        record_type: type[Record],
        participant: str,
        *,
        recorded_at: dt.datetime | None = None,
        **fields: Any,
    ) -> Entry:
        """Append one record of ``record_type``; returns its entry."""
        position = len(self.entries) + 1
        self.clock = recorded_at if recorded_at is not None else self.clock + dt.timedelta(hours=1)
        fields.setdefault("id", f"{participant}#{position}")
        fields.setdefault("user", "tester")
        fields.setdefault("site", site_of(participant))
        if record_type not in (EventCorrected, EventVoided):
            fields.setdefault("participant", participant)
        entry = Entry(position, self.clock, participant, record_type(**fields))
        self.entries.append(entry)
        return entry

    def screen(self, participant: str = "NFH-001", **fields: Any) -> Entry:
        values: dict[str, Any] = {
            "effective": D0 - dt.timedelta(days=7),
            "age_years": 40,
            "sex": "F",
            "refractory_cmv": "infection",
            "consent_date": D0 - dt.timedelta(days=7),
            "consent_by": "participant",
            "hr": 80,
            "rr": 16,
            "sbp": 120,
            "dbp": 75,
        }
        values.update(fields)
        return self.add(ParticipantScreened, participant, **values)

    def enroll(self, participant: str = "NFH-001", **fields: Any) -> Entry:
        values: dict[str, Any] = {"effective": D0 - dt.timedelta(days=3), "weight_kg": 60.0}
        values.update(fields)
        return self.add(ParticipantEnrolled, participant, **values)

    def infuse(self, participant: str = "NFH-001", on: dt.date = D0, course: int = 1, **fields: Any) -> Entry:
        values: dict[str, Any] = {"effective": on, "course": course, "cells_per_kg": self.dose}
        values.update(fields)
        return self.add(MSCInfused, participant, **values)

    def cmv(
        self,
        participant: str = "NFH-001",
        on: dt.date = D0,
        result: str = "not_detected",
        **fields: Any,
    ) -> Entry:
        values: dict[str, Any] = {
            "effective": on,
            "specimen": "plasma",
            "assay": "COBAS AmpliPrep/TaqMan CMV",
            "lloq_iu_ml": 137.0,
            "result": result,
        }
        if result == "quantified":
            values["value_iu_ml"] = 5000.0
        values.update(fields)
        return self.add(CMVLoadMeasured, participant, **values)

    def disease(self, participant: str = "NFH-001", on: dt.date = D0, status: str = "resolved") -> Entry:
        return self.add(CMVDiseaseAssessed, participant, effective=on, status=status, organ="lung")

    def ae(
        self,
        participant: str = "NFH-001",
        on: dt.date = D0,
        ae_id: str = "AE1",
        *,
        category: str = "infection",
        serious: bool = False,
        grade: int = 2,
        aware_at: dt.datetime | None = None,
        **fields: Any,
    ) -> Entry:
        values: dict[str, Any] = {
            "effective": on,
            "ae_id": ae_id,
            "term": "pneumonia",
            "category": category,
            "grade": grade,
            "serious": serious,
            "criteria": ["hospitalisation"] if serious else [],
            "causality": "unlikely",
            "aware_at": aware_at if aware_at is not None else self.clock,
        }
        values.update(fields)
        return self.add(AdverseEventReported, participant, **values)

    def ae_update(
        self, participant: str = "NFH-001", on: dt.date = D0, ae_id: str = "AE1", **fields: Any
    ) -> Entry:
        return self.add(AdverseEventUpdated, participant, effective=on, ae_id=ae_id, **fields)

    def withdraw(self, participant: str = "NFH-001", on: dt.date = D0) -> Entry:
        return self.add(ParticipantWithdrew, participant, effective=on, reason="consent withdrawn")

    def death(self, participant: str = "NFH-001", on: dt.date = D0) -> Entry:
        return self.add(ParticipantDied, participant, effective=on, cause="sepsis")

    def correct(self, target: Entry, *, recorded_at: dt.datetime | None = None, **changes: Any) -> Entry:
        return self.add(
            EventCorrected,
            target.participant,
            recorded_at=recorded_at,
            target=target.record.id,
            changes=changes,
            reason="source data verification",
        )

    def void(self, target: Entry) -> Entry:
        return self.add(EventVoided, target.participant, target=target.record.id, reason="entered in error")

    def treated(self, participant: str = "NFH-001", on: dt.date = D0, **screening: Any) -> None:
        """Screen, enroll and infuse course 1 on ``on`` (day 1)."""
        self.screen(participant, **screening)
        self.enroll(participant)
        self.infuse(participant, on)


def remission_days(last: int, remission: Remission) -> list[int]:
    """Study days of the shortest negative series that completes remission on day ``last``.

    The first sample ``min_gap_days`` before the last, the others on the days
    just before the last (``min_gap_days`` must leave room for them).
    """
    between = [last - offset for offset in range(remission.samples - 2, 0, -1)]
    assert remission.samples == 1 or (between or [last])[0] > last - remission.min_gap_days
    return sorted({last - remission.min_gap_days, *between, last}) if remission.samples > 1 else [last]
