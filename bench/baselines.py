"""What the ledger's import and rebuild are measured against (issue #7).

Each baseline does the least a store of the same events must do, on the same
rows, so the ratios in ``RESULTS.md`` say what the ledger's validation, rules,
sealing and decoding cost on top:

- :func:`sqlite_executemany`: the rows the import stored (``stored_events``,
  then also ``ledger_entries``), already serialised, inserted into an empty file
  with the same schema by ``executemany`` in one transaction;
- :func:`plain_import` / :func:`plain_replay`: the eventsourcing library used
  the plain way: lines parsed with ``json``, one aggregate per participant and
  one ``Application.save`` each, the default JSON transcoder and SQLite
  recorder; replay through the notification log and the library's mapper;
- :func:`naive_import`: the naive raw path of an import (issue 14): each line
  through ``json.loads`` and ``msgpack.packb``, all rows into an empty file's
  events table by one ``executemany`` in one transaction (no validation, no
  rules, no seal);
- :func:`sqlite_scan` / :func:`pg_scan`: the events table read in ledger order
  and every state decoded by ``msgpack.unpackb``;
- :func:`pg_copy` / :func:`pg_batched_insert`: the same rows into an empty
  PostgreSQL schema by binary ``COPY``, or by multi-row ``INSERT`` statements
  of 5,000 rows.

Every function returns seconds (``time.perf_counter``) of the measured part
only: the data is loaded beforehand.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import defaultdict
from pathlib import Path
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

import msgpack
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

Rows = list[tuple[Any, ...]]
EVENTS_DDL = (
    "CREATE TABLE stored_events (originator_id TEXT, originator_version INTEGER, topic TEXT, state BLOB, "
    "PRIMARY KEY (originator_id, originator_version))"
)
ENTRIES_DDL = [
    "CREATE TABLE ledger_entries (position INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, "
    "participant TEXT NOT NULL, content_hash BLOB NOT NULL, leaf_hash BLOB NOT NULL, "
    "chain_hash BLOB NOT NULL)",
    "CREATE INDEX ledger_entries_participant ON ledger_entries (participant, position)",
]


def stored_rows(db: Path) -> tuple[Rows, Rows]:
    """The ``stored_events`` and ``ledger_entries`` rows of a ledger's SQLite file, in ledger order."""
    with sqlite3.connect(db) as conn:
        events = conn.execute(
            "SELECT rowid, originator_id, originator_version, topic, state FROM stored_events ORDER BY rowid"
        ).fetchall()
        entries = conn.execute("SELECT * FROM ledger_entries ORDER BY position").fetchall()
    return events, entries


