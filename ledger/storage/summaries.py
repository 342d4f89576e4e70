"""The read model's summaries: each participant's standing on every as-of date, by batch (issue 14).

Two tables beside the participant timelines (:mod:`ledger.storage.feed`), both
only ever receiving ``INSERT``:

- ``rm_summary (participant, position, steps)``: a participant's
  :data:`~ledger.domain.summary.Summary` (their standing from each date on
  which it may change, :mod:`ledger.domain.summary`) as it stands once the
  batch of events ending at ``position`` is recorded; a batch that leaves a
  participant's summary as it was adds no row for them.
- ``rm_clock (position, recorded_at, high, early, versions, summaries)``: one
  row per batch, at its last position: when it was recorded (the latest
  ``recorded_at`` of its events, in microseconds since 1970 UTC), the latest
  recorded time up to it (``high``, never decreasing), the earliest of its
  own when that lies before ``high`` of the batch before or before its own
  latest (``early``: a batch recorded out of order, whose known-at moments are
  answered by a replay), the fingerprint of the protocol versions its
  summaries were computed under, and how many summary rows it added.  The
  highest ``position`` is how far the summaries go.

So ``status`` and ``endpoints`` at (as-of, known-at) read, for each participant,
the summary row with the highest position among those recorded by the known-at
moment, and in it the last step on or before the as-of date: a lookup, not a
replay.  The summaries of a batch are computed inside its write transaction
from the participant's timeline rows (:class:`SummaryWriter`), so reads never
write; ``rebuild`` computes them again from the events, a batch being a run of
events recorded at one instant.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any, NamedTuple

import msgspec
from eventsourcing.utils import resolve_topic

from ledger.domain.entry import Entry
from ledger.domain.events import ClinicalRecord, EventCorrected, EventVoided, ProtocolAdopted
from ledger.domain.participant import EVENT_CLASS
from ledger.domain.protocol import DEFAULT_PROTOCOL, load_protocol
from ledger.domain.rules.corrections import fold
from ledger.domain.rules.versions import AdoptedProtocol, ProtocolVersions, content_hash, judging_versions
from ledger.domain.summary import Standing, Step, Summary, standing_on, summary_of, touched_since
from ledger.storage.transcoder import decode_state
from ledger.storage.workers import spread

SUMMARY_TABLE = "rm_summary"
CLOCK_TABLE = "rm_clock"
PROTOCOL_STREAM = "PROTOCOL"
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# Participants of one batch read one by one; above this many, one ordered pass over the view.
ONE_BY_ONE = 500
PAGE = 20_000

_encode = msgspec.msgpack.Encoder().encode
_decode_summary = msgspec.msgpack.Decoder(tuple[Step, ...]).decode


class _LazyStep(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A stored step with its standing left undecoded: a lookup decodes only the one it needs."""

    since: dt.date
    standing: msgspec.Raw


_decode_lazy = msgspec.msgpack.Decoder(tuple[_LazyStep, ...]).decode
_decode_standing = msgspec.msgpack.Decoder(Standing | None).decode


class _Stamp(msgspec.Struct):
    timestamp: dt.datetime


_decode_stamp = msgspec.msgpack.Decoder(_Stamp).decode


def micros(moment: dt.datetime) -> int:
    """Microseconds since 1970-01-01 UTC: how the clock stores a recorded time, exactly."""
    return (moment - EPOCH) // dt.timedelta(microseconds=1)


def recorded_micros(plain: bytes) -> int:
    """The recorded time of a stored state (deciphered), in :func:`micros`, without decoding the record."""
    return micros(_decode_stamp(plain).timestamp)


def encode_summary(summary: Summary) -> bytes:
    return _encode(summary)


def decode_summary(steps: bytes) -> Summary:
    """A stored summary; raises ``msgspec.DecodeError`` or ``ValidationError`` when it is not one."""
    return _decode_summary(steps)


def standing_at(steps: bytes, as_of: dt.date) -> Standing | None:
    """A stored summary's standing on ``as_of`` (:func:`~ledger.domain.summary.standing_on`).

    Only the steps' dates and the one standing chosen are decoded: what makes a
    read of many participants cheap.  Raises ``msgspec.DecodeError`` or
    ``ValidationError`` when the bytes are not a summary.
    """
    chosen = standing_on(_decode_lazy(steps), as_of)
    return None if chosen is None else _decode_standing(chosen)


# The participant's events whose record a summary may read: clinical records, corrections, voids
# (a signature or a coding changes no summary).
_CLINICAL_EVENTS = frozenset(
    event
    for record_type, event in EVENT_CLASS.items()
    if issubclass(record_type, ClinicalRecord | EventCorrected | EventVoided)
)


@cache
def changes_summaries(topic: str) -> bool:
    """Whether a stored event's topic is a participant's event that may change their summary."""
    try:
        return resolve_topic(topic) in _CLINICAL_EVENTS
    except Exception:  # a topic no class answers to: no participant's clinical event
        return False


