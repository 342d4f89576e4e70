"""The participant aggregate: one stream of immutable events per participant.

SPEC sections 2, 5 and 6.  Every event type of the import format is a domain
event of the eventsourcing library carrying the validated record (with ``id``,
``user`` and ``site`` filled in by the ledger) and ``timestamp``, the UTC time
the ledger recorded it (``recorded_at``).  Corrections and voids are events of
the stream they amend; the original stays as it was.  The aggregate's state is
what the write-side rules need: the current value of every clinical record.
"""

import datetime as dt
from dataclasses import dataclass
from typing import Any

from eventsourcing.domain import BaseAggregate, CanInitAggregate, CanMutateAggregate
from eventsourcing.utils import register_topic

from ledger.domain.errors import InvalidInput
from ledger.domain.events import (
    STORED_TYPES,
    AdverseEventCoded,
    AdverseEventReported,
    ClinicalRecord,
    EventCorrected,
    EventVoided,
    InvalidRecord,
    ParticipantScreened,
    Record,
    RecordSigned,
    checked_changes,
    fill,
)
from ledger.domain.protocol import Protocol
from ledger.domain.rules import coding as coding_rules
from ledger.domain.rules import ordering as rules
from ledger.domain.rules.corrections import amendable, corrected


def ledger_event_id(participant: str, version: int) -> str:
    """The id the ledger gives an event entered without a client ``id``."""
    return f"{participant}#{version}"


@dataclass(frozen=True)
class RecordEvent(CanMutateAggregate[str]):
    """A domain event carrying one validated record; applying it hands the record to ``take``."""

    originator_id: str
    originator_version: int
    timestamp: dt.datetime
    record: Record

    def apply(self, aggregate: Any) -> None:
        aggregate.take(self.record)


