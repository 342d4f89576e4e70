"""Sealing appended events into the ledger's index, hash chain and Merkle tree (SPEC section 5).

Runs inside the recorder's insert transaction, so an event is never stored
without its seal: for each new row of ``stored_events`` one row of
``ledger_entries`` (position, event id, participant, content hash, RFC 6962
leaf hash, chain hash) and the Merkle frontier in ``ledger_meta``, all committed
together or not at all.  The same code serves SQLite and PostgreSQL; only the
parameter placeholder and the schema prefix differ.

The database lock (issue #6) is enforced here too, inside the same transaction,
and it is what the sealed events say (issue 11, item 7): nothing but the
:class:`~ledger.domain.events.DatabaseUnlocked` and the records of refused attempts
(:class:`~ledger.domain.events.ActionRefused` in the ``REFUSALS`` stream, issue 12,
item 7; never in another stream, where older versions kept them) may be appended
while the ledger is locked, so the ledger is locked exactly when the last event of
the ``TRIAL`` stream is a :class:`~ledger.domain.events.DatabaseLocked`.  Each write reads that one event
(a primary-key lookup) under the write lock; no mutable row holds the lock, so
no SQL statement on a cache can open it (a ``lock`` row that older
versions kept in ``ledger_meta`` is ignored).  A writer racing a lock either
commits before it or is refused after it.

A write that read the ledger before its transaction (``read_at``: the last
position then) is refused with a conflict when another writer has meanwhile
appended to one of its streams (issue 11, item 9): the application then reads
again and redoes every check, idempotency included.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import msgspec
from eventsourcing.persistence import RecordConflictError, StoredEvent

from ledger.domain.errors import LockRefused
from ledger.domain.events import ActionRefused, DatabaseLocked, DatabaseUnlocked, Record, utc_text
from ledger.evidence.merkle import Frontier, leaf_hash
from ledger.storage.codec import Codec, StateCodec
from ledger.storage.transcoder import record_head

GENESIS = bytes(32)
# The stream of the lock's events (:class:`ledger.application.access.Trial`).
TRIAL_STREAM = "TRIAL"
# The stream of the records of refused attempts (:class:`ledger.application.access.Refusals`).
REFUSALS_STREAM = "REFUSALS"
# The table of sealed entries (one row per stored event).
ENTRIES_TABLE = "ledger_entries"
_LOCKED = DatabaseLocked.__struct_config__.tag
_UNLOCKED = DatabaseUnlocked.__struct_config__.tag
# Beyond every stream version (a BIGINT): the whole ``TRIAL`` stream is before the batch.
_NO_VERSION = 2**63 - 1
# Records that change the database lock: the only ones the seal must decode fully.
_LOCK_TYPES = frozenset({_LOCKED, _UNLOCKED})
# The record that may be sealed while the ledger is locked, besides the unlock (in REFUSALS_STREAM only).
_REFUSED = ActionRefused.__struct_config__.tag
_sha256 = hashlib.sha256
# Values per ``IN (...)`` query: well below SQLite's and PostgreSQL's parameter limits.
_IN_CHUNK = 5000
# One ``ledger_entries`` row: position, event id, participant, content, leaf and chain hashes.
EntryRow = tuple[int, str | None, str, bytes, bytes, bytes]
_record_encoder = msgspec.msgpack.Encoder()


def content_hash(record: Record) -> bytes:
    """What makes a retried line "the same content" (SPEC section 6, ``id``)."""
    return hashlib.sha256(_record_encoder.encode(record)).digest()


def canonical_entry(position: int, originator_id: str, version: int, topic: str, state: bytes) -> bytes:
    """The deterministic bytes of one stored event that its leaf hash covers.

    The position is part of it, so a reordering changes the leaves.  The bytes
    are MessagePack as ``msgpack.packb(..., use_bin_type=True)`` makes them
    (smallest int and length formats), from msgspec's faster encoder.
    """
    return _record_encoder.encode([position, str(originator_id), version, topic, bytes(state)])


def chain_hash(previous: bytes, leaf: bytes) -> bytes:
    return hashlib.sha256(previous + leaf).digest()


class Seal:
    """The SQL that keeps ``ledger_entries`` and ``ledger_meta`` in step with the events."""

    def __init__(
        self,
        events: str,
        prefix: str = "",
        placeholder: str = "?",
        blob: str = "BLOB",
        position: str = "INTEGER",
    ) -> None:
        """``events`` is the stored events table (qualified); ``position`` the entries key's type.

        SQLite's ``INTEGER`` makes the key the rowid (one index less).
        """
        self.entries = f"{prefix}{ENTRIES_TABLE}"
        self.meta = f"{prefix}ledger_meta"
        p = placeholder
        self.create_statements = [
            f"CREATE TABLE IF NOT EXISTS {self.entries} ("
            f"position {position} PRIMARY KEY, "
            "event_id TEXT NOT NULL UNIQUE, "
            "participant TEXT NOT NULL, "
            f"content_hash {blob} NOT NULL, "
            f"leaf_hash {blob} NOT NULL, "
            f"chain_hash {blob} NOT NULL)",
            "CREATE INDEX IF NOT EXISTS ledger_entries_participant "
            f"ON {self.entries} (participant, position)",
            f"CREATE TABLE IF NOT EXISTS {self.meta} (key TEXT PRIMARY KEY, value {blob} NOT NULL)",
        ]
        self.placeholder = placeholder
        # How stored bytes read: the factory sets the mapper's (:class:`~ledger.storage.codec.CodecFactory`).
        self.codec: StateCodec = Codec()
        self.insert_entry = f"INSERT INTO {self.entries} VALUES ({p},{p},{p},{p},{p},{p})"
        self.select_meta = f"SELECT key, value FROM {self.meta} WHERE key IN ('frontier', 'chain')"
        self.select_last_trial_event = (
            f"SELECT state FROM {events} WHERE originator_id = '{TRIAL_STREAM}' AND originator_version < {p} "
            "ORDER BY originator_version DESC LIMIT 1"
        )
        self.select_streams_after = f"SELECT DISTINCT participant FROM {self.entries} WHERE position > {p}"
        self.upsert_meta = (
            f"INSERT INTO {self.meta} (key, value) VALUES ({p},{p}) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
        )

    def seal(
        self,
        cursor: Any,
        positions: Sequence[int],
        stored_events: Sequence[StoredEvent],
        read_at: int | None = None,
    ) -> None:
        """Index, chain and add to the tree the events just inserted at ``positions``.

        Raises :class:`~ledger.domain.errors.Refused` for an append while locked,
        and :class:`RecordConflictError` when the batch was checked against a
        ledger that changed under it (``read_at``, see the module).
        """
        if read_at is not None:
            self._check_unchanged(cursor, read_at, stored_events)
        cursor.execute(self.select_meta)
        meta = {row["key"]: bytes(row["value"]) for row in cursor.fetchall()}
        frontier = Frontier.from_bytes(meta["frontier"]) if "frontier" in meta else Frontier()
        sealing = _Sealing(meta.get("chain", GENESIS), self._lock_in_force(cursor, stored_events), self.codec)
        # The rows are made while the database takes them: no list of a million rows.
        self.write_entries(cursor, sealing.rows(positions, stored_events))
        frontier.extend(sealing.leaves)
        cursor.executemany(self.upsert_meta, [("frontier", frontier.to_bytes()), ("chain", sealing.chain)])

    def _lock_in_force(self, cursor: Any, stored_events: Sequence[StoredEvent]) -> bytes:
        """The lock as the sealed ``TRIAL`` stream said before this batch (empty when not locked)."""
        batch = [s.originator_version for s in stored_events if s.originator_id == TRIAL_STREAM]
        cursor.execute(self.select_last_trial_event, (min(batch, default=_NO_VERSION),))
        row = cursor.fetchone()
        if row is None:
            return b""
        state = bytes(row["state"])
        if lock_change(self.codec.record(state)) is not True:
            return b""
        decoded = self.codec.decode(state)
        return _next_lock(b"", TRIAL_STREAM, decoded.record, decoded.timestamp)

    def _check_unchanged(self, cursor: Any, read_at: int, stored_events: Sequence[StoredEvent]) -> None:
        """Raise :class:`RecordConflictError` if a stream of the batch changed after ``read_at``."""
        cursor.execute(self.select_streams_after, (read_at,))
        changed = {row["participant"] for row in cursor.fetchall()}
        if changed and changed.intersection(str(s.originator_id) for s in stored_events):
            msg = "another writer appended to these participants since this batch was checked"
            raise RecordConflictError(msg)

    def write_entries(self, cursor: Any, rows: Iterable[EntryRow]) -> None:
        """Insert ``ledger_entries`` rows (PostgreSQL uses COPY instead)."""
        cursor.executemany(self.insert_entry, rows)

    def participant_leaves(self, datastore: Any, participant: str) -> list[tuple[str, bytes]]:
        """``(event id, leaf hash)`` of one stream's sealed events, in ledger order."""
        with datastore.transaction(commit=False) as cursor:
            cursor.execute(
                f"SELECT event_id, leaf_hash FROM {self.entries} WHERE participant = {self.placeholder} "
                "ORDER BY position",
                [participant],
            )
            return [(row["event_id"], bytes(row["leaf_hash"])) for row in cursor.fetchall()]

    def lookup(self, datastore: Any, event_ids: Sequence[str]) -> dict[str, tuple[str, bytes]]:
        """``{event id: (participant, content hash)}`` for the ids already stored."""
        select = f"SELECT event_id, participant, content_hash FROM {self.entries} WHERE event_id"
        rows = self._select_in(datastore, select, event_ids)
        return {row["event_id"]: (row["participant"], bytes(row["content_hash"])) for row in rows}

    def participants(self, datastore: Any, candidates: Sequence[str]) -> set[str]:
        """The participants among ``candidates`` that already have events (one query per chunk)."""
        rows = self._select_in(
            datastore, f"SELECT DISTINCT participant FROM {self.entries} WHERE participant", candidates
        )
        return {row["participant"] for row in rows}

    def _select_in(self, datastore: Any, select: str, values: Sequence[str]) -> list[Any]:
        """The rows of ``select ... IN (values)``, asked in chunks of ``_IN_CHUNK`` values."""
        rows: list[Any] = []
        with datastore.transaction(commit=False) as cursor:
            for start in range(0, len(values), _IN_CHUNK):
                chunk = list(values[start : start + _IN_CHUNK])
                cursor.execute(f"{select} IN ({','.join([self.placeholder] * len(chunk))})", chunk)
                rows.extend(cursor.fetchall())
        return rows


