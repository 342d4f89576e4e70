"""The ledger's recorders: the eventsourcing library's SQLite and PostgreSQL
application recorders, extended so that every insert also seals its events
(:mod:`ledger.storage.seal`) in the same transaction (SPEC section 5), and
:func:`store_env`, which turns a ``--store`` URL into the library's environment
(SPEC section 6: ``--store``, ``TRIAL_LEDGER_STORE``).

Writes extend the library's insert through its ``_insert_events`` hook, inside
the library's write transaction: the whole batch is one ``executemany`` (not the
library's statement per row), whose first row takes SQLite's write lock, so no
other writer appends until the batch and its seal commit together.  Reads for rebuilds and ``entries()``
scan the table with plain tuples (:meth:`LedgerSQLiteRecorder.scan`).

A writer that finds the database busy waits up to ``TRIAL_LEDGER_BUSY_TIMEOUT``
seconds (default 30), then gives up with exit 3 (SPEC section 6: database
locked); nothing is stored.

Only ``init`` and ``demo`` create a store (issue 11): every other command opens
an existing ledger with :func:`require_ledger` and the library's
``CREATE_TABLE`` off, so a mistyped path is exit 2, never a new empty ledger.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from eventsourcing.persistence import OperationalError, StoredEvent
from eventsourcing.sqlite import (
    SQLiteApplicationRecorder,
    SQLiteCursor,
    SQLiteFactory,
)

from ledger.domain.errors import InvalidInput, Refused
from ledger.storage.codec import CodecFactory
from ledger.storage.feed import TimelineFeed
from ledger.storage.seal import Seal

DEFAULT_STORE = "trial-ledger.db"
# Tables every ledger has (SQLite names; PostgreSQL's events table is named after the application).
LEDGER_TABLES = ("stored_events", "ledger_entries", "ledger_meta")
POSTGRES_EVENTS_TABLE = "trialledger_events"
# The first bytes of every SQLite database file.
SQLITE_HEADER = b"SQLite format 3\x00"
# Seconds to wait for PostgreSQL to answer before calling it unavailable (exit 3).
CONNECT_TIMEOUT_SECONDS = 5
# A writer that finds the database busy waits this long, then gives up (exit 3).
BUSY_TIMEOUT_SECONDS = 30
BUSY_TIMEOUT_VARIABLE = "TRIAL_LEDGER_BUSY_TIMEOUT"
# One stored event as the read paths see it: position, participant, state bytes.
ScannedRow = tuple[int, str, bytes]


@dataclass(frozen=True)
class Login:
    """Who a PostgreSQL connection is (issue 12, item 1): the session user, and what it may do.

    ``owner``: it may update the events table (the schema's owner, or a
    superuser), so it appends directly rather than through the owner's functions.
    """

    name: str
    superuser: bool
    owner: bool


class LedgerSQLiteRecorder(SQLiteApplicationRecorder):
    def __init__(self, datastore: Any, events_table_name: str = "stored_events") -> None:
        self.seal = Seal(events_table_name)  # before the library asks for the create statements
        self.feed = TimelineFeed()
        self.new_store = False
        super().__init__(datastore, events_table_name)
        self.insert_at_positions = (
            f"INSERT INTO {self.events_table_name} "
            "(rowid, originator_id, originator_version, topic, state) VALUES (?,?,?,?,?)"
        )
        self.scan_statement = (
            f"SELECT rowid, originator_id, state FROM {self.events_table_name} "
            "WHERE rowid > ? ORDER BY rowid LIMIT ?"
        )

    def construct_create_table_statements(self) -> list[str]:
        view = self.feed.create_statements if self.new_store else []
        return [*super().construct_create_table_statements(), *self.seal.create_statements, *view]

    def create_table(self) -> None:
        """The library's ``create_table``; the read model's tables only with a new ledger.

        A store written by an earlier version keeps the view it has until
        ``rebuild`` (:mod:`ledger.storage.feed`): tables made empty beside its
        events would claim a view that covers nothing.
        """
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (self.events_table_name,))
            self.new_store = cursor.fetchone() is None
        self.create_table_statements = self.construct_create_table_statements()
        super().create_table()

    def login(self) -> None:
        """The embedded store has no logins: whoever can open the file acts (issue 12, item 9)."""
        return None

    def appended_by(self, after: int, limit: int) -> list[tuple[int, str]]:
        """No database login sealed any row of the embedded store (issue 12, item 9)."""
        return []

    def sealed_logins(self, stream: str) -> list[tuple[int, int, str]]:
        """No database login sealed any row of the embedded store (issue 12, item 9)."""
        return []

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        """The library's insert; a store opened read-only (``file:...?mode=ro``) refuses it, exit 3."""
        try:
            return super().insert_events(stored_events, **kwargs)
        except OperationalError as exc:
            cause = exc.__cause__
            if isinstance(cause, sqlite3.Error) and cause.sqlite_errorcode & 0xFF == sqlite3.SQLITE_READONLY:
                raise Refused(f"the store is read-only, nothing stored: {cause}") from None
            raise

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], *, read_at: int | None = None, **_: Any
    ) -> Sequence[int] | None:
        """The library's hook inside its write transaction: insert and seal a batch; the positions given.

        The first statement writes, so SQLite takes its write lock there (waiting
        up to the busy timeout) before anything is read: the positions SQLite
        gives (``MAX(rowid) + 1`` onwards, one ``executemany``) and the seal's
        reads then see every earlier commit.  ``read_at``: the last position when
        the batch was checked (see :mod:`ledger.storage.seal`).
        """
        if not stored_events:
            return []
        c.executemany(
            self.insert_events_statement,
            ((s.originator_id, s.originator_version, s.topic, s.state) for s in stored_events),
        )
        c.execute(self.select_max_notification_id_statement)
        last = c.fetchone()[0]
        positions = range(last - len(stored_events) + 1, last + 1)
        self.seal.seal(c, positions, stored_events, read_at)
        self.feed.feed(c, positions, stored_events, self.seal.codec)
        return list(positions)

    def scan(self, after: int, limit: int) -> list[ScannedRow]:
        """Up to ``limit`` stored events after position ``after``, in ledger order (SPEC section 4)."""
        with self.datastore.transaction(commit=False) as cursor:
            raw = cursor.sqlite_cursor
            raw.row_factory = None  # plain tuples: the hot path of rebuilds
            raw.execute(self.scan_statement, (after, limit))
            return raw.fetchall()


