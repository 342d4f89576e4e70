"""The PostgreSQL store for a multi-site deployment (SPEC section 6, ``postgresql://``).

The library's application recorder, extended to seal every insert in the same
transaction (:mod:`ledger.storage.seal`).  Imported only when a ``postgresql://`` store
is used, so that commands on the SQLite default do not pay for psycopg.

Writes go below the library's insert (issue #7), through its recorder class:
one transaction takes the table lock, gives the batch the positions after the
last one (so positions stay contiguous, as the Merkle tree's leaf numbering
needs, even after a rolled back insert), streams the events, their ledger
entries and the read model's rows with binary ``COPY`` (a login that is not the
owner through a temporary table, so that row-level security judges every row:
issue 14), and rolls back
everything on any error: the library's pipelined insert commits before it
raises what fails after its ``INSERT`` (the seal, the database lock), and does
not scale to a million rows.
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
from psycopg.sql import SQL, Identifier, Literal

from ledger.domain.errors import InvalidInput, Refused
from ledger.storage import grants, refusal_seal
from ledger.storage.codec import CodecFactory
from ledger.storage.feed import Row, TimelineFeed
from ledger.storage.refusal_seal import RefusalTopics
from ledger.storage.seal import ENTRIES_TABLE, REFUSALS_STREAM, EntryRow, Seal
from ledger.storage.stores import Login, ScannedRow

# Attempts of one insert when the connection drops under it (each on a new connection).
CONNECTION_ATTEMPTS = 3


# How a login appends rows to a table of the ledger (issue 14): binary ``COPY`` straight in (the
# schema's owner); through a temporary table and one ``INSERT ... SELECT``, which row-level security
# judges row by row (PostgreSQL allows no ``COPY FROM`` into a table under it); or, for a login that
# may not make temporary tables, ``INSERT`` statements.
COPY, STAGED, INSERTS = "copy", "staged", "inserts"
STAGED_ROWS = "ledger_staged_rows"
EVENT_COLUMNS = ("notification_id", "originator_id", "originator_version", "topic", "state")
EVENT_TYPES = ("int8", "text", "int8", "text", "bytea")
ENTRY_COLUMNS = ("position", "event_id", "participant", "content_hash", "leaf_hash", "chain_hash")
ENTRY_TYPES = ("int8", "text", "text", "bytea", "bytea", "bytea")
TIMELINE_COLUMNS = ("participant", "position", "state")
TIMELINE_TYPES = ("text", "int8", "bytea")


def append_rows(
    cursor: Any,
    table: str,
    columns: Sequence[str],
    types: Sequence[str],
    rows: Iterable[tuple[Any, ...]],
    way: str,
) -> None:
    """Append ``rows`` (of ``columns``, of PostgreSQL ``types``) to ``table`` the ``way`` given.

    Staged, the rows are copied into a temporary table that lives only as long as
    this call (its transaction, on an error), then inserted from it in one statement:
    every row still passes the policies of ``table``, as an ``INSERT`` would.
    """
    names = ", ".join(columns)
    if way == INSERTS:
        cursor.executemany(f"INSERT INTO {table} ({names}) VALUES ({', '.join(['%s'] * len(columns))})", rows)
        return
    target = table
    if way == STAGED:
        target = f"pg_temp.{STAGED_ROWS}"
        typed = ", ".join(f"{column} {kind}" for column, kind in zip(columns, types, strict=True))
        cursor.execute(f"CREATE TEMPORARY TABLE {STAGED_ROWS} ({typed})")
    with cursor.copy(f"COPY {target} ({names}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(list(types))
        for row in rows:
            copy.write_row(row)
    if way == STAGED:
        cursor.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM {target}")
        cursor.execute(f"DROP TABLE {target}")


class CopySeal(Seal):
    """The seal, writing ``ledger_entries`` with binary COPY and asking for many ids with one array.

    For a login that is not the owner (:meth:`use_functions`), the rows go in
    staged (:func:`append_rows`), and the frontier and chain head through the
    owner's function (:mod:`ledger.storage.grants`).
    """

    way = COPY

    def use_functions(self, schema: str, way: str) -> None:
        self.way = way
        self.upsert_meta = f'SELECT "{schema}".{grants.META_FUNCTION}(%s, %s)'

    def write_entries(self, cursor: Any, rows: Iterable[EntryRow]) -> None:
        append_rows(cursor, self.entries, ENTRY_COLUMNS, ENTRY_TYPES, rows, self.way)

    def _select_in(self, datastore: Any, select: str, values: Sequence[str]) -> list[Any]:
        # ``= ANY(array)``: one parameter, where thousands of ``%s`` cost psycopg a parse each time.
        with datastore.transaction(commit=False) as cursor:
            cursor.execute(f"{select} = ANY(%s)", [list(values)])
            return cursor.fetchall()


class CopyFeed(TimelineFeed):
    """The read model's feed on PostgreSQL: its rows appended as the login appends (:func:`append_rows`).

    The read model's tables are under row-level security as the ledger's are
    (:func:`ledger.storage.grants.read_model_statements`): binary ``COPY`` for the
    owner, staged (or row by row) for any other login, as the recorder finds
    at its first insert.
    """

    way = COPY

    def __init__(self, schema: str, **kwargs: Any) -> None:
        super().__init__(prefix=f'"{schema}".', **kwargs)
        self.schema = schema

    def write_rows(self, cursor: Any, rows: Iterable[Row]) -> None:
        append_rows(cursor, self.timeline, TIMELINE_COLUMNS, TIMELINE_TYPES, rows, self.way)

    def tables(self, cursor: Any) -> list[str]:
        """Which of the read model's tables the schema has (a ledger of an earlier version may lack some)."""
        cursor.execute(self.select_present)
        row = cursor.fetchone()
        return [name for name in grants.READ_MODEL_TABLES if row[name]]

    def secure(self, cursor: Any) -> None:
        """The row-level security ``init`` gave the tables, again once ``rebuild`` made them anew (issue 12).

        Nothing on a schema ``init`` never secured.
        """
        if grants.secured(cursor, self.schema):
            for statement in grants.read_model_statements(self.schema, self.tables(cursor)):
                cursor.execute(statement)


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
        self.feed = CopyFeed(self.datastore.schema, placeholder="%s", blob="BYTEA", collate='COLLATE "C" ')
        creating = [*self.seal.create_statements, *self.feed.create_statements]
        self.sql_create_statements.extend(SQL(s) for s in creating)  # type: ignore[arg-type]
        table = SQL("{0}.{1}").format(Identifier(self.datastore.schema), Identifier(self.events_table_name))
        self.events = f'"{self.datastore.schema}"."{self.events_table_name}"'
        self.way = COPY  # how this login appends rows (:func:`append_rows`), known at its first insert
        self.may_stage = SQL("SELECT has_database_privilege(current_database(), 'TEMPORARY') AS staging")
        self.lock_through_function = SQL("SELECT {0}.{1}()").format(
            Identifier(self.datastore.schema), Identifier(grants.LOCK_FUNCTION)
        )
        self._owner: bool | None = None
        self._seals_refusals: bool | None = None
        self._login_column = False
        function = SQL("{0}.{1}").format(
            Identifier(self.datastore.schema), Identifier(refusal_seal.SEAL_REFUSAL)
        )
        self.seal_refusal = SQL("SELECT {0}(%s, %s, %s)").format(function)
        self.refusal_signature = f'"{self.datastore.schema}".{refusal_seal.SEAL_REFUSAL}(bigint,text,bytea)'
        self.select_last = SQL("SELECT COALESCE(MAX(notification_id), 0) FROM {0}").format(table)
        self.advance_sequence = SQL("SELECT setval(pg_get_serial_sequence(%s, 'notification_id'), %s)")
        self.has_login_column = SQL(
            "SELECT 1 FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s AND column_name = {0}"
        ).format(Literal(grants.LOGIN_COLUMN))
        self.select_logins = SQL(
            "SELECT e.position, e.{0} FROM {1} e WHERE e.position > %s AND e.{0} IS NOT NULL "
            "AND NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = e.{0} AND r.rolsuper) "
            "ORDER BY e.position LIMIT %s"
        ).format(Identifier(grants.LOGIN_COLUMN), SQL(self.seal.entries))  # type: ignore[arg-type]
        # The stream's rows whose user must be the login that sealed them ("" when none did): one
        # index look-up of the seal per row of the stream, whatever the ledger's size (the LIMIT
        # keeps the planner from making it a join that reads every seal).
        self.select_stream_logins = (
            "SELECT s.notification_id, s.originator_version, COALESCE({login}, '') FROM {events} s "
            "LEFT JOIN LATERAL (SELECT * FROM {entries} x WHERE x.position = s.notification_id LIMIT 1) e "
            "ON true "
            "WHERE s.originator_id = %s AND (e.position IS NULL OR ({login} IS NOT NULL AND NOT EXISTS "
            "(SELECT 1 FROM pg_roles r WHERE r.rolname = {login} AND r.rolsuper))) "
            "ORDER BY s.originator_version"
        )
        self.scan_statement = SQL(
            "SELECT notification_id, originator_id, state FROM {0} "
            "WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
        ).format(table)

    def login(self) -> Login:
        """Who the database says this connection is (issue 12, item 1): the session user."""
        with self.datastore.get_connection() as conn:
            row = conn.execute(
                "SELECT session_user AS name, rolsuper, has_table_privilege(%s, 'UPDATE') AS owns "
                "FROM pg_roles WHERE rolname = session_user",
                (self.events,),
            ).fetchone()
        assert row is not None
        return Login(row["name"], bool(row["rolsuper"]), bool(row["owns"]))

    def secure(self, sites: Sequence[str], refusals: RefusalTopics, coding: Sequence[str]) -> None:
        """Make the schema's group roles, grants, policies and functions (:mod:`ledger.storage.grants`).

        The function that seals a refusal (:mod:`ledger.storage.refusal_seal`) reads the
        stored state: it is made only when the states are plain MessagePack.
        """
        schema = self.datastore.schema
        names = [grants.group(schema, role) for role in grants.ROLES]
        names += [grants.site_group(schema, site) for site in sites]
        key = f"trial-ledger secure {schema}"
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            curs.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (key,))
            existing = grants.existing_roles(curs, names)
            plain = refusals if self.seal.codec.transparent else None
            tables = self.feed.tables(curs)
            for statement in grants.secure_statements(
                schema, self.events_table_name, sites, existing, plain, tables, coding
            ):
                curs.execute(statement)

    def set_member(self, login: str, role: str | None, site: str | None) -> bool:
        """Give ``login`` exactly ledger role ``role`` and site ``site`` (None: none) in the database.

        False when the schema has no groups (``init`` of an earlier version): then
        the roles live in the ledger's events only.
        """
        grants.check_name(login, "name")
        schema = self.datastore.schema
        function = f'"{schema}".{grants.MEMBER_FUNCTION}'
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            if not grants.secured(curs, schema):
                return False
            if site is not None and not grants.existing_roles(curs, [grants.site_group(schema, site)]):
                raise InvalidInput(
                    f"site: the database has no group for site {site} yet; the owner runs `trial-ledger init`"
                )
            curs.execute(f"SELECT {function}(%s, %s, %s)", (login, role, site))
        return True

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
                if isinstance(exc.__cause__, psycopg.errors.InsufficientPrivilege):
                    # The database's own refusal (ledger.storage.grants): exit 3, nothing stored.
                    raise Refused(f"the database refuses this login: {exc.__cause__}") from None
                if isinstance(exc.__cause__, psycopg.errors.ReadOnlySqlTransaction):
                    raise Refused(f"the database is read-only (a standby?): {exc.__cause__}") from None
                if attempt == CONNECTION_ATTEMPTS or not _connection_lost(exc):
                    raise
                time.sleep(0.2 * attempt)
        raise AssertionError("unreachable")

    def _insert_sealed(
        self, stored_events: Sequence[StoredEvent], *, read_at: int | None = None, **_: Any
    ) -> list[int]:
        through_functions = self._through_functions()
        if through_functions and self._refusal_sealed_by_database(stored_events):
            return self._insert_refusal(stored_events[0])
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            if through_functions:
                curs.execute(self.lock_table_statements[0])  # the lock timeout
                curs.execute(self.lock_through_function)
            else:
                self._lock_table(curs)
            self._notify_channel(curs)
            curs.execute(self.select_last)
            last = curs.fetchone()["coalesce"]  # type: ignore[index]
            positions = range(last + 1, last + 1 + len(stored_events))
            rows = (
                (position, s.originator_id, s.originator_version, s.topic, s.state)
                for position, s in zip(positions, stored_events, strict=True)
            )
            append_rows(curs, self.events, EVENT_COLUMNS, EVENT_TYPES, rows, self.way)
            if stored_events:
                curs.execute(self.advance_sequence, (self.events, positions[-1]))
            self.seal.seal(curs, positions, stored_events, read_at)
            self.feed.feed(curs, positions, stored_events, self.seal.codec)
            return list(positions)

    def _through_functions(self) -> bool:
        """Whether this login appends through the owner's functions (it may not lock or update itself).

        Such a login stages its rows (:func:`append_rows`), or inserts them one by one
        when it may not make a temporary table.
        """
        if self._owner is None:
            self._owner = self.login().owner
            if not self._owner:
                with self.datastore.get_connection() as conn:
                    row = conn.execute(self.may_stage).fetchone()
                self.way = STAGED if row is not None and row["staging"] else INSERTS
                self.seal.use_functions(self.datastore.schema, self.way)
                self.feed.way = self.way
        return not self._owner

    def _refusal_sealed_by_database(self, stored_events: Sequence[StoredEvent]) -> bool:
        """Whether this batch is one refusal the owner's function seals (issue 12, item 7).

        For a login that is not the owner, when ``init`` made the function (it reads
        plain states only): any such login's refusal goes that way, a ``SELECT``-only
        one's included, checked by the database as its own.
        """
        if len(stored_events) != 1 or stored_events[0].originator_id != REFUSALS_STREAM:
            return False
        if self._seals_refusals is None:
            with self.datastore.get_connection() as conn:
                row = conn.execute(
                    "SELECT to_regprocedure(%s) IS NOT NULL AS made", (self.refusal_signature,)
                ).fetchone()
            self._seals_refusals = bool(row and row["made"]) and self.seal.codec.transparent
        return self._seals_refusals

    def _insert_refusal(self, stored: StoredEvent) -> list[int]:
        """Seal one refusal through the owner's function; its position."""
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            curs.execute(self.lock_table_statements[0])  # the lock timeout
            self._notify_channel(curs)
            curs.execute(self.seal_refusal, (stored.originator_version, stored.topic, stored.state))
            return [curs.fetchone()[refusal_seal.SEAL_REFUSAL]]  # type: ignore[index]

    def appended_by(self, after: int, limit: int) -> list[tuple[int, str]]:
        """Up to ``limit`` sealed rows after ``after`` with the login that appended them (issue 12, item 8).

        The database fills ``ledger_entries.login`` with the session user and its
        policies let no login name another; rows sealed by a superuser (who may
        name the actor) or before ``init`` made the column are left out.
        """
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            curs.execute(self.has_login_column, (self.datastore.schema, ENTRIES_TABLE))
            if curs.fetchone() is None:
                return []
            curs.execute(self.select_logins, (after, limit))
            return curs.fetchall()

    def sealed_logins(self, stream: str) -> list[tuple[int, int, str]]:
        """``(position, version, login)`` of ``stream``'s rows whose ``user`` must be that login (issue 12).

        As :meth:`appended_by` says who sealed a row; ``""`` for a row that no
        ledger entry seals.  Before ``init`` made the login column, only those.
        """
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            if not self._login_column:  # once made by init, the column stays
                curs.execute(self.has_login_column, (self.datastore.schema, ENTRIES_TABLE))
                self._login_column = curs.fetchone() is not None
            column = SQL("e.{0}").format(Identifier(grants.LOGIN_COLUMN))
            login = column if self._login_column else SQL("NULL::text")
            table = Identifier(self.datastore.schema, self.events_table_name)
            curs.execute(
                SQL(self.select_stream_logins).format(  # type: ignore[arg-type]
                    login=login,
                    events=table,
                    entries=SQL(self.seal.entries),  # type: ignore[arg-type]
                ),
                (stream,),
            )
            return curs.fetchall()

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