class _Sealing:
    """The chain head, the lock and the new leaves while one batch is sealed."""

    def __init__(self, chain: bytes, lock: bytes, codec: StateCodec) -> None:
        self.chain = chain
        self.lock = lock
        self.codec = codec
        self.leaves: list[bytes] = []

    def rows(self, positions: Sequence[int], stored_events: Sequence[StoredEvent]) -> Iterator[EntryRow]:
        """The ``ledger_entries`` row of each event, in order, chaining as it goes."""
        chain, lock, leaves, codec = self.chain, self.lock, self.leaves, self.codec
        for position, stored in zip(positions, stored_events, strict=True):
            # Only the record's type and id are decoded; its bytes are hashed as
            # they are (the same bytes content_hash would encode); the leaf covers
            # the bytes as stored.
            record = codec.record(stored.state)
            head = record_head(record)
            lock = self.lock = _lock_after(lock, stored, head.type, codec)
            leaf = leaf_hash(
                canonical_entry(
                    position, stored.originator_id, stored.originator_version, stored.topic, stored.state
                )
            )
            chain = self.chain = chain_hash(chain, leaf)
            leaves.append(leaf)
            yield (position, head.id, str(stored.originator_id), _sha256(record).digest(), leaf, chain)


def lock_change(record: bytes) -> bool | None:
    """True for a lock's record bytes (:func:`record_bytes`), False for an unlock's, None for others."""
    kind = record_head(record).type
    return True if kind == _LOCKED else False if kind == _UNLOCKED else None