class Participant(BaseAggregate[str]):
    """A trial participant, identified by the pseudonymous code ``<SITE>-<NNN>``."""

    class Event(RecordEvent):
        pass

    @dataclass(frozen=True)
    class Screened(Event, CanInitAggregate[str]):
        originator_topic: str

    # The event classes of the other records are made from the records' own
    # declarations (:func:`_event_classes`): Participant.Enrolled, .Infused, ...

    def __init__(self, record: ParticipantScreened) -> None:
        self.chart = rules.Chart()
        self.voided: set[str] = set()
        self.signatures: set[str] = set()
        self.codings: dict[str, AdverseEventCoded] = {}  # the latest coding of each AE, by ae_id

    @staticmethod
    def create_id(record: ParticipantScreened) -> str:
        return record.participant

    # -- use cases -----------------------------------------------------------------

    @classmethod
    def screen(cls, record: ParticipantScreened, protocol: Protocol, at: dt.datetime) -> "Participant":
        """Screen a new participant (the stream's first event)."""
        rules.check_clinical(rules.Chart(), record, protocol, at)
        record = _with_id(record, record.participant, cls.INITIAL_VERSION)
        return cls._create(cls.Screened, record=record, timestamp=at)

    def append(self, record: Record, protocol: Protocol, at: dt.datetime) -> str:
        """Check ``record`` against the rules and the chart, then record it.

        Returns the event id.  Raises :class:`InvalidInput` or
        :class:`~ledger.domain.errors.Ineligible`; nothing changes then.
        """
        record = _with_id(record, self.id, self.version + 1)
        if isinstance(record, EventCorrected):
            self._check_correction(record, protocol, at)
        elif isinstance(record, EventVoided):
            target = self._amendable(record.target, "target")
            rules.check_entered_at(self.id, record.entered_at, target, at)
        elif isinstance(record, AdverseEventCoded):
            self._check_coding(record)
        elif not isinstance(record, RecordSigned):
            assert isinstance(record, ClinicalRecord)
            rules.check_clinical(self.chart, record, protocol, at)
        self.trigger_event(EVENT_CLASS[type(record)], record=record, timestamp=at)
        return record.id or ""

    # -- state -----------------------------------------------------------------------

    def take(self, record: Record) -> None:
        """Evolve the chart with one recorded event (SPEC section 5)."""
        record_id = record.id or ""
        records = self.chart.records
        if isinstance(record, RecordSigned):
            self.signatures.add(record_id)
        elif isinstance(record, AdverseEventCoded):
            self.codings[record.ae_id] = record
        elif isinstance(record, EventCorrected):
            records[record.target] = corrected(records[record.target], record.changes, stored=True)  # type: ignore[assignment]
        elif isinstance(record, EventVoided):
            self.voided.add(record.target)
            del records[record.target]
        else:
            assert isinstance(record, ClinicalRecord)
            records[record_id] = record

    def _amendable(self, target: str, field: str) -> ClinicalRecord:
        """The current value of a clinical event that a correction or void may name (SPEC section 6).

        Voided events, corrections and voids themselves, and the ledger's own
        records (:func:`~ledger.domain.rules.corrections.amendable`) are refused.
        """
        if target in self.voided:
            raise InvalidInput(f"{self.id}: {field}: event {target} is voided (rule amendable_events)")
        record = self.chart.records.get(target)
        if record is None:
            raise InvalidInput(
                f"{self.id}: {field}: {target} is not a correctable event of this participant"
                " (rule amendable_events)"
            )
        if not amendable(record):
            raise InvalidInput(
                f"{self.id}: {field}: {target} ({record.type}) is a record the ledger keeps itself:"
                " it cannot be corrected or voided (rule amendable_events)"
            )
        return record

    def reported(self, ae_id: str) -> AdverseEventReported:
        """The adverse event ``ae_id`` as reported and corrected: what a coding may code (issue 15)."""
        return coding_rules.coded_report(self.id, self.chart.of_type(AdverseEventReported), ae_id)

    def _check_coding(self, coding: AdverseEventCoded) -> None:
        self.reported(coding.ae_id)
        coding_rules.check_coding(self.id, self.codings.get(coding.ae_id), coding)

    def _check_correction(self, correction: EventCorrected, protocol: Protocol, at: dt.datetime) -> None:
        """A corrected event must still be valid, and so must the chart it leaves."""
        original = self._amendable(correction.target, "target")
        try:
            checked_changes(original, correction.changes)
        except InvalidRecord as exc:
            raise InvalidInput(f"{self.id}: {exc}") from None
        changed = corrected(original, correction.changes)
        if isinstance(changed, ClinicalRecord) and changed.participant != self.id:
            raise InvalidInput(f"{self.id}: changes.participant: cannot be corrected")
        assert isinstance(changed, ClinicalRecord)
        rules.check_entered_at(self.id, correction.entered_at, changed, at)
        records = [
            changed if key == correction.target else value for key, value in self.chart.records.items()
        ]
        rules.replay(records, protocol, at)


def _with_id(record: Record, participant: str, version: int) -> Any:
    """The record with its event id: the client's ``id`` or the ledger's."""
    if record.id is not None:
        return record
    return fill(record, id=ledger_event_id(participant, version))


def _event_classes() -> dict[type[Record], type[Participant.Event]]:
    """The aggregate's event class of every record its streams hold, named by the record's ``event``.

    Issue 13: a record type declares its event class in one place
    (:class:`~ledger.domain.events.Record`); the class is made here as
    ``Participant.<event>``, so its topic (stored and sealed) is the one it has
    always had.  Classes declared above (:class:`Participant.Screened`) are used as they are.
    """
    classes: dict[type[Record], type[Participant.Event]] = {}
    for record_type in STORED_TYPES:
        if record_type.event is None:
            continue
        event_class = getattr(Participant, record_type.event, None)
        if event_class is None:
            event_class = type(
                record_type.event,
                (Participant.Event,),
                {"__module__": __name__, "__qualname__": f"Participant.{record_type.event}"},
            )
            setattr(Participant, record_type.event, event_class)
        classes[record_type] = event_class
    return classes


EVENT_CLASS = _event_classes()

# Stored events name their class by topic, and the seal covers it.  Before the
# layers of the package were made visible this aggregate lived in module
# ``ledger.domain``; events stored then keep that topic and resolve here.
LEGACY_TOPIC = "ledger.domain:Participant"
register_topic(LEGACY_TOPIC, Participant)
