"""Each participant's events as they currently stand (SPEC sections 4, 5 and 6).

Nothing in the ledger is updated or deleted: a correction is a new event that
names its target and the changed fields, a void marks its target as entered in
error.  :func:`fold` replays a run of stored entries and gives, per
participant, the current value of every clinical event: the original with all
its corrections applied on top of each other in ledger order, voided events
dropped (a voided event counts nowhere, SPEC section 6).

``--known-at`` needs nothing here: the caller passes only the entries recorded
by then, and corrections or voids recorded later are simply not among them.
``--as-of`` is a filter on the folded events' clinical ``effective`` dates;
:meth:`ParticipantHistory.as_of` and :func:`adverse_events` apply it.

Adverse events are folded further by
:func:`ledger.domain.rules.safety.adverse_events`.
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec

from ledger.domain.entry import Entry
from ledger.domain.events import (
    RECORD_TYPES,
    ClinicalRecord,
    EventCorrected,
    EventVoided,
    InvalidRecord,
    Record,
    apply_changes,
    stored_changes,
)


@dataclass(frozen=True, slots=True)
class Version:
    """One state of an event: the original as stored, or the result of one correction.

    ``position``, ``recorded_at`` and ``entered_at`` are those of the stored event
    that produced this state (the original itself, or the correction).
    """

    record: Record
    position: int
    recorded_at: dt.datetime
    entered_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class CurrentEvent:
    """A clinical event with its current values (SPEC section 5).

    ``record`` carries every correction applied in ledger order; ``position`` and
    ``recorded_at`` are the original's (the late-SAE rule needs when the event
    was first stored); ``versions`` holds the original first, then one state per
    applied correction.
    """

    record: Record
    position: int
    recorded_at: dt.datetime
    versions: tuple[Version, ...]

    @property
    def id(self) -> str:
        """The event id (client id or ledger id), never changed by a correction."""
        return self.record.id  # type: ignore[return-value]

    @property
    def effective(self) -> dt.date:
        """The current clinical date of the event."""
        return self.record.effective  # type: ignore[attr-defined,no-any-return]

    @property
    def original(self) -> Record:
        """The record as first stored."""
        return self.versions[0].record

    @property
    def corrected(self) -> bool:
        """Whether at least one correction changed this event."""
        return len(self.versions) > 1


@dataclass(frozen=True, slots=True)
class ParticipantHistory:
    """One participant's current, non-voided clinical events, in ledger order of the originals.

    The clinical events are also kept by record type in clinical order (effective
    date, ties by ledger position), so that :meth:`as_of`, which every rule asks many
    times, is a bisection rather than a scan of the whole history (issue 14).
    """

    participant: str
    events: tuple[CurrentEvent, ...]
    _clinical: dict[type, tuple[list[dt.date], list[CurrentEvent]]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        by_type: dict[type, list[CurrentEvent]] = {}
        for event in self.events:
            if isinstance(event.record, ClinicalRecord):
                by_type.setdefault(type(event.record), []).append(event)
        clinical = {}
        for kind, events in by_type.items():
            ordered = sorted(events, key=lambda event: (event.effective, event.position))
            clinical[kind] = ([event.effective for event in ordered], ordered)
        object.__setattr__(self, "_clinical", clinical)

    def of_type(self, record_type: type[Record]) -> list[CurrentEvent]:
        """The events whose record is a ``record_type``, in ledger order."""
        return [event for event in self.events if isinstance(event.record, record_type)]

    def as_of(self, record_type: type[Record], as_of: dt.date) -> list[CurrentEvent]:
        """The ``record_type`` events that count on clinical date ``as_of`` (SPEC section 2).

        Those with a current effective date on or before ``as_of``, ordered by
        effective date, ties by ledger position.
        """
        if not record_type.__subclasses__():  # a concrete record type: one list
            dates, ordered = self._clinical.get(record_type, _NONE)
            return ordered[: bisect_right(dates, as_of)]
        merged = [
            event
            for kind, (dates, ordered) in self._clinical.items()
            if issubclass(kind, record_type)
            for event in ordered[: bisect_right(dates, as_of)]
        ]
        return sorted(merged, key=lambda event: (event.effective, event.position))


_NONE: tuple[list[dt.date], list[CurrentEvent]] = ([], [])


def fold(entries: Iterable[Entry]) -> dict[str, ParticipantHistory]:
    """Apply corrections and voids; the current events of each participant (SPEC section 5).

    ``entries`` are stored events (any order; they are replayed in ledger
    ``position`` order).  The result maps each participant code to its history,
    participants in order of their first clinical event.

    Rules:

    - a correction replaces the named fields of its target; several corrections
      of one target apply on top of each other in ledger order;
    - a voided event is dropped with everything aimed at it;
    - a void may also name a correction: that correction is then not applied
      (the ledger may refuse such voids; if one is stored, this is its meaning);
    - corrections or voids of corrections and voids, of unknown ids, of a
      void or of the ledger's own records (:func:`amendable`), are ignored, as
      is a correction that would leave its target invalid (the ledger refuses
      those when they are recorded, SPEC section 6).

    Targets are resolved by event id across all participants' streams.
    """
    ordered = sorted(entries, key=lambda entry: entry.position)
    originals: dict[str, Entry] = {}
    correction_ids: set[str] = set()
    voided: set[str] = set()
    for entry in ordered:
        record = entry.record
        if isinstance(record, EventCorrected):
            if record.id is not None:
                correction_ids.add(record.id)
        elif not isinstance(record, EventVoided) and record.id is not None:
            originals.setdefault(record.id, entry)
    for entry in ordered:
        record = entry.record
        if not isinstance(record, EventVoided):
            continue
        target = originals.get(record.target)
        if record.target in correction_ids or (target is not None and amendable(target.record)):
            voided.add(record.target)

    versions: dict[str, list[Version]] = {
        event_id: [_first_version(entry)] for event_id, entry in originals.items() if event_id not in voided
    }
    for entry in ordered:
        record = entry.record
        if not isinstance(record, EventCorrected) or record.id in voided:
            continue
        states = versions.get(record.target)
        if states is None or not amendable(states[0].record):
            continue
        try:
            changed = corrected(states[-1].record, record.changes, stored=True)
        except InvalidRecord:
            continue
        states.append(Version(changed, entry.position, entry.recorded_at, record.entered_at))

    streams: dict[str, list[CurrentEvent]] = {}
    for entry in ordered:
        record = entry.record
        if isinstance(record, (EventCorrected, EventVoided)):
            continue
        streams.setdefault(entry.participant, [])
        if record.id is None or originals.get(record.id) is not entry:
            continue
        states = versions.get(record.id)
        if states is None:
            continue
        streams[entry.participant].append(
            CurrentEvent(states[-1].record, entry.position, entry.recorded_at, tuple(states))
        )
    return {
        participant: ParticipantHistory(participant, tuple(events)) for participant, events in streams.items()
    }


def _first_version(entry: Entry) -> Version:
    return Version(entry.record, entry.position, entry.recorded_at, entry.record.entered_at)


def corrected(record: Record, changes: dict[str, object], *, stored: bool = False) -> Record:
    """``record`` as a correction leaves it: ``changes`` over its fields, re-validated (SPEC section 6).

    The one application of a correction, for the write side, the fold and the
    audit trail.  Raises :class:`~ledger.domain.events.InvalidRecord` naming the
    field when the corrected event would be invalid.  The id is set aside while
    validating and put back: corrections cannot change it, and the stored id
    must survive whatever the schema says of ids.  A ``stored`` correction (one
    read back) is applied even where a constraint tightened since refuses it
    (issue 11: what was accepted stays readable).
    """
    event_id = record.id
    apply = stored_changes if stored else apply_changes
    changed = apply(msgspec.structs.replace(record, id=None), changes)
    return msgspec.structs.replace(changed, id=event_id)


def amendable(record: Record) -> bool:
    """Whether a correction or void may name ``record`` (SPEC section 6).

    Only the clinical events of the import format: never a correction or void
    itself, nor the ledger's own records (refused enrollments, signatures,
    users, the lock, refused attempts).
    """
    return isinstance(record, ClinicalRecord) and RECORD_TYPES.get(record.type) is type(record)
