"""Storage of the participant timelines read model, read side and rebuild (SPEC section 4, issue 14).

The view's tables and the write-side feed that keeps them current in the
events' own transaction are :mod:`ledger.storage.feed`.  Here is what reads them
and what ``rebuild`` writes: :class:`Timelines` is the typed interface the
projection in ``projections/readmodel`` uses; nothing above this module writes
SQL.  Opening the view creates nothing and reading it writes nothing, so every
read command runs on a read-only file, a SELECT-only login or a hot standby.

Every read here is bounded: rows are paged by key, never loaded whole, and
:meth:`Timelines.shape` answers in one statement what the read-time consistency
check needs (issue 11 item 8).  Events the view does not cover yet are read from
the events table in the view's own order (:meth:`Timelines.tail`).  A database
error that means the view's tables are not what this module made (a dropped
column) is raised as :class:`TimelinesUnreadable`; a row whose columns are not
of their types as :class:`RowUnreadable`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, NamedTuple

from eventsourcing.persistence import OperationalError, ProgrammingError

from ledger.storage.feed import OLD_TRACKING_TABLES, Row, TimelineFeed
from ledger.storage.stores import is_postgres
from ledger.storage.summaries import BatchSeen, ClockRow, clock_row

PAGE = 5_000


class Shape(NamedTuple):
    """What one statement says about the view and the ledger, from one snapshot of both."""

    held: int  # rows in the view
    last: int  # the view's highest row position
    tracked: int  # the tracked position
    covered: int  # the ledger's events at or before the tracked position
    size: int  # the ledger's highest position


class SummaryShape(NamedTuple):
    """What one statement says about the summaries: rows held, highest row, rows counted, clock position."""

    rows: int  # rows in rm_summary
    last: int  # their highest position
    counted: int  # the rows the clock says its batches added
    tracked: int  # the clock's highest position: how far the summaries go


class TimelinesUnreadable(Exception):
    """The view's tables cannot be read as this module made them (a table or column is missing)."""


class RowUnreadable(Exception):
    """One row of the view whose columns are not a participant, a position and stored bytes."""

    def __init__(self, participant: object, position: object) -> None:
        super().__init__(f"the row of {participant!r} at position {position!r} is not readable")
        self.participant = participant
        self.position = position