class LedgerSQLiteFactory(CodecFactory, SQLiteFactory):
    application_recorder_class = LedgerSQLiteRecorder


def store_url(store: str | None) -> str:
    """The store to use: the option, else ``TRIAL_LEDGER_STORE``, else ``trial-ledger.db``."""
    return store or os.environ.get("TRIAL_LEDGER_STORE") or DEFAULT_STORE


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def sqlite_path(url: str) -> str:
    """The file of a SQLite store URL: a plain path, ``sqlite:///path``, or an SQLite URI
    ``file:path?mode=ro`` (read-only: every read command runs on it, issue 12 item 4)."""
    if url.startswith("file:"):
        return unquote(urlparse(url).path)
    return url.removeprefix("sqlite://").removeprefix("/") if url.startswith("sqlite:///") else url


def busy_timeout() -> int:
    """Seconds a writer waits for a busy database before giving up (exit 3)."""
    value = os.environ.get(BUSY_TIMEOUT_VARIABLE, "").strip()
    return max(1, int(value)) if value.isdigit() else BUSY_TIMEOUT_SECONDS


def store_env(url: str) -> dict[str, str]:
    """The eventsourcing environment for a store URL.

    ``postgresql://user:password@host:port/dbname?schema=name`` selects
    PostgreSQL (schema defaults to ``public``); what the URL leaves out comes
    from libpq's variables ``PGHOST``, ``PGPORT``, ``PGUSER``, ``PGPASSWORD`` and
    ``PGDATABASE`` (issue 12: each person connects as their own login).
    Anything else is a SQLite file.
    """
    common = {"ORIGINATOR_ID_TYPE": "text"}
    busy = str(busy_timeout())
    if is_postgres(url):
        parts = urlparse(url)
        query = parse_qs(parts.query)
        return {
            **common,
            "PERSISTENCE_MODULE": "ledger.storage.postgres:LedgerPostgresFactory",
            "POSTGRES_DBNAME": unquote(parts.path.lstrip("/")) or _libpq("PGDATABASE", "postgres"),
            "POSTGRES_HOST": parts.hostname or _libpq("PGHOST", "127.0.0.1"),
            "POSTGRES_PORT": str(parts.port or _libpq("PGPORT", "5432")),
            "POSTGRES_USER": unquote(parts.username or _libpq("PGUSER", "postgres")),
            "POSTGRES_PASSWORD": unquote(parts.password or _libpq("PGPASSWORD", "")),
            "POSTGRES_SCHEMA": query.get("schema", ["public"])[0],
            "POSTGRES_LOCK_TIMEOUT": busy,
            "POSTGRES_POOL_SIZE": "2",
        }
    return {
        **common,
        "PERSISTENCE_MODULE": "ledger.storage.stores:LedgerSQLiteFactory",
        # An SQLite URI goes to SQLite whole (the library opens with ``uri=True``), its mode kept.
        "SQLITE_DBNAME": _immutable(sqlite_path(url)) or _sqlite_name(url),
        "SQLITE_LOCK_TIMEOUT": busy,
    }


