"""Sealing appended events into the ledger's index, hash chain and Merkle tree (SPEC section 5).

Runs inside the recorder's insert transaction, so an event is never stored
without its seal: for each new row of ``stored_events`` one row of
``ledger_entries`` (position, event id, participant, content hash, RFC 6962
leaf hash, chain hash) and the Merkle frontier in ``ledger_meta``, all committed
together or not at all.  The same code serves SQLite and PostgreSQL; only the
parameter placeholder and the schema prefix differ.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import msgpack
import msgspec
from eventsourcing.persistence import StoredEvent

from ledger.events import Record
from ledger.merkle import Frontier, leaf_hash
from ledger.transcoder import decode_state

GENESIS = bytes(32)
_record_encoder = msgspec.msgpack.Encoder()


def content_hash(record: Record) -> bytes:
    """What makes a retried line "the same content" (SPEC section 6, ``id``)."""
    return hashlib.sha256(_record_encoder.encode(record)).digest()


def canonical_entry(position: int, originator_id: str, version: int, topic: str, state: bytes) -> bytes:
    """The deterministic bytes of one stored event that its leaf hash covers.

    The position is part of it, so a reordering changes the leaves.
    """
    return msgpack.packb([position, str(originator_id), version, topic, bytes(state)], use_bin_type=True)


def chain_hash(previous: bytes, leaf: bytes) -> bytes:
    return hashlib.sha256(previous + leaf).digest()


class Seal:
    """The SQL that keeps ``ledger_entries`` and ``ledger_meta`` in step with the events."""

    def __init__(self, prefix: str = "", placeholder: str = "?", blob: str = "BLOB") -> None:
        self.entries = f"{prefix}ledger_entries"
        self.meta = f"{prefix}ledger_meta"
        p = placeholder
        self.create_statements = [
            f"CREATE TABLE IF NOT EXISTS {self.entries} ("
            "position BIGINT PRIMARY KEY, "
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
        self.insert_entry = f"INSERT INTO {self.entries} VALUES ({p},{p},{p},{p},{p},{p})"
        self.select_meta = f"SELECT key, value FROM {self.meta} WHERE key IN ('frontier', 'chain')"
        self.upsert_meta = (
            f"INSERT INTO {self.meta} (key, value) VALUES ({p},{p}) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
        )

    def seal(self, cursor: Any, positions: Sequence[int], stored_events: Sequence[StoredEvent]) -> None:
        """Index, chain and add to the tree the events just inserted at ``positions``."""
        cursor.execute(self.select_meta)
        meta = {row["key"]: bytes(row["value"]) for row in cursor.fetchall()}
        frontier = Frontier.from_bytes(meta["frontier"]) if "frontier" in meta else Frontier()
        chain = meta.get("chain", GENESIS)
        rows = []
        for position, stored in zip(positions, stored_events, strict=True):
            record = decode_state(stored.state).record
            leaf = leaf_hash(
                canonical_entry(
                    position, stored.originator_id, stored.originator_version, stored.topic, stored.state
                )
            )
            chain = chain_hash(chain, leaf)
            frontier.append(leaf)
            rows.append((position, record.id, str(stored.originator_id), content_hash(record), leaf, chain))
        cursor.executemany(self.insert_entry, rows)
        cursor.executemany(self.upsert_meta, [("frontier", frontier.to_bytes()), ("chain", chain)])

    def lookup(self, datastore: Any, event_ids: Sequence[str]) -> dict[str, tuple[str, bytes]]:
        """``{event id: (participant, content hash)}`` for the ids already stored."""
        found: dict[str, tuple[str, bytes]] = {}
        with datastore.transaction(commit=False) as cursor:
            for start in range(0, len(event_ids), 500):
                chunk = list(event_ids[start : start + 500])
                marks = ",".join([self.placeholder] * len(chunk))
                cursor.execute(
                    f"SELECT event_id, participant, content_hash FROM {self.entries} "
                    f"WHERE event_id IN ({marks})",
                    chunk,
                )
                for row in cursor.fetchall():
                    found[row["event_id"]] = (row["participant"], bytes(row["content_hash"]))
        return found