class TimelineSQL:
    """The view's read statements, for either database (placeholder and table names differ)."""

    def __init__(self, feed: TimelineFeed, events: str, position: str, placeholder: str) -> None:
        p, table = placeholder, feed.timeline
        columns = f"SELECT participant, position, state FROM {table}"
        self.page_all = (
            f"{columns} WHERE (participant, position) > ({p}, {p}) ORDER BY participant, position LIMIT {p}"
        )
        self.page_one = f"{columns} WHERE participant = {p} AND position > {p} ORDER BY position LIMIT {p}"
        self.page_by_position = f"{columns} WHERE position > {p} ORDER BY position LIMIT {p}"
        # Events after a position, in the view's order: by stream, then version (= position within one).
        stream = f"originator_id {feed.collate}".rstrip()
        tail = f"SELECT originator_id, originator_version, {position} AS position, state FROM {events}"
        order = f"ORDER BY {stream}, originator_version LIMIT {p}"
        self.tail_all = (
            f"{tail} WHERE ({stream}, originator_version) > ({p}, {p}) AND {position} > {p} {order}"
        )
        self.tail_one = (
            f"{tail} WHERE originator_id = {p} AND originator_version > {p} AND {position} > {p} {order}"
        )
        held = f"(SELECT COUNT(*) FROM {table})"
        last = f"(SELECT COALESCE(MAX(position), 0) FROM {table})"
        tracked = f"(SELECT COALESCE(MAX(position), 0) FROM {feed.tracking})"
        size = f"(SELECT COALESCE(MAX({position}), 0) FROM {events})"
        # All events less those after the tracked position: the whole count is read off the smallest
        # index, and the rest is a range of positions, empty when the view is current.
        after = f"(SELECT COUNT(*) FROM {events} WHERE {position} > {tracked})"
        self.covered = f"SELECT ((SELECT COUNT(*) FROM {events}) - {after}) AS covered"

        def shape(rows: bool) -> str:
            held_, last_ = (held, last) if rows else ("0", "0")
            return f"SELECT {held_} AS held, {last_} AS last, {tracked} AS tracked, {size} AS size"

        # With the timeline table and without it (a dropped table: no rows).
        self.shape = {True: shape(True), False: shape(False)}
        summary, clock = feed.summaries.summary, feed.summaries.clock
        self.summary_shape = (
            f"SELECT (SELECT COUNT(*) FROM {summary}) AS rows, "
            f"(SELECT COALESCE(MAX(position), 0) FROM {summary}) AS last, "
            f"(SELECT COALESCE(SUM(summaries), 0) FROM {clock}) AS counted, "
            f"(SELECT COALESCE(MAX(position), 0) FROM {clock}) AS tracked"
        )
        self.page_summary_rows = (
            f"SELECT participant, position, steps FROM {summary} WHERE (participant, position) > ({p}, {p}) "
            f"ORDER BY participant, position LIMIT {p}"
        )
        # The view's rows of a range of positions, with their events' topics (whose streams they extend).
        self.rows_after = (
            f"SELECT v.participant, v.state, e.topic FROM {table} v "
            f"JOIN {events} e ON e.{position} = v.position "
            f"WHERE v.position > {p} AND v.position <= {p} ORDER BY v.position"
        )
        # Appends wait while rebuilt summaries are closed (SQLite: the first write takes its lock).
        self.lock = f"LOCK TABLE {events} IN EXCLUSIVE MODE" if placeholder == "%s" else None
        if placeholder == "%s":  # PostgreSQL: the latest row of each participant, the key read backwards
            self.latest_summaries = (
                f"SELECT DISTINCT ON (participant) participant, steps FROM {summary} "
                f"WHERE position <= {p} ORDER BY participant DESC, position DESC"
            )
        else:  # SQLite: a bare column takes the row of the MAX() beside it, in one pass of the key
            self.latest_summaries = (
                f"SELECT participant, MAX(position) AS position, steps FROM {summary} "
                f"WHERE position <= {p} GROUP BY participant"
            )


def _clock_row(row: Any) -> ClockRow:
    try:
        return clock_row(row)
    except (TypeError, ValueError) as exc:
        raise TimelinesUnreadable(f"a clock row is not readable: {exc}") from exc


def _checked(row: Any) -> Row:
    participant, position, state = row["participant"], row["position"], row["state"]
    if not (
        isinstance(participant, str) and isinstance(position, int) and isinstance(state, bytes | memoryview)
    ):
        raise RowUnreadable(participant, position)
    return participant, position, bytes(state)


