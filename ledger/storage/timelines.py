"""Storage of the participant timelines read model: the library's tracking recorders, extended.

SPEC section 4 (projections rebuild at any time) and issue 13 (storage adapters
live in ``ledger/storage/``).  The view is an eventsourcing tracking recorder for
SQLite or PostgreSQL: every batch of rows ``(participant, position, stored
state)`` is written in the same transaction as the tracking record of the last
notification it covers, so a projection killed mid-way restarts exactly where it
stopped.  :class:`Timelines` is the typed interface the projection in
``projections/readmodel`` uses; nothing above this module writes SQL.

Every read here is bounded: rows are paged by key, never loaded whole, and
:meth:`Timelines.shape` answers in one statement what the read-time consistency
check needs (issue 11 item 8).  A database error that means the view's tables are
not what this module made (a dropped table or column) is raised as
:class:`TimelinesUnreadable`; a row whose columns are not of their types as
:class:`RowUnreadable`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple, Protocol

from eventsourcing.persistence import IntegrityError, OperationalError, ProgrammingError, Tracking
from eventsourcing.sqlite import SQLiteTrackingRecorder

from ledger.storage.stores import is_postgres

Row = tuple[str, int, bytes]
PAGE = 20_000
CREATE_ATTEMPTS = 3


class Shape(NamedTuple):
    """What one statement says about the view and the ledger, from one snapshot of both."""

    held: int  # rows in the view
    last: int  # the view's highest row position
    tracked: int  # the tracked position
    covered: int  # the ledger's events at or before the tracked position
    size: int  # the ledger's highest position


class TimelinesUnreadable(Exception):
    """The view's tables cannot be read as this module made them (a table or column is missing)."""


class RowUnreadable(Exception):
    """One row of the view whose columns are not a participant, a position and stored bytes."""

    def __init__(self, participant: object, position: object) -> None:
        super().__init__(f"the row of {participant!r} at position {position!r} is not readable")
        self.participant = participant
        self.position = position


class Timelines(Protocol):
    """The read model's storage, as the projection and its queries use it."""

    def append(self, rows: Sequence[Row], tracking: Tracking) -> None:
        """Add rows and record the tracking position, in one transaction."""

    def shape(self, application_name: str) -> Shape:
        """The view's rows, highest row and tracked position with the ledger's events they cover."""

    def rows(self, participant: str | None = None) -> Iterator[Row]:
        """Every row by participant then position (or one participant's), page by page."""

    def in_ledger_order(self) -> Iterator[Row]:
        """Every row by position, page by page."""


class TimelineSQL:
    """The view's statements, for either database (placeholder, schema and blob type differ)."""

    def __init__(self, table: str, tracking: str, placeholder: str, blob: str) -> None:
        p = placeholder
        columns = f"SELECT participant, position, state FROM {table}"
        self.create = (
            f"CREATE TABLE IF NOT EXISTS {table} (participant TEXT NOT NULL, position BIGINT NOT NULL, "
            f"state {blob} NOT NULL, PRIMARY KEY (participant, position))"
        )
        self.index = f"CREATE INDEX IF NOT EXISTS rm_timeline_position ON {table} (position)"
        self.insert = f"INSERT INTO {table} VALUES ({p},{p},{p})"
        self.page_all = (
            f"{columns} WHERE (participant, position) > ({p}, {p}) ORDER BY participant, position LIMIT {p}"
        )
        self.page_one = f"{columns} WHERE participant = {p} AND position > {p} ORDER BY position LIMIT {p}"
        self.page_by_position = f"{columns} WHERE position > {p} ORDER BY position LIMIT {p}"
        self.table, self.tracking, self.placeholder = table, tracking, placeholder

    def shape(self, events: str, event_position: str) -> str:
        """One statement for :class:`Shape`, over the view and the ledger's ``events`` table."""
        table, p = self.table, self.placeholder
        tracked = (
            f"(SELECT COALESCE(MAX(notification_id), 0) FROM {self.tracking} WHERE application_name = {p})"
        )
        return (
            f"SELECT (SELECT COUNT(*) FROM {table}) AS held, "
            f"(SELECT COALESCE(MAX(position), 0) FROM {table}) AS last, {tracked} AS tracked, "
            f"(SELECT COUNT(*) FROM {events} WHERE {event_position} <= {tracked}) AS covered, "
            f"(SELECT COALESCE(MAX({event_position}), 0) FROM {events}) AS size"
        )


def _checked(row: Any) -> Row:
    participant, position, state = row["participant"], row["position"], row["state"]
    if not (
        isinstance(participant, str) and isinstance(position, int) and isinstance(state, bytes | memoryview)
    ):
        raise RowUnreadable(participant, position)
    return participant, position, bytes(state)