def lock_exempt(stream: str, record_type: str) -> bool:
    """Whether a record of ``record_type`` in ``stream`` may be sealed while the ledger is locked.

    Only the record of a refused attempt in the ``REFUSALS`` stream (issue 12, item 7):
    one in the ``TRIAL`` stream would end the lock, which is that stream's last event.
    The unlock is not exempt: it ends the lock (:func:`lock_change`).
    """
    return stream == REFUSALS_STREAM and record_type == _REFUSED


def _lock_after(lock: bytes, stored: StoredEvent, record_type: str, codec: StateCodec) -> bytes:
    """:func:`_next_lock` of a stored event, decoded only when the lock is concerned."""
    if not lock and record_type not in _LOCK_TYPES:
        return lock
    decoded = codec.decode(stored.state)
    return _next_lock(lock, str(stored.originator_id), decoded.record, decoded.timestamp)


def _next_lock(lock: bytes, stream: str, record: Record, at: dt.datetime) -> bytes:
    """The ``lock`` meta value after ``record`` in ``stream``; raises :class:`LockRefused` while locked.

    While locked, only :class:`DatabaseUnlocked` and the record of a refused
    attempt in its own stream (:func:`lock_exempt`: not clinical data, issue 12,
    item 7) may be appended; an unlock may not be appended when the ledger is not locked.
    """
    if isinstance(record, DatabaseUnlocked):
        if not lock:
            raise LockRefused("unlock: the ledger is not locked")
        return b""
    if lock and not lock_exempt(stream, record.type):
        held = msgspec.json.decode(lock)
        raise LockRefused(
            f"the ledger is locked since {held['at']} by {held['by']} ({held['reason']}); nothing stored."
            " A data manager can unlock it with `trial-ledger unlock --reason ...`"
        )
    if isinstance(record, DatabaseLocked):
        return msgspec.json.encode({"at": utc_text(at), "by": record.user, "reason": record.reason})
    return lock