class ClockRow(NamedTuple):
    """One batch as ``rm_clock`` keeps it."""

    position: int
    recorded_at: int
    high: int
    early: int | None
    versions: str
    summaries: int


class SummaryTables:
    """The summaries' tables and statements, for either database."""

    def __init__(self, prefix: str, placeholder: str, blob: str, collate: str, timeline: str) -> None:
        p = placeholder
        self.summary = f"{prefix}{SUMMARY_TABLE}"
        self.clock = f"{prefix}{CLOCK_TABLE}"
        self.names = (SUMMARY_TABLE, CLOCK_TABLE)
        self.create_statements = [
            f"CREATE TABLE IF NOT EXISTS {self.summary} (participant TEXT {collate}NOT NULL, "
            f"position BIGINT NOT NULL, steps {blob} NOT NULL, PRIMARY KEY (participant, position))",
            f"CREATE INDEX IF NOT EXISTS rm_summary_position ON {self.summary} (position)",
            f"CREATE TABLE IF NOT EXISTS {self.clock} (position BIGINT PRIMARY KEY, "
            "recorded_at BIGINT NOT NULL, high BIGINT NOT NULL, early BIGINT, "
            "versions TEXT NOT NULL, summaries BIGINT NOT NULL)",
            f"CREATE INDEX IF NOT EXISTS rm_clock_high ON {self.clock} (high, position)",
            f"CREATE INDEX IF NOT EXISTS rm_clock_early ON {self.clock} (position) WHERE early IS NOT NULL",
        ]
        self.insert_summary = (
            f"INSERT INTO {self.summary} (participant, position, steps) VALUES ({p},{p},{p})"
        )
        self.insert_clock = (
            f"INSERT INTO {self.clock} (position, recorded_at, high, early, versions, summaries) "
            f"VALUES ({p},{p},{p},{p},{p},{p})"
        )
        clock_columns = "position, recorded_at, high, early, versions, summaries"
        self.select_last_clock = f"SELECT {clock_columns} FROM {self.clock} ORDER BY position DESC LIMIT 1"
        self.select_clock_all = f"SELECT {clock_columns} FROM {self.clock} ORDER BY position"
        self.select_known = (
            f"SELECT {clock_columns} FROM {self.clock} WHERE high <= {p} "
            "ORDER BY high DESC, position DESC LIMIT 1"
        )
        self.select_early_after = (
            f"SELECT position FROM {self.clock} WHERE early IS NOT NULL AND position > {p} AND early <= {p} "
            "LIMIT 1"
        )
        self.select_latest = (
            f"SELECT steps FROM {self.summary} WHERE participant = {p} AND position <= {p} "
            "ORDER BY position DESC LIMIT 1"
        )
        self.select_stream = (
            f"SELECT position, state FROM {timeline} WHERE participant = {p} ORDER BY position"
        )
        self.page_streams = (
            f"SELECT participant, position, state FROM {timeline} WHERE (participant, position) > ({p}, {p}) "
            f"ORDER BY participant, position LIMIT {p}"
        )
        self.select_protocols = (
            f"SELECT position, state FROM {timeline} WHERE participant = '{PROTOCOL_STREAM}' "
            "ORDER BY position"
        )


@dataclass
class BatchSeen:
    """What the walk over a batch's events noticed, for its clock row and its summaries."""

    low: int | None = None
    high: int | None = None
    participants: set[str] = field(default_factory=set)
    adopts: bool = False

    def see(self, stream: str, topic: str, plain: bytes) -> None:
        """Note one event of the batch: its recorded time, and whose stream it extends."""
        moment = recorded_micros(plain)
        self.low = moment if self.low is None else min(self.low, moment)
        self.high = moment if self.high is None else max(self.high, moment)
        if stream == PROTOCOL_STREAM:
            self.adopts = True
        elif changes_summaries(topic):
            self.participants.add(stream)


def configured_default() -> AdoptedProtocol:
    """The shipped protocol file as the one version of a ledger that adopted none."""
    text = DEFAULT_PROTOCOL.read_bytes()
    protocol = load_protocol()
    return AdoptedProtocol(protocol, protocol.version or "unversioned", dt.date.min, content_hash(text))