def _sqlite_name(url: str) -> str:
    return url if url.startswith("file:") else sqlite_path(url)


def _immutable(path: str) -> str | None:
    """The read-only, immutable URI of a ledger file in a folder this process may not write; else None.

    A reader of a database in write-ahead-log mode needs the log's shared-memory
    file beside it, which SQLite cannot make in such a folder (an archived copy, a
    read-only mount): every read would fail.  When no log is there either, the file
    holds every committed write and nobody is writing, so SQLite reads it as it
    is, without the files of a writer's log.  With a log there (a writer at work,
    or one killed) nothing changes: SQLite opens it as usual, or says why not.
    """
    file = Path(path).resolve()  # SQLite keeps its log beside the file a link points to
    if not file.is_file() or os.access(file.parent, os.W_OK) or Path(f"{file}-wal").exists():
        return None
    return f"{file.as_uri()}?mode=ro&immutable=1"


def _libpq(variable: str, default: str) -> str:
    return os.environ.get(variable) or default


def _no_ledger(where: str) -> InvalidInput:
    return InvalidInput(f"store: no ledger at {where}; create one with `trial-ledger init`")


def sqlite_tables(path: str) -> set[str] | None:
    """The tables of SQLite file ``path``, opened read-only; None when it is not a SQLite database.

    Raises :class:`InvalidInput` when there is no such file or it cannot be read.
    """
    file = Path(path)
    if file.is_dir():
        raise InvalidInput(f"store: {path} is a directory, not a ledger file")
    if not file.exists():
        raise _no_ledger(path)
    try:
        reading = _immutable(path) or f"{file.resolve().as_uri()}?mode=ro"
        with closing(sqlite3.connect(reading, uri=True)) as conn:
            rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    except sqlite3.DatabaseError as exc:
        if "not a database" in str(exc) or "malformed" in str(exc):
            return None
        raise InvalidInput(f"store: cannot read {path}: {exc}") from None
    return {name for (name,) in rows}


def is_sqlite_database(path: str | Path) -> bool:
    """Whether ``path`` is a SQLite database file, read from its header alone (nothing is opened)."""
    try:
        with open(path, "rb") as file:
            return file.read(len(SQLITE_HEADER)) == SQLITE_HEADER
    except OSError:
        return False


def _postgres_state(url: str) -> tuple[bool, bool]:
    """(schema exists, ledger tables exist) of a PostgreSQL store; exit 3 when unreachable."""
    import psycopg

    env = store_env(url)
    schema = env["POSTGRES_SCHEMA"]
    try:
        with psycopg.connect(
            dbname=env["POSTGRES_DBNAME"],
            host=env["POSTGRES_HOST"],
            port=env["POSTGRES_PORT"],
            user=env["POSTGRES_USER"],
            password=env["POSTGRES_PASSWORD"],
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
        ) as conn:
            row = conn.execute(
                "SELECT to_regnamespace(%s) IS NOT NULL, to_regclass(%s) IS NOT NULL",
                (f'"{schema}"', f'"{schema}"."{POSTGRES_EVENTS_TABLE}"'),
            ).fetchone()
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise Refused(f"store: the database is unavailable: {first}") from None
    assert row is not None
    return bool(row[0]), bool(row[1])


def require_ledger(url: str, *, create: bool) -> None:
    """Check the store before the library opens it (issue 11: reading never creates a store).

    Without ``create`` the ledger must exist already; with it (``init``,
    ``demo``) the place must be able to hold one: a SQLite file that is an
    empty SQLite database or a ledger, or does not exist yet in an existing
    folder, or an existing PostgreSQL schema.  Raises :class:`InvalidInput` (exit 2) naming
    the store, or :class:`Refused` (exit 3) when PostgreSQL does not answer.
    """
    if is_postgres(url):
        schema_exists, tables_exist = _postgres_state(url)
        if not schema_exists:
            raise InvalidInput(f"store: schema {store_env(url)['POSTGRES_SCHEMA']} does not exist")
        if not (tables_exist or create):
            raise _no_ledger(url.split("@")[-1])
        return
    path = sqlite_path(url)
    if create and not Path(path).exists() and not Path(path).is_symlink():
        if not Path(path).parent.resolve().is_dir():
            raise InvalidInput(f"store: folder {Path(path).parent} does not exist")
        return
    tables = sqlite_tables(path)
    if tables is None:
        raise InvalidInput(f"store: {path} is not a SQLite ledger")
    if not (create or set(LEDGER_TABLES) <= tables):
        raise _no_ledger(path)
    if tables and not tables & set(LEDGER_TABLES):  # another program's database: never made a ledger
        named = ", ".join(sorted(tables)[:3]) + (", ..." if len(tables) > 3 else "")
        raise InvalidInput(f"store: {path} is another program's database (tables {named}), not a ledger")
