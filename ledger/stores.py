"""The ledger's recorders: the eventsourcing library's SQLite and PostgreSQL
application recorders, extended so that every insert also seals its events
(:mod:`ledger.seal`) in the same transaction (SPEC section 5), and
:func:`store_env`, which turns a ``--store`` URL into the library's environment
(SPEC section 6: ``--store``, ``TRIAL_LEDGER_STORE``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import (
    SQLiteApplicationRecorder,
    SQLiteConnection,
    SQLiteCursor,
    SQLiteFactory,
    SQLiteTransaction,
)

from ledger.seal import Seal

DEFAULT_STORE = "trial-ledger.db"
# A writer that finds the database busy waits this long, then gives up (exit 3).
BUSY_TIMEOUT_SECONDS = 30


class ImmediateTransaction(SQLiteTransaction):
    """A write transaction that takes SQLite's write lock at BEGIN.

    The seal reads the frontier and then writes; a deferred transaction could
    not upgrade its read to a write when another writer committed first.
    """

    def __enter__(self) -> SQLiteCursor:
        cursor = self.connection.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        return cursor


class LedgerSQLiteRecorder(SQLiteApplicationRecorder):
    seal = Seal()

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(), *self.seal.create_statements]

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        with self.datastore.get_connection(commit=True) as conn:
            assert isinstance(conn, SQLiteConnection)
            with ImmediateTransaction(conn, commit=True) as cursor:
                positions = self._insert_events(cursor, stored_events, **kwargs)
                assert positions is not None
                self.seal.seal(cursor, positions, stored_events)
                return positions


class LedgerSQLiteFactory(SQLiteFactory):
    application_recorder_class = LedgerSQLiteRecorder


def store_url(store: str | None) -> str:
    """The store to use: the option, else ``TRIAL_LEDGER_STORE``, else ``trial-ledger.db``."""
    return store or os.environ.get("TRIAL_LEDGER_STORE") or DEFAULT_STORE


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def sqlite_path(url: str) -> str:
    """The file of a SQLite store URL (a plain path or ``sqlite:///path``)."""
    return url.removeprefix("sqlite://").removeprefix("/") if url.startswith("sqlite:///") else url


def store_env(url: str) -> dict[str, str]:
    """The eventsourcing environment for a store URL.

    ``postgresql://user:password@host:port/dbname?schema=name`` selects
    PostgreSQL (schema defaults to ``public``); anything else is a SQLite file.
    """
    common = {"ORIGINATOR_ID_TYPE": "text"}
    if is_postgres(url):
        parts = urlparse(url)
        query = parse_qs(parts.query)
        return {
            **common,
            "PERSISTENCE_MODULE": "ledger.postgres:LedgerPostgresFactory",
            "POSTGRES_DBNAME": unquote(parts.path.lstrip("/")) or "postgres",
            "POSTGRES_HOST": parts.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(parts.port or 5432),
            "POSTGRES_USER": unquote(parts.username or "postgres"),
            "POSTGRES_PASSWORD": unquote(parts.password or ""),
            "POSTGRES_SCHEMA": query.get("schema", ["public"])[0],
            "POSTGRES_LOCK_TIMEOUT": str(BUSY_TIMEOUT_SECONDS),
            "POSTGRES_POOL_SIZE": "2",
        }
    return {
        **common,
        "PERSISTENCE_MODULE": "ledger.stores:LedgerSQLiteFactory",
        "SQLITE_DBNAME": sqlite_path(url),
        "SQLITE_LOCK_TIMEOUT": str(BUSY_TIMEOUT_SECONDS),
    }