class SummaryWriter:
    """The summaries of one batch, computed and inserted inside its write transaction."""

    def __init__(self, tables: SummaryTables) -> None:
        self.tables = tables
        # The file the ledger is opened with, for a ledger that adopted no version (set by the application).
        self.configured: Callable[[], AdoptedProtocol] = configured_default

    def write(self, cursor: Any, first: int, last: int, seen: BatchSeen) -> None:
        """Add the summaries and the clock row of the batch at positions ``first`` to ``last``.

        Called after the batch's timeline rows went in, when the summaries
        covered everything before it.  A batch that adopts a protocol version
        changes how everyone is judged: every participant is summarised again.
        """
        t = self.tables
        cursor.execute(t.select_last_clock)
        previous = cursor.fetchone()
        versions = self._versions(cursor)
        fingerprint = versions.fingerprint
        everyone = seen.adopts or (previous is not None and clock_row(previous).versions != fingerprint)
        jobs = (
            (participant, rows, self._latest(cursor, participant, first - 1))
            for participant, rows in self._stream_rows(cursor, None if everyone else seen.participants)
        )
        added = 0
        page: list[tuple[str, int, bytes]] = []
        shared = (versions, everyone, first)
        for participant, steps in spread(summarise_stream, shared, jobs, _weight):
            if steps is None:
                continue
            page.append((participant, last, steps))
            added += 1
            if len(page) >= PAGE:
                cursor.executemany(t.insert_summary, page)
                page = []
        if page:
            cursor.executemany(t.insert_summary, page)
        assert seen.low is not None and seen.high is not None
        before_high = clock_row(previous).high if previous is not None else seen.low
        early = seen.low if seen.low < max(seen.high, before_high) else None
        high = max(seen.high, before_high)
        cursor.execute(t.insert_clock, (last, seen.high, high, early, fingerprint, added))

    def _versions(self, cursor: Any) -> ProtocolVersions:
        """The protocol versions adopted so far, the batch's own included."""
        cursor.execute(self.tables.select_protocols)
        adoptions = []
        for row in cursor.fetchall():
            record = decode_state(bytes(row["state"])).record
            if isinstance(record, ProtocolAdopted):
                adoptions.append((record.id or f"{PROTOCOL_STREAM}#{row['position']}", record))
        return judging_versions(adoptions, self.configured())

    def _latest(self, cursor: Any, participant: str, upto: int) -> bytes | None:
        """The participant's stored summary at or before position ``upto``, as stored (None: none)."""
        cursor.execute(self.tables.select_latest, (participant, upto))
        row = cursor.fetchone()
        return bytes(row["steps"]) if row is not None else None

    def _stream_rows(
        self, cursor: Any, streams: set[str] | None
    ) -> Iterator[tuple[str, list[tuple[int, bytes]]]]:
        """The timeline rows of each of ``streams`` (None: every stream), by stream."""
        t = self.tables
        if streams is not None and len(streams) <= ONE_BY_ONE:
            for participant in sorted(streams):
                cursor.execute(t.select_stream, (participant,))
                yield participant, [(int(r["position"]), bytes(r["state"])) for r in cursor.fetchall()]
            return
        current: str | None = None
        rows: list[tuple[int, bytes]] = []
        last: tuple[str, int] = ("", -1)
        while True:
            cursor.execute(t.page_streams, (*last, PAGE))
            page = cursor.fetchall()
            for row in page:
                participant, position, state = row["participant"], int(row["position"]), row["state"]
                last = (participant, position)
                if participant != current:
                    if current is not None and (streams is None or current in streams):
                        yield current, rows
                    current, rows = participant, []
                if streams is None or participant in streams:
                    rows.append((position, bytes(state)))
            if len(page) < PAGE:
                break
        if current is not None and (streams is None or current in streams):
            yield current, rows


# A participant's rows, with their summary before the batch: one job of :func:`summarise_stream`.
Job = tuple[str, list[tuple[int, bytes]], bytes | None]


def summarise_stream(shared: tuple[ProtocolVersions, bool, int], job: Job) -> tuple[str, bytes | None]:
    """A participant's summary once the batch from position ``first`` on is in; None when it is as it was.

    ``shared``: the protocol versions, whether everyone is summarised again (the
    versions changed), and the batch's first position.  Otherwise the summary
    is made again from the earliest date the batch's events touch
    (:func:`~ledger.domain.summary.touched_since`); a participant the batch
    leaves alike (a signature, a coding) keeps theirs.  Runs in a worker
    process for a large batch (:func:`~ledger.storage.workers.spread`).
    """
    versions, everyone, first = shared
    participant, rows, stored = job
    entries = [_entry(participant, position, state) for position, state in rows]
    after = fold(entries).get(participant)
    kept = decode_summary(stored) if stored is not None else ()
    if after is None:
        summary: Summary = ()
    elif everyone:
        summary = summary_of(after, versions)
    else:
        since = touched_since(entries, first)
        if since is None:
            return participant, None
        summary = summary_of(after, versions, kept, since)
    return participant, (encode_summary(summary) if summary != kept else None)


def _weight(job: Job) -> int:
    return len(job[1])


def _entry(participant: str, position: int, state: bytes) -> Entry:
    stored = decode_state(state)
    return Entry(position, stored.timestamp, participant, stored.record)


def clock_row(row: Any) -> ClockRow:
    """A clock row from a row of the library's cursors (SQLite's rows and psycopg's dicts, read by name).

    Raises ``TypeError`` or ``ValueError`` when a column is not of its type.
    """
    early = row["early"]
    numbers = (int(row["position"]), int(row["recorded_at"]), int(row["high"]))
    return ClockRow(
        *numbers, None if early is None else int(early), str(row["versions"]), int(row["summaries"])
    )
