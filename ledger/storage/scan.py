"""Direct reads of the sealed tables, in one consistent snapshot (SPEC section 5).

``verify``, ``prove`` and ``audit`` read the recorder's own tables with plain
SQL rather than through the library's notification log: ``verify`` must stream
a million events fast and see exactly what is stored (including rows the
library would never have written), ``prove`` needs the leaf hashes in order,
and ``audit`` one participant's stream by position.

The tables are the library's stored events (``stored_events`` in SQLite,
``trialledger_events`` in PostgreSQL, named after the application; its
notification id is the ledger position: ``rowid`` in SQLite,
``notification_id`` in PostgreSQL) and
the seal's ``ledger_entries`` and ``ledger_meta`` (:mod:`ledger.storage.seal`).  Every
read of one :func:`snapshot` sees the same committed state: SQLite's
deferred ``BEGIN`` in WAL mode, PostgreSQL's ``REPEATABLE READ``, so a writer
appending meanwhile cannot make the tables look out of step.

Rows come back as tuples (no per-row dicts: this is the hot path of ``verify``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from typing import Any

from eventsourcing.application import Application

# One row of :meth:`Snapshot.sealed_events`: position, originator id, version,
# topic, state, then the ledger entry at that position (all None when there is
# none): event id, participant, content hash, leaf hash, chain hash.
SealedRow = tuple[int, str, int, str, bytes, Any, Any, Any, Any, Any]
# Rows PostgreSQL sends at a time while :meth:`Snapshot.sealed_events` streams (libpq's chunked rows).
STREAM_CHUNK = 2_000
# Beyond every position (a BIGINT).
LAST = 2**63 - 1


@dataclass(frozen=True)
class Tables:
    """Table names and SQL dialect of one store."""

    events: str
    position: str
    entries: str
    meta: str
    placeholder: str
    postgres: bool

    @classmethod
    def of(cls, ledger: Application[Any]) -> Tables:
        recorder: Any = ledger.recorder
        seal = recorder.seal
        postgres = seal.placeholder == "%s"
        if postgres:
            events = f'"{recorder.datastore.schema}"."{recorder.events_table_name}"'
            position = "notification_id"
        else:
            events, position = recorder.events_table_name, "rowid"
        return cls(events, position, seal.entries, seal.meta, seal.placeholder, postgres)


class Snapshot:
    """Reads of one store at one moment; made by :func:`snapshot`."""

    def __init__(self, tables: Tables, cursor: Any) -> None:
        self.tables = tables
        self._cursor = cursor
        t = tables
        self._sealed_select = (
            f"SELECT s.{t.position}, s.originator_id, s.originator_version, s.topic, s.state, "
            "e.event_id, e.participant, e.content_hash, e.leaf_hash, e.chain_hash "
            f"FROM {t.events} s LEFT JOIN {t.entries} e ON e.position = s.{t.position} "
            f"WHERE s.{t.position} > {t.placeholder} AND s.{t.position} <= {t.placeholder} "
        )

    def _all(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        self._cursor.execute(sql, params)
        return [tuple(row) for row in self._cursor.fetchall()]

    def _one(self, sql: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        rows = self._all(sql, params)
        return rows[0] if rows else None

    # -- ledger_meta ---------------------------------------------------------------------

    def meta(self) -> dict[str, bytes]:
        """The ``ledger_meta`` rows (``frontier``, ``chain``) as bytes."""
        return {key: bytes(value) for key, value in self._all(f"SELECT key, value FROM {self.tables.meta}")}

    # -- stored events joined with their seal ----------------------------------------------

    def sealed_events(
        self, batch: int = 20_000, after: int = 0, upto: int = LAST
    ) -> Iterator[list[SealedRow]]:
        """The stored events after ``after`` up to ``upto``, in ledger order, with the ledger entry at each
        position, in batches.

        SQLite is asked page by page (the pages stay in the CPU cache).  PostgreSQL
        streams one query (issue 14): one plan, one merge join reading each table
        once, where pages of ``LIMIT`` queries each read the entries from the first
        one again (the server's work grew with the square of the ledger).  The
        stream runs inside a savepoint, so that a caller who stops early (the
        generator closed: the query is cancelled) can go on querying the same
        snapshot.
        """
        if not self.tables.postgres:
            yield from self._pages(batch, after, upto)
            return
        self._cursor.execute("SAVEPOINT sealed_events")
        rows = self._cursor.stream(
            self._sealed_select + f"ORDER BY s.{self.tables.position}",
            (after, upto),
            binary=True,
            size=STREAM_CHUNK,
        )
        try:
            while chunk := list(islice(rows, batch)):
                yield chunk
        finally:
            rows.close()  # cancels the query if it is still running
            self._cursor.execute("ROLLBACK TO SAVEPOINT sealed_events")

    def _pages(self, batch: int, after: int, upto: int) -> Iterator[list[SealedRow]]:
        sql = self._sealed_select + f"ORDER BY s.{self.tables.position} LIMIT {self.tables.placeholder}"
        while True:
            self._cursor.execute(sql, (after, upto, batch))
            rows = self._cursor.fetchall()
            if rows:
                yield rows
            if len(rows) < batch:
                return
            after = rows[-1][0]

    def export(self) -> str | None:
        """The id under which another connection may read this same snapshot (PostgreSQL), else None.

        None too on a standby, where not every server version exports one.
        """
        if not self.tables.postgres:
            return None
        row = self._one("SELECT CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_export_snapshot() END")
        return None if row is None or row[0] is None else str(row[0])

    def chain_at(self, position: int) -> bytes | None:
        """The chain hash sealed for the last stored event up to ``position`` (None if it has no entry)."""
        t = self.tables
        row = self._one(
            f"SELECT e.chain_hash FROM {t.events} s LEFT JOIN {t.entries} e ON e.position = s.{t.position} "
            f"WHERE s.{t.position} <= {t.placeholder} ORDER BY s.{t.position} DESC LIMIT 1",
            (position,),
        )
        return None if row is None or row[0] is None else bytes(row[0])

    def positions(self) -> tuple[int, int]:
        """The first and the last position of a stored event (0 and 0 when none)."""
        t = self.tables
        row = self._one(f"SELECT MIN({t.position}), MAX({t.position}) FROM {t.events}")
        assert row is not None
        return int(row[0] or 0), int(row[1] or 0)

    def rank(self, position: int) -> int:
        """The number of stored events up to ``position``: the leaf index of the next one."""
        t = self.tables
        row = self._one(f"SELECT COUNT(*) FROM {t.events} WHERE {t.position} <= {t.placeholder}", (position,))
        return int(row[0]) if row else 0

    def events(self, batch: int = 5_000) -> Iterator[tuple[int, str, bytes]]:
        """``(position, stream, state)`` of every stored event, in ledger order."""
        t, p = self.tables, self.tables.placeholder
        sql = (
            f"SELECT {t.position}, originator_id, state FROM {t.events} "
            f"WHERE {t.position} > {p} ORDER BY {t.position} LIMIT {p}"
        )
        after = 0
        while True:
            rows = self._all(sql, (after, batch))
            for position, stream, state in rows:
                yield int(position), str(stream), bytes(state)
            if len(rows) < batch:
                return
            after = rows[-1][0]

    def event_count(self) -> int:
        row = self._one(f"SELECT COUNT(*) FROM {self.tables.events}")
        return int(row[0]) if row else 0

    def previous_position(self, position: int) -> int:
        """The position of the stored event before ``position`` (0 if none)."""
        t = self.tables
        row = self._one(
            f"SELECT MAX({t.position}) FROM {t.events} WHERE {t.position} < {t.placeholder}", (position,)
        )
        return int(row[0]) if row and row[0] is not None else 0

    def event_at(self, position: int) -> tuple[str, int, str, bytes] | None:
        """``(originator id, version, topic, state)`` of the stored event at ``position``."""
        t = self.tables
        row = self._one(
            f"SELECT originator_id, originator_version, topic, state FROM {t.events} "
            f"WHERE {t.position} = {t.placeholder}",
            (position,),
        )
        return None if row is None else (str(row[0]), int(row[1]), str(row[2]), bytes(row[3]))

    def participant_events(self, participant: str) -> list[tuple[int, bytes]]:
        """``(position, state)`` of one participant's stored events, in ledger order."""
        t = self.tables
        rows = self._all(
            f"SELECT {t.position}, state FROM {t.events} WHERE originator_id = {t.placeholder} "
            f"ORDER BY {t.position}",
            (participant,),
        )
        return [(int(position), bytes(state)) for position, state in rows]

    # -- ledger_entries ------------------------------------------------------------------

    def entries_between(self, low: int, high: int, limit: int = 1) -> list[tuple[int, str]]:
        """``(position, event id)`` of ledger entries with ``low < position < high``."""
        t, p = self.tables, self.tables.placeholder
        return self._all(
            f"SELECT position, event_id FROM {t.entries} WHERE position > {p} AND position < {p} "
            f"ORDER BY position LIMIT {p}",
            (low, high, limit),
        )  # type: ignore[return-value]

    def entry_count(self) -> int:
        row = self._one(f"SELECT COUNT(*) FROM {self.tables.entries}")
        return int(row[0]) if row else 0

    def first_orphan_entry(self) -> tuple[int, str] | None:
        """``(position, event id)`` of the first ledger entry with no stored event at its position."""
        t = self.tables
        row = self._one(
            f"SELECT e.position, e.event_id FROM {t.entries} e LEFT JOIN {t.events} s "
            f"ON s.{t.position} = e.position WHERE s.{t.position} IS NULL ORDER BY e.position LIMIT 1"
        )
        return None if row is None else (int(row[0]), str(row[1]))

    def entry_of(self, event_id: str) -> int | None:
        """The position of the ledger entry of ``event_id``."""
        t = self.tables
        row = self._one(f"SELECT position FROM {t.entries} WHERE event_id = {t.placeholder}", (event_id,))
        return None if row is None else int(row[0])

    def leaf_hashes(self, limit: int) -> tuple[list[int], list[bytes]]:
        """Positions and leaf hashes of the first ``limit`` ledger entries, in order."""
        t = self.tables
        rows = self._all(
            f"SELECT position, leaf_hash FROM {t.entries} ORDER BY position LIMIT {t.placeholder}", (limit,)
        )
        return [int(r[0]) for r in rows], [bytes(r[1]) for r in rows]


@contextmanager
def snapshot(ledger: Application[Any], exported: str | None = None) -> Iterator[Snapshot]:
    """A read-only view of the store at one moment (rolled back at the end).

    ``exported``: the moment another snapshot sees (:meth:`Snapshot.export`, PostgreSQL).
    """
    tables = Tables.of(ledger)
    datastore: Any = ledger.recorder.datastore  # type: ignore[attr-defined]
    with datastore.transaction(commit=False) as cursor:
        if tables.postgres:
            from psycopg.rows import tuple_row
            from psycopg.sql import SQL, Literal

            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            if exported is not None:
                cursor.execute(SQL("SET TRANSACTION SNAPSHOT {0}").format(Literal(exported)))
            cursor.row_factory = tuple_row
            yield Snapshot(tables, cursor)
        else:
            raw = cursor.sqlite_cursor  # plain tuples, not sqlite3.Row: the verify hot path
            raw.row_factory = None
            yield Snapshot(tables, raw)
