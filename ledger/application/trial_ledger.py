"""The trial ledger application: the use cases site staff and read models call.

SPEC sections 4-6.  One method writes (:meth:`TrialLedger.record`): a batch of
records, from one command or a whole import file, is checked against the
schema, the protocol and each participant's history, made idempotent by client
``id``, and saved in one transaction or not at all.  Reading streams the stored
events in ledger order (:meth:`TrialLedger.entries`).

A bulk import (issue #7) takes the same path as one command, with shortcuts
that keep every check and every stored byte the same: one query finds which
participants already have events (the others are not loaded at all); the
events of a new participant are built without an aggregate, by the same rules
(:class:`_NewStream`); the chart is indexed by record type so that each rule
looks only at the records it concerns (:class:`~ledger.domain.rules.ordering.Chart`); and lines that
already name their site, and no user but the login's, are not copied.  ``tests/test_reliability.py``
checks that the stored bytes equal the plain path's.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import msgspec
from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import CanMutateAggregate
from eventsourcing.persistence import Notification, OperationalError, RecordConflictError
from eventsourcing.utils import get_topic
from msgspec.structs import replace

from ledger.application import access
from ledger.application.protocols import configured_version, protocol_versions
from ledger.domain.entry import Entry
from ledger.domain.errors import Ineligible, InvalidInput, LedgerError, LockRefused, Refused
from ledger.domain.events import (
    SAME_DAY_ORDER,
    ClinicalRecord,
    EnrollmentRefused,
    EventCorrected,
    EventVoided,
    InvalidRecord,
    ParticipantEnrolled,
    ParticipantScreened,
    Record,
    decode_line,
    fill,
)
from ledger.domain.participant import EVENT_CLASS, Participant, ledger_event_id
from ledger.domain.protocol import DEFAULT_PROTOCOL, Protocol, load_protocol
from ledger.domain.rules import ordering as rules
from ledger.domain.rules.sites import site_of
from ledger.domain.rules.versions import ProtocolVersions
from ledger.storage.codec import Codec
from ledger.storage.seal import content_hash
from ledger.storage.staging import Staging
from ledger.storage.stores import Login, require_ledger, store_env, store_url
from ledger.storage.transcoder import MsgspecTranscoder

MAX_ATTEMPTS = 5
# Lines an import checks at once (whole participants): what bounds its memory (issue 14).
STAGED_GROUP_LINES = 20_000
T = TypeVar("T")


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Receipt:
    """What a write did: the ids stored and the ids skipped as already stored."""

    stored: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Line:
    """One record of a batch and where it came from (a line number, or 0 for a command)."""

    number: int
    record: Record


@dataclass
class _Checked:
    """A checked batch: what it would store (pending in ``aggregates``) and every problem found."""

    receipt: Receipt = field(default_factory=Receipt)
    aggregates: list[Participant | _NewStream] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    ineligible: list[Ineligible] = field(default_factory=list)
    refusals: list[Participant] = field(default_factory=list)


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
        protocol_text: bytes | None = None,
        clock: Callable[[], dt.datetime] = utc_now,
        create: bool = True,
    ) -> None:
        """Open the ledger on ``store``; without ``create`` it must exist (issue 11: reads create nothing)."""
        self.store = store_url(store)
        # The protocol file the ledger is opened with: what ``init`` adopts, and the
        # one version of a ledger that has adopted none (ledger.application.protocols).
        # A protocol given as an object (library use) is kept as its JSON.
        self.protocol = protocol or load_protocol()
        if protocol_text is None:
            protocol_text = (
                DEFAULT_PROTOCOL.read_bytes() if protocol is None else msgspec.json.encode(protocol)
            )
        self.protocol_text = protocol_text
        self.clock = clock
        # Checked before the library connects: connecting would create the file.
        require_ledger(self.store, create=create)
        # Opening an existing ledger makes no table: a read runs on a read-only file or login.
        super().__init__({**store_env(self.store), **({} if create else {"CREATE_TABLE": "false"})})
        # Stored bytes as the mapper writes them (compressed, enciphered: issue 13).
        self.codec = Codec.of(self.mapper)
        # The read model's summaries judge a ledger that adopted no version by the file it is opened with.
        self.recorder.feed.writer.configured = functools.partial(  # type: ignore[attr-defined]
            configured_version, self.protocol, self.protocol_text
        )

    def reopening(self) -> Callable[[], TrialLedger]:
        """How to open this ledger again, on connections of its own, in another process (issue 14).

        It pickles when the protocol and the clock do (a fork server's workers get it so).
        """
        return functools.partial(
            type(self),
            self.store,
            protocol=self.protocol,
            protocol_text=self.protocol_text,
            clock=self.clock,
            create=False,
        )

    @functools.cached_property
    def login(self) -> Login | None:
        """The database login of a PostgreSQL store (issue 12, item 1); None on SQLite."""
        return self.recorder.login()  # type: ignore[attr-defined,no-any-return]

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

        ``user`` is the acting login (:func:`ledger.application.access.acting`):
        it is recorded as who entered every line, and access control judges it
        alone (issue 12, item 5).  A line's own ``user`` field is the source
        system's attribution: it is kept as ``source_user`` and grants nothing.
        ``site`` fills lines that do not name their own.  Lines whose
        ``id`` is already stored with the same content are skipped.  Raises
        :class:`InvalidInput` listing every bad line, or :class:`Ineligible`.
        With ``record_refusal`` (the ``enroll`` command) a refused enrollment is
        itself recorded as ``EnrollmentRefused`` before the refusal is raised.
        """
        lines = [r if isinstance(r, Line) else Line(0, r) for r in records]
        login = access.acting(self, user, _appending(lines))
        return self.write(
            lambda: self._record_once(lines, login, site, record_refusal),
            action=_appending(lines),
            user=login,
        )

    def write(self, attempt: Callable[[], T], *, action: str | None = None, user: str | None = None) -> T:
        """Run ``attempt`` (read, check, save) until no other writer got in between.

        ``action`` and ``user`` say what is attempted and by whom: an attempt the
        database lock refuses is then recorded as refused (issue 12, item 7).

        A conflict (another writer appended to the same streams, or stored the
        same id, after ``attempt`` read them) reruns the whole attempt from a new
        read: its idempotency check then skips what the other writer stored
        (issue 11, item 9: a retry is safe under concurrency).  So does invalid
        input found while another writer committed: the reads may have straddled
        that commit, and the answer stands only if a consistent read repeats it.
        """
        for number in range(MAX_ATTEMPTS):
            read_at = self.recorder.max_notification_id() or 0
            try:
                return attempt()
            except InvalidInput:
                # Judged on reads that another writer's commit fell between (the ids
                # before it, the streams after it: "already screened"): judge again.
                if number == MAX_ATTEMPTS - 1 or (self.recorder.max_notification_id() or 0) == read_at:
                    raise
            except RecordConflictError:
                # Another writer appended to the same participant meanwhile, or
                # stored the same id: read again and redo the checks.
                if number == MAX_ATTEMPTS - 1:
                    raise Refused("the store kept changing under this write; try again") from None
            except OperationalError as exc:
                raise Refused(f"database busy or locked: {exc}") from None
            except LockRefused as exc:
                if action is None:
                    raise
                access.refuse(self, [str(exc)], action=action, user=user)
        raise AssertionError("unreachable")

    def _record_once(self, lines: list[Line], login: str, site: str | None, record_refusal: bool) -> Receipt:
        at = self.clock()
        # Every read below sees at least this much; the save is refused as a
        # conflict if one of the batch's streams grew after it.
        read_at = self.recorder.max_notification_id() or 0
        versions, users = protocol_versions(self), access.Registry.load(self)
        checked = self._check(lines, login, site, record_refusal, at, versions, users)
        if checked.problems:
            if checked.refusals and len(checked.ineligible) == len(checked.problems):
                self.save(*checked.refusals)
            raise _failure(checked.problems, len(checked.ineligible))
        self.save(*checked.aggregates, read_at=read_at)
        return checked.receipt

    def record_staged(self, staging: Staging, *, user: str | None = None, site: str | None = None) -> Receipt:
        """Store an import's staged lines, all or nothing, in bounded memory (SPEC section 6, issue 14).

        The lines are checked as :meth:`record` checks a batch, one group of
        whole participants at a time; each group's events are staged as the rows
        the recorder stores, and once every line has passed they are moved into
        the ledger in one transaction.  Retries as :meth:`write` does.
        """
        login = access.acting(self, user, "import")
        return self.write(lambda: self._record_staged_once(staging, login, site), action="import", user=login)

    def _record_staged_once(self, staging: Staging, login: str, site: str | None) -> Receipt:
        at = self.clock()
        read_at = self.recorder.max_notification_id() or 0
        versions = protocol_versions(self)
        users = access.Registry.load(self)
        stored: dict[str, str] = {}
        for targets in staging.targets():
            stored.update((eid, participant) for eid, (participant, _) in self.lookup(targets).items())
        staging.resolve(stored)
        staging.clear_events()
        receipt = Receipt()
        problems = [
            f"line {number}: id: {rid} is already stored with different content"
            for number, rid in staging.id_clashes()
        ]
        ineligible = 0
        for group in staging.groups(STAGED_GROUP_LINES):
            lines = [Line(number, decode_line(raw)) for number, raw in group]
            checked = self._check(lines, login, site, False, at, versions, users)
            receipt.stored.extend(checked.receipt.stored)
            receipt.skipped.extend(checked.receipt.skipped)
            problems.extend(checked.problems)
            ineligible += len(checked.ineligible)
            if not problems:
                to_stored = self.mapper.to_stored_event
                staging.add_events(
                    to_stored(e) for aggregate in checked.aggregates for e in aggregate.collect_events()
                )
        if problems:
            raise _failure(problems, ineligible)
        events = staging.events()
        if events:
            self.recorder.insert_events(events, read_at=read_at)
        return receipt

    def _check(
        self,
        lines: list[Line],
        login: str,
        site: str | None,
        record_refusal: bool,
        at: dt.datetime,
        versions: ProtocolVersions,
        users: access.Registry | None,
    ) -> _Checked:
        """Check a batch against the schema, access, idempotency and each participant's chart.

        Nothing is saved: the events to store are pending in ``aggregates``.
        """
        checked = _Checked()
        problems, receipt = checked.problems, checked.receipt
        filled = self._fill(lines, login, site, problems, versions)
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
        self._check_access(users, login, filled, owners)
        by_participant: dict[str, list[Line]] = defaultdict(list)
        for ln in todo:
            participant = _participant_of(ln.record, owners)
            if participant is None:
                problems.append(_at(ln, f"target: no event {ln.record.target} in the ledger"))  # type: ignore[attr-defined]
            elif participant in access.LOG_STREAMS:
                problems.append(_at(ln, f"target: {ln.record.target} is not a participant's event"))  # type: ignore[attr-defined]
            else:
                by_participant[participant].append(ln)
        existing = self.recorder.seal.participants(self.recorder.datastore, list(by_participant))  # type: ignore[attr-defined]
        for participant, batch in by_participant.items():
            aggregate: Participant | _NewStream | None = None
            if participant in existing:
                aggregate = self._load(participant)
            elif not record_refusal and all(isinstance(ln.record, ClinicalRecord) for ln in batch):
                aggregate = _NewStream(participant)
            protocol = _judged_under(versions, aggregate.chart if aggregate else None, batch, at.date())
            for ln in sorted(batch, key=_batch_order):
                try:
                    if aggregate is None:
                        if not isinstance(ln.record, ParticipantScreened):
                            raise InvalidInput(f"{participant}: participant: not screened")
                        aggregate = Participant.screen(ln.record, protocol, at)
                        receipt.stored.append(aggregate.chart.first(ParticipantScreened).id or "")  # type: ignore[union-attr]
                    else:
                        receipt.stored.append(aggregate.append(ln.record, protocol, at))
                except Ineligible as refusal:
                    checked.ineligible.append(refusal)
                    problems.append(_at(ln, str(refusal)))
                    if record_refusal and isinstance(aggregate, Participant):
                        checked.refusals.append(self._refusal(aggregate, ln.record, refusal, protocol, at))
                except LedgerError as exc:
                    problems.append(_at(ln, str(exc)))
            if aggregate is not None:
                checked.aggregates.append(aggregate)
        return checked

    def _check_access(
        self, users: access.Registry | None, login: str, lines: list[Line], owners: dict[str, str]
    ) -> None:
        """Refuse the whole batch (and record it) if the login may not append a line (issue #6, issue 12).

        Each refused line is named with the reason; the refusal is the login's.
        """
        denied = []
        concerned = set()
        for ln in lines:
            participant = _participant_of(ln.record, owners)
            concerned.add(participant)
            reason = access.refusal(users, login, "write", participant, ln.record.site)
            if reason is not None:
                denied.append(_at(ln, reason))
        if denied:
            access.refuse(
                self,
                denied,
                action=_appending(lines),
                user=login,
                participant=concerned.pop() if len(concerned) == 1 else None,
            )

    def _fill(
        self,
        lines: list[Line],
        login: str,
        site: str | None,
        problems: list[str],
        versions: ProtocolVersions,
    ) -> list[Line]:
        """Each record as stored: entered by ``login``, with its ``site`` (SPEC section 6, issue 12).

        A line's own ``user`` (the source system's attribution) moves to ``source_user``.
        """
        sites = {code for version in versions.adopted for code in version.protocol.sites}
        filled = []
        for ln in lines:
            record = ln.record
            try:
                check_client_id(record)
            except InvalidInput as exc:
                problems.append(_at(ln, str(exc)))
                continue
            if record.source_user is not None:
                problems.append(_at(ln, "source_user: set by the ledger from the line's `user` field"))
                continue
            where = record.site or site
            if where is None and isinstance(record, ClinicalRecord):
                where = site_of(record.participant)
            if where is not None and where not in sites:
                problems.append(_at(ln, f"site: unknown site code '{where}'"))
                continue
            source = None if record.user == login else record.user
            if login != record.user or where != record.site:
                try:
                    ln = Line(ln.number, fill(record, user=login, site=where, source_user=source))
                except InvalidRecord as exc:
                    # Never stored (the batch is invalid), but still judged by access control,
                    # so that an unknown user's attempt on a closed ledger is refused and recorded.
                    problems.append(_at(ln, str(exc)))
                    ln = Line(ln.number, replace(record, user=login, site=where, source_user=source))
            filled.append(ln)
        return filled

    def _load(self, participant: str) -> Participant | None:
        """The participant's aggregate from its stored events (issue 14: a cost per event, not per check)."""
        try:
            return self.repository.get(participant, projector_func=_project)  # type: ignore[return-value]
        except AggregateNotFoundError:
            return None

    def _refusal(
        self, aggregate: Participant, record: Record, refusal: Ineligible, protocol: Protocol, at: dt.datetime
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
        fresh.append(refused, protocol, at)
        return fresh

    # -- reading -----------------------------------------------------------------------

    def lookup(self, event_ids: Sequence[str]) -> dict[str, tuple[str, bytes]]:
        """Stored event ids among ``event_ids``: ``{id: (participant, content hash)}``."""
        seal = self.recorder.seal  # type: ignore[attr-defined]
        return seal.lookup(self.recorder.datastore, list(dict.fromkeys(event_ids)))  # type: ignore[attr-defined]

    def entries(
        self, after: int = 0, known_at: dt.datetime | None = None, batch: int = 20_000
    ) -> Iterator[Entry]:
        """Every stored event after position ``after`` in ledger order (SPEC section 4).

        With ``known_at``, only those the ledger had recorded by then.  The rows
        are read in batches of ``batch`` with plain SQL below the notification
        log (one msgspec pass per row), so a rebuild streams in constant memory.
        """
        scan = self.recorder.scan  # type: ignore[attr-defined]
        decode = self.codec.decode
        while True:
            rows = scan(after, batch)
            for position, participant, stored in rows:
                state = decode(stored)
                if known_at is None or state.timestamp <= known_at:
                    yield Entry(position, state.timestamp, participant, state.record)
            if len(rows) < batch:
                return
            after = rows[-1][0]

    def appended_by(self, batch: int = 20_000) -> Iterator[tuple[int, str]]:
        """Each sealed position with the database login that appended it, in ledger order (issue 12).

        PostgreSQL only, and only rows a login that is not a superuser sealed
        after ``init`` secured the schema; nothing on SQLite.
        """
        after = 0
        while True:
            rows = self.recorder.appended_by(after, batch)  # type: ignore[attr-defined]
            yield from rows
            if len(rows) < batch:
                return
            after = rows[-1][0]

    def sealed_logins(self, stream: str) -> list[tuple[int, int, str]]:
        """``(position, version, login)`` of ``stream``'s rows whose ``user`` must be that login (issue 12).

        PostgreSQL only: the login that sealed the row, except a superuser's and a
        row sealed before ``init`` secured the schema (no check); ``""`` for a row no
        ledger entry seals.  One query on the stream's rows; nothing on SQLite.
        """
        return self.recorder.sealed_logins(stream)  # type: ignore[attr-defined,no-any-return]

    def notifications(self, after: int = 0, batch: int = 5000) -> Iterator[Notification]:
        """Every stored event after position ``after`` as stored: the bytes the seal covers."""
        start = after + 1
        while True:
            notifications = self.notification_log.select(start=start, limit=batch)
            yield from notifications
            if len(notifications) < batch:
                return
            start = notifications[-1].id + 1


class _NewStream:
    """The events of a participant the store has none of, built without an aggregate.

    For a batch of clinical records only (a bulk import's common case): the same
    event ids, the same :func:`~ledger.domain.rules.ordering.check_clinical` against the same
    chart, the same domain events as :meth:`Participant.screen` followed by
    :meth:`Participant.append`, minus the aggregate's per-event bookkeeping.
    :meth:`Application.save` takes it like an aggregate (``id``, ``collect_events``).
    """

    _topic = get_topic(Participant)

    def __init__(self, participant: str) -> None:
        self.id = participant
        self.version = Participant.INITIAL_VERSION - 1
        self.chart = rules.Chart()
        self.events: list[CanMutateAggregate[str]] = []

    def append(self, record: Record, protocol: Protocol, at: dt.datetime) -> str:
        """Check and record one clinical record, as :meth:`Participant.append` would; returns its id."""
        assert isinstance(record, ClinicalRecord)
        version = self.version + 1
        first = version == Participant.INITIAL_VERSION
        if first and not isinstance(record, ParticipantScreened):
            raise InvalidInput(f"{self.id}: participant: not screened")
        if record.id is None:
            record = fill(record, id=ledger_event_id(self.id, version))
        rules.check_clinical(self.chart, record, protocol, at)
        if first:
            event: CanMutateAggregate[str] = Participant.Screened(
                originator_id=self.id,
                originator_version=version,
                timestamp=at,
                record=record,
                originator_topic=self._topic,
            )
        else:
            event = EVENT_CLASS[type(record)](
                originator_id=self.id, originator_version=version, timestamp=at, record=record
            )
        self.chart.records[record.id or ""] = record
        self.events.append(event)
        self.version = version
        return record.id or ""

    def collect_events(self) -> list[CanMutateAggregate[str]]:
        events, self.events = self.events, []
        return events


def _project(aggregate: Participant | None, events: Iterable[CanMutateAggregate[str]]) -> Participant | None:
    """The library's ``project_aggregate`` without its per-event ``isinstance`` of a runtime protocol.

    That check costs more than the rest of applying an event (tens of microseconds
    each, issue 14: most of loading a participant with thousands of events); the
    stream holds only the aggregate's own event classes, which mutate it.
    """
    for event in events:
        aggregate = event.mutate(aggregate)  # type: ignore[assignment]
    return aggregate


def _judged_under(
    versions: ProtocolVersions, chart: rules.Chart | None, batch: list[Line], today: dt.date
) -> Protocol:
    """The protocol version a participant's batch is checked under (SPEC section 2).

    The version in force on the enrollment date, else the screening date, taken
    from the stored chart or from the batch that brings them.
    """
    records = [ln.record for ln in batch]

    def first(kind: type[T]) -> T | None:
        stored = chart.first(kind) if chart is not None else None  # type: ignore[type-var]
        return stored or next((r for r in records if isinstance(r, kind)), None)

    screening, enrollment = first(ParticipantScreened), first(ParticipantEnrolled)
    if screening is None:  # refused as not screened; any version says so
        return versions.in_force(today).protocol
    return versions.for_participant(
        screening.effective, enrollment.effective if enrollment else None
    ).protocol


def _failure(problems: list[str], ineligible: int) -> LedgerError:
    """The refusal of a batch: exit 3 when every problem is a failed eligibility, else exit 2."""
    if ineligible == len(problems):
        return Refused(_summary(problems, "refused"), problems=problems)
    return InvalidInput(_summary(problems, "invalid"), problems=problems)


def _summary(problems: list[str], kind: str) -> str:
    """One line for many problems: the only one, or how many and the first."""
    if len(problems) == 1:
        return problems[0]
    return f"{len(problems)} {kind} lines, nothing stored; first: {problems[0]}"


def _appending(lines: list[Line]) -> str:
    """The action of a batch, as refusals record it: ``append`` and the record types."""
    return "append " + ", ".join(sorted({ln.record.type for ln in lines}))


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
        return (0, record.effective, SAME_DAY_ORDER[record.type], line.number)
    return (1, dt.date.min, 0, line.number)
