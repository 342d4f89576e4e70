"""The trial ledger application: the use cases site staff and read models call.

SPEC sections 4-6.  One method writes (:meth:`TrialLedger.record`): a batch of
records, from one command or a whole import file, is checked against the
schema, the protocol and each participant's history, made idempotent by client
``id``, and saved in one transaction or not at all.  Reading goes through the
library's notification log (:meth:`TrialLedger.entries`).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import OperationalError, RecordConflictError
from msgspec.structs import replace

from ledger.domain import Participant
from ledger.entry import Entry
from ledger.errors import Ineligible, InvalidInput, LedgerError, Refused
from ledger.events import (
    ClinicalRecord,
    EnrollmentRefused,
    EventCorrected,
    EventVoided,
    ParticipantEnrolled,
    ParticipantScreened,
    Record,
)
from ledger.protocol import Protocol, load_protocol
from ledger.seal import content_hash
from ledger.stores import store_env, store_url
from ledger.transcoder import MsgspecTranscoder, decode_state

# Records of one participant in one batch are applied by clinical date, then in
# this order on the same date, then in the order given (SPEC section 6: an
# import may list lines in any order).
_SAME_DAY_ORDER = {
    "ParticipantScreened": 0,
    "ParticipantEnrolled": 1,
    "MSCInfused": 2,
    "CMVLoadMeasured": 3,
    "CMVDiseaseAssessed": 3,
    "AdverseEventReported": 4,
    "AdverseEventUpdated": 5,
    "ParticipantWithdrew": 6,
    "ParticipantDied": 7,
}
MAX_ATTEMPTS = 5


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Receipt:
    """What a write did: the ids stored and the ids skipped as already stored."""

    stored: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


@dataclass
class Line:
    """One record of a batch and where it came from (a line number, or 0 for a command)."""

    number: int
    record: Record


def check_client_id(record: Record) -> None:
    """``#`` is reserved for the ids the ledger gives (``NFH-001#3``)."""
    if record.id is not None and "#" in record.id:
        raise InvalidInput("id: '#' is reserved for ledger-assigned event ids")


