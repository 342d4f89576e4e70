"""The PostgreSQL store for a multi-site deployment (SPEC section 6, ``postgresql://``).

The library's application recorder, extended to seal every insert in the same
transaction (:mod:`ledger.storage.seal`).  Imported only when a ``postgresql://`` store
is used, so that commands on the SQLite default do not pay for psycopg.

Writes go below the library's insert (issue #7), through its recorder class:
one transaction takes the table lock, gives the batch the positions after the
last one (so positions stay contiguous, as the Merkle tree's leaf numbering
needs, even after a rolled back insert), streams the events and their ledger
entries with binary ``COPY``, and rolls back everything on any error: the
library's pipelined insert commits before it raises what fails after its
``INSERT`` (the seal, the database lock), and does not scale to a million rows.
A dropped connection is retried on a new one, a few times; a busy table
(``lock_timeout``, ``TRIAL_LEDGER_BUSY_TIMEOUT``) is not.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from eventsourcing.persistence import OperationalError, PersistenceError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresFactory
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

from ledger.storage.codec import CodecFactory
from ledger.storage.feed import Row, TimelineFeed
from ledger.storage.seal import EntryRow, Seal
from ledger.storage.stores import ScannedRow

# Attempts of one insert when the connection drops under it (each on a new connection).
CONNECTION_ATTEMPTS = 3


class CopySeal(Seal):
    """The seal, writing ``ledger_entries`` with binary COPY and asking for many ids with one array."""

    def write_entries(self, cursor: Any, rows: Iterable[EntryRow]) -> None:
        with cursor.copy(f"COPY {self.entries} FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "text", "text", "bytea", "bytea", "bytea"])
            for row in rows:
                copy.write_row(row)

    def _select_in(self, datastore: Any, select: str, values: Sequence[str]) -> list[Any]:
        # ``= ANY(array)``: one parameter, where thousands of ``%s`` cost psycopg a parse each time.
        with datastore.transaction(commit=False) as cursor:
            cursor.execute(f"{select} = ANY(%s)", [list(values)])
            return cursor.fetchall()


class CopyFeed(TimelineFeed):
    """The read model's feed, writing its rows with binary COPY."""

    def write_rows(self, cursor: Any, rows: Iterable[Row]) -> None:
        with cursor.copy(f"COPY {self.timeline} FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["text", "int8", "bytea"])
            for row in rows:
                copy.write_row(row)


class LedgerPostgresRecorder(PostgresApplicationRecorder):
    def __init__(self, datastore: Any, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self.seal = CopySeal(
            f'"{self.datastore.schema}"."{self.events_table_name}"',
            prefix=f'"{self.datastore.schema}".',
            placeholder="%s",
            blob="BYTEA",
            position="BIGINT",
        )
        # The read model's tables are made with a new ledger only (see ``create_table``).
        self.feed = CopyFeed(
            prefix=f'"{self.datastore.schema}".', placeholder="%s", blob="BYTEA", collate='COLLATE "C" '
        )
        creating = [*self.seal.create_statements, *self.feed.create_statements]
        self.sql_create_statements.extend(SQL(s) for s in creating)  # type: ignore[arg-type]
        table = SQL("{0}.{1}").format(Identifier(self.datastore.schema), Identifier(self.events_table_name))
        self.copy_events = SQL(
            "COPY {0} (notification_id, originator_id, originator_version, topic, state) "
            "FROM STDIN (FORMAT BINARY)"
        ).format(table)
        self.select_last = SQL("SELECT COALESCE(MAX(notification_id), 0) FROM {0}").format(table)
        self.advance_sequence = SQL("SELECT setval(pg_get_serial_sequence(%s, 'notification_id'), %s)")
        self.sequence_of = f'"{self.datastore.schema}"."{self.events_table_name}"'
        self.scan_statement = SQL(
            "SELECT notification_id, originator_id, state FROM {0} "
            "WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
        ).format(table)

    def create_table(self) -> None:
        """The library's ``create_table``, only on a schema without the ledger, one process at a time.

        Every command opens the ledger.  Run on every start, the library's
        ``CREATE ... IF NOT EXISTS`` statements wait without a timeout behind a
        writer's table lock (a busy database must give exit 3, not hang), and
        several commands starting at once race in ``CREATE TYPE`` and ``CREATE OR
        REPLACE FUNCTION`` (PostgreSQL: "tuple concurrently updated").  So an
        initialised schema is left alone, and a new one is made under an advisory
        lock held by a connection of its own.  A schema written by an earlier
        version keeps the read model it has until ``rebuild`` (:mod:`ledger.storage.feed`).
        """
        key = f"trial-ledger create {self.datastore.schema}"
        with self.datastore.get_connection() as conn:
            if self._initialised(conn):
                return
            conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (key,))
            try:
                if not self._initialised(conn):
                    super().create_table()
            finally:
                conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (key,))

    def _initialised(self, conn: Any) -> bool:
        schema = f'"{self.datastore.schema}".'
        names = [
            f'{schema}"{self.events_table_name}"',
            f'{schema}"{self.notification_id_index_name}"',
            self.seal.entries,
            f"{schema}ledger_entries_participant",
            self.seal.meta,
        ]
        row = conn.execute(
            "SELECT bool_and(to_regclass(n) IS NOT NULL) AS ok FROM unnest(%s::text[]) n", (names,)
        )
        return bool(row.fetchone()["ok"])

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        """Insert and seal a batch in one transaction; returns the positions given."""
        for attempt in range(1, CONNECTION_ATTEMPTS + 1):
            try:
                return self._insert_sealed(stored_events, **kwargs)
            except PersistenceError as exc:
                if attempt == CONNECTION_ATTEMPTS or not _connection_lost(exc):
                    raise
                time.sleep(0.2 * attempt)
        raise AssertionError("unreachable")

    def _insert_sealed(
        self, stored_events: Sequence[StoredEvent], *, read_at: int | None = None, **_: Any
    ) -> list[int]:
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            self._lock_table(curs)
            self._notify_channel(curs)
            curs.execute(self.select_last)
            last = curs.fetchone()["coalesce"]  # type: ignore[index]
            positions = range(last + 1, last + 1 + len(stored_events))
            with curs.copy(self.copy_events) as copy:
                copy.set_types(["int8", "text", "int8", "text", "bytea"])
                for position, s in zip(positions, stored_events, strict=True):
                    copy.write_row((position, s.originator_id, s.originator_version, s.topic, s.state))
            if stored_events:
                curs.execute(self.advance_sequence, (self.sequence_of, positions[-1]))
            self.seal.seal(curs, positions, stored_events, read_at)
            self.feed.feed(curs, positions, stored_events, self.seal.codec)
            return list(positions)

    def scan(self, after: int, limit: int) -> list[ScannedRow]:
        """Up to ``limit`` stored events after position ``after``, in ledger order (SPEC section 4)."""
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            curs.execute(self.scan_statement, (after, limit), binary=True)
            return curs.fetchall()


def _connection_lost(exc: PersistenceError) -> bool:
    """Whether an error means the connection broke (worth a new one), not a refusal or a busy table."""
    cause = exc.__cause__
    if isinstance(cause, psycopg.errors.LockNotAvailable | psycopg.errors.QueryCanceled):
        return False
    return isinstance(exc, OperationalError) or isinstance(cause, psycopg.InterfaceError)


class LedgerPostgresFactory(CodecFactory, PostgresFactory):
    application_recorder_class = LedgerPostgresRecorder