class Timelines:
    """The view in the ledger's own database (SQLite file or PostgreSQL schema), read and rebuilt."""

    def __init__(self, datastore: Any, feed: TimelineFeed, sql: TimelineSQL, old_tracking: str) -> None:
        self.datastore = datastore
        self.feed = feed
        self.sql = sql
        self.old_tracking = old_tracking

    def shape(self) -> Shape | None:
        """The view's rows, highest row and tracked position with the ledger's events they cover.

        None when the view has no tracking table: never made (a store of an
        earlier version, whose rows, if any, tracked elsewhere) or dropped.
        """
        with self._reading() as cursor:
            found = self.feed.present(cursor)
            if not found.tracking:
                return None
            cursor.execute(self.sql.shape[found.timeline])
            first = cursor.fetchone()
            try:
                held, last, tracked, size = (int(first[name]) for name in ("held", "last", "tracked", "size"))
                # One row for each position up to the tracked one is the whole view of a ledger whose
                # positions have no gap (every ledger since issue #7): the events need no counting.
                covered = tracked if held == tracked else None
                if covered is None:
                    cursor.execute(self.sql.covered)
                    covered = int(cursor.fetchone()["covered"])
            except (TypeError, ValueError) as exc:
                raise TimelinesUnreadable(f"a position is not a number: {exc}") from exc
        return Shape(held, last, tracked, covered, size)

    def summary_shape(self) -> SummaryShape | None:
        """The summaries' rows, highest row, rows the clock counts and clock position; None without them."""
        with self._reading() as cursor:
            if not self.feed.present(cursor).summaries:
                return None
            cursor.execute(self.sql.summary_shape)
            first = cursor.fetchone()
        try:
            return SummaryShape(*(int(first[name]) for name in SummaryShape._fields))
        except (TypeError, ValueError) as exc:
            raise TimelinesUnreadable(f"a summary position is not a number: {exc}") from exc

    def clock_known(self, moment: int) -> tuple[ClockRow | None, bool]:
        """The last batch recorded by ``moment`` (microseconds) with all before it; whether that cut is exact.

        Exact: no batch after it holds an event recorded by ``moment`` (a batch
        recorded out of order may).  None: no batch lies wholly before ``moment``.
        """
        t = self.feed.summaries
        with self._reading() as cursor:
            cursor.execute(t.select_known, (moment,))
            row = cursor.fetchone()
            known = _clock_row(row) if row is not None else None
            cursor.execute(t.select_early_after, (known.position if known else 0, moment))
            exact = cursor.fetchone() is None
        return known, exact

    def last_clock(self) -> ClockRow | None:
        """The last batch the summaries cover."""
        with self._reading() as cursor:
            cursor.execute(self.feed.summaries.select_last_clock)
            row = cursor.fetchone()
        return _clock_row(row) if row is not None else None

    def summaries(self, upto: int, participant: str | None = None) -> Iterator[tuple[str, bytes]]:
        """Each participant's latest summary row at or before position ``upto`` (or one participant's).

        In no particular order: PostgreSQL reads its key backwards, which needs no sort.
        """
        if participant is not None:
            with self._reading() as cursor:
                cursor.execute(self.feed.summaries.select_latest, (participant, upto))
                row = cursor.fetchone()
            if row is not None:
                yield participant, bytes(row["steps"])
            return
        for row in self._streamed(self.sql.latest_summaries, (upto,)):
            code, steps = row[0], row[-1]
            if not isinstance(code, str) or not isinstance(steps, bytes | memoryview):
                raise RowUnreadable(code, None)
            yield code, bytes(steps)

    def rows(self, participant: str | None = None) -> Iterator[Row]:
        """Every row by participant then position (or one participant's), page by page."""
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
        """Every row by position, page by page."""
        last = -1
        while True:
            page = self._select(self.sql.page_by_position, (last, PAGE))
            for row in page:
                checked = _checked(row)
                last = checked[1]
                yield checked
            if len(page) < PAGE:
                return

    def tail(self, after: int, participant: str | None = None) -> Iterator[Row]:
        """The stored events after position ``after`` (or one participant's) in the order of :meth:`rows`.

        Their state as stored (the caller deciphers it): what the view does not cover yet.
        """
        last: tuple[str, int] = ("", -1)
        while True:
            if participant is None:
                page = self._select(self.sql.tail_all, (*last, after, PAGE))
            else:
                page = self._select(self.sql.tail_one, (participant, last[1], after, PAGE))
            for row in page:
                last = str(row["originator_id"]), int(row["originator_version"])
                yield last[0], int(row["position"]), bytes(row["state"])
            if len(page) < PAGE:
                return

    def append(self, rows: Sequence[Row], tracked: int) -> None:
        """Add rows and the tracking row of the position they reach, in one transaction (``rebuild``)."""
        with self.datastore.transaction(commit=True) as cursor:
            self.feed.write_rows(cursor, rows)
            cursor.execute(self.feed.insert_tracking, (tracked,))

    def clock(self) -> list[ClockRow]:
        """Every batch the summaries cover, in ledger order (``verify``)."""
        rows = self._select(f"{self.feed.summaries.select_clock_all}", ())
        return [_clock_row(row) for row in rows]

    def summary_rows(self) -> Iterator[tuple[str, int, bytes]]:
        """Every summary row by participant then position, page by page (``verify``)."""
        last: tuple[str, int] = ("", -1)
        while True:
            page = self._select(self.sql.page_summary_rows, (*last, PAGE))
            for row in page:
                participant, position = row["participant"], row["position"]
                if not isinstance(participant, str) or not isinstance(position, int):
                    raise RowUnreadable(participant, position)
                last = participant, position
                yield participant, position, bytes(row["steps"])
            if len(page) < PAGE:
                return

    def add_summaries(self, rows: Iterable[tuple[str, int, bytes]]) -> None:
        """Add summary rows in one transaction (``rebuild``: they count only once the clock names them)."""
        with self.datastore.transaction(commit=True) as cursor:
            cursor.executemany(self.feed.summaries.insert_summary, rows)

    def close_summaries(self, clock: Sequence[ClockRow]) -> int:
        """Add the clock rows that make rebuilt summaries count, then summarise what came meanwhile.

        One transaction holding the ledger's write lock: no append commits
        between the last summarised position and the clock row that covers the
        events appended since the summaries were computed (whose batch the feed
        could not summarise: :class:`~ledger.storage.summaries.SummaryWriter`).
        Returns the position the summaries reach.
        """
        t = self.feed.summaries
        with self.datastore.transaction(commit=True) as cursor:
            if self.sql.lock is not None:
                cursor.execute(self.sql.lock)
            cursor.executemany(t.insert_clock, [tuple(row) for row in clock])
            cursor.execute(self.feed.select_tracked_only)
            tracked = int(cursor.fetchone()["tracked"])
            done = clock[-1].position if clock else 0
            if tracked > done:
                seen = BatchSeen()
                cursor.execute(self.sql.rows_after, (done, tracked))
                for row in cursor.fetchall():
                    seen.see(row["participant"], row["topic"], bytes(row["state"]))
                self.feed.writer.write(cursor, done + 1, tracked, seen)
            return max(done, tracked)

    def remake(self) -> None:
        """Drop the view's tables, whatever was done to them, and make them anew (``rebuild``).

        A table altered out of shape (a column dropped, a trigger added) cannot
        be repaired row by row, so ``rebuild`` starts from nothing.  The library's
        tracking table, where earlier versions tracked this view, goes too.  The
        new tables get the row-level security ``init`` gave the old ones (issue 12,
        item 3), in the same transaction.
        """
        s = self.feed.summaries
        with self.datastore.transaction(commit=True) as cursor:
            for table in (self.feed.timeline, self.feed.tracking, s.summary, s.clock, self.old_tracking):
                cursor.execute(f"DROP TABLE IF EXISTS {table}")
            for statement in self.feed.create_statements:
                cursor.execute(statement)
            self.feed.secure(cursor)

    def _select(self, statement: str, parameters: tuple[Any, ...]) -> list[Any]:
        with self._reading() as cursor:
            cursor.execute(statement, parameters)
            return list(cursor.fetchall())

    def _streamed(self, statement: str, parameters: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
        """The rows of one statement as plain tuples, :data:`PAGE` at a time (the hot path of a lookup).

        One statement, not pages of a keyed query: PostgreSQL then reads the
        summaries' key once, and a server-side cursor hands them over page by page.
        """
        with self._reading() as cursor:
            if hasattr(cursor, "sqlite_cursor"):
                raw = cursor.sqlite_cursor
                raw.row_factory = None
                raw.execute(statement, parameters)
            else:
                from psycopg.rows import tuple_row

                raw = cursor.connection.cursor(name="trial_ledger_lookup", row_factory=tuple_row)
                raw.execute(statement, parameters, binary=True)  # bytea as is, not as hex text
            while page := raw.fetchmany(PAGE):
                yield from page

    def _reading(self) -> AbstractContextManager[Any]:
        return _reading(self.datastore)


@contextmanager
def _reading(datastore: Any) -> Iterator[Any]:
    """A read-only transaction whose errors of a table not as made are :class:`TimelinesUnreadable`."""
    try:
        with datastore.transaction(commit=False) as cursor:
            yield cursor
    except (OperationalError, ProgrammingError) as exc:
        if "locked" in str(exc):
            raise
        raise TimelinesUnreadable(str(exc).splitlines()[0]) from exc


def open_timelines(recorder: Any, store: str) -> Timelines:
    """The view beside the ledger's events (SQLite file or PostgreSQL schema); nothing is created."""
    feed: TimelineFeed = recorder.feed
    if is_postgres(store):
        schema = f'"{recorder.datastore.schema}"'
        events, position, placeholder = f'{schema}."{recorder.events_table_name}"', "notification_id", "%s"
        old = f"{schema}.{OLD_TRACKING_TABLES[1]}"
    else:
        events, position, placeholder = recorder.events_table_name, "rowid", "?"
        old = OLD_TRACKING_TABLES[0]
    return Timelines(recorder.datastore, feed, TimelineSQL(feed, events, position, placeholder), old)