class TrialLedger(Application[str]):
    """The ledger of one trial, on one store (SPEC section 6, ``--store``)."""

    name = "TrialLedger"
    # Read models pull the notification log in sections this large (SPEC section 4).
    log_section_size = 20_000

    def __init__(
        self,
        store: str | None = None,
        *,
        protocol: Protocol | None = None,
        clock: Callable[[], dt.datetime] = utc_now,
    ) -> None:
        self.store = store_url(store)
        self.protocol = protocol or load_protocol()
        self.clock = clock
        super().__init__(store_env(self.store))

    def construct_transcoder(self) -> MsgspecTranscoder:
        return MsgspecTranscoder()

    # -- writing -----------------------------------------------------------------------

    def record(
        self,
        records: Sequence[Record] | Sequence[Line],
        *,
        user: str | None = None,
        site: str | None = None,
        record_refusal: bool = False,
    ) -> Receipt:
        """Store a batch of records, all or nothing (SPEC section 6).

        ``user`` and ``site`` fill lines that do not name their own.  Lines whose
        ``id`` is already stored with the same content are skipped.  Raises
        :class:`InvalidInput` listing every bad line, or :class:`Ineligible`.
        With ``record_refusal`` (the ``enroll`` command) a refused enrollment is
        itself recorded as ``EnrollmentRefused`` before the refusal is raised.
        """
        lines = [r if isinstance(r, Line) else Line(0, r) for r in records]
        for attempt in range(MAX_ATTEMPTS):
            try:
                return self._record_once(lines, user, site, record_refusal)
            except RecordConflictError:
                # Another writer appended to the same participant meanwhile, or
                # stored the same id: read again and redo the checks.
                if attempt == MAX_ATTEMPTS - 1:
                    raise Refused("the store kept changing under this write; try again") from None
            except OperationalError as exc:
                raise Refused(f"database busy or locked: {exc}") from None
        raise AssertionError("unreachable")

    def _record_once(
        self, lines: list[Line], user: str | None, site: str | None, record_refusal: bool
    ) -> Receipt:
        problems: list[str] = []
        ineligible: list[Ineligible] = []
        receipt = Receipt()
        at = self.clock()
        filled = self._fill(lines, user, site, problems)
        known = self.lookup(
            [ln.record.id for ln in filled if ln.record.id]
            + [ln.record.target for ln in filled if isinstance(ln.record, EventCorrected | EventVoided)]
        )
        batch_ids: dict[str, bytes] = {}
        owners: dict[str, str] = {eid: participant for eid, (participant, _) in known.items()}
        todo: list[Line] = []
        for ln in filled:
            rid = ln.record.id
            if rid is None:
                todo.append(ln)
                continue
            digest = content_hash(ln.record)
            previous = known.get(rid, (None, batch_ids.get(rid)))[1]
            if previous is None:
                batch_ids[rid] = digest
                todo.append(ln)
            elif previous == digest:
                receipt.skipped.append(rid)
            else:
                problems.append(_at(ln, f"id: {rid} is already stored with different content"))
        for ln in todo:
            if isinstance(ln.record, ClinicalRecord) and ln.record.id:
                owners[ln.record.id] = ln.record.participant
        by_participant: dict[str, list[Line]] = defaultdict(list)
        for ln in todo:
            participant = _participant_of(ln.record, owners)
            if participant is None:
                problems.append(_at(ln, f"target: no event {ln.record.target} in the ledger"))  # type: ignore[attr-defined]
            else:
                by_participant[participant].append(ln)
        aggregates: list[Participant] = []
        refusals: list[Participant] = []
        for participant, batch in by_participant.items():
            aggregate = self._load(participant)
            for ln in sorted(batch, key=_batch_order):
                try:
                    if aggregate is None:
                        if not isinstance(ln.record, ParticipantScreened):
                            raise InvalidInput(f"{participant}: participant: not screened")
                        aggregate = Participant.screen(ln.record, self.protocol, at)
                        receipt.stored.append(aggregate.chart.first(ParticipantScreened).id or "")  # type: ignore[union-attr]
                    else:
                        receipt.stored.append(aggregate.append(ln.record, self.protocol, at))
                except Ineligible as refusal:
                    ineligible.append(refusal)
                    problems.append(_at(ln, str(refusal)))
                    if record_refusal and aggregate is not None:
                        refusals.append(self._refusal(aggregate, ln.record, refusal, at))
                except LedgerError as exc:
                    problems.append(_at(ln, str(exc)))
            if aggregate is not None:
                aggregates.append(aggregate)
        if problems:
            if refusals and len(ineligible) == len(problems):
                self.save(*refusals)
            if len(ineligible) == len(problems):
                raise Ineligible(ineligible[0].participant, problems)
            raise InvalidInput(problems[0], problems=problems)
        self.save(*aggregates)
        return receipt

    def _fill(self, lines: list[Line], user: str | None, site: str | None, problems: list[str]) -> list[Line]:
        """Each record with its ``user`` and ``site`` (SPEC section 6: per line or by options)."""
        filled = []
        for ln in lines:
            record = ln.record
            try:
                check_client_id(record)
            except InvalidInput as exc:
                problems.append(_at(ln, str(exc)))
                continue
            who = record.user or user
            if who is None:
                problems.append(_at(ln, "user: required (give --user, TRIAL_LEDGER_USER or a `user` field)"))
                continue
            where = record.site or site
            if where is None and isinstance(record, ClinicalRecord):
                where = record.participant.split("-")[0]
            if where is not None and where not in self.protocol.sites:
                problems.append(_at(ln, f"site: unknown site code '{where}'"))
                continue
            filled.append(Line(ln.number, replace(record, user=who, site=where)))
        return filled

    def _load(self, participant: str) -> Participant | None:
        try:
            return self.repository.get(participant)  # type: ignore[return-value]
        except AggregateNotFoundError:
            return None

    def _refusal(
        self, aggregate: Participant, record: Record, refusal: Ineligible, at: dt.datetime
    ) -> Participant:
        """A fresh copy of the participant with the refused enrollment recorded."""
        assert isinstance(record, ParticipantEnrolled)
        fresh = self._load(aggregate.id) or aggregate
        refused = EnrollmentRefused(
            participant=record.participant,
            effective=record.effective,
            user=record.user,
            site=record.site,
            weight_kg=record.weight_kg,
            criteria=refusal.criteria,
        )
        fresh.append(refused, self.protocol, at)
        return fresh

    # -- reading -----------------------------------------------------------------------

    def lookup(self, event_ids: Sequence[str]) -> dict[str, tuple[str, bytes]]:
        """Stored event ids among ``event_ids``: ``{id: (participant, content hash)}``."""
        seal = self.recorder.seal  # type: ignore[attr-defined]
        return seal.lookup(self.recorder.datastore, list(dict.fromkeys(event_ids)))  # type: ignore[attr-defined]

    def entries(
        self, after: int = 0, known_at: dt.datetime | None = None, batch: int = 5000
    ) -> Iterator[Entry]:
        """Every stored event after position ``after`` in ledger order (SPEC section 4).

        With ``known_at``, only those the ledger had recorded by then.
        """
        start = after + 1
        while True:
            notifications = self.notification_log.select(start=start, limit=batch)
            for n in notifications:
                state = decode_state(n.state)
                if known_at is None or state.timestamp <= known_at:
                    yield Entry(n.id, state.timestamp, str(n.originator_id), state.record)
            if len(notifications) < batch:
                return
            start = notifications[-1].id + 1


def _at(line: Line, message: str) -> str:
    return f"line {line.number}: {message}" if line.number else message


def _participant_of(record: Record, owners: dict[str, str]) -> str | None:
    if isinstance(record, ClinicalRecord):
        return record.participant
    assert isinstance(record, EventCorrected | EventVoided)
    return owners.get(record.target)


def _batch_order(line: Line) -> tuple[int, dt.date, int, int]:
    record = line.record
    if isinstance(record, ClinicalRecord):
        return (0, record.effective, _SAME_DAY_ORDER[record.type], line.number)
    return (1, dt.date.min, 0, line.number)