def sqlite_executemany(target: Path, events: Rows, entries: Rows | None = None) -> float:
    """Seconds to insert the rows into an empty WAL file by ``executemany``, one transaction."""
    _remove(target)
    conn = sqlite3.connect(target, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(EVENTS_DDL)
    for ddl in ENTRIES_DDL:
        conn.execute(ddl)
    start = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(
        "INSERT INTO stored_events (rowid, originator_id, originator_version, topic, state) "
        "VALUES (?,?,?,?,?)",
        events,
    )
    if entries is not None:
        conn.executemany("INSERT INTO ledger_entries VALUES (?,?,?,?,?,?)", entries)
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def naive_import(source: Path, target: Path) -> tuple[float, int]:
    """Seconds for the naive raw path of an import of ``source`` into an empty file; and the lines."""
    _remove(target)
    conn = sqlite3.connect(target, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(EVENTS_DDL)
    start = time.perf_counter()
    versions: dict[str, int] = defaultdict(int)
    rows = []
    with source.open("rb") as lines:
        for raw in lines:
            fields = json.loads(raw)
            stream = fields.get("participant") or fields["target"]
            versions[stream] += 1
            rows.append((stream, versions[stream], fields["type"], msgpack.packb(fields)))
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT INTO stored_events VALUES (?,?,?,?)", rows)
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    _remove(target)
    return elapsed, len(rows)


def sqlite_scan(db: Path) -> tuple[float, int]:
    """Seconds to read every state in ledger order and ``msgpack.unpackb`` it; and the count."""
    conn = sqlite3.connect(db)
    start = time.perf_counter()
    count = 0
    unpack = msgpack.unpackb
    for (state,) in conn.execute("SELECT state FROM stored_events ORDER BY rowid"):
        unpack(state)
        count += 1
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed, count


class PlainParticipant(Aggregate):
    """A participant the plain library way: each line's fields in a generic event."""

    @staticmethod
    def create_id(fields: dict[str, Any]) -> UUID:
        return uuid5(NAMESPACE_URL, fields["participant"])

    @event("Screened")
    def __init__(self, fields: dict[str, Any]) -> None:
        self.lines = [fields]

    @event("Recorded")
    def record(self, fields: dict[str, Any]) -> None:
        self.lines.append(fields)


class PlainApplication(Application[UUID]):
    """The library's application, default JSON transcoder, one section of 5,000 per log read."""

    log_section_size = 5000


def _plain_app(db: Path) -> PlainApplication:
    return PlainApplication(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(db)})


def plain_import(source: Path, db: Path) -> tuple[float, int]:
    """Seconds to import ``source`` the plain library way (parse, one save per participant); events."""
    _remove(db)
    app = _plain_app(db)
    start = time.perf_counter()
    owners: dict[str, str] = {}
    streams: dict[str, list[dict[str, Any]]] = defaultdict(list)
    with source.open("rb") as lines:
        for raw in lines:
            fields = json.loads(raw)
            participant = fields.get("participant") or owners[fields["target"]]
            owners[fields["id"]] = participant
            streams[participant].append(fields)
    count = 0
    for lines_of in streams.values():
        aggregate = PlainParticipant(lines_of[0])
        for fields in lines_of[1:]:
            aggregate.record(fields)
        app.save(aggregate)
        count += len(lines_of)
    elapsed = time.perf_counter() - start
    app.close()
    return elapsed, count


def plain_replay(db: Path) -> tuple[float, int]:
    """Seconds to read the plain store back through the notification log into domain events."""
    app = _plain_app(db)
    start = time.perf_counter()
    count, position = 0, 1
    to_domain_event = app.mapper.to_domain_event
    while True:
        section = app.notification_log.select(start=position, limit=PlainApplication.log_section_size)
        for notification in section:
            to_domain_event(notification)
        count += len(section)
        if len(section) < PlainApplication.log_section_size:
            break
        position = section[-1].id + 1
    elapsed = time.perf_counter() - start
    app.close()
    return elapsed, count


def pg_rows(admin_url: str, schema: str, table: str) -> tuple[Rows, Rows]:
    """The events and ``ledger_entries`` rows of a ledger's PostgreSQL schema, in ledger order."""
    import psycopg

    with psycopg.connect(admin_url) as conn, conn.cursor(binary=True) as cur:
        cur.execute(
            "SELECT notification_id, originator_id, originator_version, topic, state "
            f'FROM "{schema}"."{table}" ORDER BY notification_id'
        )
        events = cur.fetchall()
        cur.execute(f'SELECT * FROM "{schema}".ledger_entries ORDER BY position')
        entries = cur.fetchall()
    return events, entries


def pg_prepare(admin_url: str, schema: str) -> None:
    """A fresh schema with the ledger's two tables (same columns and indexes)."""
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(
            f'CREATE TABLE "{schema}".events (originator_id text NOT NULL, '
            "originator_version bigint NOT NULL, topic text, state bytea, notification_id bigint NOT NULL, "
            "PRIMARY KEY (originator_id, originator_version))"
        )
        conn.execute(f'CREATE UNIQUE INDEX ON "{schema}".events (notification_id)')
        conn.execute(
            f'CREATE TABLE "{schema}".ledger_entries (position bigint PRIMARY KEY, '
            "event_id text NOT NULL UNIQUE, participant text NOT NULL, content_hash bytea NOT NULL, "
            "leaf_hash bytea NOT NULL, "
            "chain_hash bytea NOT NULL)"
        )
        conn.execute(f'CREATE INDEX ON "{schema}".ledger_entries (participant, position)')


def pg_copy(admin_url: str, schema: str, events: Rows, entries: Rows) -> float:
    """Seconds to COPY (binary) the rows of both tables into a fresh schema, one transaction."""
    import psycopg

    pg_prepare(admin_url, schema)
    with psycopg.connect(admin_url) as conn:
        start = time.perf_counter()
        with conn.transaction(), conn.cursor() as cur:
            copy_sql = (
                f'COPY "{schema}".events (notification_id, originator_id, originator_version, topic, state) '
                "FROM STDIN (FORMAT BINARY)"
            )
            with cur.copy(copy_sql) as copy:
                copy.set_types(["int8", "text", "int8", "text", "bytea"])
                for row in events:
                    copy.write_row(row)
            with cur.copy(f'COPY "{schema}".ledger_entries FROM STDIN (FORMAT BINARY)') as copy:
                copy.set_types(["int8", "text", "text", "bytea", "bytea", "bytea"])
                for row in entries:
                    copy.write_row(row)
        return time.perf_counter() - start


def pg_batched_insert(admin_url: str, schema: str, events: Rows, entries: Rows, size: int = 5000) -> float:
    """Seconds to insert the rows by multi-row ``INSERT ... VALUES`` of ``size`` rows, one transaction."""
    import psycopg

    pg_prepare(admin_url, schema)
    with psycopg.connect(admin_url) as conn:
        start = time.perf_counter()
        with conn.transaction(), conn.cursor() as cur:
            for table, columns, rows in (
                ("events", "(notification_id, originator_id, originator_version, topic, state)", events),
                ("ledger_entries", "", entries),
            ):
                width = len(rows[0]) if rows else 0
                for first in range(0, len(rows), size):
                    chunk = rows[first : first + size]
                    marks = ",".join(["(" + ",".join(["%s"] * width) + ")"] * len(chunk))
                    cur.execute(
                        f'INSERT INTO "{schema}".{table} {columns} VALUES {marks}',
                        [value for row in chunk for value in row],
                    )
        return time.perf_counter() - start


def pg_scan(admin_url: str, schema: str, table: str) -> tuple[float, int]:
    """Seconds to read every state of a ledger's PostgreSQL events table and ``msgpack.unpackb`` it."""
    import psycopg

    with psycopg.connect(admin_url) as conn:
        start = time.perf_counter()
        count, after, unpack = 0, 0, msgpack.unpackb
        with conn.cursor() as cur:
            while True:
                cur.execute(
                    f'SELECT notification_id, state FROM "{schema}"."{table}" WHERE notification_id > %s '
                    "ORDER BY notification_id LIMIT 20000",
                    (after,),
                    binary=True,
                )
                rows = cur.fetchall()
                for _, state in rows:
                    unpack(state)
                count += len(rows)
                if len(rows) < 20000:
                    break
                after = rows[-1][0]
        return time.perf_counter() - start, count


def _remove(db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