class TimelineView:
    """The statements of :class:`Timelines` on the library's tracking recorder (mixed in below)."""

    sql: TimelineSQL
    datastore: Any
    events_table: str  # the ledger's events, as the shape statement names them
    event_position = "notification_id"  # the column of their positions

    def append(self, rows: Sequence[Row], tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as cursor:
            if rows:
                cursor.executemany(self.sql.insert, rows)
            self._insert_tracking(cursor, tracking)  # type: ignore[attr-defined]

    def shape(self, application_name: str) -> Shape:
        (first,) = self._select(
            self.sql.shape(self.events_table, self.event_position), (application_name, application_name)
        )
        try:
            return Shape(*(int(first[name]) for name in Shape._fields))
        except ValueError as exc:
            raise TimelinesUnreadable(f"a position is not a number: {exc}") from exc

    def rows(self, participant: str | None = None) -> Iterator[Row]:
        last: tuple[str, int] = ("", -1)
        while True:
            if participant is None:
                page = self._select(self.sql.page_all, (*last, PAGE))
            else:
                page = self._select(self.sql.page_one, (participant, last[1], PAGE))
            for row in page:
                checked = _checked(row)
                last = checked[0], checked[1]
                yield checked
            if len(page) < PAGE:
                return

    def in_ledger_order(self) -> Iterator[Row]:
        last = -1
        while True:
            page = self._select(self.sql.page_by_position, (last, PAGE))
            for row in page:
                checked = _checked(row)
                last = checked[1]
                yield checked
            if len(page) < PAGE:
                return

    def _select(self, statement: str, parameters: tuple[Any, ...]) -> list[Any]:
        try:
            with self.datastore.transaction(commit=False) as cursor:
                cursor.execute(statement, parameters)
                return list(cursor.fetchall())
        except (OperationalError, ProgrammingError) as exc:
            if "locked" in str(exc):
                raise
            raise TimelinesUnreadable(str(exc).splitlines()[0]) from exc


class SQLiteTimelineView(TimelineView, SQLiteTrackingRecorder):
    """The view in the ledger's SQLite file."""

    sql = TimelineSQL("rm_timeline", "tracking", "?", "BLOB")
    event_position = "rowid"

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(), self.sql.create, self.sql.index]


def _postgres_view_class() -> type[TimelineView]:
    """The PostgreSQL view, imported only when the store is PostgreSQL."""
    from eventsourcing.postgres import PostgresTrackingRecorder
    from psycopg.sql import SQL

    class PostgresTimelineView(TimelineView, PostgresTrackingRecorder):
        """The view in the ledger's PostgreSQL schema."""

        def __init__(self, datastore: Any, **kwargs: Any) -> None:
            super().__init__(datastore, **kwargs)
            schema = f'"{self.datastore.schema}"'
            tracking = f"{schema}.{self.tracking_table_name}"
            self.sql = TimelineSQL(f"{schema}.rm_timeline", tracking, "%s", "BYTEA")
            for statement in (self.sql.create, self.sql.index):
                self.sql_create_statements.append(SQL(statement))  # type: ignore[arg-type]

    return PostgresTimelineView


def open_timelines(factory: Any, store: str, events_table: str) -> Timelines:
    """The view in the ledger's own database (SQLite file or PostgreSQL schema), its tables made.

    Two processes making the tables at once on PostgreSQL can collide inside
    ``CREATE TABLE IF NOT EXISTS`` (the catalogue's unique index); the one that
    loses finds them made when it tries again.
    """
    view_class: Any = _postgres_view_class() if is_postgres(store) else SQLiteTimelineView
    for _ in range(CREATE_ATTEMPTS - 1):
        try:
            return _made(factory, view_class, events_table)
        except IntegrityError:
            continue
    return _made(factory, view_class, events_table)


def remake_timelines(factory: Any, store: str, events_table: str) -> Timelines:
    """The view with its tables dropped and made anew, whatever was done to them (``rebuild``).

    A table altered out of shape (a column dropped, a trigger added) cannot be
    repaired row by row, so ``rebuild`` starts from nothing.  This read model is
    the only tracking in the ledger's database, so the tracking table goes too.
    """
    if is_postgres(store):
        schema = f'"{factory.datastore.schema}"'
        tracking = f'{schema}."{factory.env.name.lower()}_tracking"'
        tables = [f"{schema}.rm_timeline", tracking]
    else:
        tables = ["rm_timeline", "tracking"]
    with factory.datastore.transaction(commit=True) as cursor:
        for table in tables:
            cursor.execute(f"DROP TABLE IF EXISTS {table}")
    return open_timelines(factory, store, events_table)


def _made(factory: Any, view_class: Any, events_table: str) -> Timelines:
    try:
        view = factory.tracking_recorder(view_class)
    except (OperationalError, ProgrammingError) as exc:
        if "locked" in str(exc):
            raise
        raise TimelinesUnreadable(str(exc).splitlines()[0]) from exc
    sqlite = isinstance(view, SQLiteTimelineView)
    view.events_table = events_table if sqlite else f'"{factory.datastore.schema}"."{events_table}"'
    return view  # type: ignore[no-any-return]
